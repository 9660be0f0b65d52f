"""Bounds of the specification over batches of ReLU subdomains, with auto_LiRPA 0.3's
beta-CROWN (Wang et al. 2021, "Beta-CROWN: Efficient bound propagation with per-neuron split
constraints for neural network robustness verification").

A subdomain fixes some unstable ReLUs: ``z >= 0`` (split ``+1``) or ``z <= 0`` (``-1``) for
the pre-activation ``z``. Two things make its bound valid for that subdomain only:

- its intermediate (pre-activation) bounds are the parent's, tightened at the split
  neurons to ``[max(l, 0), u]`` or ``[l, min(u, 0)]``; the ReLU relaxation over these bounds is
  exact at the split neurons and valid for every input of the subdomain;
- each split ``s z >= 0`` (``s = +-1``) enters the final backward pass with a multiplier
  ``beta >= 0`` (the Lagrangian ``f(x) - beta s z(x) <= f(x)`` on the subdomain), which
  auto_LiRPA adds to the pre-activation's ``A`` when ``sparse_beta`` / ``sparse_beta_loc`` /
  ``sparse_beta_sign`` are set on its ReLU node and ``enable_beta_crown`` is on; beta and the
  slopes alpha are optimised by gradient ascent (auto_LiRPA's ``CROWN-Optimized``).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch
from auto_LiRPA import BoundedTensor, PerturbationLpNorm
from auto_LiRPA.operators import BoundRelu

from ..bound_ops.grafted import BoundGraftedRelu
from ..bounded_module import optimize_args

SPLIT_TYPES = (BoundRelu, BoundGraftedRelu)


@dataclass
class Domains:
    """A batch of N subdomains of one sample: per ReLU node, the pre-activation bounds
    ``lower[i]``/``upper[i]`` (N, *shape) and the splits ``split[i]`` (N, numel) in
    {-1, 0, +1}; ``lb`` (N, S): the last lower bounds of ``C f - t``."""

    lower: list
    upper: list
    split: list
    lb: torch.Tensor

    def __len__(self) -> int:
        return self.lb.shape[0]

    def select(self, index) -> "Domains":
        return Domains([t[index] for t in self.lower], [t[index] for t in self.upper],
                       [t[index] for t in self.split], self.lb[index])

    @staticmethod
    def cat(parts: list) -> "Domains":
        if len(parts) == 1:
            return parts[0]
        return Domains(*[[torch.cat(ts) for ts in zip(*[getattr(p, f) for p in parts])]
                         for f in ("lower", "upper", "split")],
                       torch.cat([p.lb for p in parts]))

    def unstable(self, affine: list | None = None) -> list:
        """Per ReLU node, the :func:`unfixed` neurons (``affine``: per node the mask of
        :func:`affine_neurons`, or None)."""
        return [unfixed(lo, up, s, fixed) for lo, up, s, fixed
                in zip(self.lower, self.upper, self.split, affine or [None] * len(self.split))]


def unfixed(lower: torch.Tensor, upper: torch.Tensor, split: torch.Tensor, affine=None):
    """bool (N, numel): the neurons of one split node that are unstable (``l < 0 < u``), not
    split and not affine (``affine``: the (1, numel) mask of :func:`affine_neurons`, or None)."""
    free = ((lower < 0) & (upper > 0)).flatten(1) & (split == 0)
    return free if affine is None else free & ~affine


def tightened(lower: torch.Tensor, upper: torch.Tensor, split: torch.Tensor):
    """The pre-activation bounds with the splits applied: ``l := max(l, 0)`` where ``z >= 0``
    was split, ``u := min(u, 0)`` where ``z <= 0``."""
    s = split.view(lower.shape)
    return (torch.where(s > 0, lower.clamp(min=0), lower),
            torch.where(s < 0, upper.clamp(max=0), upper))


EMPTY_SLACK = 1e-4   # relative float32 rounding allowance of crossing bounds


def crossed(lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """Where ``l > u`` by more than rounding, ``EMPTY_SLACK * (1 + |l| + |u|)``: the subdomain
    is empty. Two sound float32 bounds of a (nearly) fixed neuron, e.g. CROWN's and hzono's
    of a pixel-patch box, can cross by a rounding error; such a domain is not empty (calling
    it so "proved" a box that PGD falsifies)."""
    return lower > upper + EMPTY_SLACK * (1 + lower.abs() + upper.abs())


def split_relus(bm) -> list:
    """The ReLU nodes of the graph that branch and bound splits, in graph order: ReLUs and
    the grafted ReLUs of linearity grafting (only their ReLU neurons are split)."""
    return [n for n in bm.relus if type(n) in SPLIT_TYPES]


def grafted_part(node):
    """``(grafted, slope, intercept)`` (each of one sample's shape) of a grafted ReLU node:
    its affine neurons ``a z + b``; None for a ReLU."""
    return node.graft_values() if type(node) is BoundGraftedRelu else None


def affine_neurons(node):
    """bool (1, numel): the neurons of a split node that are affine whatever the input (a
    grafted ReLU's grafted ones), never split; None for a ReLU, all of whose are ReLUs."""
    part = grafted_part(node)
    return None if part is None else part[0].detach().reshape(1, -1)


def box_input(x_L: torch.Tensor, x_U: torch.Tensor) -> BoundedTensor:
    """The box ``[x_L, x_U]`` as auto_LiRPA's input (centre as the value)."""
    return BoundedTensor((x_L + x_U) / 2, PerturbationLpNorm(norm=np.inf, x_L=x_L, x_U=x_U))


@contextlib.contextmanager
def split_constraints(relus: list, splits: list):
    """Set beta-CROWN's sparse split constraints on the ReLU nodes for the block: per node
    ``sparse_beta`` (N, k) (zeros, optimised), ``sparse_beta_loc`` (N, k) (flat index of the
    split pre-activation) and ``sparse_beta_sign`` (N, k) (+1: ``z >= 0``; -1: ``z <= 0``; 0:
    padding of samples with fewer than k splits)."""
    try:
        for node, split in zip(relus, splits):
            # at least one (padding) entry: auto_LiRPA 0.3 restores the best betas by the
            # node's position among all ReLUs, so every ReLU needs its beta tensor
            k = max(int((split != 0).sum(1).max()) if split.numel() else 0, 1)
            loc = split.abs().argsort(dim=1, descending=True, stable=True)[:, :k] \
                if split.shape[1] else torch.zeros(split.shape[0], 1, dtype=torch.long,
                                                    device=split.device)
            node.sparse_beta_loc = loc
            node.sparse_beta_sign = (split.gather(1, loc) if split.shape[1] else
                                     torch.zeros(loc.shape, device=split.device)).float()
            node.sparse_beta = torch.zeros(loc.shape, device=split.device, requires_grad=True)
        yield
    finally:
        for node in relus:
            node.sparse_beta = None


@contextlib.contextmanager
def recorded_relu_coefficients(relus: list, final_name: str):
    """Record, per ReLU node, the lower-bound coefficient ``last_lA`` (S, N, *shape) of its
    output in the backward pass that starts at the final node (the last such pass)."""
    records = {}

    def recorder(node, original):
        def bound_backward(last_lA, last_uA, *args, **kwargs):
            start = kwargs.get("start_node")
            if start is not None and start.name == final_name and torch.is_tensor(last_lA):
                records[node.name] = last_lA.detach()
            return original(last_lA, last_uA, *args, **kwargs)
        return bound_backward

    try:
        for node in relus:
            node.bound_backward = recorder(node, node.bound_backward)
        yield records
    finally:
        for node in relus:
            del node.bound_backward  # the class's method again


def bound_domains(bm, x_L: torch.Tensor, x_U: torch.Tensor, spec_C: torch.Tensor,
                  threshold: torch.Tensor, domains_lower: list, domains_upper: list,
                  splits: list, iterations: int = 20, beta: bool = True):
    """``(lb (N, S), coefficients)``: lower bounds of ``C f - t`` over each of N subdomains
    of the box ``[x_L, x_U]`` (batch 1 or N) by alpha/beta-CROWN on the split-tightened
    intermediate bounds, and the ReLU output coefficients recorded for branching.
    ``lb`` is ``+inf`` on a subdomain whose split bounds are empty (:func:`crossed`)."""
    relus = split_relus(bm)
    n = splits[0].shape[0] if splits else len(x_L)
    pairs = [tightened(lo, up, s) for lo, up, s in zip(domains_lower, domains_upper, splits)]
    empty = torch.zeros(n, dtype=torch.bool, device=spec_C.device)
    for lo, up in pairs:
        empty |= crossed(lo, up).flatten(1).any(1)
    interm = {node.inputs[0].name: (lo, torch.maximum(up, lo)) for node, (lo, up)
              in zip(relus, pairs)}
    x_L, x_U = x_L.expand(n, *x_L.shape[1:]), x_U.expand(n, *x_U.shape[1:])
    C = spec_C.expand(n, *spec_C.shape[1:])
    x = (box_input(x_L, x_U),)
    final = bm.final_node().name
    with torch.no_grad():
        bm.init_slope(x, share_slopes=False, method="backward", c=C,
                      intermediate_layer_bounds=interm)
    thr = threshold.expand(n, -1)
    # stop optimising a domain once every row is proved, and the whole call once all are
    proved = lambda bound: (bound > thr).all(dim=1, keepdim=True)  # noqa: E731
    with optimize_args(bm, init_alpha=False, enable_beta_crown=beta, iteration=iterations,
                       fix_intermediate_layer_bounds=True, stop_criterion_func=proved), \
            split_constraints(relus, splits if beta else [s[:, :0] for s in splits]), \
            recorded_relu_coefficients(relus, final) as coefficients:
        lb, _ = bm.compute_bounds(x=x, C=C, method="CROWN-Optimized", bound_upper=False,
                                  intermediate_layer_bounds=interm)
    lb = lb.detach() - threshold
    lb[empty] = float("inf")
    return lb, [coefficients.get(node.name) for node in relus]


def root_bounds(bm, x_L: torch.Tensor, x_U: torch.Tensor, spec_C: torch.Tensor,
                threshold: torch.Tensor, iterations: int = 20, reference: dict | None = None):
    """``(lb (B, S), lower list, upper list)`` on the boxes of B samples: CROWN's
    pre-activation bounds of every split ReLU (intersected with ``reference`` boxes, e.g. the
    hzono boxes of CROWN-hzono, where given), then alpha-CROWN for the final node on them.
    (auto_LiRPA's full alpha-CROWN, which also optimises every intermediate layer, costs
    about 40 CROWN passes per iteration on ConvSmall for little gain.)"""
    relus = split_relus(bm)
    x = (box_input(x_L, x_U),)
    with torch.no_grad():
        crown, _ = bm.compute_bounds(x=x, C=spec_C, method="backward", bound_upper=False,
                                     reference_bounds=reference or None)
    lower, upper = [], []
    for node in relus:
        pre = node.inputs[0]
        lo, up = pre.lower.detach(), pre.upper.detach()
        if reference and pre.name in reference:
            lo, up = torch.maximum(lo, reference[pre.name][0]), torch.minimum(up, reference[pre.name][1])
        lower.append(lo)
        upper.append(up)
    splits = [torch.zeros(len(x_L), lo[0].numel(), dtype=torch.int8, device=lo.device)
              for lo in lower]
    lb, _ = bound_domains(bm, x_L, x_U, spec_C, threshold, lower, upper, splits,
                          iterations=iterations, beta=False)
    return torch.maximum(lb, crown.detach() - threshold), lower, upper
