"""Cost of an MMR training step, measured in one run (ratios within the run).

    python -m benchmarks.bench_mmr                                  # the three defaults
    python -m benchmarks.bench_mmr --networks mnist_conv_small:32 --repeats 1 --json out.json

For each network (``name:batch``): the median seconds (after a warm-up) and the peak extra
resident memory of three Adam steps on the same data,

- ``plain``:  cross-entropy on the batch of B images;
- ``mmr``:    cross-entropy + MMR(0.2, 0.2, 10%, 10, inf) on the batch (the regularizer's
              region pass pushes the identity basis of the d input dimensions, one error row
              each, through the network: d + 1 rows per image with the clean one);
- ``plain_big``: cross-entropy on a batch of B (d + 1) images, the same number of rows
              through the same layers;

(with ``--repeats 1``, the default, one warm-up and one timed step that also gives the peak;
with more, the median of that many after a warm-up and the peak of one more),

and the ratios ``mmr / plain`` and ``mmr / plain_big`` (target: <= 1.5). The networks:
``mnist_conv_small`` (ConvSmall, MNIST, d = 784), ``cifar_conv_small`` (ConvSmall,
CIFAR-10, d = 3072) and ``resnet2b`` (the pretrained VNN-COMP residual network, CIFAR-10).
Peak memory is read as ``bench_hzono.py`` reads it (VmHWM after a reset).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

import lirpa_diffai  # noqa: F401  (patches auto_LiRPA)
from lirpa_diffai import models
from lirpa_diffai.mmr import mmr_loss
from lirpa_diffai.models.pretrained import load_pretrained
from lirpa_diffai.runtime import keep_freed_memory
from benchmarks.bench_hzono import measure, timed

TARGET = 1.5
DEFAULTS = "mnist_conv_small:128,cifar_conv_small:8,resnet2b:8"
NETWORKS = {
    "mnist_conv_small": (lambda: models.get("conv_small", "mnist"), (1, 28, 28)),
    "cifar_conv_small": (lambda: models.get("conv_small", "cifar10"), (3, 32, 32)),
    "resnet2b": (lambda: load_pretrained("resnet2b"), (3, 32, 32)),
}


def adam_step(net, optimizer, loss_fn):
    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        optimizer.step()
    return step


def bench_network(name: str, batch: int, repeats: int) -> dict:
    build, shape = NETWORKS[name]
    torch.manual_seed(0)
    net = build().train()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-6)   # tiny steps: the region stays
    d = torch.Size(shape).numel()
    x, y = torch.rand((batch,) + shape), torch.randint(0, 10, (batch,))
    x_big, y_big = torch.rand((batch * (d + 1),) + shape), torch.randint(0, 10, (batch * (d + 1),))
    steps = {
        "plain": adam_step(net, optimizer, lambda: F.cross_entropy(net(x), y)),
        "mmr": adam_step(net, optimizer, lambda: F.cross_entropy(net(x), y) + mmr_loss(
            net, x, y, gamma_b=0.2, gamma_d=0.2, k_b=0.1, k_d=10, p="inf")),
        "plain_big": adam_step(net, optimizer, lambda: F.cross_entropy(net(x_big), y_big)),
    }
    result = {"network": name, "batch": batch, "input_dims": d, "steps": {}}
    for step_name, fn in steps.items():
        if repeats > 1:
            seconds, peak = measure(fn, repeats)
        else:                     # one warm-up (the first MMR step traces the graph), one timed
            fn()
            _, seconds, peak = timed(fn)
        result["steps"][step_name] = {"seconds": seconds, "peak_mib": peak}
        print(f"  {name} {step_name}: {seconds:.3f} s, peak +{peak:.0f} MiB", flush=True)
    s = {k: v["seconds"] for k, v in result["steps"].items()}
    result["ratios"] = {"mmr_over_plain": s["mmr"] / s["plain"],
                        "mmr_over_plain_big": s["mmr"] / s["plain_big"]}
    return result


def format_table(results: list[dict]) -> str:
    lines = ["| network | batch | d | plain s | MMR s | plain x(d+1) s | MMR / plain | "
             "MMR / plain x(d+1) (target <= 1.5) | peak MiB: plain / MMR / plain x(d+1) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        s, q = r["steps"], r["ratios"]
        lines.append(
            f"| {r['network']} | {r['batch']} | {r['input_dims']} | {s['plain']['seconds']:.3f} | "
            f"{s['mmr']['seconds']:.2f} | {s['plain_big']['seconds']:.2f} | "
            f"{q['mmr_over_plain']:.0f} | {q['mmr_over_plain_big']:.2f} | "
            f"{s['plain']['peak_mib']:.0f} / {s['mmr']['peak_mib']:.0f} / "
            f"{s['plain_big']['peak_mib']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--networks", default=DEFAULTS, help=f"name:batch,... (default {DEFAULTS})")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    results = []
    for spec in args.networks.split(","):
        name, _, batch = spec.partition(":")
        if name not in NETWORKS:
            parser.error(f"unknown network {name!r}; choose from {', '.join(NETWORKS)}")
        results.append(bench_network(name, int(batch or 128), args.repeats))
    print(format_table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
