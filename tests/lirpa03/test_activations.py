"""Today's activations (Hardsigmoid, Hardswish, SiLU, GELU in both forms, ELU, Softplus): one
traced node each, the sound relaxation they share (lirpa_diffai.lirpa03.activation_pieces),
every method on a network of each, and auto_LiRPA's Dropout message gone. The fuzzer
(tests/soundness) runs every method on them too, with PGD, at eps = 0 and in both modes."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from auto_LiRPA import BoundedTensor, PerturbationLpNorm
from auto_LiRPA.operators import BoundMul
from auto_LiRPA.parse_graph import parse_module
from torch import nn

import lirpa_diffai
from lirpa_diffai.lirpa03 import activation_pieces as pieces
from lirpa_diffai.lirpa03.activations import (BoundElu, BoundGelu, BoundHardSigmoid, BoundHardSwish,
                                              BoundSiLU, BoundSoftplusBeta)
from tests.soundness.check import Case, run_case
from tests.soundness.methods import METHODS


MODULES = {
    "hardsigmoid": (nn.Hardsigmoid(), BoundHardSigmoid, pieces.hard_sigmoid(1 / 6, 0.5), (-3.0, 3.0)),
    "hardswish": (nn.Hardswish(), BoundHardSwish, pieces.hard_swish(), (-3.0, -1.5, 0.0, 3.0)),
    "silu": (nn.SiLU(), BoundSiLU, pieces.silu(), (-2.4, pieces.SILU_MINIMUM, 2.4)),
    "gelu": (nn.GELU(), BoundGelu, pieces.gelu("none"), (-1.42, pieces.GELU_ERF[1], 1.42)),
    "gelu_tanh": (nn.GELU(approximate="tanh"), BoundGelu, pieces.gelu("tanh"), (-1.42, pieces.GELU_TANH[1], 1.42)),
    "elu": (nn.ELU(), BoundElu, pieces.elu(1.0), (0.0,)),
    "elu_2": (nn.ELU(2.0), BoundElu, pieces.elu(2.0), (0.0,)),
    "softplus": (nn.Softplus(), BoundSoftplusBeta, pieces.softplus(1.0, 20.0), (0.0,)),
    "softplus_threshold": (nn.Softplus(2.0, 1.0), BoundSoftplusBeta, pieces.softplus(2.0, 1.0), (0.5,)),
}


def ranges(points, widths=(0.0, 1e-3, 0.3, 2.0, 8.0)):
    """Input ranges around, left of and right of each kink / minimum / inflection."""
    lows, highs = [], []
    for p in points:
        for w in widths:
            for lo, hi in ((p - w, p + w), (p - w - 0.01, p - 0.01), (p + 0.01, p + w + 0.01)):
                lows.append(lo)
                highs.append(hi)
    return torch.tensor(lows), torch.tensor(highs)


def grid(lower, upper, n=2001):
    t = torch.linspace(0, 1, n).unsqueeze(1)
    return lower + t * (upper - lower)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_deviation_encloses_every_point_for_any_slope(name):
    module, _, act, points = MODULES[name]
    lower, upper = ranges(points)
    xs = grid(lower, upper)
    ys = module(xs)
    for slope in (pieces.chord_slope(act, lower, upper), pieces.zonotope_slope(act, lower, upper),
                  torch.full_like(lower, -0.7), torch.full_like(lower, 1.3)):
        lo, hi = pieces.deviation(act, slope, lower, upper)
        g = ys - slope * xs
        tol = 1e-5 * (1 + g.abs())
        assert (g >= lo - tol).all() and (g <= hi + tol).all()


@pytest.mark.parametrize("name", sorted(MODULES))
def test_interval_is_exact_and_a_point_is_exact(name):
    module, _, act, points = MODULES[name]
    lower, upper = ranges(points)
    ys = module(grid(lower, upper, 20001))
    lo, hi = pieces.interval(act, lower, upper)
    assert torch.allclose(lo, ys.amin(0), atol=1e-4) and torch.allclose(hi, ys.amax(0), atol=1e-5)
    at = torch.tensor(points)
    slope = pieces.chord_slope(act, at, at)
    lo, hi = pieces.deviation(act, slope, at, at)
    assert torch.allclose(lo + slope * at, module(at), atol=1e-6)
    assert torch.allclose(hi + slope * at, module(at), atol=1e-6)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_infinite_ranges_give_infinite_bounds_never_nan(name):
    module, _, act, _ = MODULES[name]
    lower = torch.tensor([-math.inf, -math.inf, 1.0, -1e38, math.nan])
    upper = torch.tensor([math.inf, 0.0, math.inf, 1e38, 1.0])
    for slope in (pieces.chord_slope(act, lower, upper), pieces.zonotope_slope(act, lower, upper)):
        lo, hi = pieces.deviation(act, slope, lower, upper)
        assert not torch.isnan(lo).any() and not torch.isnan(hi).any() and not torch.isnan(slope).any()
    lo, hi = pieces.interval(act, lower, upper)
    assert (hi[[0, 2]] == module(torch.tensor(math.inf))).all()


@pytest.mark.parametrize("name", sorted(MODULES))
def test_activation_is_one_graph_node(name):
    module, cls, _, _ = MODULES[name]
    net = nn.Sequential(nn.Linear(3, 4), module)
    bm = lirpa_diffai.BoundedModule(net, torch.zeros(2, 3))
    classes = [type(n) for n in bm._modules.values()]
    assert classes.count(cls) == 1 and BoundMul not in classes
    # the symbolics are gone after the trace: torch's own export is unchanged
    ops = [n.op for n in parse_module(nn.Sequential(nn.Linear(3, 4), nn.SiLU()), (torch.zeros(2, 3),))[0]]
    assert "custom::SiLU" not in ops and "onnx::Sigmoid" in ops


def activation_net(module, centre: float) -> nn.Module:
    """``act(Linear(act(x)))`` whose first activation sees inputs around ``centre``."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), module, nn.Linear(6, 3), module)
    with torch.no_grad():
        net[0].weight.mul_(0.3)
        net[0].bias.fill_(centre)
    return net


NETWORK_METHODS = ["IBP", "CROWN", "CROWN-IBP", "alpha-CROWN", "hzono[boxy,rows=0]", "hzono[deepz,rows=all]",
                   "ZNIPS", "CROWN-hzono", "zono-input:CROWN"]


CENTRES = [pytest.param(name, centre, marks=() if k == 0 else pytest.mark.slow, id=f"{name}@{centre:.3g}")
           for name in sorted(MODULES) for k, centre in enumerate(MODULES[name][3])]


@pytest.mark.parametrize("name, centre", CENTRES)
def test_every_method_bounds_a_network_of_it_soundly_across_its_kinks(name, centre):
    """Sampled points, corners and PGD aimed at each bound, eps = 0 exact, eval and training
    mode, with the first activation's inputs centred on a kink (the other kinks: slow)."""
    case = Case(activation_net(MODULES[name][0], centre), torch.randn(2, 4), eps=0.5, seed=0)
    for label in NETWORK_METHODS:
        for training in (False, True):
            outcome = run_case(case, METHODS[label], training, samples=100, pgd_steps=10, pgd_targets=8)
            assert outcome.kind == "sound", (name, centre, label, training, outcome)


def test_dropout_wraps_without_the_misleading_message(capfd):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 2)).eval()
    x = torch.randn(3, 4)
    bm = lirpa_diffai.BoundedModule(net, x)
    out = capfd.readouterr()
    assert "Dropout" not in out.out + out.err and "train() mode" not in out.out + out.err
    xs = x + (torch.rand(500, *x.shape) * 2 - 1) * 0.1
    ys = net(xs.flatten(0, 1)).view(500, 3, 2)
    for method in ("IBP", "CROWN", "hzono"):
        lb, ub = bm.compute_bounds(x=(BoundedTensor(x, PerturbationLpNorm(norm=np.inf, eps=0.1)),), method=method)
        assert (ys >= lb - 1e-5).all() and (ys <= ub + 1e-5).all()


class StochasticDepth(nn.Module):
    """torchvision's stochastic depth, row mode: in training, each sample's branch is dropped
    with probability ``p`` (kept ones scaled by 1 / (1 - p)); in eval, the identity."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training:
            return x
        keep = torch.empty(x.shape[0], *([1] * (x.dim() - 1))).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


@pytest.mark.parametrize("method", ["IBP", "CROWN", "hzono"])
def test_an_eval_network_with_dropout_and_batch_norm_wraps_on_one_image(method):
    """An eval-mode network holding Dropout, BatchNorm and stochastic depth, wrapped on one
    image: auto_LiRPA 0.3 traced all of it in training mode (BatchNorm failed on one image;
    stochastic depth became a random function). Only Dropout is traced in training mode now:
    the bounds contain the eval network's outputs and equal them at eps = 0."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), StochasticDepth(0.5),
                        nn.Flatten(), nn.Dropout(0.5), nn.Linear(12, 2))
    net[1].running_mean.uniform_(-1, 1)
    net = net.eval()
    x = torch.randn(1, 1, 4, 4)
    bm = lirpa_diffai.BoundedModule(net, x)
    assert not any(m.training for m in net.modules())
    xs = x + (torch.rand(300, *x.shape) * 2 - 1) * 0.1
    ys = net(xs.flatten(0, 1)).view(300, 1, 2)
    lb, ub = bm.compute_bounds(x=(BoundedTensor(x, PerturbationLpNorm(norm=np.inf, eps=0.1)),), method=method)
    assert (ys >= lb - 1e-5).all() and (ys <= ub + 1e-5).all()
    lb0, ub0 = bm.compute_bounds(x=(BoundedTensor(x, PerturbationLpNorm(norm=np.inf, eps=0.0)),), method=method)
    torch.testing.assert_close(lb0, net(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ub0, net(x), atol=1e-5, rtol=1e-5)
