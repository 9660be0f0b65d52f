"""Bounds overflow to +-inf, never NaN, for every method (issue 20, item 5): a 30-layer MLP
and a 12-layer CNN with BatchNorm (eval and training mode) at random initialisation, at
eps = 10 (wide, finite) and eps = 1e38 (overflowing float32). Each bound holds at the
clean point; a refusal is accepted only by graph node and operator (auto_LiRPA's forward
mode has no BatchNorm)."""
import re

import numpy as np
import pytest
import torch
from auto_LiRPA import BoundedTensor, PerturbationLpNorm
from torch import nn

import lirpa_diffai


METHODS = ["IBP", "hzono", "CROWN-IBP", "CROWN", "forward", "CROWN-hzono"]


def deep_mlp(depth: int = 30, width: int = 16) -> nn.Sequential:
    layers = [nn.Flatten(), nn.Linear(12, width), nn.ReLU()]
    for _ in range(depth - 2):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 3))


def deep_bn_cnn(depth: int = 12, channels: int = 4) -> nn.Sequential:
    """Conv -> BatchNorm -> ReLU, ``depth`` times, with running statistics and scales drawn
    away from the identity (negative scales included)."""
    layers, c_in = [], 3
    for _ in range(depth):
        bn = nn.BatchNorm2d(channels)
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.01, 1)
        bn.weight.data.uniform_(-2, 2)
        layers += [nn.Conv2d(c_in, channels, 3, padding=1), bn, nn.ReLU()]
        c_in = channels
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels * 16, 3))


CASES = {"mlp30": (deep_mlp, (2, 3, 2, 2), False), "cnn12_bn": (deep_bn_cnn, (2, 3, 4, 4), False),
         "cnn12_bn_train": (deep_bn_cnn, (2, 3, 4, 4), True)}


@pytest.fixture(scope="module")
def bounded():
    made = {}
    for name, (build, shape, training) in CASES.items():
        torch.manual_seed(0)
        net, x = build().train(training), torch.rand(*shape)
        made[name] = (net, x, lirpa_diffai.BoundedModule(net, x).train(training))
    return made


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_bounds_overflow_to_infinity_never_nan(bounded, case, method):
    net, x, bm = bounded[case]
    infinite = False
    for eps in (10.0, 1e38):
        box = BoundedTensor(x, PerturbationLpNorm(norm=np.inf, eps=eps))
        try:
            lb, ub = bm.compute_bounds(x=(box,), method=method)
        except NotImplementedError as refusal:
            assert method == "forward" and "bn" in case, refusal
            assert re.search(r"graph node '[^']+' \(operator BatchNormalization", str(refusal)), refusal
            return
        assert not lb.isnan().any() and not ub.isnan().any(), (case, method, eps)
        y = net(x)
        assert (lb <= y).all() and (y <= ub).all(), (case, method, eps)
        infinite |= bool(lb.isinf().any() or ub.isinf().any())
    if method in ("IBP", "hzono"):  # the interval domains overflow at 1e38 on every case
        assert infinite, (case, method)
