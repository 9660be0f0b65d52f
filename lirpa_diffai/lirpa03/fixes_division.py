"""Soundness fixes for auto_LiRPA 0.3's division and reciprocal (``x / y``, ``1 / y``), whose
relaxations assume a positive denominator; :mod:`.manifest` applies them.

``1 / y`` is convex on ``y > 0`` and concave on ``y < 0`` (``(1/y)'' = 2 / y^3``), and
unbounded on an interval that contains 0: such a denominator is refused by node.
"""
from __future__ import annotations

from .fix import fix
from .fixes_nonlinear import refuse_entries


def off_zero(lower, upper):
    """Where the interval ``[lower, upper]`` lies on one side of 0 (``1 / y`` is bounded there)."""
    return (lower > 0) | (upper < 0)


def refuse_around_zero(lower, upper, method: str) -> None:
    """``NotImplementedError`` when some interval ``[lower, upper]`` contains 0 (the node is
    named by ``failing_nodes_named``)."""
    refuse_entries(~off_zero(lower, upper), lower, upper, f"{method}: the denominator's bounds contain 0",
                   "so 1/y is unbounded there")


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
    products), and refuse a denominator whose interval contains 0. The same holds for its
    layer-norm special case (denominator a ``Sqrt`` node, :func:`layer_norm_division_as_traced`):
    ``x / sqrt(var + eps)`` with ``eps > 0`` has a positive denominator interval."""
    import torch
    from auto_LiRPA.operators import BoundDiv

    def interval_propagate(self, *v):
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


@fix(test="test_layer_norm_is_bounded_as_traced_by_every_method")
def layer_norm_division_as_traced():
    """auto_LiRPA 0.3 bug: ``BoundDiv`` whose denominator is a ``Sqrt`` node is taken for layer
    norm's ``(x - mean) / sqrt(var + eps)`` and computes instead, from the value of its
    numerator's first input, ``sign(dev) / sqrt((1 + sum_j dev_j^2 / dev_i^2) / n)``: another
    function (no ``eps``; wrong where the numerator is not ``x - mean(x)``), and it fails
    (``'BoundTranspose' object has no attribute 'forward_value'``) where that input is a
    permute, as in ConvNeXt and MLP-Mixer. Divide as traced; the bound methods then bound
    ``x * (1 / y)`` with the denominator's interval, which ``eps > 0`` keeps positive."""
    from auto_LiRPA.operators import BoundDiv

    def forward(self, x, y):
        self.x, self.y = x, y
        return x / y
    return {(BoundDiv, "forward"): forward}


def constant_numerator(node) -> bool:
    """``c / y`` with ``c`` a constant and ``y`` not: auto_LiRPA 0.3's ``BoundDiv`` takes it
    for ``y / c`` (its constant case divides by whichever input is constant)."""
    from auto_LiRPA.operators import BoundBuffers, BoundConstant
    constant = [isinstance(i, (BoundConstant, BoundBuffers)) for i in node.inputs]
    return constant[0] and not constant[1]


def scaled_reciprocal_relaxation(c, lower, upper):
    """Lines ``(lower_k, lower_b, upper_k, upper_b)`` bounding ``c / y`` on ``[l, u]`` (off 0):
    ``c`` times :func:`reciprocal_relaxation`'s lines, the two swapped where ``c < 0``."""
    import torch
    lower_k, lower_b, upper_k, upper_b = (c * t for t in reciprocal_relaxation(lower, upper))
    negative = torch.broadcast_to(c < 0, lower_k.shape)
    return (torch.where(negative, upper_k, lower_k), torch.where(negative, upper_b, lower_b),
            torch.where(negative, lower_k, upper_k), torch.where(negative, lower_b, upper_b))


@fix(test="test_division_by_a_perturbed_denominator_is_sound_or_refused")
def division_denominator_checked():
    """auto_LiRPA 0.3 bugs in ``BoundDiv``'s linear bounds (CROWN, alpha-CROWN, forward modes):
    a denominator whose bounds contain 0 is relaxed as if positive (``1 / y`` is unbounded
    there): refused by node. ``c / y`` with a constant ``c`` is bounded as ``y / c`` (off by
    0.8 on ``[2, -1] / (x + 3)``) and without bounds of ``y``: the node now asks for them, and
    CROWN relaxes it with :func:`scaled_reciprocal_relaxation` (dense coefficients; patches are
    made dense first), and the forward modes refuse it.
    Its ``1 / y`` part is :func:`reciprocal_of_either_sign`'s relaxation."""
    from auto_LiRPA.operators import BoundBuffers, BoundConstant, BoundDiv
    from .fixes_linear import dense_pair
    from .fixes_nonlinear import relaxed_side
    unchecked = (BoundConstant, BoundBuffers)  # a constant divisor
    init, backward, forward = BoundDiv.__init__, BoundDiv.bound_backward, BoundDiv.bound_forward

    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        if constant_numerator(self):
            self.requires_input_bounds = [1]

    def bound_backward(self, last_lA, last_uA, x, y):
        if not isinstance(self.inputs[1], unchecked):
            refuse_around_zero(y.lower, y.upper, "CROWN")
        if not constant_numerator(self):
            return backward(self, last_lA, last_uA, x, y)
        last_lA, last_uA = dense_pair(self, last_lA, last_uA)   # patches mode (a convolution after it)
        lines = scaled_reciprocal_relaxation(self.x, y.lower, y.upper)
        lower_k, lower_b, upper_k, upper_b = (t.unsqueeze(0) if i % 2 == 0 else t for i, t in enumerate(lines))
        lA, lbias = relaxed_side(self, last_lA, lower_k, lower_b, upper_k, upper_b)
        uA, ubias = relaxed_side(self, last_uA, upper_k, upper_b, lower_k, lower_b)
        return [(None, None), (lA, uA)], lbias, ubias

    def bound_forward(self, dim_in, x, y):
        if constant_numerator(self):
            raise NotImplementedError("forward: auto_LiRPA 0.3 has no forward-mode bounds of a constant "
                                      "divided by a perturbed value; write torch.reciprocal(y) * c")
        if not isinstance(self.inputs[1], unchecked):
            refuse_around_zero(y.lower, y.upper, "forward")
        return forward(self, dim_in, x, y)
    return {(BoundDiv, "__init__"): __init__, (BoundDiv, "bound_backward"): bound_backward,
            (BoundDiv, "bound_forward"): bound_forward}
