"""Bound-time check for the linear-relaxation methods (CROWN, CROWN-IBP, alpha-CROWN,
CROWN-hzono, forward mode): every perturbed node keeps the inputs' batch axis.

auto_LiRPA 0.3 carries one block of coefficients per sample (``A`` of shape (spec, B, ...)): it
assumes each node's value at sample ``b`` depends on sample ``b`` of the inputs only, and that
its first axis is the batch. An operator that moves values across the batch axis
(``x.transpose(0, 1)``, ``x - x.mean(0)``, ``x[0:1] - x[1:2]``, a reshape that merges samples,
a constant that adds samples) breaks that, and auto_LiRPA then fails or returns bounds that
sampled points beat. IBP (elementwise intervals) and hzono (per-sample noise symbols, rows
moved into ``beta``) bound these soundly; the linear-relaxation methods refuse them here,
naming the node.

The test runs once per input shapes and final node. Each perturbed node is evaluated on the
inputs being bounded (BatchNorm with fixed statistics, Dropout as the identity, as the bounds
take them): its first axis must be the batch, of the inputs' size ``B``, and its Jacobian in
each perturbed operand must be block-diagonal over the batch (an operator without a derivative,
such as Heaviside, is elementwise and checked by its shape only). With random output weights
``w`` and per-sample scales ``s``, a block-diagonal ``J`` gives ``(s w)^T J = s (w^T J)``
exactly; a ``J`` with a block off the diagonal breaks it (almost surely).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from auto_LiRPA.operators import BoundBatchNormalization, BoundDropout

from ..errors import UnsupportedOperatorError, operator_name

PROBE_SEED = 20261  # the probe's weights are reproducible and leave the global RNG alone
RELATIVE_TOLERANCE = 1e-4


def per_sample_forward(node, args):
    """``node``'s value as the bound methods take it: BatchNorm with its current (running, or
    the clean batch's) statistics held fixed, Dropout as the identity (its mask is per element)."""
    if isinstance(node, BoundBatchNormalization):
        x, weight, bias, mean, var = args
        mean = getattr(node, "current_mean", mean) if node.training else mean
        var = getattr(node, "current_var", var) if node.training else var
        return F.batch_norm(x, mean.detach(), var.detach(), weight, bias, False, 0.0, node.eps)
    if isinstance(node, BoundDropout):
        return args[0]
    value = node.forward(*args)
    if isinstance(value, (torch.Size, tuple)):  # Shape nodes, as auto_LiRPA's forward pass
        value = torch.tensor(value, device=getattr(node, "device", None))
    return value


def is_float(value) -> bool:
    return isinstance(value, torch.Tensor) and value.is_floating_point()


def mixes_samples(out, leaves, generator) -> bool:
    """Whether ``d out / d leaf`` has a block off the batch diagonal for one of ``leaves``
    (each with the batch first): ``(s w)^T J != s (w^T J)`` for random ``w`` and scales ``s``."""
    w = torch.randn(out.shape, generator=generator, dtype=out.dtype).to(out.device)
    s = torch.rand(out.shape[0], generator=generator, dtype=out.dtype).to(out.device) + 1
    try:
        plain = torch.autograd.grad(out, leaves, w, retain_graph=True, allow_unused=True)
        scaled = torch.autograd.grad(out, leaves, w * s.view(-1, *[1] * (out.ndim - 1)), allow_unused=True)
    except RuntimeError as error:  # no derivative (heaviside, elementwise): its shape is checked
        if "not implemented" in str(error):
            return False
        raise
    for leaf, g, gs in zip(leaves, plain, scaled):
        if g is None or gs is None:
            continue
        expected = g * s.view(-1, *[1] * (leaf.ndim - 1))
        scale = max(expected.abs().max().item(), gs.abs().max().item(), 1e-12)
        if (gs - expected).abs().max().item() > RELATIVE_TOLERANCE * scale:
            return True
    return False


def refusal(node, method: str, why: str) -> UnsupportedOperatorError:
    operator = operator_name(node)
    return UnsupportedOperatorError(
        f"{method}: graph node '{node.name}' (operator {operator}, {type(node).__name__}) {why}; "
        "CROWN-like methods keep one block of coefficients per sample and cannot bound it "
        "(IBP and hzono can)")


def check_batch_axis(order, input_values: dict, method: str) -> None:
    """Raise :class:`UnsupportedOperatorError` naming the first node of ``order`` (a
    topological order) that depends on a perturbed input and moves values across the batch
    axis. ``input_values``: ``{name: value}`` of the perturbed input nodes."""
    batch = {v.shape[0] for v in input_values.values() if v.ndim}
    if len(batch) != 1:
        return
    batch = batch.pop()
    generator = torch.Generator().manual_seed(PROBE_SEED)
    values, carried = dict(input_values), set(input_values)
    with torch.no_grad():  # only each perturbed node's own step records a graph
        for node in order:
            check_node(node, values, carried, batch, generator, method)


def check_node(node, values: dict, carried: set, batch: int, generator, method: str) -> None:
    """Evaluate ``node`` into ``values``; refuse it if it depends on a perturbed input (its
    name then joins ``carried``) and moves values across the batch axis."""
    if node.name in values:
        return
    if not node.inputs:
        values[node.name] = node.forward()
        return
    args = [values[i.name] for i in node.inputs]
    if not any(i.name in carried for i in node.inputs):
        values[node.name] = per_sample_forward(node, args)
        return
    perturbed = [a.detach().requires_grad_() if i.name in carried and is_float(a) else None
                 for i, a in zip(node.inputs, args)]
    with torch.enable_grad():
        out = per_sample_forward(node, [a if leaf is None else leaf for a, leaf in zip(args, perturbed)])
    values[node.name] = out.detach() if isinstance(out, torch.Tensor) else out
    if not is_float(out):
        return  # shapes and masks: not bounded
    carried.add(node.name)
    if out.ndim == 0 or out.shape[0] != batch:
        raise refusal(node, method, f"has shape {tuple(out.shape)}, whose first axis is not the "
                                    f"batch of {batch} sample(s): it moves or reduces the batch axis")
    perturbed = [leaf for leaf in perturbed if leaf is not None]
    if batch > 1 and out.requires_grad and perturbed and mixes_samples(out, perturbed, generator):
        raise refusal(node, method, "reads across the batch axis: its value at one sample depends "
                                    "on the inputs of another")
