"""Activations of today's networks as convex / concave / linear pieces, and the one sound
relaxation every bound method builds from them.

An :class:`Activation` ``f`` is the concatenation of :class:`Piece` s on closed intervals
``[start, end]`` (neighbours share an end point), each smooth and convex, concave or linear
on its interval, with its own formula (a piece may end in a jump: Softplus with a threshold).
For any slope ``k`` and input range ``[l, u]``, :func:`deviation` returns sound bounds
``lo <= f(x) - k x <= hi`` on ``[l, u]``, so that ``k x + lo <= f(x) <= k x + hi``: a
parallelogram, sound whatever ``k`` is (the slope only decides how tight it is). Per piece
``[a, b] = [l, u] ∩ [start, end]`` and ``g(x) = f(x) - k x``:

- the extremes at the ends, ``g(a)`` and ``g(b)``, are exact;
- a convex piece's minimum may lie inside: it is at least the value where the tangents at the
  two ends meet, ``g(a) + g'(a) t`` with ``t = (g(b) - g(a) - g'(b) (b - a)) / (g'(a) - g'(b))``
  (when ``g'(a) < 0 < g'(b)``; else ``g`` is monotone there and an end is the minimum), since
  a convex ``g`` lies above both tangents; a concave piece's maximum likewise from above.

Pieces are split at a non-monotone function's minimum as well, so that with ``k = 0`` every
piece is monotone and the interval (:func:`interval`) is exact. Non-finite ranges (overflow)
give infinite bounds, never NaN.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
import torch.nn.functional as F

Tensor = torch.Tensor
INF = math.inf


@dataclass(frozen=True)
class Piece:
    """``f`` on ``[start, end]``: ``curvature`` is ``"convex"``, ``"concave"`` or ``"linear"``;
    ``derivative`` is the piece's own ``f'``; ``fn`` the piece's formula where it differs from
    the activation's (after a jump: then the piece is ``(start, end]``, ``open_start``, and its
    value at ``start`` is the limit from the right)."""
    start: float
    end: float
    curvature: str
    derivative: Callable[[Tensor], Tensor]
    fn: Optional[Callable[[Tensor], Tensor]] = None
    open_start: bool = False


@dataclass(frozen=True)
class Activation:
    """``fn`` as the network computes it (torch's own function), its pieces, and how
    :func:`zonotope_slope` picks the zonotope slope: ``monotone`` (non-increasing or
    non-decreasing) or ``keeps_interval`` (its extremum at a piece boundary: ``x^2``, ``|x|``):
    DeepZ's end slope; otherwise the chord."""
    name: str
    params: tuple
    fn: Callable[[Tensor], Tensor] = field(compare=False)
    pieces: tuple = field(compare=False)
    monotone: bool = field(compare=False)
    keeps_interval: bool = field(default=False, compare=False)

    def derivative(self, x: Tensor) -> Tensor:
        """``f'(x)``; at a piece boundary the smaller of the one-sided derivatives."""
        slopes = [torch.where((x >= p.start) & (x <= p.end), p.derivative(x), INF) for p in self.pieces]
        return torch.stack(slopes).amin(0)


def tangent_meet_low(ga: Tensor, gb: Tensor, sa: Tensor, sb: Tensor, width: Tensor) -> Tensor:
    """A lower bound of a convex ``g`` on ``[a, a + width]`` from its end values ``ga, gb`` and
    end slopes ``sa, sb``: an end value where ``g`` is monotone (``sa >= 0``: ``ga``;
    ``sb <= 0``: ``gb``), else where the two tangents meet, ``ga + sa t`` with
    ``t = (gb - ga - sb width) / (sa - sb)``."""
    dipping = (sa < 0) & (sb > 0)
    denominator = torch.where(dipping, sa - sb, -torch.ones_like(sa))
    meet = ga + sa * ((gb - ga - sb * width) / denominator)
    return torch.where(dipping, torch.minimum(meet, torch.minimum(ga, gb)),
                       torch.where(sa >= 0, ga, gb))


def piece_bounds(act: Activation, piece: Piece, slope: Tensor, lower: Tensor, upper: Tensor):
    """``(inside, lo, hi)``: whether ``[lower, upper]`` meets the piece, and bounds of
    ``f(x) - slope x`` on their intersection (see the module docstring)."""
    fn = piece.fn or act.fn
    a = lower.clamp(min=piece.start)
    b = torch.maximum(upper.clamp(max=piece.end), a)
    inside = (lower <= piece.end) & ((upper > piece.start) if piece.open_start else (upper >= piece.start))
    ga, gb = fn(a) - slope * a, fn(b) - slope * b
    lo, hi = torch.minimum(ga, gb), torch.maximum(ga, gb)
    if piece.curvature != "linear":
        sa, sb = piece.derivative(a) - slope, piece.derivative(b) - slope
        if piece.curvature == "convex":
            lo = torch.minimum(lo, tangent_meet_low(ga, gb, sa, sb, b - a))
        else:
            hi = torch.maximum(hi, -tangent_meet_low(-ga, -gb, -sa, -sb, b - a))
    return inside, lo, hi


def deviation(act: Activation, slope: Tensor, lower: Tensor, upper: Tensor) -> tuple[Tensor, Tensor]:
    """Sound ``(lo, hi)`` with ``lo <= f(x) - slope x <= hi`` for ``x`` in ``[lower, upper]``.

    A non-finite end (overflow) takes slope 0 and is evaluated at the largest finite float
    (every activation here has a finite limit at -inf); ``hi`` is ``f(+inf)`` where
    ``upper = +inf``; a NaN that remains becomes the infinite bound."""
    finite = torch.isfinite(lower) & torch.isfinite(upper)
    slope = torch.where(finite, slope, torch.zeros_like(slope))
    big = torch.finfo(lower.dtype).max
    low, high = lower.nan_to_num(-INF).clamp(-big, big), upper.nan_to_num(INF).clamp(-big, big)
    lo, hi = torch.full_like(low, INF), torch.full_like(low, -INF)
    for piece in act.pieces:
        inside, p_lo, p_hi = piece_bounds(act, piece, slope, low, high)
        lo = torch.where(inside, torch.minimum(lo, p_lo), lo)
        hi = torch.where(inside, torch.maximum(hi, p_hi), hi)
    hi = torch.where(upper == INF, torch.maximum(hi, act.fn(torch.full_like(hi, INF))), hi)
    return lo.nan_to_num(-INF, neginf=-INF), hi.nan_to_num(INF, posinf=INF)


def interval(act: Activation, lower: Tensor, upper: Tensor) -> tuple[Tensor, Tensor]:
    """The interval ``[min f, max f]`` over ``[lower, upper]`` (``deviation`` with slope 0;
    exact, as every piece is monotone)."""
    return deviation(act, torch.zeros_like(lower), lower, upper)


def chord_slope(act: Activation, lower: Tensor, upper: Tensor) -> Tensor:
    """``(f(u) - f(l)) / (u - l)``; ``f'`` at the center where the range is (nearly) a point."""
    width = upper - lower
    wide = width > 1e-6 * (1 + lower.abs())
    chord = (act.fn(upper) - act.fn(lower)) / torch.where(wide, width, torch.ones_like(width))
    return torch.where(wide, chord, act.derivative((lower + upper) / 2)).nan_to_num(0.0, 0.0, 0.0)


def end_slope(act: Activation, lower: Tensor, upper: Tensor) -> Tensor:
    """DeepZ's slope (Singh et al., NeurIPS 2018): the minimal-area parallelogram among those
    whose interval is ``f``'s exact range. Where ``f'(l)`` and ``f'(u)`` have one sign (``f``
    monotone on ``[l, u]``), the derivative of smallest magnitude on ``[l, u]``,
    ``lam = argmin |f'|``, found at an end or at a piece boundary inside (``f'`` is monotone
    on each convex / concave piece): ``min(f'(l), f'(u))`` for sigmoid-like ``f``, 0 for ``x^3``
    across 0. ``f(x) - lam x`` is then monotone as ``f`` is, so the offsets are the ends'
    ``f(l) - lam l``, ``f(u) - lam u`` and the interval is ``[f(l), f(u)]``. Where they differ
    in sign (``x^2``, ``|x|`` across 0) only ``lam = 0`` keeps the range's lower bound: the box
    ``[min f, max f]``. An infinite or NaN derivative (at a domain edge, on overflow) gives 0."""
    at_lower, at_upper = act.derivative(lower), act.derivative(upper)
    candidates = [at_lower, at_upper]
    for point in sorted({p.start for p in act.pieces} | {p.end for p in act.pieces}):
        if math.isfinite(point):
            inside = (lower < point) & (point < upper)
            candidates.append(torch.where(inside, act.derivative(torch.full_like(lower, point)), INF))
    stacked = torch.stack(candidates)
    slope = stacked.gather(0, stacked.abs().nan_to_num(INF).argmin(0, keepdim=True))[0]
    slope = torch.where(at_lower * at_upper >= 0, slope, torch.zeros_like(slope))
    return slope.nan_to_num(0.0, 0.0, 0.0)


def zonotope_slope(act: Activation, lower: Tensor, upper: Tensor) -> Tensor:
    """:func:`end_slope` for a monotone ``f`` or one that ``keeps_interval``; the chord slope
    for a smooth function with a minimum inside a piece (SiLU, GELU, Hardswish)."""
    if act.monotone or act.keeps_interval:
        return end_slope(act, lower, upper)
    return chord_slope(act, lower, upper)


# ------------------------------------------------------------------------ the activations
def linear_piece(start: float, end: float, slope: float, fn=None) -> Piece:
    return Piece(start, end, "linear", lambda x: torch.full_like(x, slope), fn)


def hard_sigmoid(alpha: float = 0.2, beta: float = 0.5) -> Activation:
    """ONNX ``HardSigmoid``: ``max(0, min(1, alpha x + beta))`` (``nn.Hardsigmoid``: 1/6, 1/2),
    linear between its kinks ``-beta / alpha`` and ``(1 - beta) / alpha``."""
    if alpha == 1 / 6 and beta == 0.5:
        fn = F.hardsigmoid
    else:
        def fn(x):
            return (alpha * x + beta).clamp(0, 1)
    if alpha == 0:
        return Activation("HardSigmoid", (alpha, beta), fn, (linear_piece(-INF, INF, 0.0),), True)
    k1, k2 = sorted((-beta / alpha, (1 - beta) / alpha))
    pieces = (linear_piece(-INF, k1, 0.0), linear_piece(k1, k2, alpha), linear_piece(k2, INF, 0.0))
    return Activation("HardSigmoid", (alpha, beta), fn, pieces, alpha > 0)


def hard_swish() -> Activation:
    """``x relu6(x + 3) / 6``: 0 up to -3, the convex ``x (x + 3) / 6`` (minimum -3/8 at
    -3/2) up to 3, the identity after."""
    def middle(x):
        return (2 * x + 3) / 6
    pieces = (linear_piece(-INF, -3.0, 0.0), Piece(-3.0, -1.5, "convex", middle),
              Piece(-1.5, 3.0, "convex", middle), linear_piece(3.0, INF, 1.0))
    return Activation("HardSwish", (), F.hardswish, pieces, False)


SILU_INFLECTION = 2.399357280515467    # x tanh(x / 2) = 2
SILU_MINIMUM = -1.278464542761074      # 1 + x (1 - sigmoid(x)) = 0


def silu() -> Activation:
    """``x sigmoid(x)``: concave below ``-p``, convex on ``[-p, p]`` (minimum at
    ``-1.2785``), concave above ``p = 2.3994``; ``f' = s (1 + x (1 - s))``, ``s = sigmoid(x)``."""
    def d(x):
        s = torch.sigmoid(x)
        return s * (1 + x * (1 - s))
    return smooth_with_minimum("SiLU", (), F.silu, d, SILU_INFLECTION, SILU_MINIMUM)


GELU_ERF = (math.sqrt(2.0), -0.7517915246935645)   # inflection: f'' = phi (2 - x^2); minimum
GELU_TANH = (1.4185040087908285, -0.7524614220710162)
SQRT_2_OVER_PI = math.sqrt(2 / math.pi)


def gelu(approximate: str = "none") -> Activation:
    """``x Phi(x)`` (``f' = Phi(x) + x phi(x)``), or its tanh form
    ``x (1 + tanh(c (x + 0.044715 x^3))) / 2``, ``c = sqrt(2 / pi)``: concave, convex around
    the minimum, concave."""
    if approximate == "tanh":
        def d(x):
            t = torch.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x ** 3))
            return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x)
        inflection, minimum = GELU_TANH
    else:
        def d(x):
            return 0.5 * (1 + torch.erf(x / math.sqrt(2))) + x * torch.exp(-x * x / 2) / math.sqrt(2 * math.pi)
        inflection, minimum = GELU_ERF
    def fn(x):
        return F.gelu(x, approximate=approximate)
    return smooth_with_minimum("Gelu", (approximate,), fn, d, inflection, minimum)


def smooth_with_minimum(name, params, fn, d, inflection: float, minimum: float) -> Activation:
    pieces = (Piece(-INF, -inflection, "concave", d), Piece(-inflection, minimum, "convex", d),
              Piece(minimum, inflection, "convex", d), Piece(inflection, INF, "concave", d))
    return Activation(name, params, fn, pieces, False)


def elu(alpha: float = 1.0) -> Activation:
    """``alpha (e^x - 1)`` below 0 (convex for alpha > 0, concave for alpha < 0), the identity
    above; non-decreasing for alpha >= 0."""
    def fn(x):
        return F.elu(x, alpha)
    curvature = "convex" if alpha > 0 else "concave" if alpha < 0 else "linear"
    pieces = (Piece(-INF, 0.0, curvature, lambda x: alpha * torch.exp(x)), linear_piece(0.0, INF, 1.0))
    return Activation("Elu", (alpha,), fn, pieces, alpha >= 0)


def softplus(beta: float = 1.0, threshold: float = INF) -> Activation:
    """``log(1 + e^(beta x)) / beta`` (convex, ``f' = sigmoid(beta x)``), and torch's ``x``
    where ``beta x > threshold``: a jump down by ``log(1 + e^-threshold) / beta`` at
    ``threshold / beta``, a piece of its own (``threshold = inf``: none)."""
    def fn(x):
        return F.softplus(x, beta, threshold)
    def d(x):
        return torch.sigmoid(beta * x)
    if not math.isfinite(threshold):
        return Activation("Softplus", (beta, threshold), fn, (Piece(-INF, INF, "convex", d),), True)
    knee = threshold / beta
    pieces = (Piece(-INF, knee, "convex", d, lambda x: F.softplus(x, beta, INF)),
              Piece(knee, INF, "linear", torch.ones_like, lambda x: x, open_start=True))
    return Activation("Softplus", (beta, threshold), fn, pieces, True)
