"""What every goal shares: the trainer's :class:`GoalContext`, the :class:`Goal` base class,
the input box, and the argument coercions of goal parameters.

A goal turns a batch ``x`` with labels ``y`` at training time ``t`` (fractional epochs) into a
mean training loss: ``goal.loss(ctx, x, y, t)``. It first builds the input box of example o,
``[max(o - eps, lo), min(o + eps, hi)]`` with ``[lo, hi]`` the data range, then applies its
abstraction ``alpha_g(l, u)`` and its loss ``loss_g(d, y)`` (paper section 4.2).

DiffAI also hands some goals *the box between two points* ``(o1, o2)`` (its ``boxBetween``:
``AdvDom`` hands the original and the attack point, ``BiAdv`` the two mirrored corners):
:meth:`Goal.loss_between` is, for every goal but ``PointA`` / ``PointB``, the loss on the box
the two points span, and combinators hand the two points on unchanged.
"""
from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, fields
from typing import Callable, ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..schedules import COERCE, Const, Schedule, Term, as_int, as_schedule, describe, format_number

Interval = tuple[Tensor, Tensor]
BoundsFn = Callable[..., tuple[Tensor, Tensor]]


def _no_aux_losses() -> Sequence[tuple[float, Tensor]]:
    return ()


@dataclass
class GoalContext:
    """What a goal needs from the trainer.

    ``model``: the concrete network (logits), used by the point goals and the attacks.
    ``bounds(x_L, x_U, C, method=None, hzono=None) -> (lb, ub)``: bounds of ``C @ model(x)``
    over the box ``[x_L, x_U]`` with the configured bound method (hzono, IBP, CROWN-IBP,
    CROWN), or ``method`` with the hzono options ``hzono`` over the configured ones, used by
    Box and DiffAI's named domains.
    ``eps``: the L-inf radius, a float or a schedule of ``t``.
    ``data_range``: ``(lo, hi)`` of the inputs (floats or broadcastable tensors).
    ``num_classes``: the number of logits.
    ``aux_losses()``: the ``(weight, loss)`` pairs the last ``bounds`` call recorded (hzono's
    DeepLoss layers); Box folds each in as ``(1 - w) * loss + w * deep_loss``.
    ``loss_bound(x_L, x_U, y) -> (B,)``: the fused upper bound of each sample's cross-entropy
    over its box (``lirpa_diffai.training.loss_fusion``), or None where the configured method
    has none. ``loss_fusion``: every ``Box`` uses it (the trainer's ``loss_fusion``).
    """

    model: Callable[[Tensor], Tensor]
    bounds: BoundsFn | None = None
    eps: float | Schedule = 0.0
    data_range: tuple = (0.0, 1.0)
    num_classes: int = 10
    aux_losses: Callable[[], Sequence[tuple[float, Tensor]]] = _no_aux_losses
    loss_bound: Callable[[Tensor, Tensor, Tensor], Tensor] | None = None
    loss_fusion: bool = False

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


def spanned(ends: Interval) -> Interval:
    """The box two points span: ``[min(o1, o2), max(o1, o2)]``."""
    return torch.minimum(*ends), torch.maximum(*ends)


def margin_loss(lb: Tensor) -> Tensor:
    """Cross-entropy on the worst-case margins (IBP / CROWN-IBP convention): logits
    ``[0, -lb_1, ..., -lb_{n-1}]`` with target 0, averaged over the batch."""
    logits = torch.cat([lb.new_zeros(lb.shape[0], 1), -lb], dim=1)
    return F.cross_entropy(logits, lb.new_zeros(lb.shape[0], dtype=torch.long))


# ------------------------------------------------------------------ argument coercions

def as_goal(value, owner: str, param: str) -> "Goal":
    """``value`` if it is a :class:`Goal`, else ``TypeError``."""
    if not isinstance(value, Goal):
        raise TypeError(f"{owner} argument '{param}' must be a goal, got {describe(value)}")
    return value


def as_bool(value, owner: str, param: str) -> bool:
    """``value`` if it is ``True`` or ``False``, else ``TypeError``."""
    if not isinstance(value, bool):
        raise TypeError(f"{owner} argument '{param}' must be True or False, got {describe(value)}")
    return value


def as_number(value, owner: str, param: str, low: float = 0.0, strict: bool = False) -> float:
    """``value`` as a finite float ``>= low`` (``> low`` if ``strict``), else an error."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"{owner} argument '{param}' must be a number, got {describe(value)}")
    if value < low or (strict and value == low):
        raise ValueError(f"{owner} argument '{param}' must be {'>' if strict else '>='} "
                         f"{format_number(low)}, got {format_number(value)}")
    return float(value)


def as_radius(value, owner: str, param: str) -> Schedule | None:
    """DiffAI's optional ``w``: None (the radius the goal is given) or a schedule, a
    constant one ``>= 0``."""
    if value is None:
        return None
    schedule = as_schedule(value, owner, param)
    if isinstance(schedule, Const):
        as_number(schedule.value, owner, param)
    return schedule


def as_fraction(value, owner: str, param: str) -> Schedule:
    """A schedule; a constant one in ``[0, 1]``."""
    schedule = as_schedule(value, owner, param)
    if isinstance(schedule, Const) and not 0 <= schedule.value <= 1:
        raise ValueError(f"{owner} argument '{param}' must be in [0, 1], got {schedule}")
    return schedule


def as_optional_count(value, owner: str, param: str) -> int | None:
    """None or a positive integer."""
    return None if value is None else as_int(value, owner, param)


COERCE.update({
    "Goal": as_goal, "bool": as_bool, "Radius": as_radius, "Fraction": as_fraction,
    "OptionalCount": as_optional_count, "float": as_number,
    "PositiveFloat": lambda v, owner, param: as_number(v, owner, param, strict=True)})


def keyword_notation(term: Term, positional: int = 0) -> str:
    """``Name(a1, ..., key=value, ...)``: the first ``positional`` arguments by position, the
    others by keyword where they differ from their default; ``Name`` when nothing is shown."""
    shown = []
    for i, f in enumerate(fields(term)):
        value = getattr(term, f.name)
        if i < positional:
            shown.append(_text(value))
        elif f.default is MISSING or value != f.default:
            shown.append(f"{f.name}={_text(value)}")
    return f"{type(term).__name__}({', '.join(shown)})" if shown else type(term).__name__


def _text(value) -> str:
    return format_number(value) if isinstance(value, float) else str(value)


# ---------------------------------------------------------------------------- goals

class Goal(Term):
    """A training goal. Subclasses define ``loss_on`` (mean loss on a box) and, when they
    produce a point or box, ``region``. ``written_at`` is where the parser read the goal
    (it has ``error(message)``), or None."""

    kind: ClassVar[str] = "goal"
    written_at: ClassVar[object] = None

    def refused(self, message: str) -> ValueError:
        """A ValueError for a refusal found while training, placed where the goal was written
        (a :class:`~lirpa_diffai.goals.errors.GoalSyntaxError` with its position) when known."""
        where = self.written_at
        return where.error(f"{type(self).__name__}: {message}") if where is not None \
            else ValueError(f"{self}: {message}")

    @property
    def has_region(self) -> bool:
        """Whether ``region`` is defined (every goal but the loss combinators)."""
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

    def loss_between(self, ctx: GoalContext, ends: Interval, y: Tensor, t: float) -> Tensor:
        """The mean loss given the box between the points ``ends = (o1, o2)`` (DiffAI's
        ``boxBetween``): the loss on ``[min(o1, o2), max(o1, o2)]``."""
        return self.loss_on(ctx, spanned(ends), y, t)

    def region_between(self, ctx: GoalContext, ends: Interval, y: Tensor, t: float) -> Interval:
        """The region given the box between the points ``ends`` (see ``loss_between``)."""
        return self.region(ctx, spanned(ends), y, t)

    def value(self, schedule: Schedule, t: float, param: str, low: float = 0.0,
              high: float = math.inf) -> float:
        """``schedule(t)``, refused with the goal's position unless in ``[low, high]``."""
        v = schedule(t)
        if not low <= v <= high:
            bounds = f"in [{format_number(low)}, {format_number(high)}]" if high < math.inf \
                else f">= {format_number(low)}"
            raise self.refused(f"'{param}' is {v:g} at epoch {t:g}; it must be {bounds}")
        return v

    def resized(self, ctx: GoalContext, box: Interval, w: Schedule | None, t: float) -> Interval:
        """DiffAI's ``w``: the box ``[c - w, c + w]`` around the center c of ``box``, clipped
        to the data range, or ``box`` itself when ``w`` is None."""
        if w is None:
            return box
        c, radius = center(box), self.value(w, t, "w")
        return ctx.clip(c - radius), ctx.clip(c + radius)


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


def require_region(goal: Goal, owner: str, param: str) -> None:
    """``TypeError`` unless ``goal`` produces a point or box."""
    if not goal.has_region:
        raise TypeError(f"{owner} argument '{param}' must produce a point or box "
                        f"(not a Mix), got {goal}")
