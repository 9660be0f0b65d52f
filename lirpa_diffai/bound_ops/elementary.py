"""hzono transformers of the elementary functions auto_LiRPA traces: ``Exp``, ``Log``,
``Sqrt``, ``Reciprocal``, integer ``Pow`` and ``Abs``, and ``Div`` by a perturbed denominator.

Each function is an :class:`~lirpa_diffai.lirpa03.activation_pieces.Activation`: convex,
concave or linear pieces split at its sign changes, so that one transformer
(:func:`~lirpa_diffai.bound_ops.smooth.smooth_activation`) serves them all. Without rows it is
the exact interval ``[min f, max f]``; with rows DeepZ's minimal-area parallelogram (Singh et
al., NeurIPS 2018) ``y = lam x + (lo + hi) / 2 +- (hi - lo) / 2`` with the end slope of
:func:`~lirpa_diffai.lirpa03.activation_pieces.end_slope`: ``lam = exp(l)`` (exp),
``1 / u`` (log), ``1 / (2 sqrt(u))`` (sqrt), ``-1 / u^2`` on ``u > 0`` and ``-1 / l^2`` on
``u < 0`` (reciprocal), ``n x^(n-1)`` at the end nearer 0 (``x^n`` on one side of 0), and 0
for ``x^2`` and ``|x|`` across 0 (the box ``[0, max f]``: a variance stays >= 0). The
interval of every parallelogram is then ``f``'s exact range, and ``lo, hi`` are sound for any
slope (:func:`~lirpa_diffai.lirpa03.activation_pieces.deviation`). At eps = 0 it is exact.

Outside a function's domain no sound bound exists: a range reaching below 0 for ``Log`` and
``Sqrt`` (their value is NaN there) or containing 0 for ``Reciprocal`` and a denominator
(unbounded) is refused, naming the node. ``log(0) = -inf`` gives an infinite lower bound.
"""
from __future__ import annotations

import math

import torch
from auto_LiRPA.operators import (BoundAbs, BoundAdd, BoundBuffers, BoundConstant, BoundDiv, BoundExp, BoundLog,
                                  BoundPow, BoundReciprocal, BoundReduceMean, BoundReduceSum, BoundSqrt)

from .. import hybrid_zono as hz
from ..hybrid_zono import HybridZonotope
from ..lirpa03.activation_pieces import INF, Activation, Piece, linear_piece
from ..lirpa03.entries import entries_where
from .arithmetic import require_batch_axis_kept
from .registry import UnsupportedOperatorError, register
from .smooth import smooth_activation

Tensor = torch.Tensor


def exp() -> Activation:
    """``e^x``: convex and increasing."""
    return Activation("Exp", (), torch.exp, (Piece(-INF, INF, "convex", torch.exp),), True)


def log() -> Activation:
    """``log x`` on ``x >= 0``: concave and increasing, ``f' = 1 / x``."""
    return Activation("Log", (), torch.log, (Piece(0.0, INF, "concave", torch.reciprocal),), True)


def sqrt() -> Activation:
    """``sqrt x`` on ``x >= 0``: concave and increasing, ``f' = 1 / (2 sqrt x)``."""
    def d(x):
        return 0.5 / torch.sqrt(x)
    return Activation("Sqrt", (), torch.sqrt, (Piece(0.0, INF, "concave", d),), True)


def reciprocal() -> Activation:
    """``1 / x`` off 0: concave below 0, convex above, decreasing on each side
    (``f' = -1 / x^2``)."""
    def d(x):
        return -1 / (x * x)
    pieces = (Piece(-INF, 0.0, "concave", d), Piece(0.0, INF, "convex", d, open_start=True))
    return Activation("Reciprocal", (), torch.reciprocal, pieces, True)


def power(n: int) -> Activation:
    """``x^n`` for an integer ``n >= 0`` (``f' = n x^(n-1)``), split at 0: an even ``n`` is
    convex on both sides with its minimum 0 there (``keeps_interval``), an odd ``n >= 3``
    concave below 0 and convex above (increasing), ``n = 1`` the identity, ``n = 0`` the
    constant 1."""
    def fn(x):
        return torch.pow(x, n)
    if n <= 1:
        return Activation("Pow", (n,), fn, (linear_piece(-INF, INF, float(n), fn),), True)
    def d(x):
        return n * torch.pow(x, n - 1)
    below = "convex" if n % 2 == 0 else "concave"
    pieces = (Piece(-INF, 0.0, below, d), Piece(0.0, INF, "convex", d))
    return Activation("Pow", (n,), fn, pieces, n % 2 == 1, keeps_interval=n % 2 == 0)


def absolute() -> Activation:
    """``|x|``: slope -1 below 0, 1 above (``keeps_interval``)."""
    pieces = (linear_piece(-INF, 0.0, -1.0), linear_piece(0.0, INF, 1.0))
    return Activation("Abs", (), torch.abs, pieces, False, keeps_interval=True)


EXP, LOG, SQRT, RECIPROCAL, ABS = exp(), log(), sqrt(), reciprocal(), absolute()
ELEMENTARY = (BoundExp, BoundLog, BoundSqrt, BoundReciprocal, BoundPow, BoundAbs)


def value_floor(node) -> float:
    """A lower bound of every value of ``node`` for any input, read from the graph (``-inf``
    where none is known): ``x^(2k)``, ``|x|``, ``exp`` and ``sqrt`` are >= 0 (``sqrt`` >= the
    root of its input's floor), a mean >= its input's, a sum of values >= 0 >= 0, ``a + b`` >=
    the sum of the floors, a constant >= its minimum. Layer norm's ``sqrt(mean((x - m)^2) +
    eps)`` is thus >= ``sqrt(eps)`` > 0, which a zonotope's float32 centre and radius (values
    near 600 carry rounding errors above eps = 1e-5) cannot show."""
    inputs = node.inputs
    if isinstance(node, (BoundConstant, BoundBuffers)):
        value = torch.as_tensor(node.value if isinstance(node, BoundConstant) else node.buffer)
        return float(value.min()) if value.numel() else -INF
    if isinstance(node, (BoundAbs, BoundExp)):
        return 0.0
    if isinstance(node, BoundPow):
        exponent = getattr(inputs[1], "value", None)
        even = exponent is not None and exponent.numel() == 1 and float(exponent) % 2 == 0
        return 0.0 if even else -INF
    if isinstance(node, BoundSqrt):
        return math.sqrt(max(value_floor(inputs[0]), 0.0))
    if isinstance(node, BoundReduceMean):
        return value_floor(inputs[0])
    if isinstance(node, BoundReduceSum):
        return 0.0 if value_floor(inputs[0]) >= 0 else -INF
    if isinstance(node, BoundAdd):
        first = value_floor(inputs[0])
        return first + value_floor(inputs[1]) if first > -INF else -INF
    return -INF


def require_in_domain(node, lower: Tensor, upper: Tensor, act: Activation) -> None:
    """Refuse a range ``[lower, upper]`` that leaves ``act``'s domain: below 0 for ``Log`` and
    ``Sqrt``, one containing 0 for ``Reciprocal``."""
    if act.name not in ("Log", "Sqrt", "Reciprocal"):
        return
    outside = (lower <= 0) & (upper >= 0) if act.name == "Reciprocal" else lower < 0
    if bool(outside.any()):
        why = "1/x is unbounded there" if act.name == "Reciprocal" else f"{act.name.lower()} is NaN below 0"
        raise UnsupportedOperatorError(
            f"hzono: node '{node.name}' ({type(node).__name__}) gets a range outside the domain of "
            f"{act.name} {entries_where(outside, lower, upper)}; {why}")


def elementary_image(ctx, node, x, act: Activation, source):
    """``act`` of ``x``, the value of the graph node ``source`` (a zonotope or a lazy
    concatenation, memoized per part): its range raised to :func:`value_floor`, checked
    against the domain, then relaxed."""
    floor = value_floor(source)

    def image(z):
        lower, upper = z.concretize()
        require_in_domain(node, lower.clamp(min=floor), upper.clamp(min=floor), act)
        return smooth_activation(z, act, floor)
    return ctx.elementwise(("elementary", act.name, act.params, floor), image, x)


def elementary_transformer(act):
    """The hzono transformer of a node applying ``act`` to its first input (:func:`elementary_image`)."""
    def transformer(ctx, node, x):
        return elementary_image(ctx, node, x, act, node.inputs[0])
    return transformer


for _bound_class, _act in ((BoundExp, EXP), (BoundLog, LOG), (BoundSqrt, SQRT), (BoundReciprocal, RECIPROCAL),
                           (BoundAbs, ABS)):
    register(_bound_class, reads_parts=True)(elementary_transformer(_act))


def integer_exponent(node, exponent) -> int:
    """The constant exponent of a ``Pow`` node as a non-negative int; anything else (a
    perturbed, fractional, negative or per-element exponent) is refused by node."""
    if isinstance(exponent, HybridZonotope) or torch.as_tensor(exponent).numel() != 1:
        raise UnsupportedOperatorError(
            f"hzono: node '{node.name}' (BoundPow) has a perturbed or per-element exponent")
    value = float(exponent)
    if not (math.isfinite(value) and value == int(value) and value >= 0):
        raise UnsupportedOperatorError(
            f"hzono: node '{node.name}' (BoundPow) raises to the power {value}: only integer "
            "exponents >= 0 are bounded (write sqrt or reciprocal for the others)")
    return int(value)


@register(BoundPow, reads_parts=True)
def pow_transformer(ctx, node, x, exponent):
    return elementary_image(ctx, node, x, power(integer_exponent(node, exponent)), node.inputs[0])


@register(BoundDiv)
def div(ctx, node, x, y):
    """By a constant: ``scale``. By a perturbed denominator: ``x * (1 / y)``, the reciprocal
    above and DeepT's product (:func:`~lirpa_diffai.hybrid_zono.product`) of two perturbed
    values; a constant numerator scales the reciprocal."""
    require_batch_axis_kept(node, x, y)
    if not isinstance(y, HybridZonotope):
        return x.scale(1.0 / y)
    inverse = elementary_image(ctx, node, y, RECIPROCAL, node.inputs[1])
    return hz.product(x, inverse) if isinstance(x, HybridZonotope) else inverse.scale(x)
