"""The zoo networks with the paper's abstract-layer configurations (appendix D, Figures 7, 8,
10 and 11): ResNet-Tiny FewCombo and ManyFixed, SkipNet-18 Combo, ResNet-Large LargeCombo.

Placements follow the figures (the networks as DiffAI prints them); where the prose of
section 5.2 differs, the figure wins. Every network has ``CorrelateAll(only_train=False)``
before its last linear layer, as all the paper's networks do. The abstract layers are
inserted at stage boundaries, so the parameter names (state_dict keys) are those of the base
network: a checkpoint of one loads into the other.
"""
from __future__ import annotations

from torch import nn

from ..domain.abstract_layers import (Concretize, CorrelateAll, CorrelateFixed, CorrelateMaxK,
                                      DecorrelateMin, DeepLoss)
from ..schedules import Lin, Until
from . import resnet
from .common import Insert


def merge(layers: Insert, insert: Insert | None) -> dict[str, list[nn.Module]]:
    """``layers`` with the caller's ``insert`` added after them at each place."""
    def as_list(modules):
        return [modules] if isinstance(modules, nn.Module) else list(modules)
    merged = {place: as_list(modules) for place, modules in layers.items()}
    for place, modules in (insert or {}).items():
        merged[place] = merged.get(place, []) + as_list(modules)
    return merged


def resnet_tiny_fewcombo(dataset: str, insert: Insert | None = None) -> nn.Sequential:
    """ResNet-Tiny FewCombo (Figure 7): CorrelateMax 32 before the first convolution,
    DecorrelateMin 8 after it, DecorrelateMin 4 after wide block 1, Concretize after block 2,
    CorrelateMax 10 before the fully connected layers."""
    return resnet.resnet_tiny(dataset, merge({
        "before:conv1": CorrelateMaxK(32),
        "after:conv1_relu": DecorrelateMin(8),
        "after:block1_relu": DecorrelateMin(4),
        "after:block2_relu": Concretize(),
        "after:block5_relu": CorrelateMaxK(10),
        "before:logits": CorrelateAll(only_train=False),
    }, insert))


def resnet_tiny_manyfixed(dataset: str, insert: Insert | None = None) -> nn.Sequential:
    """ResNet-Tiny ManyFixed (Figure 8): CorrelateMax 32 before the first convolution, then
    CorrelateFixed k + DecorrelateMin k with k = 16 after it, 8 after wide blocks 1 and 2,
    4 after block 3, and Concretize after block 4."""
    return resnet.resnet_tiny(dataset, merge({
        "before:conv1": CorrelateMaxK(32),
        "after:conv1_relu": [CorrelateFixed(16), DecorrelateMin(16)],
        "after:block1_relu": [CorrelateFixed(8), DecorrelateMin(8)],
        "after:block2_relu": [CorrelateFixed(8), DecorrelateMin(8)],
        "after:block3_relu": [CorrelateFixed(4), DecorrelateMin(4)],
        "after:block4_relu": Concretize(),
        "before:logits": CorrelateAll(only_train=False),
    }, insert))


def skipnet18_combo(dataset: str, insert: Insert | None = None) -> nn.Sequential:
    """SkipNet-18 Combo (Figure 10): CorrelateFixed k + DecorrelateMin floor(k/2) with
    k = 20 after the first residual block, 10 after the two convolutions that follow it
    (then DeepLoss with weight ``Until(90, Lin(0, 0.2, 50, 40), 0)``), 5 after the second
    residual block."""
    return resnet.skipnet18(dataset, merge({
        "after:block1_relu": [CorrelateFixed(20), DecorrelateMin(10)],
        "after:conv7_relu": [CorrelateFixed(10), DecorrelateMin(5),
                             DeepLoss(Until(90, Lin(0, 0.2, 50, 40), 0))],
        "after:block2_relu": [CorrelateFixed(5), DecorrelateMin(2)],
        "before:logits": CorrelateAll(only_train=False),
    }, insert))


def resnet_large_largecombo(dataset: str, insert: Insert | None = None) -> nn.Sequential:
    """ResNet-Large LargeCombo (Figure 11): CorrelateMax 4 before wide block 1;
    CorrelateMax 4 + DecorrelateMin 4 before blocks 2, 3 and 5; CorrelateMax 4 +
    DecorrelateMin 2 before block 6; DeepLoss after block 3 (weight
    ``Until(1, 0, Lin(0.5, 0, 50, 3))``) and after block 6 (weight
    ``Until(24, Lin(0, 0.1, 20, 4), Lin(0.1, 0, 50, 0))``)."""
    return resnet.resnet_large(dataset, merge({
        "after:conv1_relu": CorrelateMaxK(4),
        "after:block1_relu": [CorrelateMaxK(4), DecorrelateMin(4)],
        "after:block2_relu": [CorrelateMaxK(4), DecorrelateMin(4)],
        "after:block3_relu": DeepLoss(Until(1, 0, Lin(0.5, 0, 50, 3))),
        "after:block4_relu": [CorrelateMaxK(4), DecorrelateMin(4)],
        "after:block5_relu": [CorrelateMaxK(4), DecorrelateMin(2)],
        "after:block6_relu": DeepLoss(Until(24, Lin(0, 0.1, 20, 4), Lin(0.1, 0, 50, 0))),
        "before:logits": CorrelateAll(only_train=False),
    }, insert))
