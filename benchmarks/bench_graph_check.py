"""Cost of the construction check (``graph_check``): ``BoundedModule`` construction CPU time
with and without it, on the zoo's largest networks (process time, so that other processes
on a shared machine do not count; the runs alternate).

    PYTHONPATH=. python benchmarks/bench_graph_check.py [--nets resnet34,densenet100] [--batch 2] [--repeats 3]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from lirpa_diffai import BoundedModule
from lirpa_diffai.lirpa03 import graph_check
from lirpa_diffai.models import registry


def construction_time(net, x, check: bool) -> float:
    original = graph_check.check_graph_matches_model
    if not check:
        graph_check.check_graph_matches_model = lambda *args, **kwargs: None
    try:
        start = time.process_time()
        BoundedModule(net, x)
        return time.process_time() - start
    finally:
        graph_check.check_graph_matches_model = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", default="resnet34,densenet100")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in args.nets.split(","):
        net = registry.get(name, "cifar10").eval()
        x = torch.rand(args.batch, 3, 32, 32)
        construction_time(net, x, True)  # warm-up
        times = {True: [], False: []}
        for _ in range(args.repeats):
            for check in (False, True):
                times[check].append(construction_time(net, x, check))
        without, with_check = statistics.median(times[False]), statistics.median(times[True])
        print(f"{name}: construction {without:.2f} s CPU without the check, {with_check:.2f} s with it "
              f"(x{with_check / without:.2f})")


if __name__ == "__main__":
    main()
