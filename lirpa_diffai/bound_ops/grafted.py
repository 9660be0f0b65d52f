"""The grafted activation ``m (a x + b) + (1 - m) relu(x)`` (linearity grafting, Chen et al.
2022; ``lirpa_diffai.grafting.activation``) as an auto_LiRPA operator and its hzono transformer.

On a grafted neuron (``m = 1``) the operator is the affine map ``a x + b``, so every method is
exact there: IBP takes the affine image of the interval, CROWN's (and CROWN-IBP's) lower and
upper relaxations are both ``a x + b``, alpha-CROWN's slopes are ignored (they only act on the
others), and hzono maps the zonotope affinely. On the other neurons it is ReLU with ReLU's
relaxation of each method (hzono: the configured ReLU variant).

Inputs: ``(x, slope, intercept, mask)``; only ``x`` may be perturbed.
"""
from __future__ import annotations

import torch
from auto_LiRPA import register_custom_op
from auto_LiRPA.operators import BoundRelu

from .. import hybrid_zono as hz
from .registry import UnsupportedOperatorError, is_perturbed, register

Tensor = torch.Tensor
OP_NAME = "custom::GraftedRelu"


class BoundGraftedRelu(BoundRelu):
    """auto_LiRPA's ReLU with the grafted neurons replaced by their affine map (see the module
    docstring). Forward-mode bounds and MIP/LP encodings are refused."""

    def forward(self, x, slope, intercept, mask):
        self.shape = x.shape[1:]
        if self.flattened_nodes is None:
            self.flattened_nodes = x[0].reshape(-1).shape[0]
        return torch.where(mask.bool(), slope * x + intercept, torch.relu(x))

    def graft_values(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(grafted, slope, intercept)``: the boolean mask and the per-neuron tensors, as the
        graph holds them now (the slope and intercept with their gradients)."""
        for node in self.inputs[1:]:
            if node.perturbed:
                raise UnsupportedOperatorError(
                    f"graph node '{self.name}' (operator GraftedRelu): its input '{node.name}' "
                    "(slope, intercept or mask) is perturbed; only the activation input may be")
        slope, intercept, mask = (node.forward() for node in self.inputs[1:])
        return mask.bool(), slope, intercept

    def interval_propagate(self, *v):
        """``[relu(l), relu(u)]``, and the affine image ``a [l, u] + b`` where grafted."""
        (lower, upper), (slope, _), (intercept, _), (mask, _) = v
        grafted = mask.bool()
        low_end, high_end = slope * lower + intercept, slope * upper + intercept
        return (torch.where(grafted, torch.minimum(low_end, high_end), torch.relu(lower)),
                torch.where(grafted, torch.maximum(low_end, high_end), torch.relu(upper)))

    def _backward_relaxation(self, last_lA, last_uA, x, start_node, unstable_idx):
        upper_d, upper_b, lower_d, lower_b, lb_lower_d, ub_lower_d, lookup = \
            super()._backward_relaxation(last_lA, last_uA, x, start_node, unstable_idx)
        grafted, slope, intercept = self.graft_values()

        def exact(relaxed):
            return None if relaxed is None else torch.where(grafted, slope, relaxed)

        lower_b = torch.where(grafted, intercept, torch.zeros_like(upper_b))
        upper_b = torch.where(grafted, intercept, upper_b)
        if grafted.any():  # auto_LiRPA may skip a ReLU all of whose neurons are inactive
            self.zero_backward_coeffs_l = self.zero_backward_coeffs_u = False
        return (exact(upper_d), upper_b, exact(lower_d), lower_b, exact(lb_lower_d),
                exact(ub_lower_d), lookup)

    def bound_backward(self, last_lA, last_uA, x=None, slope=None, intercept=None, mask=None,
                       **kwargs):
        A, lbias, ubias = super().bound_backward(last_lA, last_uA, x, **kwargs)
        return A + [(None, None)] * 3, lbias, ubias

    def _refuse(self, what: str):
        raise NotImplementedError(f"graph node '{self.name}' (operator GraftedRelu): {what} is not "
                                  "implemented for grafted ReLUs; use IBP, CROWN, CROWN-IBP, "
                                  "alpha-CROWN or hzono")

    def bound_forward(self, dim_in, x, *args):
        self._refuse("forward-mode bound propagation")

    def bound_dynamic_forward(self, *args, **kwargs):
        self._refuse("dynamic forward-mode bound propagation")

    def build_solver(self, *args, **kwargs):
        self._refuse("the MIP/LP encoding")


@register(BoundGraftedRelu)
def grafted_relu(ctx, node, x, slope, intercept, mask):
    """``(1 - m) relu#(x) + m (a x + b)``: the ReLU transformer of ``ctx.relu`` on every neuron,
    kept only where ``m = 0``, plus the exact affine image where ``m = 1``. Both parts are maps
    of the same elementwise neuron, so their sum over the shared noise symbols is exact on the
    grafted neurons and the ReLU enclosure elsewhere. ``m`` is the mask read as the forward
    pass reads it (non-zero: grafted), also after its buffer was edited to other values."""
    if any(map(is_perturbed, (slope, intercept, mask))):
        raise UnsupportedOperatorError(f"graph node '{node.name}' (operator GraftedRelu): only the "
                                       "activation input may be perturbed under hzono")
    mask = mask.bool().to(x.head.dtype)
    return hz.relu(x, ctx.relu).scale(1 - mask) + x.scale(slope * mask).shift(intercept * mask)


register_custom_op(OP_NAME, BoundGraftedRelu)
