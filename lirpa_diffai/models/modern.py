"""Two small networks of today's architecture families, sized for MNIST (1 x 28 x 28) and
CIFAR-10 (3 x 32 x 32), for DiffAI training end to end (issue 20, item 4):

- ``mobilenet_tiny``: MobileNet / EfficientNet style. A strided stem, two inverted residual
  blocks (the first strided, as the first block of a stage; 1x1 expansion, depthwise 3x3,
  EfficientNet's squeeze-excitation gate ``x * sigmoid(fc2(relu(fc1(pool(x)))))``, 1x1
  projection), ReLU6 activations (MobileNetV2's), a 1x1 head, global average pooling and the
  logits. The gate is a product of two perturbed values. (SiLU or Hardswish in place of ReLU6
  made a step of bound training about 10x slower here, in their interval transformers.)
- ``vit_tiny``: a Vision Transformer. Patches of 4 x 4 embedded by a strided convolution plus
  a learned position embedding, two pre-norm encoder blocks (LayerNorm, multi-head
  self-attention written out as ``softmax(q @ k^T / sqrt(d)) @ v``, LayerNorm, a GELU MLP,
  both residual), a final LayerNorm, the mean over the tokens and the logits.
  ``vit_tiny_centred`` is the same with every LayerNorm replaced by :class:`CentredNorm`
  (no division by the standard deviation), the variant DiffAI trains here.

Both are ``nn.Sequential`` of named stages starting with ``Normalize``, as the rest of the zoo.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .. import data
from .common import NUM_CLASSES, Insert, Normalize, Stages, stack


class SqueezeExcite(nn.Module):
    """The squeeze-excitation gate of MobileNetV3 / EfficientNet (Hu et al. 2018):
    ``x * sigmoid(fc2(relu(fc1(mean_hw(x)))))``, the fully connected layers as 1x1 convs."""

    def __init__(self, channels: int, squeezed: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeezed, 1)
        self.act = nn.ReLU()
        self.fc2 = nn.Conv2d(squeezed, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))


class InvertedResidual(nn.Module):
    """MobileNetV2's inverted residual block with a squeeze-excitation gate (EfficientNet's
    MBConv): 1x1 conv to ``c_in * expand`` channels, ReLU6, depthwise 3x3 conv (``stride``),
    ReLU6, the gate, 1x1 conv to ``c_out``; plus ``x`` when the shape is kept."""

    def __init__(self, c_in: int, c_out: int, expand: int, stride: int):
        super().__init__()
        hidden = c_in * expand
        self.body = nn.Sequential(
            nn.Conv2d(c_in, hidden, 1), nn.ReLU6(),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden), nn.ReLU6(),
            SqueezeExcite(hidden, max(c_in // 4, 4)),
            nn.Conv2d(hidden, c_out, 1))
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.residual else out


def mobilenet_tiny(dataset: str, insert: Insert | None = None) -> nn.Sequential:
    """MobileNet-Tiny: Conv16 k3 s2 + ReLU6, InvertedResidual(16 -> 24, expand 2, stride 2),
    InvertedResidual(24 -> 24, expand 2, residual), Conv64 k1 + ReLU6, global average pool,
    Linear(10).
    Stages: norm, stem, stem_act, block1, block2, head, head_act, pool, flatten, logits."""
    shape = data.input_shape(dataset)
    stages: Stages = [
        ("norm", Normalize(*data.mean_std(dataset))),
        ("stem", nn.Conv2d(shape[0], 16, 3, 2, 1)), ("stem_act", nn.ReLU6()),
        ("block1", InvertedResidual(16, 24, expand=2, stride=2)),
        ("block2", InvertedResidual(24, 24, expand=2, stride=1)),
        ("head", nn.Conv2d(24, 64, 1)), ("head_act", nn.ReLU6()),
        ("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()),
        ("logits", nn.Linear(64, NUM_CLASSES)),
    ]
    return stack(stages, insert)


class PatchEmbedding(nn.Module):
    """ViT's patch embedding: a ``patch`` x ``patch`` convolution of stride ``patch`` to
    ``dim`` channels, the patches as tokens ``(B, tokens, dim)``, plus a learned position
    embedding."""

    def __init__(self, channels: int, dim: int, patch: int, tokens: int):
        super().__init__()
        self.proj = nn.Conv2d(channels, dim, patch, patch)
        self.position = nn.Parameter(torch.randn(1, tokens, dim) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2) + self.position


class SelfAttention(nn.Module):
    """Multi-head self-attention written out (Vaswani et al. 2017):
    ``softmax(q @ k^T / sqrt(d_head)) @ v`` per head, heads concatenated, then a Linear."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not a multiple of heads {heads}")
        self.heads, self.head_dim = heads, dim // heads
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, dim)`` -> ``(B, heads, T, head_dim)``. The batch axis is ``-1`` in the
        reshape: a traced graph keeps the other sizes as constants, and the batch may change."""
        return x.reshape(-1, x.shape[1], self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.split(self.q(x)), self.split(self.k(x)), self.split(self.v(x))
        weights = torch.softmax(q @ k.transpose(2, 3) / math.sqrt(self.head_dim), dim=-1)
        return self.out((weights @ v).transpose(1, 2).reshape(-1, x.shape[1], x.shape[2]))


class CentredNorm(nn.Module):
    """Layer normalisation without the division by the standard deviation:
    ``(x - mean(x)) * weight + bias`` over the last axis, the "no variance" layer norm that
    Shi et al. (ICLR 2020, "Robustness Verification for Transformers") verify and train
    transformers with. LayerNorm divides by ``sqrt(var(x) + 1e-5)``; where a token is
    nearly constant (a background patch of an MNIST digit) the lower bound of that variance
    is about 0 for every bound method, and the division multiplies the widths by up to
    ``1 / sqrt(1e-5)`` = 316 per LayerNorm."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight, self.bias = nn.Parameter(torch.ones(dim)), nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - x.mean(-1, keepdim=True)) * self.weight + self.bias


NORMS = {"layer": nn.LayerNorm, "centred": CentredNorm}


class EncoderBlock(nn.Module):
    """A pre-norm Transformer encoder block: ``x + attn(norm(x))``, then ``y + mlp(norm(y))``
    with ``mlp = Linear, GELU, Linear``; ``norm``: a key of :data:`NORMS`."""

    def __init__(self, dim: int, heads: int, hidden: int, norm: str = "layer"):
        super().__init__()
        self.norm1, self.attn = NORMS[norm](dim), SelfAttention(dim, heads)
        self.norm2 = NORMS[norm](dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TokenMean(nn.Module):
    """The mean over the tokens: ``(B, T, dim)`` -> ``(B, dim)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(1)


def vit_tiny(dataset: str, insert: Insert | None = None, dim: int = 16, heads: int = 2,
             blocks: int = 2, patch: int = 4, norm: str = "layer") -> nn.Sequential:
    """ViT-Tiny: 4 x 4 patches embedded to ``dim`` (16), ``blocks`` (2) pre-norm encoder blocks
    of ``heads`` (2) heads and a GELU MLP of 2 x ``dim``, a final norm, the mean over the
    tokens, Linear(10). ``norm``: ``"layer"`` (LayerNorm) or ``"centred"``
    (:class:`CentredNorm`). Stages: norm, embed, block1, block2, final_norm, pool, logits."""
    channels, height, width = data.input_shape(dataset)
    tokens = (height // patch) * (width // patch)
    stages: Stages = [("norm", Normalize(*data.mean_std(dataset))),
                      ("embed", PatchEmbedding(channels, dim, patch, tokens))]
    stages += [(f"block{i}", EncoderBlock(dim, heads, 2 * dim, norm)) for i in range(1, blocks + 1)]
    stages += [("final_norm", NORMS[norm](dim)), ("pool", TokenMean()),
               ("logits", nn.Linear(dim, NUM_CLASSES))]
    return stack(stages, insert)


def vit_tiny_centred(dataset: str, insert: Insert | None = None) -> nn.Sequential:
    """ViT-Tiny with :class:`CentredNorm` in place of every LayerNorm (for certified training)."""
    return vit_tiny(dataset, insert, norm="centred")
