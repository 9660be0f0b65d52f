"""``verify``: a complete verifier per sample.

Only graphs whose operators' bounds are trusted (:mod:`trust`) are verified. Per batch: PGD
falsifies what it can (:mod:`falsify`); CROWN-hzono, then alpha-CROWN, prove what they can
(:mod:`bounding`); each sample left goes to branch and bound until its time is
up (:mod:`bab` over ReLU splits, or :mod:`input_split` over input boxes when the input has at
most ``input_split_dims`` dimensions). The samples of a batch are decided one after the
other, each with its own attack, bounds and branch and bound, so each one's ``seconds`` is
its own time.
"""
from __future__ import annotations

import contextlib
import time
from typing import Callable, Optional

import torch
from torch import nn

from ..data import eps_box
from ..lirpa03.state import eval_mode
from . import falsify
from .bab import BaBOptions, branch_and_bound
from .bounding import Domains, root_bounds, split_relus
from .input_split import input_branch_and_bound
from .spec import (SampleResult, Spec, Status, VerificationError, check_spec, check_timeout,
                   robustness_spec)
from .trust import require_trusted

INPUT_SPLIT_DIMS = 8


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU if it has none)."""
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


def bounded_for_verify(model: nn.Module, x: torch.Tensor):
    """A ``lirpa_diffai.BoundedModule`` around ``model`` (eval mode), to pass to
    :func:`verify` as ``bounded=`` across calls; auto_LiRPA's refusal (an
    ``UnsupportedOperatorError`` naming each operator and its module, or another error)
    becomes a VerificationError."""
    from ..bounded_module import BoundedModule
    try:
        return BoundedModule(model, x[:1], device=x.device).eval()
    except Exception as err:  # auto_LiRPA raises plain exceptions for unsupported graphs
        raise VerificationError(f"auto_LiRPA cannot bound this network: "
                                f"{type(err).__name__}: {err}") from err


def crown_bounds(bm, x_L, x_U, spec: Spec, method: str):
    """``(lb - t, intermediate boxes)`` of one incomplete method; a VerificationError naming
    the method if auto_LiRPA refuses the graph."""
    from .bounding import box_input
    try:
        with torch.no_grad():
            lb, _ = bm.compute_bounds(x=(box_input(x_L, x_U),), C=spec.C, method=method,
                                      bound_upper=False)
    except Exception as err:
        raise VerificationError(f"{method} cannot bound this network: "
                                f"{type(err).__name__}: {err}") from err
    boxes = dict(getattr(bm, "hzono_node_bounds", {}) or {}) if "hzono" in method.lower() else {}
    return lb - spec.threshold, boxes


@contextlib.contextmanager
def threads_and_seed(threads: Optional[int], seed: Optional[int]):
    """Inside the block, torch uses ``threads`` CPU threads and (with ``seed``) RNG states
    seeded with it (the attack's random starts); both are as before after it."""
    saved_threads = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise VerificationError(f"threads must be a positive integer, got {threads}")
        torch.set_num_threads(threads)
    try:
        with torch.random.fork_rng(enabled=seed is not None, devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            yield
    finally:
        torch.set_num_threads(saved_threads)


def verify(model: nn.Module, x: torch.Tensor, y: Optional[torch.Tensor] = None,
           eps: float | None = None, *, timeout: float, spec: Optional[Spec] = None,
           x_L: Optional[torch.Tensor] = None, x_U: Optional[torch.Tensor] = None,
           data_range=(0.0, 1.0), num_classes: Optional[int] = None,
           options: Optional[BaBOptions] = None, input_split_dims: int = INPUT_SPLIT_DIMS,
           attack_restarts: int = 5, incomplete=("CROWN-hzono",),
           progress: Optional[Callable[[int, SampleResult], None]] = None,
           bounded=None, threads: Optional[int] = None,
           seed: Optional[int] = None) -> list[SampleResult]:
    """One :class:`SampleResult` per sample of ``x`` (B, ...).

    The input set is ``[max(x - eps, lo), min(x + eps, hi)]`` (``data_range = (lo, hi)``) or
    the explicit box ``x_L``/``x_U``. The property is ``spec`` (``C f(x) > t``), by default
    the margins ``f_y - f_j > 0`` for every ``j != y``. ``timeout``: seconds per sample.
    ``incomplete``: bound methods tried before alpha-CROWN (their boxes also tighten
    alpha-CROWN's). ``progress(i, result)`` is called as each sample is decided.
    ``bounded``: a ``lirpa_diffai.BoundedModule`` of ``model`` (eval mode) to reuse across
    calls (tracing the graph again per sample costs about as much as bounding it). The
    network is verified in eval mode (its mode is restored afterwards). ``threads``: torch
    CPU threads while it runs; ``seed``: the seed of the attack's random starts (torch's
    global RNG is left as it was). Each sample is decided on its own, so its ``seconds``
    is its own time. A graph with an operator outside :data:`.trust.TRUSTED` is refused by
    node (``VerificationError``)."""
    timeout = check_timeout(timeout)
    with eval_mode(model), threads_and_seed(threads, seed):
        device = model_device(model)
        x = x.to(device)
        if x_L is None or x_U is None:
            if eps is None or not eps >= 0:
                raise VerificationError(f"give eps >= 0 or both x_L and x_U (eps={eps!r})")
            x_L, x_U = eps_box(x, eps, data_range)
        x_L, x_U = x_L.to(device), x_U.to(device)
        if x_L.shape != x.shape or x_U.shape != x.shape or bool((x_L > x_U).any()):
            raise VerificationError(f"x_L and x_U must have x's shape {tuple(x.shape)} with "
                                    f"x_L <= x_U")
        with torch.no_grad():
            outputs = model(x).flatten(1)
        if spec is None:
            if y is None:
                raise VerificationError("give the labels y or a spec")
            spec = robustness_spec(y.to(device), num_classes or outputs.shape[1])
        spec = check_spec(spec, len(x), outputs.shape[1])
        spec = Spec(spec.C.to(device), spec.threshold.to(device))
        bm = bounded if bounded is not None else bounded_for_verify(model, x)
        require_trusted(bm)
        results = []
        for i in range(len(x)):
            one = slice(i, i + 1)
            report = None if progress is None else (lambda _j, r, i=i: progress(i, r))
            results += decide_batch(bm, model, x_L[one], x_U[one], spec.select(one), timeout,
                                    options or BaBOptions(), input_split_dims,
                                    attack_restarts, tuple(incomplete), report)
        return results


class Ledger:
    """The answers of a batch so far and the seconds spent per sample. ``refutes(i, point)``:
    whether ``point`` violates sample ``i``'s spec on the model (every falsification passes it)."""

    def __init__(self, n: int, progress, refutes: Callable[[int, torch.Tensor], bool]):
        self.results: list = [None] * n
        self.spent = torch.zeros(n, dtype=torch.float64)
        self.say = progress or (lambda i, r: None)
        self.refutes = refutes

    def open(self) -> list:
        return [i for i, r in enumerate(self.results) if r is None]

    def share(self, samples: list, seconds: float) -> None:
        """A batch step's time, shared equally among the samples it ran on."""
        self.spent[samples] += seconds / max(len(samples), 1)

    def settle(self, i: int, status: Status, method: str, **kw) -> None:
        point = kw.get("counterexample")
        if status is Status.FALSIFIED and (point is None or not self.refutes(i, point)):
            raise VerificationError(f"{method} answered 'falsified' for sample {i} without a point "
                                    "of its box that violates the spec on the model")
        self.results[i] = SampleResult(status, method, float(self.spent[i]), **kw)
        self.say(i, self.results[i])


def attack_stage(ledger: Ledger, model, x_L, x_U, spec: Spec, restarts: int) -> None:
    """PGD on every sample; a checked counterexample falsifies it."""
    start = time.perf_counter()
    points, margins = falsify.pgd(model, x_L, x_U, spec, restarts=restarts)
    ledger.share(list(range(len(x_L))), time.perf_counter() - start)
    for i in range(len(x_L)):
        one = slice(i, i + 1)
        if margins[i] <= 0 and falsify.checked_counterexample(model, points[one], x_L[one],
                                                             x_U[one], spec.select(one)):
            ledger.settle(i, Status.FALSIFIED, "PGD", counterexample=points[one].detach())


def incomplete_stage(ledger: Ledger, bm, x_L, x_U, spec: Spec, methods: tuple) -> dict:
    """Each incomplete method on the open samples; returns the last hzono boxes as
    ``{node name: (l, u)}`` over all samples' rows (rows of samples it did not run on are
    the unbounded box) to tighten alpha-CROWN."""
    reference: dict = {}
    for method in methods:
        todo = ledger.open()
        if not todo:
            break
        start = time.perf_counter()
        idx = torch.tensor(todo, device=x_L.device)
        try:
            lb, boxes = crown_bounds(bm, x_L[idx], x_U[idx], spec.select(idx), method)
        except VerificationError:
            continue  # an incomplete method that refuses the graph is skipped
        finally:
            ledger.share(todo, time.perf_counter() - start)
        for name, (lo, up) in boxes.items():
            full_lo = torch.full((len(x_L), *lo.shape[1:]), -float("inf"), device=lo.device)
            full_lo[idx], full_up = lo, -full_lo.clone()
            full_up[idx] = up
            reference[name] = (full_lo, full_up)
        for j, i in enumerate(todo):
            if bool((lb[j] > 0).all()):
                ledger.settle(i, Status.VERIFIED, method)
    return reference


def decide_batch(bm, model, x_L, x_U, spec: Spec, timeout: float, options: BaBOptions,
                 input_split_dims: int, attack_restarts: int, incomplete: tuple,
                 progress) -> list[SampleResult]:
    """The pipeline of :func:`verify` on checked inputs."""
    def refutes(i: int, point: torch.Tensor) -> bool:
        one = slice(i, i + 1)
        return falsify.checked_counterexample(model, point, x_L[one], x_U[one], spec.select(one))
    ledger = Ledger(len(x_L), progress, refutes)
    attack_stage(ledger, model, x_L, x_U, spec, attack_restarts)
    reference = incomplete_stage(ledger, bm, x_L, x_U, spec, incomplete)
    todo = ledger.open()
    if not todo:
        return ledger.results
    start = time.perf_counter()
    idx = torch.tensor(todo, device=x_L.device)
    relu_names = {node.inputs[0].name for node in split_relus(bm)}
    reference = {k: (lo[idx], up[idx]) for k, (lo, up) in reference.items() if k in relu_names}
    try:
        lb, lower, upper = root_bounds(bm, x_L[idx], x_U[idx], spec.select(idx).C,
                                       spec.select(idx).threshold, reference=reference)
    except Exception as err:
        raise VerificationError(f"alpha-CROWN cannot bound this network: "
                                f"{type(err).__name__}: {err}") from err
    ledger.share(todo, time.perf_counter() - start)
    for j, i in enumerate(todo):
        if bool((lb[j] > 0).all()):
            ledger.settle(i, Status.VERIFIED, "alpha-CROWN")
            continue
        start = time.perf_counter()
        deadline = start + max(timeout - float(ledger.spent[i]), 0.0)
        one = slice(i, i + 1)
        if x_L[0].numel() <= input_split_dims:
            outcome = input_branch_and_bound(bm, model, x_L[one], x_U[one], spec.select(one),
                                             deadline, options)
            method = "input-BaB"
        else:
            root = Domains([t[j:j + 1] for t in lower], [t[j:j + 1] for t in upper],
                           [torch.zeros(1, t[0].numel(), dtype=torch.int8, device=t.device)
                            for t in lower], lb[j:j + 1])
            outcome = branch_and_bound(bm, model, x_L[one], x_U[one], spec.select(one), root,
                                       deadline, options)
            method = "BaB"
        ledger.spent[i] += time.perf_counter() - start
        ledger.settle(i, outcome.status, method, subdomains=outcome.subdomains,
                      lp_calls=outcome.lp_calls, counterexample=outcome.counterexample)
    return ledger.results
