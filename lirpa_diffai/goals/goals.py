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
``PGD(k)``             Madry et al.'s PGD: a uniform random start, k signed-gradient steps
                       of size ``(u - l) / k`` kept in the box; cross-entropy
``Mix(g1, g2, lam)``   ``(1 - lam) * loss_g1 + lam * loss_g2``, both on the same box
``DList((g1, w1),      ``sum_i w_i loss_gi / sum_i w_i`` (DiffAI's weighted list)
...)``
``MMR(gamma_B,         Croce et al.'s Maximum Margin Regularizer at the center (no CE)
gamma_D, k_B, k_D, p)``
``Sub(delta, g)``      g on ``[c - delta (u - l) / 2, c + delta (u - l) / 2]``, c the center
``Sample(delta, r,     b = center of what gs produces on ``Sub(1 - r delta)``; gt on
gs, gt)``              ``[b - delta (u - l) / 2, b + delta (u - l) / 2]`` clipped to the range
``BiSample(g1, g2)``   ``d = |UB(alpha_g1(l, u)) - c|``; g2 on ``[c - d, c + d]`` (clipped)
=====================  ===================================================================

Every float argument may be a schedule (evaluated at ``t``). Goals other than ``Mix``,
``DList`` and ``MMR`` produce a *region* ``(lo, hi)`` on a box (a point has ``lo == hi``); ``Sample`` and
``BiSample`` need one from ``gs`` / ``g1``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..certify import margin_spec
from .schedules import COERCE, Const, Schedule, Term, as_schedule, describe

Interval = tuple[Tensor, Tensor]
BoundsFn = Callable[..., tuple[Tensor, Tensor]]


def _no_aux_losses() -> Sequence[tuple[float, Tensor]]:
    return ()


@dataclass
class GoalContext:
    """What a goal needs from the trainer.

    ``model``: the concrete network (logits), used by Point/Normal/Uniform/IFGSM.
    ``bounds(x_L, x_U, C, method=None, hzono=None) -> (lb, ub)``: bounds of ``C @ model(x)``
    over the box ``[x_L, x_U]`` with the configured bound method (hzono, IBP, CROWN-IBP,
    CROWN), or ``method`` with the hzono options ``hzono`` over the configured ones, used by
    Box and DiffAI's named domains.
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
class PGD(PointGoal):
    """``PGDk`` (Madry et al. 2018, as the MMR reference trains): a uniformly random start in
    the box, then k steps ``x <- clip(x + (u - l) / k * sign(grad_x CE), l, u)`` (step
    ``2 eps / k``), every sample moving for all k steps; cross-entropy on the result. Only the
    input is differentiated; the forward passes run in the model's current mode."""

    k: int = 40

    def __str__(self) -> str:
        return f"PGD{self.k}"

    def point(self, ctx, box, y, t):
        l, u = (b.detach() for b in box)
        step = (u - l) / self.k
        x = l + (u - l) * torch.rand_like(l)
        for _ in range(self.k):
            x = x.requires_grad_(True)
            with torch.enable_grad():
                grad, = torch.autograd.grad(F.cross_entropy(ctx.model(x), y, reduction="sum"), x)
            x = torch.maximum(torch.minimum(x.detach() + step * grad.sign(), u), l)
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
        lb, _ = ctx.bounds(box[0], box[1], margin_spec(y, ctx.num_classes), **self.bound_method())
        loss = margin_loss(lb)
        for weight, deep_loss in ctx.aux_losses():
            loss = (1 - weight) * loss + weight * deep_loss
        return loss

    def bound_method(self) -> dict:
        """Keywords for ``ctx.bounds``: none, the configured method (a named domain of
        ``lirpa_diffai.goals.domains`` gives its own)."""
        return {}


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


def as_weighted_pair(pair, owner: str, index: int) -> tuple:
    """Argument ``index`` of ``owner``, ``(goal, weight)`` with a weight >= 0 (a number or a
    schedule), as ``(Goal, Schedule)``; else ``TypeError`` / ``ValueError``."""
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise TypeError(f"{owner} argument {index} must be a pair (goal, weight), "
                        f"got {describe(pair)}")
    goal = as_goal(pair[0], owner, f"goal of pair {index}")
    weight = as_schedule(pair[1], owner, f"weight of pair {index}")
    if isinstance(weight, Const) and weight.value < 0:
        raise ValueError(f"{owner} weight of pair {index} must be >= 0, got {weight}")
    return goal, weight


def as_weighted_goals(value, owner: str, param: str) -> tuple:
    """``value``, a sequence of pairs ``(goal, weight)``, as a tuple of ``(Goal, Schedule)``."""
    if not isinstance(value, (tuple, list)):
        raise TypeError(f"{owner} argument '{param}' must be pairs (goal, weight), "
                        f"got {describe(value)}")
    return tuple(as_weighted_pair(pair, owner, i) for i, pair in enumerate(value, 1))


COERCE["WeightedGoals"] = as_weighted_goals


@dataclass(frozen=True)
class DList(Goal):
    """DiffAI's weighted list ``DList((g1, w1), (g2, w2), ...)``: the loss
    ``sum_i w_i loss_gi / sum_i w_i`` (DiffAI divides by the sum of the weights), each goal
    on the same box; a goal whose weight is 0 at ``t`` is not computed. So
    ``DList((CE, 1), (MMR, lambda))`` is ``(CE + lambda MMR) / (1 + lambda)``: the MMR paper's
    ``CE + lambda MMR`` up to the factor ``1 / (1 + lambda)`` (for Adam, a constant factor
    of the loss changes nothing but epsilon's relative size). Weights are >= 0."""

    pairs: WeightedGoals
    # written with one argument per pair; the parser checks each with this
    variadic_item: ClassVar[Callable] = staticmethod(as_weighted_pair)

    def __post_init__(self):
        super().__post_init__()
        if not self.pairs:
            raise ValueError("DList needs at least one pair (goal, weight)")

    @property
    def has_region(self) -> bool:
        return False

    def arguments(self) -> list:
        return list(self.pairs)

    def __str__(self) -> str:
        return f"DList({', '.join(f'({g}, {w})' for g, w in self.pairs)})"

    def loss_on(self, ctx, box, y, t):
        weights = [w(t) for _, w in self.pairs]
        total = sum(weights)
        if not total > 0:
            raise self.refused(f"the weights sum to {total:g} at epoch {t:g}; it must be > 0")
        return sum(w * g.loss_on(ctx, box, y, t) for w, (g, _) in zip(weights, self.pairs)
                   if w != 0) / total


def as_norm(value, owner: str, param: str) -> str:
    """``value`` as the norm ``"inf"`` or ``"2"``, else ``TypeError``."""
    from ..mmr.regions import RegionError, norm_key
    try:
        return norm_key(value)
    except RegionError:
        raise TypeError(f"{owner} argument '{param}' must be inf or 2, got {describe(value)}") from None


def as_gamma(value, owner: str, param: str) -> Schedule:
    """A schedule; a constant must be > 0."""
    from ..mmr.loss import check_gamma
    schedule = as_schedule(value, owner, param)
    if isinstance(schedule, Const):
        check_gamma(schedule.value, f"{owner} argument '{param}'")
    return schedule


def as_k(value, owner: str, param: str) -> Schedule:
    """A schedule; a constant must be a fraction in (0, 1) or a whole count >= 1."""
    from ..mmr.loss import check_k
    schedule = as_schedule(value, owner, param)
    if isinstance(schedule, Const):
        check_k(schedule.value, f"{owner} argument '{param}'")
    return schedule


COERCE.update(Norm=as_norm, Gamma=as_gamma, K=as_k)


@dataclass(frozen=True)
class MMR(Goal):
    """Croce et al.'s Maximum Margin Regularizer ``MMR(gamma_B, gamma_D, k_B, k_D, p)`` at the
    box's center (the clean point): ``1/k_B sum over the k_B smallest d_B of
    max(0, 1 - d_B / gamma_B) + 1/k_D sum over the k_D smallest d_D of max(0, 1 - d_D /
    gamma_D)``, batch mean, with the exact region distances of
    :func:`lirpa_diffai.mmr.region_distances` in the l_p norm ``p`` (``inf`` or ``2``). A k
    in (0, 1) is a fraction of the candidates, a whole k >= 1 a count. It is a regularizer
    (no cross-entropy): combine it with ``DList``. Every argument but ``p`` may be a schedule;
    refusals found at training time (a count above the network's ReLUs, a network that is not
    piecewise linear) name the goal's position."""

    gamma_b: Gamma
    gamma_d: Gamma
    k_b: K
    k_d: K
    p: Norm = "inf"

    @property
    def has_region(self) -> bool:
        return False

    def loss_on(self, ctx, box, y, t):
        from ..mmr import RegionError, mmr_loss
        try:
            return mmr_loss(ctx.model, center(box), y, gamma_b=self.gamma_b(t),
                            gamma_d=self.gamma_d(t), k_b=self.k_b(t), k_d=self.k_d(t), p=self.p)
        except RegionError as err:
            raise self.refused(f"{err} (at epoch {t:g})") from None


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
    Point, Normal, Uniform, IFGSM, PGD, Box, Mix, DList, MMR, Sub, Sample, BiSample)}

__all__ = ["GoalContext", "Goal", "GOALS", "input_box", "margin_spec", "margin_loss", *GOALS]
