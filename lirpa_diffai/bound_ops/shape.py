"""Operators that move, select or pad elements: Reshape, Flatten, (Un)Squeeze, Transpose,
Slice, Concat, Pad, Shape. Each is linear with 0/1 coefficients, so the node's own concrete
``forward`` maps every part of the zonotope (per error row through ``torch.vmap``)."""
from __future__ import annotations

from functools import partial

import torch
from auto_LiRPA.operators import (BoundConcat, BoundFlatten, BoundPad, BoundReshape, BoundShape,
                                  BoundSlice, BoundSqueeze, BoundTranspose, BoundUnsqueeze)

from ..hybrid_zono import HybridZonotope, concat as concat_zonos
from .registry import register, UnsupportedOperatorError


@register(BoundReshape, BoundFlatten, BoundSqueeze, BoundUnsqueeze, BoundTranspose, BoundSlice)
def move_elements(ctx, node, x, *constants):
    return x.map_batched(lambda t: node.forward(t, *constants))


@register(BoundConcat)
def concat(ctx, node, *inputs):
    zonos = [v if isinstance(v, HybridZonotope) else HybridZonotope.from_point(v) for v in inputs]
    axis = node.axis if node.axis >= 0 else node.axis + zonos[0].head.dim()
    if axis == 0:
        raise UnsupportedOperatorError(f"hzono: graph node '{node.name}' (Concat) joins perturbed "
                                       "values along the batch axis; only other axes are supported")
    return ctx.record_concatenation(concat_zonos(zonos, partial(torch.cat, dim=axis)), axis, zonos)


@register(BoundPad)
def pad(ctx, node, x, pads, value=0.0):
    """Constant padding: the head is padded with ``value``, generators and beta with 0."""
    padded = x.map_batched(lambda t: node.forward(t, pads, 0.0))
    return padded.shift(node.forward(torch.zeros_like(x.head), pads, value))


@register(BoundShape)
def shape(ctx, node, x):
    return node.forward(x.head)
