"""Loss fusion (Xu et al., NeurIPS 2020, "loss fusion"): an upper bound of the cross-entropy
loss over an input box from one backward pass of a single spec row, whatever the number of
classes K.

For label y, the margins ``m_j = z_j - z_y`` (j != y; ``margin_spec``'s rows negated) and the
loss ``L(x) = log(1 + sum_j exp(m_j(x)))``:

1. A first pass bounds every intermediate node and the margins, ``m_j in [l_j, u_j]``: IBP
   (``CROWN-IBP``), hzono (``CROWN-hzono``) or CROWN (``CROWN``). Its boxes stay on the nodes,
   with their gradients, for step 3.
2. With the shift ``s = max(0, max_j u_j)`` (held constant), ``exp(m - s)`` lies under its chord
   on ``[l_j, u_j]``: ``exp(m_j - s) <= a_j m_j + b_j`` with
   ``a_j = exp(l_j - s) (exp(u_j - l_j) - 1) / (u_j - l_j)`` (``exp(l_j - s)`` when
   ``u_j = l_j``) and ``b_j = exp(l_j - s) - a_j l_j``.
3. One backward (CROWN) pass on those boxes bounds the single row
   ``c = sum_j a_j (e_j - e_y)``: ``U >= max_x c^T z(x)`` over the box.

The fused bound is ``s + log(exp(-s) + U + sum_j b_j) >= max_x L(x)`` per sample. It equals
the unfused bound ``log(1 + sum_j exp(u_j))`` (:func:`unfused_loss_bound`) at ``eps = 0``
(every chord is exact at ``l = u``) and, with two classes, wherever step 3's bound of the
margin equals ``u`` (an affine network); elsewhere neither is tighter in general. Step 3's
cost does not grow with K; step 1's does only through the final layer for IBP and hzono (the
spec is merged into a final Linear), and by one K-row backward pass for CROWN.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..evaluation.margins import margin_spec

FUSED_METHODS = {"crown-ibp": "IBP", "crown-hzono": "hzono", "crown": "CROWN"}
_TINY_WIDTH = 1e-6


def fusable(method: str) -> bool:
    """Whether ``method`` (any case) has a fused loss bound: CROWN-IBP, CROWN-hzono, CROWN."""
    return method.lower() in FUSED_METHODS


def unfused_loss_bound(margin_upper: Tensor) -> Tensor:
    """The robust cross-entropy from the margins' upper bounds ``u`` (B, K-1), per sample:
    ``log(1 + sum_j exp(u_j))`` (the Box goal's loss, ``margin_loss``, before the mean)."""
    zero = margin_upper.new_zeros(margin_upper.shape[0], 1)
    return torch.logsumexp(torch.cat([zero, margin_upper], dim=1), dim=1)


def exp_chord(lower: Tensor, upper: Tensor, shift: Tensor) -> tuple[Tensor, Tensor]:
    """``(a, b)`` with ``exp(m - shift) <= a m + b`` for every ``m`` in ``[lower, upper]``: the
    chord, ``a = (exp(u - s) - exp(l - s)) / (u - l)`` (as ``exp(l - s) (e^d - 1) / d``, d =
    u - l, below d = 1, by its series below 1e-6: never inf * 0), ``b = exp(l - s) - a l``;
    the tangent ``a = exp(l - s)`` when ``u = l``."""
    width = (upper - lower).clamp(min=0)
    at_lower = torch.exp(lower - shift)
    safe = torch.where(width > _TINY_WIDTH, width, torch.ones_like(width))
    narrow = torch.where(width > _TINY_WIDTH, torch.expm1(width.clamp(max=1)) / safe,
                         1 + width / 2 + width * width / 6)
    slope = torch.where(width > 1, (torch.exp(upper - shift) - at_lower) / safe, at_lower * narrow)
    return slope, at_lower - slope * lower


def first_pass(bm, x, spec: Tensor, method: str) -> tuple[Tensor, Tensor]:
    """Step 1: the margins' bounds ``(l, u)`` by ``method``'s intermediate-bound method,
    leaving every intermediate node's box on the graph."""
    first = FUSED_METHODS[method.lower()]
    if first == "hzono":
        return bm.compute_bounds(x=x, C=spec, method="hzono", store_bounds=True)
    return bm.compute_bounds(x=x, C=spec, method=first)


def fused_loss_bound(bm, x, y: Tensor, num_classes: int, method: str) -> Tensor:
    """The fused upper bound of the cross-entropy of each sample over its input box (the
    module docstring's ``s + log(exp(-s) + U + sum_j b_j)``), shape (B,). ``bm`` is a
    ``lirpa_diffai.BoundedModule``, ``x`` its inputs (a tuple holding the BoundedTensor),
    ``method`` one of CROWN-IBP, CROWN-hzono, CROWN (any case)."""
    if not fusable(method):
        raise ValueError(f"loss fusion needs method CROWN-IBP, CROWN-hzono or CROWN, not {method!r}")
    spec = -margin_spec(y, num_classes)  # rows e_j - e_y: the margins m_j themselves
    lower, upper = first_pass(bm, x, spec, method)
    shift = upper.detach().amax(dim=1, keepdim=True).clamp(min=0)
    slope, intercept = exp_chord(lower, upper, shift)
    row = (slope.unsqueeze(2) * spec.to(slope.dtype)).sum(dim=1, keepdim=True)  # (B, 1, K)
    _, chord_max = bm.compute_bounds(x=None, C=row, method="backward", bound_lower=False)
    inside = torch.exp(-shift) + chord_max + intercept.sum(dim=1, keepdim=True)
    tiny = torch.finfo(inside.dtype).tiny
    return (shift + torch.log(inside.clamp(min=tiny))).squeeze(1)


def box_input(x_L: Tensor, x_U: Tensor) -> tuple:
    """The box ``[x_L, x_U]`` as the one-tuple of inputs ``compute_bounds`` takes."""
    from auto_LiRPA import BoundedTensor, PerturbationLpNorm
    return (BoundedTensor((x_L + x_U) / 2, PerturbationLpNorm(norm=np.inf, x_L=x_L, x_U=x_U)),)
