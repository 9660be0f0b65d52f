"""Fast adversarial training goals, the fine-tuning objective of linearity grafting (Chen et
al. 2022, section 4): FGSM from a random start (Wong, Rice, Kolter 2020) and the GradAlign
regulariser (Andriushchenko & Flammarion 2020).

=======================  ===============================================================
``FGSM(step=1.25)``      a point uniform in the box, then one signed-gradient step of
                         ``step * (u - l) / 2`` (1.25 eps for an unclipped box), kept in
                         the box; cross-entropy on the result
``GradAlign(w,           ``loss_g + w * (1 - mean_b cos(grad_x CE(c_b), grad_x CE(r_b)))``
g=FGSM)``                with c the box's center and r a point uniform in the box; the
                         mean is over the samples whose two gradients are non-zero
=======================  ===============================================================

``GradAlign(0.2)`` is the paper's objective (FGSM with GradAlign of weight 0.2). Near the
data range's edges, where the box is clipped, FGSM's step shrinks with the box.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .core import Goal, PointGoal, center
from ..schedules import Schedule


def input_gradient(model, x: Tensor, y: Tensor, create_graph: bool = False) -> Tensor:
    """``grad_x sum_b CE(model(x_b), y_b)``; with ``create_graph`` it is differentiable in
    the model's parameters (double backpropagation)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(x), y, reduction="sum")
        grad, = torch.autograd.grad(loss, x, create_graph=create_graph)
    return grad


def gradient_misalignment(g1: Tensor, g2: Tensor) -> Tensor:
    """``1 - mean_b cos(g1_b, g2_b)`` over the samples where neither gradient is zero (0 when
    there is none)."""
    a, b = g1.flatten(1), g2.flatten(1)
    norm_a, norm_b = a.norm(dim=1), b.norm(dim=1)
    keep = (norm_a != 0) & (norm_b != 0)
    if not keep.any():
        return g2.sum() * 0
    cos = (a[keep] / norm_a[keep, None] * (b[keep] / norm_b[keep, None])).sum(1)
    return 1 - cos.mean()


@dataclass(frozen=True)
class FGSM(PointGoal):
    """FGSM with a random start: ``x0 ~ U(l, u)``, ``x = clip(x0 + step (u - l) / 2 *
    sign(grad_x CE(x0)), l, u)``; cross-entropy on ``x``. Only the input is differentiated;
    the attack's forward pass runs in the model's current mode."""

    step: Schedule = 1.25

    def point(self, ctx, box, y, t):
        l, u = (b.detach() for b in box)
        start = l + (u - l) * torch.rand_like(l)
        grad = input_gradient(ctx.model, start, y)
        x = start + self.step(t) * (u - l) / 2 * grad.sign()
        return torch.maximum(torch.minimum(x, u), l).detach()


@dataclass(frozen=True)
class GradAlign(Goal):
    """``loss_g + w * (1 - cos)``, GradAlign's regulariser added to goal ``g`` (see the module
    docstring). The gradient at the center is held fixed; the one at the random point is
    differentiated through (as in the reference)."""

    w: Schedule
    g: Goal = FGSM()

    @property
    def has_region(self) -> bool:
        return False

    def loss_on(self, ctx, box, y, t):
        loss = self.g.loss_on(ctx, box, y, t)
        w = self.w(t)
        if w == 0:
            return loss
        l, u = (b.detach() for b in box)
        at_center = input_gradient(ctx.model, center((l, u)), y)
        at_random = input_gradient(ctx.model, l + (u - l) * torch.rand_like(l), y, create_graph=True)
        return loss + w * gradient_misalignment(at_center, at_random)


FAST_ADVERSARIAL_GOALS = {"FGSM": FGSM, "GradAlign": GradAlign}

__all__ = ["FGSM", "GradAlign", "FAST_ADVERSARIAL_GOALS", "input_gradient", "gradient_misalignment"]
