"""hzono transformers of attention's non-linear pieces besides the product of two perturbed
values (``MatMul``, :func:`~lirpa_diffai.hybrid_zono.product`): softmax and ``ReduceMax``
(Bound classes and relaxations in :mod:`lirpa_diffai.lirpa03.attention_ops`)."""
from __future__ import annotations

import torch
from auto_LiRPA.operators import BoundReduceMax

from ..hybrid_zono import HybridZonotope
from ..lirpa03.attention_ops import (BoundSoftmaxWhole, reduce_max_relaxation, softmax_from_differences,
                                     softmax_interval)
from .registry import register


def pairwise_differences(t: torch.Tensor, axis: int) -> torch.Tensor:
    """``d[..., i, j] = t_j - t_i`` over the elements along ``axis`` (moved to the end)."""
    t = t.movedim(axis, -1)
    return t.unsqueeze(-2) - t.unsqueeze(-1)


def difference_bounds(z: HybridZonotope, axis: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Interval bounds of the zonotope of the differences ``x_j - x_i`` along ``axis``: the
    head's differences, plus or minus ``beta_i + beta_j + sum_r |e_rj - e_ri|`` (rows map
    exactly, so shared symbols cancel). The row sum is the L1 distance between the elements'
    rows (``torch.cdist``), so the difference zonotope itself is never held."""
    center = pairwise_differences(z.head, axis)
    beta = z.beta.movedim(axis, -1)
    radius = beta.unsqueeze(-2) + beta.unsqueeze(-1)
    if z.errors is not None:
        rows = z.errors.movedim(axis + 1, -1).movedim(0, -1)      # (..., n, rows)
        flat = rows.reshape(-1, *rows.shape[-2:])
        radius = radius + torch.cdist(flat, flat, p=1).reshape(radius.shape)
    return center - radius, center + radius


def softmax_pairwise(z: HybridZonotope, axis: int) -> HybridZonotope:
    """DeepT's softmax (Bonaert et al., PLDI 2021), ``softmax(x)_i = 1 / sum_j exp(x_j - x_i)``,
    with the differences ``x_j - x_i`` bounded as a zonotope (:func:`difference_bounds`) and
    ``exp`` and the reciprocal (monotone) taken as their exact interval images: the result is
    the box ``[1 / sum_j exp(hi_ij), 1 / sum_j exp(lo_ij)]``, exact at a point. Cost: ``n``
    times the elements of ``z`` per row (``n`` the softmax axis's size)."""
    lower, upper = softmax_from_differences(*difference_bounds(z, axis))
    return HybridZonotope.from_box(lower.movedim(-1, axis), upper.movedim(-1, axis))


def shifted_radius(z: HybridZonotope, axis: int) -> torch.Tensor:
    """The radius of ``x - s`` for the shift ``s = sum_r m_r eps_r`` common to a softmax row,
    ``m_r`` the mean along ``axis`` of the row's coefficients of symbol ``r``:
    ``beta_j + sum_r |e_rj - m_r|``. (The median would make the sum over ``j`` least, at
    several times the cost of the whole bound.)"""
    return z.beta + (z.errors - z.errors.mean(dim=axis + 1, keepdim=True)).abs().sum(0)


def softmax_shifted(z: HybridZonotope, axis: int) -> HybridZonotope:
    """Softmax bounded in ``n`` operations per row: softmax is invariant to a shift common to
    its row, ``softmax(x) = softmax(x - s)``, so the interval bound of ``softmax`` (closed
    form, :func:`~lirpa_diffai.lirpa03.attention_ops.softmax_interval`) on the box of
    ``x - s`` (:func:`shifted_radius`) holds, as does the one on the box of ``x``; the result
    is their intersection. The symbols that every element of a row shares (a token's common
    offset in attention) cancel as in DeepT's differences, the rest count twice at worst
    (``|e_j - e_i| <= |e_j - m| + |e_i - m|``), and the box of ``x`` keeps the result within
    the interval bound when the rows share little; exact at a point."""
    lower, upper = softmax_interval(*z.concretize(), axis)
    if z.errors is not None:
        radius = shifted_radius(z, axis)
        shifted_lower, shifted_upper = softmax_interval(z.head - radius, z.head + radius, axis)
        lower, upper = torch.maximum(lower, shifted_lower), torch.minimum(upper, shifted_upper)
    return HybridZonotope.from_box(lower, upper)


SOFTMAX_BOUNDS = {"shifted": softmax_shifted, "pairwise": softmax_pairwise}


@register(BoundSoftmaxWhole)
def softmax(ctx, node, x):
    return SOFTMAX_BOUNDS[ctx.softmax](x, node.axis % x.head.dim())


def reduce_max_zonotope(z: HybridZonotope, axis: int) -> HybridZonotope:
    """``max`` along ``axis`` (kept, size 1) of :func:`reduce_max_relaxation`: where the element
    ``j`` of largest lower bound dominates the others (``l_j >= u_i``) the maximum is ``x_j``,
    its rows kept; elsewhere the box ``[max_i l_i, max_i u_i]`` (no rows). Exact at a point."""
    lower, upper = z.concretize()
    index, dominated, top = reduce_max_relaxation(lower, upper, axis)
    chosen = z.map_batched(lambda t: t.gather(axis, index))
    floor = lower.gather(axis, index)
    errors = None if chosen.errors is None else chosen.errors * dominated
    return HybridZonotope(torch.where(dominated, chosen.head, (top + floor) / 2),
                          torch.where(dominated, chosen.beta, (top - floor) / 2), errors, chosen.ids)


@register(BoundReduceMax)
def reduce_max(ctx, node, x):
    axis = node.make_axis_non_negative(node.axis)
    out = reduce_max_zonotope(x, axis)
    return out if node.keepdim else out.map_batched(lambda t: t.squeeze(axis))
