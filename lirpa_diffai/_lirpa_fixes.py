"""Soundness fixes for auto_LiRPA 0.3's own operators, applied by ``_compat.patch_loaded`` after
auto_LiRPA is imported (this file is loaded as ``_compat`` is, without the package).

Each patch is version-guarded (auto_LiRPA 0.3 only), changes one method, and leaves the cases
that were already right on their old code path, so their bounds stay bit-identical.
"""
from __future__ import annotations

import types
from math import prod

BUGGY_VERSION = "0.3"


def _is_buggy_version() -> bool:
    import auto_LiRPA
    return auto_LiRPA.__version__ == BUGGY_VERSION


def dense_coefficients(last_A, node_output_shape):
    """``last_A`` as a dense tensor (spec, B, *node_output_shape[1:]): ``Patches`` expanded with
    auto_LiRPA's own ``patches_to_matrix`` (as ``BoundConv`` does when patches grow too large)."""
    from auto_LiRPA.patches import Patches, patches_to_matrix
    if not isinstance(last_A, Patches):
        return last_A
    if last_A.identity == 1 or last_A.inserted_zeros or any(last_A.output_padding or ()):
        raise NotImplementedError("auto_LiRPA patches with identity/inserted zeros/output padding "
                                  "cannot be made dense here")
    matrix = patches_to_matrix(last_A.patches, node_output_shape[1:], last_A.stride, last_A.padding,
                               last_A.output_shape, last_A.unstable_idx)
    return matrix.transpose(0, 1)


def linear_transpose(forward, last_A, input_shape):
    """``A -> A J`` for a linear ``forward`` (the exact backward coefficients of a linear
    operator): one vector-Jacobian product per spec row, differentiable in ``A``."""
    import torch
    spec, batch = last_A.shape[:2]
    flat = last_A.reshape(spec * batch, *last_A.shape[2:])
    with torch.enable_grad():
        x = torch.zeros(spec * batch, *input_shape[1:], dtype=flat.dtype, device=flat.device,
                        requires_grad=True)
        (grad,) = torch.autograd.grad(forward(x), x, flat, create_graph=flat.requires_grad)
    return grad.reshape(spec, batch, *input_shape[1:])



def _plain_average_pool(node) -> bool:
    """The pools auto_LiRPA 0.3's own backward gets right: no padding, stride == kernel."""
    return (list(node.padding) == [0, 0] and list(node.stride) == list(node.kernel_size)
            and not node.ceil_mode)


def pool_as_convolution(node, like):
    """An average pool that counts its padding, as the convolution it is: a stand-in for the
    ``BoundConv`` (stride, padding; one ``1/k`` kernel per channel, as a dense block-diagonal
    kernel since auto_LiRPA's patches mode ignores ``groups``) and its kernel node."""
    import torch
    channels = node.input_shape[1]
    kernel = torch.eye(channels, dtype=like.dtype, device=like.device)[:, :, None, None] \
        .expand(-1, -1, *node.kernel_size) / prod(node.kernel_size)
    conv = types.SimpleNamespace(
        input_shape=node.input_shape, output_shape=node.output_shape, stride=list(node.stride),
        padding=list(node.padding), dilation=[1, 1], groups=1, has_bias=False, relu_followed=False,
        is_input_perturbed=lambda index: False)
    return conv, types.SimpleNamespace(lower=kernel.contiguous())


def average_pool_settings() -> bool:
    """auto_LiRPA 0.3 bug: ``BoundAveragePool`` hard-codes ``ceil_mode=False`` and
    ``count_include_pad=True`` (``avg_pool2d(count_include_pad=False)`` is traced as another
    function), and its backward pass for dense coefficients assumes stride == kernel and no
    padding. Read both attributes, and give every other pool its exact transpose
    ``A -> A J`` (``J`` the pool's constant Jacobian: ``y = J x``, so ``A y = (A J) x``)."""
    if not _is_buggy_version():
        return False
    from auto_LiRPA.operators import BoundAveragePool, BoundConv
    from auto_LiRPA.patches import Patches
    init, backward = BoundAveragePool.__init__, BoundAveragePool.bound_backward

    def __init__(self, attr, inputs, output_index, options):
        init(self, attr, inputs, output_index, options)
        self.ceil_mode = bool(attr.get("ceil_mode", 0))
        self.count_include_pad = bool(attr.get("count_include_pad", 1))

    def bound_backward(self, last_lA, last_uA, x):
        if _plain_average_pool(self):
            return backward(self, last_lA, last_uA, x)
        some_A = last_lA if last_lA is not None else last_uA
        if isinstance(some_A, Patches) and self.count_include_pad and not self.ceil_mode:
            # keep patches (DenseNet's transitions): bound it as the convolution it is
            conv, kernel = pool_as_convolution(self, some_A.patches)
            As, lbias, ubias = BoundConv.bound_backward(conv, last_lA, last_uA, x, kernel)
            return As[:1], lbias, ubias

        def transpose(last_A):
            if last_A is None:
                return None
            return linear_transpose(self.forward, dense_coefficients(last_A, self.output_shape),
                                    self.input_shape)
        return [(transpose(last_lA), transpose(last_uA))], 0, 0
    BoundAveragePool.__init__ = __init__
    BoundAveragePool.bound_backward = bound_backward
    return True


def pad_constant_backward() -> bool:
    """auto_LiRPA 0.3 bug: ``BoundPad``'s backward pass drops the padding constant: ``A pad(x, c)
    = A' x + A c_pad`` with ``c_pad`` the padded image of zeros. Add ``A c_pad``. Also records
    the ``mode`` attribute (reflect / edge padding is traced as constant padding; the
    construction check refuses those nodes)."""
    if not _is_buggy_version():
        return False
    import torch
    import torch.nn.functional as F
    from auto_LiRPA.operators import BoundPad
    from auto_LiRPA.patches import Patches
    init, backward = BoundPad.__init__, BoundPad.bound_backward

    def __init__(self, attr, inputs, output_index, options):
        init(self, attr, inputs, output_index, options)
        self.mode = attr.get("mode", "constant")

    def bound_backward(self, last_lA, last_uA, *x):
        As, lbias, ubias = backward(self, last_lA, last_uA, *x)
        value = float(self.value)
        if value == 0.0:
            return As, lbias, ubias
        some_A = last_lA if last_lA is not None else last_uA
        like = some_A.patches if isinstance(some_A, Patches) else some_A
        padded = F.pad(torch.zeros(self.input_shape, dtype=like.dtype, device=like.device),
                       self.padding, value=value)
        return As, lbias + self.get_bias(last_lA, padded), ubias + self.get_bias(last_uA, padded)
    BoundPad.__init__ = __init__
    BoundPad.bound_backward = bound_backward
    return True


def dilate_kernel(weight, dilation):
    """The kernel of ``conv2d(..., dilation=d)`` as an undilated kernel (zeros in between)."""
    import torch
    dh, dw = dilation
    out = torch.zeros(*weight.shape[:2], (weight.size(2) - 1) * dh + 1, (weight.size(3) - 1) * dw + 1,
                      dtype=weight.dtype, device=weight.device)
    out[:, :, ::dh, ::dw] = weight
    return out


def ungroup_kernel(weight, groups: int):
    """The kernel of ``conv2d(..., groups=g)`` as the block-diagonal kernel of an ungrouped one."""
    import torch
    out_per, in_per = weight.size(0) // groups, weight.size(1)
    out = weight.new_zeros(weight.size(0), in_per * groups, *weight.shape[2:])
    for g in range(groups):
        out[g * out_per:(g + 1) * out_per, g * in_per:(g + 1) * in_per] = weight[g * out_per:(g + 1) * out_per]
    return out


def conv_dilation_groups_backward() -> bool:
    """auto_LiRPA 0.3 bugs: ``BoundConv``'s backward pass ignores ``dilation`` in patches mode
    (and reads ``dilation[0]`` for both axes in matrix mode), and ``groups`` in patches mode
    (a depthwise convolution got other bounds than in matrix mode, or failed). A dilated
    convolution is the undilated one with the dilated kernel, and a grouped one the ungrouped
    one with the block-diagonal kernel: run the backward pass on those."""
    if not _is_buggy_version():
        return False
    from auto_LiRPA.operators import BoundConv
    from auto_LiRPA.patches import Patches
    backward = BoundConv.bound_backward

    def bound_backward(self, last_lA, last_uA, *x):
        ungroup = self.groups != 1 and isinstance(last_lA if last_lA is not None else last_uA, Patches)
        if list(self.dilation) == [1, 1] and not ungroup:
            return backward(self, last_lA, last_uA, *x)
        kernel = dilate_kernel(x[1].lower, self.dilation)
        if ungroup:
            kernel = ungroup_kernel(kernel, self.groups)
        saved = self.dilation, self.groups
        self.dilation, self.groups = [1, 1], 1 if ungroup else self.groups
        try:
            return backward(self, last_lA, last_uA, x[0], types.SimpleNamespace(lower=kernel), *x[2:])
        finally:
            self.dilation, self.groups = saved
    BoundConv.bound_backward = bound_backward
    return True


def concave_leaky_relu_relaxation(lower, upper, slope):
    """Linear bounds ``(lower_d, lower_b, upper_d, upper_b)`` of ``leaky_relu(x, slope)``,
    ``slope > 1``, on ``[lower, upper]``. The function is concave there: the chord through
    ``(l', f(l'))`` and ``(u', f(u'))`` (``l' = min(l, 0)``, ``u' = max(u, 0)``) lies below it,
    and a line through 0 with a slope in ``[1, slope]`` above it (the one nearer the chord's)."""
    import torch
    l = lower.clamp(max=0)
    u = torch.max(upper.clamp(min=0), l + 1e-8)
    chord_d = (u - slope * l) / (u - l)
    chord_b = l * (slope - chord_d)
    tangent_d = torch.where(chord_d > (1 + slope) / 2, torch.full_like(chord_d, slope),
                            torch.ones_like(chord_d))
    return chord_d, chord_b, tangent_d, torch.zeros_like(chord_b)


def leaky_relu_bounds() -> bool:
    """auto_LiRPA 0.3 bugs in ``BoundLeakyRelu``: IBP takes ``[f(l), f(u)]``, wrong for a
    negative slope (``f`` is not monotone: the minimum is ``f(0) = 0`` when ``l < 0 < u``), and
    CROWN takes the chord as the upper bound, wrong for slope > 1 (``f`` concave). IBP: the
    exact range (``f`` convex or concave, so its extremes lie at ``l``, ``u`` or 0); CROWN for
    slope > 1: :func:`concave_leaky_relu_relaxation`."""
    if not _is_buggy_version():
        return False
    import torch
    from auto_LiRPA.operators import BoundLeakyRelu
    backward = BoundLeakyRelu.bound_backward

    def interval_propagate(self, *v):
        lower, upper = v[0][0], v[0][1]
        if self.alpha >= 0:
            return self.forward(lower), self.forward(upper)
        ends_l, ends_u = self.forward(lower), self.forward(upper)
        crossing = (lower < 0) & (upper > 0)
        return torch.where(crossing, torch.zeros_like(ends_l), torch.min(ends_l, ends_u)), \
            torch.max(ends_l, ends_u)

    def bound_backward(self, last_lA, last_uA, x=None, start_node=None, start_shape=None):
        if self.alpha <= 1:
            return backward(self, last_lA, last_uA, x, start_node, start_shape)
        bounds = (x.lower, x.upper) if x is not None else (self.lower, self.upper)
        lower_d, lower_b, upper_d, upper_b = (t.unsqueeze(0) if i % 2 == 0 else t for i, t in
                                              enumerate(concave_leaky_relu_relaxation(*bounds, self.alpha)))

        def one_side(last_A, pos_d, pos_b, neg_d, neg_b):
            if last_A is None:
                return None, 0
            pos, neg = last_A.clamp(min=0), last_A.clamp(max=0)
            return pos * pos_d + neg * neg_d, self.get_bias(pos, pos_b) + self.get_bias(neg, neg_b)
        lA, lbias = one_side(last_lA, lower_d, lower_b, upper_d, upper_b)
        uA, ubias = one_side(last_uA, upper_d, upper_b, lower_d, lower_b)
        return [(lA, uA)], lbias, ubias
    BoundLeakyRelu.interval_propagate = interval_propagate
    BoundLeakyRelu.bound_backward = bound_backward
    return True


def _nested(prefix: str) -> bool:
    """auto_LiRPA's own test for a leaf node of a BoundedModule that is itself a child module."""
    return len(prefix.split(".")) != 2


def nested_load_state_dict() -> bool:
    """auto_LiRPA 0.3 bug under torch 2: a ``BoundedModule`` inside another module never loads
    its parameters through the parent's ``load_state_dict``. Its leaf nodes look up
    ``<parent prefix>.<original name>``, but torch 2 hands each child only the keys under
    its own prefix (``<parent prefix>./<node>.``). The BoundedModule, which sees all of its
    keys, now loads its leaves itself (and reports missing or unexpected keys as torch does)."""
    if not _is_buggy_version():
        return False
    import torch
    from auto_LiRPA import BoundedModule
    from auto_LiRPA.operators import BoundInput
    leaf_load, module_load = BoundInput._load_from_state_dict, BoundedModule._load_from_state_dict

    def load_leaf(self, state_dict, prefix, *args):
        if not _nested(prefix):
            leaf_load(self, state_dict, prefix, *args)

    def load_module(self, state_dict, prefix, local_metadata, strict, missing_keys,
                    unexpected_keys, error_msgs):
        if prefix:
            state_dict = dict(state_dict)
            for node in self._modules.values():
                tensors = [t for t in (*node._parameters.values(), *node._buffers.values()) if t is not None]
                if not isinstance(node, BoundInput) or not tensors:
                    continue
                key = prefix + node.ori_name
                if key not in state_dict:
                    if strict:
                        missing_keys.append(key)
                    continue
                value = state_dict.pop(key)
                if value.shape != tensors[0].shape:
                    error_msgs.append(f"size mismatch for {key}: copying a param with shape "
                                      f"{tuple(value.shape)} from checkpoint, the shape in current "
                                      f"model is {tuple(tensors[0].shape)}.")
                    continue
                with torch.no_grad():
                    tensors[0].copy_(value)
        module_load(self, state_dict, prefix, local_metadata, strict, missing_keys,
                    unexpected_keys, error_msgs)
    BoundInput._load_from_state_dict = load_leaf
    BoundedModule._load_from_state_dict = load_module
    return True


def patches_to_matrix_rectangular() -> bool:
    """auto_LiRPA 0.3 bug: ``patches_to_matrix`` steps from one output row to the next by the
    padded input *height* where the padded *width* is meant, so patches whose padded input is
    not square (a rectangular or dilated kernel, or asymmetric padding, met when CROWN turns
    large patches into a matrix) land on the wrong pixels. Pad the shorter side at its far
    end until the padded input is square; the extra padding is cropped away as the rest."""
    if not _is_buggy_version():
        return False
    import sys
    import auto_LiRPA.patches
    original = auto_LiRPA.patches.patches_to_matrix

    def patches_to_matrix(pieces, input_shape, stride, padding, output_shape=None, unstable_idx=None):
        left, right, top, bottom = (padding,) * 4 if isinstance(padding, int) else padding
        height, width = input_shape[-2] + top + bottom, input_shape[-1] + left + right
        padding = (left, right + max(height - width, 0), top, bottom + max(width - height, 0))
        return original(pieces, input_shape, stride, padding, output_shape, unstable_idx)
    for name, module in list(sys.modules.items()):
        if name.startswith("auto_LiRPA") and getattr(module, "patches_to_matrix", None) is original:
            module.patches_to_matrix = patches_to_matrix
    return True


def concat_backward_any_axis() -> bool:
    """auto_LiRPA 0.3 gap: ``BoundConcat``'s backward pass splits patches coefficients along the
    channel axis only (``padding_mode="circular"`` concatenates along height and width) and
    fails with a bare assertion otherwise. Make such coefficients dense first (exact)."""
    if not _is_buggy_version():
        return False
    from auto_LiRPA.operators import BoundConcat
    from auto_LiRPA.patches import Patches
    backward = BoundConcat.bound_backward

    def bound_backward(self, last_lA, last_uA, *x):
        axis = self.make_axis_non_negative(self.axis, "output")
        if axis > 1 or len(self.input_shape) != 4:
            last_lA, last_uA = (dense_coefficients(A, self.output_shape) if isinstance(A, Patches) else A
                                for A in (last_lA, last_uA))
        return backward(self, last_lA, last_uA, *x)
    BoundConcat.bound_backward = bound_backward
    return True


def gather_elements_repeated_indices() -> bool:
    """auto_LiRPA 0.3 bug: ``BoundGatherElements``'s backward pass scatters the coefficients
    with ``scatter_``, so an input element gathered twice keeps one of its coefficients
    (``A gather(x) = scatter_add(A) x``). Accumulate them."""
    if not _is_buggy_version():
        return False
    import torch
    from auto_LiRPA.operators import BoundGatherElements
    backward = BoundGatherElements.bound_backward

    def bound_backward(self, last_lA, last_uA, x, index):
        if not self.from_input:
            return backward(self, last_lA, last_uA, x, index)
        dim = self._get_dim()

        def scatter(last_A):
            if last_A is None:
                return None
            A = torch.zeros(*last_A.shape[:2], *x.output_shape[1:], dtype=last_A.dtype, device=last_A.device)
            return A.scatter_add(dim + 1, self.index.unsqueeze(0).expand(last_A.shape[0], *self.index.shape), last_A)
        return [(scatter(last_lA), scatter(last_uA)), (None, None)], 0, 0
    BoundGatherElements.bound_backward = bound_backward
    return True


def batched_constant_contribution() -> bool:
    """auto_LiRPA 0.3 bug: CROWN adds a constant node's contribution ``A c`` as if ``c`` had no
    batch axis, so a constant with one row per sample (``torch.cat([f(x), c], 1)``, ``c`` of
    shape (B, k)) is summed over all samples' rows. Use the batched product when ``c``'s shape
    is the batch followed by the coefficients' per-sample shape."""
    if not _is_buggy_version():
        return False
    import torch
    import auto_LiRPA.backward_bound as backward_bound
    original = backward_bound.add_constant_node

    def batched(A, value):
        return (isinstance(A, torch.Tensor) and isinstance(value, torch.Tensor)
                and tuple(value.shape) == tuple(A.shape[1:]) and tuple(value.shape) != tuple(A.shape[2:]))

    def add_constant_node(lb, ub, node):
        value = node.forward_value
        if not (batched(node.lA, value) or batched(node.uA, value)):
            return original(lb, ub, node)
        new = [torch.einsum("sb...,b...->sb", A, value) if A is not None else 0 for A in (node.lA, node.uA)]
        new = [n.reshape(b.shape) if isinstance(b, torch.Tensor) and b.ndim > 0 and isinstance(n, torch.Tensor)
               and b.ndim != n.ndim else n for n, b in zip(new, (lb, ub))]
        return lb + new[0], ub + new[1]
    backward_bound.add_constant_node = add_constant_node
    return True


def division_interval() -> bool:
    """auto_LiRPA 0.3 bug: ``BoundDiv``'s IBP returns ``[x_l / y_u, x_u / y_l]``, right only for
    ``x >= 0`` (a second ``interval_propagate`` definition shadows the constant case too).
    Take the interval product ``x * [1 / y_u, 1 / y_l]`` (extremes among the four corner
    products), and refuse a denominator whose interval contains 0. Its layer-norm special
    case (denominator a ``Sqrt`` node) is left as it is."""
    if not _is_buggy_version():
        return False
    import torch
    from auto_LiRPA.operators import BoundDiv, BoundSqrt
    original = BoundDiv.interval_propagate

    def interval_propagate(self, *v):
        if isinstance(self.inputs[1], BoundSqrt):
            return original(self, *v)
        (x_l, x_u), (y_l, y_u) = v[0][:2], v[1][:2]
        if not bool(((y_l > 0) | (y_u < 0)).all()):
            raise NotImplementedError(f"IBP: graph node '{self.name}' (operator Div): the denominator's "
                                      "bounds contain 0, so the quotient is unbounded")
        corners = torch.stack(torch.broadcast_tensors(x_l / y_u, x_l / y_l, x_u / y_u, x_u / y_l))
        return corners.min(0).values, corners.max(0).values
    BoundDiv.interval_propagate = interval_propagate
    return True


def sqrt_upper_tangent() -> bool:
    """auto_LiRPA 0.3 bug: ``BoundSqrt``'s backward pass gives its upper tangent (at the
    midpoint ``m``) the slope ``-0.5 m^-1.5`` instead of ``sqrt'(m) = 0.5 m^-0.5``, so the upper
    bound is wrong. Bound with the chord below and the midpoint tangent above (``sqrt`` is
    concave), on the interval clipped to ``x >= 0`` (its domain)."""
    if not _is_buggy_version():
        return False
    import torch
    from auto_LiRPA.operators import BoundSqrt

    def bound_backward(self, last_lA, last_uA, x):
        x_l = x.lower.clamp(min=0)
        x_u = torch.max(x.upper, x_l + 1e-8)
        sqrt_l, sqrt_u = torch.sqrt(x_l), torch.sqrt(x_u)
        chord_d = (sqrt_u - sqrt_l) / (x_u - x_l).clamp(min=1e-8)  # 0 when x_u rounds to x_l: still below
        chord_b = sqrt_l - chord_d * x_l
        x_m = (x_l + x_u) / 2
        tangent_d = 0.5 / torch.sqrt(x_m)
        tangent_b = torch.sqrt(x_m) - tangent_d * x_m

        def one_side(last_A, pos_d, pos_b, neg_d, neg_b):
            if last_A is None:
                return None, 0
            pos, neg = last_A.clamp(min=0), last_A.clamp(max=0)
            return pos * pos_d + neg * neg_d, self.get_bias(pos, pos_b) + self.get_bias(neg, neg_b)
        lA, lbias = one_side(last_lA, chord_d, chord_b, tangent_d, tangent_b)
        uA, ubias = one_side(last_uA, tangent_d, tangent_b, chord_d, chord_b)
        return [(lA, uA), (None, None)], lbias, ubias
    BoundSqrt.bound_backward = bound_backward
    return True


def start_coefficients_without_patches() -> bool:
    """auto_LiRPA 0.3 crashes when CROWN starts at a node: an Add / Sub with a non-image
    output in patches mode gets identity patches (``output_shape[-3]``), and a network without
    parameters has no dtype for them (``list(self.parameters())[0]``). Start such an Add / Sub
    as in matrix mode, and take the dtype from the node's value."""
    if not _is_buggy_version():
        return False
    import torch
    from auto_LiRPA import BoundedModule
    from auto_LiRPA.operators import BoundAdd, BoundSub
    original = BoundedModule.get_sparse_C

    def get_sparse_C(self, node, *args, **kwargs):
        flat = isinstance(node, (BoundAdd, BoundSub)) and getattr(node, "mode", None) == "patches" \
            and len(node.output_shape) != 4
        anchor = not any(True for _ in self.parameters())
        inputs = [getattr(self[name], "value", None) for name in self.input_name]
        dtype = next((v.dtype for v in inputs if isinstance(v, torch.Tensor) and v.is_floating_point()),
                     torch.get_default_dtype())
        if flat:
            node.mode = "matrix"
        if anchor:  # auto_LiRPA reads the dtype of the first parameter
            self.parameters = lambda *a, **k: iter([torch.zeros((), dtype=dtype)])
        try:
            return original(self, node, *args, **kwargs)
        finally:
            if flat:
                node.mode = "patches"
            if anchor:
                del self.parameters
    BoundedModule.get_sparse_C = get_sparse_C
    return True


def alpha_crown_output_shape() -> bool:
    """auto_LiRPA 0.3's alpha-CROWN keeps its best bounds per (batch, output) row and fails
    with an ``IndexError`` when the final node's value has more axes and no specification
    ``C`` reduces it: refuse that by node. On a graph without an optimizable activation it
    fails (nothing requires a gradient): bound it with CROWN, which is what it optimizes."""
    if not _is_buggy_version():
        return False
    from auto_LiRPA import BoundedModule
    original = BoundedModule.get_optimized_bounds

    def get_optimized_bounds(self, *args, **kwargs):
        node = self[kwargs.get("final_node_name") or self.final_name]
        shape = getattr(node, "output_shape", None)
        if kwargs.get("C") is None and shape is not None and len(shape) > 2:
            raise NotImplementedError(
                f"alpha-CROWN: the final graph node '{node.name}' (operator {type(node).__name__[5:]}, "
                f"{type(node).__name__}) has the shape {tuple(shape)}; alpha-CROWN bounds a (batch, n) "
                "output: flatten it or pass a specification C")
        if not self.optimizable_activations:  # nothing to optimize: alpha-CROWN is CROWN
            keep = ("x", "C", "bound_lower", "bound_upper", "final_node_name", "intermediate_layer_bounds",
                    "reference_bounds", "return_A", "needed_A_dict")
            return BoundedModule.compute_bounds(self, method="backward",
                                                **{k: v for k, v in kwargs.items() if k in keep})
        return original(self, *args, **kwargs)
    BoundedModule.get_optimized_bounds = get_optimized_bounds
    return True


NODE_METHODS = ("forward", "interval_propagate", "bound_backward", "bound_forward")


def name_node_in(error: Exception, node, method: str) -> None:
    """Prefix ``error``'s message with the graph node and operator it came from (once); the
    exception keeps its type."""
    if getattr(error, "_names_graph_node", False):
        return
    operator = type(node).__name__
    detail = str(error) or f"auto_LiRPA 0.3 failed an internal check ({type(error).__name__})"
    error.args = (f"{method}: graph node '{getattr(node, 'name', '?')}' (operator {operator[5:]}, "
                  f"{operator}): {detail}",)
    error._names_graph_node = True


def failing_nodes_named() -> bool:
    """auto_LiRPA 0.3 fails on many graphs it accepts with errors that name no node (bare
    assertions, shape errors deep in its operators). Every error raised in a node's
    ``forward``, ``interval_propagate``, ``bound_backward`` or ``bound_forward`` now names the
    graph node and its operator, so it is a refusal a user can act on (same exception type)."""
    if not _is_buggy_version():
        return False
    import functools
    import inspect
    import auto_LiRPA.operators as operators
    classes = {c for c in vars(operators).values() if inspect.isclass(c) and issubclass(c, operators.Bound)}

    def wrap(function, method):
        @functools.wraps(function)
        def named(self, *args, **kwargs):
            try:
                return function(self, *args, **kwargs)
            except Exception as error:
                name_node_in(error, self, method)
                raise
        return named
    for cls in classes:
        for method in NODE_METHODS:
            if method in vars(cls):
                setattr(cls, method, wrap(vars(cls)[method], method))
    return True


PATCHES = (average_pool_settings, pad_constant_backward, conv_dilation_groups_backward, leaky_relu_bounds,
           nested_load_state_dict, patches_to_matrix_rectangular, concat_backward_any_axis,
           gather_elements_repeated_indices, batched_constant_contribution, division_interval, sqrt_upper_tangent,
           start_coefficients_without_patches, alpha_crown_output_shape, failing_nodes_named)
