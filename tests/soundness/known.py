"""Known failures: each a finding in the issue's findings list, matched precisely by the method,
the mode, a pattern of the graph's code and the outcome it produces.

A case matched here is an expected failure: the operator tests mark it ``xfail`` and fail it
(strictly) when it passes, so a fix shows up as a test to update; a random graph whose failure
matches one is counted as known instead of failing. Remove an entry when its finding is fixed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

HZONO = frozenset({"hzono[boxy,rows=0]", "hzono[boxy,rows=2]", "hzono[boxy,rows=all]",
                   "hzono[deepz,rows=0]", "hzono[deepz,rows=2]", "hzono[deepz,rows=all]",
                   "hzono[switch,rows=0]", "hzono[switch,rows=2]", "hzono[switch,rows=all]",
                   "hzono[smooth,rows=0]", "hzono[smooth,rows=2]", "hzono[smooth,rows=all]",
                   "HBox", "HNIPS", "HSwitch", "HSmooth", "zono-input:hzono[deepz,rows=all]"})
HZONO_ROWS = frozenset(m for m in HZONO if "rows=0" not in m and not m.startswith("H"))
BACKWARD = frozenset({"CROWN", "alpha-CROWN", "zono-input:CROWN"})
CROWN_HZONO = frozenset({"CROWN-hzono", "alpha-CROWN-hzono", "zono-input:CROWN-hzono"})
ALPHA = frozenset({"alpha-CROWN", "alpha-CROWN-hzono"})
IBP = frozenset({"IBP", "zono-input:IBP"})
CROWN_IBP = frozenset({"CROWN-IBP"})
ALL = HZONO | BACKWARD | CROWN_HZONO | IBP | CROWN_IBP
BOTH = (False, True)


@dataclass(frozen=True)
class Known:
    """A finding: ``methods`` in ``modes`` on a graph whose code matches ``code`` give the
    outcome ``kind`` with a detail matching ``detail``."""

    finding: str
    methods: frozenset
    code: str
    kinds: tuple
    detail: str = ""
    modes: tuple = BOTH

    def applies(self, code: str, method: str, training: bool) -> bool:
        return method in self.methods and training in self.modes and re.search(self.code, code) is not None

    def explains(self, outcome) -> bool:
        return outcome.kind in self.kinds and re.search(self.detail, outcome.detail) is not None


KNOWN: list[Known] = []


def expected_failure(code: str, method: str, training: bool, outcome=None) -> Optional[Known]:
    """The known finding for this case (and ``outcome``, when given), or None."""
    for known in KNOWN:
        if known.applies(code, method, training) and (outcome is None or known.explains(outcome)):
            return known
    return None
