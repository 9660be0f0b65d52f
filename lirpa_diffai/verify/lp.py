"""The exact answer on a subdomain whose ReLUs are all fixed (stable by its bounds, or
split): on it the network is affine, ``f(x) = W x + b``, and so is every pre-activation,
``z_j(x) = a_j x + c_j``, so the smallest spec margin over the subdomain is the linear program

    min_x  C_s (W x + b) - t_s   s.t.  x_L <= x <= x_U,   s_j (a_j x + c_j) >= 0 (split j)

per spec row ``s`` (the stable neurons need no row: their bounds hold on the subdomain).
``W``, ``a_j`` are the Jacobians of the graph with every ReLU replaced by its fixed 0/1 mask
(a grafted ReLU by its mask on its ReLU neurons and ``a z + b`` on its grafted ones), which
works on any graph auto_LiRPA traces.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from . import highs
from .bounding import SPLIT_TYPES, affine_neurons, grafted_part, split_relus, unfixed

TOLERANCE = 1e-6   # LP optimum above this proves the row (HiGHS' feasibility tolerance ~1e-7)


def closable(bm) -> bool:
    """Whether fixing every ReLU makes the graph affine, so that the LP is exact: no
    perturbed activation other than ReLU and grafted ReLU (max-pooling, tanh, leaky ReLUs,
    ...) and no product of two perturbed values. Elsewhere fully fixed subdomains stay
    undecided (a timeout), never a guess."""
    from auto_LiRPA.operators import BoundActivation
    for node in bm._modules.values():
        if not getattr(node, "perturbed", False):
            continue
        if isinstance(node, BoundActivation) and type(node) not in SPLIT_TYPES:
            return False
        perturbed_inputs = sum(bool(getattr(i, "perturbed", False)) for i in node.inputs)
        if perturbed_inputs > 1 and type(node).__name__ in ("BoundMul", "BoundMatMul",
                                                             "BoundDiv"):
            return False
    return True


def fixed_map(node, active: torch.Tensor) -> tuple:
    """``(slope, offset)``: what a split node computes, ``slope * z + offset``, on a subdomain
    where its ReLU neurons are fixed, ``active`` (a 0/1 tensor of one sample's shape) where
    ``z >= 0``: ``(active, 0)``, and ``(a, b)`` on a grafted ReLU's grafted neurons."""
    part = grafted_part(node)
    if part is None:
        return active, torch.zeros_like(active)
    grafted, slope, intercept = (t.detach() for t in part)
    return (torch.where(grafted, slope, active),
            torch.where(grafted, intercept, torch.zeros_like(active)))


@contextlib.contextmanager
def fixed_relus(relus: list, maps: list):
    """Every split node computes its fixed affine map ``slope * z + offset`` (``maps``: per
    node, :func:`fixed_map`) inside the block."""
    try:
        for node, (slope, offset) in zip(relus, maps):
            node.forward = (lambda a, b: (lambda z, *_: z * a + b))(slope, offset)
        yield
    finally:
        for node in relus:
            del node.forward


def affine_pieces(bm, x0: torch.Tensor, maps: list, split_index: list):
    """``(W (K, n), b (K,), A (J, n), c (J,))`` in float64: the outputs and the pre-activations
    ``split_index`` (per split node, flat indices) of the graph with its split nodes fixed to
    ``maps`` (:func:`fixed_relus`) as affine maps of the flattened input."""
    relus = split_relus(bm)
    n = x0[0].numel()

    def outputs(flat: torch.Tensor) -> torch.Tensor:
        out = bm(flat.view(1, *x0.shape[1:])).flatten()
        pre = [node.inputs[0].forward_value.flatten()[idx]
               for node, idx in zip(relus, split_index) if len(idx)]
        return torch.cat([out] + pre)

    with fixed_relus(relus, maps), torch.enable_grad():
        zero = torch.zeros(n, dtype=x0.dtype, device=x0.device)
        offset = outputs(zero).detach()
        jac = torch.autograd.functional.jacobian(outputs, zero, vectorize=True)
        probe = torch.randn(n, dtype=x0.dtype, device=x0.device)
        if not torch.allclose(outputs(probe).detach(), offset + jac @ probe, rtol=1e-3,
                              atol=1e-3):  # a second guard behind ``closable``
            raise ValueError("the graph with its ReLUs fixed is not affine; no exact LP")
    k = offset.numel() - sum(len(i) for i in split_index)
    jac, offset = jac.double().cpu().numpy(), offset.double().cpu().numpy()
    return jac[:k], offset[:k], jac[k:], offset[k:]


@dataclass
class LPResult:
    """``lb`` (S,): the exact minimum of each row's margin over the subdomain (``+inf`` if
    empty); ``point``: an input attaining the smallest one (None if none is below 0)."""

    lb: np.ndarray
    point: Optional[torch.Tensor]


def solve_fixed_domain(bm, x_L: torch.Tensor, x_U: torch.Tensor, C: torch.Tensor,
                       threshold: torch.Tensor, lower: list, upper: list, split: list,
                       time_limit: float = highs.INF) -> LPResult:
    """The LP above for one subdomain (batch 1 tensors; ``lower``/``upper``/``split``: per
    ReLU node). Every ReLU neuron must be fixed: stable by its bounds, split, or grafted."""
    relus = split_relus(bm)
    maps, split_index, signs = [], [], []
    for node, lo, up, s in zip(relus, lower, upper, split):
        if bool(unfixed(lo, up, s, affine_neurons(node)).any()):
            raise ValueError("solve_fixed_domain: the subdomain has unfixed ReLUs")
        active = ((lo >= 0) | (s.view(lo.shape) > 0)).to(x_L.dtype)
        maps.append(fixed_map(node, active[0]))
        idx = (s.flatten() != 0).nonzero().flatten()
        split_index.append(idx)
        signs.append(s.flatten()[idx].double().cpu().numpy())
    W, b, A, c = affine_pieces(bm, x_L, maps, split_index)
    program = highs.Program()
    cols = program.add_vars(x_L.double().cpu().numpy(), x_U.double().cpu().numpy())
    sign = np.concatenate(signs) if signs else np.zeros(0)
    if len(sign):
        program.add_dense_rows(A * sign[:, None], cols, -sign * c, highs.INF)
    Cn = C[0].double().cpu().numpy()
    tn = threshold[0].double().cpu().numpy()
    lbs, best, best_value = [], None, 0.0
    for row, t in zip(Cn, tn):
        sol = highs.solve(program, dict(zip(cols, row @ W)), float(row @ b - t), time_limit)
        if sol.status == "infeasible":
            return LPResult(np.full(len(Cn), highs.INF), None)
        if sol.status != "optimal":
            lbs.append(-highs.INF)
            continue
        lbs.append(sol.value)
        if sol.value < best_value:
            best_value = sol.value
            point = torch.as_tensor(sol.v[cols], dtype=x_L.dtype).view_as(x_L).to(x_L.device)
            best = torch.maximum(torch.minimum(point, x_U), x_L)
    return LPResult(np.array(lbs), best)
