"""The paper's MNIST / CIFAR-10 feed-forward networks (appendix B and C, Tables 8 and 11):
FFNN, ConvSmall, ConvMed, ConvBig, ConvLargeIBP and TruncatedVGG.

The paper lists only their sizes; the layers below are DiffAI's definitions, and they
reproduce every neuron and parameter count of Tables 8 and 11 exactly. Each is
``Normalize -> [Conv -> ReLU]* -> Flatten -> [Linear -> ReLU]* -> Linear(10)``.
"""
from __future__ import annotations

from typing import Sequence

from torch import nn

from .. import data
from .common import Insert, Normalize, Stages, classifier, conv, stack, with_relu

ConvSpec = tuple[int, int, int]  # (filters, kernel, stride)


def conv_net(dataset: str, convs: Sequence[ConvSpec], padding: int, widths: Sequence[int],
             insert: Insert | None = None) -> nn.Sequential:
    """``Normalize``, the ``convs`` (each followed by ReLU, all with ``padding``), flatten,
    hidden linear layers of ``widths`` (each followed by ReLU) and the ``logits`` layer.
    Stages: norm, conv<i>, conv<i>_relu, flatten, fc<j>, fc<j>_relu, logits."""
    shape = data.input_shape(dataset)
    stages: Stages = [("norm", Normalize(*data.mean_std(dataset)))]
    channels = shape[0]
    for i, (filters, kernel, stride) in enumerate(convs, 1):
        stages += with_relu(f"conv{i}", conv(channels, filters, kernel, stride, padding))
        channels = filters
    return stack(stages + classifier(stages, shape, widths), insert)


def ffnn(dataset: str, insert: Insert | None = None) -> nn.Sequential:
    """FFNN: five fully connected layers of 100 ReLUs."""
    return conv_net(dataset, [], 0, [100] * 5, insert)


def conv_small(dataset: str, insert: Insert | None = None) -> nn.Sequential:
    """ConvSmall: Conv16 k4 s2, Conv32 k4 s2 (no padding), FC100."""
    return conv_net(dataset, [(16, 4, 2), (32, 4, 2)], 0, [100], insert)


def conv_med(dataset: str, insert: Insert | None = None) -> nn.Sequential:
    """ConvMed: ConvSmall with padding 1."""
    return conv_net(dataset, [(16, 4, 2), (32, 4, 2)], 1, [100], insert)


def conv_big(dataset: str, insert: Insert | None = None) -> nn.Sequential:
    """ConvBig: Conv32 k3 s1, Conv32 k4 s2, Conv64 k3 s1, Conv64 k4 s2 (padding 1), FC512, FC512."""
    return conv_net(dataset, [(32, 3, 1), (32, 4, 2), (64, 3, 1), (64, 4, 2)], 1, [512, 512],
                    insert)


def conv_large_ibp(dataset: str, insert: Insert | None = None) -> nn.Sequential:
    """ConvLargeIBP: Conv64, Conv64, Conv128 s2, Conv128, Conv128 (k3, padding 1), FC200."""
    return conv_net(dataset, [(64, 3, 1), (64, 3, 1), (128, 3, 2), (128, 3, 1), (128, 3, 1)], 1,
                    [200], insert)


def truncated_vgg(dataset: str, insert: Insert | None = None) -> nn.Sequential:
    """TruncatedVGG: Conv64, Conv64, Conv128 s2, Conv128 (k3, padding 1), FC512."""
    return conv_net(dataset, [(64, 3, 1), (64, 3, 1), (128, 3, 2), (128, 3, 1)], 1, [512], insert)
