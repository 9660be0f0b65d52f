"""``AdaptiveAvgPool2d`` to any output size as one graph node (:mod:`.fixes_convolution` traces
it so where the windows are uneven; even ones are traced as ``AveragePool`` by torch itself).

Adaptive average pooling is linear, ``y = P x``, with ``P`` a fixed averaging matrix whose
entries are ``>= 0`` (output ``(i, j)`` averages the rows ``floor(i H / h) .. ceil((i + 1) H /
h) - 1`` and the same columns; windows of neighbours may overlap). So every method bounds it
exactly: IBP ``[P l, P u]``, CROWN the transpose ``A -> A P`` (a vector-Jacobian product of the
pool), the forward mode ``P`` on each linear bound, hzono ``P`` on the center, each row and
``beta``.
"""
from __future__ import annotations

import torch.nn.functional as F
from auto_LiRPA.linear_bound import LinearBound
from auto_LiRPA.operators import Bound

OPERATOR = "custom::AdaptiveAvgPool2d"


class BoundAdaptiveAvgPool2d(Bound):
    """``F.adaptive_avg_pool2d(x, output_size)`` (the node's ``output_size`` attribute)."""

    def __init__(self, attr, inputs, output_index, options):
        super().__init__(attr, inputs, output_index, options)
        self.output_size = [int(s) for s in attr["output_size"]]

    def forward(self, x):
        return F.adaptive_avg_pool2d(x, self.output_size)

    def interval_propagate(self, *v):
        lower, upper = v[0]
        return self.forward(lower), self.forward(upper)

    def bound_backward(self, last_lA, last_uA, x):
        from .fixes_linear import dense_coefficients, linear_transpose

        def transpose(A):
            if A is None:
                return None
            return linear_transpose(self.forward, dense_coefficients(A, self.output_shape), self.input_shape)
        return [(transpose(last_lA), transpose(last_uA))], 0, 0

    def bound_forward(self, dim_in, x):
        return pooled_linear_bound(self.forward, x)


def pooled_linear_bound(pool, x) -> LinearBound:
    """The forward mode's step through a pool ``P`` with coefficients ``>= 0``: ``P`` on each
    linear bound (``lw``, ``uw`` with the input dimensions folded into the batch)."""
    def on_weights(w):  # (B, dim_in, C, H, W)
        return pool(w.flatten(0, 1)).unflatten(0, w.shape[:2])
    return LinearBound(on_weights(x.lw), pool(x.lb), on_weights(x.uw), pool(x.ub))


def evenly_divided(sizes, output_size) -> bool:
    """Whether each of the last two input ``sizes`` is a multiple of its output size."""
    return all(isinstance(s, int) and s % o == 0 for s, o in zip(sizes[-2:], output_size))


def adaptive_avg_pool2d_symbolic(g, x, output_size):
    """The opset-12 symbolic of ``aten::adaptive_avg_pool2d``: torch's own (an ``AveragePool``)
    where the windows are even, else one ``custom::AdaptiveAvgPool2d`` node (torch exports it
    as an ``ATen`` fallback that auto_LiRPA has no Bound class for)."""
    from torch.onnx import symbolic_helper, symbolic_opset9
    sizes = symbolic_helper._get_tensor_sizes(x) or []
    out = symbolic_helper._maybe_get_const(output_size, "is")
    if not isinstance(out, (list, tuple)) or any(o is None for o in out):
        return symbolic_opset9.adaptive_avg_pool2d(g, x, output_size)
    if len(sizes) == 4 and evenly_divided(sizes, out):
        return symbolic_opset9.adaptive_avg_pool2d(g, x, output_size)
    node = g.op(OPERATOR, x, output_size_i=[int(o) for o in out])
    if len(sizes) == 4:   # the output's type, for torch's shape inference
        node.setType(x.type().with_sizes(list(sizes[:2]) + [int(o) for o in out]))
    return node
