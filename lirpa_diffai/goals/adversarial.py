"""DiffAI's adversarial goals: the attack family ``MI_FGSM`` / ``PGD`` / ``IFGSM`` (the
paper's ``IFGSMk``) and the goals built on an attack, ``NormalAdv``, ``AdvInclusion``,
``AdvDom`` and ``BiAdv``.

The attacks (DiffAI's ``MI_FGSM.attack``), on the box with center c and half-width
``h = (u - l) / 2`` (``h = w`` with ``w`` given: the box ``[c - w, c + w]`` clipped to the
data range), from ``x_0 = c`` and ``g_0 = 0``, for ``i < k``::

    x_i   <- a uniform point of the box, at i = 0, k/R, 2k/R, ... (R = restart restarts;
             only samples still classified correctly, when should_end)
    g_i+1 =  mu g_i + grad_x CE(x_i) / ||grad_x CE(x_i)||_1      (L1 norm over the batch)
    x_i+1 =  clip(x_i + (r h / k) mysign(g_i+1), l, u)           (mysign(0) = +1)

where, with ``should_end``, a sample whose ``x_i`` the model misclassifies does not move.
Cross-entropy on ``x_k``. ``PGD`` is ``mu = 0``; ``IFGSM`` is ``mu = 0, r = 1`` (steps of
``(u - l) / (2k)``). Only the input is differentiated; the forward passes run in the model's
current mode (a BatchNorm in training mode updates its statistics, as in DiffAI).

=====================================  ====================================================
``MI_FGSM(w=None, r=20, k=100,         the attack above (defaults: DiffAI's)
mu=0.8, should_end=True,
restart=None)``
``PGD(k=5, r=5, w, restart,            ``mu = 0``; Madry et al.'s PGD is
should_end)``                          ``PGD(k, r=2, restart=1, should_end=False)``
``IFGSM(k=5, w, restart,               ``mu = 0, r = 1``; ``IFGSMk`` = ``IFGSM(k)``
should_end)``
``NormalAdv(a=IFGSM, w=None)``         a on ``[c - |z| h, c + |z| h]`` (clipped), z ~ N(0, 1)
                                       drawn once per batch
``AdvInclusion(sub, a=IFGSM, b=Box,    ``Sample(sub, 1, a, b)``: b on the box of half-width
w=None)``                              ``sub h`` around a's point on ``Sub(1 - sub)``
``AdvDom(a=IFGSM, b=Box)``             b on the box between c and a's point m (``PointA``:
                                       c, ``PointB``: m)
``BiAdv(a=IFGSM, b=Box)``              b on the box between ``c -+ |m - c|``: BiSample(a, b)
=====================================  ====================================================

Two departures from DiffAI's code: its restart draws ``c + h U(0, 1)`` (one-sided; here the
whole box, as Madry et al.), and its ``NormalAdv`` radius ``z w`` may be negative (here
``|z| w``). Points stay in the data range (DiffAI does not clip).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .box import Box
from .core import (Goal, GoalContext, Interval, PointGoal, Reboxing, center, keyword_notation,
                   require_region)
from .sampling import mirrored_ends, sampled_box


def mysign(g: Tensor) -> Tensor:
    """DiffAI's sign: ``sign(g)`` with ``mysign(0) = +1``."""
    return torch.where(g >= 0, 1.0, -1.0).to(g.dtype)


def attack_point(ctx: GoalContext, box: Interval, y: Tensor, k: int, r: float, mu: float,
                 should_end: bool, restart: int | None) -> Tensor:
    """The point DiffAI's momentum attack reaches in ``box`` (module docstring)."""
    l, u = (b.detach() for b in box)
    step = r * (u - l) / (2 * k)
    x, momentum = center((l, u)), torch.zeros_like(l)
    moving = torch.ones(len(x), dtype=torch.bool, device=x.device)
    period = k // restart if restart else 0

    def per_sample(mask):
        return mask.view(-1, *[1] * (x.dim() - 1))
    for i in range(k):
        if period and i % period == 0:
            x = torch.where(per_sample(moving), l + (u - l) * torch.rand_like(l), x)
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            out = ctx.model(x)
            grad, = torch.autograd.grad(F.cross_entropy(out, y, reduction="sum"), x)
        momentum = mu * momentum + grad / grad.abs().sum().clamp_min(1e-30)
        if should_end:
            moving = out.detach().argmax(1) == y
        x = x.detach() + step * mysign(momentum) * per_sample(moving)
        x = torch.maximum(torch.minimum(x, u), l)
    return x.detach()


class Attack(PointGoal):
    """A goal of the attack family: subclasses give ``k``, ``r``, ``mu``, ``should_end``,
    ``restart`` and ``w``."""

    def __post_init__(self):
        super().__post_init__()
        if self.restart is not None and self.restart > self.k:
            raise ValueError(f"{type(self).__name__} argument 'restart' must be <= k = "
                             f"{self.k}, got {self.restart}")

    def point(self, ctx, box, y, t):
        return attack_point(ctx, self.resized(ctx, box, self.w, t), y, self.k, self.r, self.mu,
                            self.should_end, self.restart)

    def __str__(self) -> str:
        text = keyword_notation(self, positional=1)
        suffixed = f"{type(self).__name__}({self.k})"
        return f"{type(self).__name__}{self.k}" if text == suffixed else text


@dataclass(frozen=True)
class MI_FGSM(Attack):
    """DiffAI's ``MI_FGSM(w=None, r=20, k=100, mu=0.8, should_end=True, restart=None)``: k
    momentum steps of ``r h / k`` (module docstring); cross-entropy on the result."""

    w: Radius = None
    r: PositiveFloat = 20.0
    k: int = 100
    mu: float = 0.8
    should_end: bool = True
    restart: OptionalCount = None

    def __str__(self) -> str:
        return keyword_notation(self)


@dataclass(frozen=True)
class PGD(Attack):
    """DiffAI's ``PGD(k=5, r=5, w=None, restart=None, should_end=True)``: ``MI_FGSM`` with
    ``mu = 0``, k signed steps of ``r h / k`` from the center (the first restart, when
    ``restart`` is given, starts at a uniform point); cross-entropy on the result. ``PGDk``
    is ``PGD(k)``."""

    k: int = 5
    r: PositiveFloat = 5.0
    w: Radius = None
    restart: OptionalCount = None
    should_end: bool = True
    mu = 0.0


@dataclass(frozen=True)
class IFGSM(Attack):
    """``IFGSMk`` = DiffAI's ``IFGSM(k=5, w=None, restart=None, should_end=True)``: k steps
    ``x <- clip(x + (u - l) / (2k) * mysign(grad_x CE), l, u)`` from the center; a sample
    stops moving once the model misclassifies it (``should_end``). Cross-entropy on the
    result."""

    k: int = 5
    w: Radius = None
    restart: OptionalCount = None
    should_end: bool = True
    r = 1.0
    mu = 0.0


@dataclass(frozen=True)
class NormalAdv(Reboxing):
    """DiffAI's ``NormalAdv(a=IFGSM, w=None)``: a on ``[c - |z| h, c + |z| h]`` clipped to the
    data range, with ``z ~ N(0, 1)`` drawn once per batch and h the box's half-width (w when
    given); a's loss."""

    a: Goal = IFGSM()
    w: Radius = None

    def __str__(self) -> str:
        return keyword_notation(self)

    def inner(self):
        return self.a

    def new_box(self, ctx, box, y, t):
        l, u = box
        half = (u - l) / 2 if self.w is None else self.value(self.w, t, "w")
        radius = torch.randn((), device=l.device).abs() * half
        c = center(box)
        return ctx.clip(c - radius), ctx.clip(c + radius)


@dataclass(frozen=True)
class AdvInclusion(Reboxing):
    """DiffAI's ``AdvInclusion(sub, a=IFGSM, b=Box, w=None)``: m = a's point on ``Sub(1 -
    sub)``, then b on ``[m - sub h, m + sub h]`` clipped to the data range (h the half-width,
    w when given): ``Sample(sub, 1, a, b)``. ``sub`` in [0, 1]; b's loss."""

    sub: Fraction
    a: Goal = IFGSM()
    b: Goal = Box()
    w: Radius = None

    def __post_init__(self):
        super().__post_init__()
        require_region(self.a, "AdvInclusion", "a")

    def __str__(self) -> str:
        return keyword_notation(self, positional=1)

    def inner(self):
        return self.b

    def new_box(self, ctx, box, y, t):
        sub = self.value(self.sub, t, "sub", high=1)
        return sampled_box(ctx, self.resized(ctx, box, self.w, t), y, t, sub, 1.0, self.a)


class Between(Goal):
    """A goal that hands ``b`` the box between two points computed by ``ends``."""

    def __post_init__(self):
        super().__post_init__()
        require_region(self.a, type(self).__name__, "a")

    def ends(self, ctx: GoalContext, box: Interval, y: Tensor, t: float) -> Interval:
        """The two points ``(o1, o2)`` handed to ``b``."""
        raise NotImplementedError

    def __str__(self) -> str:
        return keyword_notation(self)

    @property
    def has_region(self) -> bool:
        return self.b.has_region

    def region(self, ctx, box, y, t):
        return self.b.region_between(ctx, self.ends(ctx, box, y, t), y, t)

    def loss_on(self, ctx, box, y, t):
        return self.b.loss_between(ctx, self.ends(ctx, box, y, t), y, t)


@dataclass(frozen=True)
class AdvDom(Between):
    """DiffAI's ``AdvDom(a=IFGSM, b=Box)``: b on the box between the center c and
    ``m = UB(alpha_a(l, u))`` (a's point), i.e. ``[min(c, m), max(c, m)]``; ``PointA`` /
    ``PointB`` in b are c / m. b's loss."""

    a: Goal = IFGSM()
    b: Goal = Box()

    def ends(self, ctx, box, y, t):
        return center(box), self.a.region(ctx, box, y, t)[1]


@dataclass(frozen=True)
class BiAdv(Between):
    """DiffAI's ``BiAdv(a=IFGSM, b=Box)``: b on the box between ``c - d`` and ``c + d``,
    ``d = |UB(alpha_a(l, u)) - c|`` (clipped to the data range): the paper's
    ``BiSample(a, b)``, with ``PointA`` / ``PointB`` in b the two corners. b's loss."""

    a: Goal = IFGSM()
    b: Goal = Box()

    def ends(self, ctx, box, y, t):
        return mirrored_ends(ctx, box, y, t, self.a)
