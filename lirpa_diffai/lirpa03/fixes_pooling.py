"""Max pooling with any stride, padding, dilation and ``ceil_mode`` in auto_LiRPA 0.3's CROWN
family (the relaxation and its windows: :mod:`.max_pool`); :mod:`.manifest` applies it."""
from __future__ import annotations

from .fix import fix


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
    one set per start node shared by its outputs. ``Patches`` are made dense first."""
    from collections import OrderedDict

    import torch.nn.functional as F
    from auto_LiRPA.operators import BoundMaxPool

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
            A = dense_coefficients(last_A, self.output_shape)
            if upper:
                return backward(win, A, upper_d, lower_d, b_pos=upper_b)
            return backward(win, A, lower_d, upper_d, b_neg=upper_b)
        lA, lbias = side(last_lA, False)
        uA, ubias = side(last_uA, True)
        return [(lA, uA)], lbias, ubias
    return {(BoundMaxPool, "__init__"): __init__, (BoundMaxPool, "forward"): forward,
            (BoundMaxPool, "init_opt_parameters"): init_opt_parameters,
            (BoundMaxPool, "bound_backward"): bound_backward}
