"""Operators that move, select or pad elements: Reshape, Flatten, (Un)Squeeze, Transpose,
Slice, Concat, Pad, Shape. Each is linear with 0/1 coefficients, so the node's own concrete
``forward`` maps every part of the zonotope (per error row through ``torch.vmap``)."""
from __future__ import annotations

from functools import partial

import torch
from auto_LiRPA.operators import (BoundConcat, BoundFlatten, BoundPad, BoundReshape, BoundShape,
                                  BoundSlice, BoundSqueeze, BoundTranspose, BoundUnsqueeze)

from .. import hybrid_zono as hz
from ..hybrid_zono import HybridZonotope
from .registry import Concatenation, is_perturbed, joined, register


@register(BoundReshape, BoundFlatten, BoundSqueeze, BoundUnsqueeze, BoundTranspose, BoundSlice)
def move_elements(ctx, node, x, *constants):
    return x.map_batched(lambda t: node.forward(t, *constants))


@register(BoundConcat, reads_parts=True)
def concat(ctx, node, *inputs):
    """A lazy :class:`Concatenation` of the inputs (constants become points). Along the batch
    axis the samples move, so each input's rows go into ``beta`` first (see
    ``HybridZonotope.map_batched``) and the boxes are joined at once."""
    values = [v if is_perturbed(v) else HybridZonotope.from_point(v) for v in inputs]
    axis = node.axis if node.axis >= 0 else node.axis + len(values[0].shape)
    if axis == 0:
        boxes = [joined(v).decorrelate_all() for v in values]
        return hz.concat(boxes, partial(torch.cat, dim=0))
    return Concatenation.of(values, axis)


@register(BoundPad)
def pad(ctx, node, x, pads, value=0.0):
    """Constant padding: the head is padded with ``value``, generators and beta with 0."""
    padded = x.map_batched(lambda t: node.forward(t, pads, 0.0))
    return padded.shift(node.forward(torch.zeros_like(x.head), pads, value))


@register(BoundShape)
def shape(ctx, node, x):
    return node.forward(x.head)
