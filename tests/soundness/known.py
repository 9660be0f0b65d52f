"""Known failures: each a finding of issue 10 (its findings list, findings-10.md), matched
precisely by the method, the mode, a pattern of the graph's code and the outcome it produces.

``expected_failures.txt`` lists the operator cases (operator, seed, method, mode) that fail with
a known finding, written by ``benchmarks/soundness_table.py --write-expected``: the operator
tests xfail exactly those, strictly (a listed case that passes fails, so a fix shows up as a
line to delete). A random graph whose failure a finding here explains is counted as known
instead of failing. Remove an entry when its finding is fixed: every finding so far (issue 10's
F1-F21, and F22: alpha-CROWN-hzono on a batch of one sample reduced over its batch axis) is
fixed or refused by node now; a new finding gets an entry (its method labels as
``tests/soundness/methods.py`` spells them) until it is fixed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

EXPECTED_FILE = Path(__file__).with_name("expected_failures.txt")

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


def case_key(operator: str, seed: int, method: str, training: bool) -> str:
    return f"{operator} {seed} {method} {'train' if training else 'eval'}"


def load_expected(path: Path = EXPECTED_FILE) -> dict:
    """``{case key: finding id}`` from the expected-failures file (``#`` starts a comment)."""
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            *key, finding = line.split()
            out[" ".join(key)] = finding
    return out


def finding_id(known: Known) -> str:
    return known.finding.split(":")[0]
