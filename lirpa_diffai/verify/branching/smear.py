"""``smear``: the input dimension to halve when branch and bound splits the input box
(:mod:`verify.input_split`, for inputs of few dimensions): ReluVal's *smear* (Wang, Pei,
Whitehouse, Yang, Jana 2018, "Formal security analysis of neural networks using symbolic
intervals", USENIX Security), the gradient of the worst spec row at the box centre times the
box's width::

    i* = argmax_i |d m(c) / d x_i| (u_i - l_i) + 1e-9 (u_i - l_i),   c = (l + u) / 2

``m`` the smallest margin ``min_s (C f - t)_s``; the second term splits the widest dimension
where the gradient is zero.
"""
from __future__ import annotations

import torch

from .. import falsify
from ..spec import Spec


def smear_dimension(model, lo: torch.Tensor, hi: torch.Tensor, spec: Spec) -> torch.Tensor:
    """Per box (N, ...), the flat input dimension ``i*``."""
    centre = ((lo + hi) / 2).detach().requires_grad_(True)
    n = len(lo)
    spec_n = Spec(spec.C.expand(n, *spec.C.shape[1:]), spec.threshold.expand(n, -1))
    with torch.enable_grad():
        margin = falsify.worst_margin(model, centre, spec_n)
        grad, = torch.autograd.grad(margin.sum(), centre)
    smear = grad.abs().flatten(1) * (hi - lo).flatten(1)
    smear = smear + 1e-9 * (hi - lo).flatten(1)
    return smear.argmax(dim=1)
