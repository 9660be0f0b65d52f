"""Branching heuristics of branch and bound, by name.

ReLU splitting (:mod:`verify.bab`) asks a heuristic which unstable neuron of each subdomain
to split (the interface is in :mod:`.base`):

- ``intercept``: the intercept score of BaBSR (:mod:`.intercept`);
- ``babsr``: BaBSR, bias and intercept terms (Bunel et al. 2020; :mod:`.babsr`);
- ``fsb``: filtered smart branching, the best of BaBSR's and the intercept score's top
  neuron by a real CROWN bound of both children (De Palma et al. 2021; :mod:`.fsb`);
- ``kfsb``: the same over their top 3 each (beta-CROWN's kFSB, Wang et al. 2021).

Input splitting (:mod:`verify.input_split`, for inputs of few dimensions) halves the input
dimension of largest smear (:mod:`.smear`); it has no alternative to choose.
"""
from __future__ import annotations

from typing import Callable

from . import babsr, fsb, intercept
from .base import Problem
from .smear import smear_dimension

HEURISTICS: dict[str, Callable] = {"intercept": intercept.rank, "babsr": babsr.rank,
                                   "fsb": fsb.rank, "kfsb": fsb.kfsb_rank}
DEFAULT = "kfsb"   # measured: docs/verification.md, "The default, by measurement"


def heuristic(name: str) -> Callable:
    """The ranking function of the heuristic ``name`` (case-insensitive); a ValueError
    naming the known ones otherwise."""
    key = str(name).strip().lower()
    if key not in HEURISTICS:
        raise ValueError(f"unknown branching heuristic {name!r}; known: "
                         f"{', '.join(HEURISTICS)}")
    return HEURISTICS[key]


__all__ = ["HEURISTICS", "DEFAULT", "Problem", "heuristic", "smear_dimension"]
