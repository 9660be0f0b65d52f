"""Soundness fixes for auto_LiRPA 0.3's linear operators in CROWN's backward pass (pooling,
padding, convolutions, patches, concatenation, gathering, constants); :mod:`.manifest` applies
them.

Each fix leaves the cases that were already right on their old code path, so their bounds stay
bit-identical.
"""
from __future__ import annotations

import types
from math import prod

from .fix import fix


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


def dense_pair(node, last_lA, last_uA) -> tuple:
    """A node's two backward coefficients through :func:`dense_coefficients` (patches-mode ones,
    which a convolution after the node leaves, expanded; dense ones and None as they are)."""
    return tuple(dense_coefficients(A, node.output_shape) for A in (last_lA, last_uA))


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


@fix(test="test_average_pool_settings_are_bounded_as_traced", after=('contiguous_backward_coefficients',))
def average_pool_settings():
    """auto_LiRPA 0.3 bug: ``BoundAveragePool`` hard-codes ``ceil_mode=False`` and
    ``count_include_pad=True`` (``avg_pool2d(count_include_pad=False)`` is traced as another
    function), and its backward pass for dense coefficients assumes stride == kernel and no
    padding. Read both attributes, and give every other pool its exact transpose
    ``A -> A J`` (``J`` the pool's constant Jacobian: ``y = J x``, so ``A y = (A J) x``)."""
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
    return {(BoundAveragePool, "__init__"): __init__,
            (BoundAveragePool, "bound_backward"): bound_backward}


@fix(test="test_pad_with_a_constant_keeps_its_contribution_in_crown")
def pad_constant_backward():
    """auto_LiRPA 0.3 bug: ``BoundPad``'s backward pass drops the padding constant: ``A pad(x, c)
    = A' x + A c_pad`` with ``c_pad`` the padded image of zeros. Add ``A c_pad``. Also records
    the ``mode`` attribute (reflect / edge padding is traced as constant padding; the
    construction check refuses those nodes)."""
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
    return {(BoundPad, "__init__"): __init__, (BoundPad, "bound_backward"): bound_backward}


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
    out_per, in_per = weight.size(0) // groups, weight.size(1)
    out = weight.new_zeros(weight.size(0), in_per * groups, *weight.shape[2:])
    for g in range(groups):
        out[g * out_per:(g + 1) * out_per, g * in_per:(g + 1) * in_per] = weight[g * out_per:(g + 1) * out_per]
    return out


@fix(test="test_dilated_convolutions_in_crown")
def conv_dilation_groups_backward():
    """auto_LiRPA 0.3 bugs: ``BoundConv``'s backward pass ignores ``dilation`` in patches mode
    (and reads ``dilation[0]`` for both axes in matrix mode), and ``groups`` in patches mode
    (a depthwise convolution got other bounds than in matrix mode, or failed). A dilated
    convolution is the undilated one with the dilated kernel, and a grouped one the ungrouped
    one with the block-diagonal kernel: run the backward pass on those."""
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
    return {(BoundConv, "bound_backward"): bound_backward}


@fix(test="test_patches_of_a_rectangular_kernel_become_the_right_matrix")
def patches_to_matrix_rectangular():
    """auto_LiRPA 0.3 bug: ``patches_to_matrix`` steps from one output row to the next by the
    padded input *height* where the padded *width* is meant, so patches whose padded input is
    not square (a rectangular or dilated kernel, or asymmetric padding, met when CROWN turns
    large patches into a matrix) land on the wrong pixels. Pad the shorter side at its far
    end until the padded input is square; the extra padding is cropped away as the rest."""
    import sys
    import auto_LiRPA.patches
    original = auto_LiRPA.patches.patches_to_matrix

    def patches_to_matrix(pieces, input_shape, stride, padding, output_shape=None, unstable_idx=None):
        left, right, top, bottom = (padding,) * 4 if isinstance(padding, int) else padding
        height, width = input_shape[-2] + top + bottom, input_shape[-1] + left + right
        padding = (left, right + max(height - width, 0), top, bottom + max(width - height, 0))
        return original(pieces, input_shape, stride, padding, output_shape, unstable_idx)
    # every auto_LiRPA module that imported the function by name
    return {(module, "patches_to_matrix"): patches_to_matrix for name, module in list(sys.modules.items())
            if name.startswith("auto_LiRPA") and getattr(module, "patches_to_matrix", None) is original}


@fix(test="test_circular_padding_is_traced_exactly_and_bounded")
def concat_backward_any_axis():
    """auto_LiRPA 0.3 gap: ``BoundConcat``'s backward pass splits patches coefficients along the
    channel axis only (``padding_mode="circular"`` concatenates along height and width) and
    fails with a bare assertion otherwise. Make such coefficients dense first (exact)."""
    from auto_LiRPA.operators import BoundConcat
    backward = BoundConcat.bound_backward

    def bound_backward(self, last_lA, last_uA, *x):
        axis = self.make_axis_non_negative(self.axis, "output")
        if axis > 1 or len(self.input_shape) != 4:
            last_lA, last_uA = dense_pair(self, last_lA, last_uA)
        return backward(self, last_lA, last_uA, *x)
    return {(BoundConcat, "bound_backward"): bound_backward}


@fix(test="test_patches_reach_transpose_and_matmul_in_crown")
def transpose_and_matmul_take_patches():
    """auto_LiRPA 0.3 gap: ``BoundTranspose`` and ``BoundMatMul`` (``x @ W`` with a constant
    ``W``, or the transposes that ``softmax(x, 2)`` of an image traces into) take dense
    coefficients only; patches-mode ones (a convolution after them) failed (``'Patches'
    object has no attribute 'permute'``, ``'NoneType' object is not subscriptable``). They are
    made dense first (exact)."""
    from auto_LiRPA.operators import BoundMatMul, BoundTranspose

    def taking_dense(backward):
        def bound_backward(self, last_lA, last_uA, *args, **kwargs):
            return backward(self, *dense_pair(self, last_lA, last_uA), *args, **kwargs)
        return bound_backward
    return {(cls, "bound_backward"): taking_dense(cls.bound_backward) for cls in (BoundTranspose, BoundMatMul)}


@fix(test="test_a_batch_of_one_reduced_over_its_batch_axis_is_bounded_soundly")
def reduction_over_a_batch_of_one():
    """auto_LiRPA 0.3 bug: ``BoundReduceMean`` / ``BoundReduceSum`` without ``keepdim`` give
    their input coefficients the input's rank back for every reduced axis but the batch axis,
    so a batch of one sample reduced over it (``x.mean(0)`` of a (1, 1, ...) value, which the
    batch-axis check lets through: nothing moves between samples) leaves them one axis short.
    CROWN broadcasts over it where every other axis has one element and fails at the next
    linear layer where one has more; alpha-CROWN's ``ClampedMultiplication`` backward crashes
    ("an invalid gradient ... got [1, 1] but expected shape compatible with [1, 1, 1]"). Restore
    that axis too (exact: the reduced axis has one element). The batch axis named from the end
    (``x.mean(-3)``) failed a bare assertion on the first call only (the axis is rewritten
    before it is checked); it is that axis 0 from the start."""
    import torch
    from auto_LiRPA.operators import BoundReduceMean, BoundReduceSum

    def restoring(backward):
        def bound_backward(self, last_lA, last_uA, x):
            rank = len(self.input_shape)
            axes = [a + rank if a < 0 else a for a in (self.axis if self.axis is not None else ())]
            if 0 in axes and self.input_shape[0] == 1:
                self.axis = axes
                if not self.keepdim:
                    last_lA, last_uA = (A.unsqueeze(1) if isinstance(A, torch.Tensor) else A
                                        for A in (last_lA, last_uA))
            return backward(self, last_lA, last_uA, x)
        return bound_backward
    return {(cls, "bound_backward"): restoring(cls.bound_backward) for cls in (BoundReduceMean, BoundReduceSum)}


@fix(test="test_fuzzer_findings_are_bounded_soundly")
def gather_elements_repeated_indices():
    """auto_LiRPA 0.3 bug: ``BoundGatherElements``'s backward pass scatters the coefficients
    with ``scatter_``, so an input element gathered twice keeps one of its coefficients
    (``A gather(x) = scatter_add(A) x``). Accumulate them."""
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
    return {(BoundGatherElements, "bound_backward"): bound_backward}


def one_row_per_sample(A, value) -> bool:
    """``value`` (a constant) has one row per sample of the coefficients ``A`` (spec, B, ...):
    its shape is the batch followed by ``A``'s per-sample shape (and not that shape alone)."""
    import torch
    return (isinstance(A, torch.Tensor) and isinstance(value, torch.Tensor)
            and tuple(value.shape) == tuple(A.shape[1:]) and tuple(value.shape) != tuple(A.shape[2:]))


def constant_product(A, value):
    """``A c`` for a constant ``c`` where auto_LiRPA 0.3's own product is wrong, in the layout of
    CROWN's biases (spec, B, ...); None elsewhere (auto_LiRPA's product is right there).
    ``c`` with one row per sample: ``sum_j A[s, b, j] c[b, j]``. Patches coefficients of an Add /
    Sub output (``broadcast_to``, set by ``constant_operand_coefficients``): ``c`` broadcast to
    that output's shape, then the patches' product, as for an input, which leaves out the
    zero padding of a convolution after it (auto_LiRPA multiplied the patches' sums by ``c``,
    counting a scalar ``c`` at the padding too, or broadcast ``c`` to the network's input
    shape)."""
    import torch
    from auto_LiRPA.patches import Patches
    if one_row_per_sample(A, value):
        return torch.einsum("sb...,b...->sb", A, value)
    if isinstance(A, Patches) and getattr(A, "broadcast_to", None) is not None and isinstance(value, torch.Tensor):
        batch = A.patches.shape[1]   # the bounded batch (broadcast_to holds the traced one)
        return A.matmul(value.expand(batch, *A.broadcast_to[1:])).transpose(0, 1)
    return None


def in_layout_of(new, bias):
    """``new`` (spec, B, ...) added to CROWN's running ``bias``: 0 for None; reshaped where
    ``bias`` has other axes, e.g. patches' (spec, B, h, w) as (spec * h * w, B)."""
    if new is None:
        return 0
    if bias.ndim == 0 or bias.ndim == new.ndim:
        return new
    return new.movedim(1, -1).reshape(bias.shape) if bias.ndim == 2 else new.reshape(bias.shape)


@fix(test="test_fuzzer_findings_are_bounded_soundly")
def batched_constant_contribution():
    """auto_LiRPA 0.3 bugs: CROWN adds a constant node's contribution ``A c`` as if ``c`` had no
    batch axis, so a constant with one row per sample (``torch.cat([f(x), c], 1)``, ``c`` of
    shape (B, k)) is summed over all samples' rows; with patches coefficients (a constant
    added to a convolution's output) it multiplies the patches' sums by ``c``, which fails or
    mixes the axes unless ``c`` is a scalar. Use :func:`constant_product` there."""
    import auto_LiRPA.backward_bound as backward_bound
    original = backward_bound.add_constant_node

    def add_constant_node(lb, ub, node):
        new = [constant_product(A, node.forward_value) for A in (node.lA, node.uA)]
        if new[0] is None and new[1] is None:
            return original(lb, ub, node)
        return lb + in_layout_of(new[0], lb), ub + in_layout_of(new[1], ub)
    return {(backward_bound, "add_constant_node"): add_constant_node}


@fix(test="test_fuzzer_findings_are_bounded_soundly")
def constant_operand_coefficients():
    """auto_LiRPA 0.3 fails (an assertion) in CROWN on ``x + c`` / ``x - c`` when the constant
    ``c`` has the output's rank, batch axis included (``c`` of shape (1, D) or (B, D)): its
    ``broadcast_backward`` prepends a batch axis ``c`` already has. The coefficients of such a
    ``c`` are the output's, summed over the axes where ``c`` is broadcast (its batch axis stays:
    :func:`constant_product` multiplies them per sample, or sums them for ``c``'s single row).
    Patches coefficients are passed on unchanged, as before, with the output's shape
    (``broadcast_to``) that ``c`` is broadcast to (by ``Sub`` too, which bypasses
    ``broadcast_backward`` for patches)."""
    import torch
    from auto_LiRPA.operators import Bound, BoundSub
    from auto_LiRPA.patches import Patches
    original, subtract = Bound.broadcast_backward, BoundSub.bound_backward

    def broadcast_backward(self, A, x):
        shape = x.output_shape
        if isinstance(A, Patches) and x.batch_dim == -1:
            A = A.create_similar()
            A.broadcast_to = tuple(self.output_shape)
            return A
        if not (isinstance(A, torch.Tensor) and x.batch_dim == -1 and len(shape) == A.ndim - 1
                and shape[0] in (1, A.shape[1])):
            return original(self, A, x)
        dims = [i + 1 for i in range(1, len(shape)) if shape[i] == 1 and A.shape[i + 1] != 1]
        return A.sum(dims, keepdim=True) if dims else A

    def sub_backward(self, last_lA, last_uA, x, y):
        # BoundSub passes patches on without broadcast_backward: mark a constant's the same way
        As, lbias, ubias = subtract(self, last_lA, last_uA, x, y)
        return [tuple(broadcast_backward(self, A, operand) if isinstance(A, Patches) else A for A in pair)
                for pair, operand in zip(As, (x, y))], lbias, ubias
    return {(Bound, "broadcast_backward"): broadcast_backward, (BoundSub, "bound_backward"): sub_backward}


@fix(test="test_buffers_and_constants_of_a_broadcast_shape_in_crown")
def buffers_without_batch_axis():
    """auto_LiRPA 0.3 bug: ``BoundBuffers`` (a registered buffer) inherits ``from_input = True``
    from ``BoundInput``, so CROWN took a buffer's first axis for the batch axis: a buffer of
    shape (D,) added to a (B, D) value had its coefficients summed over the samples (a crash,
    or the bounds of another function). A buffer is a constant, as ``BoundParams`` says of a
    parameter."""
    from auto_LiRPA.operators import BoundBuffers
    init = BoundBuffers.__init__

    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.from_input = False
    return {(BoundBuffers, "__init__"): __init__}


@fix(test="test_buffers_and_constants_of_a_broadcast_shape_in_crown")
def constant_root_contribution():
    """auto_LiRPA 0.3 bug: CROWN's final step (``concretize``) adds an unperturbed buffer's or
    parameter's contribution ``A c`` as if ``c`` had no batch axis, so ``x + buf`` with
    ``buf`` of shape (B, 1, 1, 1) failed there, and with patches coefficients it broadcast
    ``c`` to the network's input shape instead of the Add's output shape. Take such roots out
    of ``concretize`` and add :func:`constant_product` instead."""
    import auto_LiRPA.backward_bound as backward_bound
    from auto_LiRPA.operators import BoundInput
    original = backward_bound.concretize

    def concretize(lb, ub, node, root, *args, **kwargs):
        taken = [(r, [constant_product(A, r.forward_value) for A in (r.lA, r.uA)]) for r in root
                 if type(r) is not BoundInput and getattr(r, "perturbation", None) is None]
        taken = [(r, new) for r, new in taken if new != [None, None]]
        if not taken:
            return original(lb, ub, node, root, *args, **kwargs)
        extra = [sum(new[k].transpose(0, 1) for _, new in taken if new[k] is not None) for k in (0, 1)]
        saved = [(r, r.lA, r.uA) for r, _ in taken]
        for r, _ in taken:
            r.lA = r.uA = None
        try:
            lb, ub = original(lb, ub, node, root, *args, **kwargs)
        finally:
            for r, lA, uA in saved:
                r.lA, r.uA = lA, uA
        return tuple(None if b is None else b + (e.reshape(b.shape) if b.ndim and getattr(e, "ndim", 0) else e)
                     for b, e in zip((lb, ub), extra))
    return {(backward_bound, "concretize"): concretize}



@fix(test="test_crown_through_normalisation_in_patches_mode_equals_matrix_mode")
def patches_broadcast_constant():
    """auto_LiRPA 0.3 bug: in patches mode (its default), multiplying the coefficients by a
    per-channel constant shaped (1, C, 1, 1), as an input normalisation traces to, hits an
    assertion; only a constant with an explicit batch dimension is handled. Expand it.
    Patches of an intermediate node (out_c, B, out_h, out_w, in_c, kh, kw), as CROWN builds
    for every pre-activation bound, need the constant as (1, B, 1, 1, C, 1, 1); auto_LiRPA
    multiplies it unshaped, which fails for B not in (1, out_w)."""
    import torch
    from auto_LiRPA.operators import BoundMul
    from auto_LiRPA.patches import Patches
    original = BoundMul._multiply_by_const

    def multiply_by_const(x, const):
        if (isinstance(x, Patches) and isinstance(const, torch.Tensor) and const.ndim == 4
                and const.size(0) == 1 and const.shape[2:] == (1, 1)):
            const = const.expand(x.patches.size(1), -1, -1, -1)
            if x.patches.ndim == 7 and const.size(1) == x.patches.size(4):
                per_channel = const.reshape(1, const.size(0), 1, 1, const.size(1), 1, 1)
                return x.create_similar(x.patches * per_channel)
        return original(x, const)
    return {(BoundMul, "_multiply_by_const"): staticmethod(multiply_by_const)}



def convolution_settings(attr) -> list:
    """What auto_LiRPA 0.3's ``BoundConv`` cannot bound (with ``fixes_convolution``): other than
    1-d or 2-d, asymmetric padding."""
    kernel, pads = attr.get("kernel_shape", ()), list(attr.get("pads", ()))
    if len(kernel) not in (1, 2):
        return [f"a {len(kernel)}-D convolution (1-D and 2-D ones only)"]
    half = len(pads) // 2
    return ["asymmetric padding"] if pads and pads[:half] != pads[half:] else []


def transposed_convolution_settings(attr) -> list:
    """What its ``BoundConvTranspose`` cannot bound (with ``fixes_convolution``): other than 2-d,
    asymmetric padding."""
    kernel = attr.get("kernel_shape", ())
    if len(kernel) != 2:
        return [f"a {len(kernel)}-D transposed convolution (2-D ones only)"]
    return convolution_settings(attr)


def pool_settings(attr) -> list:
    """What its max pooling cannot bound: other than 2-D (``ceil_mode`` and dilation:
    :mod:`.fixes_pooling`)."""
    return [] if len(attr.get("kernel_shape", (0, 0))) == 2 else ["pooling other than 2-D"]


@fix(test="test_layer_options_auto_lirpa_cannot_bound_are_refused_by_node")
def layer_settings_refused():
    """auto_LiRPA 0.3 fails on layer settings it does not support with errors that name no node
    (a 3-D convolution, asymmetric padding: a bare AssertionError) or compute another function
    (max pooling other than 2-D). Refuse each such node when it is built,
    naming the setting."""
    from auto_LiRPA.operators import BoundConv, BoundConvTranspose, BoundMaxPool
    checks = {BoundConv: convolution_settings, BoundConvTranspose: transposed_convolution_settings,
              BoundMaxPool: pool_settings}

    def refusing(cls, settings):
        init = cls.__init__

        def __init__(self, attr, *args, **kwargs):
            found = settings(attr)
            if found:
                raise NotImplementedError(f"auto_LiRPA 0.3 cannot bound {', '.join(found)}")
            init(self, attr, *args, **kwargs)
        return __init__
    return {(cls, "__init__"): refusing(cls, settings) for cls, settings in checks.items()}
