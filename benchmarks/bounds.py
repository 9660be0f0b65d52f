"""Bound methods side by side on real test images: IBP, hzono (boxy, deepz), CROWN-IBP,
CROWN-hzono, CROWN and alpha-CROWN, in one process, with the same inputs for every method.

    python -m benchmarks.bounds                                   # the default networks
    python -m benchmarks.bounds --networks conv_small:mnist,resnet2b --batch 4 \\
        --methods IBP,CROWN-hzono,CROWN --json out.json --markdown out.md

For each network and method: wall-clock seconds of one call (after one IBP warm-up call per
network; glibc set up as the command-line tools set it, ``runtime.keep_freed_memory``), the
peak resident memory the call added (/proc VmHWM after ``malloc_trim``, ``bench_hzono.timed``),
the mean width of the margin bounds ``y_label - y_j`` over the L-inf box clipped to [0, 1],
the fraction of margins proved (lower bound > 0) and of samples verified (all margins proved).
A method that fails (auto_LiRPA error, out of memory, over ``--timeout-per-method``) gets its
error text in the table; CROWN and alpha-CROWN are skipped where the network and batch exceed
their size limit (``lirpa_diffai.evaluation.budget``, as ``examples/compare_bounds.py`` does;
``--no-size-limit`` runs them anyway). Then, per network,
time(CROWN-hzono)/time(CROWN), width(CROWN-hzono)/width(CROWN) and, as a check,
width(CROWN-hzono)/width(CROWN-IBP) (<= 1 expected with the boxy ReLU).

hzono rows: the input box gets ``correlate`` correlated rows (``bound_opts["hzono"]
["correlate_input"]``: "all" = one per input pixel, k = DiffAI's CorrelateMax k); with none,
hzono is exactly IBP. CROWN-hzono uses the boxy ReLU with the same rows.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import resource
import signal
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Optional

import torch

import lirpa_diffai
from benchmarks.bench_hzono import timed  # one memory/time measurement for both scripts
from lirpa_diffai.evaluation import budget, margins as certify
from lirpa_diffai import data, models
from lirpa_diffai.bounded_module import parse_correlate_input
from lirpa_diffai.runtime import keep_freed_memory

# label -> method passed to compute_bounds
METHODS = {
    "IBP": "IBP",
    "hzono-boxy": "hzono",
    "hzono-deepz": "hzono",
    "CROWN-IBP": "CROWN-IBP",
    "CROWN-hzono": "CROWN-hzono",
    "CROWN": "CROWN",
    "alpha-CROWN": "alpha-CROWN",
    "alpha-CROWN-hzono": "alpha-CROWN-hzono",
}
# hzono's ReLU per label (the input rows are the network's ``correlate``)
HZONO_RELU = {"hzono-boxy": "boxy", "hzono-deepz": "deepz"}
DEFAULT_METHODS = ("IBP", "hzono-boxy", "hzono-deepz", "CROWN-IBP", "CROWN-hzono", "CROWN", "alpha-CROWN")
PAPER_EPS = {"mnist": 0.1, "cifar10": 2 / 255}  # the paper's smaller eps per dataset


@dataclass(frozen=True)
class NetworkSpec:
    """One benchmark row group: a zoo network (untrained, seeded) or a pretrained one."""

    name: str                      # zoo name or PRETRAINED name
    dataset: str
    eps: float
    batch: int
    correlate: object = 64         # hzono input rows: "all" or k (CorrelateMax k)
    pretrained: bool = False

    @property
    def label(self) -> str:
        return self.name if self.pretrained else f"{self.name}:{self.dataset}"

    def build(self) -> torch.nn.Module:
        """The network in eval mode (zoo networks seeded by their label, so runs agree)."""
        if self.pretrained:
            return models.load_pretrained(self.name).eval()
        torch.manual_seed(sum(map(ord, self.label)))
        return models.get(self.name, self.dataset).eval()


# Over this machine's budget (2 shared cores, 20 minutes for the default run), by the size
# limits of lirpa_diffai.evaluation.budget: alpha-CROWN beyond the ConvSmalls, and both CROWN and
# alpha-CROWN from ResNet-Tiny on, where CROWN alone ran out of 12 GiB or past 150 s on one image.
# hzono rows: CorrelateMax 64 on the input where CROWN runs, which keeps CROWN-hzono's time
# well below CROWN's (an hzono pass costs about rows + 1 forward passes; with one row per
# pixel, ``--rows all``, it is tighter but slower than CROWN on these small networks), and
# 16 or 32 rows on the deep networks.
DEFAULT_NETWORKS = (
    NetworkSpec("conv_small", "mnist", 0.1, 4),
    NetworkSpec("conv_small", "cifar10", 2 / 255, 4),
    NetworkSpec("conv_big", "mnist", 0.1, 2),
    NetworkSpec("conv_big", "cifar10", 2 / 255, 2),
    NetworkSpec("resnet_tiny", "cifar10", 2 / 255, 1, correlate=32),
    # with the paper's abstract layers (Figure 7); in eval mode its CorrelateAll before the
    # logits acts (only_train=False), the others are the identity
    NetworkSpec("resnet_tiny_fewcombo", "cifar10", 2 / 255, 1, correlate=32),
    NetworkSpec("resnet18", "cifar10", 2 / 255, 1, correlate=16),
    NetworkSpec("resnet34", "cifar10", 2 / 255, 1, correlate=16),
    NetworkSpec("densenet100", "cifar10", 2 / 255, 1, correlate=16),
    # pretrained third-party networks: eps of the ERAN/PRIMA benchmarks for the ERAN
    # ConvSmalls (MANIFEST gives none), the training eps for resnet2b (MANIFEST)
    NetworkSpec("mnist_conv_small_nat", "mnist", 0.12, 8, pretrained=True),
    NetworkSpec("cifar_conv_small_pgd", "cifar10", 2 / 255, 8, pretrained=True),
    NetworkSpec("resnet2b", "cifar10", 2 / 255, 4, pretrained=True),
)


def parse_rows(text: str):
    """``--rows`` text -> ``correlate_input`` (argparse reports the ValueError's message)."""
    try:
        return parse_correlate_input(text, "--rows")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def parse_network(text: str, batch: Optional[int] = None, rows=None) -> NetworkSpec:
    """``name[:dataset]`` -> its default spec (``--batch`` and ``--rows`` overriding the
    batch and the hzono rows), or a new spec at the paper's eps for a zoo network not among
    the defaults."""
    name, _, dataset = text.partition(":")
    if name in models.PRETRAINED:
        matches = [s for s in DEFAULT_NETWORKS if s.pretrained and s.name == name]
        spec = matches[0] if matches else NetworkSpec(name, models.PRETRAINED[name].dataset,
                                                      PAPER_EPS[models.PRETRAINED[name].dataset], 4,
                                                      pretrained=True)
    else:
        name = models.canonical_name(name)
        dataset = data.check_name(dataset or "cifar10")
        matches = [s for s in DEFAULT_NETWORKS if not s.pretrained and (s.name, s.dataset) == (name, dataset)]
        spec = matches[0] if matches else NetworkSpec(name, dataset, PAPER_EPS[dataset], 2)
    return replace(spec, batch=batch or spec.batch, correlate=spec.correlate if rows is None else rows)


class MethodTimeout(Exception):
    """A method ran past its time budget."""


def run_with_timeout(fn: Callable, seconds: float):
    """``fn()``, interrupted by SIGALRM after ``seconds`` (Python checks signals between
    torch operations, so a long operation overruns by at most its own duration)."""
    def expire(signum, frame):
        raise MethodTimeout(f"over the {seconds:g} s budget")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Row:
    """One method on one network: figures, or the reason there are none."""

    method: str
    seconds: Optional[float] = None
    peak_mib: Optional[float] = None
    mean_width: Optional[float] = None
    margins_proved: Optional[float] = None
    verified: Optional[float] = None
    error: Optional[str] = None
    timed_out_after: Optional[float] = None  # seconds, when the error is the time budget


def margin_figures(lower: torch.Tensor, upper: torch.Tensor) -> dict:
    """Mean width ``ub - lb`` of the margin bounds, fraction of margins with ``lb > 0``, and
    of samples with every margin proved (the robustness certificate)."""
    return {"mean_width": (upper - lower).mean().item(),
            "margins_proved": (lower > 0).float().mean().item(),
            "verified": (lower > 0).all(dim=1).float().mean().item()}


@contextlib.contextmanager
def hzono_relu(bm, relu: Optional[str]):
    """``bm.bound_opts["hzono"]["relu"] = relu`` inside the block (``None``: unchanged)."""
    if relu is None:
        yield
        return
    options = bm.bound_opts["hzono"]
    bm.bound_opts["hzono"] = {**options, "relu": relu}
    try:
        yield
    finally:
        bm.bound_opts["hzono"] = options


def run_method(bm, box, C, label: str, timeout: float) -> Row:
    """One call of ``label``'s method, measured; failures become the row's error text."""
    method = METHODS[label]

    def call():
        with hzono_relu(bm, HZONO_RELU.get(label)), certify.bound_grad_mode(method):
            lower, upper = bm.compute_bounds(x=(box,), C=C, method=method)
        return lower.detach(), upper.detach()
    try:
        (lower, upper), seconds, peak = timed(lambda: run_with_timeout(call, timeout))
    except MethodTimeout as err:
        return Row(label, error=f"MethodTimeout: {err}", timed_out_after=timeout)
    except certify.METHOD_ERRORS as err:
        return Row(label, error=certify.method_error(err))
    return Row(label, seconds, peak, **margin_figures(lower, upper))


def ratios(rows: list[Row]) -> dict:
    """time(CROWN-hzono)/time(CROWN), width(CROWN-hzono)/width(CROWN) and
    width(CROWN-hzono)/width(CROWN-IBP), where both rows have figures (None elsewhere).
    When CROWN ran out of time, its budget is a lower bound on its time, so the time ratio
    is an upper bound: ``time_ratio_is_upper_bound`` says so."""
    by = {r.method: r for r in rows if r.error is None}

    def ratio(attr, a, b):
        if a in by and b in by and getattr(by[b], attr):
            return getattr(by[a], attr) / getattr(by[b], attr)
        return None
    time_ratio, bound = ratio("seconds", "CROWN-hzono", "CROWN"), False
    crown = next((r for r in rows if r.method == "CROWN"), None)
    if time_ratio is None and "CROWN-hzono" in by and crown is not None and crown.timed_out_after:
        time_ratio, bound = by["CROWN-hzono"].seconds / crown.timed_out_after, True
    return {"time_crown_hzono_over_crown": time_ratio,
            "width_crown_hzono_over_crown": ratio("mean_width", "CROWN-hzono", "CROWN"),
            "width_crown_hzono_over_crown_ibp": ratio("mean_width", "CROWN-hzono", "CROWN-IBP"),
            "time_ratio_is_upper_bound": bound}


def bench_network(spec: NetworkSpec, methods, timeout: float,
                  size_limits: Optional[dict] = budget.SIZE_LIMITS) -> dict:
    """Every method of ``methods`` on the first ``spec.batch`` test images of the dataset,
    but those over their size limit (``budget.size_limit_reason``; None: no limit)."""
    net = spec.build()
    x, y = data.load_dataset(spec.dataset, "test").tensors
    x, y = x[: spec.batch], y[: spec.batch]
    with torch.no_grad():
        accuracy = (net(x).argmax(1) == y).float().mean().item()
    bm = lirpa_diffai.BoundedModule(net, x, bound_opts={"hzono": {"relu": "boxy", "correlate_input": spec.correlate}})
    C = certify.margin_spec(y, 10)
    box = certify.input_box(x, spec.eps, data.data_range(spec.dataset))
    with torch.no_grad():
        bm.compute_bounds(x=(box,), C=C, method="IBP")  # warm-up: first-call costs once
    neurons = budget.pre_activation_neurons(bm)
    rows = []
    for label in methods:
        reason = budget.size_limit_reason(METHODS[label], neurons, spec.batch, size_limits)
        if reason:
            rows.append(Row(label, error=reason))
        else:
            rows.append(run_method(bm, box, C, label, timeout))
        print(f"  {spec.label} {format_row(rows[-1])}", file=sys.stderr, flush=True)
    return {"network": spec.label, "dataset": spec.dataset, "eps": spec.eps, "batch": spec.batch,
            "correlate_input": spec.correlate, "pretrained": spec.pretrained, "clean_accuracy": accuracy,
            "rows": [asdict(r) for r in rows], "ratios": ratios(rows)}


def format_row(r: Row) -> str:
    if r.error:
        return f"{r.method}: {r.error}"
    return (f"{r.method}: {r.seconds:.2f} s, {r.peak_mib:.0f} MiB, width {r.mean_width:.4g}, "
            f"proved {r.margins_proved:.1%}, verified {r.verified:.1%}")


def markdown(results: list[dict]) -> str:
    """The figures as one markdown table, then the ratios per network."""
    lines = ["| network (eps, batch, hzono rows) | method | seconds | peak MiB | mean width | margins proved "
             "| verified |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for res in results:
        eps = f"{res['eps'] * 255:.0f}/255" if res["dataset"] == "cifar10" else f"{res['eps']:g}"
        head = f"{res['network']} ({eps}, {res['batch']}, {res['correlate_input']}; acc {res['clean_accuracy']:.0%})"
        for r in res["rows"]:
            if r["error"]:
                cells = [r["error"].replace("|", "/"), "", "", "", ""]
            else:
                cells = [f"{r['seconds']:.3g}", f"{r['peak_mib']:.0f}", f"{r['mean_width']:.4g}",
                         f"{r['margins_proved']:.1%}", f"{r['verified']:.1%}"]
            lines.append(f"| {head} | {r['method']} | " + " | ".join(cells) + " |")
            head = ""
    lines += ["", "| network | time CROWN-hzono / CROWN | width CROWN-hzono / CROWN | width CROWN-hzono / CROWN-IBP |",
              "|---|---:|---:|---:|"]
    for res in results:
        r = res["ratios"]
        cells = ["-" if r[k] is None else f"{r[k]:.3g}" for k in
                 ("time_crown_hzono_over_crown", "width_crown_hzono_over_crown", "width_crown_hzono_over_crown_ibp")]
        if r["time_ratio_is_upper_bound"]:
            cells[0] = "< " + cells[0]
        crown_error = next((row["error"] for row in res["rows"] if row["method"] == "CROWN" and row["error"]), None)
        if r["time_crown_hzono_over_crown"] is None and crown_error:
            cells[0] = f"- (CROWN {crown_error.replace('|', '/')})"
        lines.append(f"| {res['network']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def limit_memory(gib: float) -> None:
    """Cap the address space ``gib`` above its current size, so that an oversized method
    fails with MemoryError/RuntimeError instead of the kernel's OOM killer ending the run."""
    if gib <= 0:
        return
    current = int(Path("/proc/self/status").read_text().split("VmSize:")[1].split()[0]) * 1024
    limit = current + int(gib * 2 ** 30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--networks", default=",".join(s.label for s in DEFAULT_NETWORKS),
                        help="comma-separated zoo 'name:dataset' or pretrained names")
    parser.add_argument("--batch", type=int, help="images per network (default: per network)")
    parser.add_argument("--rows", type=parse_rows, metavar="all|k",
                        help="hzono input rows for every network (default: per network)")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                        help=f"comma-separated, from {', '.join(METHODS)}")
    parser.add_argument("--timeout-per-method", type=float, default=150.0, help="seconds")
    parser.add_argument("--no-size-limit", action="store_true",
                        help="run CROWN and alpha-CROWN whatever the network's size")
    parser.add_argument("--memory-gib", type=float, default=12.0, help="address-space cap (0: none)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--markdown", help="write the table to this path")
    parser.add_argument("--json", help="write the figures to this path")
    args = parser.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    try:
        specs = [parse_network(n.strip(), args.batch, args.rows) for n in args.networks.split(",") if n.strip()]
    except (ValueError, KeyError) as err:
        parser.error(str(err))
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as the command-line tools; timed() still trims before each call
    limit_memory(args.memory_gib)
    start = time.perf_counter()
    limits = None if args.no_size_limit else budget.SIZE_LIMITS
    results = [bench_network(spec, methods, args.timeout_per_method, limits) for spec in specs]
    table = markdown(results)
    header = (f"{args.threads} threads, torch {torch.__version__}, "
              f"total {time.perf_counter() - start:.2f} s")
    print(header)
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(header + "\n\n" + table + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps({"header": header, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
