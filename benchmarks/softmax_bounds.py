"""hzono's two softmax bounds side by side (``bound_opts["hzono"]["softmax"]``, see
``lirpa_diffai/bound_ops/attention.py``): ``shifted`` (the interval softmax of the row minus its
shared symbols, ``n`` operations per row) against ``pairwise`` (DeepT's bound over every
difference ``x_j - x_i``, ``n^2`` per row), with correlated input rows (with none, both are the
interval softmax). Prints, per input-row count, the mean width of the logits' bounds and the
seconds of one pass of each, measured in one run, on test images of the network's dataset:

    python -m benchmarks.softmax_bounds runs/modern/vit_tiny_mnist_box --eps 0.02 --rows 16,all
    python -m benchmarks.softmax_bounds vit_tiny_centred --dataset cifar10 --eps 0.002   # untrained
"""
from __future__ import annotations

import argparse
import time

import torch
from auto_LiRPA import BoundedTensor, PerturbationLpNorm

import lirpa_diffai
from lirpa_diffai import data
from lirpa_diffai.bounded_module import parse_correlate_input
from lirpa_diffai.pipeline.model_source import load_model


def widths_and_seconds(model, x, eps: float, data_range, rows, softmax: str) -> tuple[float, float]:
    """Mean width of hzono's bounds of the logits at ``x`` (L-inf ball ``eps`` clipped to the
    data range) and the seconds of that pass (after a warm-up pass)."""
    bm = lirpa_diffai.BoundedModule(model, x, bound_opts={"hzono": {"correlate_input": rows, "softmax": softmax}})
    lower, upper = data.eps_box(x, eps, data_range)
    box = BoundedTensor(x, PerturbationLpNorm(x_L=lower, x_U=upper))
    with torch.no_grad():
        bm.compute_bounds(x=(box,), method="hzono")
        start = time.perf_counter()
        lb, ub = bm.compute_bounds(x=(box,), method="hzono")
    return (ub - lb).mean().item(), time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a run directory, a checkpoint, or a zoo name (untrained, with --dataset)")
    parser.add_argument("--dataset", default=None, help="the dataset (a zoo name needs it)")
    parser.add_argument("--eps", type=float, default=0.02)
    parser.add_argument("--rows", default="16,all", help="comma-separated correlate_input values")
    parser.add_argument("--images", type=int, default=16, help="first test images")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    loaded = load_model(args.model, dataset=args.dataset, untrained=True)
    model = loaded.model.eval()
    test = data.load_dataset(loaded.dataset, "test")
    x = torch.stack([test[i][0] for i in range(args.images)])
    print("| input rows | shifted width | pairwise width | pairwise / shifted width | shifted s | pairwise s |")
    print("|---|---:|---:|---:|---:|---:|")
    for text in args.rows.split(","):
        rows = parse_correlate_input(text.strip(), "--rows")
        (ws, ts), (wp, tp) = (widths_and_seconds(model, x, args.eps, data.data_range(loaded.dataset), rows, s)
                              for s in ("shifted", "pairwise"))
        print(f"| {text.strip()} | {ws:.4g} | {wp:.4g} | {wp / ws:.3f} | {ts:.3f} | {tp:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
