"""The fuzzer's quick tier: a deterministic sample of each grid, drawn case by case, so that a
new operator, method or value range falls into it without being marked by hand.

The draw (``tests.support.draw``) ranks candidates by the CRC-32 of the case's name: each
operator gets its own choice of methods, so the quick run covers every method over the whole
catalogue while running only a few per operator. Everything the quick
tier leaves out runs in the slow tier (``-m slow``): the two tiers together are the full grid,
with no case in both.
"""
from __future__ import annotations

from typing import Sequence

from lirpa_diffai.domain.methods import DIFFAI_NAMES
from tests.support import draw

# how many methods of each family the quick tier runs per operator in eval mode (hzono, the
# plugin's own domain: two, e.g. one without and one with correlated input rows)
PER_FAMILY = {"hzono": 2}


def family(label: str) -> str:
    """The method family of a fuzzer method label (tests/soundness/methods.py): hzono (its
    variants and DiffAI's hybrid names), the pure zonotope (DiffAI's ``Z...`` names), CROWN-hzono,
    IBP, CROWN-IBP, CROWN, alpha-CROWN, forward, or a zonotope input."""
    if label.startswith("zono-input:"):
        return "zonotope input"
    if label in DIFFAI_NAMES:
        return "pure zonotope" if label.startswith("Z") else "hzono"
    if label.startswith("hzono["):
        return "hzono"
    if "hzono" in label:
        return "CROWN-hzono"
    if label.startswith("forward"):
        return "forward"
    if label == "IBP":
        return "IBP"
    if "IBP" in label:
        return "CROWN-IBP"
    if label.startswith("alpha") or "Optimized" in label:
        return "alpha-CROWN"
    return "CROWN"


def quick_methods(key: str, labels: Sequence[str]) -> set[tuple[str, bool]]:
    """The (method, training) cases of ``key`` (an operator, a seed) in the quick tier: in eval
    mode ``PER_FAMILY`` methods (default one) of each family, in training mode one of hzono's
    and one of another family's, each drawn for ``key``."""
    families: dict[str, list[str]] = {}
    for label in labels:
        families.setdefault(family(label), []).append(label)
    chosen = {(label, False) for name, members in families.items()
              for label in draw(f"{key}|eval|{name}", members, PER_FAMILY.get(name, 1))}
    others = [label for label in labels if family(label) != "hzono"]
    chosen.update((label, True) for label in draw(f"{key}|train|hzono", families.get("hzono", []))
                  + draw(f"{key}|train|other", others))
    return chosen


def quick_regimes(key: str, regimes: Sequence[str], k: int = 2) -> list[str]:
    """``k`` of the value ranges for ``key`` (an operator without a kink, pole or sign change of
    its own: the kinked ones run in every range)."""
    return draw(f"{key}|regime", regimes, k)
