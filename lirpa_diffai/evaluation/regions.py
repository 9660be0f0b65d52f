"""Region statistics of a trained network, the numbers users of MMR and of certified training
look at (``certify --regions``):

- per ReLU layer and in total, the fraction of *unstable* ReLUs under a bound method: those
  whose input bounds over the eps box straddle zero, ``lower < 0 < upper`` (the ReLUs a
  verifier has to relax or branch on; Croce et al. 2019 and Xiao et al. 2019 train to reduce
  them);
- the median over the evaluated images of the smallest region distance ``min_j d_B(j)`` and
  the smallest decision distance ``min_c d_D(c)`` (:mod:`lirpa_diffai.mmr.regions`; negative
  for a misclassified image): the l_p radius around the image inside which the network is
  one affine map, and inside which that map keeps the label.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from .layer_widths import bound_layers, node_label, unique_labels
from ..mmr.regions import region_distances, relu_layers


@dataclass
class RegionStats:
    """Unstable-ReLU fractions ``unstable[method][layer label]`` (``"total"`` over all
    ReLUs), ``sizes[layer label]`` (neurons per image), and the medians of the smallest
    ``d_B`` / ``d_D`` in the l_p norm ``p`` over ``images`` images."""

    images: int
    eps: float
    p: str
    sizes: dict = field(default_factory=dict)
    unstable: dict = field(default_factory=dict)
    median_min_d_b: float = float("nan")
    median_min_d_d: float = float("nan")

    def as_dict(self) -> dict:
        return asdict(self)


def relu_input_labels(bm) -> dict[str, str]:
    """``{name of the input node of each ReLU: readable unique label}`` in graph order."""
    inputs = [bm[layer.name].inputs[0] for layer in relu_layers(bm)]
    return dict(zip((n.name for n in inputs), unique_labels([node_label(n) for n in inputs])))


def unstable_masks(bm, x: torch.Tensor, eps: float, method: str, data_range=(0.0, 1.0)
                   ) -> dict[str, torch.Tensor]:
    """Per ReLU input node (by name), where ``lower < 0 < upper`` under ``method`` over the
    eps box around the images ``x`` (a bool tensor shaped like the node's value)."""
    bounds = bound_layers(bm, x, eps, method, data_range)
    out = {}
    for name in relu_input_labels(bm):
        if name not in bounds:
            raise ValueError(f"{method} left no bounds on ReLU input node '{name}'")
        lower, upper = bounds[name]
        out[name] = (lower < 0) & (upper > 0)
    return out


def smallest_distances(model, x: torch.Tensor, y: torch.Tensor, p="inf"
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, ``min_j d_B(j)`` and ``min_c d_D(c)``."""
    with torch.no_grad():
        d_b, d_d = region_distances(model, x, y, p)
    return d_b.min(1).values, d_d.min(1).values


def region_statistics(model, bm, x: torch.Tensor, y: torch.Tensor, eps: float, methods,
                      batch_size: int = 100, data_range=(0.0, 1.0), p="inf") -> RegionStats:
    """:class:`RegionStats` of ``model`` (with ``bm``, its ``lirpa_diffai.BoundedModule``,
    both in eval mode) on the images ``x`` with labels ``y``."""
    labels = relu_input_labels(bm)
    sizes = {label: layer.size for label, layer in zip(labels.values(), relu_layers(bm))}
    stats = RegionStats(len(x), eps, str(p), sizes)
    for method in methods:
        counts = dict.fromkeys(labels, 0)
        for start in range(0, len(x), batch_size):
            part = unstable_masks(bm, x[start:start + batch_size], eps, method, data_range)
            counts = {name: counts[name] + int(part[name].sum()) for name in counts}
        fractions = {labels[name]: counts[name] / (sizes[labels[name]] * len(x)) for name in counts}
        fractions["total"] = sum(counts.values()) / (sum(sizes.values()) * len(x))
        stats.unstable[method] = fractions
    mins = [smallest_distances(model, x[s:s + batch_size], y[s:s + batch_size], p)
            for s in range(0, len(x), batch_size)]
    stats.median_min_d_b = torch.cat([m[0] for m in mins]).median().item()
    stats.median_min_d_d = torch.cat([m[1] for m in mins]).median().item()
    return stats


def format_region_stats(stats: RegionStats) -> str:
    """A markdown table: one row per ReLU layer and the total, one column per method, then
    the two medians."""
    methods = list(stats.unstable)
    rows = ["| unstable ReLUs | neurons | " + " | ".join(methods) + " |",
            "|---|---:|" + "---:|" * len(methods)]
    for label in [*stats.sizes, "total"]:
        size = stats.sizes.get(label, sum(stats.sizes.values()))
        cells = " | ".join(f"{stats.unstable[m][label]:.1%}" for m in methods)
        rows.append(f"| {label} | {size} | {cells} |")
    rows.append(f"\nmedian over {stats.images} images of the smallest l_{stats.p} distance to a "
                f"region boundary (d_B): {stats.median_min_d_b:.4g}, to a decision boundary "
                f"(d_D): {stats.median_min_d_d:.4g}")
    return "\n".join(rows)
