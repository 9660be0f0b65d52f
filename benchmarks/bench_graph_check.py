"""Cost of the construction check (``graph_check``) against the whole ``BoundedModule``
construction, on the zoo's largest networks.

    PYTHONPATH=. python benchmarks/bench_graph_check.py [--nets resnet34,densenet100] [--batch 2]
"""
from __future__ import annotations

import argparse
import time

import torch

from lirpa_diffai import BoundedModule, graph_check
from lirpa_diffai.models import registry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", default="resnet34,densenet100")
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in args.nets.split(","):
        net = registry.get(name, "cifar10").eval()
        x = torch.rand(args.batch, 3, 32, 32)
        start = time.perf_counter()
        bm = BoundedModule(net, x)
        construct = time.perf_counter() - start
        start = time.perf_counter()
        graph_check.check_graph_matches_model(bm, net, x)
        check = time.perf_counter() - start
        print(f"{name}: construction {construct:.2f} s (check included), check alone {check:.2f} s "
              f"= {100 * check / construct:.1f} % of construction")


if __name__ == "__main__":
    main()
