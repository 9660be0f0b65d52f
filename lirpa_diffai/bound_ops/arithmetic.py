"""Add, Sub, Mul, Neg: between zonotopes (rows aligned by noise symbol) or with a constant
(Mul also of two zonotopes); Dropout, a product with its mask (Div: :mod:`.elementary`).

A constant may have a larger shape than the perturbed value (``x + pos`` with ``x`` (B, 1, D),
``pos`` (1, T, D)): the result is broadcast, ``beta`` and the rows with ``head``. A constant
with more axes than the perturbed value would put a new axis in front of the batch axis; such
a node is refused."""
from __future__ import annotations

import torch
from auto_LiRPA.operators import BoundAdd, BoundDropout, BoundMul, BoundNeg, BoundSub

from .. import hybrid_zono as hz
from ..hybrid_zono import HybridZonotope
from .registry import register, UnsupportedOperatorError


def require_batch_axis_kept(node, x, y):
    """Refuse operands whose broadcast would add leading axes to a perturbed value."""
    ranks = [v.head.dim() if isinstance(v, HybridZonotope) else torch.as_tensor(v).dim() for v in (x, y)]
    perturbed = [v.head.dim() for v in (x, y) if isinstance(v, HybridZonotope)]
    if max(ranks) > min(perturbed):
        raise UnsupportedOperatorError(
            f"hzono: node '{node.name}' ({type(node).__name__}) broadcasts a perturbed value of "
            f"rank {min(perturbed)} with an operand of rank {max(ranks)}: the new leading axes "
            "would move the batch axis")


@register(BoundAdd)
def add(ctx, node, x, y):
    require_batch_axis_kept(node, x, y)
    return x + y if isinstance(x, HybridZonotope) else y + x


@register(BoundSub)
def sub(ctx, node, x, y):
    require_batch_axis_kept(node, x, y)
    return x - y


@register(BoundNeg)
def neg(ctx, node, x):
    return -x


@register(BoundMul)
def mul(ctx, node, x, y):
    """With a constant: ``scale``; of two perturbed values (a gate ``x * sigmoid(s)``):
    :func:`~lirpa_diffai.hybrid_zono.product`."""
    require_batch_axis_kept(node, x, y)
    if isinstance(x, HybridZonotope) and isinstance(y, HybridZonotope):
        return hz.product(x, y)
    return x.scale(y) if isinstance(x, HybridZonotope) else y.scale(x)


@register(BoundDropout)
def dropout(ctx, node, x, *constants):
    """The identity in eval mode. In training mode, as auto_LiRPA's IBP and CROWN do, the
    function bounded is the one the last forward pass drew: ``x * mask / (1 - ratio)`` with
    that pass's ``mask``, which must belong to the batch being bounded."""
    if not node.training:
        return x
    mask = node.mask
    if mask is None or tuple(mask.shape) != tuple(x.shape):
        drawn = "no forward pass drew its mask" if mask is None else f"its mask has shape {tuple(mask.shape)}"
        raise UnsupportedOperatorError(
            f"hzono: node '{node.name}' (Dropout) in training mode bounds the network with the "
            f"dropout mask of the last forward pass, but {drawn} for inputs of shape "
            f"{tuple(x.shape)}; call the BoundedModule on this batch first")
    return x.scale(mask.to(x.head.dtype) / (1 - node.ratio))
