"""Building blocks shared by the model zoo: input normalisation, the paper's two-branch
blocks (ParSum, SkipCat), the stack of named stages with its insertion hook, and size counts.

Every network of the zoo is an ``nn.Sequential`` of named stages (``norm``, ``conv1``,
``conv1_relu``, ``block1``, ..., ``logits``). ``insert`` places extra modules (e.g. DiffAI's
abstract layers) at stage boundaries: ``{"after:conv1_relu": m, "before:logits": [m1, m2]}``.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Mapping, Sequence, Union

import torch
from torch import nn

Insert = Mapping[str, Union[nn.Module, Sequence[nn.Module]]]
Stages = list[tuple[str, nn.Module]]

NUM_CLASSES = 10


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel; mean and std are buffers, not parameters."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean has {len(mean)} channels, std has {len(std)}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


class ParSum(nn.Module):
    """The paper's ParNet1/ParNet2/ParSum: two parallel branches, summed.
    An empty branch is ``nn.Identity()`` (an identity shortcut)."""

    def __init__(self, branch1: nn.Module, branch2: nn.Module):
        super().__init__()
        self.branch1 = branch1
        self.branch2 = branch2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.branch1(x) + self.branch2(x)


class SkipCat(nn.Module):
    """The paper's SkipNet1/SkipNet2/SkipCat: two parallel branches, concatenated on ``dim``."""

    def __init__(self, branch1: nn.Module, branch2: nn.Module, dim: int = 1):
        super().__init__()
        self.branch1 = branch1
        self.branch2 = branch2
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x)], dim=self.dim)


def conv(c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int = 0) -> nn.Conv2d:
    """A square 2-D convolution with bias."""
    return nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding)


def with_relu(name: str, module: nn.Module) -> Stages:
    """The stage ``name`` followed by its ReLU stage ``<name>_relu``."""
    return [(name, module), (f"{name}_relu", nn.ReLU())]


def classifier(stages: Stages, input_shape: Sequence[int], widths: Sequence[int]) -> Stages:
    """Stages that end a network after ``stages``: flatten, hidden linear layers
    ``fc<j>`` of ``widths`` (each followed by ReLU) and ``logits`` (10 classes).
    The flattened size is found by running ``stages`` on one zero input."""
    with torch.no_grad():
        features = nn.Sequential(OrderedDict(stages))(torch.zeros(1, *input_shape)).numel()
    head: Stages = [("flatten", nn.Flatten())]
    for j, width in enumerate(widths, 1):
        head += with_relu(f"fc{j}", nn.Linear(features, width))
        features = width
    return head + [("logits", nn.Linear(features, NUM_CLASSES))]


def _as_list(modules: nn.Module | Sequence[nn.Module]) -> list[nn.Module]:
    return [modules] if isinstance(modules, nn.Module) else list(modules)


def stack(stages: Stages, insert: Insert | None = None) -> nn.Sequential:
    """``nn.Sequential`` of the named ``stages`` with ``insert``'s modules placed at
    ``"before:<stage>"`` / ``"after:<stage>"``; inserted modules are named
    ``before_<stage>_<i>`` / ``after_<stage>_<i>``. An unknown place raises KeyError."""
    insert = dict(insert or {})
    names = [name for name, _ in stages]
    for place in insert:
        where, _, stage = place.partition(":")
        if where not in ("before", "after") or stage not in names:
            raise KeyError(f"cannot insert at {place!r}: use 'before:<stage>' or "
                           f"'after:<stage>' with a stage in {names}")
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for name, module in stages:
        for i, m in enumerate(_as_list(insert.get(f"before:{name}", []))):
            layers[f"before_{name}_{i}"] = m
        layers[name] = module
        for i, m in enumerate(_as_list(insert.get(f"after:{name}", []))):
            layers[f"after_{name}_{i}"] = m
    return nn.Sequential(layers)


@dataclass(frozen=True)
class NetworkSize:
    """Size of a network as the paper's tables count it.

    neurons: activations after every ReLU for one input (the convention that reproduces
    the paper's Tables 3, 6, 8 and 11); params: trainable parameters; relu_layers: number
    of ReLU applications (the tables' "Depth (ReLUs)" for the plain feed-forward nets)."""

    neurons: int
    params: int
    relu_layers: int


def count_params(net: nn.Module) -> int:
    """Number of trainable parameters (buffers such as Normalize's are not counted)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def network_size(net: nn.Module, input_shape: Sequence[int]) -> NetworkSize:
    """Neurons, parameters and ReLU layers of ``net`` for one input of ``input_shape`` (C, H, W)."""
    per_relu: list[int] = []

    def record(_module, _inputs, output):
        per_relu.append(output[0].numel())

    handles = [m.register_forward_hook(record) for m in net.modules() if isinstance(m, nn.ReLU)]
    try:
        with torch.no_grad():
            net(torch.zeros(1, *input_shape))
    finally:
        for h in handles:
            h.remove()
    return NetworkSize(sum(per_relu), count_params(net), len(per_relu))
