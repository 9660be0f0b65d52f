"""``fsb`` and ``kfsb``: filtered smart branching (De Palma, Bunel, Desmaison, Dvijotham,
Kohli, Torr, Kumar 2021, "Improved branch and bound for neural network verification via
Lagrangian decomposition", section 5), as beta-CROWN uses it (Wang, Zhang, Xu, Lin, Jana,
Hsieh, Kolter 2021, "Beta-CROWN", NeurIPS; its kFSB bounds the k filtered candidates for
real, in one batch).

1. *Filter*: per domain, the ``k`` best neurons by the :mod:`.babsr` score and the ``k`` best
   by the :mod:`.intercept` score are the candidates (a neuron both pick counts once).
2. *Bound*: each candidate's two children (``l := max(l, 0)`` and ``u := min(u, 0)`` at that
   neuron) are bounded by one CROWN pass on the parent's intermediate bounds, all candidates
   of all domains batched, for the parent's worst spec row ``s``; a candidate's value is the
   new bound of the parent, the smaller child's::

       v(j) = min(CROWN_s(child z_j >= 0), CROWN_s(child z_j <= 0))

3. *Choose*: candidates best ``v`` first (ties to the larger child's bound).

``fsb`` filters ``k = 1`` per score (two candidates), ``kfsb`` ``k = 3`` (up to six). At the
root, where no coefficients are recorded, both filters are the intercept score.
"""
from __future__ import annotations

from functools import partial

import torch

from ..bounding import box_input, split_relus, tightened
from . import babsr, intercept

FSB_K, KFSB_K = 1, 3
MAX_BATCH = 1024   # children per CROWN pass (memory: each is one sample of the network)
WORST = -1e30      # the value of a candidate whose bound is not finite (below any real one)


def candidates(problem, domains, lam: list, k: int) -> tuple:
    """``(layer, index)`` (N, 2k): the filter, the BaBSR picks then the intercept picks;
    a neuron picked twice is kept once (its second copy gets layer -1)."""
    l1, i1 = babsr.rank(problem, domains, lam, k)
    l2, i2 = intercept.rank(problem, domains, lam, k)
    layer, index = torch.cat([l1, l2], 1), torch.cat([i1, i2], 1)
    same = (layer[:, :, None] == layer[:, None, :]) & (index[:, :, None] == index[:, None, :])
    earlier = torch.ones(layer.shape[1], layer.shape[1], dtype=torch.bool,
                         device=layer.device).tril(-1)
    duplicate = (same & earlier).any(dim=2)
    layer = torch.where(duplicate, torch.full_like(layer, -1), layer)
    return layer, index


def children_bounds(problem, lower: list, upper: list, split: list, row: torch.Tensor,
                    layer: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """CROWN lower bounds (M, 2) of spec row ``row`` (M,) over the two children of M
    (domain, candidate) pairs: domain bounds ``lower``/``upper``/``split`` (per node,
    (M, ...)), split at ``(layer, index)`` (M,) (layer >= 0)."""
    relus = split_relus(problem.bm)
    m = len(row)
    interm = {}
    for i, (node, lo, up, s) in enumerate(zip(relus, lower, upper, split)):
        lo, up = tightened(lo, up, s)
        lo, up = torch.cat([lo, lo]).flatten(1).clone(), torch.cat([up, up]).flatten(1).clone()
        here = (layer == i).nonzero().flatten()
        lo[here, index[here]] = lo[here, index[here]].clamp(min=0)
        up[here + m, index[here]] = up[here + m, index[here]].clamp(max=0)
        shape = node.inputs[0].output_shape[1:]
        interm[node.inputs[0].name] = (lo.view(2 * m, *shape),
                                       torch.maximum(lo, up).view(2 * m, *shape))
    spec = problem.spec
    C = spec.C[0, row].unsqueeze(1).repeat(2, 1, 1)
    x_L = problem.x_L.expand(2 * m, *problem.x_L.shape[1:])
    x_U = problem.x_U.expand(2 * m, *problem.x_U.shape[1:])
    with torch.no_grad():
        lb, _ = problem.bm.compute_bounds(x=(box_input(x_L, x_U),), C=C, method="backward",
                                          bound_upper=False, intermediate_layer_bounds=interm)
    lb = lb[:, 0] - spec.threshold[0, row].repeat(2)
    return torch.nan_to_num(lb, nan=WORST, posinf=-WORST, neginf=WORST).view(2, m).t()


def best_first(smaller: torch.Tensor, larger: torch.Tensor) -> torch.Tensor:
    """Per row, the column order by ``smaller`` descending, ties by ``larger`` descending."""
    by_larger = larger.argsort(dim=1, descending=True, stable=True)
    then = smaller.gather(1, by_larger).argsort(dim=1, descending=True, stable=True)
    return by_larger.gather(1, then)


def rank(problem, domains, lam: list, k: int, per_score: int = FSB_K) -> tuple:
    """Up to ``k`` neurons per domain, best value ``v`` first (see the module docstring)."""
    layer, index = candidates(problem, domains, lam, per_score)
    n, c = layer.shape
    smaller = torch.full((n, c), -float("inf"), device=layer.device)  # layer -1 stays last
    larger = smaller.clone()
    pairs = (layer >= 0).nonzero()
    row = domains.lb.argmin(dim=1)
    for chunk in pairs.split(MAX_BATCH // 2) if len(pairs) else ():
        d, j = chunk[:, 0], chunk[:, 1]
        part = domains.select(d)
        both = children_bounds(problem, part.lower, part.upper, part.split, row[d],
                               layer[d, j], index[d, j])
        smaller[d, j], larger[d, j] = both.min(dim=1).values, both.max(dim=1).values
    order = best_first(smaller, larger)
    layer, index = layer.gather(1, order), index.gather(1, order)
    if c < k:
        pad = torch.full((n, k - c), -1, dtype=torch.long, device=layer.device)
        layer, index = torch.cat([layer, pad], 1), torch.cat([index, pad], 1)
    return layer[:, :k], index[:, :k]


kfsb_rank = partial(rank, per_score=KFSB_K)
