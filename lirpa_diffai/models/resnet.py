"""The paper's residual networks for CIFAR-10 (appendix D, Figures 6-13): ResNet-Tiny,
ResNet-Large (wide blocks), ResNet-18, ResNet-34 and SkipNet-18 (basic blocks).

No batch norm, no pooling: each is Normalize, a 3x3 stem, residual blocks (ParSum + ReLU),
flatten and fully connected layers, exactly as the figures list them.
"""
from __future__ import annotations

from typing import Sequence

from torch import nn

from .. import data
from .common import Insert, Normalize, ParSum, Stages, classifier, conv, stack, with_relu

Group = tuple[int, int, int]  # (channels, blocks, stride of the first block)


def wide_block(c_in: int, c_out: int) -> ParSum:
    """ResNet-Tiny/Large block: ``Conv1x1`` in parallel with ``Conv3x3 -> ReLU -> Conv3x3``."""
    residual = nn.Sequential(conv(c_in, c_out, 3, 1, 1), nn.ReLU(), conv(c_out, c_out, 3, 1, 1))
    return ParSum(conv(c_in, c_out, 1), residual)


def basic_block(c_in: int, c_out: int, stride: int = 1) -> ParSum:
    """ResNet-18/34 block: ``Conv3x3(stride) -> ReLU -> Conv3x3`` in parallel with the
    shortcut, a strided ``Conv1x1`` when the shape changes, else the identity."""
    residual = nn.Sequential(conv(c_in, c_out, 3, stride, 1), nn.ReLU(),
                             conv(c_out, c_out, 3, 1, 1))
    changes_shape = stride != 1 or c_in != c_out
    return ParSum(residual, conv(c_in, c_out, 1, stride) if changes_shape else nn.Identity())


def _start(dataset: str) -> tuple[Stages, tuple[int, int, int]]:
    """The Normalize stage of ``dataset`` and its input shape."""
    return [("norm", Normalize(*data.mean_std(dataset)))], data.input_shape(dataset)


def wide_resnet(dataset: str, stem: int, widths: Sequence[int], fc: int,
                insert: Insert | None = None) -> nn.Sequential:
    """Conv3x3(``stem``) + ReLU, one wide block + ReLU per entry of ``widths``, FC(``fc``).
    Stages: norm, conv1, conv1_relu, block<i>, block<i>_relu, flatten, fc1, fc1_relu, logits."""
    stages, shape = _start(dataset)
    stages += with_relu("conv1", conv(shape[0], stem, 3, 1, 1))
    channels = stem
    for i, width in enumerate(widths, 1):
        stages += with_relu(f"block{i}", wide_block(channels, width))
        channels = width
    return stack(stages + classifier(stages, shape, [fc]), insert)


def residual_net(norm: Normalize, shape: Sequence[int], stem: tuple[int, int],
                 groups: Sequence[Group], widths: Sequence[int],
                 insert: Insert | None = None) -> nn.Sequential:
    """``norm``, Conv3x3(stem filters, stem stride) + ReLU, basic blocks (each + ReLU) by
    ``groups``, then linear layers of ``widths`` and the logits. Stages: norm, conv1,
    conv1_relu, block<i>, block<i>_relu (numbered through all groups), flatten, fc<j>, ..."""
    filters, stride = stem
    stages: Stages = [("norm", norm)] + with_relu("conv1", conv(shape[0], filters, 3, stride, 1))
    channels, i = filters, 0
    for width, blocks, first_stride in groups:
        for b in range(blocks):
            i += 1
            block = basic_block(channels, width, first_stride if b == 0 else 1)
            stages += with_relu(f"block{i}", block)
            channels = width
    return stack(stages + classifier(stages, shape, widths), insert)


def resnet_tiny(dataset: str, insert: Insert | None = None) -> nn.Sequential:
    """ResNet-Tiny (Figure 6): Conv16, wide blocks 16, 32, 32, 32, 32, FC500."""
    return wide_resnet(dataset, 16, [16, 32, 32, 32, 32], 500, insert)


def resnet_large(dataset: str, insert: Insert | None = None) -> nn.Sequential:
    """ResNet-Large (Figure 11): Conv16, wide blocks 16, 32, 32, 32, 64, 64, 64, FC1000."""
    return wide_resnet(dataset, 16, [16, 32, 32, 32, 64, 64, 64], 1000, insert)


def resnet18(dataset: str, insert: Insert | None = None) -> nn.Sequential:
    """ResNet-18 (Figure 12): Conv64, 2 basic blocks each of 64, 128, 256, 512, FC512, FC512."""
    norm = Normalize(*data.mean_std(dataset))
    groups = [(64, 2, 1), (128, 2, 2), (256, 2, 2), (512, 2, 2)]
    return residual_net(norm, data.input_shape(dataset), (64, 1), groups, [512, 512], insert)


def resnet34(dataset: str, insert: Insert | None = None) -> nn.Sequential:
    """ResNet-34 (Figure 13): Conv64, 3, 4, 6, 3 basic blocks of 64, 128, 256, 512, FC512, FC512."""
    norm = Normalize(*data.mean_std(dataset))
    groups = [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]
    return residual_net(norm, data.input_shape(dataset), (64, 1), groups, [512, 512], insert)


def skipnet18(dataset: str, insert: Insert | None = None) -> nn.Sequential:
    """SkipNet-18 (Figure 9): five Conv64, then for 128, 256, 512 one strided basic block
    and two plain Conv3x3, FC512, FC512. Stages: conv1..conv11 (plain convolutions,
    numbered in order), block1..block3, each with its ``_relu``."""
    stages, shape = _start(dataset)
    channels = shape[0]
    for i in range(1, 6):
        stages += with_relu(f"conv{i}", conv(channels, 64, 3, 1, 1))
        channels = 64
    i = 5
    for b, width in enumerate((128, 256, 512), 1):
        stages += with_relu(f"block{b}", basic_block(channels, width, 2))
        for _ in range(2):
            i += 1
            stages += with_relu(f"conv{i}", conv(width, width, 3, 1, 1))
        channels = width
    return stack(stages + classifier(stages, shape, [512, 512]), insert)
