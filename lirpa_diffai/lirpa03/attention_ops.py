"""Softmax as one graph node and a sound relaxation of ``ReduceMax`` (the two non-linear
pieces of attention besides the product of two perturbed values), for every method;
:mod:`.fixes_attention` installs them.

Softmax follows DeepT (Bonaert et al., PLDI 2021, section 5): written over the differences
of its arguments,

    softmax(x)_i = 1 / sum_j exp(x_j - x_i),

it is decreasing in each ``x_j - x_i`` (``j != i``; the term ``j = i`` is exactly 1), so with
``d_ij in [lo_ij, hi_ij]``

    1 / sum_j exp(hi_ij)  <=  softmax(x)_i  <=  1 / sum_j exp(lo_ij),

each computed as ``exp(-logsumexp_j(d_ij))``: where ``exp(d_ij)`` overflows, ``1 / sum`` has
the value 0 but the gradient ``0 * inf`` = NaN, which DiffAI's training would take.

From intervals of the arguments alone ``lo_ij = l_j - u_i`` and ``hi_ij = u_j - l_i``, and
the sums separate: with ``LSE_{j != i}`` the log-sum-exp that leaves out ``i``,

    sigmoid(l_i - LSE_{j != i} u_j)  <=  softmax(x)_i  <=  sigmoid(u_i - LSE_{j != i} l_j),

``n`` operations per row instead of ``n^2`` (:func:`softmax_interval`). A domain that keeps
correlations (hzono) bounds ``x_j - x_i`` itself, more tightly. Exact when the arguments are
points; ``exp`` overflowing to ``inf`` gives the sound limit 0, never NaN.
"""
from __future__ import annotations

import torch
from auto_LiRPA.operators import Bound

from .fixes_linear import dense_pair


def softmax_from_differences(low, high):
    """``(lower, upper)`` of ``softmax`` along the last axis of the arguments from bounds of
    their differences: ``low``, ``high`` (..., n, n) with ``[..., i, j]`` bounding
    ``x_j - x_i`` (the diagonal is taken as exactly 0)."""
    eye = torch.eye(low.shape[-1], dtype=torch.bool, device=low.device)
    zero = torch.zeros((), dtype=low.dtype, device=low.device)
    low, high = torch.where(eye, zero, low), torch.where(eye, zero, high)
    return (-high.logsumexp(-1)).exp(), (-low.logsumexp(-1)).exp()


def logsumexp_leaving_out(t: torch.Tensor) -> torch.Tensor:
    """``out_i = log sum_{j != i} exp(t_j)`` along the last axis (``-inf`` where nothing is
    left). Each sum is shifted by the largest term it holds, ``max_{j != i} t_j`` (the row's
    maximum, or its second largest value at the maximum's place), so it is at least 1 and
    no term that matters underflows; the sums leaving ``i`` out are running sums before and
    after ``i`` (sums of positive terms: no ``S - exp(t_i)``, whose cancellation would lose the
    small sums that the bounds need)."""
    finite = torch.finfo(t.dtype).max
    t = t.clamp(-finite, finite)   # +-inf bounds: the same limits, no inf - inf
    top, where = t.detach().topk(2, dim=-1)
    first, second = top[..., :1], top[..., 1:]
    is_max = torch.zeros_like(t, dtype=torch.bool).scatter_(-1, where[..., :1], True)
    shifted = (t - first).exp()
    zero = torch.zeros_like(shifted[..., :1])
    before = torch.cat([zero, shifted.cumsum(-1)[..., :-1]], -1)
    after = torch.cat([shifted.flip(-1).cumsum(-1).flip(-1)[..., 1:], zero], -1)
    # each branch finite where the other is taken, or its gradient there is 0 * inf = NaN
    others = first + (before + after).clamp_min(torch.finfo(t.dtype).tiny).log()
    at_max = second + (t.masked_fill(is_max, -torch.inf) - second).exp().sum(-1, keepdim=True).log()
    return torch.where(is_max, at_max, others)


def softmax_interval(lower, upper, axis: int):
    """``(lower, upper)`` of ``softmax(x, axis)`` for ``x`` in the box ``[lower, upper]``:
    ``sigmoid(l_i - LSE_{j != i} u_j)`` and ``sigmoid(u_i - LSE_{j != i} l_j)`` (the bounds of
    the differences ``lo_ij = l_j - u_i``, ``hi_ij = u_j - l_i`` in the module docstring's
    formula, summed in ``n`` operations per row)."""
    lower, upper = lower.movedim(axis, -1), upper.movedim(axis, -1)
    if lower.shape[-1] == 1:  # softmax of one element is 1 (and logaddexp(-inf, -inf)'s gradient NaN)
        ones = torch.ones_like(lower)
        return ones.movedim(-1, axis), ones.movedim(-1, axis)
    out_lower = torch.sigmoid(lower - logsumexp_leaving_out(upper))
    out_upper = torch.sigmoid(upper - logsumexp_leaving_out(lower))
    return out_lower.movedim(-1, axis), out_upper.movedim(-1, axis)


class BoundSoftmaxWhole(Bound):
    """ONNX ``Softmax(axis)`` as one node (auto_LiRPA 0.3 splits it into ``exp(x - max(x)) /
    sum``, whose ``ReduceMax`` the CROWN family cannot bound). IBP takes
    :func:`softmax_interval`; the CROWN family takes the same interval as constant linear
    bounds (slope 0), so the nodes before the softmax keep their linear bounds."""

    def __init__(self, attr, inputs, output_index, options):
        super().__init__(attr, inputs, output_index, options)
        self.axis = int(attr["axis"])
        self.requires_input_bounds = [0]

    def forward(self, x):
        return torch.softmax(x, dim=self.axis)

    def interval_propagate(self, *v):
        return softmax_interval(*v[0], self.axis)

    def bound_backward(self, last_lA, last_uA, x):
        last_lA, last_uA = dense_pair(self, last_lA, last_uA)
        lower, upper = softmax_interval(x.lower, x.upper, self.axis)
        return [(None, None)], constant_bias(last_lA, lower, upper), constant_bias(last_uA, upper, lower)

    def infer_batch_dim(self, batch_size, *x):
        if self.axis in (0, -len(self.output_shape)):
            raise NotImplementedError(f"graph node '{self.name}' (operator Softmax) normalises along "
                                      "the batch axis, which mixes samples")
        return x[0]


def constant_bias(last_A, toward, away):
    """The bias of the constant bounds ``away <= y <= toward`` (or reversed) under the
    coefficients ``last_A`` (S, B, *shape): ``pos(A) toward + neg(A) away`` summed per spec
    row; for a lower bound pass ``(lower, upper)``, for an upper bound ``(upper, lower)``."""
    if last_A is None:
        return 0
    return (last_A.clamp(min=0) * toward + last_A.clamp(max=0) * away).flatten(2).sum(-1)


def reduce_max_relaxation(lower, upper, axis: int):
    """The linear bounds of ``y = max_i x_i`` along ``axis`` on the box ``[lower, upper]``,
    per reduced row: with ``j`` the element of largest lower bound,

        x_j <= y <= x_j                 where x_j dominates (l_j >= u_i for every i != j),
        x_j <= y <= max_i u_i           elsewhere.

    Returns ``(index, dominated, top)``: ``j`` and the dominance mask (kept dims, size 1 on
    ``axis``) and ``max_i u_i``. At a point (``l = u``) the argmax dominates: exact."""
    index = lower.argmax(axis, keepdim=True)
    others = upper.scatter(axis, index, torch.full_like(upper, -torch.inf))
    dominated = lower.gather(axis, index) >= others.amax(axis, keepdim=True)
    return index, dominated, upper.amax(axis, keepdim=True)


def reduce_max_backward(node, last_lA, last_uA, x):
    """CROWN's step through ``ReduceMax`` with :func:`reduce_max_relaxation`: a coefficient
    meets the lower line ``x_j`` where it is positive in a lower bound (negative in an upper
    one), else the upper line, ``x_j`` or the constant ``max_i u_i``."""
    last_lA, last_uA = dense_pair(node, last_lA, last_uA)
    axis = node.make_axis_non_negative(node.axis)
    index, dominated, top = reduce_max_relaxation(x.lower, x.upper, axis)
    dominated = dominated.to(x.lower.dtype)

    def one_side(last_A, sign):
        if last_A is None:
            return None, 0
        if not node.keepdim:
            last_A = last_A.unsqueeze(axis + 1)
        toward_lower = last_A.clamp(min=0) if sign > 0 else last_A.clamp(max=0)
        toward_upper = last_A - toward_lower
        on_x = toward_lower + toward_upper * dominated
        A = torch.zeros(last_A.shape[:2] + x.lower.shape[1:], dtype=last_A.dtype, device=last_A.device)
        A.scatter_(axis + 1, index.unsqueeze(0).expand_as(on_x), on_x)
        bias = (toward_upper * (1 - dominated) * top).flatten(2).sum(-1)
        return A, bias

    lA, lbias = one_side(last_lA, 1)
    uA, ubias = one_side(last_uA, -1)
    return [(lA, uA)], lbias, ubias
