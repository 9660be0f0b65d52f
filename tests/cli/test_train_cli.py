"""`python -m lirpa_diffai train` as a user meets it: smoke runs of every shipped configuration,
--set, timing and out-of-memory messages, Ctrl-C, resume messages, refused configurations and
networks given by import path."""
import json
import os
import re
import sys
from pathlib import Path

import pytest
import torch

from lirpa_diffai import training
from lirpa_diffai.__main__ import main
from lirpa_diffai.training.errors import ConfigError
from lirpa_diffai.training.config import OptimizerConfig, load_config, parse_config

from tests.support import REPO, SHARED

EXAMPLES = sorted((REPO / "examples" / "goals").glob("*.yaml"))
HAVE_DATA = all((SHARED / "datasets" / f"{d}.npz").is_file() for d in ("mnist", "cifar10"))
needs_data = pytest.mark.skipif(not HAVE_DATA, reason="needs ../shared/datasets")
QUICK = {"mnist_small"}   # the CIFAR-10 ones take 10 s to minutes each


def write_config(tmp_path: Path, text: str = "", name="tiny.yaml", **overrides) -> Path:
    """A tiny MNIST run: ConvSmall, 100 training images in batches of 50, 20 test images."""
    values = {"network": "conv_small", "dataset": "mnist", "eps": 0.1,
              "goal": "Mix(Point, Sub(0.5, Box), 0.5)", "epochs": 2, "batch_size": 50,
              "train_subset": 100, "test_subset": 20, "seed": 1, **overrides}
    path = tmp_path / name
    path.write_text("".join(f"{k}: {json.dumps(v) if isinstance(v, str) else v}\n"
                            for k, v in values.items() if v is not None) + text)
    return path


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(["train", *map(str, argv), "--no-progress", "--threads", "1"])
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------------------ smoke runs

@needs_data
@pytest.mark.parametrize("path", [
    pytest.param(p, id=p.stem, marks=() if p.stem in QUICK else (pytest.mark.slow,))
    for p in EXAMPLES if not p.stem.startswith("graft_")])  # see test_grafting_cli.py
def test_every_shipped_config_runs_a_smoke_run(path, tmp_path, capsys):
    """The smoke command of docs/cli.md on every shipped configuration; the slow ones at batch 8
    (their own batches of 50-256 images through the deep networks' bounds would take most of
    the suite's time budget, and the batch size changes no code path). The grafting fine-tunes
    start from a checkpoint that ``graft`` writes first: test_grafting_cli.py runs graft, then
    train, then certify."""
    out_dir = tmp_path / "run"
    batch = () if path.stem in QUICK else ("--set", "batch_size=8")
    code, out, err = cli(capsys, path, "--max-steps", "2", "--test-subset", "16",
                         "--out", out_dir, *batch)
    assert code == 0, err
    assert re.search(r"time per step [\d.e+-]+ s \(step 2, batch \d+\): about .* per epoch "
                     r"of \d+ steps", out), out
    loss = float(re.search(r"epoch 1, loss ([^,]+),", out).group(1))
    assert loss == loss and abs(loss) < float("inf")
    assert "test acc" in out and "stopped after 2 steps" in out
    assert not out_dir.exists()                     # a smoke run writes nothing


def test_max_steps_must_be_positive(tmp_path, capsys):
    code, _, err = cli(capsys, write_config(tmp_path), "--max-steps", "0")
    assert code == 2 and "--max-steps must be a positive integer" in err


# ------------------------------------------------------------------------------------ --set

def test_set_overrides_keys_and_nested_keys(tmp_path):
    path = write_config(tmp_path, "optimizer: {name: sgd, lr: 0.1}\n")
    cfg = load_config(path, overrides=["batch_size=10", "optimizer.lr=0.01",
                                       "goal=Mix(Point, Box, 0.3)", "hzono.relu=deepz"])
    assert cfg.batch_size == 10 and cfg.optimizer == OptimizerConfig(name="sgd", lr=0.01)
    assert str(cfg.goal) == "Mix(Point, Box, 0.3)" and cfg.hzono["relu"] == "deepz"


@pytest.mark.parametrize("argument, message", [
    ("batch_size=abc", "expected an integer >= 1, got 'abc' at line 1, column 1 of "
                       "--set batch_size=abc"),
    ("batchsize=3", "unknown key 'batchsize' in the training configuration; did you mean "
                    "'batch_size'? at line 1, column 1 of --set batchsize=3"),
    ("optimizer.lrr=0.1", "unknown key 'lrr' in optimizer; did you mean 'lr'?"),
    ("eps", "expected key=value, got 'eps'"),
    ("goal=Mix(Point, Bx, 0.5)", "of --set goal=Mix(Point, Bx, 0.5)"),
])
def test_set_is_validated_like_the_file_and_errors_name_it(tmp_path, capsys, argument,
                                                           message):
    code, _, err = cli(capsys, write_config(tmp_path), "--set", argument, "--max-steps", "1")
    assert code == 2
    assert message in err, err


def test_train_and_test_subset_options_are_overrides(tmp_path, capsys, monkeypatch):
    seen = {}

    def fake_train(config, **kw):
        seen.update(kw)
        return []
    monkeypatch.setattr(training, "train", fake_train)
    code, _, _ = cli(capsys, write_config(tmp_path), "--train-subset", "7", "--test-subset",
                     "3", "--set", "seed=2", "--max-steps", "4")
    assert code == 0
    assert seen["overrides"] == ["seed=2", "train_subset=7", "test_subset=3"]
    assert seen["max_steps"] == 4


# -------------------------------------------------------------------- time and memory

@needs_data
def test_out_of_memory_is_a_clear_error(tmp_path, capsys, monkeypatch):
    def no_memory(*_args, **_kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 30.00 GiB")
    monkeypatch.setattr(training.loop, "training_step", no_memory)
    code, _, err = cli(capsys, write_config(tmp_path, method="CROWN"), "--out",
                       tmp_path / "run")
    assert code == 2
    assert err.startswith("error: out of memory in step 1 of epoch 1 with batch_size 50")
    assert "method CROWN" in err and "crown_batch_size" in err and "--set batch_size" in err
    assert "Traceback" not in err


def test_memory_error_and_runtime_out_of_memory_count_as_out_of_memory():
    from lirpa_diffai.training.step import is_out_of_memory
    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator:"
                                         " can't allocate memory: you tried ... out of memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


# ------------------------------------------------------------------ interrupts, resumes

@needs_data
def test_ctrl_c_names_the_last_checkpoint_and_exits_130(tmp_path, capsys, monkeypatch):
    path, out_dir = write_config(tmp_path, epochs=3), tmp_path / "run"
    real = training.loop.training_step
    calls = []

    def interrupt_in_epoch_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:                        # 2 steps per epoch: epoch 2's second step
            raise KeyboardInterrupt
        return real(*args, **kwargs)
    monkeypatch.setattr(training.loop, "training_step", interrupt_in_epoch_2)
    code, _, err = cli(capsys, path, "--out", out_dir, "--set", "seed=5")
    assert code == 130
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert f"the last checkpoint is {out_dir / 'checkpoint.pt'} (after epoch 1)" in err
    assert f"--out {out_dir} --resume --set seed=5" in err
    monkeypatch.setattr(training.loop, "training_step", real)
    code, out, _ = cli(capsys, path, "--out", out_dir, "--resume", "--set", "seed=5")
    assert code == 0 and f"resuming the run in {out_dir} after epoch 1 of 3" in out


@needs_data
def test_ctrl_c_before_the_first_checkpoint_says_nothing_was_saved(tmp_path, capsys,
                                                                   monkeypatch):
    def interrupt(*_args, **_kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(training.loop, "training_step", interrupt)
    code, _, err = cli(capsys, write_config(tmp_path), "--out", tmp_path / "run")
    assert code == 130 and "before the first checkpoint" in err and "Traceback" not in err


@needs_data
def test_resume_messages_and_a_comment_only_edit(tmp_path, capsys):
    path, out_dir = write_config(tmp_path, epochs=2), tmp_path / "run"
    assert cli(capsys, path, "--out", out_dir)[0] == 0
    # comments, layout and key order do not matter; the parsed configuration does
    lines = path.read_text().splitlines()
    path.write_text("# a comment\n" + "\n".join(reversed(lines)) + "   # trailing\n")
    code, out, _ = cli(capsys, path, "--out", out_dir, "--resume", "--epochs", "1")
    assert code == 0
    assert "completed 2 epochs, more than the 1 asked for; nothing to train" in out
    assert "of 1" not in out
    code, out, _ = cli(capsys, path, "--out", out_dir, "--resume")
    assert code == 0 and "has completed all its 2 epochs; nothing to train" in out
    path.write_text(path.read_text().replace("seed: 1", "seed: 4"))
    code, _, err = cli(capsys, path, "--out", out_dir, "--resume")
    assert code == 2 and "differs" in err and "seed: 4 (the run: 1)" in err


@needs_data
def test_leftover_temporary_files_are_removed_at_the_next_start(tmp_path, capsys):
    path, out_dir = write_config(tmp_path, epochs=1), tmp_path / "run"
    out_dir.mkdir()
    dead = out_dir / ".checkpoint.pt.tmp999999999"      # no such process
    dead.write_bytes(b"half a checkpoint")
    alive = out_dir / f".checkpoint.pt.tmp{os.getppid()}"   # a live process's write
    alive.write_bytes(b"")
    code, out, _ = cli(capsys, path, "--out", out_dir)
    assert code == 0 and not dead.exists() and alive.exists()
    assert f"removed {dead}" in out


# ------------------------------------------------------------------ refused configurations

def test_a_data_root_without_the_dataset_is_an_error_naming_it(tmp_path, capsys):
    out_dir = tmp_path / "run"
    code, _, err = cli(capsys, write_config(tmp_path, data_root="/nonexistent"), "--out", out_dir)
    assert code == 2 and "data_root /nonexistent in" in err and "not a directory" in err
    (tmp_path / "empty").mkdir()
    code, _, err = cli(capsys, write_config(tmp_path, data_root=str(tmp_path / "empty")),
                       "--out", out_dir)
    assert code == 2 and "does not hold mnist (train)" in err and "mnist.npz" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch without a usable GPU")
def test_device_cuda_without_cuda_is_a_clear_error(tmp_path, capsys):
    code, _, err = cli(capsys, write_config(tmp_path, device="cuda"), "--out", tmp_path / "r")
    assert code == 2 and err.startswith("error: device 'cuda' in ")
    assert "set device: cpu" in err and "Traceback" not in err


def test_a_network_not_defined_for_the_dataset_is_a_config_error(tmp_path, capsys):
    path = write_config(tmp_path, network="resnet_tiny")
    code, _, err = cli(capsys, path, "--out", tmp_path / "run")
    assert code == 2
    assert ("resnet_tiny is defined for cifar10 only, not 'mnist' at line 1, column 10 of "
            f"{path}") in err


def test_the_ibp_initialisation_keeps_interval_widths_bounded_in_depth():
    """Shi et al. 2021: with w ~ N(0, 2 pi / n^2) the IBP width stays about constant through
    Linear + ReLU layers; torch's default initialisation makes it grow geometrically."""
    from auto_LiRPA import BoundedModule, BoundedTensor, PerturbationLpNorm
    from lirpa_diffai.training.initialisation import ibp_init
    eps = 1e-3

    def width_ratio(net):
        x = torch.rand(4, 64)
        bm = BoundedModule(net, x)
        lb, ub = bm.compute_bounds(x=(BoundedTensor(x, PerturbationLpNorm(eps=eps)),),
                                   method="IBP")
        return ((ub - lb).mean() / (2 * eps)).item()

    def deep():
        layers = [torch.nn.Linear(64, 256), torch.nn.ReLU()]
        for _ in range(9):
            layers += [torch.nn.Linear(256, 256), torch.nn.ReLU()]
        return torch.nn.Sequential(*layers, torch.nn.Linear(256, 10))
    torch.manual_seed(0)
    assert width_ratio(deep()) > 1e4
    torch.manual_seed(0)
    net = ibp_init(deep())
    assert 0.2 < width_ratio(net) < 20
    assert all(m.bias.abs().max() == 0 for m in net if isinstance(m, torch.nn.Linear))


def test_grad_clip_bounds_the_step(tmp_path):
    cfg = parse_config(write_config(tmp_path, "optimizer: {name: sgd, lr: 1.0, momentum: 0}\n")
                       .read_text(), overrides=["grad_clip=0.001"])
    assert cfg.grad_clip == 0.001
    torch.manual_seed(0)
    model = training.build_network(cfg)
    x, y = torch.rand(4, 1, 28, 28), torch.tensor([1, 2, 3, 4])
    bm = training.wrap_for_training(model, cfg, x)
    before = [p.detach().clone() for p in model.parameters()]
    training.training_step(training.GoalLoss(model, bm, cfg), training.make_optimizer(model, cfg),
                           x, y, 1.0, 1.0, cfg.grad_clip)
    moved = torch.sqrt(sum(((p - b) ** 2).sum() for p, b in zip(model.parameters(), before)))
    assert 0 < moved.item() <= 0.001 * (1 + 1e-4)


def test_augment_draws_on_the_device_of_its_input():
    out = training.augment(torch.empty(4, 3, 8, 8, device="meta"))
    assert out.device.type == "meta" and out.shape == (4, 3, 8, 8)


# --------------------------------------------------------------- your own network

NETWORKS = '''
import torch
from torch import nn


class TinyNet(nn.Module):
    def __init__(self, hidden: int = 16, classes: int = 10):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(),
                                  nn.Linear(hidden, classes))

    def forward(self, x):
        return self.body(x)


def make_net(hidden):
    return TinyNet(hidden)


def not_a_module():
    return 42


VALUE = 3
'''


@pytest.fixture
def user_package(tmp_path, monkeypatch):
    pkg = tmp_path / "userpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text(NETWORKS)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "userpkg.nets"
    for name in [m for m in sys.modules if m.startswith("userpkg")]:
        del sys.modules[name]


@needs_data
def test_train_and_certify_a_network_given_by_import_path(tmp_path, capsys, user_package):
    path = write_config(tmp_path, "network_args: {hidden: 12}\n", epochs=1,
                        network=f"{user_package}:TinyNet", goal="Mix(Point, Box, 0.5)")
    out_dir = tmp_path / "run"
    code, out, err = cli(capsys, path, "--out", out_dir)
    assert code == 0, err
    ckpt = training.load_checkpoint(out_dir / "checkpoint.pt")
    assert ckpt["state_dict"]["body.1.weight"].shape == (12, 784)
    code = main(["certify", str(out_dir), "--methods", "hzono,IBP", "--limit", "20",
                 "--threads", "1", "--json", str(tmp_path / "c.json")])
    assert code == 0
    report = json.loads((tmp_path / "c.json").read_text())
    assert report["network"] == f"{user_package}:TinyNet" and report["n"] == 20
    assert [m["method"] for m in report["methods"]] == ["hzono", "IBP"]
    # a function returning a module works the same
    cfg = parse_config(path.read_text().replace("TinyNet", "make_net"), "x.yaml")
    assert training.build_network(cfg).body[1].out_features == 12


@pytest.mark.parametrize("network, args, message, line", [
    ("nosuchpkg.models:Net", None, "module 'nosuchpkg.models' does not import "
                                   "(ModuleNotFoundError", 1),
    ("{pkg}:Missing", None, "has no attribute 'Missing'", 1),
    ("{pkg}:VALUE", None, "is a int, not an nn.Module class or a function returning one", 1),
    ("{pkg}:not_a_module", None, "returned a int, not an nn.Module", 1),
    ("{pkg}:TinyNet", "{width: 3}", "does not take network_args ['width']", 10),
    ("{pkg}:Tiny Net", None, "is not an import path package.module:Name", 1),
    ("conv_small", "{hidden: 3}", "network_args applies to a network given by import path", 10),
])
def test_refused_import_path_networks_name_the_config_line(tmp_path, user_package, network,
                                                           args, message, line):
    text = f"network_args: {args}\n" if args else ""
    path = write_config(tmp_path, text, network=network.format(pkg=user_package))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert message in str(info.value)
    assert (info.value.line, info.value.source) == (line, str(path))
