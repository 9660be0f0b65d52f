"""hzono transformers of attention (lirpa_diffai.bound_ops.attention and hybrid_zono.product
with ``torch.matmul``) on zonotopes with shared rows: every point of the input zonotope,
sampled and at PGD points in noise space aimed at each output bound, maps inside the
result; points (radius 0) map exactly; one element dominating and none."""
from __future__ import annotations

import pytest
import torch

from lirpa_diffai import hybrid_zono as hz
from lirpa_diffai.bound_ops.attention import (SOFTMAX_BOUNDS, difference_bounds, pairwise_differences,
                                             reduce_max_zonotope)


def zonotope(shape, rows: int, scale: float, dominant: float = 0.0, seed: int = 0):
    """A hybrid zonotope (B, ..., n) with ``rows`` shared rows; ``dominant`` added to the first
    element along the last axis."""
    g = torch.Generator().manual_seed(seed)
    head = torch.randn(shape, generator=g)
    head[..., 0] += dominant
    beta = torch.rand(shape, generator=g) * scale
    errors = torch.randn((rows,) + tuple(shape), generator=g) * scale if rows else None
    return hz.HybridZonotope.from_generators(head, errors, beta) if rows else hz.HybridZonotope(head, beta)


def point_of(z, e, b):
    """The point of ``z`` at noise ``e`` (rows) and ``b`` (box part), both in [-1, 1]."""
    rows = 0 if z.errors is None else torch.einsum("m,m...->...", e, z.errors)
    return z.head + z.beta * b + rows


def noise(z, n: int, g):
    m = max(z.num_errors, 1)
    e = torch.rand((n, m), generator=g) * 2 - 1
    b = torch.rand((n,) + tuple(z.shape), generator=g) * 2 - 1
    e[: n // 4], b[: n // 4] = e[: n // 4].sign(), b[: n // 4].sign()   # corners
    return e, b


def attacked(fn, z, out_index, sign, steps=10):
    """PGD over the noise pushing output element ``out_index`` (flat) up (sign 1) or down."""
    m = max(z.num_errors, 1)
    e = torch.zeros(m, requires_grad=True)
    b = torch.zeros(z.shape, requires_grad=True)
    for _ in range(steps):
        value = fn(point_of(z, e[: z.num_errors], b)).flatten()[out_index] * sign
        ge, gb = torch.autograd.grad(value, (e, b), allow_unused=True, materialize_grads=True)
        with torch.no_grad():
            e.add_(0.5 * ge.sign()).clamp_(-1, 1)
            b.add_(0.5 * gb.sign()).clamp_(-1, 1)
    return point_of(z, e[: z.num_errors].detach(), b.detach())


def assert_encloses(fn, z, out, samples=256):
    g = torch.Generator().manual_seed(1)
    lower, upper = out.concretize()
    e, b = noise(z, samples, g)
    points = [torch.vmap(lambda ei, bi: point_of(z, ei[: z.num_errors], bi))(e, b)]
    flat = lower.numel()
    for j in range(0, flat, max(flat // 6, 1)):
        points += [attacked(fn, z, j, 1.0).unsqueeze(0), attacked(fn, z, j, -1.0).unsqueeze(0)]
    with torch.no_grad():
        ys = torch.vmap(fn)(torch.cat(points))
    tol = 1e-5 * (1 + torch.maximum(lower.abs(), upper.abs()))
    assert (ys >= lower - tol).all() and (ys <= upper + tol).all()


CASES = {"dominated": 6.0, "none": 0.0}


@pytest.mark.parametrize("bound", sorted(SOFTMAX_BOUNDS))
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("rows", [0, 5])
@pytest.mark.parametrize("scale", [0.05, 1.0])
def test_softmax_zonotope_encloses_every_point(bound, case, rows, scale):
    softmax_zonotope = SOFTMAX_BOUNDS[bound]
    z = zonotope((2, 3, 4), rows, scale, CASES[case])
    assert_encloses(lambda t: torch.softmax(t, -1), z, softmax_zonotope(z, 2))
    middle = zonotope((2, 4, 3), rows, scale, CASES[case])
    assert_encloses(lambda t: torch.softmax(t, 1), middle, softmax_zonotope(middle, 1))


@pytest.mark.parametrize("bound", sorted(SOFTMAX_BOUNDS))
def test_softmax_zonotope_cancels_shared_rows(bound):
    """A shift shared by every element (one row) leaves softmax unchanged: exact, where the
    interval of the arguments alone is not."""
    head = torch.randn(2, 4)
    z = hz.HybridZonotope.from_generators(head, torch.ones(1, 2, 4) * 3.0)
    lower, upper = SOFTMAX_BOUNDS[bound](z, 1).concretize()
    torch.testing.assert_close(lower, torch.softmax(head, 1))
    torch.testing.assert_close(upper, torch.softmax(head, 1))


@pytest.mark.parametrize("bound", sorted(SOFTMAX_BOUNDS))
def test_softmax_of_one_element_is_one(bound):
    z = zonotope((2, 3, 1), 3, 1.0)
    lower, upper = SOFTMAX_BOUNDS[bound](z, 2).concretize()
    assert (lower == 1).all() and (upper == 1).all()


@pytest.mark.parametrize("rows", [0, 5])
def test_pairwise_softmax_lies_inside_the_shifted_one(rows):
    """DeepT's differences bound each ``x_j - x_i`` by ``beta_i + beta_j + |e_j - e_i|``, at
    most what the shifted bound and the box take, so its box lies inside theirs."""
    z = zonotope((2, 6, 7), rows, 0.5, seed=11)
    pair_lower, pair_upper = SOFTMAX_BOUNDS["pairwise"](z, 2).concretize()
    shift_lower, shift_upper = SOFTMAX_BOUNDS["shifted"](z, 2).concretize()
    assert (pair_lower >= shift_lower - 1e-6).all() and (pair_upper <= shift_upper + 1e-6).all()
    assert rows == 0 or (pair_upper - pair_lower).sum() < (shift_upper - shift_lower).sum()


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("rows", [0, 5])
@pytest.mark.parametrize("scale", [0.05, 1.0])
def test_reduce_max_zonotope_encloses_every_point(case, rows, scale):
    z = zonotope((2, 3, 4), rows, scale, CASES[case])
    assert_encloses(lambda t: t.amax(-1, keepdim=True), z, reduce_max_zonotope(z, 2))
    assert_encloses(lambda t: t.amax(1, keepdim=True), z, reduce_max_zonotope(z, 1))


def test_reduce_max_of_a_dominating_element_keeps_its_rows():
    z = zonotope((2, 3, 4), 5, 0.05, dominant=8.0)
    out = reduce_max_zonotope(z, 2)
    torch.testing.assert_close(out.errors, z.errors[..., :1])
    torch.testing.assert_close(out.head, z.head[..., :1])


@pytest.mark.parametrize("shapes", [((2, 3, 4), (2, 4, 5)), ((2, 2, 3, 4), (2, 2, 4, 3))])
@pytest.mark.parametrize("scale", [0.05, 1.0])
def test_matmul_of_two_zonotopes_encloses_every_point(shapes, scale):
    """``x @ y`` with shared rows (x and y read the same symbols, as q and k do)."""
    x = zonotope(shapes[0], 4, scale, seed=3)
    y_head = torch.randn(shapes[1])
    y_rows = torch.randn((4,) + shapes[1]) * scale
    y = hz.HybridZonotope(y_head, torch.rand(shapes[1]) * scale, y_rows, x.ids)
    out = hz.product(x, y, torch.matmul)
    g = torch.Generator().manual_seed(4)
    lower, upper = out.concretize()
    for _ in range(256):
        e = torch.rand(4, generator=g) * 2 - 1
        bx, by = (torch.rand(s, generator=g) * 2 - 1 for s in shapes)
        value = point_of(x, e, bx) @ point_of(y, e, by)
        assert (value >= lower - 1e-5).all() and (value <= upper + 1e-5).all()


def test_matmul_of_two_points_is_exact():
    x, y = torch.randn(2, 3, 4), torch.randn(2, 4, 5)
    out = hz.product(hz.HybridZonotope.from_point(x), hz.HybridZonotope.from_point(y), torch.matmul)
    lower, upper = out.concretize()
    torch.testing.assert_close(lower, x @ y)
    torch.testing.assert_close(upper, x @ y)


@pytest.mark.parametrize("axis", [1, 2])
@pytest.mark.parametrize("rows", [0, 3])
def test_difference_bounds_are_those_of_the_difference_zonotope(axis, rows):
    """The L1 distances of the rows (torch.cdist) give the concretization of the explicit
    zonotope of the differences ``x_j - x_i`` (its rows ``e_rj - e_ri``, its box part
    ``beta_i + beta_j``), to float precision."""
    z = zonotope((2, 4, 5), rows, 0.3, seed=rows + axis)
    lower, upper = difference_bounds(z, axis)
    explicit = z.linear_map(lambda t: pairwise_differences(t, axis), None,
                            lambda t: t.movedim(axis, -1).unsqueeze(-2) + t.movedim(axis, -1).unsqueeze(-1))
    low, high = explicit.concretize()
    torch.testing.assert_close(lower, low, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(upper, high, rtol=1e-5, atol=1e-5)
