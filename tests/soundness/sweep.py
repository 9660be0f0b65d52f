"""The fuzzer's two drivers, shared by the tests and ``benchmarks/soundness_table.py``: one
operator at a time (a graph of that operator only), and random graphs of every operator."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from lirpa_diffai.bound_ops import HZONO_TRANSFORMERS

from .catalogue import SNIPPETS
from .check import Case, Outcome, classify_error, run_case
from .graphs import Graph, build_graph
from .known import Known, expected_failure
from .methods import METHODS

EPS = 0.3
OPERATOR_STEPS = 2   # an operator applied twice: its second application sees a non-box input
GRAPH_STEPS = 6
WITNESS = {"samples": 200, "pgd_steps": 15, "pgd_targets": 16}


def operator_case(operator: str, seed: int, tries: int = 10) -> Case:
    """A graph of ``operator`` only: the first of the graphs drawn from ``seed * 1000 + k``
    whose trace holds the operator's Bound class (a snippet can trace into other classes on
    some shapes: ``nn.Linear`` on a rank-3 input is MatMul and Add) or whose construction
    crashes, else the first (a graph refused by node at construction, e.g. ``nn.Conv1d``, is
    passed over for one that is bounded)."""
    cases = []
    for k in range(tries):
        graph, x = build_graph(seed * 1000 + k, [operator], OPERATOR_STEPS, forced=operator)
        cases.append(Case(graph, x, EPS, seed))
        try:
            if operator in traced_classes(cases[-1]):
                return cases[-1]
        except Exception as error:  # noqa: BLE001  (a construction crash is the case's finding)
            if classify_error(error, None).kind != "refused":
                return cases[-1]  # a refused setting (Conv1d, ceil_mode): try the next graph
    return cases[0]


def traced_classes(case: Case) -> set:
    """The Bound class names of the case's graph."""
    return {type(node).__name__ for node in case.trace(METHODS["IBP"])._modules.values()}


def hzono_operators() -> list[str]:
    """The operators with an hzono transformer of their own (the rest are refused by hzono)."""
    return sorted(name for name in SNIPPETS if name in {c.__name__ for c in HZONO_TRANSFORMERS})


def graph_case(seed: int) -> Case:
    """A random graph of every operator (even seeds) or of the operators hzono supports (odd
    seeds, so that hzono's refusals do not end most graphs' checks for its variants)."""
    operators = sorted(SNIPPETS) if seed % 2 == 0 else hzono_operators()
    graph, x = build_graph(seed, operators, GRAPH_STEPS)
    return Case(graph, x, EPS, seed)


def replay_command(kind: str, seed: int, method: str, training: bool, operator: str = "") -> str:
    target = f"--operator {operator} " if operator else ""
    return (f"python -m benchmarks.soundness_table --replay {kind} {target}"
            f"--seed {seed} --method '{method}'{' --train' if training else ''}")


@dataclass
class Record:
    operator: str          # the operator under test, or "graph" for a random graph
    seed: int
    method: str
    training: bool
    outcome: Outcome
    code: str
    known: Optional[Known]

    def report(self) -> str:
        kind = "graph" if self.operator == "graph" else "operator"
        mode = "training" if self.training else "eval"
        return (f"{self.outcome.kind}: {self.method} ({mode} mode), seed {self.seed}\n"
                f"  {self.outcome.detail}\n  graph:\n    " + self.code.replace("\n", "\n    ")
                + "\n  replay: " + replay_command(kind, self.seed, self.method, self.training,
                                                  self.operator if kind == "operator" else ""))


def run(case: Case, operator: str, method: str, training: bool, witness=None) -> Record:
    outcome = run_case(case, METHODS[method], training, **(witness or WITNESS))
    graph: Graph = case.model
    return Record(operator, case.seed, method, training, outcome, graph.describe(),
                  expected_failure(graph.describe(), method, training, outcome))
