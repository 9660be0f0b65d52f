"""`train` fails fast: the pre-flight check on one batch before the first step (a network a
bound method of the goal cannot bound, one that does not fit the dataset, out of memory),
untraceable networks refused by name, and BatchNorm networks that train without warnings."""
import json
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import lirpa_diffai
from lirpa_diffai.__main__ import main

from tests.support import needs_mnist

NETWORKS = '''
import torch
from torch import nn


class CumulativeSum(nn.Module):
    """A cumulative sum, which hzono refuses (no transformer)."""
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(784, 16), nn.Linear(16, 10)

    def forward(self, x):
        h = self.fc1(x.flatten(1))
        return self.fc2(torch.cumsum(h, 1))


class OneChannel(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, stride=2)
        self.fc = nn.Linear(4 * 13 * 13, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.conv1(x)).flatten(1))


class BatchNormMlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.BatchNorm1d(16),
                                  nn.ReLU(), nn.Linear(16, 10))

    def forward(self, x):
        return self.body(x)


class BatchNormConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.BatchNorm2d(4), nn.ReLU(),
                                  nn.Flatten(), nn.Linear(4 * 13 * 13, 10))

    def forward(self, x):
        return self.body(x)


class Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(28, 8, batch_first=True)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        out, _ = self.rnn(x.flatten(1, 2))
        return self.fc(out[:, -1])
'''


class StraightThroughSign(torch.autograd.Function):
    """sign(x) forward, identity backward; no symbolic, no Bound class."""

    @staticmethod
    def forward(ctx, x):
        return torch.sign(x)

    @staticmethod
    def backward(ctx, grad):
        return grad


class SignNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return StraightThroughSign.apply(self.fc(x))


class Wrapped(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 4))
        self.encoder.add_module("rnn", nn.LSTM(4, 5, batch_first=True))

    def forward(self, x):
        out, _ = self.encoder.rnn(self.encoder[0](x))
        return out[:, -1]


@pytest.fixture
def nets(tmp_path, monkeypatch):
    pkg = tmp_path / "preflightnets"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(NETWORKS)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "preflightnets"
    sys.modules.pop("preflightnets", None)


def write_config(tmp_path: Path, network: str, **values) -> Path:
    cfg = {"network": network, "dataset": "mnist", "eps": 0.1, "goal": "Mix(Point, Box, 0.5)",
           "epochs": 1, "batch_size": 20, "train_subset": 40, "test_subset": 10, "seed": 1,
           **values}
    path = tmp_path / "run.yaml"
    path.write_text("".join(f"{k}: {json.dumps(v) if isinstance(v, str) else v}\n"
                            for k, v in cfg.items()))
    return path


def train(capsys, *argv) -> tuple[int, str, str]:
    code = main(["train", *map(str, argv), "--no-progress", "--threads", "1"])
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------------- pre-flight

@needs_mnist
def test_a_goal_reaching_box_after_a_point_epoch_fails_before_epoch_1(tmp_path, capsys, nets):
    """Box's weight is 0 for the whole first epoch (Until), so without the check the first
    bound call comes in the end-of-epoch evaluation; the check refuses before any step and
    writes nothing."""
    path = write_config(tmp_path, f"{nets}:CumulativeSum", epochs=2, method="IBP",
                        goal="Mix(Point, HBox, Until(1, 0, 0.5))")
    out_dir = tmp_path / "run"
    code, out, err = train(capsys, path, "--out", out_dir)
    assert code == 2 and "Traceback" not in err
    assert err.startswith("error: pre-flight check: ")
    assert "BoundCumSum" in err or "operator CumSum" in err
    assert "time per step" not in out and "epoch 1" not in out
    assert not out_dir.exists()


@needs_mnist
def test_a_network_that_does_not_fit_the_dataset_names_the_layer_and_shapes(tmp_path, capsys,
                                                                            nets):
    path = write_config(tmp_path, f"{nets}:OneChannel", dataset="cifar10")
    code, out, err = train(capsys, path, "--out", tmp_path / "run")
    assert code == 2 and "Traceback" not in err
    assert "pre-flight check" in err and "cifar10 batches of shape (20, 3, 32, 32)" in err
    assert "layer 'conv1' (Conv2d(1, 4" in err and "to have 1 channels" in err


@needs_mnist
def test_out_of_memory_in_the_check_names_method_and_batch(tmp_path, capsys, nets,
                                                           monkeypatch):
    from lirpa_diffai.training import preflight

    def exhausted(bm, method):
        def bounds(*args, **kwargs):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9 GiB")
        return bounds
    monkeypatch.setattr(preflight, "box_bounds", exhausted)
    code, out, err = train(capsys, write_config(tmp_path, "conv_small"), "--out",
                           tmp_path / "run")
    assert code == 2
    assert "out of memory in the pre-flight check (method hzono (the configuration's) at eps " \
           "0.1) with batch_size 20" in err


@needs_mnist
def test_the_check_leaves_no_trace(tmp_path, nets, monkeypatch):
    """The same losses and accuracies with and without the check (RNG states and BatchNorm
    statistics restored)."""
    from lirpa_diffai import training
    path = write_config(tmp_path, f"{nets}:BatchNormConv", goal="Mix(Normal, HRand(3), 0.5)")

    def run(name):
        metrics = training.train(str(path), out=str(tmp_path / name), progress=False,
                                 log=lambda *_: None, max_steps=2)
        return [{k: v for k, v in m.items() if k != "seconds"} for m in metrics]
    checked = run("checked")
    monkeypatch.setattr(training.loop, "preflight",
                        lambda model, cfg, x, y: training.wrap_for_training(model, cfg, x))
    assert run("unchecked") == checked


# -------------------------------------------------------------------- untraceable networks

@pytest.mark.parametrize("net, x, operator, where", [
    (SignNet(), torch.randn(2, 4), "onnx::Sign", "the forward of the model itself (SignNet)"),
    (Wrapped(), torch.randn(2, 3, 4), "onnx::LSTM", "module 'encoder.rnn' (LSTM)"),
])
def test_untraceable_networks_raise_unsupported_operator_error(net, x, operator, where, caplog):
    with pytest.raises(lirpa_diffai.UnsupportedOperatorError) as info:
        lirpa_diffai.BoundedModule(net, x)
    message = str(info.value)
    assert f"{operator} in {where}" in message and "register_custom_op" in message
    assert message.count(operator) == 1                # the LSTM's three outputs: one entry
    assert "unsupported operation" not in caplog.text  # auto_LiRPA's own lines are dropped


@needs_mnist
def test_train_refuses_an_untraceable_network_with_an_error_line(tmp_path, capsys, nets):
    code, out, err = train(capsys, write_config(tmp_path, f"{nets}:Recurrent"),
                           "--out", tmp_path / "run")
    assert code == 2 and "Traceback" not in err
    assert err.startswith("error: pre-flight check: preflightnets:Recurrent: auto_LiRPA "
                          "cannot bound 1 operator of this network: onnx::LSTM in module "
                          "'rnn' (LSTM)")


# ---------------------------------------------------------------------------- BatchNorm

@needs_mnist
@pytest.mark.parametrize("network", ["BatchNormMlp", "BatchNormConv"])
def test_batch_norm_networks_train_without_warnings(tmp_path, capsys, nets, network):
    path = write_config(tmp_path, f"{nets}:{network}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, out, err = train(capsys, path, "--out", tmp_path / "run")
    assert code == 0, err
    assert "epoch 1, loss" in out and "BatchNorm1d may raise" not in out
    assert not [w for w in caught if issubclass(w.category, UserWarning)], \
        [str(w.message) for w in caught]


def test_batch_norm_keeps_the_batch_statistics_in_training_mode(nets):
    """The trainer's BoundedModule bounds a BatchNorm1d network in training mode with the
    batch's statistics (the concrete training-mode output lies inside the bounds)."""
    import importlib
    from lirpa_diffai.training.config import parse_config
    from lirpa_diffai.training import build_network, wrap_for_training
    importlib.import_module(nets)
    cfg = parse_config(f"network: {nets}:BatchNormMlp\ndataset: mnist\neps: 0.1\n"
                       "goal: Box\nepochs: 1\n", "x.yaml")
    torch.manual_seed(0)
    model = build_network(cfg).train()
    x = torch.rand(8, 1, 28, 28)
    bm = wrap_for_training(model, cfg, x).train()
    from auto_LiRPA import BoundedTensor, PerturbationLpNorm
    lb, ub = bm.compute_bounds(x=(BoundedTensor(x, PerturbationLpNorm(eps=1e-6)),),
                               method="IBP")
    with torch.no_grad():
        y = model(x)
    assert (lb <= y + 1e-4).all() and (y <= ub + 1e-4).all()
    assert (ub - lb).max() < 1e-2


def test_auto_lirpa_prints_go_to_its_debug_log(capsys):
    """auto_LiRPA's advice about Dropout in eval mode is not printed (BoundedModule handles
    it)."""
    net = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.ReLU(), nn.Linear(4, 2)).eval()
    lirpa_diffai.BoundedModule(net, torch.randn(2, 4))
    assert "CANNOT be parsed" not in capsys.readouterr().out
    from auto_LiRPA import backward_bound, optimized_bounds, perturbations
    from auto_LiRPA.operators import activation
    optimized_bounds.print("\nall verified at 2th iter")
    backward_bound.print("Batched CROWN: unstable size 3")
    for module in (perturbations, activation):
        module.print("layer /1 using full alpha")
    assert capsys.readouterr().out == ""


@needs_mnist
def test_certify_refuses_an_untraceable_network_with_an_error_line(tmp_path, capsys, nets):
    import importlib
    path = tmp_path / "rnn.pth"
    torch.save(importlib.import_module(nets).Recurrent().state_dict(), path)
    code = main(["certify", str(path), "--network", f"{nets}:Recurrent", "--dataset", "mnist",
                 "--eps", "0.1", "--methods", "IBP", "--limit", "2", "--threads", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.startswith("error: auto_LiRPA cannot bound 1 operator of this network: "
                          "onnx::LSTM in module 'rnn' (LSTM)")


@needs_mnist
def test_loss_fusion_is_checked_with_the_other_bound_calls(tmp_path, capsys):
    from lirpa_diffai.training.preflight import FUSED, bound_calls
    from lirpa_diffai.training.config import parse_config
    text = write_config(tmp_path, "conv_small", method="CROWN-IBP", goal="Mix(Point, Box, 0.5)")
    cfg = parse_config(text.read_text() + "loss_fusion: true\n", "c.yaml")
    assert bound_calls(cfg) == [{}, FUSED]
    path = write_config(tmp_path, "conv_small", method="IBP",
                        goal="Mix(Point, Box(fused=True), Until(1, 0, 0.5))", epochs=2)
    code, out, err = train(capsys, path, "--out", tmp_path / "run")
    assert code == 2 and "Traceback" not in err and "epoch 1" not in out
    assert err.startswith("error: pre-flight check: the fused loss bound of method IBP (loss "
                          "fusion) cannot bound conv_small at eps 0.1: loss fusion needs the "
                          "method CROWN-IBP, CROWN-hzono or CROWN, not IBP"), err
    path.write_text(path.read_text().replace("method: \"IBP\"", "method: \"CROWN-IBP\""))
    code, out, err = train(capsys, path, "--out", tmp_path / "run2", "--max-steps", "1")
    assert code == 0, err
