"""An exact, independent oracle for small feed-forward ReLU networks: the mixed-integer
program of Tjeng, Xiao and Tedrake 2019 ("Evaluating robustness of neural networks with
mixed integer programming", MIPVerify) with big-M constraints from the tightest
pre-activation bounds at hand. For an unstable neuron ``a = relu(z)``, ``l < 0 < u``, and a
binary ``d``::

    a >= 0,   a >= z,   a <= z - l (1 - d),   a <= u d

a stable one is ``a = z`` (``l >= 0``) or ``a = 0`` (``u <= 0``). The network must be an
``nn.Sequential`` (nested ones are flattened) whose stretches between ``nn.ReLU`` modules
are affine (linear, conv, flatten, normalisation, abstract layers, ...); each stretch
becomes its dense Jacobian.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import nn

from . import highs
from .spec import Spec, VerificationError

PRE_BOUND_SLACK = 1e-4   # relative float32 rounding allowance on the given pre-activation bounds


def leaf_modules(model: nn.Module) -> list:
    """The modules of a (nested) nn.Sequential in order."""
    if isinstance(model, nn.Sequential):
        return [leaf for child in model for leaf in leaf_modules(child)]
    return [model]


def affine_stretches(model: nn.Module) -> list:
    """The stretches between ReLUs as ``nn.Sequential``s (len = number of ReLUs + 1)."""
    if not isinstance(model, nn.Sequential):
        raise VerificationError(f"the MIP oracle needs an nn.Sequential, got {type(model).__name__}")
    stretches, current = [], []
    for module in leaf_modules(model):
        if isinstance(module, nn.ReLU):
            stretches.append(nn.Sequential(*current))
            current = []
        else:
            current.append(module)
    return stretches + [nn.Sequential(*current)]


def dense_affine(stretch: nn.Module, in_shape: tuple) -> tuple:
    """``(W, b, out_shape)`` with ``stretch(x) = W x + b`` on flattened inputs (float64); a
    VerificationError if the stretch is not affine."""
    n = int(np.prod(in_shape))
    f = lambda flat: stretch(flat.view(1, *in_shape)).flatten()  # noqa: E731
    with torch.no_grad():
        zero = torch.zeros(n)
        b = f(zero)
        out_shape = tuple(stretch(zero.view(1, *in_shape)).shape[1:])
        u, v = torch.randn(n), torch.randn(n)
        if not torch.allclose(f(u) + f(v) - b, f(u + v), atol=1e-3, rtol=1e-3):
            names = ", ".join(type(m).__name__ for m in stretch)
            raise VerificationError(f"the MIP oracle needs affine stretches between ReLUs; "
                                    f"[{names}] is not affine")
    W = torch.autograd.functional.jacobian(f, zero, vectorize=True)
    return W.double().numpy(), b.double().numpy(), out_shape


def interval_bounds(W: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    """``W v + b`` over the box ``[lo, hi]`` by interval arithmetic."""
    mid, rad = (lo + hi) / 2, (hi - lo) / 2
    centre = W @ mid + b
    spread = np.abs(W) @ rad
    return centre - spread, centre + spread


def intersect_with_slack(lo: np.ndarray, hi: np.ndarray, pre_lo: torch.Tensor,
                         pre_hi: torch.Tensor) -> tuple:
    """``[lo, hi]`` (exact, float64) intersected with float32 bounds widened by
    ``PRE_BOUND_SLACK * (1 + |bound|)``: a float32 bound of a neuron whose value is (nearly)
    fixed can round to just inside its float64 value, which would make the program
    infeasible (a row "proved" on an empty set)."""
    pre_lo = pre_lo.double().flatten().cpu().numpy()
    pre_hi = pre_hi.double().flatten().cpu().numpy()
    return (np.maximum(lo, pre_lo - PRE_BOUND_SLACK * (1 + np.abs(pre_lo))),
            np.minimum(hi, pre_hi + PRE_BOUND_SLACK * (1 + np.abs(pre_hi))))


@dataclass
class MIPResult:
    """Per spec row the exact minimum of ``C f - t`` over the box (``value``; for a row
    stopped by the time limit, HiGHS' proved lower bound), ``optimal`` flags, and an input
    attaining the smallest value (``point``)."""

    value: np.ndarray
    optimal: np.ndarray
    point: Optional[torch.Tensor]

    @property
    def verified(self) -> bool:
        return bool(self.optimal.all() and (self.value > 0).all())

    @property
    def falsified(self) -> bool:
        return bool(((self.value <= 0) & self.optimal).any())


def mip_minimum(model: nn.Module, x_L: torch.Tensor, x_U: torch.Tensor, spec: Spec,
                pre_bounds: list | None = None, time_limit: float = 60.0,
                decide: bool = False) -> MIPResult:
    """Solve the MIP for one sample (batch 1). ``pre_bounds``: per ReLU, ``(l, u)`` tensors
    of sound pre-activation bounds to intersect with interval arithmetic (e.g. CROWN's).
    ``decide``: only the sign of each row's minimum is exact (HiGHS prunes every node whose
    bound is >= 0 and stops at the first solution below 0: ``value`` is that solution's, or
    ``+inf`` / a feasible value > 0 when the row is proved >= 0); rows after a falsified one
    are skipped (``value = nan``, not optimal)."""
    model = model.cpu().eval()
    stretches = affine_stretches(model)
    shape = tuple(x_L.shape[1:])
    program = highs.Program()
    lo, hi = x_L.double().flatten().cpu().numpy(), x_U.double().flatten().cpu().numpy()
    inputs = program.add_vars(lo, hi)
    prev = inputs
    for i, stretch in enumerate(stretches[:-1]):
        W, b, shape = dense_affine(stretch, shape)
        lo, hi = interval_bounds(W, b, lo, hi)
        if pre_bounds is not None:
            lo, hi = intersect_with_slack(lo, hi, *pre_bounds[i])
        post = program.add_vars(np.maximum(lo, 0), np.maximum(hi, 0))
        unstable = (lo < 0) & (hi > 0)
        binaries = program.add_vars(np.zeros(unstable.sum()), np.ones(unstable.sum()), integral=True)
        which = dict(zip(np.flatnonzero(unstable), binaries))
        for j in range(len(b)):
            row, cols = W[j], prev
            if hi[j] <= 0:
                continue                      # a_j = 0 by its bounds [0, 0]
            if lo[j] >= 0:                    # a_j = z_j
                program.add_row(np.append(cols, post[j]), np.append(row, -1.0), -b[j], -b[j])
                continue
            d = which[j]
            program.add_row(np.append(cols, post[j]), np.append(row, -1.0), hi=-b[j])
            program.add_row(np.concatenate([cols, [post[j], d]]),
                            np.concatenate([-row, [1.0, -lo[j]]]), hi=b[j] - lo[j])
            program.add_row([post[j], d], [1.0, -hi[j]], hi=0.0)
        lo, hi, prev = np.maximum(lo, 0), np.maximum(hi, 0), post
    W, b, _ = dense_affine(stretches[-1], shape)
    C, t = spec.C[0].double().cpu().numpy(), spec.threshold[0].double().cpu().numpy()
    values, optimal, best, best_value = [], [], None, np.inf
    for row, thr in zip(C, t):
        if decide and values and min(values) <= 0:
            values.append(np.nan)
            optimal.append(False)
            continue
        sol = highs.solve(program, dict(zip(prev, row @ W)), float(row @ b - thr), time_limit,
                          cutoff=0.0 if decide else None)
        values.append(sol.value)
        optimal.append(sol.status in ("optimal", "infeasible", "solution limit"))
        if sol.v is not None and sol.value < best_value:
            best_value = sol.value
            point = torch.as_tensor(sol.v[inputs], dtype=x_L.dtype).view_as(x_L)
            best = torch.maximum(torch.minimum(point, x_U.cpu()), x_L.cpu())
    return MIPResult(np.array(values), np.array(optimal), best)
