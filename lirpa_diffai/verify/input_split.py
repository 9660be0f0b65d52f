"""Branch and bound over the input box, for inputs of few dimensions (as in ReluVal, Wang et
al. 2018, and the input splitting of alpha-beta-CROWN): a sub-box is bounded by CROWN
(batched), proved sub-boxes are dropped, the others are halved along the dimension with the
largest *smear* ``|df/dx_i| (u_i - l_i)`` of the worst spec row at their centre (ReluVal's
heuristic, :mod:`.branching.smear`), and every centre is checked concretely for a
counterexample. The sub-boxes shrink geometrically, so every sample whose smallest margin is
not exactly 0 is decided given time.
"""
from __future__ import annotations

import time

import torch

from . import falsify
from .bab import BaBOptions, BaBOutcome
from .bounding import box_input
from .branching.smear import smear_dimension
from .spec import Spec, Status


def input_branch_and_bound(bm, model, x_L: torch.Tensor, x_U: torch.Tensor, spec: Spec,
                           deadline: float, options: BaBOptions) -> BaBOutcome:
    """Decide ``C f(x) > t`` on one box (batch 1) by splitting it before ``deadline``."""
    outcome = BaBOutcome(Status.TIMEOUT)
    lo, hi = x_L, x_U
    while len(lo) and time.perf_counter() < deadline:
        n = len(lo)
        spec_n = Spec(spec.C.expand(n, *spec.C.shape[1:]), spec.threshold.expand(n, -1))
        centre = (lo + hi) / 2
        with torch.no_grad():
            bad = spec_n.violated(model(centre).flatten(1))
        if bad.any():
            point = centre[bad.nonzero()[0, 0]].unsqueeze(0)
            if falsify.checked_counterexample(model, point, x_L, x_U, spec):
                outcome.status, outcome.counterexample = Status.FALSIFIED, point
                return outcome
        with torch.no_grad():
            lb, _ = bm.compute_bounds(x=(box_input(lo, hi),), C=spec_n.C, method="backward",
                                      bound_upper=False)
        outcome.subdomains += n
        open_ = ~((lb - spec_n.threshold) > 0).all(dim=1)
        lo, hi = lo[open_], hi[open_]
        if not len(lo):
            break
        worst = (lb - spec_n.threshold)[open_].min(dim=1).values
        take = worst.argsort()[:options.batch * 2]
        rest = torch.ones(len(lo), dtype=torch.bool, device=lo.device)
        rest[take] = False
        dim = smear_dimension(model, lo[take], hi[take], spec)
        a, b = lo[take].flatten(1).clone(), hi[take].flatten(1).clone()
        rows = torch.arange(len(take), device=lo.device)
        mid = (a[rows, dim] + b[rows, dim]) / 2
        lo_left, hi_left = a.clone(), b.clone()
        hi_left[rows, dim] = mid
        lo_right = a.clone()
        lo_right[rows, dim] = mid
        shape = lo.shape[1:]
        lo = torch.cat([lo[rest], lo_left.view(-1, *shape), lo_right.view(-1, *shape)])
        hi = torch.cat([hi[rest], hi_left.view(-1, *shape), b.view(-1, *shape)])
    if not len(lo):
        outcome.status = Status.VERIFIED
    return outcome
