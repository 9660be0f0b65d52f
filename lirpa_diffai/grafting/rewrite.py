"""``graft(model, masks)``: a trained network with its ReLUs replaced by grafted activations.

The network is traced with ``torch.fx`` (symbolic tracing). A *site* is one call of a ReLU in
the traced graph, named by its fx node: a ``nn.ReLU`` module (each call of a shared module is
its own site), ``F.relu`` / ``torch.relu`` / ``torch.relu_`` and the ``.relu()`` / ``.relu_()``
methods. In-place calls are rewritten out of place, and later readers of the tensor the call
modified read the grafted activation instead.

What ``torch.fx`` cannot rewrite, and is refused with :class:`GraftingError`: control flow that
depends on tensor values (``if x.sum() > 0``), calls into code fx cannot see through (C
extensions, ``torch.autograd.Function``), and ReLUs hidden inside such calls or inside leaf
modules other than ``nn.ReLU``.
"""
from __future__ import annotations

import copy
from typing import Mapping, Optional

import torch
import torch.nn.functional as F
from torch import fx, nn

from .activation import GraftedReLU

RELU_FUNCTIONS = {F.relu: "F.relu", torch.relu: "torch.relu", torch.relu_: "torch.relu_"}
RELU_METHODS = ("relu", "relu_")


class GraftingError(ValueError):
    """A network or masks that grafting cannot use, with the reason."""


def trace(model: nn.Module) -> fx.GraphModule:
    """``model`` symbolically traced by ``torch.fx`` (refused with the reason if fx cannot)."""
    try:
        graph = _Tracer().trace(model)
        return fx.GraphModule(model, graph, type(model).__name__)
    except Exception as err:  # fx raises TraceError, TypeError, RuntimeError...
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise GraftingError(
            f"torch.fx cannot trace {type(model).__name__} ({type(err).__name__}: {reason}); "
            "grafting needs a network without data-dependent control flow or untraceable "
            "calls around its ReLUs") from None


class _Tracer(fx.Tracer):
    """fx's tracer with grafted activations kept as calls (a network may be grafted again)."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return isinstance(module, GraftedReLU) or super().is_leaf_module(module, qualified_name)


def _is_relu(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module":
        return isinstance(gm.get_submodule(node.target), nn.ReLU)
    if node.op == "call_function":
        return node.target in RELU_FUNCTIONS
    return node.op == "call_method" and node.target in RELU_METHODS


def _is_inplace(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module":
        return bool(gm.get_submodule(node.target).inplace)
    if node.op == "call_method":
        return node.target == "relu_"
    return node.target is torch.relu_ or bool(node.kwargs.get("inplace", False)) or \
        (node.target is F.relu and len(node.args) > 1 and bool(node.args[1]))


def relu_nodes(gm: fx.GraphModule) -> list[fx.Node]:
    """The graph's ReLU calls, in execution order."""
    return [node for node in gm.graph.nodes if _is_relu(gm, node)]


def relu_sites(model: nn.Module) -> list[str]:
    """The names of ``model``'s ReLU sites (fx node names), in execution order."""
    return [node.name for node in relu_nodes(trace(model))]


def site_shapes(model: nn.Module, example: torch.Tensor) -> dict[str, torch.Size]:
    """``{site: shape of its activation for one sample}`` from a pass on ``example``."""
    gm = trace(model)
    nodes = relu_nodes(gm)
    if not nodes:
        raise GraftingError(f"{type(model).__name__} has no ReLU to graft")
    shapes = {}

    class Recorder(fx.Interpreter):
        def run_node(self, node):
            out = super().run_node(node)
            if node in nodes:
                shapes[node.name] = out.shape[1:]
            return out

    with torch.no_grad():
        Recorder(gm).run(example)
    return shapes


def check_mask_sites(masks: Mapping[str, torch.Tensor], sites) -> None:
    """Refuse masks naming no ReLU site of the network."""
    unknown = sorted(set(masks) - set(sites))
    if unknown:
        raise GraftingError(f"masks name {', '.join(map(repr, unknown))}, which are not ReLU sites "
                            f"of the network (its sites: {', '.join(sites)})")


def check_masks(masks: Mapping[str, torch.Tensor], shapes: Mapping[str, torch.Size]) -> None:
    """Refuse masks naming no site of the network or of another shape than its activation."""
    check_mask_sites(masks, list(shapes))
    for site, mask in masks.items():
        if tuple(mask.shape) != tuple(shapes[site]):
            raise GraftingError(f"mask of ReLU site {site!r} has shape {tuple(mask.shape)}; its "
                                f"activation has shape {tuple(shapes[site])} per sample")


def graft(model: nn.Module, masks: Mapping[str, torch.Tensor],
          example: Optional[torch.Tensor] = None) -> fx.GraphModule:
    """A copy of ``model`` (an ``fx.GraphModule`` sharing no tensors with it, same weights) in
    which every ReLU site named in ``masks`` is a :class:`GraftedReLU` with that mask (shape:
    one sample's activation; 1 = replaced by ``a x + b``). Sites not named stay ReLUs.
    With ``example`` the mask shapes are checked before rewriting (else at the first call)."""
    gm = trace(copy.deepcopy(model))
    nodes = {node.name: node for node in relu_nodes(gm)}
    if not nodes:
        raise GraftingError(f"{type(model).__name__} has no ReLU to graft")
    masks = {site: torch.as_tensor(mask) for site, mask in masks.items()}
    if example is not None:
        check_masks(masks, site_shapes(gm, example))
    check_mask_sites(masks, list(nodes))
    order = {node: float(i) for i, node in enumerate(gm.graph.nodes)}
    if not isinstance(getattr(gm, "grafted", None), nn.Module):
        gm.add_module("grafted", nn.Module())
    grafted = gm.grafted
    for site, mask in masks.items():
        node = nodes[site]
        grafted.add_module(site, GraftedReLU(mask, site=site))
        source = node.args[0]
        inplace = _is_inplace(gm, node)
        with gm.graph.inserting_after(node):
            new = gm.graph.call_module(f"grafted.{site}", (source,))
        order[new] = order[node] + 0.5
        node.replace_all_uses_with(new)
        if inplace and isinstance(source, fx.Node):  # later readers saw the modified tensor
            for user in list(source.users):
                if user is not new and order.get(user, -1) > order[node]:
                    user.replace_input_with(source, new)
        gm.graph.erase_node(node)
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm


def grafted_modules(model: nn.Module) -> dict[str, GraftedReLU]:
    """``{site: GraftedReLU}`` of a grafted network."""
    return {m.site: m for m in model.modules() if isinstance(m, GraftedReLU)}


def masks_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """The masks of a grafted network by site."""
    return {site: m.mask.clone() for site, m in grafted_modules(model).items()}
