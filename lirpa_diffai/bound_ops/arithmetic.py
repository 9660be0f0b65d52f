"""Add, Sub, Mul, Div, Neg: between zonotopes (rows aligned by noise symbol) or with a constant."""
from __future__ import annotations

from auto_LiRPA.operators import BoundAdd, BoundDiv, BoundMul, BoundNeg, BoundSub

from ..hybrid_zono import HybridZonotope
from .registry import register, UnsupportedOperatorError


@register(BoundAdd)
def add(ctx, node, x, y):
    return x + y if isinstance(x, HybridZonotope) else y + x


@register(BoundSub)
def sub(ctx, node, x, y):
    return x - y


@register(BoundNeg)
def neg(ctx, node, x):
    return -x


def _require_one_perturbed(node, x, y):
    if isinstance(x, HybridZonotope) and isinstance(y, HybridZonotope):
        raise UnsupportedOperatorError(
            f"hzono: node '{node.name}' ({type(node).__name__}) multiplies two perturbed values; "
            "only products with a constant are supported")


@register(BoundMul)
def mul(ctx, node, x, y):
    _require_one_perturbed(node, x, y)
    return x.scale(y) if isinstance(x, HybridZonotope) else y.scale(x)


@register(BoundDiv)
def div(ctx, node, x, y):
    _require_one_perturbed(node, x, y)
    if not isinstance(x, HybridZonotope):
        raise UnsupportedOperatorError(
            f"hzono: node '{node.name}' (Div) divides by a perturbed value")
    return x.scale(1.0 / y)
