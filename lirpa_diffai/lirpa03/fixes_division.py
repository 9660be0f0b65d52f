"""Soundness fixes for auto_LiRPA 0.3's division and reciprocal (``x / y``, ``1 / y``), whose
relaxations assume a positive denominator; :mod:`.manifest` applies them.

``1 / y`` is convex on ``y > 0`` and concave on ``y < 0`` (``(1/y)'' = 2 / y^3``), and
unbounded on an interval that contains 0: such a denominator is refused by node.
"""
from __future__ import annotations

from .fix import fix


def off_zero(lower, upper):
    """Where the interval ``[lower, upper]`` lies on one side of 0 (``1 / y`` is bounded there)."""
    return (lower > 0) | (upper < 0)


def refuse_around_zero(lower, upper, method: str) -> None:
    """``NotImplementedError`` when some interval ``[lower, upper]`` contains 0 (the node is
    named by ``failing_nodes_named``)."""
    import torch
    inside = ~off_zero(lower, upper)
    if bool(inside.any()):
        first = tuple(int(i) for i in inside.nonzero()[0])
        raise NotImplementedError(
            f"{method}: the denominator's bounds contain 0 at {int(inside.sum())} entries (first at "
            f"index {first}: [{lower[first].item():.4g}, {upper[first].item():.4g}]), so 1/y is "
            "unbounded there")


def reciprocal_relaxation(lower, upper):
    """Lines ``(lower_k, lower_b, upper_k, upper_b)`` with ``k y + b`` below / above ``1 / y`` on
    ``[l, u]`` (``0`` outside it; ``m = (l + u) / 2``): the tangent at ``m``
    (``k = -1 / m^2``, ``b = 2 / m``) and the chord (``k = -1 / (l u)``, ``b = 1 / l + 1 / u``).
    On ``y > 0`` (convex) the tangent is below and the chord above; on ``y < 0`` (concave),
    the reverse."""
    import torch
    m = (lower + upper) / 2
    tangent_k, tangent_b = -1 / (m * m), 2 / m
    chord_k, chord_b = -1 / (lower * upper), 1 / lower + 1 / upper
    negative = upper < 0
    return (torch.where(negative, chord_k, tangent_k), torch.where(negative, chord_b, tangent_b),
            torch.where(negative, tangent_k, chord_k), torch.where(negative, tangent_b, chord_b))


def reciprocal_interval(lower, upper):
    """``[1 / u, 1 / l]``: ``1 / y`` decreases on each side of 0 (``[l, u]`` off 0)."""
    return 1 / upper, 1 / lower


@fix(test="test_division_by_an_interval_around_zero_is_refused_by_node")
def division_interval():
    """auto_LiRPA 0.3 bug: ``BoundDiv``'s IBP returns ``[x_l / y_u, x_u / y_l]``, right only for
    ``x >= 0`` (a second ``interval_propagate`` definition shadows the constant case too).
    Take the interval product ``x * [1 / y_u, 1 / y_l]`` (extremes among the four corner
    products), and refuse a denominator whose interval contains 0. Its layer-norm special
    case (denominator a ``Sqrt`` node) is left as it is."""
    import torch
    from auto_LiRPA.operators import BoundDiv, BoundSqrt
    original = BoundDiv.interval_propagate

    def interval_propagate(self, *v):
        if isinstance(self.inputs[1], BoundSqrt):
            return original(self, *v)
        (x_l, x_u), (y_l, y_u) = v[0][:2], v[1][:2]
        refuse_around_zero(*torch.broadcast_tensors(y_l, y_u), "IBP")
        corners = torch.stack(torch.broadcast_tensors(x_l / y_u, x_l / y_l, x_u / y_u, x_u / y_l))
        return corners.min(0).values, corners.max(0).values
    return {(BoundDiv, "interval_propagate"): interval_propagate}


@fix(test="test_reciprocal_of_a_negative_interval_is_bounded_soundly")
def reciprocal_of_either_sign():
    """auto_LiRPA 0.3 bug: ``BoundReciprocal`` relaxes ``1 / y`` as if ``y > 0`` (tangent below,
    chord above); on ``y < 0``, where ``1 / y`` is concave, both lines are on the wrong side,
    so CROWN, alpha-CROWN, the forward modes and ``x / y`` (which relaxes ``1 / y`` the same
    way) miss the function (``1 / (x - 3)`` on ``x`` in [-0.5, 1.5]: lower bound -0.56, true
    minimum -0.667). Its IBP asserts ``y > 0``. Relax each side by its shape
    (:func:`reciprocal_relaxation`), take ``[1 / u, 1 / l]`` on either side, and refuse an
    interval that contains 0."""
    from auto_LiRPA.operators import BoundReciprocal

    def bound_relax(self, x):
        refuse_around_zero(x.lower, x.upper, "Reciprocal")
        lower_k, lower_b, upper_k, upper_b = reciprocal_relaxation(x.lower, x.upper)
        self.lw, self.lb, self.uw, self.ub = lower_k, lower_b, upper_k, upper_b

    def interval_propagate(self, *v):
        refuse_around_zero(v[0][0], v[0][1], "IBP")
        return reciprocal_interval(v[0][0], v[0][1])
    return {(BoundReciprocal, "bound_relax"): bound_relax,
            (BoundReciprocal, "interval_propagate"): interval_propagate}


def constant_numerator(node) -> bool:
    """``c / y`` with ``c`` a constant and ``y`` not: auto_LiRPA 0.3's ``BoundDiv`` takes it
    for ``y / c`` (its constant case divides by whichever input is constant)."""
    from auto_LiRPA.operators import BoundBuffers, BoundConstant
    constant = [isinstance(i, (BoundConstant, BoundBuffers)) for i in node.inputs]
    return constant[0] and not constant[1]


@fix(test="test_division_by_a_perturbed_denominator_is_sound_or_refused")
def division_denominator_checked():
    """auto_LiRPA 0.3 bugs in ``BoundDiv``'s linear bounds (CROWN, alpha-CROWN, forward modes):
    a denominator whose bounds contain 0 is relaxed as if positive (``1 / y`` is unbounded
    there), and ``c / y`` with a constant ``c`` is bounded as ``y / c`` (off by 0.8 on
    ``[2, -1] / (x + 3)``). Both are refused by node (``torch.reciprocal(y) * c`` bounds the
    second). Its ``1 / y`` part is :func:`reciprocal_of_either_sign`'s relaxation."""
    from auto_LiRPA.operators import BoundDiv, BoundSqrt
    backward, forward = BoundDiv.bound_backward, BoundDiv.bound_forward

    def check(node, y, method):
        if constant_numerator(node):
            raise NotImplementedError(f"{method}: a constant divided by a perturbed value is bounded "
                                      "as the value divided by the constant by auto_LiRPA 0.3; write "
                                      "torch.reciprocal(y) * c")
        if not node.is_constant_op and not isinstance(node.inputs[1], BoundSqrt):
            refuse_around_zero(y.lower, y.upper, method)

    def bound_backward(self, last_lA, last_uA, x, y):
        check(self, y, "CROWN")
        return backward(self, last_lA, last_uA, x, y)

    def bound_forward(self, dim_in, x, y):
        check(self, y, "forward")
        return forward(self, dim_in, x, y)
    return {(BoundDiv, "bound_backward"): bound_backward, (BoundDiv, "bound_forward"): bound_forward}
