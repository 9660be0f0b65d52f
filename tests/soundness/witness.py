"""Points of an input set and the range of the function over them: the evidence a bound must
contain.

Every input set here is the affine image of a box, ``x = center + radius * u + sum_j v_j
errors_j`` with ``u, v`` in ``[-1, 1]``: an L-inf ball (no ``errors``) or a hybrid zonotope.
The samples of a batch are independent inputs, so each sample has its own ``v``.
Points are uniform samples, random corners, and PGD points (sign-gradient steps in ``u``)
aimed at each bound: the maximum and the minimum of each output element.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn


@dataclass
class InputSet:
    center: torch.Tensor
    radius: torch.Tensor
    errors: Optional[torch.Tensor] = None  # (m, *center.shape)

    def point(self, u: torch.Tensor, v: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = self.center + self.radius * u
        if self.errors is not None:
            x = x + (v.reshape(v.shape + (1,) * (self.center.dim() - 1)) * self.errors).sum(0)
        return x

    def coefficient_shapes(self) -> tuple:
        m = 0 if self.errors is None else self.errors.shape[0]
        return tuple(self.center.shape), (m, self.center.shape[0])


def ball(x: torch.Tensor, eps: float) -> InputSet:
    return InputSet(x, torch.full_like(x, eps))


def zonotope(x: torch.Tensor, eps: float, generator: torch.Generator, rows: int = 2) -> InputSet:
    """A hybrid zonotope around ``x`` of about ``eps`` per element: a box part and ``rows``
    generators that differ per sample."""
    radius = eps * torch.rand(x.shape, generator=generator) / 2
    errors = eps * (torch.rand((rows,) + tuple(x.shape), generator=generator) - 0.5)
    return InputSet(x, radius, errors)


def eval_reference(model: nn.Module, x: torch.Tensor, training: bool) -> Callable:
    """The function a bound method bounds: the model in eval mode, or in training mode with
    each BatchNorm's statistics those of the clean batch ``x``, held fixed (hzono's convention,
    which the issue asks every method to follow)."""
    ref = copy.deepcopy(model).eval()
    if training:
        stats, hooks = {}, []
        trained = copy.deepcopy(model).train()
        for name, module in trained.named_modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                def capture(mod, args, out, name=name):
                    dims = [0] + list(range(2, args[0].dim()))
                    stats[name] = (args[0].mean(dims), args[0].var(dims, unbiased=False))
                hooks.append(module.register_forward_hook(capture))
        with torch.no_grad():
            trained(x)
        for name, module in ref.named_modules():
            if name in stats:
                module.running_mean.copy_(stats[name][0])
                module.running_var.copy_(stats[name][1])
    reference = lambda inputs: ref(inputs)  # noqa: E731
    reference.model = ref
    return reference


def float32_error(reference: Callable, x: torch.Tensor, value: torch.Tensor):
    """``|f(x) - f64(x)|``: how far float32 rounding alone moves the reference's value (the
    model run in float64); 0 where the graph does not run in float64 (float32 constants)."""
    try:
        with torch.no_grad():
            exact = copy.deepcopy(reference.model).double()(x.double())
        return (value.double() - exact).abs().to(value.dtype).reshape(value.shape)
    except (RuntimeError, TypeError, AttributeError):
        return torch.zeros_like(value)


@dataclass
class Witness:
    """Element-wise min and max of ``f`` over the points tried, and how many points."""

    low: torch.Tensor
    high: torch.Tensor
    points: int


def observe(f: Callable, input_set: InputSet, generator: torch.Generator, samples: int = 200,
            pgd_steps: int = 15, pgd_targets: int = 16) -> Witness:
    """Range of ``f`` over samples, corners and PGD points of ``input_set``. Each group of
    points is evaluated as one :func:`torch.func.vmap` call (every point still sees its own
    batch, so operations across the batch axis are unaffected), point by point where the
    graph cannot be vmapped; the coefficients are drawn in the same order either way."""
    x_shape, v_shape = input_set.coefficient_shapes()
    u, v = [], []
    for k in range(samples):
        u.append(torch.rand(x_shape, generator=generator) * 2 - 1)
        v.append(torch.rand(v_shape, generator=generator) * 2 - 1)
        if k % 2:  # a corner
            u[-1], v[-1] = u[-1].sign(), v[-1].sign()
    at = PointMap(f, input_set)
    with torch.no_grad():
        center = f(input_set.center).detach()
        outputs = torch.cat([center[None], at(torch.stack(u), torch.stack(v)).detach()])
    n_out = center.numel()
    targets = torch.randperm(n_out, generator=generator)[:pgd_targets].tolist()
    attacks = [(j, sign) for j in targets for sign in (1.0, -1.0)]
    if attacks:
        outputs = torch.cat([outputs, pgd(at, attacks, generator, pgd_steps)])
    return Witness(outputs.amin(0), outputs.amax(0), len(outputs))


class PointMap:
    """``f`` at the points of ``input_set`` with coefficients ``u`` (n, *x_shape) and ``v``
    (n, *v_shape): ``(n, *out_shape)``. One vmapped call; after the first failure (an operator
    without a batching rule), one call per point."""

    def __init__(self, f: Callable, input_set: InputSet):
        self.one = lambda u, v: f(input_set.point(u, v))
        self.shapes = input_set.coefficient_shapes()
        self.vmapped = True

    def __call__(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.vmapped:
            try:
                return torch.func.vmap(self.one)(u, v)
            except Exception:  # noqa: BLE001  (any failure: evaluate point by point)
                self.vmapped = False
        return torch.stack([self.one(a, b) for a, b in zip(u, v)])

    def gradient(self, objective: Callable, out: torch.Tensor, u: torch.Tensor, v: torch.Tensor):
        """The gradients of ``objective(out).sum()`` (``out = self(u, v)``) in ``u`` and ``v``:
        each attack's own, the attacks being independent. A backward pass that fails through
        vmap is done again point by point; one that fails there raises."""
        try:
            return torch.autograd.grad(objective(out).sum(), (u, v), allow_unused=True)
        except RuntimeError:
            if not self.vmapped:
                raise
        self.vmapped = False
        return torch.autograd.grad(objective(self(u, v)).sum(), (u, v), allow_unused=True)


def pgd(at: PointMap, attacks: list, generator: torch.Generator, steps: int) -> torch.Tensor:
    """For each attack ``(j, sign)``, ``f`` at the best point PGD reaches pushing output element
    ``j`` in direction ``sign`` (sign-gradient steps in the coefficients, from a random start);
    the attacks are independent and run side by side: (len(attacks), *out_shape)."""
    starts = [torch.rand(shape, generator=generator) * 2 - 1 for _ in attacks for shape in at.shapes]
    u = torch.stack(starts[0::2]).requires_grad_(True)
    v = torch.stack(starts[1::2]).requires_grad_(True)
    index = torch.tensor([j for j, _ in attacks])
    sign = torch.tensor([s for _, s in attacks])

    def objective(out):  # sign * out.reshape(-1)[j] of each attack
        return sign * out.reshape(len(attacks), -1).gather(1, index[:, None])[:, 0]

    step = 0.5
    best = None
    for _ in range(steps):
        out = at(u, v)
        best = keep_better(best, out.detach(), objective)
        if not out.requires_grad:  # f does not depend on its input here
            break
        try:
            gu, gv = at.gradient(objective, out, u, v)
        except RuntimeError:  # an operator without a derivative (heaviside): samples only
            break
        with torch.no_grad():
            u = (u + step * (gu.sign() if gu is not None else 0)).clamp(-1, 1)
            v = (v + step * (gv.sign() if gv is not None else 0)).clamp(-1, 1)
        u.requires_grad_(True)
        v.requires_grad_(True)
        step *= 0.8
    with torch.no_grad():
        return keep_better(best, at(u, v).detach(), objective, ties_to_new=True)


def keep_better(best, new: torch.Tensor, objective: Callable, ties_to_new: bool = False) -> torch.Tensor:
    """Per attack, ``new`` where its objective beats ``best``'s (or ties, with
    ``ties_to_new``), else ``best``."""
    if best is None:
        return new
    better = objective(new) >= objective(best) if ties_to_new else objective(new) > objective(best)
    return torch.where(better.reshape((-1,) + (1,) * (new.dim() - 1)), new, best)
