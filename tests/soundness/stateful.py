"""Stateful sequences (issue 21): wrap a graph's model, change the model, bound it again. The
graph is traced from the original model; the case's model (its reference function) is the
changed one, and each route brings the wrapped model to that state another way."""
from __future__ import annotations

import copy

import torch
from torch import nn

from .check import Case


def changed_state(model: nn.Module, seed: int) -> nn.Module:
    """A copy of ``model`` with every parameter and buffer moved (BatchNorm's running variance
    kept positive), as training and new statistics would."""
    generator = torch.Generator().manual_seed(seed)
    other = copy.deepcopy(model)
    with torch.no_grad():
        for name, t in list(other.named_parameters()) + list(other.named_buffers()):
            if t.is_floating_point():
                noise = 0.3 * torch.randn(t.shape, generator=generator, dtype=t.dtype)
                t.copy_((t * (1 + noise)).abs() if name.endswith("running_var") else t + noise)
    return other


def load_state(model: nn.Module, state: nn.Module) -> None:
    model.load_state_dict(state.state_dict())


def copy_in_place(model: nn.Module, state: nn.Module) -> None:
    with torch.no_grad():
        for (_, t), (_, s) in zip(list(model.named_parameters()) + list(model.named_buffers()),
                                  list(state.named_parameters()) + list(state.named_buffers())):
            t.copy_(s)


def replace_tensors(model: nn.Module, state: nn.Module) -> None:
    """Every parameter a new ``nn.Parameter`` and every buffer a new tensor, set on its module."""
    tensors = dict(state.named_parameters()) | dict(state.named_buffers())
    for module_name, module in model.named_modules():
        prefix = module_name + "." if module_name else ""
        for name in list(module._parameters):
            if module._parameters[name] is not None:
                setattr(module, name, nn.Parameter(tensors[prefix + name].detach().clone()))
        for name in list(module._buffers):
            if module._buffers[name] is not None:
                module._buffers[name] = tensors[prefix + name].detach().clone()


ROUTES = {"load_state_dict": load_state, "in-place edits": copy_in_place,
          "replaced tensors": replace_tensors}


class ChangedCase(Case):
    """``model``: the changed model; ``original``: the one the graph is traced from; each run's
    graph follows its own copy of ``original``, changed along ``route``."""

    def __init__(self, original: nn.Module, route: str, seed: int, x, eps):
        super().__init__(changed_state(original, seed), x, eps, seed)
        self.original, self.route = original, route

    def trace(self, method):
        saved, self.model = self.model, self.original
        try:
            return super().trace(method)
        finally:
            self.model = saved

    def bounded(self, method, training):
        bounded = super().bounded(method, training)
        ROUTES[self.route](bounded._model_tensors.model, self.model)
        return bounded


def changed_case(case: Case, route: str) -> ChangedCase:
    return ChangedCase(case.model, route, case.seed, case.x, case.eps)
