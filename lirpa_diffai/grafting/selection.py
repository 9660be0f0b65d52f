"""Which neurons to graft (Chen et al. 2022, section 4, steps 1-3).

Per neuron i: the instability ``u_i`` (fraction of images on which it is unstable, see
``instability``) and the significance ``s_i`` (see ``significance``), each replaced by its
normalised rank ``rank(v)_i / (n - 1)`` in [0, 1] (ties share their mean rank; 1 = the most
unstable / the most significant). The grafting score is

    c_i = lam * rank(u)_i + (1 - lam) * (1 - rank(s)_i)

and the ``round(r * n)`` neurons with the highest scores are grafted (ties broken by position),
over all neurons together (``scope="global"``) or in each ReLU site separately
(``scope="layer"``, ranks within the site).

Where this follows or departs from the paper: steps 1 and 2 (rank-normalised instability and
activation-gradient significance) are the paper's. The paper picks the neurons in chunks,
decaying lam from 1 to 0 over the chunks; here lam is one number (``lam=1`` or ``0`` selects
on instability or significance alone, as the paper's ablation does). The paper counts
instability under beta-CROWN's intermediate bounds; here any of IBP, CROWN-IBP, CROWN, hzono.
"""
from __future__ import annotations

from typing import Mapping

import torch

Tensor = torch.Tensor
SCOPES = ("global", "layer")


def normalized_rank(values: Tensor) -> Tensor:
    """``rank(v) / (n - 1)`` of a flat tensor, ties sharing their mean rank (0 for n = 1)."""
    n = values.numel()
    if n <= 1:
        return torch.zeros_like(values, dtype=torch.float64)
    order = torch.argsort(values, stable=True)
    ranks = torch.empty(n, dtype=torch.float64)
    ranks[order] = torch.arange(n, dtype=torch.float64)
    _, groups = torch.unique(values, return_inverse=True)
    mean_rank = torch.zeros(int(groups.max()) + 1, dtype=torch.float64).index_add_(0, groups, ranks)
    mean_rank /= torch.bincount(groups).to(torch.float64)
    return mean_rank[groups] / (n - 1)


def grafting_scores(instability: Tensor, significance: Tensor, lam: float) -> Tensor:
    """``lam * rank(u) + (1 - lam) * (1 - rank(s))`` of flat tensors."""
    return lam * normalized_rank(instability) + (1 - lam) * (1 - normalized_rank(significance))


def top_fraction(scores: Tensor, ratio: float) -> Tensor:
    """0/1 mask (float) of the ``round(ratio * n)`` highest scores (ties: the earlier first)."""
    k = int(round(ratio * scores.numel()))
    mask = torch.zeros(scores.numel())
    mask[torch.argsort(-scores, stable=True)[:k]] = 1.0
    return mask


def check_ratio(ratio: float) -> float:
    """``ratio`` if it is a number in [0, 1], else ValueError."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 <= ratio <= 1.0:
        raise ValueError(f"grafting ratio must be a number in [0, 1], got {ratio!r}")
    return float(ratio)


def select(instability: Mapping[str, Tensor], significance: Mapping[str, Tensor], ratio: float,
           lam: float = 0.5, scope: str = "global") -> dict[str, Tensor]:
    """Grafting masks ``{site: 0/1 tensor}`` from per-site instability and significance (see
    the module docstring for the formula)."""
    ratio = check_ratio(ratio)
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam (the weight of instability) must be in [0, 1], got {lam!r}")
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    if set(instability) != set(significance):
        raise ValueError("instability and significance must score the same ReLU sites")
    sites = list(instability)
    if scope == "layer":
        return {site: top_fraction(grafting_scores(instability[site].flatten().double(),
                                                   significance[site].flatten().double(), lam),
                                   ratio).reshape(instability[site].shape) for site in sites}
    flat_u = torch.cat([instability[s].flatten().double() for s in sites])
    flat_s = torch.cat([significance[s].flatten().double() for s in sites])
    flat = top_fraction(grafting_scores(flat_u, flat_s, lam), ratio)
    masks, start = {}, 0
    for site in sites:
        n = instability[site].numel()
        masks[site] = flat[start:start + n].reshape(instability[site].shape)
        start += n
    return masks


def choose_masks(model, images: Tensor, labels: Tensor, eps: float, ratio: float,
                 method: str = "CROWN-IBP", significance: str = "gradient", lam: float = 0.5,
                 scope: str = "global", batch_size: int = 50, data_range=(0.0, 1.0),
                 bound_opts=None) -> tuple[dict[str, Tensor], dict]:
    """Grafting masks of ``model`` for ``ratio`` of its ReLU neurons, scored on ``images``
    (instability under ``method`` at ``eps``; ``significance`` "gradient" or "weight"), and
    the selection statistics (per site: neurons, grafted, mean instability of all and of the
    grafted neurons)."""
    from .instability import method_name, unstable_counts
    from .significance import SIGNIFICANCE_KINDS, gradient_significance, weight_significance
    ratio, method = check_ratio(ratio), method_name(method)
    if significance not in SIGNIFICANCE_KINDS:
        raise ValueError(f"significance must be one of {', '.join(SIGNIFICANCE_KINDS)}, "
                         f"got {significance!r}")
    counts = unstable_counts(model, images, eps, method, batch_size, data_range, bound_opts)
    instability = {site: c.double() / len(images) for site, c in counts.items()}
    scores = gradient_significance(model, images, labels, batch_size) if significance == "gradient" \
        else weight_significance(model, images[:1])
    masks = select(instability, scores, ratio, lam, scope)
    sites = {site: {"neurons": masks[site].numel(), "grafted": int(masks[site].sum()),
                    "mean_instability": float(instability[site].mean()),
                    "mean_instability_grafted": float(instability[site][masks[site].bool()].mean())
                    if masks[site].any() else 0.0}
             for site in masks}
    stats = {"ratio": ratio, "method": method, "eps": eps, "significance": significance,
             "lam": lam, "scope": scope, "images": len(images), "sites": sites}
    return masks, stats
