"""The Maximum Margin Regularizer (Croce, Andriushchenko, Hein, AISTATS 2019, eq. (4)) on the
exact region distances of :mod:`lirpa_diffai.mmr.regions`::

    MMR(x) = 1/k_B  sum_{j in the k_B smallest d_B} max(0, 1 - d_B(j) / gamma_B)
           + 1/k_D  sum_{c in the k_D smallest d_D} max(0, 1 - d_D(c) / gamma_D)

``k`` is a count (``k >= 1``, at most the number of candidates) or a fraction of the
candidates (``0 < k < 1``: ``max(1, floor(k * n))``, as the reference's "10% of the hidden
units"). d_D has one column per class with ``+inf`` at the true class, so ``k_D = K`` (the
reference's choice) averages over the K - 1 other classes and a zero. Ties among the k
smallest are broken by column order (a stable sort); tied values contribute equally anyway.
"""
from __future__ import annotations

import math

import torch

from .regions import RegionError, norm_key, region_distances

Tensor = torch.Tensor


def check_gamma(gamma: float, name: str) -> float:
    """``gamma`` if it is a finite number > 0, else a :class:`RegionError`."""
    if not (isinstance(gamma, (int, float)) and math.isfinite(gamma) and gamma > 0):
        raise RegionError(f"{name} must be > 0 (a distance in the input's l_p norm), got {gamma!r}")
    return float(gamma)


def check_k(k: float, name: str) -> None:
    """A :class:`RegionError` unless ``k`` is a fraction in (0, 1) or a whole count >= 1."""
    if not (isinstance(k, (int, float)) and math.isfinite(k) and k > 0
            and (k < 1 or float(k).is_integer())):
        raise RegionError(f"{name} must be a fraction in (0, 1) or a whole count >= 1, got {k!r}")


def resolve_k(k: float, n: int, name: str, what: str) -> int:
    """The number of smallest distances ``k`` stands for among ``n`` candidates (``what``
    names them in the error for a count above ``n``)."""
    check_k(k, name)
    if k < 1:
        return max(1, math.floor(k * n))
    if k > n:
        raise RegionError(f"{name} = {int(k)} but the network has only {n} {what}")
    return int(k)


def hinge_of_smallest(d: Tensor, k: int, gamma: float) -> Tensor:
    """Per sample, ``(1/k) sum over the k smallest d of max(0, 1 - d / gamma)``: (B,)."""
    smallest = torch.sort(d, dim=1, stable=True).values[:, :k]
    return (1 - smallest / gamma).clamp_min(0).sum(1) / k


def mmr_terms(d_b: Tensor, d_d: Tensor, *, gamma_b: float, gamma_d: float, k_b: float,
              k_d: float) -> Tensor:
    """MMR(x) per sample, (B,), from the distances of :func:`region_distances`."""
    gamma_b, gamma_d = check_gamma(gamma_b, "gamma_b"), check_gamma(gamma_d, "gamma_d")
    kb = resolve_k(k_b, d_b.shape[1], "k_b", "ReLU inputs (hidden pre-activations)")
    kd = resolve_k(k_d, d_d.shape[1], "k_d", "classes")
    return hinge_of_smallest(d_b, kb, gamma_b) + hinge_of_smallest(d_d, kd, gamma_d)


def check_arguments(gamma_b, gamma_d, k_b, k_d, p) -> None:
    """The argument checks of :func:`mmr_loss` that need no network."""
    check_gamma(gamma_b, "gamma_b")
    check_gamma(gamma_d, "gamma_d")
    check_k(k_b, "k_b")
    check_k(k_d, "k_d")
    norm_key(p)


def mmr_loss(model, x: Tensor, y: Tensor, *, gamma_b: float, gamma_d: float, k_b: float,
             k_d: float, p="inf", chunk: int | None = None) -> Tensor:
    """The batch mean of MMR(x) (see the module docstring) for the network ``model`` (an
    ``nn.Module`` or a ``lirpa_diffai.BoundedModule``) at the points ``x`` with labels ``y``,
    in the l_p norm ``p`` (``"inf"`` or ``2``). Differentiable in the weights."""
    check_arguments(gamma_b, gamma_d, k_b, k_d, p)
    d_b, d_d = region_distances(model, x, y, p, chunk)
    return mmr_terms(d_b, d_d, gamma_b=gamma_b, gamma_d=gamma_d, k_b=k_b, k_d=k_d).mean()
