"""Max pooling with any stride, padding, dilation and ``ceil_mode`` in auto_LiRPA 0.3's CROWN
family (the relaxation and its windows: :mod:`.max_pool`); :mod:`.manifest` applies it."""
from __future__ import annotations

from .fix import fix


def patches_side(node, win, x, last_A, d_pos, d_neg, bias, upper: bool):
    """One side of the max pool's backward pass for ``Patches``: the relaxation is ``y = sum_t
    d_t * unfold_t(x) (+ b)``, so the patches are repeated per window position, multiplied by
    ``d_t`` at the pool's outputs (as an activation's slopes), and taken through the windows'
    convolution (:func:`.max_pool.tap_kernel`) by ``BoundConv``'s own backward pass; the bias
    is ``A+ b`` (upper) or ``A- b`` (lower)."""
    from auto_LiRPA.operators import BoundConv
    from auto_LiRPA.patches import maybe_unfold_patches

    from .max_pool import per_tap, tap_kernel, taps_convolution
    channels = node.input_shape[1]
    repeated = last_A.create_similar(per_tap(last_A.patches, win.taps))

    def unfolded(d):
        return maybe_unfold_patches(d.reshape(d.shape[0], channels * win.taps, *win.out).unsqueeze(0), repeated)
    patches = repeated.patches
    coefficients = patches.clamp(min=0) * unfolded(d_pos) + patches.clamp(max=0) * unfolded(d_neg)
    signed = last_A.patches.clamp(min=0) if upper else last_A.patches.clamp(max=0)
    constant = node.get_bias(last_A.create_similar(signed), bias)
    conv, kernel = taps_convolution(node, win, tap_kernel(win, channels, patches))
    As, _, _ = BoundConv.bound_backward(conv, None, repeated.create_similar(coefficients), x, kernel)
    return As[0][1], constant


@fix(test="test_max_pool_of_every_setting_is_sound_and_exact_at_zero", after=("layer_settings_refused",))
def max_pool_any_window():
    """auto_LiRPA 0.3's ``BoundMaxPool`` hard-codes ``ceil_mode=False`` and ignores dilation (it
    computes another function), and its backward pass refuses a stride other than the kernel
    and any padding (``MaxPool2d(3, 2, 1)`` of ResNet stems, GoogLeNet's ``MaxPool2d(3, 1, 1)``);
    its alpha-CROWN alphas are shaped by start nodes it mispredicts. ``forward`` (so IBP, whose
    interval is ``[maxpool(l), maxpool(u)]``) now reads both attributes, and the backward pass
    bounds each output over its own window (DeepPoly's max pool: ``y >= sum a_i x_i`` on the
    simplex, ``y <= x_j`` where ``l_j >= max_{i != j} u_i``, else ``y <= max u``), the windows
    an unfold of the input padded with ``-inf`` and the backward map its transpose fold, which
    sums the coefficients of overlapping windows. alpha-CROWN optimises the simplex weights,
    one set per start node shared by its outputs. ``Patches`` stay patches (the windows as a
    convolution, :func:`patches_side`), except where ``ceil_mode`` reads past the padding or
    the stride is not square (auto_LiRPA's patches take square strides only): made dense first."""
    from collections import OrderedDict

    import torch.nn.functional as F
    from auto_LiRPA.operators import BoundMaxPool

    from auto_LiRPA.patches import Patches

    from .fixes_linear import dense_coefficients
    from .max_pool import backward, relax, simplex_weights, windows_of
    init = BoundMaxPool.__init__

    def __init__(self, attr, inputs, output_index, options):
        init(self, attr, inputs, output_index, options)
        self.ceil_mode = bool(attr.get("ceil_mode", 0))
        self.dilation = [int(d) for d in attr.get("dilations", (1, 1))]

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation, ceil_mode=self.ceil_mode)

    def init_opt_parameters(self, start_nodes):
        one_hot = relax(windows_of(self), self.inputs[0].lower, self.inputs[0].upper).lower_d
        # [1, 1 (shared by the start node's outputs), batch, C, taps, oh, ow]: alpha_batch_dim 2
        self.alpha = OrderedDict((name, one_hot[None, None].clone().requires_grad_())
                                 for name, _, _ in start_nodes if name != "_forward")

    def bound_backward(self, last_lA, last_uA, x, start_node=None, start_shape=None, unstable_idx=None):
        win = windows_of(self)
        relaxation = relax(win, x.lower, x.upper)
        lower_d, upper_d, upper_b = relaxation.lower_d, relaxation.upper_d, relaxation.upper_b
        if self.opt_stage in ("opt", "reuse") and start_node is not None and start_node.name in self.alpha:
            lower_d = simplex_weights(self.alpha[start_node.name][0, 0], win.inside(x.lower), lower_d)

        def side(last_A, upper: bool):
            if last_A is None:
                return None, 0
            d_pos, d_neg = (upper_d, lower_d) if upper else (lower_d, upper_d)
            if isinstance(last_A, Patches) and not last_A.identity and not any(win.extra) and len(set(win.stride)) == 1:
                return patches_side(self, win, x, last_A, d_pos, d_neg, upper_b, upper)
            A = dense_coefficients(last_A, self.output_shape)
            return backward(win, A, d_pos, d_neg, **{"b_pos" if upper else "b_neg": upper_b})
        lA, lbias = side(last_lA, False)
        uA, ubias = side(last_uA, True)
        return [(lA, uA)], lbias, ubias
    return {(BoundMaxPool, "__init__"): __init__, (BoundMaxPool, "forward"): forward,
            (BoundMaxPool, "init_opt_parameters"): init_opt_parameters,
            (BoundMaxPool, "bound_backward"): bound_backward}
