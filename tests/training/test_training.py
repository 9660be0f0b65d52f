"""The trainer: exact resume, checkpoints and metrics, the eps read-out, data partitioning,
two processes under torchrun, and one step of every Table-2 scheme on its network."""
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lirpa_diffai import data, models, training
from lirpa_diffai.goals import parse_goal
from lirpa_diffai.training.config import load_config
from lirpa_diffai.training import Dist, GoalLoss, epoch_batches, eps_factor, goal_eps

from tests.support import REPO, needs_mnist, slow_unless

EXAMPLES = REPO / "examples" / "goals"
# the Table-2 schemes (mnist_small, the MMR examples, the grafting fine-tunes and the
# adversarial training madry_*, which have no Box, and the MNIST networks of diffai_mnist_*,
# are tested elsewhere)
TABLE2 = sorted(p for p in EXAMPLES.glob("*.yaml")
                if p.name != "mnist_small.yaml"
                and not p.name.startswith(("mmr_", "graft_", "madry_", "diffai_mnist_")))
# DiffAI's goal for its MNIST networks (the paper's Tables 9 and 10), each on its own network
DIFFAI_MNIST = sorted(EXAMPLES.glob("diffai_mnist_*.yaml"))


def write_config(tmp_path: Path, goal: str, name="tiny.yaml", **overrides) -> Path:
    """A tiny MNIST run: ConvSmall, 200 training images in batches of 50, 100 test images."""
    values = {"network": "conv_small", "dataset": "mnist", "eps": 0.1, "goal": goal,
              "epochs": 2, "batch_size": 50, "train_subset": 200, "test_subset": 100,
              "seed": 3, **overrides}
    path = tmp_path / name
    path.write_text("".join(f"{k}: {json.dumps(v) if isinstance(v, str) else v}\n"
                            for k, v in values.items()))
    return path


# Normal draws from torch's RNG: an exact resume needs the RNG state restored too.
RANDOM_GOAL = "Mix(Normal, Sub(Lin(0,1,1,1), Box), Lin(0,0.5,1,0.5))"


def run_dir_weights(out: Path) -> dict:
    return torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)


# ------------------------------------------------------------------------- resume, files

@needs_mnist
def test_resume_gives_the_weights_of_an_uninterrupted_run(tmp_path):
    cfg = write_config(tmp_path, RANDOM_GOAL)
    training.train(str(cfg), out=str(tmp_path / "straight"), progress=False, log=lambda *_: 0)
    training.train(str(cfg), out=str(tmp_path / "split"), epochs=1, progress=False,
                   log=lambda *_: 0)
    after_one = run_dir_weights(tmp_path / "split")
    assert after_one["epoch"] == 1
    training.train(str(cfg), out=str(tmp_path / "split"), resume=True, progress=False,
                   log=lambda *_: 0)
    straight, split = run_dir_weights(tmp_path / "straight"), run_dir_weights(tmp_path / "split")
    assert split["epoch"] == straight["epoch"] == 2
    for key, value in straight["state_dict"].items():
        assert torch.equal(value, split["state_dict"][key]), key
        # the resumed epoch did train: its weights moved away from the epoch-1 checkpoint
    moved = [k for k, v in split["state_dict"].items()
             if v.is_floating_point() and not torch.equal(v, after_one["state_dict"][k])]
    assert moved
    assert [m["train_loss"] for m in straight["metrics"]] == \
        [m["train_loss"] for m in split["metrics"]]
    lines = (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]


@needs_mnist
def test_checkpoint_and_metrics_files(tmp_path):
    cfg = write_config(tmp_path, "Mix(Point, Sub(Lin(0,1,2,0), Box), 0.5)", epochs=2,
                       test_every=2)
    out = tmp_path / "run"
    training.train(str(cfg), out=str(out), progress=False, log=lambda *_: 0)
    ckpt = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ckpt["config_text"] == cfg.read_text() and ckpt["epoch"] == 2
    assert set(ckpt["rng"][0]) >= {"torch", "numpy", "python"}
    net = models.get("conv_small", "mnist")
    net.load_state_dict(ckpt["state_dict"])                 # the zoo network's own keys
    assert sorted(os.listdir(out)) == ["checkpoint.pt", "metrics.jsonl"]  # no temp files left
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    for r in rows:
        for key in ("train_loss", "train_accuracy", "eps", "lr", "seconds"):
            assert isinstance(r[key], float), key
        assert 0 <= r["train_accuracy"] <= 1
    # eps: 0.1 times Sub's delta Lin(0,1,2,0) at the end of epochs 1 and 2
    assert rows[0]["eps"] == pytest.approx(0.05) and rows[1]["eps"] == pytest.approx(0.1)
    assert "test_accuracy" not in rows[0]                   # test_every: 2
    assert 0 <= rows[1]["test_certified"] <= rows[1]["test_accuracy"] <= 1
    assert rows == ckpt["metrics"]


@needs_mnist
def test_refuses_to_overwrite_a_run_and_a_changed_config_on_resume(tmp_path):
    cfg = write_config(tmp_path, "Point", epochs=1, train_subset=50)
    out = tmp_path / "run"
    training.train(str(cfg), out=str(out), progress=False, log=lambda *_: 0)
    with pytest.raises(training.TrainingError, match="--resume"):
        training.train(str(cfg), out=str(out), progress=False, log=lambda *_: 0)
    cfg.write_text(cfg.read_text().replace("seed: 3", "seed: 4"))
    with pytest.raises(training.TrainingError, match="differs"):
        training.train(str(cfg), out=str(out), resume=True, progress=False, log=lambda *_: 0)


# ------------------------------------------------------------------------------- helpers

@pytest.mark.parametrize("text, t, factor", [
    ("Box", 0.0, 1.0),
    ("Point", 3.0, None),
    ("Mix(Point, Sub(Lin(0,1,2,0), Box), 0.5)", 1.0, 0.5),
    ("Mix(Point, Sample(Lin(0,1,4,0), 0.5, Normal, Box), 0.5)", 1.0, 0.25),
    ("Mix(Point, Sub(Lin(0,1,2,0), Sample(Lin(0,1,4,0), 1, Uniform, Box)), 0.3)", 1.0, 0.125),
    ("Mix(Box, Sub(0.5, Box), 0.5)", 1.0, None),            # two boxes: no single factor
])
def test_eps_factor_follows_the_schedules_to_the_box(text, t, factor):
    assert eps_factor(parse_goal(text), t) == (None if factor is None else pytest.approx(factor))


def test_goal_eps_is_the_config_eps_without_a_single_factor(tmp_path):
    cfg = load_config(write_config(tmp_path, "Mix(Point, IFGSM3, 0.5)", eps=0.2))
    assert goal_eps(cfg, 5.0) == 0.2


@pytest.mark.parametrize("world", [2, 4])
def test_processes_split_each_global_batch(world):
    one = epoch_batches(103, 8, seed=5, epoch=2, dist=Dist())
    parts = [epoch_batches(103, 8, seed=5, epoch=2, dist=Dist(rank=r, world=world))
             for r in range(world)]
    assert all(len(p) == len(one) for p in parts)
    for k, batch in enumerate(one[:-1]):                    # the last batch may be padded
        union = torch.cat([p[k] for p in parts])
        assert sorted(union.tolist()) == sorted(batch.tolist())
    assert sorted(torch.cat(one).tolist()) == list(range(103))
    assert not torch.equal(torch.cat(one), torch.cat(epoch_batches(103, 8, 5, 3, Dist())))


def test_augment_is_a_shifted_or_flipped_crop():
    x = torch.rand(16, 3, 8, 8)
    out = training.augment(x, padding=2)
    assert out.shape == x.shape
    for img, src in zip(out, x):
        padded = torch.nn.functional.pad(src, [2] * 4)
        crops = [padded[:, i:i + 8, j:j + 8] for i in range(5) for j in range(5)]
        assert any(torch.equal(img, c) or torch.equal(img, c.flip(2)) for c in crops)


# ------------------------------------------------------------------------ two processes

@pytest.mark.slow
@needs_mnist
def test_two_processes_match_one(tmp_path):
    """torchrun with 2 CPU processes (gloo, DDP) and the same global batch gives one
    process's weights. The goal's Box part reaches the weights only through
    bm.compute_bounds: unsynchronised gradients would make the runs differ. Slow: three
    Python processes train an epoch, about 26 s of CPU."""
    cfg = write_config(tmp_path, "Mix(Point, Sub(0.5, Box), 0.7)", epochs=1, train_subset=200,
                       batch_size=20, test_subset=40)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    common = ["-m", "lirpa_diffai", "train", str(cfg), "--no-progress", "--threads", "1"]
    one = subprocess.run([sys.executable, *common, "--out", str(tmp_path / "one")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node=2", *common, "--out", str(tmp_path / "two")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = run_dir_weights(tmp_path / "one"), run_dir_weights(tmp_path / "two")
    assert len(b["rng"]) == 2                               # both processes' RNG states
    # Adam turns float noise in near-zero gradients into steps of up to lr (1e-3); the
    # tolerance is 10x below that, while each weight tensor moved by more than 1e-3.
    training.seed_everything(3)                              # the run's initial weights
    start = models.get("conv_small", "mnist").state_dict()
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, rtol=0, atol=1e-4)
        if not key.startswith("norm"):
            assert (value - start[key]).abs().max() > 1e-3, key
    ma, mb = a["metrics"][0], b["metrics"][0]
    assert mb["train_loss"] == pytest.approx(ma["train_loss"], rel=1e-4)
    assert mb["test_accuracy"] == ma["test_accuracy"]
    assert mb["test_certified"] == ma["test_certified"]


# ------------------------------------------------------------------ Table 2, one step each

# a step on batch 2 takes 1-2 s on each of these here; ResNet-Large LargeCombo about 6 s
SLOW_NETWORKS = {"resnet_large_largecombo"}


def one_step(cfg, network: str):
    """One hzono training step at t = 100 (every schedule's abstract part active) on a
    batch of 2 shaped as the configuration's dataset; returns (loss, gradient norm, bm)."""
    cfg = dataclasses.replace(cfg, network=network, method="hzono")
    torch.manual_seed(0)
    model = training.build_network(cfg)
    x, y = torch.rand(2, *data.input_shape(cfg.dataset)), torch.tensor([3, 7])
    bm = training.wrap_for_training(model, cfg, x)
    model.train()
    bm.train()
    optimizer = training.make_optimizer(model, cfg)
    loss = training.training_step(GoalLoss(model, bm, cfg), optimizer, x, y, 100.0,
                                  cfg.lr_at(100.0))
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads)).item() if grads else 0.0
    return loss, norm, grads, bm


def _table2_params():
    """Each scheme on its own network and, for CIFAR-10, on resnet_tiny; the quick tier runs each scheme once,
    on its own network unless that is one of SLOW_NETWORKS (every network then runs quickly)."""
    out = []
    for path in TABLE2:
        cfg = load_config(path)
        network = cfg.network
        own_quick = network != "resnet_tiny" and network not in SLOW_NETWORKS
        if cfg.dataset == "cifar10":   # resnet_tiny is a CIFAR-10 network
            out.append(pytest.param(path, "resnet_tiny", id=f"{path.stem}-on-resnet_tiny",
                                    marks=slow_unless(not own_quick)))
        if network != "resnet_tiny":
            out.append(pytest.param(path, network, id=f"{path.stem}-on-{network}", marks=slow_unless(own_quick)))
    for path in DIFFAI_MNIST:
        network = load_config(path).network
        out.append(pytest.param(path, network, id=f"{path.stem}-on-{network}"))
    return out


@pytest.mark.parametrize("path, network", _table2_params())
def test_table2_scheme_takes_one_hzono_step(path, network):
    cfg = load_config(path)
    loss, norm, grads, bm = one_step(cfg, network)
    assert torch.isfinite(torch.tensor(loss))
    assert all(torch.isfinite(g).all() for g in grads)
    assert norm > 0
    assert bm.hzono_output is not None                      # the Box part ran with hzono
