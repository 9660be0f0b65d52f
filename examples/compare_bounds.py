"""Certify a batch of real test images with IBP, hzono, CROWN-IBP and CROWN and print a table.

    python examples/compare_bounds.py                          # ERAN's ConvSmall on MNIST
    python examples/compare_bounds.py --network conv_small --dataset cifar10 --eps 0.002
    python examples/compare_bounds.py --network resnet_tiny --relu deepz --rows 16
    python examples/compare_bounds.py --checkpoint runs/mnist_small --eps 0.1 --methods hzono,CROWN-hzono,alpha-CROWN-hzono

``--network`` is a pretrained name (``lirpa_diffai.models.PRETRAINED``, read from
../shared/models) or a zoo name (``lirpa_diffai.models.names()``, freshly initialised, or with
the weights of a state dict ``--checkpoint``); ``--checkpoint`` also takes a training
checkpoint of ``python -m lirpa_diffai train`` (or its run directory), which names its network
and dataset. ``--dataset`` defaults to the network's. Images come from
``lirpa_diffai.data.load_dataset``. Methods: the names ``certify`` takes. Each method's line
is printed as it finishes; CROWN and alpha-CROWN are skipped where the network and batch
exceed their size limit (``lirpa_diffai.evaluation.budget``, as ``benchmarks/bounds.py`` does).
"""  # noqa: E501  (a command line of the examples above, run as it stands by the tests)
from __future__ import annotations

import argparse
import json
import sys

import torch

import lirpa_diffai
from lirpa_diffai.evaluation import budget, margins as certify
from lirpa_diffai import data
from lirpa_diffai.bounded_module import parse_correlate_input
from lirpa_diffai.cli.common import CommandError, check_output_path
from lirpa_diffai.pipeline.certify_run import check_eps, parse_methods
from lirpa_diffai.pipeline.model_source import load_network


def say(line: str) -> None:
    print(f"  {line}", file=sys.stderr, flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--network", default="mnist_conv_small_nat", help="pretrained or zoo name")
    parser.add_argument("--dataset", choices=data.DATASETS, help="default: the network's")
    parser.add_argument("--checkpoint", help="a training checkpoint (or run directory), or a state "
                        "dict for the zoo network --network")
    parser.add_argument("--eps", type=float, default=0.02, help="L-inf radius in (0, 1] pixel units")
    parser.add_argument("--batch", type=int, default=32, help="number of test images")
    parser.add_argument("--relu", default="boxy", choices=lirpa_diffai.hybrid_zono.RELU_VARIANTS)
    parser.add_argument("--rows", default="0", help="hzono input rows: 0, k (CorrelateMax k) or 'all'")
    parser.add_argument("--methods", default=",".join(certify.DEFAULT_METHODS))
    parser.add_argument("--no-size-limit", action="store_true",
                        help="run CROWN and alpha-CROWN whatever the network's size")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--json", help="also write the rows as JSON to this path")
    args = parser.parse_args(argv)
    try:
        rows = parse_correlate_input(args.rows, "--rows")
        methods = parse_methods(args.methods)
        if args.batch < 1:
            raise ValueError(f"--batch must be a positive integer, got {args.batch}")
        check_output_path(args.json, "--json")
        net, dataset, description = load_network(args.network, args.checkpoint, args.dataset,
                                                 untrained=True)
        check_eps(args.eps, data.data_range(dataset))
    except (ValueError, FileNotFoundError, CommandError) as err:
        parser.error(str(err))
    if args.threads:
        torch.set_num_threads(args.threads)

    x, y = (t[: args.batch] for t in data.load_dataset(dataset, "test").tensors)
    with torch.no_grad():
        accuracy = (net(x).argmax(1) == y).float().mean().item()
    bm = lirpa_diffai.BoundedModule(net, x, bound_opts={"hzono": {"relu": args.relu, "correlate_input": rows}})
    limits = None if args.no_size_limit else budget.SIZE_LIMITS
    neurons = budget.pre_activation_neurons(bm)
    print(f"{description} on {len(x)} {dataset} test images, eps={args.eps}, "
          f"clean accuracy {accuracy:.1%}, hzono relu={args.relu} rows={args.rows}", flush=True)
    results = certify.compare_methods(
        bm, x, y, args.eps, methods, data_range=data.data_range(dataset),
        skip=lambda method: budget.size_limit_reason(method, neurons, len(x), limits), progress=say)
    print(certify.format_table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([r.as_dict() for r in results], f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
