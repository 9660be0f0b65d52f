"""Certify a batch of real test images with IBP, hzono, CROWN-IBP and CROWN and print a table.

    python examples/compare_bounds.py                          # ERAN's ConvSmall on MNIST
    python examples/compare_bounds.py --network conv_small --dataset cifar10 --eps 0.002
    python examples/compare_bounds.py --network resnet_tiny --relu deepz --rows 16

``--network`` is a zoo name (``lirpa_diffai.models.names()``, freshly initialised unless
``--checkpoint`` is given) or a pretrained name (``lirpa_diffai.models.PRETRAINED``, read
from ../shared/models). Images come from ``lirpa_diffai.data.load_dataset``.
"""
from __future__ import annotations

import argparse
import json
import sys

import torch

import lirpa_diffai
from lirpa_diffai import certify, data, models
from lirpa_diffai.bounded_module import parse_correlate_input


def build_network(name: str, dataset: str, checkpoint: str | None):
    if name in models.PRETRAINED:
        return models.load_pretrained(name)
    net = models.get(name, dataset)
    if checkpoint:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        net.load_state_dict(state.get("model", state))
    return net


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--network", default="mnist_conv_small_nat", help="zoo or pretrained name")
    parser.add_argument("--dataset", default="mnist", choices=data.DATASETS)
    parser.add_argument("--checkpoint", help="state_dict for a zoo network")
    parser.add_argument("--eps", type=float, default=0.02, help="L-inf radius in [0, 1] pixel units")
    parser.add_argument("--batch", type=int, default=32, help="number of test images")
    parser.add_argument("--relu", default="boxy", choices=lirpa_diffai.hybrid_zono.RELU_VARIANTS)
    parser.add_argument("--rows", default="0", help="hzono input rows: 0, k (CorrelateMax k) or 'all'")
    parser.add_argument("--methods", default=",".join(certify.DEFAULT_METHODS))
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--json", help="also write the rows as JSON to this path")
    args = parser.parse_args(argv)
    try:
        rows = parse_correlate_input(args.rows, "--rows")
    except ValueError as err:
        parser.error(str(err))
    if args.threads:
        torch.set_num_threads(args.threads)

    net = build_network(args.network, args.dataset, args.checkpoint).eval()
    dataset = data.load_dataset(args.dataset, "test")
    x, y = dataset.tensors[0][: args.batch], dataset.tensors[1][: args.batch]
    with torch.no_grad():
        accuracy = (net(x).argmax(1) == y).float().mean().item()
    bm = lirpa_diffai.BoundedModule(net, x, bound_opts={"hzono": {"relu": args.relu, "correlate_input": rows}})
    results = certify.compare_methods(bm, x, y, args.eps, args.methods.split(","),
                                      data_range=data.data_range(args.dataset))
    print(f"{args.network} on {len(x)} {args.dataset} test images, eps={args.eps}, "
          f"clean accuracy {accuracy:.1%}, hzono relu={args.relu} rows={args.rows}")
    print(certify.format_table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([r.as_dict() for r in results], f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
