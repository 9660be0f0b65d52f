"""Goals that combine other goals' losses on the same box: the paper's ``Mix`` (Table 1),
DiffAI's ``LinMix``, ``DList`` (weighted sums) and ``DProb`` / ``Coin`` (a goal drawn at
random per batch).

==================================  ========================================================
``Mix(g1, g2, lam)``                ``(1 - lam) loss_g1 + lam loss_g2``
``LinMix(a=Point, b=Box, bw=0.1)``  ``(1 - bw) loss_a + bw loss_b``: DiffAI's name of Mix,
                                    ``bw`` in [0, 1]
``DList((g1, w1), ...)``            ``sum_i w_i loss_gi / sum_i w_i``
``DProb((g1, p1), ...)``            per batch, goal ``g_i`` with probability
                                    ``p_i / sum_j p_j``; its loss
``Coin(a=Point, b=Box, ap=0.8,      ``DProb((a, ap), (b, bp))``
bp=0.2)``
==================================  ========================================================

Weights of ``Mix``, ``LinMix`` and ``DList`` may be schedules; DiffAI's ``DProb`` / ``Coin``
take plain numbers. Given the box between two points (inside ``AdvDom`` / ``BiAdv``), each
hands the two points on to its goals.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

import torch

from .box import Box
from .core import COERCE, Goal, as_goal, as_number, keyword_notation
from .sampling import Point
from ..schedules import Const, Schedule, as_schedule, describe, format_number


def weighted_sum(parts, evaluate: Callable[[Goal], object]):
    """``sum_i w_i evaluate(g_i)`` over ``parts = [(w_i, g_i)]``, skipping zero weights."""
    return sum(w * evaluate(g) for w, g in parts if w != 0)


class Combination(Goal):
    """A goal whose loss combines its goals' losses on the box it is given: subclasses
    define ``combined(evaluate, t)`` from ``evaluate(goal) -> loss``."""

    def combined(self, evaluate: Callable[[Goal], object], t: float):
        """The loss, given how to evaluate one goal."""
        raise NotImplementedError

    @property
    def has_region(self) -> bool:
        return False

    def loss_on(self, ctx, box, y, t):
        return self.combined(lambda g: g.loss_on(ctx, box, y, t), t)

    def loss_between(self, ctx, ends, y, t):
        return self.combined(lambda g: g.loss_between(ctx, ends, y, t), t)


@dataclass(frozen=True)
class Mix(Combination):
    """``(1 - lam) * loss_g1(alpha_g1(l, u)) + lam * loss_g2(alpha_g2(l, u))``; a side whose
    weight is 0 at ``t`` is not computed. Mix produces no single region."""

    g1: Goal
    g2: Goal
    lam: Schedule

    def combined(self, evaluate, t):
        lam = self.lam(t)
        return weighted_sum([(1 - lam, self.g1), (lam, self.g2)], evaluate)


@dataclass(frozen=True)
class LinMix(Combination):
    """DiffAI's ``LinMix(a, b, bw)``: ``(1 - bw) * loss_a + bw * loss_b``, i.e. the paper's
    ``Mix(a, b, bw)`` (DiffAI's ``DList((a, 1 - bw), (b, bw))``). ``bw`` in [0, 1], a number
    or a schedule."""

    a: Goal = Point()
    b: Goal = Box()
    bw: Fraction = Const(0.1)

    def __str__(self) -> str:
        return keyword_notation(self)

    def combined(self, evaluate, t):
        bw = self.value(self.bw, t, "bw", high=1)
        return weighted_sum([(1 - bw, self.a), (bw, self.b)], evaluate)


def as_weighted_pair(pair, owner: str, index: int) -> tuple:
    """Argument ``index`` of ``owner``, ``(goal, weight)`` with a weight >= 0 (a number or a
    schedule), as ``(Goal, Schedule)``; else ``TypeError`` / ``ValueError``."""
    goal, weight = _pair(pair, owner, index)
    weight = as_schedule(weight, owner, f"weight of pair {index}")
    if isinstance(weight, Const) and weight.value < 0:
        raise ValueError(f"{owner} weight of pair {index} must be >= 0, got {weight}")
    return goal, weight


def as_probability_pair(pair, owner: str, index: int) -> tuple:
    """Argument ``index`` of ``owner``, ``(goal, weight)`` with a number ``>= 0`` as weight
    (DiffAI's DProb takes no schedules), as ``(Goal, float)``."""
    goal, weight = _pair(pair, owner, index)
    return goal, as_number(weight, owner, f"weight of pair {index}")


def _pair(pair, owner: str, index: int) -> tuple:
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise TypeError(f"{owner} argument {index} must be a pair (goal, weight), "
                        f"got {describe(pair)}")
    return as_goal(pair[0], owner, f"goal of pair {index}"), pair[1]


def _pairs_of(check: Callable) -> Callable:
    def coerce(value, owner: str, param: str) -> tuple:
        if not isinstance(value, (tuple, list)):
            raise TypeError(f"{owner} argument '{param}' must be pairs (goal, weight), "
                            f"got {describe(value)}")
        return tuple(check(pair, owner, i) for i, pair in enumerate(value, 1))
    return coerce


COERCE.update(WeightedGoals=_pairs_of(as_weighted_pair),
              ProbabilityGoals=_pairs_of(as_probability_pair))


def _pairs_text(name: str, pairs) -> str:
    def weight(w):
        return format_number(w) if isinstance(w, float) else str(w)
    return f"{name}({', '.join(f'({g}, {weight(w)})' for g, w in pairs)})"


@dataclass(frozen=True)
class DList(Combination):
    """DiffAI's weighted list ``DList((g1, w1), (g2, w2), ...)``: the loss
    ``sum_i w_i loss_gi / sum_i w_i`` (DiffAI divides by the sum of the weights), each goal
    on the same box; a goal whose weight is 0 at ``t`` is not computed. So
    ``DList((CE, 1), (MMR, lambda))`` is ``(CE + lambda MMR) / (1 + lambda)``: the MMR paper's
    ``CE + lambda MMR`` up to the factor ``1 / (1 + lambda)`` (for Adam, a constant factor
    of the loss changes nothing but epsilon's relative size). Weights are >= 0; ``DList()``
    is ``DList((Point, 1), (Box, 0.1))``."""

    pairs: WeightedGoals = ((Point(), 1), (Box(), 0.1))      # DiffAI's DList()
    # written with one argument per pair; the parser checks each with this
    variadic_item: ClassVar[Callable] = staticmethod(as_weighted_pair)

    def __post_init__(self):
        super().__post_init__()
        if not self.pairs:
            raise ValueError("DList needs at least one pair (goal, weight)")

    def arguments(self) -> list:
        return list(self.pairs)

    def __str__(self) -> str:
        return _pairs_text("DList", self.pairs)

    def combined(self, evaluate, t):
        weights = [w(t) for _, w in self.pairs]
        total = sum(weights)
        if not total > 0:
            raise self.refused(f"the weights sum to {total:g} at epoch {t:g}; it must be > 0")
        return weighted_sum([(w, g) for w, (g, _) in zip(weights, self.pairs)], evaluate) / total


class Draw(Goal):
    """A goal that, at each call, draws one of ``choices()`` ``(goal, weight)`` with
    probability ``weight / sum of the weights`` (``torch``'s generator) and acts as it."""

    def choices(self) -> tuple:
        """The ``(goal, weight)`` pairs drawn from."""
        raise NotImplementedError

    def check_choices(self) -> None:
        """``ValueError`` unless the weights have a positive sum."""
        if not sum(w for _, w in self.choices()) > 0:
            raise ValueError(f"{type(self).__name__}'s weights must have a positive sum")

    def drawn(self) -> Goal:
        """One goal, drawn with the probabilities of the weights."""
        goals, weights = zip(*self.choices())
        if len(goals) == 1:
            return goals[0]
        return goals[int(torch.multinomial(torch.tensor(weights, dtype=torch.float64), 1))]

    @property
    def has_region(self) -> bool:
        return all(g.has_region for g, _ in self.choices())

    def region(self, ctx, box, y, t):
        return self.drawn().region(ctx, box, y, t)

    def loss_on(self, ctx, box, y, t):
        return self.drawn().loss_on(ctx, box, y, t)

    def region_between(self, ctx, ends, y, t):
        return self.drawn().region_between(ctx, ends, y, t)

    def loss_between(self, ctx, ends, y, t):
        return self.drawn().loss_between(ctx, ends, y, t)


@dataclass(frozen=True)
class DProb(Draw):
    """DiffAI's ``DProb((g1, p1), (g2, p2), ...)``: per batch (per call), the goal ``g_i``
    with probability ``p_i / sum_j p_j``, and that goal's loss (or region). The weights are
    numbers ``>= 0`` with a positive sum; ``DProb()`` is ``DProb((Point, 0.8), (Box, 0.2))``."""

    pairs: ProbabilityGoals = ((Point(), 0.8), (Box(), 0.2))  # DiffAI's DProb()
    variadic_item: ClassVar[Callable] = staticmethod(as_probability_pair)

    def __post_init__(self):
        super().__post_init__()
        self.check_choices()

    def choices(self):
        return self.pairs

    def arguments(self) -> list:
        return list(self.pairs)

    def __str__(self) -> str:
        return _pairs_text("DProb", self.pairs)


@dataclass(frozen=True)
class Coin(Draw):
    """DiffAI's ``Coin(a, b, ap, bp)``: ``DProb((a, ap), (b, bp))``, goal a with probability
    ``ap / (ap + bp)``, else b."""

    a: Goal = Point()
    b: Goal = Box()
    ap: float = 0.8
    bp: float = 0.2

    def __post_init__(self):
        super().__post_init__()
        self.check_choices()

    def choices(self):
        return (self.a, self.ap), (self.b, self.bp)

    def __str__(self) -> str:
        return keyword_notation(self)
