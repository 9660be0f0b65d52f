"""The counterexample search inside branch and bound, whose effort grows only while the
bounds stall.

Every ``every`` rounds, PGD with :data:`RESTARTS` restarts of :data:`STEPS` steps
(:func:`falsify.pgd`) searches the box: cheap, and enough for most properties. The *global
bound* ``g`` (the smallest spec lower bound over the open subdomains) rises round by round
while branch and bound makes progress; on a property with a counterexample it cannot rise
above the true minimum, so it stalls below 0. When ``g`` rose by less than
``STALL * |g|`` over the last ``WINDOW`` rounds, the search escalates: the next attack has
twice the restarts of the last escalated one (from ``2 * RESTARTS`` up to
:data:`MOST_RESTARTS`) and :data:`STRONG_STEPS` steps, then the window starts again. The
escalated attacks together take at most ``SHARE`` of the time branch and bound has run, so
a property that closes with steadily rising bounds never pays for them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from . import falsify

RESTARTS, STEPS = 2, 20
STRONG_STEPS, MOST_RESTARTS = 50, 64
WINDOW, STALL, SHARE = 5, 0.02, 0.25


def stalled(history: list, window: int = WINDOW, stall: float = STALL) -> bool:
    """Whether the global bound rose by less than ``stall * |g|`` over the last ``window``
    rounds (``history``: ``g`` per round, oldest first; False until it has ``window + 1``)."""
    if len(history) <= window:
        return False
    before, now = history[-window - 1], history[-1]
    return now < 0 and now - before < stall * abs(before)


@dataclass
class Falsifier:
    """The attack schedule of one branch and bound run (see the module docstring);
    ``every``: rounds between the cheap attacks (0: never attack)."""

    every: int
    started: float = field(default_factory=time.perf_counter)
    history: list = field(default_factory=list)
    restarts: int = RESTARTS
    escalated_seconds: float = 0.0
    generator: torch.Generator = field(default_factory=lambda: torch.Generator().manual_seed(0))

    def plan(self, rounds: int, bound: float):
        """``(restarts, steps)`` of the attack to run after round ``rounds`` whose global
        bound is ``bound``, or None."""
        if not self.every:
            return None
        self.history.append(bound)
        elapsed = time.perf_counter() - self.started
        if stalled(self.history) and self.escalated_seconds <= SHARE * elapsed:
            self.history = self.history[-1:]
            self.restarts = min(2 * self.restarts, MOST_RESTARTS)
            return self.restarts, STRONG_STEPS
        return (RESTARTS, STEPS) if rounds % self.every == 0 else None

    def search(self, model, x_L, x_U, spec, rounds: int, bound: float):
        """A checked counterexample (batch 1) found by this round's attack, or None."""
        planned = self.plan(rounds, bound)
        if planned is None:
            return None
        restarts, steps = planned
        start = time.perf_counter()
        point, _ = falsify.pgd(model, x_L, x_U, spec, steps=steps, restarts=restarts,
                              generator=self.generator)
        if steps == STRONG_STEPS:
            self.escalated_seconds += time.perf_counter() - start
        return point if falsify.checked_counterexample(model, point, x_L, x_U, spec) else None
