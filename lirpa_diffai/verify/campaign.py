"""Complete certification of a test set, sample by sample, that can be stopped and resumed
(``certify --methods ...,BaB --timeout 60``).

Samples that an incomplete method already proved count as verified by it; the others go
through :func:`verify.verify` one by one (a progress bar per sample). Each decided sample is
appended as one JSON line to a *state file*: a run started again with the same state file,
network, radius and timeout keeps those samples and continues with the rest (a line cut by an
interruption is ignored).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from .api import verify
from .spec import Status


@dataclass
class CompleteSummary:
    """Counts over all ``n`` samples: ``verified`` (correct and proved), ``falsified``
    (a counterexample, or misclassified), ``timeout``; ``verified_accuracy`` =
    verified / n; ``seconds`` of this run and ``seconds_per_sample`` over the samples it
    decided here; ``resumed``: samples kept from the state file; ``samples``: one dict per
    sample (index, status, method, seconds, subdomains)."""

    n: int
    timeout: float
    verified: int = 0
    falsified: int = 0
    timed_out: int = 0
    verified_accuracy: float = 0.0
    seconds: float = 0.0
    seconds_per_sample: float = 0.0
    resumed: int = 0
    samples: list = field(default_factory=list)

    def as_dict(self) -> dict:
        from dataclasses import asdict
        return asdict(self)


def state_key(network: str, eps: float, timeout: float) -> dict:
    return {"network": network, "eps": float(eps), "timeout": float(timeout)}


def read_state(path: Optional[Path], key: dict) -> dict:
    """``{index: sample dict}`` from a state file written for the same ``key`` (empty if
    missing; a ValueError if it belongs to another run)."""
    if path is None or not path.exists():
        return {}
    lines = path.read_text().splitlines()
    if not lines:
        return {}
    try:
        header = json.loads(lines[0])
    except json.JSONDecodeError:
        raise ValueError(f"{path} is not a BaB state file (its first line is not JSON)") from None
    if header != {"state": key}:
        raise ValueError(f"{path} holds another run ({header.get('state')}); this one is {key}. "
                         f"Remove it or choose another --json")
    done = {}
    for line in lines[1:]:
        try:
            sample = json.loads(line)
        except json.JSONDecodeError:
            continue  # the line an interruption cut
        done[int(sample["index"])] = sample
    return done


def append_state(path: Optional[Path], key: dict, sample: dict) -> None:
    if path is None:
        return
    with open(path, "a") as f:
        if f.tell() == 0:
            f.write(json.dumps({"state": key}) + "\n")
        f.write(json.dumps(sample) + "\n")
        f.flush()


def verify_images(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                     timeout: float, data_range=(0.0, 1.0), num_classes: int = 10,
                     proved: Optional[dict] = None, state_path=None, network: str = "",
                     progress: bool = True, **verify_options) -> CompleteSummary:
    """Verified / falsified / timeout for every sample of ``(x, y)`` (see the module
    docstring). ``proved``: ``{method: bool tensor (n,)}`` of incomplete methods already
    run; ``state_path``: the state file for stop-and-resume (None: no state)."""
    from tqdm import tqdm
    state_path = Path(state_path) if state_path else None
    key = state_key(network, eps, timeout)
    done = read_state(state_path, key)
    summary = CompleteSummary(len(x), float(timeout), resumed=len(done))
    with torch.no_grad():
        correct = model(x).argmax(1).cpu() == y.cpu()
    proved_by = {}
    for method, mask in (proved or {}).items():
        for i in mask.nonzero().flatten().tolist():
            proved_by.setdefault(i, method)
    from .api import bounded_for_verify
    start = time.perf_counter()
    decided_here = 0
    bounded = None
    bar = tqdm(total=len(x), desc="BaB", unit="sample", disable=not progress, leave=False)
    for i in range(len(x)):
        if i in done:
            sample = done[i]
        else:
            if not correct[i]:
                sample = {"index": i, "status": Status.FALSIFIED.value,
                          "method": "misclassified", "seconds": 0.0, "subdomains": 0}
            elif i in proved_by:
                sample = {"index": i, "status": Status.VERIFIED.value, "method": proved_by[i],
                          "seconds": 0.0, "subdomains": 0}
            else:
                bounded = bounded or bounded_for_verify(model, x[i:i + 1])
                [result] = verify(model, x[i:i + 1], y[i:i + 1], eps, timeout=timeout,
                                  data_range=data_range, num_classes=num_classes,
                                  bounded=bounded, **verify_options)
                sample = {"index": i, **result.as_dict()}
                decided_here += 1
            append_state(state_path, key, sample)
        summary.samples.append(sample)
        tally(summary, sample)
        bar.update(1)   # the count first: the postfix's counts add up to it
        bar.set_postfix(verified=summary.verified, falsified=summary.falsified,
                        timeout=summary.timed_out)
    bar.close()
    summary.seconds = time.perf_counter() - start
    summary.seconds_per_sample = summary.seconds / max(decided_here, 1)
    summary.verified_accuracy = summary.verified / max(summary.n, 1)
    return summary


def tally(summary: CompleteSummary, sample: dict) -> None:
    status = sample["status"]
    if status == Status.VERIFIED.value:
        summary.verified += 1
    elif status == Status.FALSIFIED.value:
        summary.falsified += 1
    else:
        summary.timed_out += 1


def format_summary(s: CompleteSummary) -> str:
    """One line of counts for the terminal."""
    resumed = f", {s.resumed} kept from the state file" if s.resumed else ""
    return (f"BaB (timeout {s.timeout:g} s per sample): {s.verified} verified, "
            f"{s.falsified} falsified, {s.timed_out} timeout of {s.n}; verified accuracy "
            f"{s.verified_accuracy:.1%}; {s.seconds_per_sample:.2f} s per sample run{resumed}")
