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
    return lambda inputs: ref(inputs)


@dataclass
class Witness:
    """Element-wise min and max of ``f`` over the points tried, and how many points."""

    low: torch.Tensor
    high: torch.Tensor
    points: int


def observe(f: Callable, input_set: InputSet, generator: torch.Generator, samples: int = 200,
            pgd_steps: int = 15, pgd_targets: int = 16) -> Witness:
    """Range of ``f`` over samples, corners and PGD points of ``input_set``."""
    x_shape, v_shape = input_set.coefficient_shapes()
    low = high = None
    count = 0

    def record(out):
        nonlocal low, high, count
        out = out.detach()
        low = out if low is None else torch.minimum(low, out)
        high = out if high is None else torch.maximum(high, out)
        count += 1

    with torch.no_grad():
        record(f(input_set.center))
        for k in range(samples):
            u = torch.rand(x_shape, generator=generator) * 2 - 1
            v = torch.rand(v_shape, generator=generator) * 2 - 1
            if k % 2:  # a corner
                u, v = u.sign(), v.sign()
            record(f(input_set.point(u, v)))
    n_out = low.numel()
    targets = torch.randperm(n_out, generator=generator)[:pgd_targets].tolist()
    for j in targets:
        for sign in (1.0, -1.0):
            record(pgd(f, input_set, j, sign, generator, pgd_steps))
    return Witness(low, high, count)


def pgd(f: Callable, input_set: InputSet, j: int, sign: float, generator: torch.Generator,
        steps: int) -> torch.Tensor:
    """``f`` at the point PGD reaches pushing output element ``j`` in direction ``sign``."""
    x_shape, v_shape = input_set.coefficient_shapes()
    u = (torch.rand(x_shape, generator=generator) * 2 - 1).requires_grad_(True)
    v = (torch.rand(v_shape, generator=generator) * 2 - 1).requires_grad_(True)
    step = 0.5
    best = None
    for _ in range(steps):
        out = f(input_set.point(u, v))
        best = out.detach() if best is None else best
        objective = sign * out.reshape(-1)[j]
        if sign * best.reshape(-1)[j] < objective.detach():
            best = out.detach()
        if not objective.requires_grad:  # f does not depend on its input here
            break
        try:
            gu, gv = torch.autograd.grad(objective, (u, v), allow_unused=True)
        except RuntimeError:  # an operator without a derivative (heaviside): samples only
            break
        with torch.no_grad():
            u = (u + step * (gu.sign() if gu is not None else 0)).clamp(-1, 1)
            v = (v + step * (gv.sign() if gv is not None else 0)).clamp(-1, 1)
        u.requires_grad_(True)
        v.requires_grad_(True)
        step *= 0.8
    with torch.no_grad():
        out = f(input_set.point(u, v))
    return out if sign * out.reshape(-1)[j] >= sign * best.reshape(-1)[j] else best
