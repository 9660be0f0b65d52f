"""Activations: ReLU (boxy, deepz, switch, smooth), LeakyReLU, Sigmoid, Tanh, Atan, Clip."""
from __future__ import annotations

import torch
from auto_LiRPA.operators import BoundAtan, BoundLeakyRelu, BoundRelu, BoundSigmoid, BoundTanh

from .. import hybrid_zono as hz
from ..lirpa03.clip import BoundClip, clip_limit
from .registry import register


@register(BoundRelu, reads_parts=True)
def relu(ctx, node, x):
    return ctx.elementwise(("relu", ctx.relu), lambda z: hz.relu(z, ctx.relu), x)


@register(BoundLeakyRelu)
def leaky_relu(ctx, node, x):
    """``leaky(x) = a x + (1 - a) relu(x)``: the sum of two sound enclosures over the same
    noise symbols is sound."""
    a = node.alpha
    return x.scale(a) + hz.relu(x, ctx.relu).scale(1.0 - a)


def _sigmoid_derivative(t):
    s = torch.sigmoid(t)
    return s * (1 - s)


@register(BoundSigmoid, reads_parts=True)
def sigmoid(ctx, node, x):
    return ctx.elementwise("sigmoid", lambda z: hz.s_shaped(z, torch.sigmoid, _sigmoid_derivative), x)


@register(BoundTanh, reads_parts=True)
def tanh(ctx, node, x):
    return ctx.elementwise("tanh", lambda z: hz.s_shaped(z, torch.tanh, _tanh_derivative), x)


def _tanh_derivative(t):
    return 1 - torch.tanh(t) ** 2


@register(BoundAtan, reads_parts=True)
def atan(ctx, node, x):
    """``atan`` is S-shaped like tanh (increasing, ``atan'(t) = 1 / (1 + t^2)`` unimodal)."""
    return ctx.elementwise("atan", lambda z: hz.s_shaped(z, torch.atan, _atan_derivative), x)


def _atan_derivative(t):
    return 1 / (1 + t ** 2)


@register(BoundClip)
def clip(ctx, node, x, low=None, high=None):
    """Exact where the whole range lies inside ``[low, high]``; a box elsewhere."""
    low, high = clip_limit(low), clip_limit(high)
    lower, upper = x.concretize()
    inside = torch.ones_like(lower, dtype=torch.bool)
    if low is not None:
        inside &= lower >= low
    if high is not None:
        inside &= upper <= high
    return hz.monotone_box(x, lambda t: torch.clamp(t, low, high), inside)
