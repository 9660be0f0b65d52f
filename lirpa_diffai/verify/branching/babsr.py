"""``babsr``: BaBSR, "branch and bound with smart ReLU branching" (Bunel, Lu, Turkaslan, Torr,
Kohli, Kumar 2020, "Branch and bound for piecewise linear neural network verification", JMLR
21, section 5.1).

It estimates how much splitting an unstable neuron ``a = max(z, 0)``, ``l < 0 < u``, moves
the linear lower bound of the worst spec row, in which the ReLU output has coefficient
``lambda``. In the parent the relaxation passes ``z``'s bias ``b`` (the bias of the affine
layer that computes ``z``; 0 where there is none) with slope ``r = u / (u - l)`` and adds the
intercept ``-l u / (u - l)`` (when ``lambda < 0``); the child ``z >= 0`` passes ``b`` with
slope 1, the child ``z <= 0`` not at all. The score is the size of the smaller of the two
estimated changes plus the removed intercept term::

    s = | min((r - 1) lambda b,  r lambda b)  +  min(lambda, 0) (-l u / (u - l)) |

At the root, where no ``lambda`` is recorded, BaBSR ranks as :mod:`.intercept` does.
"""
from __future__ import annotations

import torch

from ..bounding import split_relus
from . import intercept as intercept_heuristic
from .scores import intercept, masked, tie_break, top_neurons, upper_slope


def scores(lower: torch.Tensor, upper: torch.Tensor, lam: torch.Tensor,
           bias: torch.Tensor) -> torch.Tensor:
    """``s`` (N, numel) of one ReLU layer; ``lam`` (N, numel), ``bias`` (numel,)."""
    r = upper_slope(lower, upper)
    lam_b = lam * bias
    through = torch.minimum((r - 1) * lam_b, r * lam_b)
    return (through + lam.clamp(max=0) * intercept(lower, upper)).abs()


def pre_activation_bias(node) -> torch.Tensor:
    """The bias (numel,) of the affine layer that computes a split node's pre-activation
    ``z``: a linear layer's bias, a convolution's bias per channel broadcast over its map,
    zeros for any other producer (an addition, a batch norm folded elsewhere, ...)."""
    pre = node.inputs[0]
    shape = pre.output_shape[1:]
    zeros = torch.zeros(int(torch.tensor(shape).prod()))
    kind = type(pre).__name__
    if kind not in ("BoundLinear", "BoundConv") or len(pre.inputs) < 3:
        return zeros
    value = getattr(pre.inputs[2], "param", None)
    if value is None:
        value = getattr(pre.inputs[2], "forward_value", None)
    if not torch.is_tensor(value):
        return zeros
    value = value.detach().flatten()
    if kind == "BoundConv":
        value = value.view(-1, *([1] * (len(shape) - 1))).expand(*shape)
    return value.reshape(-1).to(zeros) if value.numel() == zeros.numel() else zeros


def rank(problem, domains, lam: list, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best neurons per domain by ``s`` (see :mod:`.base`)."""
    if all(lm is None for lm in lam):
        return intercept_heuristic.rank(problem, domains, lam, k)
    biases = [pre_activation_bias(node).to(domains.lb.device) for node in split_relus(problem.bm)]
    per_layer = []
    for lo, up, lm, bias, cand in zip(domains.lower, domains.upper, lam, biases,
                                      domains.unstable(problem.affine)):
        score = (intercept_heuristic.scores(lo, up, None) if lm is None
                 else scores(lo, up, lm, bias) + tie_break(lo, up))
        per_layer.append(masked(score, cand))
    return top_neurons(per_layer, k, len(domains))
