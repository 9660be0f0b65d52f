"""The DiffAI paper's MNIST rows (appendix Table 9, eps 0.1: ConvSmall and ConvMed; Table 10,
eps 0.3: ConvSmall) reproduced: train each configuration of ``examples/goals/diffai_mnist_*``
(DiffAI's goal for these networks, schedules shortened to about an hour each here), certify
it at the table's eps on the test set, and print our row beside the paper's.

    python benchmarks/diffai_mnist_table.py --out runs/diffai_mnist            # the table
    python benchmarks/diffai_mnist_table.py --out /tmp/smoke --epochs 1 --train-subset 200 \\
        --limit 20 --timeout 2                                                  # a smoke run

Every part resumes: a run trains in ``--out/<config>`` with ``--resume`` (a finished run is
not trained again), the certification of a run is kept in
``--out/<config>/certify-<limit>-<methods>.json`` and reused when asked again with the same
eps, limit and methods (``--recertify`` redoes it), and BaB's decided samples are kept beside
it (``certify-<limit>-<methods>.bab.jsonl``). So the paper's full test set with the cheap
methods and a prefix with the slow ones can sit side by side:

    python benchmarks/diffai_mnist_table.py --limit 10000 --methods HBox
    python benchmarks/diffai_mnist_table.py --limit 1000 --methods HBox,CROWN,BaB

Certification, as ``python -m lirpa_diffai certify RUN --eps E --limit N --methods M
--hzono-rows all --timeout T`` does it: standard accuracy, MI-FGSM (20 steps of eps / 10,
momentum 0.8, DiffAI's ``MI_FGSM(k=20, r=2)`` test domain) and per method DiffAI's tester
figures. ``HBox`` is the paper's certifier, DiffAI's ``HBox`` test domain: a hybrid zonotope
with one correlated row per input pixel and the boxy ReLU (``--hzono-rows all`` gives it the
rows; once ``HBox`` means DiffAI's HBox by itself, the option changes nothing for it). The
paper's "PGD accuracy" column is DiffAI's MI_FGSM test domain, our MI-FGSM row.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import lirpa_diffai  # noqa: F401  (patches auto_LiRPA)
from lirpa_diffai.pipeline.certify_run import certify_checkpoint
from lirpa_diffai.training import train
from lirpa_diffai.training.checkpoint import CHECKPOINT, METRICS

GOALS = Path(__file__).resolve().parent.parent / "examples" / "goals"

# config -> (table, network, eps certified at, paper: standard, PGD, HBox-certified, epochs)
RUNS = {
    "diffai_mnist_conv_small_eps01": ("Table 9", "ConvSmall", 0.1, (97.8, 96.2, 95.5), 300),
    "diffai_mnist_conv_med_eps01": ("Table 9", "ConvMed", 0.1, (97.8, 96.3, 95.5), 300),
    "diffai_mnist_conv_small_eps03": ("Table 10", "ConvSmall", 0.3, (96.9, 93.6, 89.1), 400),
}
DEFAULT_METHODS = "HBox,CROWN,BaB"


def trained(config: str, out: Path, args, extra=()) -> tuple[Path, list[dict]]:
    """Train ``config`` into ``out`` (resuming), with the ``--set`` overrides ``extra``
    (``"goal=Point"``); its run directory and per-epoch metrics."""
    overrides = [f"train_subset={args.train_subset}"] if args.train_subset else []
    overrides += list(extra)
    train(str(GOALS / f"{config}.yaml"), out=str(out), epochs=args.epochs, resume=True,
          progress=not args.no_progress, overrides=overrides)
    metrics = [json.loads(line) for line in (out / METRICS).read_text().splitlines() if line]
    return out, metrics


def certified(run: Path, eps: float, args, hzono_rows: str | None = "all") -> dict:
    """The certify report of ``run`` at ``eps`` (reused from its file when that was written
    with the same eps, limit and methods); ``hzono_rows`` as ``certify_checkpoint`` takes it
    (None: the run's configuration's)."""
    path = run / f"certify-{args.limit}-{args.methods.replace(',', '+')}.json"
    wanted = {"eps": eps, "limit": args.limit, "methods": args.methods}
    if path.is_file() and not args.recertify:
        kept = json.loads(path.read_text())
        if kept.get("asked") == wanted:
            return kept
    report, table = certify_checkpoint(run / CHECKPOINT, args.methods, eps, args.limit,
                                       args.batch_size, str(path), hzono_rows=hzono_rows,
                                       timeout=args.timeout)
    print(table)
    kept = {**report.as_dict(), "asked": wanted}
    path.write_text(json.dumps(kept, indent=2) + "\n")
    return kept


def percent(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def table_row(config: str, metrics: list[dict], report: dict) -> str:
    """One markdown row: ours beside the paper's, and the training time."""
    table, network, eps, paper, paper_epochs = RUNS[config]
    rows = {m["method"]: m for m in report["methods"]}

    def cert(method: str) -> str:
        row = rows.get(method)
        return "-" if row is None else ("failed" if row.get("error") else percent(row["certified"]))
    hours = sum(m["seconds"] for m in metrics) / 3600
    return (f"| {table} | {network} | {eps:g} | {len(metrics)} ({paper_epochs}) | {hours:.2f} | "
            f"{percent(report['clean'])} ({paper[0]}) | {percent(report['attack'])} ({paper[1]}) | "
            f"{cert('HBox')} ({paper[2]}) | {cert('CROWN')} | {cert('BaB')} | {report['n']} |")


HEADER = ("| table | network | eps | epochs (paper) | training hours | standard % (paper) | "
          "MI-FGSM % (paper's PGD) | HBox % (paper) | CROWN % | BaB % | test images |\n"
          "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a benchmark that trains configurations and certifies them: --epochs,
    --train-subset, --recertify, --threads, --no-progress."""
    parser.add_argument("--epochs", type=int, default=None,
                        help="stop after this many epochs (default: the configuration's)")
    parser.add_argument("--train-subset", type=int, default=None,
                        help="train on the first N training images (default: the configuration's)")
    parser.add_argument("--recertify", action="store_true", help="certify again")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/diffai_mnist", help="directory of the runs")
    parser.add_argument("--configs", default=",".join(RUNS),
                        help=f"comma-separated subset of {', '.join(RUNS)}")
    parser.add_argument("--methods", default=DEFAULT_METHODS,
                        help=f"certify's methods (default {DEFAULT_METHODS})")
    parser.add_argument("--limit", type=int, default=10000,
                        help="test images certified (default 10000, the paper's test size)")
    parser.add_argument("--timeout", type=float, default=20.0, help="BaB's seconds per image")
    parser.add_argument("--batch-size", type=int, default=100, help="images per bound call")
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in RUNS]
    if unknown:
        parser.error(f"unknown configuration(s) {', '.join(unknown)}; choose from {', '.join(RUNS)}")
    rows = []
    for config in configs:
        run, metrics = trained(config, Path(args.out) / config, args)
        rows.append(table_row(config, metrics, certified(run, RUNS[config][2], args)))
    print("\n" + HEADER + "\n" + "\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
