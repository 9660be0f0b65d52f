"""Value ranges (issue 21): operator cases moved to each side of every kink, pole and sign
change, and the functions with a pole or a domain boundary applied to the input itself.

A regime is an affine map of the case's input and radius, ``x -> scale * x + shift``
(``near-pole``: ``0.02 + 0.005 |x|``, a small positive box next to 0).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from .catalogue import Step
from .check import Case
from .graphs import Graph

# regime -> (scale, shift); "near-pole" is applied to |x|
RANGES = {
    "straddling": (1.0, 0.0),
    "negative": (0.5, -3.0),
    "positive": (0.5, 3.0),
    "near-pole": (0.005, 0.02),
    "tiny": (1e-3, 0.0),
    "huge": (20.0, 0.0),
}


def moved(x: torch.Tensor, eps: float, regime: str) -> tuple:
    """The input and radius of ``regime``."""
    scale, shift = RANGES[regime]
    base = x.abs() if regime == "near-pole" else x
    return scale * base + shift, scale * eps


def in_range(case: Case, regime: str) -> Case:
    """``case`` (its graph, traced once for both) with its input moved to ``regime``."""
    x, eps = moved(case.x, case.eps, regime)
    return Case(case.model, x, eps, case.seed, traced={})


# functions with a pole or a domain boundary: code, function, domain (None: every real but 0)
POLES: dict[str, tuple[Callable, Optional[float]]] = {
    "torch.reciprocal(x)": (torch.reciprocal, None),
    "torch.roll(x, 1, 1) / x": (lambda x: torch.roll(x, 1, 1) / x, None),
    "1 / (x - 0.01)": (lambda x: 1 / (x - 0.01), None),
    "tensor([2., -1., 0.5]) / x": (lambda x: torch.tensor([2.0, -1.0, 0.5]) / x, None),
    "torch.log(x)": (torch.log, 0.0),
    "torch.log(x * 1e-13)": (lambda x: torch.log(x * 1e-13), 0.0),  # around auto_LiRPA's clamp at 1e-12
    "torch.sqrt(x)": (torch.sqrt, 0.0),
}


def defined_on(code: str, x: torch.Tensor, eps: float) -> bool:
    """Whether the pole function is defined on the whole box (0 excluded for a pole: a box
    across it must be refused, which the case checks)."""
    _, lowest = POLES[code]
    return lowest is None or bool((x - eps > lowest).all())


def pole_case(code: str, regime: str, seed: int = 0) -> Optional[Case]:
    """The pole function on a (2, 3) input in ``regime``, or None where it is undefined."""
    fn, _ = POLES[code]
    generator = torch.Generator().manual_seed(seed)
    x, eps = moved(torch.randn(2, 3, generator=generator), 0.3, regime)
    if not defined_on(code, x, eps):
        return None
    return Case(Graph([Step(code, lambda self, v: fn(v))], [(0,)]).eval(), x, eps, seed)
