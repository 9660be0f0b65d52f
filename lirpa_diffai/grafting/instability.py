"""Unstable neurons: a ReLU neuron is *unstable* on an input set when the bounds of its input
cross zero, ``l < 0 < u`` (Chen et al. 2022, section 3). A grafted neuron is never unstable
(it is affine).

``unstable_counts`` bounds a network on the L-inf balls of a set of images with one of the
project's methods and counts, per neuron, the images on which it is unstable. It works on any
network ``graft`` accepts: the ReLU sites still present are first grafted with all-zero masks,
which changes neither the network nor any method's bounds (tests/bound_ops/test_grafted_bounds.py) but
gives every activation a graph node that knows its site.
"""
from __future__ import annotations

import copy
from typing import Mapping, Optional

import numpy as np
import torch
from auto_LiRPA import BoundedTensor, PerturbationLpNorm
from torch import nn

from ..bound_ops.grafted import BoundGraftedRelu
from ..data import eps_box
from .activation import GraftedReLU
from .rewrite import grafted_modules, graft, relu_sites, site_shapes

Tensor = torch.Tensor

# instability methods -> how the pre-activation bounds are obtained
INSTABILITY_METHODS = {"ibp": "IBP", "crown-ibp": "CROWN-IBP", "crown": "CROWN", "hzono": "hzono"}


def method_name(method: str) -> str:
    """The canonical spelling of an instability method (case-insensitive), else ValueError."""
    key = str(method).lower()
    if key not in INSTABILITY_METHODS:
        raise ValueError(f"instability method {method!r}: choose one of "
                         f"{', '.join(INSTABILITY_METHODS.values())}")
    return INSTABILITY_METHODS[key]


def with_every_site_grafted(model: nn.Module, example: Tensor) -> nn.Module:
    """A copy of ``model`` with its remaining ReLU sites grafted with all-zero masks (the same
    function)."""
    if not relu_sites(model):
        return copy.deepcopy(model)
    shapes = site_shapes(model, example[:1])
    return graft(model, {site: torch.zeros(shape) for site, shape in shapes.items()}, example[:1])


def site_nodes(bm, model: nn.Module) -> dict[str, BoundGraftedRelu]:
    """``{site: grafted-activation graph node}`` of ``bm``, a BoundedModule of the grafted
    network ``model`` (the site is found from the module path auto_LiRPA keeps for the mask)."""
    sites = {f"{path}.mask": m.site for path, m in model.named_modules() if isinstance(m, GraftedReLU)}
    return {sites[node.inputs[3].ori_name]: node for node in bm._modules.values()
            if type(node) is BoundGraftedRelu}


def ball(x: Tensor, eps: float, data_range=(0.0, 1.0)) -> BoundedTensor:
    """The L-inf ball of radius ``eps`` around ``x``, clipped to the data range."""
    x_L, x_U = eps_box(x, eps, data_range)
    ptb = PerturbationLpNorm(norm=np.inf, x_L=x_L, x_U=x_U)
    return BoundedTensor(x, ptb)


def preactivation_bounds(bm, model: nn.Module, x: BoundedTensor,
                         method: str) -> dict[str, tuple[Tensor, Tensor]]:
    """``{site: (lower, upper)}`` of every grafted activation's input under ``method`` (``bm``
    bounds ``model``)."""
    method = method_name(method)
    if method == "hzono":
        bm.compute_hzono_bounds((x,), store_bounds=True)
    else:
        bm.compute_bounds(x=(x,), method=method, bound_upper=method != "CROWN")
    return {site: (node.inputs[0].lower, node.inputs[0].upper)
            for site, node in site_nodes(bm, model).items()}


def unstable_counts(model: nn.Module, images: Tensor, eps: float, method: str = "CROWN-IBP",
                    batch_size: int = 50, data_range=(0.0, 1.0),
                    bound_opts: Optional[Mapping] = None) -> dict[str, Tensor]:
    """``{site: number of images on which each neuron is unstable}`` (int tensors shaped like one
    sample's activation) over the L-inf balls of radius ``eps`` around ``images``, with the
    pre-activation bounds of ``method`` (IBP, CROWN-IBP, CROWN or hzono). Grafted neurons count
    0. The network is bounded in eval mode."""
    from ..bounded_module import BoundedModule
    method = method_name(method)
    probe = with_every_site_grafted(model, images).eval()
    masks = {site: m.mask.bool() for site, m in grafted_modules(probe).items()}
    counts = {site: torch.zeros(mask.shape, dtype=torch.long) for site, mask in masks.items()}
    bm = BoundedModule(probe, images[:1], bound_opts=dict(bound_opts or {})).eval()
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = images[start:start + batch_size]
            for site, (lower, upper) in preactivation_bounds(bm, probe, ball(x, eps, data_range),
                                                             method).items():
                unstable = (lower < 0) & (upper > 0) & ~masks[site]
                counts[site] += unstable.sum(0)
    return counts


def unstable_ratio(counts: Mapping[str, Tensor], images: int) -> float:
    """The unstable-neuron ratio of the paper: unstable neurons over all neurons (grafted ones
    included), averaged over the images."""
    total = sum(c.numel() for c in counts.values())
    return float(sum(c.sum().item() for c in counts.values())) / (total * images)
