"""Operators that move, select, copy or pad elements: Reshape, Flatten, (Un)Squeeze, Transpose,
Slice, Split, Gather, Expand, Identity, Concat, Pad, Shape. Each is linear with 0/1
coefficients (a constant index map ``y = J x``), so the node's own concrete ``forward`` maps
every part of the zonotope exactly: the center, each error row (through ``torch.vmap``) and
the box part ``beta`` (``|J| = J``)."""
from __future__ import annotations

from functools import partial

import torch
from auto_LiRPA.operators import (BoundConcat, BoundExpand, BoundFlatten, BoundGather, BoundIdentity,
                                  BoundPad, BoundReshape, BoundShape, BoundSlice, BoundSplit,
                                  BoundSqueeze, BoundTranspose, BoundUnsqueeze)

from .. import hybrid_zono as hz
from ..hybrid_zono import HybridZonotope
from .registry import Concatenation, is_perturbed, joined, register


@register(BoundReshape, BoundFlatten, BoundSqueeze, BoundUnsqueeze, BoundTranspose, BoundSlice, BoundSplit,
          BoundGather)
def move_elements(ctx, node, x, *constants):
    """The index map ``J`` (reshape, transpose, slice, one part of a split, a gather with
    constant indices, negative ones too) on the center, each error row and ``beta``: exact."""
    return x.map_batched(lambda t: node.forward(t, *constants))


@register(BoundExpand)
def expand(ctx, node, x, shape):
    """``x.expand(shape)``: each element of a size-1 axis copied (``J`` a 0/1 copy matrix), on
    the center, each error row and ``beta``: exact (copies of one element share its symbols)."""
    sizes = [int(s) for s in shape]
    return x.map_batched(lambda t: node.forward(t, torch.tensor(sizes)))


@register(BoundIdentity, reads_parts=True)
def identity(ctx, node, x):
    """The identity: the value itself (a lazy concatenation stays one)."""
    return x


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
