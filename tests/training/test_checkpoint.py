"""Checkpoint files: atomic writes, and every file that is not a trainer's checkpoint refused
with a message saying so (never torch's advice to load it unsafely)."""
import pytest
import torch

from lirpa_diffai import training
from lirpa_diffai.training import CheckpointError, load_checkpoint


def write_foreign(path, kind: str):
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "random":
        path.write_bytes(bytes(range(256)) * 4)
    elif kind == "yaml":
        path.write_text("network: conv_small\ndataset: mnist\n")
    elif kind == "module":                       # a pickled nn.Module: not weights_only
        torch.save(torch.nn.Linear(2, 2), path)
    elif kind == "other-keys":
        torch.save({"weights": torch.zeros(2)}, path)


@pytest.mark.parametrize("kind, reason", [
    ("empty", "is empty (0 bytes"),
    ("random", "not a file written by torch.save"),
    ("yaml", "not a file written by torch.save"),
    ("module", "Python objects other than tensors"),
    ("other-keys", "lacks state_dict, config_text, epoch"),
])
def test_a_foreign_file_is_not_a_lirpa_diffai_checkpoint(tmp_path, kind, reason):
    path = tmp_path / "checkpoint.pt"
    write_foreign(path, kind)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"{path} is not a lirpa-diffai checkpoint: ")
    assert reason in message
    assert "weights_only" not in message and "\n" not in message


def test_save_atomic_leaves_only_the_file(tmp_path):
    training.save_atomic({"a": torch.ones(3)}, tmp_path / "x.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["x.pt"]
    assert torch.equal(torch.load(tmp_path / "x.pt", weights_only=True)["a"], torch.ones(3))
