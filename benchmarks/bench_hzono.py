"""Cost of hzono against the forward pass, IBP and CROWN-IBP, measured in one run.

    python benchmarks/bench_hzono.py                      # ResNet-34 and DenseNet-100, batch 8
    python benchmarks/bench_hzono.py --networks resnet_tiny --batch 4 --json out.json

For each network: median seconds (after a warm-up) and peak extra resident memory of the
forward pass, IBP, hzono with 0 and with 16 correlated input rows, and CROWN-IBP, all under
``torch.no_grad`` with the same inputs; then the ratios the project targets:

    hzono(0 rows) / IBP            <= 1.25
    hzono(16 rows) / (17 x forward) <= 1.5

(for networks in eval mode; with ``name:train`` the abstract layers act and add rows of their
own, so the ratios are printed without a target).

The pure zonotope (``--zono-networks``, default ConvSmall and ConvMed): ZNIPS against HNIPS
(the same input element, one row per input dim, and ReLU; ZNIPS adds a fresh row per
unstable neuron after each ReLU) and against hzono with a box input, with the rows each has
at the output and the mean width of the margin bounds:

    python benchmarks/bench_hzono.py --networks '' --zono-networks conv_small,conv_med --batch 4

The column "fresh MiB" is each method's peak extra memory in a process of its own (this script
run again with ``--probe network:method``): the network, its bounded module and the inputs are
built, one warm-up call runs, and the peak of one more call above the level before it is
read, so no other method's freed memory is reused or counted. Peak memory is read from
/proc/self/status (VmHWM after resetting it through
/proc/self/clear_refs), so it counts every allocation of the process, not just torch's. glibc is
set up as the command-line tools set it (``lirpa_diffai.runtime.keep_freed_memory``).
"""
from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

import lirpa_diffai
from lirpa_diffai.evaluation import margins as certify
from lirpa_diffai import data, models
from lirpa_diffai.runtime import keep_freed_memory

TARGETS = {"hzono0_over_ibp": 1.25, "hzono16_over_17_forward": 1.5}


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak_rss() -> int:
    """Reset the process's resident-memory high-water mark (VmHWM) to the current resident
    size, through /proc/self/clear_refs ("5"); return that size (KiB). Freed heap memory is
    first handed back to the system (glibc ``malloc_trim``), so that a call reusing it is
    not counted as free."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    return _status_kib("VmRSS")


def peak_rss_above(base_kib: int) -> float:
    """Peak resident memory since ``reset_peak_rss`` above ``base_kib``, in MiB."""
    return max(_status_kib("VmHWM") - base_kib, 0) / 1024


def timed(fn):
    """``fn()`` once: its result, wall-clock seconds, and the peak resident memory it added
    (MiB; every allocation of the process counts, not only torch's)."""
    base = reset_peak_rss()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    return result, seconds, peak_rss_above(base)


def measure(fn, repeats: int) -> tuple[float, float]:
    """Median seconds of ``fn()`` over ``repeats`` runs after one warm-up (the steady state of
    a loop, freed memory reused), and the peak resident memory of one more call above the level
    before it (MiB, measured apart: ``timed`` first hands freed memory back)."""
    fn()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), timed(fn)[2]


def network_runs(name: str, batch: int, eps: float, train: bool):
    """The network and ``{method: call}`` of :func:`bench_network`, on the first ``batch``
    CIFAR-10 test images."""
    net = models.get(name, "cifar10").train(train)
    x = data.load_dataset("cifar10", "test").tensors[0][:batch]
    y = data.load_dataset("cifar10", "test").tensors[1][:batch]
    C = certify.margin_spec(y, 10)
    box = certify.input_box(x, eps)
    bounded = {rows: lirpa_diffai.BoundedModule(net, x, bound_opts={"hzono": {"correlate_input": rows}})
               for rows in (0, 16)}
    for module in bounded.values():
        module.train(train)  # auto_LiRPA's train() returns None
    bm = bounded[0]
    runs = {
        "forward": lambda: net(x),
        "IBP": lambda: bm.compute_bounds(x=(box,), C=C, method="IBP"),
        "hzono_0_rows": lambda: bm.compute_bounds(x=(box,), C=C, method="hzono"),
        "hzono_16_rows": lambda: bounded[16].compute_bounds(x=(box,), C=C, method="hzono"),
        "CROWN-IBP": lambda: bm.compute_bounds(x=(box,), C=C, method="CROWN-IBP"),
    }
    return runs


def probe(spec: str, batch: int, eps: float) -> float:
    """``--probe network[:train]:method``: the method's peak extra MiB after one warm-up call,
    in this (fresh) process."""
    name, *mode, method = spec.split(":")
    run = network_runs(name, batch, eps, train=mode == ["train"])[method]
    with torch.no_grad():
        run()
        return timed(run)[2]


def fresh_peak(name: str, method: str, batch: int, eps: float, train: bool, threads: int) -> float:
    """:func:`probe` in a new Python process running this script."""
    spec = ":".join([name] + (["train"] if train else []) + [method])
    out = subprocess.run([sys.executable, __file__, "--probe", spec, "--batch", str(batch),
                          "--eps", repr(eps), "--threads", str(threads)],
                         capture_output=True, text=True, check=True).stdout
    return float(out.split()[-1])


def bench_network(name: str, batch: int, eps: float, repeats: int, train: bool = False,
                  threads: int = 2) -> dict:
    runs = network_runs(name, batch, eps, train)
    result = {"network": name, "batch": batch, "train_mode": train, "methods": {}}
    with torch.no_grad():
        for method, fn in runs.items():
            seconds, peak = measure(fn, repeats)
            result["methods"][method] = {"seconds": seconds, "peak_mib": peak,
                                         "fresh_peak_mib": fresh_peak(name, method, batch, eps, train, threads)}
    m = result["methods"]
    result["ratios"] = {
        "hzono0_over_ibp": m["hzono_0_rows"]["seconds"] / m["IBP"]["seconds"],
        "hzono16_over_17_forward": m["hzono_16_rows"]["seconds"] / (17 * m["forward"]["seconds"]),
    }
    return result


def bench_pure_zonotope(name: str, batch: int, eps: float, repeats: int) -> dict:
    """Seconds, output rows and mean margin width of hzono (box input), HNIPS and ZNIPS."""
    net = models.get(name, "cifar10").eval()
    test = data.load_dataset("cifar10", "test").tensors
    x, y = test[0][:batch], test[1][:batch]
    C = certify.margin_spec(y, 10)
    box = certify.input_box(x, eps)
    bm = lirpa_diffai.BoundedModule(net, x)
    result = {"network": name, "batch": batch, "methods": {}}
    with torch.no_grad():
        for method in ("hzono", "HNIPS", "ZNIPS"):
            def run():
                return bm.compute_bounds(x=(box,), C=C, method=method)
            seconds, peak = measure(run, repeats)
            lb, ub = run()
            result["methods"][method] = {"seconds": seconds, "peak_mib": peak,
                                         "output_rows": bm.hzono_output.num_errors,
                                         "mean_width": float((ub - lb).mean())}
    m = result["methods"]
    result["ratios"] = {"ZNIPS_over_HNIPS": m["ZNIPS"]["seconds"] / m["HNIPS"]["seconds"],
                        "ZNIPS_over_hzono": m["ZNIPS"]["seconds"] / m["hzono"]["seconds"]}
    return result


def report_pure_zonotope(results: list[dict]) -> str:
    lines = ["| network | method | seconds | peak MiB | rows at the output | mean margin width |",
             "|---|---|---:|---:|---:|---:|"]
    for r in results:
        for method, m in r["methods"].items():
            lines.append(f"| {r['network']} | {method} | {m['seconds']:.3f} | {m['peak_mib']:.0f} | "
                         f"{m['output_rows']} | {m['mean_width']:.4g} |")
    lines.append("")
    lines += [f"{r['network']}: {key} = {value:.2f}" for r in results for key, value in r["ratios"].items()]
    return "\n".join(lines)


def report(results: list[dict]) -> str:
    lines = ["| network | method | seconds | peak MiB | fresh MiB |", "|---|---|---:|---:|---:|"]
    for r in results:
        label = r["network"] + (" (train)" if r["train_mode"] else "")
        for method, m in r["methods"].items():
            lines.append(f"| {label} | {method} | {m['seconds']:.3f} | {m['peak_mib']:.0f} | "
                         f"{m['fresh_peak_mib']:.1f} |")
    lines.append("")
    for r in results:
        for key, value in r["ratios"].items():
            if r["train_mode"]:  # the abstract layers add rows: "0 rows" is not a box pass
                verdict = "(no target: abstract layers act in training mode)"
            else:
                verdict = f"(target <= {TARGETS[key]}) " + ("ok" if value <= TARGETS[key] else "MISSED")
            lines.append(f"{r['network']}: {key} = {value:.2f} {verdict}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--networks", default="resnet34,densenet100,resnet_tiny_fewcombo:train",
                        help="zoo names; ':train' measures in training mode (abstract layers act)")
    parser.add_argument("--zono-networks", default="conv_small,conv_med",
                        help="zoo names for the pure zonotope (ZNIPS) against HNIPS and hzono")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--eps", type=float, default=2 / 255)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="write the figures to this path")
    parser.add_argument("--probe", help=argparse.SUPPRESS)  # network[:train]:method, see probe()
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as the command-line tools do, for every method alike
    torch.manual_seed(0)
    if args.probe:
        print(f"peak_mib {probe(args.probe, args.batch, args.eps):.3f}")
        return 0
    results = [bench_network(n.split(":")[0], args.batch, args.eps, args.repeats,
                             train=n.endswith(":train"), threads=args.threads)
               for n in args.networks.split(",") if n]
    zono = [bench_pure_zonotope(n, args.batch, args.eps, args.repeats) for n in args.zono_networks.split(",") if n]
    print(f"batch {args.batch}, {args.threads} threads, eps {args.eps:.4g}, torch {torch.__version__}")
    if results:
        print(report(results))
    if zono:
        print(report_pure_zonotope(zono))
    if args.json:
        Path(args.json).write_text(json.dumps({"hzono": results, "pure_zonotope": zono}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
