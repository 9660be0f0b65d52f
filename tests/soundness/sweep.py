"""The fuzzer's two drivers, shared by the tests and ``benchmarks/soundness_table.py``: one
operator at a time (a graph of that operator only), and random graphs of every operator."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Iterable, Optional

from .catalogue import SNIPPETS
from .check import Case, Outcome, run_case
from .graphs import Graph, build_graph
from .known import Known, expected_failure
from .methods import METHODS

EPS = 0.3
OPERATOR_STEPS = 2   # an operator applied twice: its second application sees a non-box input
GRAPH_STEPS = 6
WITNESS = {"samples": 200, "pgd_steps": 15, "pgd_targets": 16}


def operator_case(operator: str, seed: int) -> Case:
    graph, x = build_graph(seed, [operator], OPERATOR_STEPS, forced=operator)
    return Case(graph, x, EPS, seed)


def graph_case(seed: int, operators: Optional[Iterable[str]] = None) -> Case:
    graph, x = build_graph(seed, sorted(operators or SNIPPETS), GRAPH_STEPS)
    return Case(graph, x, EPS, seed)


def replay_command(kind: str, seed: int, method: str, training: bool, operator: str = "") -> str:
    target = f"--operator {operator} " if operator else ""
    return (f"PYTHONPATH=$PWD python benchmarks/soundness_table.py --replay {kind} {target}"
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
                + f"\n  replay: {replay_command(kind, self.seed, self.method, self.training, self.operator if kind == 'operator' else '')}")


def run(case: Case, operator: str, method: str, training: bool, witness=None) -> Record:
    outcome = run_case(case, METHODS[method], training, **(witness or WITNESS))
    graph: Graph = case.model
    return Record(operator, case.seed, method, training, outcome, graph.describe(),
                  expected_failure(graph.describe(), method, training, outcome))


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
