"""Fixes for auto_LiRPA 0.3's forward-mode bounds (``forward``, ``forward+backward``,
``forward-optimized``), which the fuzzer did not run before issue 21; :mod:`.manifest`
applies them.

A forward-mode bound of a node is a pair of linear functions of the input,
``lw x + lb <= node(x) <= uw x + ub``, with ``lw`` of shape (batch, input dims, *node shape).
"""
from __future__ import annotations

from .fix import fix

# operators whose forward-mode bounds auto_LiRPA 0.3 gets wrong, and how (found by the fuzzer)
FORWARD_REFUSED = {
    "BoundMaxPool": "its forward-mode bounds cross (lower above upper on max_pool2d(x, 3, 2, 1)) "
                    "and its optimized ones fail",
    "BoundSin": "its relaxation has NaN coefficients on an interval of zero width (eps = 0)",
    "BoundCos": "its relaxation has NaN coefficients on an interval of zero width (eps = 0)",
    "BoundClip": "it has no forward-mode bounds (its optional min / max inputs have no value)",
    "BoundATenHeaviside": "its lower line lies above its upper line",
}


def negated(bound):
    """``-y`` as a forward-mode bound: ``(-uw, -ub)`` below, ``(-lw, -lb)`` above (a constant
    has no coefficients: ``None`` stays ``None``)."""
    from auto_LiRPA.linear_bound import LinearBound
    neg = lambda t: None if t is None else -t  # noqa: E731
    return LinearBound(neg(bound.uw), neg(bound.ub), neg(bound.lw), neg(bound.lb),
                       neg(bound.upper), neg(bound.lower))


def summed(x, y):
    """``x + y`` as a forward-mode bound: coefficients and offsets add; a missing coefficient
    (a constant operand) is zero, broadcast to the sum's shape ``(batch, 1, *shape)``."""
    import torch
    from auto_LiRPA.linear_bound import LinearBound
    shape = torch.broadcast_shapes(x.lb.shape, y.lb.shape)

    def add(a, b):
        if a is None and b is None:
            return None
        zero = torch.zeros((shape[0], 1, *shape[1:]), dtype=(a if a is not None else b).dtype,
                           device=(a if a is not None else b).device)
        return (zero if a is None else a) + (zero if b is None else b)
    return LinearBound(add(x.lw, y.lw), x.lb + y.lb, add(x.uw, y.uw), x.ub + y.ub)


@fix(test="test_forward_modes_through_a_constant_operand")
def add_sub_forward():
    """auto_LiRPA 0.3 crashes in the forward-mode bounds of ``x + c`` and ``x - c`` with a
    constant ``c``: ``Sub`` negates the constant's missing coefficients (``bad operand type for
    unary -: 'NoneType'``), and ``Add`` broadcasts a constant with a batch axis
    (``(2, 1, 1, 1)``) against the coefficients' input axis (``shape '[2, 9]' is invalid``).
    Bound ``x + y`` with :func:`summed` and ``x - y`` as ``x + (-y)``."""
    from auto_LiRPA.operators import BoundAdd, BoundSub

    def add_forward(self, dim_in, x, y):
        return summed(x, y)

    def sub_forward(self, dim_in, x, y):
        return summed(x, negated(y))
    return {(BoundAdd, "bound_forward"): add_forward, (BoundSub, "bound_forward"): sub_forward}


def scaled(bound, c):
    """``c * y`` as a forward-mode bound of ``y`` for a constant ``c``: the positive part of
    ``c`` keeps each side, the negative part swaps them; coefficients scale along the input
    axis (``c`` broadcast to ``(batch, 1, *shape)``)."""
    import torch
    from auto_LiRPA.linear_bound import LinearBound
    c = torch.broadcast_to(c, torch.broadcast_shapes(c.shape, bound.lb.shape))
    pos, neg = c.clamp(min=0), c.clamp(max=0)
    lw = pos.unsqueeze(1) * bound.lw + neg.unsqueeze(1) * bound.uw
    uw = pos.unsqueeze(1) * bound.uw + neg.unsqueeze(1) * bound.lw
    return LinearBound(lw, pos * bound.lb + neg * bound.ub, uw, pos * bound.ub + neg * bound.lb)


@fix(test="test_forward_modes_through_a_constant_operand")
def multiply_constant_forward():
    """auto_LiRPA 0.3 has no forward-mode bounds of a product with a constant (``0.5 * x``
    raises a bare ``NotImplementedError``): bound it with :func:`scaled`."""
    from auto_LiRPA.operators import BoundMul
    original = BoundMul.bound_forward

    def bound_forward(self, dim_in, x, y):
        if not self.is_constant_op or (x.lw is None) == (y.lw is None):
            return original(self, dim_in, x, y)
        return scaled(y, x.lb) if x.lw is None else scaled(x, y.lb)
    return {(BoundMul, "bound_forward"): bound_forward}


@fix(test="test_forward_modes_through_a_constant_operand")
def dense_forward_input():
    """auto_LiRPA 0.3 crash: where at most half of an L-inf input is perturbed (``eps = 0``
    above all) the forward modes switch to a "sparse" input (and print two lines), whose box a
    later backward pass (``forward+backward``) reads from ``x_L`` / ``x_U``, None for an
    ``eps`` ball (``'NoneType' object has no attribute 'reshape'``). Start every forward pass
    from the dense input: ``lw = uw = I``, ``lb = ub = 0``."""
    import torch
    from auto_LiRPA.linear_bound import LinearBound
    from auto_LiRPA.perturbations import PerturbationLpNorm

    def init_sparse_linf(self, x, x_L, x_U):
        self.sparse = False
        batch, dim = x.shape[0], x[0].numel()
        eye = torch.eye(dim, dtype=x.dtype, device=x.device).expand(batch, dim, dim)
        eye = eye.reshape(batch, dim, *x.shape[1:])
        zero = torch.zeros_like(x)
        return LinearBound(eye, zero, eye, zero, x_L, x_U), x, None
    return {(PerturbationLpNorm, "init_sparse_linf"): init_sparse_linf}


@fix(test="test_forward_modes_refuse_what_they_bound_wrongly")
def forward_mode_refusals():
    """auto_LiRPA 0.3's forward-mode bounds of max pooling cross, those of sin / cos are NaN at
    eps = 0, those of Heaviside are inverted, and Clip has none (it crashes on its optional
    inputs, blaming no node): the forward modes refuse these nodes by name
    (:data:`FORWARD_REFUSED`); IBP and CROWN bound them as before. An omitted optional input
    (``PrimConstant``: ``F.pad``'s value) has no ``value`` for the forward pass to read: it
    gets its (empty) forward value, so the node that reads it is the one refused."""
    from auto_LiRPA import BoundedModule
    from auto_LiRPA.operators import BoundPrimConstant
    original = BoundedModule.forward_general

    def forward_general(self, C=None, node=None, concretize=False, offset=0):
        why = FORWARD_REFUSED.get(type(node).__name__)
        if why is not None and getattr(node, "perturbed", True):
            raise NotImplementedError(
                f"forward: graph node '{node.name}' (operator {type(node).__name__[5:]}, "
                f"{type(node).__name__}): auto_LiRPA 0.3's forward-mode bounds are refused: {why}; "
                "bound it with IBP or CROWN")
        if isinstance(node, BoundPrimConstant) and not hasattr(node, "value"):
            node.value = node.forward()
        return original(self, C=C, node=node, concretize=concretize, offset=offset)
    return {(BoundedModule, "forward_general"): forward_general}
