"""Known failures: each a finding of issue 10 (its findings list, findings-10.md), matched
precisely by the method, the mode, a pattern of the graph's code and the outcome it produces.

``expected_failures.txt`` lists the operator cases (operator, seed, method, mode) that fail with
a known finding, written by ``benchmarks/soundness_table.py --write-expected``: the operator
tests xfail exactly those, strictly (a listed case that passes fails, so a fix shows up as a
line to delete). A random graph whose failure a finding here explains is counted as known
instead of failing. Remove an entry when its finding is fixed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

EXPECTED_FILE = Path(__file__).with_name("expected_failures.txt")

HZONO = frozenset({"hzono[boxy,rows=0]", "hzono[boxy,rows=2]", "hzono[boxy,rows=all]",
                   "hzono[deepz,rows=0]", "hzono[deepz,rows=2]", "hzono[deepz,rows=all]",
                   "hzono[switch,rows=0]", "hzono[switch,rows=2]", "hzono[switch,rows=all]",
                   "hzono[smooth,rows=0]", "hzono[smooth,rows=2]", "hzono[smooth,rows=all]",
                   "Box", "HBox", "HNIPS", "HSwitch", "HSmooth", "ZBox", "ZNIPS", "ZSwitch", "ZSmooth",
                   "HRand", "zono-input:hzono[deepz,rows=all]"})
HZONO_ROWS = frozenset(m for m in HZONO if "rows=0" not in m and not m.startswith("H"))
BACKWARD = frozenset({"CROWN", "alpha-CROWN", "zono-input:CROWN"})
CROWN_HZONO = frozenset({"CROWN-hzono", "alpha-CROWN-hzono", "zono-input:CROWN-hzono"})
ALPHA = frozenset({"alpha-CROWN", "alpha-CROWN-hzono"})
IBP = frozenset({"IBP", "zono-input:IBP"})
CROWN_IBP = frozenset({"CROWN-IBP"})
ALL = HZONO | BACKWARD | CROWN_HZONO | IBP | CROWN_IBP
CROWN_FAMILY = BACKWARD | CROWN_HZONO | CROWN_IBP
BOTH = (False, True)
NO_PARAMETERS = r"^(?![\s\S]*(nn\.Linear|nn\.Conv|@ W|BatchNorm|nn\.RNN|buffer))"


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


KNOWN: list[Known] = [
    Known("F10: CROWN crashes in get_sparse_C on a graph without parameters", CROWN_FAMILY,
          NO_PARAMETERS, ("crash",), r"IndexError: (list|tuple) index out of range"),
    Known("F11: alpha-CROWN crashes without an optimizable activation", ALPHA, r"",
          ("crash",), r"does not require grad|index \d+ is out of bounds for dimension 0"),
    Known("F12: CROWN crashes on Linear/MatMul of a rank > 2 input", CROWN_FAMILY,
          r"nn\.Linear|@ W", ("crash",), r"NoneType' object is not subscriptable|must match the size"),
    Known("F12: CROWN crashes on a broadcast buffer", CROWN_FAMILY, r"\+ buffer", ("crash",),
          r"Expected size for first two dimensions|is invalid for input of size"),
    Known("F12: CROWN crashes on a broadcast constant", CROWN_FAMILY, r"const\(", ("crash",),
          r"tuple index out of range"),
    Known("F12: MaxPool2d(padding != 0) refused without naming the node", CROWN_FAMILY,
          r"MaxPool2d\([^)]*padding=1", ("crash",), r"padding"),
    Known("F12: ReduceMax refused without naming the node", CROWN_FAMILY, r"\.amax\(", ("crash",),
          r"ReduceMax"),
    Known("F12: Pow refused without naming the node", CROWN_FAMILY, r"\*\* 3", ("crash",), r"Exponent"),
    Known("F12: CROWN crashes on Where / Pow / Not (a constant input without bounds)", CROWN_FAMILY,
          r"torch\.where|\*\* \d", ("crash",), r"has no attribute 'lower'"),
    Known("F12: IBP crashes on CumSum", IBP | CROWN_IBP, r"torch\.cumsum", ("crash",),
          r"default_interval_propagate"),
    Known("F12: IBP and CROWN crash on Heaviside", IBP | CROWN_FAMILY, r"torch\.heaviside", ("crash",),
          r"index out of range"),
    Known("F13: one-sided clamp crashes every method", ALL, r"clamp\(\w+, (min|max)=", ("crash",),
          r"must match the size"),
    Known("F14: a slice with a step crashes every method", ALL, r"::[2-9]\]", ("crash",),
          r"AssertionError"),
    Known("F15: nn.RNN crashes at construction", ALL, r"nn\.RNN", ("crash",), r"BoundRNNImpl"),
    Known("F17: a PerturbationHybridZonotope input with CROWN in patches mode (known crash)",
          frozenset({"zono-input:CROWN", "zono-input:CROWN-hzono"}), r"pretrained:|nn\.Conv2d",
          ("crash",), r"must match the size|shape"),
    Known("F16: the CROWN family crashes or is unsound on operations along the batch axis",
          CROWN_FAMILY, r"# batch axis", ("crash", "unsound")),
    Known("F18: CROWN crashes on Gather / Split of a convolution's or pooling's output (patches)",
          CROWN_FAMILY, r"(Conv2d|AvgPool2d|MaxPool2d)[\s\S]*(\.select\(|torch\.split\()", ("crash",),
          r"Expected size for first two dimensions|einsum\(\)|TorchScript|is invalid for input of size"),
    Known("F19: CROWN crashes on a constant with a batch-sized first axis", CROWN_FAMILY,
          r"const\(", ("crash",), r"AssertionError|tuple index out of range|Expected size for first two dimensions|einsum\(\)"),
]


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
