"""The paper's DenseNet-100 for CIFAR-10 (appendix D, Figure 14).

DenseNet-BC without batch norm: a Conv3x3(24) stem (no ReLU), three dense blocks of 16
bottleneck layers (growth 12), two transitions (ReLU, Conv1x1 halving the channels,
AvgPool 2x2 stride 2 padding 1: 32 -> 17 -> 9 pixels), then ReLU, global average pooling
and Linear(342 -> 10). Each dense layer is SkipCat(identity, ReLU -> Conv1x1(48) -> ReLU ->
Conv3x3(12)) -- the pre-activation ReLU acts on the new branch only.
"""
from __future__ import annotations

from torch import nn

from .. import data
from .common import NUM_CLASSES, Insert, Normalize, SkipCat, Stages, conv, stack

GROWTH = 12
BOTTLENECK = 4 * GROWTH
LAYERS_PER_BLOCK = 16


def dense_layer(c_in: int) -> SkipCat:
    """``x -> cat(x, Conv3x3(12)(ReLU(Conv1x1(48)(ReLU(x)))))``: ``c_in + 12`` channels."""
    branch = nn.Sequential(nn.ReLU(), conv(c_in, BOTTLENECK, 1), nn.ReLU(),
                           conv(BOTTLENECK, GROWTH, 3, 1, 1))
    return SkipCat(nn.Identity(), branch, dim=1)


def densenet100(dataset: str, insert: Insert | None = None) -> nn.Sequential:
    """DenseNet-100 (Figure 14). Stages: norm, conv1, dense<b>_<l> (block b = 1..3, layer
    l = 1..16), trans<b>_relu, trans<b>_conv, trans<b>_pool (b = 1, 2), final_relu, pool,
    flatten, logits."""
    channels, size, _ = data.input_shape(dataset)
    stages: Stages = [("norm", Normalize(*data.mean_std(dataset))),
                      ("conv1", conv(channels, 2 * GROWTH, 3, 1, 1))]
    channels = 2 * GROWTH
    for b in range(1, 4):
        for layer in range(1, LAYERS_PER_BLOCK + 1):
            stages.append((f"dense{b}_{layer}", dense_layer(channels)))
            channels += GROWTH
        if b < 3:
            stages += [(f"trans{b}_relu", nn.ReLU()),
                       (f"trans{b}_conv", conv(channels, channels // 2, 1)),
                       (f"trans{b}_pool", nn.AvgPool2d(2, stride=2, padding=1))]
            channels //= 2
            size = size // 2 + 1
    stages += [("final_relu", nn.ReLU()), ("pool", nn.AvgPool2d(size)),
               ("flatten", nn.Flatten()), ("logits", nn.Linear(channels, NUM_CLASSES))]
    return stack(stages, insert)
