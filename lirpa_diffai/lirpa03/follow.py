"""The graph follows the model it was traced from (issue 21). auto_LiRPA 0.3's parameter nodes
hold the model's parameter objects, but its buffer nodes hold copies made at tracing, so after
BatchNorm's running statistics move, a ``load_state_dict`` or an in-place edit of a buffer,
every method bounded the model as it was when wrapped; a parameter object replaced on the
model (``m.fc.weight = nn.Parameter(...)``) was not seen either.

:class:`ModelTensors` points each parameter and buffer node at the model's own tensor (so an
in-place change is seen as it happens, and a training-mode pass of the graph moves the
model's statistics as the model's own pass would) and, at the start of every pass, re-points
the nodes whose tensor the model replaced: a cheap check of identities and ``_version``
counters. What it cannot follow is refused, naming the tensor: a dtype, device or shape
other than the one traced (``model.to(torch.float64)``: wrap the model again).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from auto_LiRPA.operators import BoundBuffers, BoundParams


class ModelChangedError(RuntimeError):
    """The model changed in a way its traced graph cannot follow."""


class Seen(NamedTuple):
    """A tensor as last seen: its identity and in-place version, and what the graph fixed."""
    identity: int
    version: int
    dtype: torch.dtype
    device: torch.device
    shape: tuple


def seen(t: torch.Tensor) -> Seen:
    return Seen(id(t), t._version, t.dtype, t.device, tuple(t.shape))


def named_tensors(model) -> dict:
    """``{state name: tensor}`` of the model's parameters and buffers (tied ones under each name)."""
    return {**dict(model.named_parameters(remove_duplicate=False)),
            **dict(model.named_buffers(remove_duplicate=False))}


def slot(node) -> tuple:
    """``(dictionary, key)`` where a parameter or buffer node keeps its tensor."""
    return (node._parameters, "param") if isinstance(node, BoundParams) else (node._buffers, "buffer")


class ModelTensors:
    """The parameter and buffer nodes of ``graph`` bound to ``model``'s tensors by name."""

    def __init__(self, model, graph):
        self.model = model
        self.nodes = {node.ori_name: node for node in graph.modules()
                      if isinstance(node, (BoundParams, BoundBuffers))}
        tensors = named_tensors(model)
        self.traced = {name: seen(tensors[name]) for name in self.nodes if name in tensors}
        for name in self.traced:
            self.point(name, tensors[name])
        self.last = dict(self.traced)

    def point(self, name: str, tensor: torch.Tensor) -> None:
        """The node of ``name`` holds ``tensor`` (a buffer stays a plain tensor)."""
        store, key = slot(self.nodes[name])
        store[key] = tensor

    def sync(self) -> bool:
        """Re-point the nodes whose tensor the model replaced (returns whether any was);
        :class:`ModelChangedError` for a tensor whose dtype, device or shape is not the traced
        one, or which the model lost."""
        tensors, replaced = named_tensors(self.model), False
        for name, before in self.last.items():
            now = tensors.get(name)
            if now is None:
                raise ModelChangedError(f"the model no longer has the tensor '{name}' that graph node "
                                        f"'{self.nodes[name].name}' reads; wrap the model again")
            if seen(now) == before:
                continue
            self.check(name, now)
            if id(now) != before.identity:
                self.point(name, now)
                replaced = True
            self.last[name] = seen(now)
        return replaced

    def check(self, name: str, now: torch.Tensor) -> None:
        traced, found = self.traced[name], seen(now)
        for field in ("dtype", "device", "shape"):
            if getattr(found, field) != getattr(traced, field):
                raise ModelChangedError(
                    f"the model's tensor '{name}' (graph node '{self.nodes[name].name}', operator "
                    f"{type(self.nodes[name]).__name__[5:]}) has {field} {getattr(found, field)} now, "
                    f"{getattr(traced, field)} when it was wrapped; the traced graph cannot follow "
                    "that: wrap the model again (lirpa_diffai.BoundedModule(model, x))")
