"""Goals that draw points in the box or move the box: the paper's ``Point``, ``Normal``, ``Uniform``,
``Sub``, ``Sample`` and ``BiSample`` (Table 1) and DiffAI's ``NormalPoint``, ``PointA`` /
``PointB`` and ``InclusionSample`` (= ``InSamp``).

With ``c = (l + u) / 2`` and ``h = (u - l) / 2`` the center and half-width of the box:

===============================  ===========================================================
``Point``                        the center c; cross-entropy
``Normal``                       ``clip(c + h N(0, 1), l, u)``; cross-entropy
``Uniform``                      ``l + (u - l) U(0, 1)``; cross-entropy
``NormalPoint(w=None)``          ``c + w N(0, 1)`` (w: h when None), clipped to the data range
                                 only; cross-entropy
``PointA`` / ``PointB``          the center; given the box between two points ``(o1, o2)``
                                 (inside ``AdvDom`` / ``BiAdv``) ``o1`` / ``o2``
``Sub(delta, g)``                g on ``[c - delta h, c + delta h]``
``Sample(delta, r, gs, gt)``     ``b = CENTER(alpha_gs(Sub(1 - r delta)))``; gt on
                                 ``[b - delta h, b + delta h]`` clipped to the data range
``BiSample(g1, g2)``             ``d = |UB(alpha_g1(l, u)) - c|``; g2 on ``[c - d, c + d]``
``InclusionSample(sub, a=Box,    ``b = c + z (1 - sub) h`` with z ~ U(-1, 1) (N(0, 1) when
normal=False, w=None)``          ``normal``); a on ``[b - sub h, b + sub h]`` clipped to the
                                 data range (h: w when given)
===============================  ===========================================================

So ``InSamp(delta)`` is ``Sample(delta, 1, Uniform, Box)``, drawing the same box from the same
random numbers; with ``normal=True`` the center is ``NormalPoint`` on ``Sub(1 - delta)``
(not clipped to that box, as in DiffAI; ``Sample(delta, 1, Normal, Box)`` clips it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from .box import Box
from .core import (Goal, GoalContext, Interval, PointGoal, Reboxing, center, keyword_notation,
                   require_region, scaled_box)
from ..schedules import Schedule


@dataclass(frozen=True)
class Point(PointGoal):
    """The box's center ``(l + u) / 2``; cross-entropy."""

    def point(self, ctx, box, y, t):
        return center(box)


@dataclass(frozen=True)
class Normal(PointGoal):
    """``clip(c + (u - l) / 2 * N(0, 1), l, u)``: a normal sample around the center with the
    half-width as standard deviation, clipped to the box; cross-entropy."""

    def point(self, ctx, box, y, t):
        l, u = box
        p = center(box) + (u - l) / 2 * torch.randn_like(l)
        return torch.maximum(torch.minimum(p, u), l)


@dataclass(frozen=True)
class Uniform(PointGoal):
    """``l + (u - l) * U(0, 1)``: a uniform sample in the box; cross-entropy."""

    def point(self, ctx, box, y, t):
        l, u = box
        return l + (u - l) * torch.rand_like(l)


@dataclass(frozen=True)
class NormalPoint(PointGoal):
    """DiffAI's ``NormalPoint(w)``: ``c + w N(0, 1)`` with w the box's half-width ``(u - l)
    / 2`` when not given; not clipped to the box (a normal has no bound), only to the data
    range; cross-entropy."""

    w: Radius = None

    def __str__(self) -> str:
        return keyword_notation(self)

    def point(self, ctx, box, y, t):
        l, u = box
        std = (u - l) / 2 if self.w is None else self.value(self.w, t, "w")
        return ctx.clip(center(box) + std * torch.randn_like(l))


class EndPoint(PointGoal):
    """DiffAI's ``PointA`` / ``PointB``: the center of a box; one of the two points when
    given the box between two points (``AdvDom``: the original / the attack point; ``BiAdv``:
    the lower / upper corner)."""

    end: ClassVar[int]

    def point(self, ctx, box, y, t):
        return center(box)

    def region_between(self, ctx, ends, y, t):
        return ends[self.end], ends[self.end]

    def loss_between(self, ctx, ends, y, t):
        return F.cross_entropy(ctx.model(ends[self.end]), y)


@dataclass(frozen=True)
class PointA(EndPoint):
    """The center of a box; ``o1`` of the box between ``(o1, o2)``; cross-entropy."""

    end = 0


@dataclass(frozen=True)
class PointB(EndPoint):
    """The center of a box; ``o2`` of the box between ``(o1, o2)``; cross-entropy."""

    end = 1


@dataclass(frozen=True)
class Sub(Reboxing):
    """``alpha_g(0.5 (u + l - delta (u - l)), 0.5 (u + l + delta (u - l)))``: g on the box
    scaled by ``delta`` around its center; g's loss."""

    delta: Schedule
    g: Goal

    def inner(self):
        return self.g

    def new_box(self, ctx, box, y, t):
        return scaled_box(box, center(box), self.delta(t))


def sampled_box(ctx: GoalContext, box: Interval, y, t: float, delta: float, r: float,
                gs: Goal) -> Interval:
    """``[b - delta (u - l) / 2, b + delta (u - l) / 2]`` clipped to the data range, with
    ``b = CENTER(alpha_gs(Sub(1 - r delta)))`` (Table 1's Sample)."""
    sampled = gs.region(ctx, scaled_box(box, center(box), 1 - r * delta), y, t)
    lo, hi = scaled_box(box, center(sampled), delta)
    return ctx.clip(lo), ctx.clip(hi)


@dataclass(frozen=True)
class Sample(Reboxing):
    """``alpha_gt(b - 0.5 delta (u - l), b + 0.5 delta (u - l))`` with
    ``b = CENTER(alpha_gs on Sub(1 - r delta))``, clipped to the data range; gt's loss."""

    delta: Schedule
    r: Schedule
    gs: Goal
    gt: Goal

    def __post_init__(self):
        super().__post_init__()
        require_region(self.gs, "Sample", "gs")

    def inner(self):
        return self.gt

    def new_box(self, ctx, box, y, t):
        return sampled_box(ctx, box, y, t, self.delta(t), self.r(t), self.gs)


def mirrored_ends(ctx: GoalContext, box: Interval, y, t: float, g: Goal) -> Interval:
    """``(c - d, c + d)`` clipped to the data range, ``c = (l + u) / 2``,
    ``d = |UB(alpha_g(l, u)) - c|`` (Table 1's BiSample)."""
    c = center(box)
    d = (g.region(ctx, box, y, t)[1] - c).abs()
    return ctx.clip(c - d), ctx.clip(c + d)


@dataclass(frozen=True)
class BiSample(Reboxing):
    """``alpha_g2(c - d, c + d)`` with ``c = (l + u) / 2`` and ``d = |UB(alpha_g1(l, u)) - c|``
    (clipped to the data range); g2's loss."""

    g1: Goal
    g2: Goal

    def __post_init__(self):
        super().__post_init__()
        require_region(self.g1, "BiSample", "g1")

    def inner(self):
        return self.g2

    def new_box(self, ctx, box, y, t):
        return mirrored_ends(ctx, box, y, t, self.g1)


@dataclass(frozen=True)
class InclusionSample(Reboxing):
    """DiffAI's inclusion sampling ``InclusionSample(sub, a=Box, normal=False, w=None)``
    (= ``InSamp``): ``b = c + z (1 - sub) h``, z uniform in [-1, 1] (standard normal when
    ``normal``), h the half-width (w when given); a on ``[b - sub h, b + sub h]`` clipped to
    the data range; a's loss. ``sub`` in [0, 1]; ``sub`` and ``w`` may be schedules."""

    sub: Fraction
    a: Goal = Box()
    normal: bool = False
    w: Radius = None

    def __str__(self) -> str:
        return keyword_notation(self, positional=1)

    def inner(self):
        return self.a

    def new_box(self, ctx, box, y, t):
        source = NormalPoint() if self.normal else Uniform()
        sub = self.value(self.sub, t, "sub", high=1)
        return sampled_box(ctx, self.resized(ctx, box, self.w, t), y, t, sub, 1.0, source)
