"""Certification helpers shared by the trainer, the evaluation, the examples, the benchmark and the
command line: the margin specification, the certified mask, the autograd mode each bound method
needs, and one table row per bound method on the same inputs."""
from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from typing import Callable, Optional

import numpy as np
import torch
from auto_LiRPA import BoundedTensor, PerturbationLpNorm

from ..data import eps_box

DEFAULT_METHODS = ("IBP", "hzono", "CROWN-IBP", "CROWN")

# what a bound method may raise on a network or input it cannot handle (auto_LiRPA's refusals
# and assertions, unsupported operators, out of memory): one method fails, the others go on
METHOD_ERRORS = (MemoryError, RuntimeError, ValueError, AssertionError, NotImplementedError,
                 IndexError)


def needs_autograd(method: str) -> bool:
    """Whether ``method`` optimizes its bounds by gradient descent (alpha-CROWN,
    alpha-CROWN-hzono, auto_LiRPA's CROWN-Optimized) and so must run with autograd on."""
    key = method.lower().replace("_", "-")
    return key.startswith("alpha-") or "optimized" in key


def bound_grad_mode(method: str):
    """The autograd mode to bound with when no gradient of the bounds is wanted:
    ``torch.no_grad()``, or ``torch.enable_grad()`` for a method that optimizes (detach its
    bounds)."""
    return torch.enable_grad() if needs_autograd(method) else torch.no_grad()


def error_text(err: BaseException, limit: int = 120) -> str:
    """A one-line reason: the allocation that failed for an out-of-memory error (torch wraps
    it, e.g. in a TorchScript traceback), else the message's first line, shortened."""
    message = str(err).strip()
    allocation = re.search(r"can't allocate memory: you tried to allocate (\d+) bytes", message)
    if allocation:
        return f"out of memory (a {int(allocation.group(1)) / 2**20:.0f} MiB allocation failed)"
    text = message.splitlines()[0] if message else ""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def method_error(err: BaseException) -> str:
    """``"<type>: <one-line reason>"`` for an error row."""
    return f"{type(err).__name__}: {error_text(err)}"


def margin_spec(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``C`` (B, K-1, K) with rows ``e_y - e_j`` for every ``j != y``: the network is proved
    robust on a sample when every lower bound of ``C f(x)`` is positive."""
    eye = torch.eye(num_classes, device=labels.device)
    rows = eye[labels].unsqueeze(1) - eye.unsqueeze(0)  # (B, K, K): row j = e_y - e_j
    keep = torch.arange(num_classes, device=labels.device).unsqueeze(0) != labels.unsqueeze(1)
    return rows[keep].view(len(labels), num_classes - 1, num_classes)


def input_box(x: torch.Tensor, eps: float, data_range=(0.0, 1.0)) -> BoundedTensor:
    """``[max(x - eps, lo), min(x + eps, hi)]`` as a BoundedTensor."""
    x_L, x_U = eps_box(x, eps, data_range)
    ptb = PerturbationLpNorm(norm=np.inf, eps=eps, x_L=x_L, x_U=x_U)
    return BoundedTensor(x, ptb)


def certified_mask(bm, x: torch.Tensor, y: torch.Tensor, eps: float, method: str,
                   data_range=(0.0, 1.0), num_classes: int = 10) -> torch.Tensor:
    """A bool per sample: every margin lower bound with ``method`` over the eps box is > 0
    (the prediction is not checked here)."""
    x_L, x_U = eps_box(x, eps, data_range)
    xb = BoundedTensor(x, PerturbationLpNorm(norm=np.inf, x_L=x_L, x_U=x_U))
    with bound_grad_mode(method):
        lb, _ = bm.compute_bounds(x=(xb,), C=margin_spec(y, num_classes), method=method,
                                  bound_upper=False)
    return (lb.detach() > 0).all(dim=1)


def logit_spec(batch: int, num_classes: int, device=None) -> torch.Tensor:
    """``C`` (B, K, K): the identity per sample, whose bounds are those of the logits."""
    return torch.eye(num_classes, device=device).repeat(batch, 1, 1)


def proof_and_width_spec(pred: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``C`` (B, 2K-1, K): the K-1 margin rows ``e_pred - e_j`` (:func:`margin_spec`), then
    the K rows of :func:`logit_spec`."""
    return torch.cat([margin_spec(pred, num_classes),
                      logit_spec(len(pred), num_classes, pred.device)], dim=1)


def proof_and_width(bm, x: torch.Tensor, pred: torch.Tensor, eps: float, method: str,
                    data_range=(0.0, 1.0), num_classes: int = 10):
    """What DiffAI's tester measures on one batch with one test domain: ``(proved, width)``,
    a bool and a float per sample.

    ``proved``: every lower bound of ``y_pred - y_j`` (j != pred) over the eps box is > 0,
    ``pred`` being the network's own prediction on ``x`` (DiffAI's ``isSafe(org)``).
    ``width``: DiffAI's ``diameter()`` of the output element, ``sum_k (u_k - l_k) / 2``
    over the K logits (for a hybrid zonotope: every logit's beta plus the absolute values
    of its correlated coefficients, summed over the logits), from the same bound call
    (:func:`proof_and_width_spec`, both sides).

    A method that optimizes its bounds (:func:`needs_autograd`) bounds the margins only
    (lower side) and ``width`` is None: its logit bounds would take two more optimizations,
    and logit rows in the same call would enter the objective its proof optimizes."""
    box = (input_box(x, eps, data_range),)
    k = num_classes
    with bound_grad_mode(method):
        if needs_autograd(method):
            margins, _ = bm.compute_bounds(x=box, C=margin_spec(pred, k), method=method,
                                           bound_upper=False)
            return (margins.detach() > 0).all(dim=1), None
        lower, upper = bm.compute_bounds(x=box, C=proof_and_width_spec(pred, k), method=method)
    lower, upper = lower.detach(), upper.detach()
    proved = (lower[:, :k - 1] > 0).all(dim=1)
    width = ((upper[:, k - 1:] - lower[:, k - 1:]) / 2).sum(dim=1)
    return proved, width


@dataclass
class MethodResult:
    """One row of a comparison: mean width of the margin bounds, fraction of samples whose
    margins are all proved (among all samples), and wall-clock seconds; or, for a method that
    failed or was skipped, ``error`` and no figures."""

    method: str
    mean_width: Optional[float] = None
    verified: Optional[float] = None
    seconds: Optional[float] = None
    error: Optional[str] = None

    def as_dict(self) -> dict:
        return asdict(self)


def bound_margins(bm, x: torch.Tensor, labels: torch.Tensor, eps: float, method: str,
                  num_classes: int = 10, data_range=(0.0, 1.0)):
    """Lower and upper bounds of the margins ``y_label - y_j`` over the input box (detached:
    no gradient flows back from them)."""
    C = margin_spec(labels, num_classes)
    with bound_grad_mode(method):
        lower, upper = bm.compute_bounds(x=(input_box(x, eps, data_range),), C=C, method=method)
    return lower.detach(), upper.detach()


def compare_methods(bm, x, labels, eps, methods=DEFAULT_METHODS, num_classes=10,
                    data_range=(0.0, 1.0), skip: Optional[Callable[[str], Optional[str]]] = None,
                    progress: Optional[Callable[[str], None]] = None) -> list[MethodResult]:
    """Each method on the same inputs, timed; ``bm`` is a ``lirpa_diffai.BoundedModule``.
    ``skip(method)`` (optional) gives a reason not to run a method (e.g.
    ``budget.size_limit_reason``); a method that fails (``METHOD_ERRORS``) gets its error in
    its row and the others still run. ``progress`` (optional) is called with a line before
    each method and with its row's text after it."""
    say = progress or (lambda _line: None)
    rows = []
    for method in methods:
        reason = skip(method) if skip else None
        if reason:
            rows.append(MethodResult(method, error=reason))
        else:
            say(f"{method} ...")
            start = time.perf_counter()
            try:
                lower, upper = bound_margins(bm, x, labels, eps, method, num_classes, data_range)
            except METHOD_ERRORS as err:
                rows.append(MethodResult(method, error=method_error(err)))
            else:
                verified = (lower > 0).all(dim=1).float().mean().item()
                rows.append(MethodResult(method, (upper - lower).mean().item(), verified,
                                         time.perf_counter() - start))
        say(format_row(rows[-1]))
    return rows


def format_row(r: MethodResult) -> str:
    """One row as a line of text."""
    if r.error:
        return f"{r.method}: {r.error}"
    return (f"{r.method}: mean bound width {r.mean_width:.4g}, verified {r.verified:.1%}, "
            f"{r.seconds:.3f} s")


def format_table(rows: list[MethodResult]) -> str:
    """A markdown table of ``rows`` (a failed or skipped method: its reason)."""
    lines = ["| method | mean bound width | verified | seconds |", "|---|---:|---:|---:|"]
    lines += [f"| {r.method} | {r.error.replace('|', '/')} | | |" if r.error else
              f"| {r.method} | {r.mean_width:.4g} | {r.verified:.1%} | {r.seconds:.3f} |"
              for r in rows]
    return "\n".join(lines)
