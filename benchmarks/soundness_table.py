"""The soundness fuzzer's operator-by-method table for the README, and replay of one case.

    PYTHONPATH=$PWD python benchmarks/soundness_table.py --json runs/soundness.json --markdown
    PYTHONPATH=$PWD python benchmarks/soundness_table.py --replay operator --operator BoundAtan \
        --seed 0 --method HBox [--train]

Each operator runs on ``--seeds`` graphs of that operator alone (tests/soundness/sweep.py), with
every method in eval and training mode. A cell is ``sound`` when every case gave sound bounds,
``refused`` when every case was refused (or refused/sound), otherwise the known finding or the
failure kind.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
import logging
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from soundness.catalogue import NOT_TRACEABLE, SNIPPETS  # noqa: E402
from soundness.known import case_key, finding_id  # noqa: E402
from soundness.methods import METHODS  # noqa: E402
from soundness.sweep import graph_case, operator_case, run  # noqa: E402

# short column names for the README
COLUMNS = {"hzono[boxy,rows=0]": "hzono", "hzono[deepz,rows=all]": "hzono deepz all",
           "HSwitch": "HSwitch", "HSmooth": "HSmooth", "CROWN-hzono": "CROWN-hzono",
           "alpha-CROWN-hzono": "α-CROWN-hzono", "IBP": "IBP", "CROWN": "CROWN",
           "CROWN-IBP": "CROWN-IBP", "alpha-CROWN": "α-CROWN",
           "zono-input:CROWN": "zono input CROWN"}


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


def cell(records) -> str:
    kinds = {r.outcome.kind for r in records}
    failing = [r for r in records if not r.outcome.ok]
    if failing:
        known = sorted({r.known.finding.split(":")[0] for r in failing if r.known})
        unknown = sorted({r.outcome.kind for r in failing if not r.known})
        return ", ".join(known + [f"**{k}**" for k in unknown])
    if kinds <= {"sound", "unchecked"}:
        return "sound"
    if "sound" in kinds:
        return "sound / refused"
    return "refused"


def markdown(records) -> str:
    by_cell = defaultdict(list)
    for r in records:
        by_cell[r.operator, r.method].append(r)
    operators = sorted({r.operator for r in records})
    methods = [m for m in COLUMNS if any((op, m) in by_cell for op in operators)]
    lines = ["| operator | " + " | ".join(COLUMNS[m] for m in methods) + " |",
             "|---" * (len(methods) + 1) + "|"]
    for op in operators:
        lines.append(f"| {op.removeprefix('Bound')} | "
                     + " | ".join(cell(by_cell[op, m]) for m in methods) + " |")
    lines.append("")
    lines.append("Not traceable from torch (no snippet): "
                 + "; ".join(f"{k.removeprefix('Bound') or 'Bound'} ({v})" for k, v in sorted(NOT_TRACEABLE.items())))
    return "\n".join(lines)


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
    parser.add_argument("--markdown", action="store_true", help="print the README table")
    parser.add_argument("--write-expected", help="write the known failing operator cases here "
                        "(tests/soundness/expected_failures.txt)")
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
    operators = sorted(SNIPPETS) if args.operators == "all" else args.operators.split(",")
    methods = list(METHODS) if args.methods == "all" else args.methods.split(",")
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


def write_expected(records, path: Path) -> None:
    """The failing operator cases that a known finding explains, one per line."""
    lines = [f"{case_key(r.operator, r.seed, r.method, r.training)} {finding_id(r.known)}"
             for r in records if not r.outcome.ok and r.known is not None]
    path.write_text("# operator seed method mode finding: known failing operator cases, written by\n"
                    "# benchmarks/soundness_table.py --write-expected (findings: tests/soundness/known.py)\n"
                    + "\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
