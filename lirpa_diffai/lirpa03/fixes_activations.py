"""Fixes for today's activations, and for auto_LiRPA's misleading prints and errors that name
no node; :mod:`.manifest` applies them."""
from __future__ import annotations

from .fix import fix

OPSET = 12   # the opset auto_LiRPA 0.3 traces with


def activation_symbolics() -> dict:
    """``aten`` operator -> the symbolic that traces it as one ``custom::`` node (torch's own
    opset-12 symbolics spell SiLU, Hardswish and GELU out as products of the input with a
    function of it, and drop Softplus's threshold)."""
    from torch.onnx import symbolic_helper

    def typed(g, x, op, **attrs):
        out = g.op(op, x, **attrs)
        out.setType(x.type())
        return out

    def silu(g, x):
        return typed(g, x, "custom::SiLU")

    def hardswish(g, x):
        return typed(g, x, "custom::HardSwish")

    def gelu(g, x, approximate="none"):
        return typed(g, x, "custom::Gelu", approximate_s=symbolic_helper._maybe_get_const(approximate, "s"))

    def softplus(g, x, beta, threshold):
        return typed(g, x, "custom::Softplus", beta_f=symbolic_helper._maybe_get_const(beta, "f"),
                     threshold_f=symbolic_helper._maybe_get_const(threshold, "f"))
    return {"aten::silu": silu, "aten::hardswish": hardswish, "aten::gelu": gelu, "aten::softplus": softplus}


@fix(test="test_activation_is_one_graph_node")
def activations_traced_whole():
    """auto_LiRPA 0.3 has no Bound class for ``HardSigmoid``, ``Elu``, GELU's ``Erf`` and no
    relaxation for ``Softplus``; torch's exporter spells ``SiLU``, ``Hardswish`` and ``GELU`` out
    as products of two perturbed values (``x * sigmoid(x)``) and drops Softplus's
    ``threshold``. While auto_LiRPA traces a model, ``aten::silu``, ``hardswish``, ``gelu`` and
    ``softplus`` become one ``custom::`` node each (the symbolics are removed after, so
    ``torch.onnx.export`` is unchanged), and these operators get the Bound classes of
    :mod:`lirpa_diffai.lirpa03.activations` (exact interval, chord-slope parallelogram)."""
    from auto_LiRPA import bound_general, register_custom_op
    from torch.onnx import register_custom_op_symbolic, unregister_custom_op_symbolic

    from .activations import ACTIVATION_OPS
    parse_module = bound_general.parse_module
    symbolics = activation_symbolics()
    for op, cls in ACTIVATION_OPS.items():   # entries added to auto_LiRPA's operator map
        register_custom_op(op, cls)

    def traced_with_whole_activations(*args, **kwargs):
        for name, symbolic in symbolics.items():
            register_custom_op_symbolic(name, symbolic, OPSET)
        try:
            return parse_module(*args, **kwargs)
        finally:
            for name in symbolics:
                unregister_custom_op_symbolic(name, OPSET)
    return {(bound_general, "parse_module"): traced_with_whole_activations}


DROPOUT_MESSAGE = ("Dropout operation CANNOT be parsed", "Set model to train() mode!")


@fix(test="test_dropout_wraps_without_the_misleading_message")
def dropout_message_silenced():
    """auto_LiRPA 0.3 prints "Dropout operation CANNOT be parsed ... Set model to train()
    mode!" when it wraps an eval-mode network holding ``nn.Dropout``, although it then traces
    it in training mode itself (and lirpa_diffai's BoundedModule sets the Dropout nodes back
    to eval). Those two lines are dropped; any other line of the check is printed."""
    import contextlib
    import io

    from auto_LiRPA import BoundedModule
    check = BoundedModule.check_incompatible_nodes

    def check_incompatible_nodes(self, model):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            result = check(self, model)
        kept = [line for line in out.getvalue().splitlines()
                if line and not any(m in line for m in DROPOUT_MESSAGE)]
        if kept:
            print("\n".join(kept))
        return result
    return {(BoundedModule, "check_incompatible_nodes"): check_incompatible_nodes}


@fix(test="test_an_eval_network_with_dropout_and_batch_norm_wraps_on_one_image")
def dropout_alone_traced_in_training_mode():
    """auto_LiRPA 0.3 traces an eval-mode network that holds ``nn.Dropout`` with the whole
    network in training mode (so that the Dropout nodes appear in the graph): BatchNorm then
    fails on a single image ("Expected more than 1 value per channel") and a training-only
    module such as stochastic depth is traced as the random function it is in training. Only
    the Dropout modules are now put in training mode for that trace; every other module keeps
    its eval behaviour (lirpa_diffai's BoundedModule sets the Dropout nodes back to eval)."""
    import torch
    from auto_LiRPA import BoundedModule
    convert = BoundedModule._convert_nodes
    dropouts = (torch.nn.Dropout, torch.nn.Dropout1d, torch.nn.Dropout2d, torch.nn.Dropout3d,
                torch.nn.AlphaDropout)

    def _convert_nodes(self, model, *args, **kwargs):
        if not self.ori_training or model.training or not any(isinstance(m, dropouts) for m in model.modules()):
            return convert(self, model, *args, **kwargs)

        def dropout_only(mode=True):
            for m in model.modules():
                m.training = bool(mode) and (m is model or isinstance(m, dropouts))
            return model
        model.train = dropout_only
        try:
            return convert(self, model, *args, **kwargs)
        finally:
            del model.train
    return {(BoundedModule, "_convert_nodes"): _convert_nodes}


def widened(lower, upper):
    """NaN bounds (``inf - inf``, ``0 * inf`` after overflow) as the infinite ones: a NaN lower
    bound becomes -inf and a NaN upper bound +inf, which every value satisfies. Bounds without
    NaN are returned as they are (auto_LiRPA tells a constant by ``lower is upper``)."""
    import torch

    def without_nan(bound, fill):
        if torch.is_tensor(bound) and bound.is_floating_point() and torch.isnan(bound).any():
            return bound.nan_to_num(fill, posinf=torch.inf, neginf=-torch.inf)
        return bound
    return without_nan(lower, -torch.inf), without_nan(upper, torch.inf)


@fix(test="test_never_nan_on_a_deep_network_at_large_eps")
def overflow_never_nan():
    """auto_LiRPA 0.3's bounds become NaN once they overflow: IBP's center / radius arithmetic
    meets ``inf - inf`` (a ReLU's box ``[0, inf]`` has center inf), CROWN's backward pass
    ``0 * inf``. Every node's IBP interval and every CROWN bound (intermediate and final) now
    widens a NaN to the infinite bound, which is sound, so that later nodes and the final
    bounds see ``[-inf, inf]`` instead."""
    from auto_LiRPA import BoundedModule
    ibp, backward = BoundedModule.IBP_general, BoundedModule.backward_general

    def IBP_general(self, node=None, C=None, *args, **kwargs):
        ret = ibp(self, node, C, *args, **kwargs)
        if node is not None and isinstance(getattr(node, "interval", None), tuple):
            node.lower, node.upper = widened(node.lower, node.upper)
            node.interval = (node.lower, node.upper)
        return widened(*ret) if isinstance(ret, tuple) and len(ret) == 2 else ret

    def backward_general(self, *args, **kwargs):
        ret = backward(self, *args, **kwargs)
        if isinstance(ret, tuple) and len(ret) >= 2:
            ret = (*widened(ret[0], ret[1]), *ret[2:])
        return ret
    return {(BoundedModule, "IBP_general"): IBP_general, (BoundedModule, "backward_general"): backward_general}


@fix(test="test_crown_bounds_a_squeeze_excitation_gate")
def global_average_pool_patches():
    """auto_LiRPA 0.3 bug: ``BoundGlobalAveragePool``'s backward pass calls ``expand`` on its
    coefficients, which fails when they are ``Patches`` (a 1x1 convolution after the pool: the
    squeeze-excitation gates of MobileNetV3 and EfficientNet). They are made dense first
    (auto_LiRPA's ``patches_to_matrix``); the pool's transpose is then its own."""
    from auto_LiRPA.operators import BoundGlobalAveragePool

    from .fixes_linear import dense_pair
    backward = BoundGlobalAveragePool.bound_backward

    def bound_backward(self, last_lA, last_uA, x):
        return backward(self, *dense_pair(self, last_lA, last_uA), x)
    return {(BoundGlobalAveragePool, "bound_backward"): bound_backward}


@fix(test="test_crown_bounds_a_product_followed_by_convolutions")
def broadcast_product_patches():
    """auto_LiRPA 0.3 bug (a squeeze-excitation gate ``x * sigmoid(fc(pool(x)))`` followed by
    more convolutions, as in every MobileNetV3 / EfficientNet block): the backward pass of a
    product of two perturbed values, one broadcast (the gate, shape (B, C, 1, 1)), sums the
    broadcast axes of patches-mode coefficients in the wrong layout and fails (``shape ... is
    invalid``); so does a product of two image-shaped values of one shape (``x * x`` on
    (B, C, H, W)) reached by patches. Patches-mode coefficients are made dense first
    (auto_LiRPA's ``patches_to_matrix``); the product's dense transpose then sums them over
    the broadcast axes itself."""
    from auto_LiRPA.operators import BoundMul

    from .fixes_linear import dense_pair
    backward = BoundMul.bound_backward_both_perturbed

    def bound_backward_both_perturbed(self, last_lA, last_uA, x, y):
        return backward(self, *dense_pair(self, last_lA, last_uA), x, y)
    return {(BoundMul, "bound_backward_both_perturbed"): bound_backward_both_perturbed}


def slice_range(size: int, start, end, step) -> range:
    """The indices ``Slice(start, end, step)`` selects on an axis of ``size`` for a positive
    step: Python's slice clamping, which is ONNX's (negative ``start``/``end`` count from the end)."""
    return range(*slice(int(start), int(end), int(step)).indices(int(size)))


@fix(test="test_strided_slice_is_bounded_by_every_method")
def slice_any_step():
    """auto_LiRPA 0.3's ``Slice`` accepts only steps 1 and -1 (a bare assertion), so the option-A
    shortcut of CIFAR ResNets, ``x[:, :, ::2, ::2]``, failed in every method. A step > 1 now
    selects ``range(start, end, step)`` in ``forward`` (IBP, hzono) and the backward pass
    scatters the coefficients back to those indices of a zero tensor (its exact transpose;
    ``Patches`` on the channel axis stay patches; on another axis they are made dense first). Steps 1 and -1
    run as before; other negative steps are refused."""
    import torch
    from auto_LiRPA.operators import BoundSlice
    from auto_LiRPA.patches import Patches

    from .fixes_linear import dense_coefficients
    forward, backward = BoundSlice.forward, BoundSlice.bound_backward

    def strided_forward(self, x, start=None, end=None, axes=None, steps=1):
        if not torch.is_tensor(x) or int(steps) in (1, -1):
            return forward(self, x, start, end, axes, steps)
        if int(steps) < 1:
            raise NotImplementedError(f"Slice with step {int(steps)}: only steps >= 1 and -1 are supported")
        start, end, axes = (self.start if start is None else start, self.end if end is None else end,
                            self.axes if axes is None else axes)
        axis = int(axes) % x.dim()
        r = slice_range(x.shape[axis], start, end, steps)
        return x[(slice(None),) * axis + (slice(r.start, r.stop, r.step),)]

    def strided_backward(self, last_lA, last_uA, *x):
        steps = x[4].value.item() if len(x) == 5 else 1
        if int(steps) in (1, -1):
            return backward(self, last_lA, last_uA, *x)
        start, end, axes = (x[i].value.item() for i in (1, 2, 3))
        axis = int(axes) % len(self.input_shape)
        r = slice_range(self.input_shape[axis], start, end, steps)

        def spread(A):
            if A is None:
                return None
            index = torch.arange(r.start, r.stop, r.step, device=x[0].device if hasattr(x[0], "device") else None)
            if isinstance(A, Patches) and A.unstable_idx is None and axis == 1 and len(self.input_shape) == 4:
                p = A.patches
                zeros = p.new_zeros(p.shape[:4] + (self.input_shape[1],) + p.shape[-2:])
                return A.create_similar(zeros.index_copy(-3, index.to(p.device), p))
            A = dense_coefficients(A, self.output_shape)
            zeros = A.new_zeros(tuple(A.shape[:2]) + tuple(self.input_shape[1:]))
            return zeros.index_copy(axis + 1, index.to(A.device), A)
        return [(spread(last_lA), spread(last_uA))] + [(None, None)] * (len(x) - 1), 0, 0
    return {(BoundSlice, "forward"): strided_forward, (BoundSlice, "bound_backward"): strided_backward}


def torch_pads(onnx_pads, ndim: int) -> list:
    """ONNX ``Pad``'s ``[b_0, ..., b_{n-1}, e_0, ..., e_{n-1}]`` as ``F.pad``'s pairs, last axis first."""
    pads = [int(p) for p in onnx_pads]
    return [p for axis in reversed(range(ndim)) for p in (pads[axis], pads[axis + ndim])]


@fix(test="test_strided_slice_is_bounded_by_every_method", after=("bound_pad_tensor_value", "pad_constant_backward"))
def pad_any_axis():
    """auto_LiRPA 0.3's ``Pad`` pads only the two spatial axes of a 4-d input (a bare assertion
    otherwise), so the option-A shortcut's channel padding, ``F.pad(x, (0, 0, 0, 0, p, p))``,
    failed in every method. Padding of any non-batch axis now runs as ``F.pad`` in ``forward``
    (IBP, hzono), and the backward pass takes its exact transpose, the crop of the
    coefficients (of ``Patches``' input channels where only channels are padded, as in the
    option-A shortcut; other ``Patches`` are made dense first), plus the padding constant's
    contribution ``A c_pad``. Spatial-only padding
    runs as before; padding the batch axis is refused."""
    import torch
    import torch.nn.functional as F
    from auto_LiRPA.operators import BoundPad
    from auto_LiRPA.patches import Patches

    from .fixes_linear import dense_coefficients
    forward, backward = BoundPad.forward, BoundPad.bound_backward

    def spatial_only(pads, ndim):
        return ndim == 4 and all(int(pads[i]) == 0 for i in (0, 1, 4, 5))

    def any_axis_forward(self, x, pad, value=0.0):
        if spatial_only(pad, x.ndim):
            self.general_pads = None
            return forward(self, x, pad, value)
        if int(pad[0]) or int(pad[x.ndim]):
            raise NotImplementedError("Pad of the batch axis is not supported")
        if torch.is_tensor(value):
            value = float(value) if value.numel() else 0.0
        self.general_pads, self.value = torch_pads(pad, x.ndim), value
        return F.pad(x, self.general_pads, value=value)

    def any_axis_backward(self, last_lA, last_uA, *x):
        if getattr(self, "general_pads", None) is None:
            return backward(self, last_lA, last_uA, *x)
        ndim = len(self.input_shape)
        pairs = [self.general_pads[2 * (ndim - 1 - axis): 2 * (ndim - axis)] for axis in range(ndim)]
        crop = tuple(slice(begin, self.output_shape[axis] - end) if axis else slice(None)
                     for axis, (begin, end) in enumerate(pairs))

        channels_only = all(not any(pair) for axis, pair in enumerate(pairs) if axis != 1)
        last_lA, last_uA = (A if A is None or (channels_only and ndim == 4)
                            else dense_coefficients(A, self.output_shape) for A in (last_lA, last_uA))

        def transpose(A):
            if isinstance(A, Patches):   # the patches' input channels are the padded axis
                return A.create_similar(A.patches[..., crop[1], :, :])
            return None if A is None else A[(slice(None),) + crop]
        lA, uA = transpose(last_lA), transpose(last_uA)
        some = (lA if lA is not None else uA)
        some = some.patches if isinstance(some, Patches) else some
        padded = F.pad(torch.zeros(self.input_shape, dtype=some.dtype, device=some.device), self.general_pads,
                       value=float(self.value))
        lbias = 0 if last_lA is None or not self.value else self.get_bias(last_lA, padded)
        ubias = 0 if last_uA is None or not self.value else self.get_bias(last_uA, padded)
        return [(lA, uA)] + [(None, None)] * (len(x) - 1), lbias, ubias
    return {(BoundPad, "forward"): any_axis_forward, (BoundPad, "bound_backward"): any_axis_backward}


@fix(test="test_lenet_and_plain_normalisation_are_bounded_by_crown",
     after=("patches_broadcast_constant", "average_pool_settings"))
def patches_of_scalars_and_pools():
    """Two auto_LiRPA 0.3 failures of CROWN in patches mode (its default for convolutional
    networks): dividing by a scalar constant, ``(x - 0.1307) / 0.3081`` before a convolution,
    asserts a 4-d constant; an average pool after a convolution (LeNet) calls ``view`` on
    non-contiguous patches. A scalar now multiplies the patches as it is, and the pool gets
    contiguous patches (the values are the same)."""
    import torch
    from auto_LiRPA.operators import BoundAveragePool, BoundMul
    from auto_LiRPA.patches import Patches
    multiply, pool_backward = BoundMul._multiply_by_const, BoundAveragePool.bound_backward

    def multiply_by_const(x, const):
        if isinstance(x, Patches) and (not torch.is_tensor(const) or const.numel() == 1):
            return x.create_similar(x.patches * (const.reshape(()) if torch.is_tensor(const) else const))
        return multiply(x, const)

    def contiguous(A):
        return A.create_similar(A.patches.contiguous()) if isinstance(A, Patches) else A

    def bound_backward(self, last_lA, last_uA, x):
        return pool_backward(self, contiguous(last_lA), contiguous(last_uA), x)
    return {(BoundMul, "_multiply_by_const"): staticmethod(multiply_by_const),
            (BoundAveragePool, "bound_backward"): bound_backward}


@fix(test="test_sound_or_refused_in_training_mode_with_more_witnesses", after=("overflow_never_nan",))
def backward_failures_named():
    """auto_LiRPA 0.3's CROWN fails in its final step (``concretize``, no node's method) on some
    graphs it accepts, e.g. a shape mismatch when it bounds a training-mode batch norm after a
    strided convolution in patches mode (the option-A CIFAR ResNet). Such an error now names
    the graph node whose bounds were being computed and its operator (same exception type)."""
    from auto_LiRPA import BoundedModule
    backward = BoundedModule.backward_general

    def backward_general(self, C, node=None, *args, **kwargs):
        try:
            return backward(self, C, node, *args, **kwargs)
        except (RuntimeError, AssertionError, IndexError) as error:
            if node is None or getattr(error, "_names_graph_node", False) or "graph node '" in str(error):
                raise
            operator = type(node).__name__
            error.args = (f"CROWN bounding graph node '{node.name}' (operator {operator.removeprefix('Bound')}, "
                          f"{operator}): {str(error) or type(error).__name__}",)
            error._names_graph_node = True
            raise
    return {(BoundedModule, "backward_general"): backward_general}
