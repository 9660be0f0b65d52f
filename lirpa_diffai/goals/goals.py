"""Goal constructors of the paper's DSL (section 4.2, Table 1) and the losses they define.

A goal turns a batch ``x`` with labels ``y`` at training time ``t`` (fractional epochs) into a
mean training loss: ``goal.loss(ctx, x, y, t)``. It first builds the input box of example o,
``[max(o - eps, lo), min(o + eps, hi)]`` with ``[lo, hi]`` the data range, then applies its
abstraction ``alpha_g(l, u)`` and its loss ``loss_g(d, y)``:

=====================  ===================================================================
``Point``              the center ``(l + u) / 2``; cross-entropy
``Normal``             a point ``~ N(center, (u - l) / 2)`` clipped to the box; cross-entropy
``Uniform``            a point uniform in the box; cross-entropy
``IFGSM(k)``           k signed-gradient steps of size ``(u - l) / (2k)`` from the center,
                       kept in the box; a sample stops once misclassified; cross-entropy
``Box``                the box as an abstract element, bounded with ``ctx.bounds``;
                       cross-entropy on the worst-case margins ``[0, -lb(y - y_j)]``
``Mix(g1, g2, lam)``   ``(1 - lam) * loss_g1 + lam * loss_g2``, both on the same box
``Sub(delta, g)``      g on ``[c - delta (u - l) / 2, c + delta (u - l) / 2]``, c the center
``Sample(delta, r,     b = center of what gs produces on ``Sub(1 - r delta)``; gt on
gs, gt)``              ``[b - delta (u - l) / 2, b + delta (u - l) / 2]`` clipped to the range
``BiSample(g1, g2)``   ``d = |UB(alpha_g1(l, u)) - c|``; g2 on ``[c - d, c + d]`` (clipped)
=====================  ===================================================================

Every float argument may be a schedule (evaluated at ``t``). Goals other than ``Mix``
produce a *region* ``(lo, hi)`` on a box (a point has ``lo == hi``); ``Sample`` and
``BiSample`` need one from ``gs`` / ``g1``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..certify import margin_spec
from .schedules import COERCE, Schedule, Term, describe

Interval = tuple[Tensor, Tensor]
BoundsFn = Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]


def _no_aux_losses() -> Sequence[tuple[float, Tensor]]:
    return ()


@dataclass
class GoalContext:
    """What a goal needs from the trainer.

    ``model``: the concrete network (logits), used by Point/Normal/Uniform/IFGSM.
    ``bounds(x_L, x_U, C) -> (lb, ub)``: bounds of ``C @ model(x)`` over the box
    ``[x_L, x_U]`` with the goal's bound method (hzono, IBP, CROWN-IBP, CROWN), used by Box.
    ``eps``: the L-inf radius, a float or a schedule of ``t``.
    ``data_range``: ``(lo, hi)`` of the inputs (floats or broadcastable tensors).
    ``num_classes``: the number of logits.
    ``aux_losses()``: the ``(weight, loss)`` pairs the last ``bounds`` call recorded (hzono's
    DeepLoss layers); Box folds each in as ``(1 - w) * loss + w * deep_loss``.
    """

    model: Callable[[Tensor], Tensor]
    bounds: BoundsFn | None = None
    eps: float | Schedule = 0.0
    data_range: tuple = (0.0, 1.0)
    num_classes: int = 10
    aux_losses: Callable[[], Sequence[tuple[float, Tensor]]] = _no_aux_losses

    def eps_at(self, t: float) -> float:
        """The radius at time ``t``."""
        return float(self.eps(t)) if isinstance(self.eps, Schedule) else float(self.eps)

    def clip(self, v: Tensor) -> Tensor:
        """``v`` clamped to the data range."""
        lo, hi = (torch.as_tensor(b, dtype=v.dtype, device=v.device) for b in self.data_range)
        return torch.maximum(torch.minimum(v, hi), lo)


def input_box(ctx: GoalContext, x: Tensor, t: float) -> Interval:
    """The training box of each example o: ``[max(o - eps, lo), min(o + eps, hi)]``."""
    eps = ctx.eps_at(t)
    return ctx.clip(x - eps), ctx.clip(x + eps)


def center(box: Interval) -> Tensor:
    """``(l + u) / 2``."""
    return (box[0] + box[1]) / 2


def scaled_box(box: Interval, around: Tensor, delta: float) -> Interval:
    """``[b - delta (u - l) / 2, b + delta (u - l) / 2]`` for ``box = (l, u)``, ``b = around``."""
    half = delta * (box[1] - box[0]) / 2
    return around - half, around + half


def margin_loss(lb: Tensor) -> Tensor:
    """Cross-entropy on the worst-case margins (IBP / CROWN-IBP convention): logits
    ``[0, -lb_1, ..., -lb_{n-1}]`` with target 0, averaged over the batch."""
    logits = torch.cat([lb.new_zeros(lb.shape[0], 1), -lb], dim=1)
    return F.cross_entropy(logits, lb.new_zeros(lb.shape[0], dtype=torch.long))


def as_goal(value, owner: str, param: str) -> "Goal":
    """``value`` if it is a :class:`Goal`, else ``TypeError``."""
    if not isinstance(value, Goal):
        raise TypeError(f"{owner} argument '{param}' must be a goal, got {describe(value)}")
    return value


COERCE["Goal"] = as_goal


class Goal(Term):
    """A training goal. Subclasses define ``loss_on`` (mean loss on a box) and, when they
    produce a point or box, ``region``."""

    kind: ClassVar[str] = "goal"

    @property
    def has_region(self) -> bool:
        """Whether ``region`` is defined (every goal but ``Mix``)."""
        return True

    def loss(self, ctx: GoalContext, x: Tensor, y: Tensor, t: float) -> Tensor:
        """The mean training loss of the batch ``x`` (labels ``y``) at time ``t``:
        ``loss_g(alpha_g(max(x - eps, lo), min(x + eps, hi)), y)``."""
        return self.loss_on(ctx, input_box(ctx, x, t), y, t)

    def loss_on(self, ctx: GoalContext, box: Interval, y: Tensor, t: float) -> Tensor:
        """The mean loss of this goal applied to ``box``."""
        raise NotImplementedError

    def region(self, ctx: GoalContext, box: Interval, y: Tensor, t: float) -> Interval:
        """The point (``lo == hi``) or box this goal trains on when given ``box``."""
        raise NotImplementedError


class PointGoal(Goal):
    """A goal that trains on one concrete point of the box with cross-entropy."""

    def point(self, ctx: GoalContext, box: Interval, y: Tensor, t: float) -> Tensor:
        """The point chosen in ``box``."""
        raise NotImplementedError

    def region(self, ctx, box, y, t):
        p = self.point(ctx, box, y, t)
        return p, p

    def loss_on(self, ctx, box, y, t):
        return F.cross_entropy(ctx.model(self.point(ctx, box, y, t)), y)


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
class IFGSM(PointGoal):
    """``IFGSMk``: k steps ``x <- clip(x + (u - l) / (2k) * sign(grad_x CE), l, u)`` from the
    center; a sample stops moving once the model misclassifies it. Cross-entropy on the
    result. Only the input is differentiated (``torch.autograd.grad``): no gradient is left
    on the model's parameters. The attack's forward passes run in the model's current mode
    (a BatchNorm in training mode updates its running statistics, as in DiffAI)."""

    k: int = 5

    def __str__(self) -> str:
        return f"IFGSM{self.k}"

    def point(self, ctx, box, y, t):
        l, u = (b.detach() for b in box)
        step = (u - l) / (2 * self.k)
        x = center((l, u))
        for _ in range(self.k):
            x = x.requires_grad_(True)
            with torch.enable_grad():
                out = ctx.model(x)
                grad, = torch.autograd.grad(F.cross_entropy(out, y, reduction="sum"), x)
            still_right = (out.argmax(1) == y).view(-1, *[1] * (x.dim() - 1))
            x = torch.where(still_right, x.detach() + step * grad.sign(), x.detach())
            x = torch.maximum(torch.minimum(x, u), l)
        return x.detach()


@dataclass(frozen=True)
class Box(Goal):
    """The box ``<(l + u) / 2, (u - l) / 2, 0>`` as an abstract element, bounded by
    ``ctx.bounds`` with the margin spec ``e_y - e_j``; loss: cross-entropy on ``[0, -lb]``,
    then ``(1 - w) * loss + w * deep_loss`` for each DeepLoss pair in ``ctx.aux_losses()``."""

    def region(self, ctx, box, y, t):
        return box

    def loss_on(self, ctx, box, y, t):
        if ctx.bounds is None:
            raise ValueError("the Box goal needs ctx.bounds (a bound method)")
        lb, _ = ctx.bounds(box[0], box[1], margin_spec(y, ctx.num_classes))
        loss = margin_loss(lb)
        for weight, deep_loss in ctx.aux_losses():
            loss = (1 - weight) * loss + weight * deep_loss
        return loss


@dataclass(frozen=True)
class Mix(Goal):
    """``(1 - lam) * loss_g1(alpha_g1(l, u)) + lam * loss_g2(alpha_g2(l, u))``; a side whose
    weight is 0 at ``t`` is not computed. Mix produces no single region."""

    g1: Goal
    g2: Goal
    lam: Schedule

    @property
    def has_region(self) -> bool:
        return False

    def loss_on(self, ctx, box, y, t):
        lam = self.lam(t)
        parts = [(1 - lam, self.g1), (lam, self.g2)]
        return sum(w * g.loss_on(ctx, box, y, t) for w, g in parts if w != 0)


class Reboxing(Goal):
    """A goal that hands a new box, computed from the given one, to an inner goal."""

    def inner(self) -> Goal:
        """The goal applied to the new box."""
        raise NotImplementedError

    def new_box(self, ctx: GoalContext, box: Interval, y: Tensor, t: float) -> Interval:
        """The box handed to ``inner()``."""
        raise NotImplementedError

    @property
    def has_region(self) -> bool:
        return self.inner().has_region

    def region(self, ctx, box, y, t):
        return self.inner().region(ctx, self.new_box(ctx, box, y, t), y, t)

    def loss_on(self, ctx, box, y, t):
        return self.inner().loss_on(ctx, self.new_box(ctx, box, y, t), y, t)


def _require_region(goal: Goal, owner: str, param: str) -> None:
    if not goal.has_region:
        raise TypeError(f"{owner} argument '{param}' must produce a point or box "
                        f"(not a Mix), got {goal}")


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
        _require_region(self.gs, "Sample", "gs")

    def inner(self):
        return self.gt

    def new_box(self, ctx, box, y, t):
        delta = self.delta(t)
        sampled = self.gs.region(ctx, scaled_box(box, center(box), 1 - self.r(t) * delta), y, t)
        lo, hi = scaled_box(box, center(sampled), delta)
        return ctx.clip(lo), ctx.clip(hi)


@dataclass(frozen=True)
class BiSample(Reboxing):
    """``alpha_g2(c - d, c + d)`` with ``c = (l + u) / 2`` and ``d = |UB(alpha_g1(l, u)) - c|``
    (clipped to the data range); g2's loss."""

    g1: Goal
    g2: Goal

    def __post_init__(self):
        super().__post_init__()
        _require_region(self.g1, "BiSample", "g1")

    def inner(self):
        return self.g2

    def new_box(self, ctx, box, y, t):
        c = center(box)
        d = (self.g1.region(ctx, box, y, t)[1] - c).abs()
        return ctx.clip(c - d), ctx.clip(c + d)


GOALS: dict[str, type[Goal]] = {cls.__name__: cls for cls in (
    Point, Normal, Uniform, IFGSM, Box, Mix, Sub, Sample, BiSample)}

__all__ = ["GoalContext", "Goal", "GOALS", "input_box", "margin_spec", "margin_loss", *GOALS]
