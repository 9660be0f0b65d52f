"""The soundness fuzzer's operator-by-method table for the README, and replay of one case.

    python -m benchmarks.soundness_table --seeds 1 --json runs/soundness.json --markdown \
        --write-expected tests/soundness/expected_failures.txt
    python -m benchmarks.soundness_table --replay operator --operator BoundAtan \
        --seed 0 --method HBox [--train]

Each operator runs on ``--seeds`` graphs of that operator alone (tests/soundness/sweep.py), with
every method in eval and training mode (about 4 minutes per seed on one core). A cell sums up a
group of methods: ``sound`` when every case gave sound bounds, ``refused (letters)`` when every
case was refused (the letters say why), ``sound / refused`` when both, otherwise the findings
(tests/soundness/known.py) of the failing cases, or in bold a failure no finding explains.
"""
from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
import warnings
from pathlib import Path

import torch

from tests.soundness.catalogue import NOT_TRACEABLE, SNIPPETS
from lirpa_diffai.domain.methods import DOMAINS
from tests.soundness.check import Outcome
from tests.soundness.known import KNOWN, case_key, expected_failure, finding_id
from tests.soundness.methods import METHODS
from tests.soundness.sweep import Record, graph_case, operator_case, run

# README columns: groups of methods (a cell sums up every method of its group, eval and train)
COLUMNS = {
    "hzono (18 variants)": lambda m: METHODS[m].method.lower() in DOMAINS
    and not DOMAINS[METHODS[m].method.lower()].pure and not METHODS[m].zonotope_input,
    "pure zonotope (4)": lambda m: METHODS[m].method.lower() in DOMAINS
    and DOMAINS[METHODS[m].method.lower()].pure,
    "CROWN-hzono": lambda m: m == "CROWN-hzono",
    "α-CROWN-hzono": lambda m: m == "alpha-CROWN-hzono",
    "IBP": lambda m: m == "IBP",
    "CROWN": lambda m: m == "CROWN",
    "CROWN-IBP": lambda m: m == "CROWN-IBP",
    "α-CROWN": lambda m: m == "alpha-CROWN",
    "zonotope input (4)": lambda m: METHODS[m].zonotope_input,
}

# why a case was refused, from the refusal's message: (pattern, legend text)
REASONS = [
    (r"hzono has no transformer", "hzono has no transformer for the operator"),
    (r"multiplies two perturbed values", "hzono multiplies by constants only (the snippet squares its input)"),
    (r"is not supported yet|not implemented", "auto_LiRPA 0.3 has no bound for the operator"),
    (r"another function than the model", "auto_LiRPA 0.3 traces it as another function (e.g. zero padding)"),
    (r"batch", "the operation reads across the batch axis"),
    (r"Dropout|dropout", "dropout in this mode"),
]


def sweep(operators, methods, seeds, modes):
    records = []
    for operator in operators:
        start = time.time()
        for seed in seeds:
            case = operator_case(operator, seed)
            for method in methods:
                for training in modes:
                    records.append(run(case, operator, method, training))
        print(f"{operator}: {time.time() - start:.1f}s", file=sys.stderr, flush=True)
    return records


def reason_letter(detail: str, legend: dict) -> str:
    for pattern, text in REASONS:
        if re.search(pattern, detail):
            break
    else:
        text = detail.split("\n")[0][:90]
    return legend.setdefault(text, "abcdefghijklmnopqrstuvwxyz"[len(legend)])


def cell(records, legend: dict) -> str:
    """sound / refused (with the reasons' letters) / the findings of the failing cases."""
    failing = [r for r in records if not r.outcome.ok]
    if failing:
        known = sorted({finding_id(r.known) for r in failing if r.known}, key=lambda f: int(f[1:]))
        unknown = sorted({r.outcome.kind for r in failing if not r.known})
        return ", ".join(known + [f"**{k}**" for k in unknown])
    kinds = {r.outcome.kind for r in records} - {"unchecked"}
    letters = sorted({reason_letter(r.outcome.detail, legend) for r in records if r.outcome.kind == "refused"})
    refused = f"refused ({','.join(letters)})" if letters else ""
    if kinds == {"sound"}:
        return "sound"
    return refused if "sound" not in kinds else f"sound / {refused}"


def markdown(records) -> str:
    """The operator-by-method table (one row per operator, one column per method group)."""
    legend: dict = {}
    operators = sorted({r.operator for r in records})
    lines = ["| operator | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for op in operators:
        cells = [cell([r for r in records if r.operator == op and member(r.method)], legend)
                 for member in COLUMNS.values()]
        lines.append(f"| {op.removeprefix('Bound')} | " + " | ".join(cells) + " |")
    used = {f for line in lines for f in re.findall(r"\bF\d+\b", line)}
    findings = {}
    for known in KNOWN:
        findings.setdefault(finding_id(known), []).append(known.finding.split(": ", 1)[1])
    described = [f"{f} {' / '.join(texts)}" for f, texts in sorted(findings.items(), key=lambda kv: int(kv[0][1:]))
                 if f in used]
    if described:
        lines.append("")
        lines.append("Findings: " + "; ".join(described) + ".")
    lines.append("")
    lines.append("Refused because: " + "; ".join(f"({letter}) {text}" for text, letter in legend.items()) + ".")
    lines.append("")
    untraceable = (f"{k.removeprefix('Bound') or 'Bound'} ({v})" for k, v in sorted(NOT_TRACEABLE.items()))
    lines.append("Not traceable from torch (no snippet): " + "; ".join(untraceable) + ".")
    return "\n".join(lines)


def fuzz_graphs(seeds, methods) -> int:
    """Random graphs of ``seeds`` with ``methods``: prints each failure no finding explains and
    a count of the known ones; exit status 1 if any failure is unexplained."""
    unexplained, known = 0, {}
    for seed in seeds:
        case = graph_case(seed)
        for method in methods:
            for training in (False, True):
                record = run(case, "graph", method, training)
                if record.outcome.ok:
                    continue
                if record.known:
                    known[finding_id(record.known)] = known.get(finding_id(record.known), 0) + 1
                else:
                    unexplained += 1
                    print("UNEXPLAINED " + record.report(), flush=True)
        print(f"graph {seed} done", file=sys.stderr, flush=True)
    print(f"{unexplained} unexplained failures; known: {known}")
    return 1 if unexplained else 0


def replay(args) -> int:
    training = args.train
    if args.replay == "operator":
        case = operator_case(args.operator, args.seed)
    else:
        case = graph_case(args.seed)
    record = run(case, args.operator or "graph", args.method, training)
    print(record.report())
    print("known:", record.known.finding if record.known else "no")
    return 0 if record.outcome.ok else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--operators", default="all", help="comma-separated Bound class names")
    parser.add_argument("--methods", default="all", help="comma-separated method labels")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--json", help="write every record here")
    parser.add_argument("--from-json", help="read the records of an earlier --json run instead of sweeping")
    parser.add_argument("--markdown", action="store_true", help="print the README table")
    parser.add_argument("--write-expected", help="write the known failing operator cases here "
                        "(tests/soundness/expected_failures.txt)")
    parser.add_argument("--graph-seeds", help="instead of operators: random graphs of these seeds "
                        "(a range 'first:last'), every method in both modes; prints the failures")
    parser.add_argument("--replay", choices=("operator", "graph"))
    parser.add_argument("--operator", default="")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--method", default="hzono[boxy,rows=0]")
    parser.add_argument("--train", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    logging.disable(logging.CRITICAL)
    if args.replay:
        return replay(args)
    if args.graph_seeds:
        first, last = map(int, args.graph_seeds.split(":"))
        return fuzz_graphs(range(first, last), list(METHODS) if args.methods == "all" else args.methods.split(","))
    operators = sorted(SNIPPETS) if args.operators == "all" else args.operators.split(",")
    methods = list(METHODS) if args.methods == "all" else args.methods.split(",")
    if args.from_json:
        records = read_records(Path(args.from_json))
    else:
        records = sweep(operators, methods, range(args.seeds), (False, True))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(
            [{"operator": r.operator, "seed": r.seed, "method": r.method, "training": r.training,
              "kind": r.outcome.kind, "detail": r.outcome.detail, "code": r.code,
              "known": r.known.finding if r.known else None} for r in records], indent=1))
    if args.write_expected:
        write_expected(records, Path(args.write_expected))
    if args.markdown:
        print(markdown(records))
    unexplained = [r for r in records if not r.outcome.ok and r.known is None]
    for r in unexplained:
        print("UNEXPLAINED " + r.report(), file=sys.stderr)
    return 1 if unexplained else 0


def read_records(path: Path) -> list:
    """Records of a ``--json`` file, their findings matched again with today's known.py."""
    records = []
    for r in json.loads(path.read_text()):
        outcome = Outcome(r["kind"], r["detail"])
        known = expected_failure(r["code"], r["method"], r["training"], outcome)
        records.append(Record(r["operator"], r["seed"], r["method"], r["training"], outcome, r["code"], known))
    return records


def write_expected(records, path: Path) -> None:
    """The failing operator cases that a known finding explains, one per line."""
    lines = [f"{case_key(r.operator, r.seed, r.method, r.training)} {finding_id(r.known)}"
             for r in records if not r.outcome.ok and r.known is not None]
    path.write_text("# operator seed method mode finding: known failing operator cases, written by\n"
                    "# benchmarks/soundness_table.py --write-expected (findings: tests/soundness/known.py)\n"
                    + "\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
