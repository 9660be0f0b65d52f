"""Cost of one training step per method as the number of classes grows, measured side by side.

    python benchmarks/bench_training_classes.py                    # ResNet-Tiny, batch 8
    python benchmarks/bench_training_classes.py --classes 10,100,200 --batch 8 --repeats 3

For 10, 100 and 200 classes (ResNet-Tiny with its ``logits`` layer widened, synthetic
CIFAR-sized inputs and labels): one optimizer step (the Box goal's loss, its gradient, Adam)
with each method: plain (cross-entropy on the clean batch), IBP, hzono (DiffAI's Box),
CROWN-IBP and CROWN-hzono, each unfused (the margins' bounds, then the loss) and fused
(``lirpa_diffai.training.loss_fusion``). Steps run round-robin over the methods (one step of
each class count and method per round, after a warm-up round) so that every method sees the same machine load; the
median over rounds, divided by the plain step's median of the same class count, is printed
as a markdown table, with the targets:

    fused CROWN-IBP at 200 classes <= 1.5 x fused CROWN-IBP at 10 classes
    hzono at 200 classes           <= 1.2 x hzono at 10 classes
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lirpa_diffai import BoundedModule, models
from lirpa_diffai.goals import Box, GoalContext
from lirpa_diffai.training.step import box_bounds, fused_bounds

METHODS = {  # name -> (bound method or None for plain, fused)
    "plain": (None, False), "IBP": ("IBP", False), "hzono": ("hzono", False),
    "CROWN-IBP": ("CROWN-IBP", False), "CROWN-IBP fused": ("CROWN-IBP", True),
    "CROWN-hzono": ("CROWN-hzono", False), "CROWN-hzono fused": ("CROWN-hzono", True),
}
TARGETS = {("CROWN-IBP fused", 200): 1.5, ("hzono", 200): 1.2}  # x the same method at 10 classes


def network(classes: int) -> nn.Sequential:
    """ResNet-Tiny for CIFAR-sized inputs with ``classes`` logits."""
    net = models.get("resnet_tiny", "cifar10")
    net.logits = nn.Linear(net.logits.in_features, classes)
    return net


def step_fn(method: str | None, fused: bool, net: nn.Module, bm, x, y, classes: int, eps: float):
    """One training step (loss, backward, Adam step) of ``method`` on the batch."""
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    if method is None:
        def loss():
            return F.cross_entropy(net(x), y)
    else:
        ctx = GoalContext(model=net, bounds=box_bounds(bm, method), eps=eps, num_classes=classes,
                          loss_bound=fused_bounds(bm, method, classes), loss_fusion=fused)
        goal = Box()

        def loss():
            return goal.loss(ctx, x, y, 0.0)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss().backward()
        optimizer.step()
    return step


def class_steps(classes: int, batch: int, eps: float) -> dict:
    """``{method: one training step}`` for a fresh ResNet-Tiny with ``classes`` logits."""
    torch.manual_seed(0)
    net = network(classes).train()
    x, y = torch.rand(batch, 3, 32, 32), torch.randint(0, classes, (batch,))
    bm = BoundedModule(net, x[:1]).train()
    return {name: step_fn(*spec, net, bm, x, y, classes, eps) for name, spec in METHODS.items()}


def bench(counts: list[int], batch: int, eps: float, repeats: int) -> dict[int, dict[str, float]]:
    """Median seconds of one step per class count and method: each round runs one step of
    every (class count, method) pair in turn; round 0 warms up."""
    steps = {k: class_steps(k, batch, eps) for k in counts}
    seconds = {k: {name: [] for name in METHODS} for k in counts}
    for round_ in range(repeats + 1):
        for k in counts:
            for name, step in steps[k].items():
                start = time.perf_counter()
                step()
                if round_:
                    seconds[k][name].append(time.perf_counter() - start)
    return {k: {name: statistics.median(s) for name, s in by_name.items()}
            for k, by_name in seconds.items()}


def report(results: dict[int, dict[str, float]]) -> str:
    """The markdown table: seconds of the plain step, every method as a ratio to it, and
    each method's cost at K classes over its own at the fewest classes."""
    counts = sorted(results)
    lines = ["| method | " + " | ".join(f"{k} classes" for k in counts) + " | "
             + " | ".join(f"{k} / {counts[0]}" for k in counts[1:]) + " |",
             "|---|" + "---:|" * (2 * len(counts) - 1)]
    for name in METHODS:
        cells = [f"{results[k]['plain']:.3f} s" if name == "plain"
                 else f"{results[k][name] / results[k]['plain']:.1f}x" for k in counts]
        growth = [f"{results[k][name] / results[counts[0]][name]:.2f}" for k in counts[1:]]
        lines.append(f"| {name} | " + " | ".join(cells + growth) + " |")
    lines.append("")
    for (name, k), target in TARGETS.items():
        if k in results and counts[0] == 10:
            value = results[k][name] / results[10][name]
            lines.append(f"{name} at {k} classes / at 10: {value:.2f} (target <= {target}) "
                         + ("ok" if value <= target else "MISSED"))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", default="10,100,200")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--eps", type=float, default=2 / 255)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="write the seconds to this path")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = bench([int(k) for k in args.classes.split(",")], args.batch, args.eps, args.repeats)
    print(f"ResNet-Tiny, batch {args.batch}, {args.threads} thread(s), eps {args.eps:.4g}, "
          f"median of {args.repeats} rounds, torch {torch.__version__}")
    print(report(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
