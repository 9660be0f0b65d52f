"""Per-layer bounds of a ``lirpa_diffai.BoundedModule``: the data of ``plot layers``.

A *layer* is a node whose bounds a bound method needs or returns: the input of every
activation node (ReLU, max-pool, ...; the pre-activations CROWN bounds) and the output node,
in the graph's topological order. ``layer_nodes`` picks them, ``read_bounds`` reads the
bounds a method left on them, and ``measure_layer_widths`` runs several methods on the same
inputs and averages ``upper - lower`` over images and neurons, per layer and method.

Where the methods leave their bounds (auto_LiRPA 0.3 and this package):

- IBP (``compute_bounds(method="IBP")``): ``node.lower/upper`` on every node it visits;
- hzono (``compute_bounds(method="hzono", store_bounds=True)``): the concretized hybrid
  zonotope of every perturbed node;
- CROWN and the other backward methods: the intermediate bounds of the pre-activation nodes
  and, with ``C=None``, the bounds of the output node.

The next ``compute_bounds`` call clears them, so each method's bounds are read right after it.
Nothing here needs matplotlib.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import torch
from auto_LiRPA.operators import Bound, BoundActivation

from ..domain.methods import DOMAINS
from .margins import bound_grad_mode, input_box

Bounds = dict[str, tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class Layer:
    """One plotted node: auto_LiRPA's node ``name``, a readable ``label`` and the number of
    neurons per image ``size``."""

    name: str
    label: str
    size: int


@dataclass
class LayerWidths:
    """Mean bound width per layer (``widths[method][i]`` for ``layers[i]``; NaN where the
    method left no bounds on that node) and how they were measured."""

    layers: list[Layer]
    widths: dict[str, list[float]]
    eps: float
    images: int
    network: str = ""
    dataset: str = ""
    options: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        """A JSON-ready dict (NaN written as ``null``)."""
        return {
            "network": self.network, "dataset": self.dataset, "eps": self.eps,
            "images": self.images, "options": self.options,
            "layers": [vars(layer) for layer in self.layers],
            "widths": {m: [None if math.isnan(w) else w for w in ws]
                       for m, ws in self.widths.items()},
        }

    @classmethod
    def from_dict(cls, d: dict) -> "LayerWidths":
        """The inverse of ``as_dict``."""
        return cls(layers=[Layer(**layer) for layer in d["layers"]],
                   widths={m: [math.nan if w is None else float(w) for w in ws]
                           for m, ws in d["widths"].items()},
                   eps=d["eps"], images=d["images"], network=d.get("network", ""),
                   dataset=d.get("dataset", ""), options=d.get("options", {}))


def is_hzono_method(method: str) -> bool:
    """Whether ``method`` is one of this package's hybrid-zonotope methods (hzono, HBox, ...)."""
    return method.lower() in DOMAINS


def layer_nodes(bm) -> list:
    """The inputs of activation nodes and the output node, in topological order.

    auto_LiRPA adds its nodes (its child modules) in the order of the traced graph, which is
    topological."""
    final = bm.final_node()
    nodes = [node for node in bm.children() if isinstance(node, Bound)]
    wanted = {i.name for node in nodes if isinstance(node, BoundActivation) for i in node.inputs}
    return [node for node in nodes if node is final or node.name in wanted]


def node_label(node) -> str:
    """The module path of the node's first parameter (``conv1.weight`` -> ``conv1``), or its
    operator name (``BoundAdd`` -> ``add``) for a node without parameters."""
    for i in node.inputs[1:]:
        name = getattr(i, "ori_name", None)
        if name and type(i).__name__ == "BoundParams":
            return name.rsplit(".", 1)[0]
    return type(node).__name__.removeprefix("Bound").lower()


def unique_labels(labels: Sequence[str]) -> list[str]:
    """``labels`` with repeated ones numbered in order (``add``, ``add`` -> ``add 1``,
    ``add 2``); labels that occur once stay as they are."""
    counts = {label: labels.count(label) for label in labels}
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        if counts[label] > 1:
            seen[label] = seen.get(label, 0) + 1
            label = f"{label} {seen[label]}"
        out.append(label)
    return out


def describe_layers(bm) -> list[Layer]:
    """``layer_nodes(bm)`` as ``Layer`` records with readable, unique labels."""
    nodes = layer_nodes(bm)
    labels = unique_labels([node_label(node) for node in nodes])
    return [Layer(node.name, label, math.prod(node.output_shape[1:]))
            for node, label in zip(nodes, labels)]


def read_bounds(bm, names: Iterable[str]) -> Bounds:
    """``{name: (lower, upper)}`` for the named nodes that hold tensor bounds, detached.

    A node the last method did not bound (no ``lower``/``upper``) is left out."""
    out = {}
    for name in names:
        node = bm[name]
        lower, upper = getattr(node, "lower", None), getattr(node, "upper", None)
        if torch.is_tensor(lower) and torch.is_tensor(upper):
            out[name] = (lower.detach(), upper.detach())
    return out


def bound_layers(bm, x: torch.Tensor, eps: float, method: str, data_range=(0.0, 1.0)) -> Bounds:
    """Run ``method`` on the L-inf box of radius ``eps`` around ``x`` (clipped to
    ``data_range``) and return the bounds it leaves on ``layer_nodes(bm)`` (the output's: the
    bounds it returns)."""
    kwargs = {"store_bounds": True} if is_hzono_method(method) else {}
    with bound_grad_mode(method):
        lower, upper = bm.compute_bounds(x=(input_box(x, eps, data_range),), method=method,
                                         **kwargs)
    bounds = read_bounds(bm, [node.name for node in layer_nodes(bm)])
    # the output's bounds are what the method returns (alpha-CROWN leaves none on the node)
    bounds[bm.final_node().name] = (lower.detach(), upper.detach())
    return bounds


def width_sums(bounds: Bounds) -> dict[str, tuple[float, int]]:
    """``{name: (sum of upper - lower, number of entries)}``; raises ValueError if a lower
    bound exceeds its upper bound by more than float noise (the bounds are not a box)."""
    out = {}
    for name, (lower, upper) in bounds.items():
        width = upper - lower
        worst = width.min().item() if width.numel() else 0.0
        if worst < -1e-4 * (1 + upper.abs().max().item()):
            raise ValueError(f"node {name}: lower bound above upper bound by {-worst:.3g}")
        out[name] = (width.clamp(min=0).sum().item(), width.numel())
    return out


def mean_widths(sums: Sequence[dict[str, tuple[float, int]]], layers: Sequence[Layer]) -> list[float]:
    """Per layer, the mean width over all batches' ``width_sums``; NaN where no batch has it."""
    out = []
    for layer in layers:
        total = [s[layer.name] for s in sums if layer.name in s]
        entries = sum(n for _, n in total)
        out.append(sum(w for w, _ in total) / entries if entries else math.nan)
    return out


def measure_layer_widths(bm, x: torch.Tensor, eps: float, methods: Sequence[str],
                         batch_size: int = 32, data_range=(0.0, 1.0)) -> LayerWidths:
    """Mean bound width per layer for each method, on the same images ``x`` (batches of
    ``batch_size``) and the same input box. ``bm`` is used in the mode it is in: call
    ``bm.eval()`` first for a trained network (auto_LiRPA builds it in training mode)."""
    if not len(x):
        raise ValueError("no input images")
    layers = describe_layers(bm)
    sums: dict[str, list] = {m: [] for m in methods}
    for batch in torch.split(x, batch_size):
        for method in methods:
            sums[method].append(width_sums(bound_layers(bm, batch, eps, method, data_range)))
    return LayerWidths(layers, {m: mean_widths(sums[m], layers) for m in methods},
                       eps=eps, images=len(x))


def format_table(table: LayerWidths) -> str:
    """A markdown table: one row per layer, one column of mean widths per method."""
    methods = list(table.widths)
    lines = ["| layer | neurons | " + " | ".join(methods) + " |",
             "|---|---:|" + "---:|" * len(methods)]
    for i, layer in enumerate(table.layers):
        cells = " | ".join(f"{table.widths[m][i]:.4g}" for m in methods)
        lines.append(f"| {layer.label} | {layer.size} | {cells} |")
    return "\n".join(lines)
