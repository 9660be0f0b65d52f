"""One training step: the network and its bounded module, the goal's loss as one module
(:class:`GoalLoss`, what DistributedDataParallel wraps), the optimizer and the step itself."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .. import models
from ..goals import GoalContext
from . import loss_fusion
from .config import TrainConfig
from .errors import TrainingError
from .initialisation import initialise


def build_network(cfg: TrainConfig) -> nn.Module:
    """A freshly initialised network of the configuration (seed it first): a zoo network
    or ``package.module:Name(**network_args)``, initialised as ``init`` says; or, with
    ``graft``, the grafted network of that checkpoint with its weights."""
    if cfg.graft is None:
        return initialise(models.build(cfg.network, cfg.dataset, cfg.network_args), cfg.init)
    from ..grafting.checkpoint import load_grafted
    from ..grafting.rewrite import GraftingError
    try:
        model, ckpt = load_grafted(cfg.graft)
    except GraftingError as err:
        raise TrainingError(f"{cfg.source}: graft: {err}") from None
    if (ckpt["network"], ckpt["dataset"]) != (cfg.network, cfg.dataset):
        raise TrainingError(f"{cfg.source}: the grafted checkpoint {cfg.graft} holds "
                            f"{ckpt['network']} for {ckpt['dataset']}, but the configuration says "
                            f"network {cfg.network}, dataset {cfg.dataset}")
    return model


# torch's tracer warns about what auto_LiRPA's trace of a network in training mode does on
# purpose: BatchNorm's running-statistics update (an in-place add) is left out of the graph,
# and batch norm is traced with train=True (the bounds use the batch statistics)
TRAINING_TRACE_WARNINGS = (r"ONNX Preprocess - Removing mutation from node aten::add_",
                           r"ONNX export mode is set to TrainingMode\.EVAL, but operator "
                           r"'batch_norm' is set to train=True")


def wrap_for_training(model: nn.Module, cfg: TrainConfig, example: torch.Tensor):
    """A ``lirpa_diffai.BoundedModule`` around ``model`` with the configuration's options,
    traced on the first two examples of ``example`` (BatchNorm1d in training mode needs more
    than one value per channel), without the tracer's warnings about batch norm in training
    mode (``TRAINING_TRACE_WARNINGS``)."""
    import warnings
    from ..bounded_module import BoundedModule
    with warnings.catch_warnings():
        for message in TRAINING_TRACE_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=UserWarning)
        return BoundedModule(model, example[:2], bound_opts=cfg.bound_opts,
                             device=str(example.device))


def box_bounds(bm, method: str):
    """The trainer's bounds function ``(x_L, x_U, C, method=None, hzono=None) -> (lb, ub)``
    for the goals: the configured ``method``, or a goal's own method with the hzono options
    ``hzono`` over the configured ones (DiffAI's named domains, ``HRand``)."""
    from auto_LiRPA import BoundedTensor, PerturbationLpNorm

    def bounds(x_L, x_U, C, method=method, hzono=None):
        ptb = PerturbationLpNorm(norm=np.inf, x_L=x_L, x_U=x_U)
        configured = bm.bound_opts["hzono"]
        if hzono:
            bm.bound_opts["hzono"] = {**configured, **hzono}
        try:
            return bm.compute_bounds(x=(BoundedTensor((x_L + x_U) / 2, ptb),), C=C, method=method)
        finally:
            bm.bound_opts["hzono"] = configured
    return bounds


def fused_bounds(bm, method: str, num_classes: int):
    """The trainer's fused loss bound ``(x_L, x_U, y) -> (B,)`` for the goals
    (``GoalContext.loss_bound``), or None where ``method`` has no fused bound."""
    if not loss_fusion.fusable(method):
        return None
    return lambda x_L, x_U, y: loss_fusion.fused_loss_bound(
        bm, loss_fusion.box_input(x_L, x_U), y, num_classes, method)


class GoalLoss(nn.Module):
    """``forward(x, y, t)`` = the goal's mean loss of the batch at time ``t``. The network
    (``.model``) and its BoundedModule (``.bm``, same parameters) are submodules, so one
    DistributedDataParallel wrapper covers every way the loss reaches the parameters."""

    def __init__(self, model: nn.Module, bm, cfg: TrainConfig):
        super().__init__()
        self.model, self.bm = model, bm
        self.goal = cfg.goal
        self.context = GoalContext(model=model, bounds=box_bounds(bm, cfg.method), eps=cfg.eps,
                                   data_range=cfg.data_range, num_classes=cfg.num_classes,
                                   aux_losses=lambda: bm.hzono_aux_losses,
                                   loss_bound=fused_bounds(bm, cfg.method, cfg.num_classes),
                                   loss_fusion=cfg.loss_fusion)

    def forward(self, x: torch.Tensor, y: torch.Tensor, t: float) -> torch.Tensor:
        from ..domain.abstract_layers import set_epoch
        set_epoch(self.model, t)
        return self.goal.loss(self.context, x, y, t)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every parameter group's learning rate: ``lr`` times the group's ``lr_scale``
    (1 unless set; ``graft_lr / optimizer.lr`` for grafted slopes and intercepts)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def parameter_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """The optimizer's parameter groups: the network's weights, and the slopes and intercepts
    of grafted activations (if any) in a group of their own with learning rate ``graft_lr``
    (``lr_scale = graft_lr / lr``; default ``lr``) and no weight decay, as the reference
    implementation of linearity grafting fine-tunes them."""
    from ..grafting.activation import GraftedReLU
    grafted = {id(p) for m in model.modules() if isinstance(m, GraftedReLU) for p in m.parameters()}
    weights = [p for p in model.parameters() if id(p) not in grafted]
    if not grafted:
        return [{"params": weights}]
    scale = (cfg.graft_lr or cfg.optimizer.lr) / cfg.optimizer.lr
    return [{"params": weights},
            {"params": [p for p in model.parameters() if id(p) in grafted],
             "lr_scale": scale, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam or SGD as the configuration says (lr is set per step)."""
    o = cfg.optimizer
    groups = parameter_groups(model, cfg)
    if o.name == "sgd":
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    return torch.optim.Adam(groups, lr=o.lr, weight_decay=o.weight_decay)


def training_step(loss_module: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                  y: torch.Tensor, t: float, lr: float, grad_clip: float | None = None
                  ) -> float:
    """One optimizer step on the goal's loss at time ``t``; returns the loss. With
    ``grad_clip``, the gradient's global L2 norm is clipped to it first (DiffAI's
    ``clip_grad_norm_`` before each step)."""
    set_lr(optimizer, lr)
    optimizer.zero_grad(set_to_none=True)
    loss = loss_module(x, y, t)
    if not torch.isfinite(loss):
        raise TrainingError(f"the training loss is {loss.item()} at epoch {t:.3f}; for deep "
                            "networks set init: ibp and grad_clip (docs/configuration.md, "
                            "'Deep networks')")
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]],
                                       grad_clip)
    optimizer.step()
    return loss.item()


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is torch's or Python's out-of-memory error (CPU or GPU)."""
    if isinstance(err, (MemoryError, getattr(torch, "OutOfMemoryError", MemoryError))):
        return True
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


def out_of_memory_error(cfg: TrainConfig, where: str, batch: int) -> TrainingError:
    """The refusal for an out-of-memory error: what ran, with which batch, and what helps."""
    crown = " or, for CROWN, auto_LiRPA's crown_batch_size" if cfg.method == "CROWN" else ""
    return TrainingError(
        f"out of memory {where} with batch_size {batch} (per process) and method "
        f"{cfg.method} on {cfg.network}; use a smaller batch (--set batch_size=...){crown}, "
        "or measure the peak first with --max-steps (docs/cli.md)")


