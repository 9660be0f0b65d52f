"""DiffAI training on two of today's architecture families (issue 20, item 4): each
configuration of ``RUNS`` (a Box-based goal bounded by hzono) is trained, and the same network
with ``goal: Point`` (plain cross-entropy, the same data, epochs and optimizer); both are then
certified, and one markdown row per run is printed: clean accuracy, MI-FGSM accuracy,
certified accuracy with hzono, CROWN-IBP and CROWN, and the training time.

    python -m benchmarks.modern_training --out runs/modern                    # the table
    python -m benchmarks.modern_training --out /tmp/smoke --epochs 1 --train-subset 200 \\
        --limit 20 --crown-limit 5                                             # a smoke run

Training and certification resume as in ``benchmarks/diffai_mnist_table.py`` (whose
``trained`` and ``certified`` this reuses): a finished run is not trained again and a
certification asked again with the same eps, limit and methods is read from its file.
hzono certifies with the run's own hzono options (no input rows). CROWN runs on its own,
smaller prefix of the test set (``--crown-limit``) in smaller batches
(``--crown-batch-size``): its coefficients through the squeeze-excitation gate are dense
matrices, and its backward pass through attention costs far more than the other methods.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace

import torch

from benchmarks.diffai_mnist_table import add_run_arguments, certified, percent, trained

# configuration -> (network's name in the table, eps certified at)
RUNS = {
    "mobilenet_tiny_mnist_box": ("MobileNet-Tiny", 0.1),
    "vit_tiny_mnist_box": ("ViT-Tiny Centred", 0.02),
}
POINT = "point"   # the suffix of the run directory trained with goal: Point

HEADER = ("| network | goal | eps | training minutes | standard % | MI-FGSM % | hzono % | "
          "CROWN-IBP % | CROWN % | test images (CROWN's) |\n"
          "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")


def method_cells(report: dict) -> dict:
    """Certified percent per method of a certify report ("failed" where it failed)."""
    return {m["method"]: "failed" if m.get("error") else percent(m["certified"])
            for m in report["methods"]}


def table_row(network: str, goal: str, eps: float, metrics: list[dict], report: dict,
              crown: dict) -> str:
    """One markdown row: the cheap methods' figures from ``report``, CROWN's from ``crown``."""
    cells = {**method_cells(report), **method_cells(crown)}
    minutes = sum(m["seconds"] for m in metrics) / 60
    return (f"| {network} | {goal} | {eps:g} | {minutes:.1f} | {percent(report['clean'])} | "
            f"{percent(report['attack'])} | {cells.get('hzono', '-')} | "
            f"{cells.get('CROWN-IBP', '-')} | {cells.get('CROWN', '-')} | "
            f"{report['n']} ({crown['n']}) |")


def run_pair(config: str, args) -> list[str]:
    """Train ``config`` and its Point twin, certify both; their two table rows."""
    network, eps = RUNS[config]
    eps = args.eps if args.eps is not None else eps
    rows = []
    for suffix, extra, goal in (("", [], "Box (hzono)"), (f"-{POINT}", ["goal=Point"], "Point")):
        out = Path(args.out) / f"{config}{suffix}"
        run, metrics = trained(config, out, args, extra)
        cheap = SimpleNamespace(**{**vars(args), "methods": "hzono,CROWN-IBP"})
        crown = SimpleNamespace(**{**vars(args), "methods": "CROWN", "limit": args.crown_limit,
                                   "batch_size": args.crown_batch_size})
        rows.append(table_row(network, goal, eps, metrics, certified(run, eps, cheap, None),
                              certified(run, eps, crown, None)))
        print(rows[-1], flush=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/modern", help="directory of the runs")
    parser.add_argument("--configs", default=",".join(RUNS),
                        help=f"comma-separated subset of {', '.join(RUNS)}")
    parser.add_argument("--eps", type=float, default=None,
                        help="certify at this eps (default: each configuration's, see RUNS)")
    parser.add_argument("--limit", type=int, default=500,
                        help="test images for accuracy, MI-FGSM, hzono and CROWN-IBP (default 500)")
    parser.add_argument("--crown-limit", type=int, default=100,
                        help="test images certified by CROWN (default 100)")
    parser.add_argument("--batch-size", type=int, default=50, help="images per bound call")
    parser.add_argument("--crown-batch-size", type=int, default=5,
                        help="images per CROWN call (default 5: on MobileNet-Tiny a batch of 50 "
                             "took more than 13 GB)")
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    args.timeout = 20.0   # BaB's, unused: certified() passes it on
    torch.set_num_threads(args.threads)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in RUNS]
    if unknown:
        parser.error(f"unknown configuration(s) {', '.join(unknown)}; choose from {', '.join(RUNS)}")
    rows = [row for config in configs for row in run_pair(config, args)]
    print("\n" + HEADER + "\n" + "\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
