"""The measured claim of the MMR goal (Croce, Andriushchenko, Hein, AISTATS 2019): ConvSmall on
MNIST trained with MMR + adversarial training against plain training and adversarial training
alone, with the same data, epochs, batch size and optimizer; then on the first ``--limit``
test images at eps 0.1: clean accuracy, MI-FGSM accuracy, the unstable-ReLU fraction and the
certified accuracy with IBP, hzono, CROWN and CROWN-hzono, plus the median smallest region and
decision distances.

    # the table of docs/mmr.md: the three goals at once, one thread each
    for g in plain at mmr+at; do
        nohup python benchmarks/mmr_claim.py --out runs/mmr_claim --only $g > $g.log 2>&1 &
    done
    python benchmarks/mmr_claim.py --out runs/mmr_claim --table    # afterwards: the table
    python benchmarks/mmr_claim.py --train-subset 200 --epochs 1 --limit 100   # a smoke run

``--only mmr+at`` (etc.) runs one goal; three such processes started at once share the
results file (each reads it again before writing its entry). Adam at 1e-3, divided by 10 for
the last tenth of the epochs (the reference's schedule).

The three goals (``E`` = epochs; the reference's schedules compressed to the run's length: rho
rises over the first tenth of the epochs, k_B falls from 10% to 2% of the hidden units over the
run):

    plain    Point
    at       Mix(Point, PGD(40, r=2, restart=1, should_end=False), 0.5)
    mmr+at   DList((Mix(Point, PGD(40, r=2, restart=1, should_end=False), 0.5), 1),
                   (MMR(0.2, 0.2, Lin(0.1, 0.02, E, 0), 10, inf), Lin(0, 0.5, E / 10, 0)))

Each run trains in its own directory under ``--out`` (resumable: a finished run is only
evaluated again) and the results go to ``--out/claim.json`` and a markdown table on stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

import lirpa_diffai  # noqa: F401  (patches auto_LiRPA)
from lirpa_diffai import data, training
from lirpa_diffai.bounded_module import BoundedModule
from lirpa_diffai.pipeline.certify_run import evaluate_network
from lirpa_diffai.pipeline.model_source import load_trained
from lirpa_diffai.evaluation.regions import region_statistics
from lirpa_diffai.training.checkpoint import METRICS

METHODS = ("IBP", "hzono", "CROWN", "CROWN-hzono")
EPS = 0.1


def goals(epochs: int) -> dict[str, str]:
    """The three training goals for a run of ``epochs`` epochs."""
    at = "Mix(Point, PGD(40, r=2, restart=1, should_end=False), 0.5)"
    ramp = max(epochs / 10, 1e-3)
    mmr = f"MMR(0.2, 0.2, Lin(0.1, 0.02, {epochs}, 0), 10, inf)"
    return {"plain": "Point", "at": at,
            "mmr+at": f"DList(({at}, 1), ({mmr}, Lin(0, 0.5, {ramp:g}, 0)))"}


def write_config(path: Path, goal: str, args) -> Path:
    path.write_text(
        f"network: conv_small\ndataset: mnist\neps: {EPS}\ngoal: \"{goal}\"\nmethod: hzono\n"
        f"epochs: {args.epochs}\nbatch_size: {args.batch_size}\n"
        f"optimizer: {{name: adam, lr: 0.001}}\n"
        f"lr_schedule: {{milestones: [{0.9 * args.epochs:g}], gamma: 0.1}}\n"
        f"train_subset: {args.train_subset}\n"
        f"test_subset: 100\ntest_every: 0\nseed: {args.seed}\n")
    return path


def train_and_evaluate(name: str, goal: str, args) -> dict:
    run_dir = Path(args.out) / name.replace("+", "_")
    run_dir.mkdir(parents=True, exist_ok=True)
    config = write_config(run_dir.parent / f"{run_dir.name}.yaml", goal, args)
    start = time.perf_counter()
    training.train(str(config), out=str(run_dir), resume=(run_dir / "checkpoint.pt").exists(),
                   progress=False, log=lambda *_: None)
    train_seconds = time.perf_counter() - start
    model, cfg = load_trained(run_dir)
    start = time.perf_counter()
    x, y = data.load_dataset("mnist", "test").tensors
    x, y = x[:args.limit], y[:args.limit]
    bm = BoundedModule(model, x[:1]).eval()
    report = evaluate_network(model, bm, x, y, EPS, METHODS, batch_size=100)
    n = args.region_limit or len(x)
    stats = region_statistics(model, bm, x[:n], y[:n], EPS, METHODS, batch_size=100)
    lines = (run_dir / METRICS).read_text().splitlines() if (run_dir / METRICS).exists() else []
    epoch_seconds = sum(json.loads(line).get("seconds", 0.0) for line in lines if line.strip())
    return {"goal": goal, "train_seconds": epoch_seconds or train_seconds,
            "eval_seconds": time.perf_counter() - start,
            "report": report.as_dict(), "regions": stats.as_dict()}


def format_table(results: dict) -> str:
    """The table of docs/mmr.md: one row per goal, then the unstable fractions per layer."""
    head = ("| training | train s | clean | MI-FGSM | unstable ReLUs " + " / ".join(METHODS)
            + " | " + " | ".join(f"certified {m}" for m in METHODS)
            + " | median min d_B | median min d_D |")
    lines = [head, "|---" * (7 + len(METHODS)) + "|"]
    for name, r in results.items():
        rep, reg = r["report"], r["regions"]
        certified = {m["method"]: m.get("certified") for m in rep["methods"]}
        unstable = " / ".join(f"{reg['unstable'][m]['total']:.1%}" for m in METHODS)
        lines.append(
            f"| {name} | {r['train_seconds']:.0f} | {rep['clean']:.1%} | {rep['attack']:.1%} | "
            f"{unstable} | "
            + " | ".join("error" if certified[m] is None else f"{certified[m]:.1%}"
                         for m in METHODS)
            + f" | {reg['median_min_d_b']:.3g} | {reg['median_min_d_d']:.3g} |")
    lines.append("")
    for name, r in results.items():
        unstable = r["regions"]["unstable"]
        per_layer = "; ".join(
            f"{m} " + " / ".join(f"{v:.1%}" for k, v in unstable[m].items() if k != "total")
            for m in METHODS)
        layers = " / ".join(k for k in unstable[METHODS[0]] if k != "total")
        lines.append(f"unstable per layer ({layers}), {name}: {per_layer}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/mmr_claim")
    parser.add_argument("--train-subset", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--limit", type=int, default=1000, help="test images evaluated")
    parser.add_argument("--region-limit", type=int, default=None,
                        help="region statistics on the first N of them (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default=None, help="comma-separated subset of plain,at,mmr+at")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--table", action="store_true",
                        help="only print the table of the results in --out/claim.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    wanted = [] if args.table else args.only.split(",") if args.only else list(goals(args.epochs))
    results_path = Path(args.out) / "claim.json"
    for name, goal in goals(args.epochs).items():
        if name in wanted:
            result = train_and_evaluate(name, goal, args)
            # read again: runs of other goals (--only) may have written their results meanwhile
            results = json.loads(results_path.read_text()) if results_path.exists() else {}
            results[name] = result
            partial = results_path.with_suffix(f".tmp{os.getpid()}")
            partial.write_text(json.dumps(results, indent=2) + "\n")
            os.replace(partial, results_path)
            print(f"{name}: trained in {result['train_seconds']:.0f} s", flush=True)
    results = json.loads(results_path.read_text())
    results = {name: results[name] for name in goals(args.epochs) if name in results}
    print(f"ConvSmall on MNIST, {args.train_subset} training images, {args.epochs} epochs, "
          f"batch {args.batch_size}; eps {EPS} on {args.limit} test images (region statistics "
          f"on the first {args.region_limit or args.limit})\n")
    print(format_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
