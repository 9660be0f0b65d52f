"""Certification helpers shared by the trainer, the evaluation, the examples, the benchmark and the
command line: the margin specification, the certified mask, and one table row per bound method on
the same inputs."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from auto_LiRPA import BoundedTensor, PerturbationLpNorm

DEFAULT_METHODS = ("IBP", "hzono", "CROWN-IBP", "CROWN")


def margin_spec(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``C`` (B, K-1, K) with rows ``e_y - e_j`` for every ``j != y``: the network is proved
    robust on a sample when every lower bound of ``C f(x)`` is positive."""
    eye = torch.eye(num_classes, device=labels.device)
    rows = eye[labels].unsqueeze(1) - eye.unsqueeze(0)  # (B, K, K): row j = e_y - e_j
    keep = torch.arange(num_classes, device=labels.device).unsqueeze(0) != labels.unsqueeze(1)
    return rows[keep].view(len(labels), num_classes - 1, num_classes)


def input_box(x: torch.Tensor, eps: float, data_range=(0.0, 1.0)) -> BoundedTensor:
    """``[max(x - eps, lo), min(x + eps, hi)]`` as a BoundedTensor."""
    lo, hi = data_range
    ptb = PerturbationLpNorm(norm=np.inf, eps=eps, x_L=(x - eps).clamp(min=lo), x_U=(x + eps).clamp(max=hi))
    return BoundedTensor(x, ptb)


def certified_mask(bm, x: torch.Tensor, y: torch.Tensor, eps: float, method: str,
                   data_range=(0.0, 1.0), num_classes: int = 10) -> torch.Tensor:
    """A bool per sample: every margin lower bound with ``method`` over the eps box is > 0
    (the prediction is not checked here)."""
    lo, hi = data_range
    x_L, x_U = (x - eps).clamp(min=lo), (x + eps).clamp(max=hi)
    xb = BoundedTensor(x, PerturbationLpNorm(norm=np.inf, x_L=x_L, x_U=x_U))
    with torch.no_grad():
        lb, _ = bm.compute_bounds(x=(xb,), C=margin_spec(y, num_classes), method=method,
                                  bound_upper=False)
    return (lb > 0).all(dim=1)


@dataclass
class MethodResult:
    """One row of a comparison: mean width of the margin bounds, fraction of samples whose
    margins are all proved (among all samples), and wall-clock seconds."""

    method: str
    mean_width: float
    verified: float
    seconds: float

    def as_dict(self) -> dict:
        return asdict(self)


def bound_margins(bm, x: torch.Tensor, labels: torch.Tensor, eps: float, method: str,
                  num_classes: int = 10, data_range=(0.0, 1.0)):
    """Lower and upper bounds of the margins ``y_label - y_j`` over the input box."""
    C = margin_spec(labels, num_classes)
    return bm.compute_bounds(x=(input_box(x, eps, data_range),), C=C, method=method)


def compare_methods(bm, x, labels, eps, methods=DEFAULT_METHODS, num_classes=10,
                    data_range=(0.0, 1.0)) -> list[MethodResult]:
    """Each method on the same inputs, timed; ``bm`` is a ``lirpa_diffai.BoundedModule``."""
    rows = []
    for method in methods:
        start = time.perf_counter()
        with torch.no_grad():
            lower, upper = bound_margins(bm, x, labels, eps, method, num_classes, data_range)
        seconds = time.perf_counter() - start
        verified = (lower > 0).all(dim=1).float().mean().item()
        rows.append(MethodResult(method, (upper - lower).mean().item(), verified, seconds))
    return rows


def format_table(rows: list[MethodResult]) -> str:
    """A markdown table of ``rows``."""
    lines = ["| method | mean bound width | verified | seconds |", "|---|---:|---:|---:|"]
    lines += [f"| {r.method} | {r.mean_width:.4g} | {r.verified:.1%} | {r.seconds:.3f} |" for r in rows]
    return "\n".join(lines)
