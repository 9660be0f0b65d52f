"""Branch and bound over ReLU splits for one sample (Bunel et al. 2020's framework, with
beta-CROWN bounds as in Wang et al. 2021):

1. keep the open subdomains, each with its worst spec lower bound and its chosen split;
2. take the ``batch`` subdomains with the lowest bounds, split each on its chosen ReLU into
   ``z >= 0`` and ``z <= 0`` and bound all children in one auto_LiRPA call
   (:func:`bounding.bound_domains`);
3. drop the children whose every spec row is proved; a subdomain with no unfixed ReLU left is
   a linear program, solved exactly (:mod:`lp`): proved, or a counterexample;
4. now and then search the box for a counterexample, harder while the bounds stall
   (:mod:`escalation`).

Every open subdomain is either proved, found to hold a counterexample or split into two with
one more fixed ReLU, so with enough time the answer is ``verified`` or ``falsified`` (when all
activations that are not fixed by the bounds are ReLUs). The grafted ReLUs of linearity
grafting (Chen et al. 2022) are split like ReLUs on their ReLU neurons; their grafted neurons
are affine, ``a z + b``, so they need no split and leave a fully split subdomain affine.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from . import branching, falsify, lp
from .escalation import Falsifier
from .bounding import (Domains, affine_neurons, bound_domains, box_input, split_relus,
                       tightened)
from .branching.scores import worst_row_coefficient
from .spec import Spec, Status


@dataclass
class BaBOptions:
    """``batch``: subdomains split per round (2x as many bounded); ``iterations``: alpha/beta
    optimisation steps per round; ``beta``: use beta-CROWN's split multipliers (else
    alpha-CROWN on the split-tightened bounds alone); ``refresh``: recompute the
    intermediate bounds of every child by CROWN on its split-tightened bounds (else only the
    split neurons' bounds change); ``attack_every``: rounds between counterexample searches;
    ``lp``: close fully fixed subdomains with the exact LP (needs highspy); ``depth``: at most
    this many ReLUs split at once per parent while few domains are open (2^depth children);
    ``branching``: the heuristic that picks the ReLU to split, by name
    (:data:`branching.HEURISTICS`: ``intercept``, ``babsr``, ``fsb``, ``kfsb``)."""

    batch: int = 64
    iterations: int = 10
    beta: bool = True
    refresh: bool = False
    attack_every: int = 5
    lp: bool = True
    depth: int = 1
    branching: str = branching.DEFAULT

    def __post_init__(self):
        branching.heuristic(self.branching)   # an unknown name fails here, not mid-run


MAX_DEPTH = 4   # the most neurons ranked per domain (the largest useful ``depth``)


@dataclass
class BaBOutcome:
    status: Status
    subdomains: int = 0
    lp_calls: int = 0
    counterexample: torch.Tensor | None = None


def refreshed_bounds(bm, x_L, x_U, C, lower: list, upper: list, split: list) -> tuple:
    """Intermediate bounds of N subdomains recomputed by CROWN on their split-tightened
    bounds, intersected with them (both are sound on the subdomain)."""
    relus = split_relus(bm)
    pairs = [tightened(lo, up, s) for lo, up, s in zip(lower, upper, split)]
    n = split[0].shape[0]
    reference = {node.inputs[0].name: (lo, torch.maximum(lo, up))
                 for node, (lo, up) in zip(relus, pairs)}
    first = {relus[0].inputs[0].name: reference[relus[0].inputs[0].name]}
    x = (box_input(x_L.expand(n, *x_L.shape[1:]), x_U.expand(n, *x_U.shape[1:])),)
    with torch.no_grad():
        bm.compute_bounds(x=x, C=C.expand(n, *C.shape[1:]), method="backward",
                          bound_upper=False, intermediate_layer_bounds=first,
                          reference_bounds=reference)
    new_lower, new_upper = [], []
    for node, (lo, up) in zip(relus, pairs):
        pre = node.inputs[0]
        new_lower.append(torch.maximum(pre.lower.detach(), lo))
        new_upper.append(torch.minimum(pre.upper.detach(), up))
    return new_lower, new_upper


def open_rows(lb: torch.Tensor) -> torch.Tensor:
    """(N, S') the spec rows each domain has not proved (``lb <= 0``), worst first, padded
    with its worst row to the most any domain has (``S' >= 1``)."""
    order = lb.argsort(dim=1)
    count = (lb <= 0).sum(dim=1).clamp(min=1)
    rows = order[:, :int(count.max())]
    position = torch.arange(rows.shape[1], device=lb.device)
    return torch.where(position[None] < count[:, None], rows, rows[:, :1])


def bound_children(problem: branching.Problem, children: Domains, options: BaBOptions):
    """New bounds of N subdomains and their next splits by ``options.branching``, best
    first: ``(Domains, layer (N, MAX_DEPTH), index (N, MAX_DEPTH))``. ``children.lb`` are
    the parents' bounds: only the rows they left unproved are bounded again (a bound of the
    parent holds on its children), the others are kept."""
    bm, x_L, x_U, spec = problem.bm, problem.x_L, problem.x_U, problem.spec
    rows = open_rows(children.lb)
    C, threshold = spec.C[0][rows], spec.threshold[0][rows]
    lower, upper, split = children.lower, children.upper, children.split
    if options.refresh:
        lower, upper = refreshed_bounds(bm, x_L, x_U, C, lower, upper, split)
    lb_rows, coefficients = bound_domains(bm, x_L, x_U, C, threshold, lower, upper, split,
                                          options.iterations, options.beta)
    lb = children.lb.clone().scatter_(1, rows, lb_rows)
    worst = lb_rows.argmin(dim=1)
    lam = [worst_row_coefficient(c, worst) for c in coefficients]
    domains = Domains(lower, upper, split, lb)
    layer, index = branching.heuristic(options.branching)(problem, domains, lam, MAX_DEPTH)
    return domains, layer, index


def children_of(split: list, layer: torch.Tensor, index: torch.Tensor) -> list:
    """The two children (``z >= 0``, ``z <= 0``) of N domains with splits ``split``, split on
    ``(layer, index)`` (N,) (nothing where ``layer`` is -1): split lists of 2N rows."""
    out = []
    n = len(layer)
    for i, s in enumerate(split):
        s2 = torch.cat([s, s])
        here = (layer == i).nonzero().flatten()
        s2[here, index[here]] = 1
        s2[here + n, index[here]] = -1
        out.append(s2)
    return out


def split_depth(parents: int, batch: int, most: int) -> int:
    """Neurons to split at once per parent: the largest ``d <= most`` with
    ``parents * 2^d <= 2 * batch`` (at least 1), so that few open domains fill a batch."""
    depth = 1
    while depth < min(most, MAX_DEPTH) and parents * 2 ** (depth + 1) <= 2 * batch:
        depth += 1
    return depth


def ranked_columns(layer: torch.Tensor) -> int:
    """How many leading columns of the decisions ``layer`` (P, MAX_DEPTH) name a neuron for
    every parent (splitting on a column some parent lacks would copy that parent)."""
    valid = (layer >= 0).all(dim=0).int()
    return int(valid.cumprod(0).sum())


def round_size(batch: int, time_left: float, per_child: float) -> int:
    """Parents to split this round: ``batch``, fewer when the last round's time per child
    says a full one would overrun the deadline (at least one)."""
    if per_child <= 0:
        return batch
    return max(1, min(batch, int(time_left / (2 * per_child))))


def close_fixed(bm, model, x_L, x_U, spec: Spec, domains: Domains, outcome: BaBOutcome,
                deadline: float) -> torch.Tensor:
    """Solve the LP of every fully fixed domain; returns a bool (N,) of those still open
    (the LP could not decide), sets a counterexample on ``outcome`` if one is found."""
    still_open = torch.zeros(len(domains), dtype=torch.bool)
    for i in range(len(domains)):
        one = domains.select(slice(i, i + 1))
        outcome.lp_calls += 1
        try:
            result = lp.solve_fixed_domain(bm, x_L, x_U, spec.C, spec.threshold, one.lower,
                                           one.upper, one.split,
                                           time_limit=max(deadline - time.perf_counter(), 0.1))
        except ValueError:  # not affine after all: leave it undecided
            still_open[i] = True
            continue
        if (result.lb > lp.TOLERANCE).all():
            continue
        if result.point is not None and falsify.checked_counterexample(model, result.point, x_L,
                                                                      x_U, spec):
            outcome.counterexample = result.point
            return still_open
        still_open[i] = True
    return still_open


def branch_and_bound(bm, model, x_L: torch.Tensor, x_U: torch.Tensor, spec: Spec,
                     root: Domains, deadline: float, options: BaBOptions) -> BaBOutcome:
    """Decide ``C f(x) > t`` on the box of one sample (batch 1 tensors) from its root
    bounds ``root`` (one domain, no splits) before ``deadline`` (``time.perf_counter``)."""
    outcome = BaBOutcome(Status.TIMEOUT)
    use_lp = options.lp and lp.closable(bm)
    affine = [affine_neurons(node) for node in split_relus(bm)]
    problem = branching.Problem(bm, x_L, x_U, spec, affine)
    layer, index = branching.heuristic(options.branching)(problem, root,
                                                           [None] * len(root.lower), MAX_DEPTH)
    open_domains, decisions, undecidable = root, (layer, index), 0
    rounds, per_child = 0, 0.0
    falsifier = Falsifier(options.attack_every)
    while len(open_domains) and time.perf_counter() < deadline:
        rounds += 1
        layer, index = decisions
        fixed = layer[:, 0] < 0
        if fixed.any():
            if not use_lp:
                undecidable += int(fixed.sum())
            else:
                still = close_fixed(bm, model, x_L, x_U, spec, open_domains.select(fixed),
                                    outcome, deadline)
                if outcome.counterexample is not None:
                    outcome.status = Status.FALSIFIED
                    return outcome
                undecidable += int(still.sum())
            keep = ~fixed
            open_domains, layer, index = open_domains.select(keep), layer[keep], index[keep]
            if not len(open_domains):
                break
        worst = open_domains.lb.min(dim=1).values
        order = worst.argsort()
        size = round_size(options.batch, deadline - time.perf_counter(), per_child)
        take, rest = order[:size], order[size:]
        round_start = time.perf_counter()
        children = open_domains.select(take)
        for d in range(min(split_depth(len(take), options.batch, options.depth),
                           ranked_columns(layer[take]))):
            split = children_of(children.split, layer[take][:, d].repeat(2 ** d),
                                index[take][:, d].repeat(2 ** d))
            children = Domains.cat([children, children])
            children.split = split
        children, c_layer, c_index = bound_children(problem, children, options)
        outcome.subdomains += len(children)
        per_child = (time.perf_counter() - round_start) / len(children)
        alive = ~(children.lb > 0).all(dim=1)
        remaining = open_domains.select(rest)
        open_domains = Domains.cat([remaining, children.select(alive)])
        decisions = (torch.cat([layer[rest], c_layer[alive]]),
                     torch.cat([index[rest], c_index[alive]]))
        if not len(open_domains):
            break
        point = falsifier.search(model, x_L, x_U, spec, rounds, float(open_domains.lb.min()))
        if point is not None:
            outcome.status, outcome.counterexample = Status.FALSIFIED, point
            return outcome
    if not len(open_domains) and not undecidable:
        outcome.status = Status.VERIFIED   # else a timeout: time ran out, or fixed subdomains
    return outcome                         # the LP could not decide were left
