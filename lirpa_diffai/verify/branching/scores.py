"""What the score-based branching heuristics share: the coefficient of each ReLU output in
the linear lower bound of the worst spec row, and the ranking of per-neuron scores over all
ReLU layers into ``(layer, index)`` decisions.

For an unstable ReLU ``a = max(z, 0)`` with pre-activation bounds ``l < 0 < u``, the triangle
relaxation's upper line is ``a <= u/(u-l) (z - l)``; its *intercept* ``-l u / (u - l) > 0``
is what every score below is built from.
"""
from __future__ import annotations

import torch

NOT_A_CANDIDATE = -1.0   # the score of a neuron that may not be split (every real score >= 0)
TIE_BREAK_SCALE = 1e-6


def intercept(lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """``-l u / (u - l)`` clamped at 0, (N, numel): the intercept of the relaxation's upper
    line (0 for a stable neuron)."""
    lo, up = lower.flatten(1), upper.flatten(1)
    return (-lo * up / (up - lo).clamp(min=1e-12)).clamp(min=0)


def upper_slope(lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """``u / (u - l)`` (N, numel) of unstable neurons (clamped to [0, 1] elsewhere)."""
    lo, up = lower.flatten(1), upper.flatten(1)
    return (up.clamp(min=0) / (up - lo).clamp(min=1e-12)).clamp(0, 1)


def tie_break(lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """``1e-6 * min(u, -l)`` (N, numel), added to a score so that ties (all zero, e.g. where
    no coefficient is recorded) go to the widest unstable neuron."""
    return TIE_BREAK_SCALE * torch.minimum(upper.flatten(1), -lower.flatten(1)).clamp(min=0)


def worst_row_coefficient(coefficient, row: torch.Tensor):
    """``lambda`` (N, numel): the coefficient of each ReLU output in the linear lower bound
    of spec row ``row[n]`` of domain ``n``, from the recorded ``coefficient`` (S, N, *shape);
    None when nothing was recorded (the root)."""
    if coefficient is None:
        return None
    return coefficient.flatten(2)[row, torch.arange(len(row), device=row.device)]


def masked(score: torch.Tensor, candidate: torch.Tensor) -> torch.Tensor:
    """``score`` where ``candidate`` (N, numel) holds, :data:`NOT_A_CANDIDATE` elsewhere."""
    return torch.where(candidate, score, torch.full_like(score, NOT_A_CANDIDATE))


def top_neurons(scores: list, k: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(layer, index)`` (n, k) each: the ``k`` highest per-domain scores over all layers
    (``scores``: per layer (n, numel_i)), best first; layer -1 where a domain has fewer than
    ``k`` candidates."""
    if sum(sc.shape[1] for sc in scores) == 0:   # no ReLU in the graph: nothing to split
        none = torch.full((n, k), -1, dtype=torch.long)
        return none, none.clone()
    sizes = torch.tensor([sc.shape[1] for sc in scores], device=scores[0].device)
    flat = torch.cat(scores, dim=1)
    value, where = flat.topk(min(k, flat.shape[1]), dim=1)
    ends = sizes.cumsum(0)
    layer = torch.searchsorted(ends, where, right=True)
    index = where - (ends - sizes)[layer]
    layer[value < 0] = -1
    if layer.shape[1] < k:   # fewer neurons in the whole graph than k
        pad = torch.full((n, k - layer.shape[1]), -1, dtype=torch.long, device=layer.device)
        layer, index = torch.cat([layer, pad], 1), torch.cat([index, pad], 1)
    return layer, index
