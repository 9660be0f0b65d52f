"""ShuffleNetV2's operators (``chunk``, ``split``, ``Gather`` / ``index_select`` with negative and
repeated indices, ``Expand``, the channel shuffle), ``Conv1d``, ``ConvTranspose2d`` with every
setting and ``AdaptiveAvgPool2d`` to any output size (lirpa03.fixes_indexing,
lirpa03.fixes_convolution, lirpa03.adaptive_pool, and the hzono / pure-zonotope transformers):
each is bounded by every method, soundly (sampled points, corners and PGD aimed at each bound)
and exactly at eps = 0, between convolutions in patches mode."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
import torch
from auto_LiRPA import BoundedTensor, PerturbationLpNorm
from torch import nn

from lirpa_diffai import BoundedModule
from tests.support import Lambda
from tests.soundness.check import Case, run_case
from tests.soundness.methods import METHODS


QUICK = ("IBP", "HBox", "CROWN")
LABELS = [pytest.param(label, marks=() if label in QUICK else (pytest.mark.slow,)) for label in (
    "IBP", "hzono[boxy,rows=0]", "HBox", "ZBox", "hzono[deepz,rows=all]", "CROWN-IBP", "CROWN", "alpha-CROWN",
    "CROWN-hzono", "forward", "forward+backward")]
WITNESS = {"samples": 100, "pgd_steps": 8, "pgd_targets": 8}
# (case, method) -> the operator refused by node: auto_LiRPA 0.3's forward mode has no rule for
# Squeeze (``unbind`` traces into Split and Squeeze), outside these fixes
REFUSED = {("unbind", "forward"): "Squeeze", ("unbind", "forward+backward"): "Squeeze"}


class Between(nn.Module):
    """``op`` between a ReLU convolution and a 1x1 convolution with a linear head: coefficients
    reach ``op`` as patches (CROWN's default mode), and its input straddles 0."""

    def __init__(self, op, width: int = 8, out_width: int = 8, channels: int = 4):
        super().__init__()
        self.op = op
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.mix = nn.Conv2d(channels, 3, 1)
        self.head = nn.Linear(3 * 8 * out_width, 3)

    def forward(self, x):
        return self.head(self.mix(torch.relu(self.op(self.conv(x) - 0.2))).flatten(1))


def channel_shuffle(x):
    n, c, h, w = x.shape
    return x.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)


SELECTIONS = {
    "chunk": lambda x: torch.cat(x.chunk(2, 1)[::-1], 1),
    "chunk of 3 on height": lambda x: torch.cat([x.chunk(3, 2)[2]] * 3 + [x[:, :, :2]], 2),
    "index_select repeated": lambda x: torch.index_select(x, 1, torch.tensor([3, 0, 0, 2])),
    "negative indices": lambda x: x[:, torch.tensor([-1, 1, -4, 2])],
    "negative indices on width": lambda x: x[:, :, :, torch.tensor([-1, 1, -8, 2, 0, 0, 7, -3])],
    "scalar negative index": lambda x: torch.stack([x[:, -2], x[:, 0], x[:, -1], x[:, -2]], 1),
}
COPIES = {
    "split": lambda x: torch.cat([x.split(1, 1)[2]] * 4, 1),
    "split sizes": lambda x: torch.cat(x.split([1, 3], 1)[::-1], 1),
    "unbind": lambda x: torch.stack(x.unbind(1)[::-1], 1),
    "expand_as": lambda x: x[:, 1:2].expand_as(x) - x,
    "expand -1": lambda x: x[:, -1:].expand(-1, 4, -1, -1) + x,
    "channel shuffle": channel_shuffle,
}


@lru_cache(maxsize=None)
def case_of(group: str, name: str) -> Case:
    """One case per network, shared by the methods (traced once per set of options, witnesses
    computed once)."""
    torch.manual_seed(0)
    if group == "selection":
        model, x = Between(Lambda(SELECTIONS[name])), torch.rand(2, 3, 8, 8)
    elif group == "copy":
        model, x = Between(Lambda(COPIES[name])), torch.rand(2, 3, 8, 8)
    elif group == "convolution":
        model, x = CONVOLUTIONS[name](), torch.rand(2, 3, 4, 4) - 0.3
    else:
        make, (h, w) = POOLS[name]
        model, x = make(), torch.rand(2, 3, h, w)
    return Case(model.eval(), x, 0.05, 0)


def assert_sound(case: Case, label: str, refused: str = "") -> None:
    """Sound and exact at eps = 0, or (``refused``: that operator) refused by node."""
    outcome = run_case(case, METHODS[label], False, **WITNESS)
    if refused:
        assert outcome.kind == "refused" and f"operator {refused}" in outcome.detail, (label, outcome)
    else:
        assert outcome.kind == "sound", (label, outcome)


@pytest.mark.parametrize("label", LABELS)
@pytest.mark.parametrize("name", sorted(SELECTIONS))
def test_gather_with_any_indices_is_bounded_by_every_method(name, label):
    assert_sound(case_of("selection", name), label)


@pytest.mark.parametrize("label", LABELS)
@pytest.mark.parametrize("name", sorted(COPIES))
def test_split_and_expand_are_bounded_by_every_method(name, label):
    assert_sound(case_of("copy", name), label, REFUSED.get((name, label), ""))


class Conv1dNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv1d(3, 4, 3, stride=2, padding=1, dilation=2)
        self.b = nn.Conv1d(4, 4, 2, groups=2, padding=1)
        self.head = nn.Linear(4 * 8, 3)

    def forward(self, x):
        return self.head(self.b(torch.relu(self.a(x.flatten(2)[:, :, :16]))).flatten(1))


def transposed(**settings) -> nn.Module:
    """A ReLU convolution, the transposed one, a convolution after it (patches mode)."""
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.ConvTranspose2d(4, 4, 3, **settings), nn.ReLU(),
                         nn.Conv2d(4, 2, 3), nn.Flatten())


CONVOLUTIONS = {
    "Conv1d": Conv1dNet,
    "ConvTranspose2d padding": lambda: transposed(stride=2, padding=1),
    "ConvTranspose2d output_padding": lambda: transposed(stride=2, padding=1, output_padding=1),
    "ConvTranspose2d dilation": lambda: transposed(dilation=2),
    "ConvTranspose2d groups, stride (1, 2)": lambda: transposed(groups=2, stride=(1, 2)),
    "ConvTranspose2d plain": lambda: transposed(stride=2),
}


@pytest.mark.parametrize("label", LABELS)
@pytest.mark.parametrize("name", sorted(CONVOLUTIONS))
def test_convolutions_of_every_setting_are_bounded_by_every_method(name, label):
    assert_sound(case_of("convolution", name), label)


def vgg_pool(output, flat: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(output),
                         nn.Conv2d(4, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(flat, 3))


POOLS = {  # (network, input side(s)); VGG's (7, 7) on an even 14 x 14 and an uneven 9 x 9 map
    "(7, 7) on 14 x 14": (lambda: vgg_pool((7, 7), 98), (14, 14)),
    "(7, 7) on 9 x 9": (lambda: vgg_pool((7, 7), 98), (9, 9)),
    "(2, 3) on 5 x 7": (lambda: vgg_pool((2, 3), 12), (5, 7)),
}


@pytest.mark.parametrize("label", LABELS)
@pytest.mark.parametrize("name", sorted(POOLS))
def test_adaptive_average_pool_of_any_size_is_bounded_by_every_method(name, label):
    assert_sound(case_of("pool", name), label)


def test_an_uneven_adaptive_pool_is_one_node_and_an_even_one_an_average_pool():
    kinds = {}
    for side in (14, 9):
        bm = BoundedModule(nn.Sequential(nn.AdaptiveAvgPool2d((7, 7)), nn.Flatten()), torch.rand(1, 2, side, side))
        kinds[side] = {type(n).__name__ for n in bm._modules.values()}
    assert "BoundAveragePool" in kinds[14] and "BoundAdaptiveAvgPool2d" in kinds[9]


@pytest.mark.parametrize("name, fn", [
    ("gather", lambda x: x[:, torch.tensor([-1, 3])]),
    ("chunk", lambda x: torch.cat([x.chunk(2, 1)[1][:, 1:], x[:, 3:]], 1)),
    ("split", lambda x: torch.cat([x.split(1, 1)[3], x[:, -1:]], 1)),
    ("expand", lambda x: x[:, 3:].expand(-1, 2, -1, -1)),
])
def test_the_zonotope_index_maps_keep_their_rows(name, fn):
    """The transformers are exact: the index map moves each element's error rows with it, so
    two copies of one input element (channel 3) cancel, ``y[:, 0] - y[:, 1] = 0``, in HBox (one
    row per input element); IBP's boxes give ``[-2 eps, 2 eps]``."""
    class Difference(nn.Module):
        def forward(self, x):
            y = fn(x)
            return (y[:, 0] - y[:, 1]).flatten(1)
    torch.manual_seed(0)
    x = torch.rand(2, 4, 3, 3)
    bm = BoundedModule(Difference(), x)
    ball = BoundedTensor(x, PerturbationLpNorm(norm=np.inf, eps=0.1))
    lb, ub = bm.compute_bounds(x=(ball,), method="HBox")
    assert torch.allclose(lb, torch.zeros_like(lb), atol=1e-6) and torch.allclose(ub, torch.zeros_like(ub), atol=1e-6)
    lb, ub = bm.compute_bounds(x=(ball,), method="IBP")
    assert torch.allclose(ub - lb, torch.full_like(lb, 0.4))


def test_identity_node_is_the_value_itself():
    """A graph whose output is its input traces into ``Identity``: hzono's bounds are the box."""
    x = torch.rand(2, 5)
    bm = BoundedModule(nn.Identity(), x)
    assert any(type(n).__name__ == "BoundIdentity" for n in bm._modules.values())
    for method in ("hzono", "HBox", "ZBox"):
        lb, ub = bm.compute_bounds(x=(BoundedTensor(x, PerturbationLpNorm(norm=np.inf, eps=0.1)),), method=method)
        assert torch.allclose(lb, x - 0.1) and torch.allclose(ub, x + 0.1)
