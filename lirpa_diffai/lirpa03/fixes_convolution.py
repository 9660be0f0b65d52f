"""``Conv1d``, ``ConvTranspose2d`` with padding, dilation, groups, ``output_padding`` and
non-square strides, and ``AdaptiveAvgPool2d`` to any output size, in every auto_LiRPA method;
:mod:`.manifest` applies them.

auto_LiRPA 0.3's ``BoundConv`` is 2-d only and its ``BoundConvTranspose`` asserts these
settings away. Each such node is a linear map ``y = W x + b`` with a constant ``W``, and gets
its exact rules here: IBP ``W c + b +- |W| r`` (center ``c``, radius ``r``), CROWN the exact
transpose ``A -> A W`` (a vector-Jacobian product of the node's own convolution) with the bias
term ``A b``, and the forward mode ``W+ lw + W- uw`` (and the mirror) on each linear bound.
The settings auto_LiRPA's own code gets right keep its code path.
"""
from __future__ import annotations

from .fix import fix


def convolution(node):
    """The node's convolution without bias, ``(x, weight) -> W x``, with all its settings."""
    import torch.nn.functional as F
    from auto_LiRPA.operators import BoundConvTranspose
    if isinstance(node, BoundConvTranspose):
        return lambda x, w: F.conv_transpose2d(x, w, None, node.stride, node.padding, node.output_padding,
                                               node.groups, node.dilation)
    return lambda x, w: F.conv1d(x, w, None, node.stride, node.padding, node.dilation, node.groups)


def channel_bias(bias, ndim: int):
    """A per-channel bias (C,) shaped to broadcast over a value of rank ``ndim`` (B, C, ...)."""
    return bias.view((-1,) + (1,) * (ndim - 2))


def interval(node, lower, upper, weight, bias):
    """IBP of ``W x + b``: ``W c + b +- |W| r`` with ``c``, ``r`` the box's center and radius."""
    conv = convolution(node)
    center = conv((upper + lower) / 2, weight)
    if bias is not None:
        center = center + channel_bias(bias, center.dim())
    deviation = conv((upper - lower) / 2, weight.abs())
    return center - deviation, center + deviation


def backward(node, last_A, weight, bias):
    """CROWN's step through ``W x + b``: ``(A W, A b)``; ``Patches`` are made dense first."""
    from .fixes_linear import dense_coefficients, linear_transpose
    if last_A is None:
        return None, 0
    A = dense_coefficients(last_A, node.output_shape)
    conv = convolution(node)
    next_A = linear_transpose(lambda x: conv(x, weight), A, node.input_shape)
    bias_term = 0 if bias is None else (A.flatten(3).sum(-1) * bias).sum(-1)
    return next_A, bias_term


def forward_mode(node, x, weight, bias):
    """The forward mode's step through ``W x + b``: ``lw' = W+ lw + W- uw``, ``uw' = W+ uw + W- lw``
    (and the same for the constant parts, plus ``b``), ``W+ = max(W, 0)``, ``W- = min(W, 0)``."""
    from auto_LiRPA.linear_bound import LinearBound
    conv = convolution(node)
    positive, negative = weight.clamp(min=0), weight.clamp(max=0)

    def linear(t, w):  # (B, dim_in, C, ...) with the input dimensions folded into the batch
        return conv(t.flatten(0, 1), w).unflatten(0, t.shape[:2])

    lw = linear(x.lw, positive) + linear(x.uw, negative)
    uw = linear(x.uw, positive) + linear(x.lw, negative)
    lb = conv(x.lb, positive) + conv(x.ub, negative)
    ub = conv(x.ub, positive) + conv(x.lb, negative)
    if bias is not None:
        lb, ub = lb + channel_bias(bias, lb.dim()), ub + channel_bias(bias, ub.dim())
    return LinearBound(lw, lb, uw, ub)


def as_two_dimensional(attr: dict) -> dict:
    """A 1-d convolution's attributes as those of the 2-d one over a height of 1, which
    auto_LiRPA's constructor accepts (the node then runs as 1-d: :func:`convolution`)."""
    out = dict(attr)
    out["kernel_shape"] = [1] + list(attr["kernel_shape"])
    pads = list(attr.get("pads", [0, 0]))
    out["pads"] = [0, pads[0], 0, pads[1]]
    out["strides"] = [1] + list(attr.get("strides", [1]))
    out["dilations"] = [1] + list(attr.get("dilations", [1]))
    return out


def transposed_settings(attr: dict) -> bool:
    """Whether a 2-d transposed convolution has a setting auto_LiRPA 0.3 asserts away."""
    strides = list(attr.get("strides", [1, 1]))
    return (any(attr.get("pads", [0])) or any(attr.get("output_padding", [0]))
            or any(d != 1 for d in attr.get("dilations", [1])) or len(set(strides)) > 1
            or attr.get("group", 1) != 1)


def plain_transposed(attr: dict) -> dict:
    """The attributes with those settings at auto_LiRPA's defaults (set on the node after)."""
    return {**attr, "pads": [0, 0, 0, 0], "output_padding": [0, 0], "dilations": [1, 1],
            "strides": [attr.get("strides", [1, 1])[0]] * 2, "group": 1}


def bound_parts(x):
    """``(weight, bias)`` of a convolution node's constant inputs (``lower`` of each)."""
    return x[1].lower, (x[2].lower if len(x) > 2 else None)


def convolution_methods(cls, uses_own, own_forward_mode=None):
    """``cls``'s ``forward``, ``interval_propagate``, ``bound_backward`` and ``bound_forward``,
    running the rules above where ``uses_own(node)`` (``own_forward_mode(node)`` for the forward
    mode, if given) and auto_LiRPA's code elsewhere."""
    own_forward_mode = own_forward_mode or uses_own
    forward, ibp, backward_pass, forward_pass = (
        cls.forward, cls.interval_propagate, cls.bound_backward, cls.bound_forward)

    def node_forward(self, *x):
        if not uses_own(self):
            return forward(self, *x)
        out = convolution(self)(x[0], x[1])
        return out + channel_bias(x[2], out.dim()) if len(x) > 2 else out

    def interval_propagate(self, *v, C=None):
        if not uses_own(self):
            return ibp(self, *v, C=C)
        if self.is_input_perturbed(1):
            raise NotImplementedError("weight perturbation of a convolution is not supported")
        return interval(self, v[0][0], v[0][1], v[1][0], v[2][0] if len(v) > 2 else None)

    def bound_backward(self, last_lA, last_uA, *x):
        if not uses_own(self):
            return backward_pass(self, last_lA, last_uA, *x)
        if self.is_input_perturbed(1):
            raise NotImplementedError("weight perturbation of a convolution is not supported")
        weight, bias = bound_parts(x)
        (lA, lbias), (uA, ubias) = (backward(self, A, weight, bias) for A in (last_lA, last_uA))
        return [(lA, uA), (None, None)] + [(None, None)] * (len(x) - 2), lbias, ubias

    def bound_forward(self, dim_in, *x):
        if not own_forward_mode(self):
            return forward_pass(self, dim_in, *x)
        if self.is_input_perturbed(1) or (len(x) > 2 and self.is_input_perturbed(2)):
            raise NotImplementedError("weight perturbation of a convolution is not supported")
        return forward_mode(self, x[0], x[1].lb, x[2].lb if len(x) > 2 else None)
    return {(cls, "forward"): node_forward, (cls, "interval_propagate"): interval_propagate,
            (cls, "bound_backward"): bound_backward, (cls, "bound_forward"): bound_forward}


@fix(test="test_convolutions_of_every_setting_are_bounded_by_every_method",
     after=("layer_settings_refused", "conv_dilation_groups_backward"))
def one_dimensional_convolution():
    """auto_LiRPA 0.3's ``BoundConv`` is 2-d only: ``nn.Conv1d`` failed with an ``IndexError`` in
    its constructor (refused by node until now). A 1-d convolution is built as a 2-d one over a
    height of 1 and runs as ``conv1d`` with the exact IBP, CROWN (dense coefficients) and
    forward-mode rules of a linear map (:func:`convolution_methods`)."""
    from auto_LiRPA.operators import BoundConv
    init = BoundConv.__init__

    def __init__(self, attr, inputs, output_index, options):
        one_d = len(attr.get("kernel_shape", ())) == 1
        init(self, as_two_dimensional(attr) if one_d else attr, inputs, output_index, options)
        if one_d:
            self.stride, self.dilation = list(attr.get("strides", [1])), list(attr.get("dilations", [1]))
            self.padding, self.one_dimensional, self.mode = [attr.get("pads", [0, 0])[0]], True, "matrix"
    return {(BoundConv, "__init__"): __init__,
            **convolution_methods(BoundConv, lambda node: getattr(node, "one_dimensional", False))}


@fix(test="test_convolutions_of_every_setting_are_bounded_by_every_method", after=("layer_settings_refused",))
def transposed_convolution_settings():
    """auto_LiRPA 0.3's ``BoundConvTranspose`` asserts away padding, ``output_padding``,
    dilation, groups and non-square strides (refused by node until now), although its
    ``forward`` and IBP take them. Such a node is built with auto_LiRPA's defaults, then given
    its settings, and runs the exact IBP, CROWN (the transpose as a vector-Jacobian product of
    ``conv_transpose2d``; ``Patches`` made dense) and forward-mode rules of a linear map
    (:func:`convolution_methods`). auto_LiRPA has no forward mode for any transposed
    convolution: every one takes this rule. Asymmetric padding stays refused
    (``conv_transpose2d`` has none)."""
    from auto_LiRPA.operators import BoundConvTranspose
    init = BoundConvTranspose.__init__

    def __init__(self, attr, inputs, output_index, options):
        general = transposed_settings(attr) and len(attr.get("kernel_shape", ())) == 2
        pads = list(attr.get("pads", [0, 0, 0, 0]))
        if general and (pads[0] != pads[2] or pads[1] != pads[3]):
            raise NotImplementedError(f"auto_LiRPA 0.3 cannot bound the asymmetric padding {pads}")
        init(self, plain_transposed(attr) if general else attr, inputs, output_index, options)
        if general:
            self.stride, self.padding = list(attr.get("strides", [1, 1])), pads[:2]
            self.dilation, self.groups = list(attr.get("dilations", [1, 1])), attr.get("group", 1)
            self.output_padding = list(attr.get("output_padding", [0, 0]))
            self.transposed_settings, self.mode = True, "matrix"
    return {(BoundConvTranspose, "__init__"): __init__,
            **convolution_methods(BoundConvTranspose, lambda node: getattr(node, "transposed_settings", False),
                                  lambda node: True)}


@fix(test="test_adaptive_average_pool_of_any_size_is_bounded_by_every_method",
     after=("activations_traced_whole",))
def adaptive_average_pool_traced():
    """torch exports ``AdaptiveAvgPool2d`` whose input size is not a multiple of its output size
    (VGG's ``(7, 7)`` on a 9 x 9 map) as an ``ATen`` fallback that auto_LiRPA 0.3 cannot bound
    (every method refused it). While auto_LiRPA traces a model, such a pool becomes one
    ``custom::AdaptiveAvgPool2d`` node (even windows stay torch's ``AveragePool``), bound as the
    linear map with a fixed averaging matrix it is (:mod:`.adaptive_pool`)."""
    from auto_LiRPA import bound_general, register_custom_op
    from torch.onnx import register_custom_op_symbolic, unregister_custom_op_symbolic

    from .adaptive_pool import OPERATOR, BoundAdaptiveAvgPool2d, adaptive_avg_pool2d_symbolic
    from .fixes_activations import OPSET
    parse_module = bound_general.parse_module
    register_custom_op(OPERATOR, BoundAdaptiveAvgPool2d)   # an entry added to auto_LiRPA's operator map

    def traced_with_whole_adaptive_pools(*args, **kwargs):
        register_custom_op_symbolic("aten::adaptive_avg_pool2d", adaptive_avg_pool2d_symbolic, OPSET)
        try:
            return parse_module(*args, **kwargs)
        finally:
            unregister_custom_op_symbolic("aten::adaptive_avg_pool2d", OPSET)
    return {(bound_general, "parse_module"): traced_with_whole_adaptive_pools}


@fix(test="test_adaptive_average_pool_of_any_size_is_bounded_by_every_method")
def average_pool_forward_mode():
    """auto_LiRPA 0.3's ``BoundAveragePool`` and ``BoundGlobalAveragePool`` have no forward mode
    (``AdaptiveAvgPool2d((7, 7))`` on a 14 x 14 map traces into the first, ``(1, 1)`` into the
    second): the forward modes refused them. An average pool is ``P x`` with ``P >= 0``: ``P``
    on each linear bound is exact."""
    from auto_LiRPA.operators import BoundAveragePool, BoundGlobalAveragePool

    from .adaptive_pool import pooled_linear_bound

    def bound_forward(self, dim_in, x):
        return pooled_linear_bound(self.forward, x)
    return {(BoundAveragePool, "bound_forward"): bound_forward,
            (BoundGlobalAveragePool, "bound_forward"): bound_forward}
