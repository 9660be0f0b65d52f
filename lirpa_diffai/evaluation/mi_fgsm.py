"""The MI-FGSM attack (momentum iterative FGSM, Dong et al. 2018) used by the paper's
section 5 to measure empirical robustness: L-inf, momentum ``mu = 0.8``, 20 iterations of
step ``eps / 10``.

From ``x_0 = x``, with ``g_0 = 0``::

    g_{k+1} = mu * g_k + grad_x CE(f(x_k), y) / ||grad_x CE(f(x_k), y)||_1     (per sample)
    x_{k+1} = clip(x_k + step * sign(g_{k+1}), [max(x - eps, lo), min(x + eps, hi)])

Every point visited lies in the eps box around ``x`` intersected with the data range
``[lo, hi]``. :func:`mi_fgsm` returns, for each sample, the first misclassified point it
visited (``x`` itself when ``x`` is misclassified) or the last iterate when none was, so that a
sample counts as attacked successfully exactly when some visited point is misclassified.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data import eps_box

MU = 0.8
ITERATIONS = 20


def l1_normalise(g: torch.Tensor) -> torch.Tensor:
    """``g`` divided by its per-sample L1 norm (zero rows stay zero)."""
    norm = g.abs().flatten(1).sum(1).clamp(min=1e-12)
    return g / norm.view(-1, *[1] * (g.dim() - 1))


def mi_fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
            iterations: int = ITERATIONS, mu: float = MU, step: float | None = None,
            data_range=(0.0, 1.0)) -> torch.Tensor:
    """Adversarial points for ``model`` (in its current mode) around ``x``: see the module
    docstring. ``step`` defaults to ``eps / 10``. No gradient is left on the parameters."""
    step = eps / 10 if step is None else step
    lower, upper = eps_box(x.detach(), eps, data_range)
    current = x.detach().clone()
    momentum = torch.zeros_like(current)
    found = current.clone()
    with torch.no_grad():
        fooled = model(current).argmax(1) != y
    for _ in range(iterations):
        current.requires_grad_(True)
        with torch.enable_grad():
            loss = F.cross_entropy(model(current), y, reduction="sum")
            grad, = torch.autograd.grad(loss, current)
        momentum = mu * momentum + l1_normalise(grad)
        current = torch.maximum(torch.minimum(current.detach() + step * momentum.sign(), upper),
                                lower)
        with torch.no_grad():
            newly = (model(current).argmax(1) != y) & ~fooled
        found[newly] = current[newly]
        fooled |= newly
    found[~fooled] = current[~fooled]
    return found


def attack_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                   data_range=(0.0, 1.0), **kwargs) -> torch.Tensor:
    """A bool per sample: the model classifies every point MI-FGSM visited (``x`` included)
    correctly, i.e. the attack failed."""
    adv = mi_fgsm(model, x, y, eps, data_range=data_range, **kwargs)
    with torch.no_grad():
        return (model(adv).argmax(1) == y) & (model(x).argmax(1) == y)
