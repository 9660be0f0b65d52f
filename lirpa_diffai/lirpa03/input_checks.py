"""Checks of what a user hands to ``BoundedModule.compute_bounds``, for every method: the
method's name, the inputs and their perturbations, and the specification ``C``.

Each bad value is refused with a ``ValueError`` that names it (and the nearest method name),
instead of a deep torch traceback or, worse, bounds that look valid: an inverted box or a
negative ``eps`` gives inverted bounds, a NaN gives NaN bounds."""
from __future__ import annotations

import difflib
from typing import Optional, Sequence

import numpy as np
import torch
from auto_LiRPA.perturbations import PerturbationLpNorm

from ..domain.perturbation import PerturbationHybridZonotope
from .entries import entries_where

# auto_LiRPA 0.3's method names (compute_bounds lower-cases them)
AUTO_LIRPA_METHODS = ("IBP", "CROWN-IBP", "IBP+backward", "IBP+CROWN", "CROWN", "backward",
                      "forward", "forward+backward", "forward+CROWN", "CROWN-Optimized",
                      "alpha-CROWN", "forward-optimized")


def check_method(method, own_methods: Sequence[str]) -> Optional[str]:
    """``method`` lower-cased; ``ValueError`` naming the known methods and the nearest one if it
    is none of ``own_methods`` and auto_LiRPA's. ``None`` passes (auto_LiRPA reads it as "use
    the ``IBP`` / ``forward`` flags")."""
    if method is None:
        return None
    known = list(own_methods) + list(AUTO_LIRPA_METHODS)
    if not isinstance(method, str):
        raise ValueError(f"method must be a string, not {method!r}; known: {', '.join(known)}")
    by_key = {name.lower(): name for name in known}
    key = method.lower()
    if key not in by_key:
        near = difflib.get_close_matches(key, list(by_key), n=1, cutoff=0.5)
        hint = f"; did you mean {by_key[near[0]]!r}?" if near else ""
        raise ValueError(f"unknown bound method {method!r}{hint} (known: {', '.join(known)})")
    return key


def as_input_tuple(x):
    """``x`` as auto_LiRPA takes it: a tuple of inputs (a single tensor is one input)."""
    if x is None or isinstance(x, (tuple, list)):
        return x
    if torch.is_tensor(x):
        return (x,)
    raise ValueError(f"x must be a tuple of (bounded) tensors, not {type(x).__name__}")


def check_inputs(x: Optional[Sequence]) -> None:
    """Every input finite; every perturbation a non-empty set described by finite numbers."""
    for index, value in enumerate(x or ()):
        if not torch.is_tensor(value):
            continue
        where = f"input {index}"
        _require_finite(value, f"{where}'s values")
        ptb = getattr(value, "ptb", None)
        if isinstance(ptb, PerturbationHybridZonotope):
            _check_zonotope(ptb, where)
        elif isinstance(ptb, PerturbationLpNorm):
            _check_lp_ball(ptb, where)


def _check_lp_ball(ptb: PerturbationLpNorm, where: str) -> None:
    eps = torch.as_tensor(ptb.eps, dtype=torch.float64)
    _require_finite(eps, f"{where}'s eps")
    if (eps < 0).any():
        raise ValueError(f"{where}: eps = {_show(eps)} is negative; a perturbation radius is >= 0")
    if ptb.norm == np.inf and (ptb.x_L is not None or ptb.x_U is not None):
        if ptb.x_L is None or ptb.x_U is None:
            raise ValueError(f"{where}: give both x_L and x_U, or neither")
        _require_finite(ptb.x_L, f"{where}'s x_L")
        _require_finite(ptb.x_U, f"{where}'s x_U")
        inverted = torch.as_tensor(ptb.x_L) > torch.as_tensor(ptb.x_U)
        if inverted.any():
            raise ValueError(f"{where}: x_L > x_U {entries_where(inverted)}; the input box is empty")


def _check_zonotope(ptb: PerturbationHybridZonotope, where: str) -> None:
    z = ptb.zonotope
    _require_finite(z.head, f"{where}'s zonotope head")
    _require_finite(z.beta, f"{where}'s zonotope beta")
    if z.errors is not None:
        _require_finite(z.errors, f"{where}'s zonotope errors")
    if (z.beta < 0).any():
        raise ValueError(f"{where}: the zonotope's beta has negative entries; beta is a radius, >= 0")


def normalize_spec(C, batch: Optional[int], n_out: int, dtype: Optional[torch.dtype]):
    """The specification as every method takes it: (B, S, n_out) in the inputs' dtype.

    IBP also accepts a 2-D ``C`` (S, n_out), the same spec for every sample, and a 3-D one
    with batch 1 broadcasts: both are expanded here, so every method accepts what IBP
    accepts. Any other shape is refused with the expected one."""
    if C is None:
        return None
    if not torch.is_tensor(C):
        raise ValueError(f"C must be a tensor of shape (batch, specs, {n_out}), not {type(C).__name__}")
    expected = f"(batch{'' if batch is None else ' = ' + str(batch)}, specs, {n_out}) or (specs, {n_out})"
    if C.dim() == 2:
        C = C.unsqueeze(0)
    if C.dim() != 3 or C.shape[2] != n_out or (batch is not None and C.shape[0] not in (1, batch)):
        raise ValueError(f"C has shape {tuple(C.shape)}; expected {expected} "
                         f"(the output has {n_out} entries per sample)")
    if batch is not None and C.shape[0] != batch:
        C = C.expand(batch, -1, -1)
    _require_finite(C, "C")
    return C if dtype is None else C.to(dtype)


def _require_finite(value, what: str) -> None:
    t = torch.as_tensor(value)
    if t.is_floating_point() and not torch.isfinite(t).all():
        bad = (~torch.isfinite(t)).sum().item()
        raise ValueError(f"{what} has {bad} NaN or infinite entries")


def _show(eps: torch.Tensor):
    return eps.item() if eps.numel() == 1 else f"a tensor with {int((eps < 0).sum())} negative entries"
