"""``intercept``: the intercept score of BaBSR (Bunel, Lu, Turkaslan, Torr, Kohli, Kumar 2020,
"Branch and bound for piecewise linear neural network verification", JMLR 21, section 5.1),
the variant De Palma et al. 2021 ("Improved branch and bound for neural network verification
via Lagrangian decomposition") use as one of FSB's two filters.

The intercept ``-l u / (u - l)`` of an unstable neuron's upper relaxation line costs the
lower bound ``min(lambda, 0) * (-l u / (u - l))``, ``lambda`` being the coefficient of the
ReLU output in the linear lower bound of the spec row with the worst bound. Splitting the
neuron removes that term, so the score is::

    s = max(-lambda, 0) * (-l u / (u - l))  +  1e-6 * min(u, -l)

the second term breaking ties (all scores zero, e.g. at the root where no ``lambda`` is
recorded, or with only positive coefficients) towards the widest neuron.
"""
from __future__ import annotations

import torch

from .scores import intercept, masked, tie_break, top_neurons


def scores(lower: torch.Tensor, upper: torch.Tensor, lam) -> torch.Tensor:
    """``s`` (N, numel) of one ReLU layer; ``lam`` (N, numel) or None (no coefficient)."""
    gain = intercept(lower, upper)
    if lam is not None:
        gain = (-lam).clamp(min=0) * gain
    return gain + tie_break(lower, upper)


def rank(problem, domains, lam: list, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best neurons per domain by ``s`` (see :mod:`.base`)."""
    per_layer = [masked(scores(lo, up, lm), cand)
                 for lo, up, lm, cand in zip(domains.lower, domains.upper, lam,
                                             domains.unstable(problem.affine))]
    return top_neurons(per_layer, k, len(domains))
