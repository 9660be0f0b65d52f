"""Falsification by projected gradient descent (Madry et al. 2018) on the specification.

Each restart starts from a uniform random point of the box ``[x_L, x_U]`` (the first from its
centre) and takes signed-gradient steps that lower the smallest margin
``min_s (C f(x) - t)_s``, projecting back onto the box::

    x_{k+1} = clip(x_k - alpha * sign(grad_x min_s (C f(x_k) - t)_s), x_L, x_U)

with ``alpha = 2.5 * (x_U - x_L) / (2 * steps)``. A point whose margin is ``<= 0`` at the
concrete forward pass violates the specification.
"""
from __future__ import annotations

import torch
from torch import nn

from .spec import Spec


def worst_margin(model: nn.Module, x: torch.Tensor, spec: Spec) -> torch.Tensor:
    """``min_s (C f(x) - t)_s`` per sample."""
    return spec.margins(model(x).flatten(1)).min(dim=1).values


def pgd(model: nn.Module, x_L: torch.Tensor, x_U: torch.Tensor, spec: Spec,
        steps: int = 20, restarts: int = 5, generator: torch.Generator | None = None
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(points, margins)``: per sample the box point with the smallest worst margin found by
    ``restarts`` PGD runs of ``steps`` steps, and that margin (concrete forward pass)."""
    alpha = 2.5 * (x_U - x_L) / (2 * max(steps, 1))
    best = (x_L + x_U) / 2
    with torch.no_grad():
        best_margin = worst_margin(model, best, spec)
    for restart in range(restarts):
        if restart == 0:
            current = (x_L + x_U) / 2
        else:
            u = torch.rand(x_L.shape, generator=generator, device="cpu").to(x_L)
            current = x_L + (x_U - x_L) * u
        for _ in range(steps):
            current = current.detach().requires_grad_(True)
            with torch.enable_grad():
                margin = worst_margin(model, current, spec)
                grad, = torch.autograd.grad(margin.sum(), current)
            with torch.no_grad():
                better = margin.detach() < best_margin
                best[better], best_margin[better] = current.detach()[better], margin.detach()[better]
                if bool((best_margin <= 0).all()):
                    return best, best_margin
                current = torch.maximum(torch.minimum(current - alpha * grad.sign(), x_U), x_L)
        with torch.no_grad():
            margin = worst_margin(model, current, spec)
            better = margin < best_margin
            best[better], best_margin[better] = current[better], margin[better]
    return best.detach(), best_margin.detach()


def checked_counterexample(model: nn.Module, point: torch.Tensor, x_L: torch.Tensor,
                           x_U: torch.Tensor, spec: Spec) -> bool:
    """Whether ``point`` (one sample, batch 1) lies in the box and violates the spec at the
    concrete forward pass: the check every ``falsified`` answer passes."""
    inside = bool(((point >= x_L) & (point <= x_U)).all())
    with torch.no_grad():
        return inside and bool(worst_margin(model, point, spec).item() <= 0)
