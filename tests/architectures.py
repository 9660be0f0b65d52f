"""Small versions of the architecture families people train today (issue 20's table), written
here without torchvision, and the method grid that bounds them: shared by
``tests/test_architectures.py`` and ``benchmarks/architecture_table.py`` (which writes
``docs/architectures.md``)."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from tests.soundness.check import Case, Outcome, run_case
from tests.soundness.methods import METHODS

# the table's columns: (column title, the fuzzer's method label)
METHOD_COLUMNS = (
    ("IBP", "IBP"),
    ("hzono (0 rows)", "hzono[boxy,rows=0]"),
    ("hzono (rows: HBox)", "HBox"),
    ("pure zonotope (ZBox)", "ZBox"),
    ("CROWN-IBP", "CROWN-IBP"),
    ("CROWN", "CROWN"),
    ("alpha-CROWN", "alpha-CROWN"),
    ("CROWN-hzono", "CROWN-hzono"),
)
EPS = 2 / 255
QUICK_WITNESS = {"samples": 40, "pgd_steps": 4, "pgd_targets": 4}


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> list:
    return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]


class OptionABlock(nn.Module):
    """CIFAR ResNet's basic block with the "option A" shortcut: subsample, zero channels."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(*conv_bn(cin, cout, 3, stride), nn.ReLU(), *conv_bn(cout, cout))
        self.pad = (cout - cin) // 2
        self.stride = stride

    def forward(self, x):
        shortcut = x
        if self.stride != 1 or self.pad:
            shortcut = F.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, self.pad, self.pad))
        return F.relu(self.body(x) + shortcut)


class BasicBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(*conv_bn(c, c), nn.ReLU(), *conv_bn(c, c))

    def forward(self, x):
        return F.relu(self.body(x) + x)


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expand, depthwise 3x3, 1x1 project (ReLU6), residual."""

    def __init__(self, c: int, expand: int = 2, act=nn.ReLU6, gate=None):
        super().__init__()
        h = c * expand
        layers = [*conv_bn(c, h, 1), act(), *conv_bn(h, h, 3, groups=h), act()]
        if gate is not None:
            layers.append(gate(h))
        self.body = nn.Sequential(*layers, *conv_bn(h, c, 1))

    def forward(self, x):
        return x + self.body(x)


class SqueezeExcite(nn.Module):
    """``x * gate(fc2(act(fc1(pool(x)))))``: Hardsigmoid (MobileNetV3) or sigmoid (EfficientNet)."""

    def __init__(self, c: int, gate=nn.Hardsigmoid, act=nn.ReLU):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, max(c // 2, 1), 1), nn.Conv2d(max(c // 2, 1), c, 1)
        self.act, self.gate = act(), gate()

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))


def head(c: int, classes: int = 3) -> list:
    return [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, classes)]


class ShuffleBlock(nn.Module):
    """ShuffleNetV2's stride-1 unit: split channels with ``chunk``, transform one half, concat,
    channel shuffle (view, transpose, view)."""

    def __init__(self, c: int):
        super().__init__()
        h = c // 2
        self.branch = nn.Sequential(*conv_bn(h, h, 1), nn.ReLU(), *conv_bn(h, h, 3, groups=h),
                                    *conv_bn(h, h, 1), nn.ReLU())

    def forward(self, x):
        a, b = x.chunk(2, dim=1)
        out = torch.cat([a, self.branch(b)], 1)
        n, c, hh, w = out.shape
        return out.view(n, 2, c // 2, hh, w).transpose(1, 2).contiguous().view(n, c, hh, w)


class ConvNeXtBlock(nn.Module):
    """Depthwise conv, LayerNorm over channels (channels last), Linear, GELU, Linear, residual."""

    def __init__(self, c: int):
        super().__init__()
        self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c)
        self.norm = nn.LayerNorm(c)
        self.mlp = nn.Sequential(nn.Linear(c, 2 * c), nn.GELU(), nn.Linear(2 * c, c))

    def forward(self, x):
        y = self.dw(x).permute(0, 2, 3, 1)
        return x + self.mlp(self.norm(y)).permute(0, 3, 1, 2)


class PatchEmbed(nn.Module):
    def __init__(self, cin: int, d: int, patch: int):
        super().__init__()
        self.proj = nn.Conv2d(cin, d, patch, patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)   # (B, tokens, d)


class ViT(nn.Module):
    def __init__(self, cin=3, d=8, patch=4, tokens=4, classes=3):
        super().__init__()
        self.embed = PatchEmbed(cin, d, patch)
        self.pos = nn.Parameter(torch.randn(1, tokens, d) * 0.1)
        self.block = nn.TransformerEncoderLayer(d, 2, 2 * d, dropout=0.0, batch_first=True)
        self.out = nn.Linear(d, classes)

    def forward(self, x):
        return self.out(self.block(self.embed(x) + self.pos).mean(1))


class MultiheadBlock(nn.Module):
    """``x + MultiheadAttention(x, x, x)`` then a ReLU MLP, residual: ViT's block without its
    LayerNorms (which are bounded on their own, see the ViT row)."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.attention = nn.MultiheadAttention(d, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.ReLU(), nn.Linear(2 * d, d))

    def forward(self, x):
        x = x + self.attention(x, x, x, need_weights=False)[0]
        return x + self.mlp(x)


class MixerBlock(nn.Module):
    def __init__(self, tokens: int, d: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.token_mlp = nn.Sequential(nn.Linear(tokens, 2 * tokens), nn.GELU(), nn.Linear(2 * tokens, tokens))
        self.channel_mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def forward(self, x):
        x = x + self.token_mlp(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channel_mlp(self.norm2(x))


class Attention(nn.Module):
    """Self-attention written out: ``softmax(q @ k.T / sqrt(d)) @ v``."""

    def __init__(self, d: int):
        super().__init__()
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.d = d

    def forward(self, x):
        scores = self.q(x) @ self.k(x).transpose(1, 2) / math.sqrt(self.d)
        return x + torch.softmax(scores, -1) @ self.v(x)


class Normalise(nn.Module):
    def forward(self, x):
        return (x - 0.1307) / 0.3081


def cifar_resnet():
    return nn.Sequential(*conv_bn(3, 4), nn.ReLU(), OptionABlock(4, 4, 1), OptionABlock(4, 8, 2), *head(8))


def resnet_stem():
    return nn.Sequential(*conv_bn(3, 4, 3, 2), nn.ReLU(), nn.MaxPool2d(3, 2, 1), BasicBlock(4), *head(4))


def mobilenet_v2():
    return nn.Sequential(*conv_bn(3, 4, 3, 2), nn.ReLU6(), InvertedResidual(4), *head(4))


def mobilenet_v3():
    return nn.Sequential(*conv_bn(3, 4, 3, 2), nn.Hardswish(),
                         InvertedResidual(4, act=nn.Hardswish, gate=SqueezeExcite), *head(4))


def efficientnet():
    def gate(c):
        return SqueezeExcite(c, nn.Sigmoid, nn.SiLU)
    return nn.Sequential(*conv_bn(3, 4, 3, 2), nn.SiLU(), InvertedResidual(4, act=nn.SiLU, gate=gate), *head(4))


def shufflenet():
    return nn.Sequential(*conv_bn(3, 4, 3, 2), nn.ReLU(), ShuffleBlock(4), *head(4))


def convnext():
    return nn.Sequential(nn.Conv2d(3, 4, 4, 4), ConvNeXtBlock(4), *head(4))


def mlp_mixer():
    return nn.Sequential(PatchEmbed(3, 8, 4), MixerBlock(4, 8), nn.LayerNorm(8), nn.Flatten(), nn.Linear(32, 3))


def attention():
    return nn.Sequential(PatchEmbed(3, 8, 4), Attention(8), nn.Flatten(), nn.Linear(32, 3))


def multihead():
    return nn.Sequential(PatchEmbed(3, 8, 4), MultiheadBlock(8, 2), nn.Flatten(), nn.Linear(32, 3))


def smooth_mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16), nn.ELU(), nn.Linear(16, 16), nn.Softplus(),
                         nn.Linear(16, 3))


def lenet():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.AvgPool2d(2), nn.Conv2d(4, 4, 3, padding=1),
                         nn.Tanh(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(16, 3))


def vgg():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d((2, 2)), nn.Flatten(), nn.Linear(16, 3))


def vgg_uneven():
    """torchvision VGG's ``AdaptiveAvgPool2d((7, 7))`` on a 9 x 9 map: uneven, overlapping windows."""
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d((7, 7)), nn.Flatten(),
                         nn.Linear(4 * 49, 3))


class SequenceNet(nn.Module):
    """A small 1-d convolutional network over the image's rows read as one sequence."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv1d(3, 4, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.Conv1d(4, 4, 3, padding=2, dilation=2, groups=2), nn.ReLU())
        self.out = nn.Linear(4 * 32, 3)

    def forward(self, x):
        return self.out(self.body(x.flatten(2)).flatten(1))


def conv1d_net():
    return SequenceNet()


def decoder():
    """An encoder and a ConvTranspose decoder (segmentation / autoencoder style)."""
    return nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.ReLU(),
                         nn.ConvTranspose2d(4, 4, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
                         nn.ConvTranspose2d(4, 4, 3, padding=2, dilation=2, groups=2), nn.ReLU(), *head(4))


def normalised_conv():
    return nn.Sequential(Normalise(), nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), *head(4))


@dataclass(frozen=True)
class Family:
    name: str
    what: str               # what the family is known for
    build: Callable[[], nn.Module]
    size: int = 8           # input side (3 x size x size)


FAMILIES = (
    Family("CIFAR ResNet (option A)", "`F.pad(x[:, :, ::2, ::2], ...)` shortcut", cifar_resnet),
    Family("ResNet stem", "`MaxPool2d(3, 2, 1)`", resnet_stem),
    Family("MobileNetV2", "ReLU6 (`Clip`), depthwise conv, inverted residual", mobilenet_v2),
    Family("MobileNetV3", "Hardswish, squeeze-excitation gate with Hardsigmoid", mobilenet_v3),
    Family("EfficientNet", "SiLU, sigmoid squeeze-excitation gate", efficientnet),
    Family("ShuffleNetV2", "`chunk`, channel shuffle", shufflenet),
    Family("ConvNeXt", "LayerNorm, GELU", convnext),
    Family("ViT", "`nn.TransformerEncoderLayer`", lambda: ViT()),
    Family("MLP-Mixer", "token-mixing MLP, LayerNorm, GELU", mlp_mixer),
    Family("attention (written out)", "`softmax(q @ k.T / sqrt(d)) @ v`", attention),
    Family("multi-head attention", "`nn.MultiheadAttention`, no LayerNorm", multihead),
    Family("MLP (ELU, Softplus)", "smooth activations", smooth_mlp),
    Family("LeNet", "Tanh, `AvgPool2d`", lenet),
    Family("VGG", "`AdaptiveAvgPool2d((2, 2))`", vgg),
    Family("VGG (uneven pool)", "`AdaptiveAvgPool2d((7, 7))` on a 9 x 9 input", vgg_uneven, size=9),
    Family("1-D conv net", "`Conv1d` (stride, dilation, groups) over a sequence", conv1d_net),
    Family("ConvTranspose decoder", "`ConvTranspose2d` with padding, output_padding, dilation, groups", decoder),
    Family("plain normalisation", "`(x - 0.1307) / 0.3081` before a conv", normalised_conv),
)
BY_NAME = {f.name: f for f in FAMILIES}


def family_case(family: Family, seed: int = 0) -> Case:
    """The family's network (random init, eval mode) on a batch of 2 inputs in [0, 1]."""
    torch.manual_seed(seed)
    model = family.build().eval()
    x = torch.rand(2, 3, family.size, family.size)
    return Case(model, x, EPS, seed)


NAMED_REFUSAL = re.compile(r"graph node '[^']+' \(operator [\w:]+|[\w:]+ in module '[^']+'")


def check(case: Case, label: str, training: bool = False, witness=None) -> Outcome:
    """The fuzzer's outcome; an error naming an operator that has no Bound class at all, and
    its node or module (``aten::ATen in module 'block.self_attn' (MultiheadAttention)``), is a
    refusal too."""
    outcome = run_case(case, METHODS[label], training, **(witness or QUICK_WITNESS))
    if outcome.kind == "crash" and NAMED_REFUSAL.search(outcome.detail):
        return Outcome("refused", outcome.detail)
    return outcome


def short_reason(outcome: Outcome) -> str:
    """A refusal's message cut to its node, operator and first clause, for the table."""
    text = re.sub(r"^\w+(Error|Exception): ", "", outcome.detail).replace("|", "/").replace("\n", " ")
    return text[:160] + ("..." if len(text) > 160 else "")


def cell(outcome: Outcome) -> str:
    if outcome.kind == "sound":
        return "bounded"
    if outcome.kind == "refused":
        return f"refused: {short_reason(outcome)}"
    return f"**{outcome.kind}**: {short_reason(outcome)}"


def markdown(results: dict) -> str:
    """``results[(family, column)] = Outcome`` as the family x method table."""
    titles = [title for title, _ in METHOD_COLUMNS]
    lines = ["Every bound method on small versions of the architecture families people train today "
             "(random weights, eval mode, batch 2, 3 x 8 x 8 inputs unless the family says otherwise, eps = 2/255; "
             "`tests/architectures.py`). "
             "`bounded`: sound against sampled points, corners and PGD aimed at each bound, and exact at "
             "eps = 0; `refused`: an error naming the graph node and its operator. Generated by "
             "`python -m benchmarks.architecture_table --markdown`; `tests/test_architectures.py` keeps it current.",
             "", "| family | known for | " + " | ".join(titles) + " |", "|---" * (len(titles) + 2) + "|"]
    for family in FAMILIES:
        cells = [cell(results[(family.name, title)]) for title in titles]
        lines.append(f"| {family.name} | {family.what} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def parse_markdown(text: str) -> dict:
    """``{(family, column): "bounded" | "refused" | other kind}`` from a page :func:`markdown` wrote."""
    titles = [title for title, _ in METHOD_COLUMNS]
    out = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == len(titles) + 2 and cells[0] in BY_NAME:
            for title, value in zip(titles, cells[2:]):
                out[(cells[0], title)] = value.split(":")[0].strip("*")
    return out
