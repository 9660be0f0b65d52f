"""Which ReLU to split: the intercept score of BaBSR (Bunel, Lu, Turkaslan, Torr, Kohli,
Kumar 2020, "Branch and bound for piecewise linear neural network verification", JMLR 21,
section 5.1), the variant De Palma et al. 2021 ("Improved branch and bound for neural
network verification via Lagrangian decomposition") use to pick FSB's candidates.

For an unstable ReLU ``a = max(z, 0)`` with ``l < 0 < u`` the upper relaxation is
``a <= u/(u-l) (z - l)``, whose intercept ``-l u / (u - l) > 0`` costs the lower bound
``min(lambda, 0) * (-l u / (u - l))``, ``lambda`` being the coefficient of ``a`` in the
linear lower bound of the spec row with the worst bound. Splitting the neuron removes that
term, so the score is ``s = max(-lambda, 0) * (-l u / (u - l))``. Ties (all scores zero, e.g.
only positive coefficients) go to the widest neuron ``min(u, -l)``, scaled below every
positive score
(a heuristic: any choice keeps branch and bound complete).
"""
from __future__ import annotations

import torch

TIE_BREAK_SCALE = 1e-6


def intercept_scores(lower: torch.Tensor, upper: torch.Tensor, coefficient, row: torch.Tensor,
                     candidate: torch.Tensor) -> torch.Tensor:
    """Scores (N, numel) of one ReLU layer; ``coefficient`` (S, N, *shape) or None, ``row``
    (N,) the spec row per domain, ``candidate`` (N, numel) the neurons that may be split."""
    lo, up = lower.flatten(1), upper.flatten(1)
    width = (up - lo).clamp(min=1e-12)
    intercept = (-lo * up / width).clamp(min=0)
    tie = torch.minimum(up, -lo).clamp(min=0)
    if coefficient is None:
        score = intercept
    else:
        lam = coefficient.flatten(2)[row, torch.arange(len(row), device=row.device)]
        score = (-lam).clamp(min=0) * intercept
    score = score + TIE_BREAK_SCALE * tie
    return torch.where(candidate, score, torch.full_like(score, -1.0))


def choose_splits(lowers: list, uppers: list, coefficients: list, lb: torch.Tensor,
                  candidates: list, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """``(layer, index)`` (N, k) each: the ``k`` highest-scoring candidate neurons per domain,
    best first (layer -1 where a domain has fewer candidates). ``lb`` (N, S) picks the worst
    spec row."""
    row = lb.argmin(dim=1)
    scores = [intercept_scores(lo, up, coef, row, cand)
              for lo, up, coef, cand in zip(lowers, uppers, coefficients, candidates)]
    if not scores:  # no ReLU in the graph: nothing to split
        none = torch.full((len(lb), k), -1, dtype=torch.long, device=lb.device)
        return none, none.clone()
    sizes = torch.tensor([sc.shape[1] for sc in scores], device=lb.device)
    flat = torch.cat(scores, dim=1)
    k = min(k, flat.shape[1])
    value, where = flat.topk(k, dim=1)
    ends = sizes.cumsum(0)
    layer = torch.searchsorted(ends, where, right=True)
    index = where - (ends - sizes)[layer]
    layer[value < 0] = -1
    return layer, index
