"""Attention's non-linear pieces for every method (lirpa_diffai.lirpa03.attention_ops,
lirpa_diffai.bound_ops.attention): softmax as one node, ReduceMax, and the product of two
perturbed matrices. Each is checked against sampled, corner and PGD points at each bound and
for exactness at eps = 0, on ranges where one element dominates the others and where none
does; the relaxations themselves on grids of boxes. The fuzzer (tests/soundness) runs them too."""
from __future__ import annotations

import math

import pytest
import torch
from auto_LiRPA.operators import BoundReduceMax
from torch import nn

import lirpa_diffai
from lirpa_diffai.lirpa03.attention_ops import (BoundSoftmaxWhole, logsumexp_leaving_out, reduce_max_relaxation,
                                              softmax_from_differences, softmax_interval)
from tests.support import assert_bounds_hold


METHODS = ("IBP", "CROWN-IBP", "CROWN", "alpha-CROWN", "hzono", "HBox", "ZBox", "CROWN-hzono")
# a shift of the first element by 4 makes it dominate at small eps; none dominates without it
SHIFTS = {"dominated": (4.0, 0.0, 0.0, 0.0), "tied": (0.0, 0.0, 0.0, 0.0)}
EPS = {"small": 0.02, "large": 1.0}


class Scored(nn.Module):
    """``head(reduce(x W + shift))`` over inputs (B, 3, 4): ``reduce`` is the operator tested."""

    def __init__(self, reduce, shift, out: int = 3):
        super().__init__()
        torch.manual_seed(0)
        self.w = nn.Linear(4, 4)
        self.shift = torch.tensor(shift)
        self.reduce = reduce
        self.head = nn.LazyLinear(out)

    def forward(self, x):
        return self.head(self.reduce(self.w(x) + self.shift).flatten(1))


REDUCTIONS = {
    "softmax_last": lambda t: torch.softmax(t, -1),
    "softmax_middle": lambda t: torch.softmax(t, 1),
    "amax_last": lambda t: torch.amax(t, -1),
    "max_values_keepdim": lambda t: torch.max(t, -1, keepdim=True).values,
    "amax_middle": lambda t: torch.amax(t, 1),
}


def network(reduction: str, shift: str) -> nn.Module:
    net = Scored(REDUCTIONS[reduction], SHIFTS[shift]).eval()
    x = torch.rand(2, 3, 4)
    net(x)   # materialise the lazy head
    return net


# one element dominating, and none (ties, or a ball wider than the gap); the other two in the slow run
RANGES = [("dominated", "small"), ("tied", "large"),
          pytest.param("dominated", "large", marks=pytest.mark.slow),
          pytest.param("tied", "small", marks=pytest.mark.slow)]


@pytest.mark.parametrize("shift, eps", RANGES)
@pytest.mark.parametrize("reduction", sorted(REDUCTIONS))
def test_every_method_bounds_softmax_and_max_soundly_and_exactly_at_a_point(reduction, shift, eps):
    torch.manual_seed(1)
    net, x = network(reduction, shift), torch.rand(2, 3, 4)
    bm = lirpa_diffai.BoundedModule(net, x)
    for method in METHODS:
        assert_bounds_hold(bm, net, x, EPS[eps], method, samples=32)


def test_softmax_is_one_node_for_every_method():
    """auto_LiRPA 0.3 split softmax into exp(x - max(x)) / sum and CROWN refused its ReduceMax."""
    net, x = network("softmax_last", "tied"), torch.rand(2, 3, 4)
    bm = lirpa_diffai.BoundedModule(net, x)
    kinds = [type(n) for n in bm._modules.values()]
    assert BoundSoftmaxWhole in kinds and BoundReduceMax not in kinds
    for method in ("CROWN", "alpha-CROWN"):
        assert_bounds_hold(bm, net, x, 0.3, method, samples=16)


def test_reduce_max_crown_is_sound():
    """auto_LiRPA 0.3 raised "bound_backward for BoundReduceMax with perturbed maximum indexes is
    not implemented"; where one element dominates, CROWN's bound is the element's own."""
    net, x = network("amax_last", "dominated"), torch.rand(2, 3, 4)
    bm = lirpa_diffai.BoundedModule(net, x)
    assert_bounds_hold(bm, net, x, 0.02, "CROWN")
    assert_bounds_hold(bm, net, x, 1.0, "CROWN")


def boxes(n: int = 400, size: int = 4):
    """Random boxes (n, size): centres in [-3, 3], some of width 0, some dominated, some wide."""
    torch.manual_seed(2)
    centre = torch.rand(n, size) * 6 - 3
    width = torch.rand(n, size) * torch.tensor([0.0, 0.1, 1.0, 6.0]).repeat(n // 4).view(n, 1)
    centre[::3, 0] += 8   # every third box: element 0 dominates
    return centre - width, centre + width


def inside_points(lower, upper, k: int = 64):
    t = torch.rand((k,) + tuple(lower.shape))
    t[: k // 4] = (t[: k // 4] > 0.5).to(t.dtype)   # corners
    return torch.minimum(lower + t * (upper - lower), upper)   # no rounding past the corner


def test_softmax_interval_contains_every_point_and_is_exact_at_points():
    lower, upper = boxes()
    lo, hi = softmax_interval(lower, upper, -1)
    y = torch.softmax(inside_points(lower, upper), -1)
    assert (y >= lo - 1e-6).all() and (y <= hi + 1e-6).all()
    point_lo, point_hi = softmax_interval(lower, lower, -1)
    torch.testing.assert_close(point_lo, torch.softmax(lower, -1))
    torch.testing.assert_close(point_hi, torch.softmax(lower, -1))


def test_softmax_interval_is_the_bound_over_the_differences():
    """The closed form (``n`` per row) equals DeepT's formula over the interval differences
    ``[l_j - u_i, u_j - l_i]`` (``n^2`` per row), to float precision."""
    lower, upper = boxes()
    low = lower.unsqueeze(-2) - upper.unsqueeze(-1)
    high = upper.unsqueeze(-2) - lower.unsqueeze(-1)
    expected = softmax_from_differences(low, high)
    for got, want in zip(softmax_interval(lower, upper, -1), expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_logsumexp_leaving_out_keeps_small_sums():
    """One dominating element: the sum of the others is kept (``log(S - exp(t_i))`` gives 0)."""
    t = torch.tensor([[60.0, -20.0, -20.0]])
    out = logsumexp_leaving_out(t)
    torch.testing.assert_close(out[0, 0], torch.tensor(-20.0 + math.log(2.0)))
    torch.testing.assert_close(out[0, 1:], torch.tensor([60.0, 60.0]))


def test_softmax_interval_never_nan_when_exp_overflows():
    """Nor its gradient (DiffAI's training differentiates the bounds): ``1 / sum exp`` had
    the gradient ``0 * inf`` = NaN where ``exp`` overflowed."""
    lower, upper = torch.tensor([[-1e4, 0.0]], requires_grad=True), torch.tensor([[1e4, 0.0]], requires_grad=True)
    lo, hi = softmax_interval(lower, upper, -1)
    assert not lo.isnan().any() and not hi.isnan().any()
    assert (lo == 0).all() and (hi == 1).all()
    (hi - lo).sum().backward()
    assert lower.grad.isfinite().all() and upper.grad.isfinite().all()


def test_reduce_max_lines_hold_and_dominance_is_exact():
    lower, upper = boxes()
    index, dominated, top = reduce_max_relaxation(lower, upper, 1)
    x = inside_points(lower, upper)
    y = x.amax(-1, keepdim=True)
    chosen = x.gather(-1, index.expand(x.shape[0], -1, -1))
    assert (chosen <= y).all()
    assert torch.where(dominated, chosen >= y, y <= top).all()
    assert dominated[::3][lower[::3, 0] > upper[::3, 1:].amax(-1)].all()
    assert not dominated.all() and dominated.any()
