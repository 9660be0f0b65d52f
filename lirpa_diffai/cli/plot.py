"""``python -m lirpa_diffai plot``: pictures of bounds and of training runs.

``plot layers``    mean bound width per layer (each activation's input and the output) for
                   several bound methods on one network and real test images
                   (data: ``lirpa_diffai.evaluation.layer_widths``);
``plot training``  training curves from a training run's ``metrics.jsonl``
                   (data: ``lirpa_diffai.evaluation.curves``).

Drawing needs matplotlib, an optional dependency (``pip install lirpa-diffai[plot]``);
``plot layers --json PATH`` without ``--out`` computes the widths without it.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "draw bound widths per layer (plot layers) or training curves (plot training)"

INSTALL_HINT = ("python -m lirpa_diffai plot needs matplotlib, an optional dependency: "
                "pip install 'lirpa-diffai[plot]' (or pip install matplotlib)")

DEFAULT_NETWORK = "mnist_conv_small_nat"
DEFAULT_METHODS = "IBP,hzono,HNIPS,CROWN"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``layers`` and ``training`` sub-commands."""
    from .common import number, yaml_mapping
    kinds = parser.add_subparsers(dest="picture", required=True)
    layers = kinds.add_parser("layers", help="mean bound width per layer and method",
                              description="Mean bound width (upper - lower) per layer for "
                              "several bound methods on the same test images and input box.")
    layers.add_argument("--network", default=DEFAULT_NETWORK,
                        help="the network: a pretrained name or file "
                        "(lirpa_diffai.models.PRETRAINED), a training run directory, a graft "
                        "output, or with --checkpoint the network of a state dict (a zoo name "
                        f"or package.module:Name) (default {DEFAULT_NETWORK})")
    layers.add_argument("--checkpoint", help="weights: a training checkpoint of "
                        "'python -m lirpa_diffai train' (network and dataset from its "
                        "configuration) or a state dict for the network --network")
    layers.add_argument("--network-args", type=yaml_mapping, default=None, metavar="YAML",
                        help="keyword arguments of package.module:Name, a YAML mapping")
    layers.add_argument("--dataset", choices=("mnist", "cifar10"),
                        help="default: the network's (pretrained, checkpoint), else mnist")
    layers.add_argument("--eps", type=number, default=0.02,
                        help="L-inf radius in the [0, 1] pixel range, in (0, 1] as for "
                        "certify, a number or a fraction such as 8/255 (default 0.02)")
    layers.add_argument("--methods", default=DEFAULT_METHODS,
                        help="comma-separated bound methods, the names 'certify' takes: IBP, "
                        "CROWN-IBP, CROWN, hzono, HBox, HNIPS, HSwitch, HSmooth, ... "
                        f"(default {DEFAULT_METHODS})")
    layers.add_argument("--relu", default="boxy", choices=("boxy", "deepz", "switch", "smooth"),
                        help="ReLU of the 'hzono' method (default boxy)")
    layers.add_argument("--correlate-input", default="all",
                        help="hzono input rows: 0 (a box, then hzono-boxy equals IBP), k "
                        "(CorrelateMax k) or all (default all)")
    layers.add_argument("--limit", type=int, default=100,
                        help="number of test images, the first ones (default 100)")
    layers.add_argument("--batch-size", type=int, default=50, help="images per bound call")
    layers.add_argument("--data-root", help="dataset directory (see lirpa_diffai.data)")
    layers.add_argument("--out", help="PNG to write (default layer_widths.png unless only "
                        "--json is given)")
    layers.add_argument("--json", help="also write the widths as JSON here")
    layers.add_argument("--title", help="picture title")

    training = kinds.add_parser("training", help="training curves from a metrics.jsonl",
                                description="Accuracy, certified accuracy, loss, eps and lr "
                                "per epoch from a training run's metrics file.")
    training.add_argument("metrics", help="metrics.jsonl of a training run")
    training.add_argument("--out", help="PNG to write (default training_curves.png beside "
                          "the metrics file)")
    training.add_argument("--title", help="picture title (default: the run directory)")


def run(args) -> int:
    from ..training import TrainingError
    from .common import CommandError
    try:
        if args.picture == "layers":
            return run_layers(args)
        return run_training(args)
    except (ValueError, FileNotFoundError, TrainingError) as err:
        raise CommandError(str(err)) from None


def require_matplotlib():
    """The ``matplotlib.figure`` module, or a CommandError telling how to install it."""
    from .common import CommandError
    try:
        import matplotlib
        matplotlib.use("Agg")
        from matplotlib import figure
    except ImportError:
        raise CommandError(INSTALL_HINT) from None
    return figure


# ------------------------------------------------------------------------ plot layers

def parse_methods(text: str) -> list[str]:
    """``"IBP, hzono"`` -> ``["IBP", "hzono"]``: the names ``certify`` accepts (an unknown one
    is a ValueError naming the nearest), in the user's capitalisation; a repeat is an error."""
    from ..pipeline.certify_run import parse_methods as certify_methods
    canonical = certify_methods(text)
    spelled = [part.strip() for part in text.split(",") if part.strip()]
    methods = [s if s.lower() == c.lower() else c for s, c in zip(spelled, canonical)]
    if len({m.lower() for m in methods}) != len(methods):
        raise ValueError(f"--methods names a method twice: {text!r}")
    return methods


def run_layers(args) -> int:
    from ..bounded_module import parse_correlate_input
    from .common import check_output_path
    out = args.out or (None if args.json else "layer_widths.png")
    check_output_path(args.json, "--json")
    check_output_path(out, "--out")
    figure = require_matplotlib() if out else None
    methods = parse_methods(args.methods)
    options = {"relu": args.relu,
               "correlate_input": parse_correlate_input(args.correlate_input, "--correlate-input")}
    if args.limit < 1 or args.batch_size < 1:
        raise ValueError("--limit and --batch-size must be positive")

    from .. import data
    from ..bounded_module import BoundedModule
    from ..pipeline.certify_run import check_eps
    from ..pipeline.model_source import load_network
    from ..evaluation.layer_widths import format_table, measure_layer_widths
    net, dataset, description = load_network(args.network, args.checkpoint, args.dataset,
                                              network_args=args.network_args)
    check_eps(args.eps, data.data_range(dataset))
    x = data.load_dataset(dataset, "test", args.data_root).tensors[0][:args.limit]
    bm = BoundedModule(net, x[:1], bound_opts={"hzono": options}).eval()
    table = measure_layer_widths(bm, x, args.eps, methods, args.batch_size, data.data_range(dataset))
    table.network, table.dataset, table.options = description, dataset, options
    print(format_table(table))
    if args.json:
        Path(args.json).write_text(json.dumps(table.as_dict(), indent=1) + "\n")
        print(f"wrote {args.json}")
    if out:
        draw_layer_widths(figure, table, out, args.title)
        print(f"wrote {out}")
    return 0


def method_label(method: str, options: dict) -> str:
    """Legend text: hzono methods (and combined ones such as CROWN-hzono) name the ReLU and
    input rows of their hzono pass."""
    from ..domain.methods import DOMAINS
    key = method.lower()
    if key not in DOMAINS and "hzono" not in key:
        return method
    domain = DOMAINS.get(key, DOMAINS["hzono"])
    relu = domain.relu or options.get("relu", "boxy")
    rows = options.get("correlate_input", 0) if domain.input_rows is None else domain.input_rows
    rows = "box input" if rows == 0 else f"input rows: {rows}"
    return f"{method} ({relu}, {rows})"


def draw_layer_widths(figure, table, out: str, title: str | None = None):
    """One line per method over the layers, widths on a log scale, saved to ``out``;
    returns the matplotlib Figure."""
    fig = figure.Figure(figsize=(max(6.0, 1.1 * len(table.layers) + 2), 4.2), layout="constrained")
    ax = fig.add_subplot()
    positions = range(len(table.layers))
    markers = "osD^vP*X"
    for i, (method, widths) in enumerate(table.widths.items()):
        ax.plot(positions, widths, marker=markers[i % len(markers)],
                label=method_label(method, table.options))
    ax.set_yscale("log")
    ax.set_xticks(list(positions), [f"{layer.label}\n({layer.size})" for layer in table.layers])
    ax.set_xlabel("layer (neurons): each activation's input, then the output")
    ax.set_ylabel("mean bound width (upper - lower)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title(title or f"{table.network} on {table.images} {table.dataset} test images, "
                 f"eps = {table.eps:g}")
    fig.savefig(out, dpi=110)
    return fig


# ---------------------------------------------------------------------- plot training

PANELS = (
    ("accuracy", ("train_accuracy", "test_accuracy", "test_certified")),
    ("train loss", ("train_loss",)),
    ("eps", ("eps",)),
)


def run_training(args) -> int:
    from .common import check_output_path
    metrics = Path(args.metrics)
    out = args.out or str(metrics.with_name("training_curves.png"))
    check_output_path(out, "--out")
    figure = require_matplotlib()
    from ..evaluation.curves import read_metrics, series
    curves = series(read_metrics(metrics))
    if not any(k in curves for _, keys in PANELS for k in keys):
        raise ValueError(f"{metrics}: no plottable metric in any line "
                         f"(expected some of train_loss, train_accuracy, test_accuracy, "
                         f"test_certified, eps, lr)")
    title = args.title or f"{metrics.parent.name or metrics.name}"
    if "seconds" in curves:
        title += f" ({sum(curves['seconds'][1]):.0f} s of training)"
    draw_training(figure, curves, out, title)
    print(f"wrote {out}")
    return 0


def draw_training(figure, curves: dict, out: str, title: str):
    """Panels: accuracies, loss, eps with lr on a second axis; saved to ``out``; returns
    the matplotlib Figure."""
    from matplotlib.ticker import MaxNLocator
    fig = figure.Figure(figsize=(12, 3.6), layout="constrained")
    axes = fig.subplots(1, len(PANELS))
    for ax, (name, keys) in zip(axes, PANELS):
        for key in keys:
            if key in curves:
                ax.plot(*curves[key], marker="o", markersize=3, label=key.replace("_", " "))
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        if not ax.lines:
            ax.text(0.5, 0.5, "not in the metrics file", ha="center", va="center",
                    transform=ax.transAxes)
    if all(0 <= v <= 1 for key in PANELS[0][1] if key in curves for v in curves[key][1]):
        axes[0].set_ylim(-0.02, 1.02)  # fractions: the whole range
    handles = {ax: ax.lines for ax in axes}
    if "lr" in curves:
        twin = axes[-1].twinx()
        twin.plot(*curves["lr"], color="tab:red", linestyle="--", label="lr",
                  drawstyle="steps-pre")  # the rate in use during each epoch
        twin.set_ylabel("learning rate", color="tab:red")
        if _spans_decades(curves["lr"][1]):
            twin.set_yscale("log")
        handles[axes[-1]] = axes[-1].lines + twin.lines
    for ax, lines in handles.items():
        if ax is axes[-1] and lines:  # above the axes: two y scales leave no free corner
            ax.legend(handles=lines, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2,
                      frameon=False)
        elif lines:
            ax.legend(handles=lines)
    fig.suptitle(title)
    fig.savefig(out, dpi=110)
    return fig


def _spans_decades(values) -> bool:
    """Positive values whose max/min ratio exceeds 10 (worth a log axis)."""
    positive = [v for v in values if v > 0]
    return len(positive) == len(values) and max(positive) > 10 * min(positive)

