"""Pooling and reductions: AveragePool, GlobalAveragePool, AdaptiveAvgPool2d, ReduceMean,
ReduceSum (linear with coefficients >= 0) and MaxPool (sound interval enclosure)."""
from __future__ import annotations

import torch.nn.functional as F
from auto_LiRPA.operators import (BoundAveragePool, BoundGlobalAveragePool, BoundMaxPool,
                                  BoundReduceMean, BoundReduceSum)

from ..hybrid_zono import HybridZonotope
from ..lirpa03.adaptive_pool import BoundAdaptiveAvgPool2d
from .registry import register


@register(BoundAveragePool, BoundGlobalAveragePool, BoundAdaptiveAvgPool2d)
def average_pool(ctx, node, x):
    """An average pool (adaptive ones with uneven, overlapping windows too) is ``P x`` with a
    fixed averaging matrix ``P >= 0``: ``P`` on the center, each row and ``beta``, exact."""
    return x.linear_map(node.forward)


@register(BoundReduceMean, BoundReduceSum)
def reduce(ctx, node, x):
    return x.map_batched(node.forward)


@register(BoundMaxPool)
def max_pool(ctx, node, x):
    """``max`` is non-decreasing in every argument: ``[maxpool(l), maxpool(u)]`` encloses it."""
    def pool(t):
        return F.max_pool2d(t, node.kernel_size, node.stride, node.padding, node.dilation, ceil_mode=node.ceil_mode)
    lower, upper = x.concretize()
    return HybridZonotope.from_box(pool(lower), pool(upper))
