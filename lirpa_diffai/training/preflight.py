"""The pre-flight check of a training run: before the first step, everything a run will ever
do runs once on one batch of the real data at the configured batch size, so that a network
that does not fit the dataset, an operator a bound method cannot bound, and an out-of-memory
error are reported in seconds, not after an epoch.

1. The network's forward and backward pass (training mode) on the batch: a failure names the
   innermost layer that was running and the shapes it got.
2. The BoundedModule is built (auto_LiRPA's trace): an untraceable operator is refused by name.
3. Every bound call the goal can make, whatever its schedules (the configured method, each of
   DiffAI's named domains in the goal, HRand's options), and the configured method that the
   end-of-epoch evaluation uses, on the full-eps box around the batch, with the backward pass
   of the bounds.

The check leaves no trace: the RNG states, the BatchNorm statistics and the train/eval flags
are restored and the gradients cleared, so a run with the check draws what it drew before.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from ..errors import UnsupportedOperatorError
from ..evaluation.margins import METHOD_ERRORS, error_text, margin_spec
from ..lirpa03.state import keep_modes_and_buffers
from ..schedules import Term
from .config import TrainConfig
from .errors import TrainingError
from .rng import rng_state, set_rng_state
from .step import (box_bounds, fused_bounds, is_out_of_memory, out_of_memory_error,
                   wrap_for_training)


def goal_terms(term):
    """``term`` and every term among its arguments, depth first."""
    yield term
    for arg in term.arguments():
        items = arg if isinstance(arg, (list, tuple)) else (arg,)
        for item in items:
            if isinstance(item, Term):
                yield from goal_terms(item)


FUSED = {"fused": True}   # the fused loss bound (loss fusion) in place of ctx.bounds


def bound_calls(cfg: TrainConfig) -> list[dict]:
    """The keyword sets of ``ctx.bounds`` the run can use: ``{}`` (the configured method, used
    by the evaluation after each epoch) and each bound-using goal's own; :data:`FUSED` where a
    goal takes the fused loss bound instead."""
    from types import SimpleNamespace
    from ..goals.box import BoxGoal
    context = SimpleNamespace(loss_fusion=cfg.loss_fusion)
    calls = [{}]
    for term in goal_terms(cfg.goal):
        if not isinstance(term, BoxGoal):
            continue
        call = FUSED if term.fuses(context) else term.bound_method()
        if call not in calls:
            calls.append(call)
    return calls


def describe_call(call: dict, cfg: TrainConfig) -> str:
    """A bound call as the user wrote it: the configured method, or the goal's domain."""
    if call == FUSED:
        return f"the fused loss bound of method {cfg.method} (loss fusion)"
    if not call:
        return f"method {cfg.method} (the configuration's)"
    if "hzono" in call:
        return f"{call['method']} with {call['hzono']} (a goal's domain)"
    return f"domain {call['method']} (a goal of the configuration)"


def shapes_of(args) -> str:
    """The shapes of the tensor arguments of a call, ``(50, 3, 32, 32)``."""
    return ", ".join(str(tuple(a.shape)) for a in args if isinstance(a, torch.Tensor)) or "-"


@contextlib.contextmanager
def running_layers(model: nn.Module):
    """Inside the block, a list of ``(name, module, input shapes)`` of the modules whose
    forward is running, outermost first; after an exception its last entry is the layer that
    raised it."""
    names = {m: name for name, m in model.named_modules()}
    stack: list = []

    def enter(module, args):
        stack.append((names[module], module, shapes_of(args)))

    def leave(module, args, output):
        stack.pop()

    handles = [h for m in names for h in (m.register_forward_pre_hook(enter),
                                          m.register_forward_hook(leave))]
    try:
        yield stack
    finally:
        for handle in handles:
            handle.remove()


def layer_text(name: str, module: nn.Module) -> str:
    """``layer 'conv1' (Conv2d(1, 4, kernel_size=(3, 3)))``; a container by its type."""
    what = repr(module) if not list(module.children()) else type(module).__name__
    return f"layer '{name}' ({what})" if name else f"the network's own forward ({what})"


def check_forward(model: nn.Module, x: torch.Tensor, cfg: TrainConfig) -> None:
    """The network's forward and backward pass on ``x``; a failure names the layer."""
    with running_layers(model) as stack:
        try:
            output = model(x)
            if output.requires_grad:
                output.float().sum().backward()
        except Exception as err:  # noqa: BLE001 -- any failure here is the network's
            if is_out_of_memory(err):
                raise out_of_memory_error(cfg, "in the pre-flight check (the network's "
                                          "forward and backward pass)", len(x)) from None
            where = layer_text(*stack[-1][:2]) + f" on input of shape {stack[-1][2]}" \
                if stack else "the network"
            raise TrainingError(
                f"pre-flight check: {cfg.network} does not run on {cfg.dataset} batches of "
                f"shape {tuple(x.shape)}: {where} failed: {error_text(err, 300)}") from None


def full_eps_box(x: torch.Tensor, cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """``[max(x - eps, lo), min(x + eps, hi)]`` at the configuration's (full) eps."""
    lo, hi = cfg.data_range
    return (x - cfg.eps).clamp(min=lo), (x + cfg.eps).clamp(max=hi)


def bound_of(bm, call: dict, cfg: TrainConfig, x_L, x_U, y) -> torch.Tensor:
    """What one of :func:`bound_calls` computes on the box: the lower bounds of the margins,
    or the fused loss bound."""
    if call == FUSED:
        fused = fused_bounds(bm, cfg.method, cfg.num_classes)
        if fused is None:
            raise ValueError(f"loss fusion needs the method CROWN-IBP, CROWN-hzono or CROWN, "
                             f"not {cfg.method}")
        return fused(x_L, x_U, y)
    lower, _ = box_bounds(bm, cfg.method)(x_L, x_U, margin_spec(y, cfg.num_classes), **call)
    return lower


def check_bounds(bm, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig) -> None:
    """Each of :func:`bound_calls` on the full-eps box around ``x`` with the backward pass of
    its bounds; a failure names the method and what refused it."""
    x_L, x_U = full_eps_box(x, cfg)
    for call in bound_calls(cfg):
        what = describe_call(call, cfg)
        try:
            bound = bound_of(bm, call, cfg, x_L, x_U, y)
            if bound.requires_grad:
                bound.sum().backward()
        except METHOD_ERRORS as err:
            if is_out_of_memory(err):
                raise out_of_memory_error(cfg, f"in the pre-flight check ({what} at eps "
                                          f"{cfg.eps:g})", len(x)) from None
            raise TrainingError(f"pre-flight check: {what} cannot bound {cfg.network} at eps "
                                f"{cfg.eps:g}: {error_text(err, 300)}") from None


@contextlib.contextmanager
def leaving_no_trace(*modules: nn.Module):
    """Restore the RNG states, the modules' flags and buffers, and clear their gradients."""
    states = rng_state()
    try:
        with contextlib.ExitStack() as stack:
            for module in modules:
                stack.enter_context(keep_modes_and_buffers(module))
            yield
    finally:
        set_rng_state(states)
        for module in modules:
            module.zero_grad(set_to_none=True)


def preflight(model: nn.Module, cfg: TrainConfig, x: torch.Tensor, y: torch.Tensor):
    """The checked ``lirpa_diffai.BoundedModule`` of ``model`` (see the module docstring);
    ``x``, ``y``: one batch of training data at the configured batch size."""
    with leaving_no_trace(model):
        model.train()
        check_forward(model, x, cfg)
        try:
            bm = wrap_for_training(model, cfg, x)
        except UnsupportedOperatorError as err:
            raise TrainingError(f"pre-flight check: {cfg.network}: {err}") from None
        with leaving_no_trace(bm):
            bm.train()
            check_bounds(bm, x, y, cfg)
    return bm
