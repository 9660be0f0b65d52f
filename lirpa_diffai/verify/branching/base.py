"""The interface of a ReLU branching heuristic.

A heuristic is a function ``rank(problem, domains, lam, k) -> (layer, index)``: given N
subdomains (:class:`verify.bounding.Domains`, with their last bounds) and ``lam``, per split
ReLU node, the coefficient ``lambda`` (N, numel) of its output in the linear lower bound of
each domain's worst spec row (None at the root, where nothing was recorded), it returns the
``k`` neurons to split
per domain, best first, as two (N, k) tensors: the split node's position and the flat neuron
index (layer -1: no candidate left). Any choice among the unfixed neurons keeps branch and
bound sound and complete; a heuristic only decides how fast it closes.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..spec import Spec


@dataclass
class Problem:
    """What a heuristic may look at besides the domains: the ``lirpa_diffai.BoundedModule``
    ``bm``, the input box ``x_L``/``x_U`` (batch 1) and ``spec`` of one sample, and ``affine``:
    per split node, the mask of its neurons that are never split (or None)."""

    bm: object
    x_L: torch.Tensor
    x_U: torch.Tensor
    spec: Spec
    affine: list
