"""One fuzz case: a graph, an input batch, a bound method, eval or training mode.

The outcome is one of

- ``sound``: bounds that contain every witness point (tolerance ``1e-5 * (1 + |bound|)``) at
  ``eps`` and equal the forward pass at ``eps = 0``;
- ``refused``: an exception whose message names a graph node (its name, as auto_LiRPA gives it)
  and an operator (a Bound class name, or its ONNX operator name: the class name without
  ``Bound``), such as ``lirpa_diffai.UnsupportedOperatorError``; a construction error counts
  when it names the node as ``node '<name>'`` and the operator;
- ``unsound``: a witness point outside the bounds, NaN bounds, or bounds at ``eps = 0`` that
  miss the forward pass;
- ``inexact``: sound bounds that differ from the forward pass at ``eps = 0``;
- ``crash``: any other exception, or bounds of the wrong shape;
- ``unchecked``: a case without a fixed function to compare with (training-mode dropout).

Only ``sound``, ``refused`` and ``unchecked`` pass.
"""
from __future__ import annotations

import contextlib
import copy
import io
import re
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Optional

import numpy as np
import torch
from auto_LiRPA import BoundedTensor, PerturbationLpNorm
from auto_LiRPA.operators import BoundTanh
from torch import nn

import lirpa_diffai

from .catalogue import bound_classes
from .methods import Method
from .witness import InputSet, Witness, ball, eval_reference, float32_error, observe, zonotope

PASSING = ("sound", "refused", "unchecked")
TOLERANCE = 1e-5


@dataclass
class Outcome:
    kind: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.kind in PASSING


@lru_cache(maxsize=1)
def operator_pattern() -> re.Pattern:
    names = set()
    for name in bound_classes():
        if name != "Bound":
            names.update((name, name.removeprefix("Bound")))
    return re.compile(r"\b(" + "|".join(sorted(map(re.escape, names), key=len, reverse=True)) + r")\b")


def names_node(message: str, node_names) -> bool:
    """Whether ``message`` names one of ``node_names`` (``None``: any ``node '<name>'``)."""
    if node_names is None:
        return re.search(r"node '[^']+'", message) is not None
    return any(re.search(r"(?<![\w/.])" + re.escape(n) + r"(?![\w.])", message) for n in node_names)


def classify_error(error: BaseException, bounded: Optional[nn.Module]) -> Outcome:
    message = f"{type(error).__name__}: {error}"
    node_names = None if bounded is None else [n.name for n in bounded._modules.values()]
    if names_node(message, node_names) and operator_pattern().search(message):
        return Outcome("refused", message[:300])
    return Outcome("crash", message[:300])


def contains_dropout(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Dropout) for m in model.modules())


def mode_dependent(model: nn.Module) -> bool:
    """Whether the model computes another function in training mode (batch norm, dropout);
    if not, both modes share one reference function and one witness."""
    return any(isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.Dropout)) for m in model.modules())


@dataclass
class Case:
    """A graph and an input batch; witnesses are computed once per (mode, input kind) and
    shared by every method, and the graph is traced once per set of bound options
    (``traced``, which cases of one model at several ``eps`` may share)."""

    model: nn.Module
    x: torch.Tensor
    eps: float
    seed: int
    traced: dict = field(default_factory=dict)
    _witnesses: dict = field(default_factory=dict)
    _sets: dict = field(default_factory=dict)
    _references: dict = field(default_factory=dict)

    def trace(self, method: Method) -> nn.Module:
        """The BoundedModule of the model built with ``method``'s bound options, traced once
        (a construction error is raised again on every call); never run, only copied."""
        key = repr(method.bound_opts)
        if key not in self.traced:
            self.traced[key] = build(self.model, self.x, method, training=False)
        return self.traced[key]

    def bounded(self, method: Method, training: bool) -> nn.Module:
        """A BoundedModule for one run of ``method`` in training (or eval) mode: a deep copy of
        :meth:`trace`'s (about a tenth of tracing's time), so that no run sees the state
        another run left on the nodes."""
        return copy.deepcopy(self.trace(method)).train(training)

    def input_set(self, zonotope_input: bool) -> InputSet:
        if zonotope_input not in self._sets:
            generator = torch.Generator().manual_seed(self.seed)
            self._sets[zonotope_input] = (zonotope(self.x, self.eps, generator) if zonotope_input
                                          else ball(self.x, self.eps))
        return self._sets[zonotope_input]

    def reference(self, training: bool):
        training = training and mode_dependent(self.model)
        if training not in self._references:
            self._references[training] = eval_reference(self.model, self.x, training)
        return self._references[training]

    def witness(self, training: bool, zonotope_input: bool, **options) -> Witness:
        key = (training and mode_dependent(self.model), zonotope_input)
        if key not in self._witnesses:
            generator = torch.Generator().manual_seed(self.seed + 1)
            self._witnesses[key] = observe(self.reference(training), self.input_set(zonotope_input),
                                           generator, **options)
        return self._witnesses[key]


def perturbation(input_set: InputSet, zonotope_input: bool, scale: float):
    if zonotope_input:
        errors = None if input_set.errors is None else input_set.errors * scale
        return lirpa_diffai.PerturbationHybridZonotope.from_tensors(
            input_set.center, beta=input_set.radius * scale, errors=errors)
    return PerturbationLpNorm(norm=np.inf, eps=float(input_set.radius.max()) * scale)


def compute(bounded, x: torch.Tensor, method: Method, input_set: InputSet, scale: float):
    ptb = perturbation(input_set, method.zonotope_input, scale)
    lb, ub = bounded.compute_bounds(x=(BoundedTensor(x, ptb),), method=method.method)
    return lb.detach(), ub.detach()


_RELAXATIONS: dict = {}


@contextlib.contextmanager
def memoized_relaxations():
    """auto_LiRPA's S-shaped activations (tanh, sigmoid, atan) precompute a table of tangent
    lines in every node's constructor, a pure function of (name, x_limit, device) that takes
    most of a small graph's construction time; inside the block it is computed once."""
    original = BoundTanh.precompute_relaxation

    def cached(self, name, func, dfunc, x_limit=500):
        key = (name, x_limit, str(self.device))
        if key not in _RELAXATIONS:
            original(self, name, func, dfunc, x_limit)
            _RELAXATIONS[key] = {k: getattr(self, k) for k in
                                 ("x_limit", "step_pre", "num_points_pre", "d_lower", "d_upper")}
        for k, v in _RELAXATIONS[key].items():
            setattr(self, k, v)
    BoundTanh.precompute_relaxation = cached
    try:
        yield
    finally:
        BoundTanh.precompute_relaxation = original


def build(model: nn.Module, x: torch.Tensor, method: Method, training: bool):
    # auto_LiRPA prints (not warns) about eval-mode dropout; keep the test output readable
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), memoized_relaxations():
        warnings.simplefilter("ignore")
        bounded = lirpa_diffai.BoundedModule(copy.deepcopy(model).eval(), x,
                                             bound_opts=copy.deepcopy(method.bound_opts))
    return bounded.train(training)


def run_case(case: Case, method: Method, training: bool, **witness_options) -> Outcome:
    """The outcome of ``method`` on ``case`` in training (or eval) mode."""
    if training and contains_dropout(case.model):
        return Outcome("unchecked", "training-mode dropout is a random function")
    try:
        bounded = case.bounded(method, training)
    except Exception as error:  # noqa: BLE001  (every exception is classified)
        return classify_error(error, None)
    input_set = case.input_set(method.zonotope_input)
    try:
        at_zero = compute(bounded, case.x, method, input_set, 0.0)
        bounds = compute(bounded, case.x, method, input_set, 1.0)
    except Exception as error:  # noqa: BLE001
        return classify_error(error, bounded)
    with torch.no_grad():
        value = case.reference(training)(case.x)
    zero = compare_at_zero(value, *at_zero, rounding=float32_error(case.reference(training), case.x, value))
    if zero is not None:
        return zero
    witness = case.witness(training, method.zonotope_input, **witness_options)
    return compare(witness, *bounds)


def as_output_shape(bound: torch.Tensor, shape) -> Optional[torch.Tensor]:
    return bound.reshape(shape) if bound.numel() == int(np.prod(shape)) else None


def margin(lb: torch.Tensor, ub: torch.Tensor) -> torch.Tensor:
    return TOLERANCE * (1 + torch.maximum(lb.abs(), ub.abs()).nan_to_num(0.0, 0.0, 0.0))


def compare_at_zero(value: torch.Tensor, lb, ub, rounding=0.0) -> Optional[Outcome]:
    """None if ``lb == value == ub`` up to the tolerance, else the failing outcome. The
    tolerance grows by ``16 * rounding``, ``rounding`` being how far float32 rounding alone
    moves ``value`` (a bound takes more float32 steps than the forward pass, each with the
    graph's condition number: ``exp(exp(x))`` at x = 4 misses f(x) by a relative 1e-3 where
    rounding moves it by 1e-4)."""
    lb, ub = as_output_shape(lb, value.shape), as_output_shape(ub, value.shape)
    if lb is None or ub is None:
        return Outcome("crash", f"bounds of {lb.numel() if lb is not None else '?'} elements "
                                f"for an output of shape {tuple(value.shape)}")
    if torch.isnan(lb).any() or torch.isnan(ub).any():
        return Outcome("unsound", "NaN bounds at eps = 0")
    tol = margin(lb, ub) + 16 * rounding
    off = torch.maximum(lb - value, value - ub)
    if (off > tol).any():
        return Outcome("unsound", f"eps = 0: f(x) outside the bounds by {off.max().item():.3g}")
    # where float32 overflows f(x) itself or a bound (an overflow widened to +-inf, which
    # issue 20 accepts and NaN is not), only containment is asked
    finite = torch.isfinite(value) & torch.isfinite(lb) & torch.isfinite(ub)
    gap = torch.where(finite, torch.maximum((value - lb).abs(), (ub - value).abs()), torch.zeros_like(value))
    if (gap > tol).any():
        return Outcome("inexact", f"eps = 0: bounds {gap.max().item():.3g} away from f(x)")
    return None


def compare(witness: Witness, lb, ub) -> Outcome:
    lb, ub = as_output_shape(lb, witness.low.shape), as_output_shape(ub, witness.low.shape)
    if lb is None or ub is None:
        return Outcome("crash", f"bounds do not have the output's {witness.low.numel()} elements")
    if torch.isnan(lb).any() or torch.isnan(ub).any():
        return Outcome("unsound", "NaN bounds")
    tol = margin(lb, ub)
    below, above = lb - witness.low, witness.high - ub
    worst = torch.maximum(below, above)
    if (worst > tol).any():
        index = int(worst.reshape(-1).argmax())
        return Outcome("unsound", f"{int((worst > tol).sum())} output elements escape the bounds; "
                                  f"worst by {worst.max().item():.3g} at flat index {index} "
                                  f"(lb {lb.reshape(-1)[index].item():.4g}, ub {ub.reshape(-1)[index].item():.4g}, "
                                  f"observed [{witness.low.reshape(-1)[index].item():.4g}, "
                                  f"{witness.high.reshape(-1)[index].item():.4g}], {witness.points} points)")
    return Outcome("sound", f"{witness.points} points inside")
