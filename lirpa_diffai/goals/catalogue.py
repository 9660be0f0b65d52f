"""The goal constructors of the DSL by name (:data:`GOALS`), and ``MMR``.

The paper's goals (section 4.2, Table 1) and DiffAI's (its ``goals.py``) live in one module
per family; each module's docstring has the table of its goals and their formulas:

- :mod:`.sampling`: ``Point``, ``Normal``, ``Uniform``, ``NormalPoint``, ``PointA``,
  ``PointB``, ``Sub``, ``Sample``, ``BiSample``, ``InclusionSample`` (= ``InSamp``)
- :mod:`.box`: ``Box``
- :mod:`.adversarial`: ``MI_FGSM``, ``PGD``, ``IFGSM``, ``NormalAdv``, ``AdvInclusion``,
  ``AdvDom``, ``BiAdv``
- :mod:`.combinators`: ``Mix``, ``LinMix``, ``DList``, ``DProb``, ``Coin``
- :mod:`.fast_adversarial`: ``FGSM``, ``GradAlign``
- here: ``MMR`` (Croce et al.'s Maximum Margin Regularizer at the box's center, no CE)

Every float argument may be a schedule (evaluated at ``t``) unless its goal says otherwise.
Goals other than the combinators, ``GradAlign`` and ``MMR`` produce a *region* ``(lo, hi)``
on a box (a point has ``lo == hi``); ``Sample``, ``BiSample`` and the attack-built goals need
one from their source goal.
"""
from __future__ import annotations

from dataclasses import dataclass

from .adversarial import AdvDom, AdvInclusion, BiAdv, IFGSM, MI_FGSM, NormalAdv, PGD
from .box import Box, margin_spec
from .combinators import Coin, DList, DProb, LinMix, Mix
from .core import Goal, GoalContext, PointGoal, Reboxing, center, input_box, margin_loss
from .sampling import (BiSample, InclusionSample, Normal, NormalPoint, Point, PointA, PointB,
                       Sample, Sub, Uniform)
from ..schedules import COERCE, Const, Schedule, as_schedule, describe


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


GOALS: dict[str, type[Goal]] = {cls.__name__: cls for cls in (
    Point, Normal, Uniform, NormalPoint, PointA, PointB, IFGSM, PGD, MI_FGSM, Box, Mix, LinMix,
    DList, DProb, Coin, MMR, Sub, Sample, BiSample, InclusionSample, NormalAdv, AdvInclusion,
    AdvDom, BiAdv)}
GOALS["InSamp"] = InclusionSample      # DiffAI's alias

__all__ = ["GoalContext", "Goal", "PointGoal", "Reboxing", "GOALS", "center", "input_box",
           "margin_spec", "margin_loss", *(name for name in GOALS if name != "InSamp")]
