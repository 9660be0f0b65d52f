"""What is verified and what a verifier answers.

A *specification* on one sample is a matrix ``C`` (S, K) and a threshold ``t`` (S,): the
network ``f`` satisfies it on the input box ``X`` when ``C f(x) > t`` row by row for every
``x`` in ``X``. The robustness specification of a sample labelled ``y`` has the rows
``e_y - e_j`` (j != y) and ``t = 0`` (the margins ``f_y - f_j``), auto_LiRPA's ``C``.
"""
from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Optional

import torch

from ..evaluation.margins import margin_spec


class VerificationError(ValueError):
    """Input the verifier refuses (bad timeout, spec of the wrong shape, unboundable graph)."""


class Status(str, enum.Enum):
    """The answer for one sample."""

    VERIFIED = "verified"
    FALSIFIED = "falsified"
    TIMEOUT = "timeout"


@dataclass
class Spec:
    """``C x > threshold`` per sample: ``C`` (B, S, K), ``threshold`` (B, S)."""

    C: torch.Tensor
    threshold: torch.Tensor

    def __len__(self) -> int:
        return self.C.shape[0]

    def select(self, index) -> "Spec":
        """The specs of the samples ``index`` (a slice or index tensor)."""
        return Spec(self.C[index], self.threshold[index])

    def margins(self, logits: torch.Tensor) -> torch.Tensor:
        """``C f(x) - t`` (B, S) for outputs ``logits`` (B, K)."""
        return torch.einsum("bsk,bk->bs", self.C.to(logits), logits) - self.threshold.to(logits)

    def violated(self, logits: torch.Tensor) -> torch.Tensor:
        """A bool per sample: some row of ``C f(x) > t`` fails at these outputs."""
        return (self.margins(logits) <= 0).any(dim=1)


def robustness_spec(y: torch.Tensor, num_classes: int) -> Spec:
    """The margins ``f_y - f_j > 0`` for every ``j != y``."""
    C = margin_spec(y, num_classes)
    return Spec(C, torch.zeros(C.shape[:2], device=C.device))


def check_spec(spec: Spec, batch: int, num_outputs: int) -> Spec:
    """``spec`` with float tensors if its shapes fit ``batch`` samples of ``num_outputs``
    logits; a VerificationError naming the wrong shape otherwise."""
    C, t = torch.as_tensor(spec.C), torch.as_tensor(spec.threshold)
    if C.dim() != 3 or C.shape[0] != batch or C.shape[2] != num_outputs or C.shape[1] < 1:
        raise VerificationError(f"spec C must have shape (batch={batch}, S>=1, "
                                f"outputs={num_outputs}), got {tuple(C.shape)}")
    if t.shape != C.shape[:2]:
        raise VerificationError(f"spec threshold must have shape {tuple(C.shape[:2])} "
                                f"(batch, rows of C), got {tuple(t.shape)}")
    return Spec(C.float(), t.float())


def check_timeout(timeout: float) -> float:
    """``timeout`` in seconds if positive and finite; a VerificationError otherwise."""
    if not (isinstance(timeout, (int, float)) and 0 < timeout < float("inf")):
        raise VerificationError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return float(timeout)


@dataclass
class SampleResult:
    """The verifier's answer for one sample: ``status``; ``method`` that closed it (the
    attack, an incomplete bound method, ``"BaB"`` or ``"input-BaB"``); the wall-clock
    ``seconds`` spent on it; ``subdomains`` bounded by branch and bound;
    ``counterexample`` (an input inside the box that violates the spec, when falsified)."""

    status: Status
    method: str
    seconds: float
    subdomains: int = 0
    lp_calls: int = 0
    counterexample: Optional[torch.Tensor] = field(default=None, repr=False)

    def as_dict(self) -> dict:
        """JSON-ready (the counterexample left out)."""
        out = asdict(self)
        out.pop("counterexample")
        out["status"] = self.status.value
        return out
