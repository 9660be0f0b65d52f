"""The trainer on Tiny ImageNet and downscaled ImageNet: the dataset key, data_root required
and checked at its line, and a short run on small data the test writes in each layout."""
import json
import re

import numpy as np
import pytest
import torch
from torch import nn

from lirpa_diffai import imagenet, training
from lirpa_diffai.training.config import load_config
from lirpa_diffai.training.errors import ConfigError


def tiny_classifier(side: int, classes: int) -> nn.Module:
    """Flatten and one Linear: the network of these runs (given by import path)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * side * side, classes))


def write_config(path, **values):
    defaults = {"network": "tests.training.test_many_classes:tiny_classifier", "eps": 0.01,
                "goal": "Mix(Point, Box, 0.5)", "epochs": 1, "batch_size": 4, "seed": 0}
    lines = [f"{k}: {json.dumps(v)}" for k, v in {**defaults, **values}.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def downscaled(root, side: int, per_batch: int = 2):
    """Downscaled ImageNet at ``side`` x ``side``: ten training batches and val_data (npz)."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for name in (*imagenet.DOWNSCALED_FILES["train"], "val_data"):
        labels = rng.integers(1, 1001, per_batch)  # 1-based on disk
        np.savez(root / f"{name}.npz", data=rng.integers(0, 256, (per_batch, 3 * side * side),
                                                         dtype=np.uint8), labels=labels)
    return root


def line_of(message: str) -> int:
    return int(re.search(r"at line (\d+),", message).group(1))


def test_a_many_class_dataset_needs_data_root_at_the_dataset_line(tmp_path):
    path = write_config(tmp_path / "c.yaml", dataset="tiny_imagenet",
                        network_args={"side": 64, "classes": 200})
    with pytest.raises(ConfigError, match="dataset tiny_imagenet is read from data_root only") as err:
        load_config(path)
    assert "c.yaml" in str(err.value) and line_of(str(err.value)) == 7  # the dataset line


def test_a_missing_data_root_directory_is_named_at_its_line(tmp_path):
    missing = tmp_path / "no" / "Imagenet32_train"
    path = write_config(tmp_path / "c.yaml", dataset="imagenet32", data_root=str(missing),
                        network_args={"side": 32, "classes": 1000})
    with pytest.raises(ConfigError, match=f"data_root: no directory {missing}") as err:
        load_config(path)
    assert line_of(str(err.value)) == 8  # the data_root line
    with pytest.raises(ConfigError, match="--set"):  # an override is named as such
        load_config(write_config(tmp_path / "d.yaml", dataset="imagenet32",
                                 network_args={"side": 32, "classes": 1000}),
                    overrides=[f"data_root={missing}"])


def test_a_zoo_network_is_refused_for_a_many_class_dataset(tmp_path):
    path = write_config(tmp_path / "c.yaml", dataset="imagenet32", network="conv_small",
                        data_root=str(tmp_path))
    with pytest.raises(ConfigError, match="conv_small is defined for mnist and cifar10 only; "
                                          "give imagenet32 a network by import path"):
        load_config(path)


def test_a_run_on_downscaled_imagenet_has_1000_classes(tmp_path):
    root = downscaled(tmp_path / "Imagenet8", 8)
    path = write_config(tmp_path / "c.yaml", dataset="imagenet8", data_root=str(root),
                        network_args={"side": 8, "classes": 1000}, test_every=1)
    cfg = load_config(path)
    assert cfg.num_classes == 1000 and cfg.augment is True
    out = tmp_path / "run"
    training.train(str(path), out=str(out), progress=False, log=lambda *_: 0)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and np.isfinite(rows[0]["train_loss"])
    assert 0 <= rows[0]["test_certified"] <= rows[0]["test_accuracy"] <= 1


def test_a_directory_of_another_size_is_refused_naming_both(tmp_path):
    root = downscaled(tmp_path / "Imagenet8", 8)
    path = write_config(tmp_path / "c.yaml", dataset="imagenet16", data_root=str(root),
                        network_args={"side": 16, "classes": 1000})
    with pytest.raises(training.TrainingError, match=r"\(3, 8, 8\), not imagenet16's \(3, 16, 16\)"):
        training.train(str(path), out=str(tmp_path / "run"), progress=False, log=lambda *_: 0)


def test_a_run_on_tiny_imagenet_reads_its_layout(tmp_path, monkeypatch):
    """Tiny ImageNet's layout with 4x4 raw-pixel "JPEGs" (the decoder is replaced: Pillow is
    optional)."""
    from tests.test_imagenet_data import raw_decode, tiny_imagenet
    monkeypatch.setattr(imagenet, "pillow_decode", raw_decode)
    root = tiny_imagenet(tmp_path / "tiny-imagenet-200")
    path = write_config(tmp_path / "c.yaml", dataset="tiny_imagenet", data_root=str(root),
                        network_args={"side": 4, "classes": 200})
    assert load_config(path).num_classes == 200
    out = tmp_path / "run"
    training.train(str(path), out=str(out), progress=False, log=lambda *_: 0)
    ckpt = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ckpt["state_dict"]["1.weight"].shape == (200, 48)
