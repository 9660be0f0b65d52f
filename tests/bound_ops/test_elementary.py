"""hzono and pure-zonotope transformers of Exp, Log, Sqrt, Reciprocal, integer Pow, Abs and Div
by a perturbed denominator (lirpa_diffai.bound_ops.elementary): their parallelograms enclose
the function for every slope, have its exact range, and the networks built on them are
bounded soundly (sampled points, corners, PGD aimed at each bound; exact at eps = 0) on each
side of every kink, pole, sign change and domain edge, or refused by node where the range
leaves the domain (never NaN)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lirpa_diffai import BoundedModule, HybridZonotope, UnsupportedOperatorError
from lirpa_diffai.bound_ops import elementary as el
from lirpa_diffai.bound_ops.smooth import smooth_activation
from lirpa_diffai.lirpa03 import activation_pieces as pieces
from tests.soundness.check import Case, run_case
from tests.soundness.methods import METHODS
from tests.support import bounds_of, draw, slow_unless


ACTIVATIONS = {"exp": el.EXP, "log": el.LOG, "sqrt": el.SQRT, "reciprocal": el.RECIPROCAL, "abs": el.ABS,
               **{f"pow{n}": el.power(n) for n in (0, 1, 2, 3, 4)}}

# input ranges (lower, upper) on each side of every kink, pole, sign change and domain edge
RANGES = {
    "exp": [(-5.0, -3.0), (-1.0, 2.0), (3.0, 6.0), (-0.1, -0.1)],
    "log": [(0.0, 1.0), (1e-3, 0.05), (0.5, 4.0), (10.0, 80.0), (2.0, 2.0)],
    "sqrt": [(0.0, 1.0), (1e-4, 0.01), (0.5, 4.0), (3.0, 3.0)],
    "reciprocal": [(-4.0, -0.5), (-0.05, -1e-3), (1e-3, 0.05), (0.5, 4.0), (-2.0, -2.0)],
    "abs": [(-2.0, -0.5), (-1.0, 2.0), (-2.0, 0.5), (0.0, 1.0), (0.5, 2.0), (0.0, 0.0)],
    **{f"pow{n}": [(-2.0, -0.5), (-1.0, 2.0), (-2.0, 0.5), (0.0, 1.0), (0.5, 2.0), (-0.3, -0.3)]
       for n in (0, 1, 2, 3, 4)},
}
CASES = [(name, lo, hi) for name in ACTIVATIONS for lo, hi in RANGES[name]]


def box(lo: float, hi: float, n: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` sub-ranges of ``[lo, hi]`` (each ending at ``hi``), in float64."""
    lower = torch.linspace(lo, hi, n, dtype=torch.float64)
    return lower, torch.full_like(lower, hi)


@pytest.mark.parametrize("name, lo, hi", CASES)
def test_parallelogram_encloses_the_function_and_has_its_exact_range(name, lo, hi):
    act = ACTIVATIONS[name]
    lower, upper = box(lo, hi)
    slope = pieces.zonotope_slope(act, lower, upper)
    low, high = pieces.deviation(act, slope, lower, upper)
    x = lower + (upper - lower) * torch.rand(400, *lower.shape, dtype=torch.float64)
    inside_zero = torch.maximum(lower, torch.minimum(upper, torch.zeros_like(lower)))
    x = torch.cat([x, lower[None], upper[None], inside_zero[None]])
    y = act.fn(x)   # with 0, where the range holds it: the extremum of x^2k and |x|
    assert (y - slope * x >= low - 1e-9).all() and (y - slope * x <= high + 1e-9).all()
    # the parallelogram's interval is f's range: DeepZ's end slope keeps it
    extremes = torch.stack([y.amin(0), y.amax(0)])
    top = torch.maximum(slope * lower, slope * upper) + high
    bottom = torch.minimum(slope * lower, slope * upper) + low
    finite = torch.isfinite(bottom)
    torch.testing.assert_close(bottom[finite], extremes[0][finite], atol=1e-7, rtol=1e-7)
    torch.testing.assert_close(top, extremes[1], atol=1e-7, rtol=1e-7)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_deviation_encloses_the_function_for_any_slope(name):
    act = ACTIVATIONS[name]
    for lo, hi in RANGES[name]:
        lower, upper = box(lo, hi)
        for slope in (torch.randn_like(lower) * 3, pieces.chord_slope(act, lower, upper)):
            low, high = pieces.deviation(act, slope, lower, upper)
            x = lower + (upper - lower) * torch.rand(300, *lower.shape, dtype=torch.float64)
            gap = act.fn(x) - slope * x
            assert (gap >= low - 1e-9).all() and (gap <= high + 1e-9).all(), (name, lo, hi)


def random_zonotope(lo: float, hi: float, rows: int) -> HybridZonotope:
    """A zonotope (2, 5) over ``rows`` symbols with its range inside ``[lo, hi]``."""
    centre = torch.full((2, 5), (lo + hi) / 2, dtype=torch.float64)
    radius = (hi - lo) / 2
    errors = torch.rand(rows, 2, 5, dtype=torch.float64)
    errors = errors / errors.abs().sum(0) * radius * torch.where(torch.rand(rows, 1, 1) < 0.5, -1.0, 1.0)
    return HybridZonotope.from_generators(centre, errors.to(torch.float64)) if rows else \
        HybridZonotope.from_box(centre - radius, centre + radius)


@pytest.mark.parametrize("rows", [0, 3])
@pytest.mark.parametrize("name, lo, hi", CASES)
def test_zonotope_image_holds_every_point_at_its_noise_symbols(name, lo, hi, rows):
    """``f(x(e))`` lies in the image at the same symbols ``e``: within its new box part of
    ``head' + sum_j E'_j e_j``."""
    act = ACTIVATIONS[name]
    z = random_zonotope(lo, hi, rows)
    out = smooth_activation(z, act)
    if rows:
        e = torch.rand(500, rows, 1, 1, dtype=torch.float64) * 2 - 1
        x = z.head + (z.errors[None] * e).sum(1)
        centre = out.head + (out.errors[None] * e).sum(1)
    else:
        x = z.head + z.beta * (torch.rand(500, 2, 5, dtype=torch.float64) * 2 - 1)
        centre = out.head.expand_as(x)
    y = act.fn(x.clamp(lo, hi))  # the range is [lo, hi]; rounding must not leave a domain
    assert ((y - centre).abs() <= out.beta + 1e-9).all(), name
    assert not out.head.isnan().any() and not out.beta.isnan().any()


class Elementwise(nn.Module):
    """``Linear(f(scale * Linear(x) + shift))``: the ranges ``f`` sees lie around ``shift``."""

    def __init__(self, fn, shift: float, scale: float = 0.3):
        super().__init__()
        torch.manual_seed(0)
        self.inner, self.outer = nn.Linear(4, 5), nn.Linear(5, 3)
        self.fn, self.shift, self.scale = fn, shift, scale

    def forward(self, x):
        return self.outer(self.fn(self.scale * self.inner(x) + self.shift))


FUNCTIONS = {"exp": torch.exp, "log": torch.log, "sqrt": torch.sqrt, "reciprocal": torch.reciprocal,
             "abs": torch.abs, "square": lambda x: x ** 2, "cube": lambda x: x ** 3, "pow4": lambda x: x ** 4,
             "divided": lambda x: x / (x[:, :1] + 1.0)}
# (shift, scale) on each side of each function's kink / pole / domain edge, near the pole too
SHIFTS = {"exp": ((-3.0, 0.3), (0.0, 0.3), (3.0, 0.3)), "log": ((0.2, 0.02), (3.0, 0.3)),
          "sqrt": ((0.2, 0.02), (3.0, 0.3)), "reciprocal": ((-2.0, 0.3), (-0.2, 0.02), (0.2, 0.02), (2.0, 0.3)),
          "abs": ((-2.0, 0.3), (0.0, 0.3), (2.0, 0.3)), "square": ((-2.0, 0.3), (0.0, 0.3), (2.0, 0.3)),
          "cube": ((-2.0, 0.3), (0.0, 0.3), (2.0, 0.3)), "pow4": ((-1.0, 0.3), (0.0, 0.3), (1.0, 0.3)),
          "divided": ((-2.0, 0.3), (2.0, 0.3))}
HZONO_METHODS = ["hzono[boxy,rows=0]", "hzono[deepz,rows=all]", "ZBox", "CROWN-hzono"]
NETWORKS = [(name, shift, scale) for name in FUNCTIONS for shift, scale in SHIFTS[name]]


def network_params():
    """Every network; in the quick tier one shift drawn for each function, the others slow."""
    for name, shift, scale in NETWORKS:
        quick = draw(name, [str(s) for s, _ in SHIFTS[name]])
        yield pytest.param(name, shift, scale, marks=slow_unless(str(shift) in quick))


@pytest.mark.parametrize("name, shift, scale", network_params())
def test_every_zonotope_method_bounds_the_function_soundly(name, shift, scale):
    """Sampled points, corners and PGD aimed at each bound, exact at eps = 0."""
    case = Case(Elementwise(FUNCTIONS[name], shift, scale).eval(), torch.randn(2, 4) * 0.5, eps=0.1, seed=0)
    for label in HZONO_METHODS:
        outcome = run_case(case, METHODS[label], False, samples=100, pgd_steps=10, pgd_targets=8)
        crown_refuses = label == "CROWN-hzono" and name in ("cube", "pow4")   # auto_LiRPA relaxes x^2 only
        assert outcome.kind == ("refused" if crown_refuses else "sound"), (name, shift, label, outcome)


@pytest.mark.parametrize("name", ["log", "sqrt", "reciprocal", "divided"])
@pytest.mark.parametrize("method", ["hzono", "HBox", "ZBox", "CROWN-hzono"])
def test_a_range_that_leaves_the_domain_is_refused_by_node(name, method):
    """Ranges across 0 (log, sqrt: NaN below it; 1/x: unbounded): refused, naming the node."""
    net = Elementwise(FUNCTIONS[name], -1.0 if name == "divided" else 0.0, scale=1.0).eval()  # around 0
    x = torch.randn(2, 4)
    bm = BoundedModule(net, x)
    with pytest.raises(UnsupportedOperatorError, match=r"node '[^']+' \(Bound(Log|Sqrt|Reciprocal|Div)\).*domain"):
        bounds_of(bm, x, 1.0, method)


@pytest.mark.parametrize("rows", [0, 2])
def test_log_of_a_range_reaching_zero_is_infinite_below_never_nan(rows):
    """``log 0 = -inf``: the lower bound is -inf (a zonotope holds no half-line, so the upper
    one is +inf too), never NaN."""
    z = HybridZonotope.from_generators(torch.ones(2, 5), torch.full((2, 2, 5), 0.5)) if rows else \
        HybridZonotope.from_box(torch.zeros(2, 5), torch.full((2, 5), 2.0))   # [0, 2]
    lower, upper = smooth_activation(z, el.LOG).concretize()
    assert (lower == -math.inf).all() and not upper.isnan().any()


@pytest.mark.parametrize("rows", [0, 3])
def test_exp_overflow_gives_infinite_bounds_never_nan(rows):
    out = smooth_activation(random_zonotope(80.0, 800.0, rows), el.EXP)
    lower, upper = out.concretize()
    assert not lower.isnan().any() and not upper.isnan().any()
    assert (upper == math.inf).all()


@pytest.mark.parametrize("exponent", [0.5, -1.0, 2.5])
def test_a_pow_other_than_a_non_negative_integer_is_refused_by_node(exponent):
    class Power(nn.Module):
        def forward(self, x):
            return (x.abs() + 1) ** exponent
    x = torch.rand(2, 3)
    with pytest.raises(UnsupportedOperatorError, match=r"node '[^']+' \(BoundPow\) raises to the power"):
        bounds_of(BoundedModule(Power(), x), x, 0.1, "HBox")


class LayerNormLike(nn.Module):
    """``x / sqrt(mean((x - m)^2) + eps)``, and the same with a denominator of unknown sign."""

    def __init__(self, signed: bool = False):
        super().__init__()
        self.signed = signed

    def forward(self, x):
        d = x - x.mean(-1, keepdim=True)
        var = (d * 1.0 if self.signed else d ** 2).mean(-1, keepdim=True)
        return d / torch.sqrt(var + 1e-5) if not self.signed else d / (var + 1e-5)


def test_value_floor_reads_layer_norms_positive_denominator_from_the_graph():
    bm = BoundedModule(LayerNormLike(), torch.randn(2, 6))
    nodes = {type(n).__name__: n for n in bm._modules.values()}
    assert el.value_floor(nodes["BoundPow"]) == 0.0
    assert el.value_floor(nodes["BoundSqrt"]) == pytest.approx(math.sqrt(1e-5))
    assert el.value_floor(nodes["BoundSub"]) == -math.inf
    signed = BoundedModule(LayerNormLike(signed=True), torch.randn(2, 6))
    add = next(n for n in signed._modules.values() if type(n).__name__ == "BoundAdd")
    assert el.value_floor(add) == -math.inf


def test_layer_norms_denominator_is_bounded_where_float32_rounding_hides_its_floor():
    """Inputs of magnitude ~100: a variance's centre and radius in float32 carry rounding
    errors above eps = 1e-5, so its concretized lower bound is not > 0; the graph's floor
    ``sqrt(eps)`` keeps 1 / sqrt(var + eps) bounded (and sound)."""
    case = Case(LayerNormLike().eval(), torch.randn(2, 6) * 100, eps=30.0, seed=0)
    for label in ("hzono[boxy,rows=0]", "HBox", "ZBox"):
        outcome = run_case(case, METHODS[label], False, samples=200, pgd_steps=10, pgd_targets=8)
        assert outcome.kind == "sound", (label, outcome)
