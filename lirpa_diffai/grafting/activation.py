"""The grafted activation of linearity grafting (Chen et al., ICML 2022, eq. 2)::

    f(x_i) = m_i (a_i x_i + b_i) + (1 - m_i) relu(x_i)

with a fixed 0/1 mask ``m`` (a buffer) and a learnable slope ``a`` and intercept ``b`` per
neuron (every position of one sample's activation: (C, H, W) after a convolution, (F,) after a
linear layer). ``a`` starts at 0.4 and ``b`` at 0, as the paper's code initialises them.

When auto_LiRPA traces a network it becomes the custom operator ``custom::GraftedRelu`` with
inputs ``(x, slope, intercept, mask)`` (see ``lirpa_diffai.bound_ops.grafted``); the slope and
intercept stay parameters of the graph, so bounds are differentiable in them.
"""
from __future__ import annotations

import torch
from torch import nn

from ..bound_ops.grafted import OP_NAME

Tensor = torch.Tensor

SLOPE_INIT = 0.4
INTERCEPT_INIT = 0.0


def grafted_relu(x: Tensor, slope: Tensor, intercept: Tensor, mask: Tensor) -> Tensor:
    """``m (a x + b) + (1 - m) relu(x)``, elementwise with the per-neuron tensors broadcast over
    the batch."""
    return torch.where(mask.bool(), slope * x + intercept, torch.relu(x))


class _GraftedReluOp(torch.autograd.Function):
    """``grafted_relu`` exported as ``custom::GraftedRelu`` (used only while tracing)."""

    @staticmethod
    def forward(ctx, x, slope, intercept, mask):
        ctx.save_for_backward(x, slope, mask)
        return grafted_relu(x, slope, intercept, mask)

    @staticmethod
    def backward(ctx, grad):
        x, slope, mask = ctx.saved_tensors
        grafted = mask.bool()
        grad_x = grad * torch.where(grafted, slope, (x > 0).to(grad.dtype))
        on_mask = grad * grafted
        return grad_x, (on_mask * x).sum(0), on_mask.sum(0), None

    @staticmethod
    def symbolic(g, x, slope, intercept, mask):
        out = g.op(OP_NAME, x, slope, intercept, mask)
        out.setType(x.type())
        return out


class GraftedReLU(nn.Module):
    """``m (a x + b) + (1 - m) relu(x)`` (see the module docstring). ``mask`` has the shape of
    one sample's activation; ``site`` names the ReLU it replaced (for error messages)."""

    def __init__(self, mask: Tensor, site: str = "", slope: float = SLOPE_INIT,
                 intercept: float = INTERCEPT_INIT):
        super().__init__()
        mask = torch.as_tensor(mask)
        if not ((mask == 0) | (mask == 1)).all():
            raise ValueError(f"grafting mask of {site or 'a grafted ReLU'} must hold only 0 and 1")
        self.site = site
        self.register_buffer("mask", mask.detach().to(torch.get_default_dtype()).clone())
        self.slope = nn.Parameter(torch.full_like(self.mask, float(slope)))
        self.intercept = nn.Parameter(torch.full_like(self.mask, float(intercept)))

    def forward(self, x: Tensor) -> Tensor:
        if torch.jit.is_tracing():
            return _GraftedReluOp.apply(x, self.slope, self.intercept, self.mask)
        if x.shape[1:] != self.mask.shape:
            raise ValueError(f"grafted ReLU {self.site!r}: its mask has shape {tuple(self.mask.shape)} "
                             f"but the activation has shape {tuple(x.shape[1:])} per sample")
        return grafted_relu(x, self.slope, self.intercept, self.mask)

    def extra_repr(self) -> str:
        return f"site={self.site!r}, shape={tuple(self.mask.shape)}, grafted={int(self.mask.sum())}"
