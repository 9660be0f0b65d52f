"""Parameter schedules of the paper's DSL (section 4.1): ``Lin``, ``Until`` and constants.

A schedule maps the training time ``t`` -- the fractional number of epochs completed (half
of the first epoch done: ``t = 0.5``) -- to a float. Every argument of ``Lin``/``Until`` is
itself a schedule (a plain number is a :class:`Const`), so schedules nest.

This module also holds :class:`Term`, the frozen-dataclass base shared by schedules and goals
(normalised printing and argument checking), since goals take schedules as arguments.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Callable, ClassVar, Sequence


def format_number(x: float) -> str:
    """The shortest text that reads back as ``x``: ``150`` for 150.0, ``0.5``, ``1e-05``."""
    if float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))
    return repr(float(x))


def as_int(value, owner: str, param: str) -> int:
    """``value`` as a positive integer (integral floats accepted), else ``TypeError``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) and float(value).is_integer() and value >= 1
    if not ok:
        raise TypeError(f"{owner} argument '{param}' must be a positive integer, "
                        f"got {describe(value)}")
    return int(value)


def as_schedule(value, owner: str = "schedule", param: str = "value") -> "Schedule":
    """``value`` as a :class:`Schedule`: a schedule unchanged, a finite number as ``Const``."""
    if isinstance(value, Schedule):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Const(value)
    raise TypeError(f"{owner} argument '{param}' must be a schedule or a number, "
                    f"got {describe(value)}")


def describe(value) -> str:
    """A short description of an argument for error messages."""
    if isinstance(value, Term):
        return f"{type(value).kind} {value}"
    return repr(value)


# Argument coercions by the annotation of a Term's field; goals.py adds "Goal".
COERCE: dict[str, Callable] = {"Schedule": as_schedule, "int": as_int}


class Term:
    """A constructor application of the DSL: a frozen dataclass whose fields are its
    arguments, in the paper's order. ``str`` gives the normalised notation
    ``Name(arg1, arg2, ...)``; fields are coerced by their annotation (see ``COERCE``)."""

    kind: ClassVar[str] = "term"

    def __post_init__(self):
        for f in fields(self):
            value = COERCE[f.type](getattr(self, f.name), type(self).__name__, f.name)
            object.__setattr__(self, f.name, value)

    def arguments(self) -> list:
        """The argument values in declaration order."""
        return [getattr(self, f.name) for f in fields(self)]

    def __str__(self) -> str:
        args = self.arguments()
        if not args:
            return type(self).__name__
        return f"{type(self).__name__}({', '.join(str(a) for a in args)})"


class Schedule(Term):
    """A function of the training time ``t`` (fractional epochs): ``schedule(t) -> float``."""

    kind: ClassVar[str] = "schedule"

    def __call__(self, t: float) -> float:
        raise NotImplementedError


@dataclass(frozen=True)
class Const(Schedule):
    """The constant schedule ``t -> value`` (written as a plain number)."""

    value: float

    def __post_init__(self):
        v = self.value
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise TypeError(f"a constant must be a finite number, got {v!r}")
        object.__setattr__(self, "value", float(v))

    def __call__(self, t: float) -> float:
        return self.value

    def __str__(self) -> str:
        return format_number(self.value)


@dataclass(frozen=True)
class Lin(Schedule):
    """Linear annealing ``start + (end - start) * clamp((t - warmup) / steps, 0, 1)``.

    The value is ``start`` for the first ``warmup`` epochs, then moves linearly to ``end``
    over ``steps`` epochs (DiffAI's implementation order; the paper's prose names the last
    two arguments the other way round). ``steps == 0`` jumps to ``end`` at ``t = warmup``.
    """

    start: Schedule
    end: Schedule
    steps: Schedule
    warmup: Schedule = Const(0)

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.steps, Const) and self.steps.value < 0:
            raise ValueError(f"Lin argument 'steps' must be >= 0, got {self.steps}")

    def __call__(self, t: float) -> float:
        steps, warmup = self.steps(t), self.warmup(t)
        if steps > 0:
            frac = min(max((t - warmup) / steps, 0.0), 1.0)
        else:
            frac = 1.0 if t >= warmup else 0.0
        start = self.start(t)
        return start + (self.end(t) - start) * frac


@dataclass(frozen=True)
class Until(Schedule):
    """``s1(t)`` while ``t < m``, then ``s2(t - m)``: the second schedule sees time shifted
    by ``m`` epochs."""

    m: Schedule
    s1: Schedule
    s2: Schedule

    def __call__(self, t: float) -> float:
        m = self.m(t)
        return self.s1(t) if t < m else self.s2(t - m)


SCHEDULES: dict[str, type[Schedule]] = {"Lin": Lin, "Until": Until}


def step_schedule(milestones: Sequence[float], gamma: float) -> Schedule:
    """The multiplier ``gamma ** (number of milestones <= t)`` as nested ``Until``s:
    a learning rate "multiplied by gamma at epochs m1 < m2 < ...". Milestones must be
    positive and strictly increasing."""
    ms = [float(m) for m in milestones]
    if any(m <= 0 for m in ms) or any(b <= a for a, b in zip(ms, ms[1:])):
        raise ValueError(f"milestones must be positive and strictly increasing, got {ms}")
    schedule: Schedule = Const(gamma ** len(ms))
    for i in reversed(range(len(ms))):
        previous = ms[i - 1] if i else 0.0
        schedule = Until(ms[i] - previous, Const(gamma ** i), schedule)
    return schedule
