"""DiffAI's domains as goals (its ``goals.py``: ``HBox()``, ``ZNIPS()``, ``HRand(k)``...): the
``Box`` goal's loss (cross-entropy on the worst-case margins of the input box), bounded in the
named domain whatever the configuration's ``method`` (see ``lirpa_diffai.domain.methods``).

==================  ===================================================================
``HBox``            hybrid zonotope, one row per input dim, boxy ReLU
``HSwitch``         the same with the switch ReLU
``HSmooth``         the same with the smooth ReLU
``HNIPS``           the same with DeepZ's ReLU
``ZBox``            pure zonotope (box part into rows after each non-linearity), boxy
``ZSwitch``,        the pure zonotope with the switch / smooth / DeepZ ReLU
``ZSmooth``,
``ZNIPS``
``HRand(k,          the box with k input dims, drawn per sample, correlated; ``a`` (a
a=HSwitch)``        hybrid domain above) gives the ReLU
==================  ===================================================================

``Box`` (``lirpa_diffai.goals.box``) bounds with the configured method, whose default
(hzono, boxy ReLU, no input rows) is DiffAI's ``Box``. DiffAI's optional weights of these
goals (``w``, ``tot_weight``, ``width_weight``, ...) are not taken.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..domain.methods import DOMAINS
from .box import BoxGoal
from .core import Goal, as_goal
from ..schedules import COERCE


class NamedDomain(BoxGoal):
    """``Box``'s loss in the domain ``method``."""

    method: ClassVar[str]

    def bound_method(self) -> dict:
        return {"method": self.method}


def _named(name: str) -> type:
    """The goal class ``name``: Box's loss with ``method=name``."""
    return dataclass(frozen=True)(type(name, (NamedDomain,), {
        "method": name, "__doc__": f"``Box``'s loss bounded with DiffAI's {name} (``method={name!r}``).",
        "__module__": __name__}))


HBox, HSwitch, HSmooth, HNIPS, ZBox, ZSwitch, ZSmooth, ZNIPS = (_named(name) for name in (
    "HBox", "HSwitch", "HSmooth", "HNIPS", "ZBox", "ZSwitch", "ZSmooth", "ZNIPS"))

HYBRID = (HBox, HSwitch, HSmooth, HNIPS)


def as_hybrid_domain(value, owner: str, param: str) -> NamedDomain:
    """``value`` if it is one of the hybrid named domains (HBox, HSwitch, HSmooth, HNIPS)."""
    goal = as_goal(value, owner, param)
    if not isinstance(goal, HYBRID):
        raise TypeError(f"{owner} argument '{param}' must be one of "
                        f"{', '.join(c.__name__ for c in HYBRID)}, got {goal}")
    return goal


COERCE["HybridDomain"] = as_hybrid_domain


@dataclass(frozen=True)
class HRand(NamedDomain):
    """DiffAI's ``HRand(num_correlated, a)``: the input box with ``k`` dims drawn at random per
    sample turned into correlated rows, bounded in the hybrid domain ``a`` (its ReLU)."""

    k: int
    a: HybridDomain = HSwitch()  # noqa: F821  (a COERCE key: the annotation is a string)

    def bound_method(self) -> dict:
        relu = DOMAINS[self.a.method.lower()].relu
        return {"method": "hzono", "hzono": {"relu": relu, "correlate_input": f"random:{self.k}"}}


DOMAIN_GOALS: dict[str, type[Goal]] = {cls.__name__: cls for cls in (*HYBRID, ZBox, ZSwitch, ZSmooth, ZNIPS, HRand)}

__all__ = ["DOMAIN_GOALS", "NamedDomain", *DOMAIN_GOALS]
