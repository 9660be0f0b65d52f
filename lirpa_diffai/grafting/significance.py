"""How much a neuron matters to the network's output (Chen et al. 2022, section 4, step 2).

- ``"gradient"`` (the paper's choice, GAP's activation gradient): the mean over images of
  ``|d loss_b / d act_b,i|``, the cross-entropy of image b differentiated by the activation
  (the output of neuron i's ReLU) on the same image.
- ``"weight"``: the magnitude of the weights that read the neuron, ``sum_j |W_ji|`` over the
  affine layers its activation feeds (through identities and flattening; a residual addition
  adds 1).
  Data-free.
"""
from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import fx, nn

from .activation import GraftedReLU
from .instability import with_every_site_grafted
from .rewrite import GraftingError, grafted_modules, trace

Tensor = torch.Tensor
SIGNIFICANCE_KINDS = ("gradient", "weight")


def gradient_significance(model: nn.Module, images: Tensor, labels: Tensor,
                          batch_size: int = 100) -> dict[str, Tensor]:
    """``{site: mean_b |d CE(f(x_b), y_b) / d act_b|}`` (shaped like one sample's activation),
    in eval mode."""
    probe = with_every_site_grafted(model, images).eval()
    modules = grafted_modules(probe)
    sums = {site: torch.zeros(m.mask.shape) for site, m in modules.items()}
    outputs: dict[str, Tensor] = {}

    def keep(site):
        def hook(_module, _inputs, out):
            outputs[site] = out
        return hook

    handles = [m.register_forward_hook(keep(site)) for site, m in modules.items()]
    try:
        for start in range(0, len(images), batch_size):
            outputs.clear()
            x, y = images[start:start + batch_size], labels[start:start + batch_size]
            loss = F.cross_entropy(probe(x), y, reduction="sum")
            sites = list(outputs)
            grads = torch.autograd.grad(loss, [outputs[s] for s in sites])
            for site, grad in zip(sites, grads):
                sums[site] += grad.abs().sum(0)
    finally:
        for handle in handles:
            handle.remove()
    return {site: total / len(images) for site, total in sums.items()}


def weight_significance(model: nn.Module, example: Tensor) -> dict[str, Tensor]:
    """``{site: sum_j |W_ji|}`` over the weights reading each neuron (see the module
    docstring); refuses a site whose activation feeds an operation other than Linear, Conv2d,
    flattening or addition, naming it."""
    probe = with_every_site_grafted(model, example[:1])
    gm = trace(probe)
    result = {}
    for node in gm.graph.nodes:
        if node.op == "call_module" and isinstance(gm.get_submodule(node.target), GraftedReLU):
            module = gm.get_submodule(node.target)
            result[module.site] = _read_weight(gm, node, module.mask.shape, module.site)
    return result


def _read_weight(gm: fx.GraphModule, node: fx.Node, shape: torch.Size, site: str) -> Tensor:
    """``sum_j |W_ji|`` over every reader of ``node`` (a value of per-sample ``shape``)."""
    total = torch.zeros(shape)
    for user in node.users:
        total = total + _weight_of_reader(gm, user, node, shape, site)
    return total


def _weight_of_reader(gm, user: fx.Node, source: fx.Node, shape, site: str) -> Tensor:
    module = gm.get_submodule(user.target) if user.op == "call_module" else None
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        x = torch.ones(1, *shape, requires_grad=True)
        if isinstance(module, nn.Linear):
            out = F.linear(x, module.weight.abs())
        else:
            out = F.conv2d(x, module.weight.abs(), None, module.stride, module.padding,
                           module.dilation, module.groups)
        (grad,) = torch.autograd.grad(out.sum(), x)
        return grad[0].detach()
    flattens = isinstance(module, nn.Flatten) or (user.op == "call_function" and user.target is torch.flatten) \
        or (user.op == "call_method" and user.target == "flatten")
    if isinstance(module, nn.Identity):
        return _read_weight(gm, user, shape, site)
    if flattens:
        return _read_weight(gm, user, torch.Size([shape.numel()]), site).reshape(shape)
    if user.op == "call_function" and user.target in (operator.add, torch.add):
        return torch.ones(shape)
    what = user.target if isinstance(user.target, str) else getattr(user.target, "__name__", user.target)
    raise GraftingError(f"weight-magnitude significance of ReLU site {site!r}: its activation "
                        f"feeds {user.op} {what!r}; only Linear, Conv2d, flattening and residual "
                        "additions are supported (use the gradient significance)")
