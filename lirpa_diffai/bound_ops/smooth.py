"""hzono transformers of today's smooth and piecewise-linear activations (Hardsigmoid,
Hardswish, SiLU, GELU in both forms, ELU, Softplus; Bound classes in
:mod:`lirpa_diffai.lirpa03.activations`).

A zonotope without rows takes the exact interval ``[min f, max f]`` over ``[l, u]``. With rows,
DeepZ's parallelogram (Singh et al., NeurIPS 2018):

    y = lam x + (lo + hi) / 2 +- (hi - lo) / 2,     lo <= f(x) - lam x <= hi on [l, u]

with ``lam = min(f'(l), f'(u))`` for a non-decreasing ``f`` (Hardsigmoid, ELU with alpha >= 0,
Softplus; its offsets are then the ends' deviations ``f(l) - lam l`` and ``f(u) - lam u``),
and the chord slope ``lam = (f(u) - f(l)) / (u - l)`` for one with a minimum (SiLU, GELU,
Hardswish). ``lo, hi`` are the sound extreme deviations of
:func:`lirpa_diffai.lirpa03.activation_pieces.deviation` (exact at the ends of each convex /
concave piece, the meeting point of the end tangents inside a curved one). At eps = 0
(``l = u``) both are ``f(l) - lam l``: exact.
"""
from __future__ import annotations

import math

from .. import hybrid_zono as hz
from ..lirpa03 import activation_pieces as pieces
from ..lirpa03.activations import (BoundElu, BoundGelu, BoundHardSigmoid, BoundHardSwish, BoundSiLU,
                                   BoundSoftplusBeta)
from .registry import register

SMOOTH_ACTIVATIONS = (BoundHardSigmoid, BoundHardSwish, BoundSiLU, BoundGelu, BoundElu, BoundSoftplusBeta)


def smooth_activation(z: hz.HybridZonotope, act: pieces.Activation, floor: float = -math.inf) -> hz.HybridZonotope:
    """The transformer of the module docstring for ``act``. ``floor``: a lower bound that every
    value ``z`` stands for has (known from the graph, :func:`.elementary.value_floor`); the
    relaxation is built on the range raised to it, which encloses ``f`` on every such value
    (the zonotope's corners below it are no values of the network)."""
    lower, upper = z.concretize()
    if floor > -math.inf:
        lower, upper = lower.clamp(min=floor), upper.clamp(min=floor)
    if z.errors is None:
        # an infinite end (log at 0, overflow) makes the box [-inf, inf], never NaN
        return hz.HybridZonotope.from_box(*pieces.interval(act, lower, upper)).unbounded_where_not_finite()
    slope = pieces.zonotope_slope(act, lower, upper)
    return hz.parallelogram(z, slope, *pieces.deviation(act, slope, lower, upper))


@register(*SMOOTH_ACTIVATIONS, reads_parts=True)
def smooth(ctx, node, x):
    act = node.act
    return ctx.elementwise(("smooth", act.name, act.params), lambda z: smooth_activation(z, act), x)
