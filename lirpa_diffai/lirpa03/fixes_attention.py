"""Fixes that let the CROWN family bound attention: softmax as one node and a sound
relaxation of ``ReduceMax`` (:mod:`.attention_ops`); :mod:`.manifest` applies them."""
from __future__ import annotations

from .fix import fix


@fix(test="test_softmax_is_one_node_for_every_method")
def softmax_traced_whole():
    """auto_LiRPA 0.3 splits ``Softmax`` into ``exp(x - max(x)) / sum``, whose ``ReduceMax``
    CROWN, CROWN-IBP and alpha-CROWN cannot bound ("bound_backward for BoundReduceMax with
    perturbed maximum indexes is not implemented"). ``onnx::Softmax`` becomes one node,
    ``BoundSoftmaxWhole``: the interval softmax (DeepT's bound over the differences
    ``x_j - x_i``, in closed form: ``n`` operations per row) for IBP, the same interval as
    constant linear bounds for the CROWN family."""
    from auto_LiRPA import register_custom_op

    from .attention_ops import BoundSoftmaxWhole
    register_custom_op("onnx::Softmax", BoundSoftmaxWhole)
    return {}


@fix(test="test_reduce_max_crown_is_sound")
def reduce_max_backward():
    """auto_LiRPA 0.3's ``BoundReduceMax`` has no CROWN relaxation unless told to assume the
    maximum's index never changes (unsound in general). Its backward step now takes
    ``x_j <= max(x) <= x_j`` where the element ``j`` of largest lower bound dominates the
    others' upper bounds and ``x_j <= max(x) <= max_i u_i`` elsewhere; the input's bounds are
    computed first."""
    from auto_LiRPA.operators import BoundReduceMax

    from .attention_ops import reduce_max_backward as backward
    init = BoundReduceMax.__init__

    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.requires_input_bounds = [0]

    def bound_backward(self, last_lA, last_uA, x):
        return backward(self, last_lA, last_uA, x)
    return {(BoundReduceMax, "__init__"): __init__, (BoundReduceMax, "bound_backward"): bound_backward}
