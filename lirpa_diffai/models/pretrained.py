"""Third-party pretrained networks as zoo-style stacks of named stages.

``load_pretrained("mnist_conv_small_nat")`` (a name from ``PRETRAINED``, read from
``<shared>/models/``) or ``load_pretrained(path, arch=..., dataset=...)`` (any checkpoint of
a known architecture). The checkpoint is read with ``torch.load(..., weights_only=True)``;
its state dict is translated to our stage names by the architecture's key map and checked
key by key and shape by shape before loading. The input normalisation, which the
checkpoints do not store, becomes the ``norm`` stage.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Mapping, NamedTuple, Sequence

import torch
from torch import nn

from .. import data
from .common import Insert, Normalize
from .feedforward import conv_small
from .resnet import residual_net

ERAN_CIFAR_STD = (0.2023, 0.1994, 0.2010)
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)


class PretrainedMismatchError(ValueError):
    """A checkpoint's keys or shapes do not fit the architecture it is loaded into."""


def eran_conv_small(dataset: str, mean: Sequence[float], std: Sequence[float],
                    insert: Insert | None = None) -> nn.Sequential:
    """ERAN's ConvSmall (the paper's ConvSmall: Conv16 k4 s2, Conv32 k4 s2, FC100) with
    the given input normalisation."""
    net = conv_small(dataset, insert)
    net.norm = Normalize(mean, std)
    return net


def resnet2b(dataset: str, mean: Sequence[float], std: Sequence[float],
             insert: Insert | None = None) -> nn.Sequential:
    """VNN-COMP's resnet2b: Conv8 k3 s2 + ReLU, a strided basic block of 16 (1x1
    shortcut), an identity basic block of 16, FC100. No batch norm."""
    shape = data.input_shape(dataset)
    return residual_net(Normalize(mean, std), shape, (8, 2), [(16, 2, 2)], [100], insert)


class Architecture(NamedTuple):
    """A builder ``(dataset, mean, std, insert) -> nn.Sequential`` and the map from the
    checkpoint's module paths to our stage paths."""

    build: Callable[..., nn.Sequential]
    key_map: Mapping[str, str]


ARCHITECTURES = {
    "eran_conv_small": Architecture(eran_conv_small,
                                    {"0": "conv1", "2": "conv2", "5": "fc1", "7": "logits"}),
    "resnet2b": Architecture(resnet2b, {
        "conv1": "conv1",
        "layer1.0.conv1": "block1.branch1.0", "layer1.0.conv2": "block1.branch1.2",
        "layer1.0.shortcut.0": "block1.branch2",
        "layer1.1.conv1": "block2.branch1.0", "layer1.1.conv2": "block2.branch1.2",
        "linear1": "fc1", "linear2": "logits"}),
}


class Pretrained(NamedTuple):
    """A known checkpoint file: its architecture, dataset and input normalisation."""

    file: str
    arch: str
    dataset: str
    mean: tuple[float, ...]
    std: tuple[float, ...]


PRETRAINED = {
    "mnist_conv_small_nat": Pretrained("mnist_conv_small_nat.pth", "eran_conv_small", "mnist",
                                       *data.mean_std("mnist")),
    "cifar_conv_small_pgd": Pretrained("cifar_conv_small_pgd.pth", "eran_conv_small", "cifar10",
                                       CIFAR_MEAN, ERAN_CIFAR_STD),
    "resnet2b": Pretrained("resnet2b.pth", "resnet2b", "cifar10",
                           CIFAR_MEAN, (0.2471, 0.2435, 0.2616)),
}


def state_dict_of(checkpoint) -> dict[str, torch.Tensor]:
    """The plain state dict inside a checkpoint: ``checkpoint["state_dict"]`` (unwrapping a
    list of one) or the checkpoint itself when it maps names to tensors."""
    if isinstance(checkpoint, Mapping) and "state_dict" in checkpoint:
        checkpoint = checkpoint["state_dict"]
    if isinstance(checkpoint, (list, tuple)) and len(checkpoint) == 1:
        checkpoint = checkpoint[0]
    if isinstance(checkpoint, Mapping) and all(torch.is_tensor(v) for v in checkpoint.values()):
        return dict(checkpoint)
    raise PretrainedMismatchError(f"no state dict found in a checkpoint of type "
                                  f"{type(checkpoint).__name__}")


def translate(state: Mapping[str, torch.Tensor], key_map: Mapping[str, str]) -> dict:
    """``{our key: (checkpoint key, tensor)}``; a module path missing from ``key_map`` keeps
    its name (so it is reported as unexpected by ``check``)."""
    out = {}
    for key, tensor in state.items():
        path, _, leaf = key.rpartition(".")
        ours = f"{key_map[path]}.{leaf}" if path in key_map else key
        out[ours] = (key, tensor)
    return out


def check(model: nn.Module, translated: Mapping[str, tuple[str, torch.Tensor]]) -> None:
    """Raise PretrainedMismatchError naming every missing, unexpected or misshapen key."""
    params = dict(model.named_parameters())
    problems = [f"missing: model parameter {k!r} {tuple(p.shape)} has no checkpoint key"
                for k, p in params.items() if k not in translated]
    for ours, (theirs, tensor) in translated.items():
        if ours not in params:
            problems.append(f"unexpected: checkpoint key {theirs!r} {tuple(tensor.shape)}")
        elif params[ours].shape != tensor.shape:
            problems.append(f"shape: checkpoint key {theirs!r} (model {ours!r}) expected "
                            f"{tuple(params[ours].shape)}, found {tuple(tensor.shape)}")
    if problems:
        raise PretrainedMismatchError("checkpoint does not fit the architecture:\n  "
                                      + "\n  ".join(problems))


def _resolve(name_or_path: str | os.PathLike) -> tuple[Path, Pretrained | None]:
    """The checkpoint file and its PRETRAINED entry (None for an unknown file)."""
    if str(name_or_path) in PRETRAINED:
        known = PRETRAINED[str(name_or_path)]
        path = data.shared_root() / "models" / known.file
        if not path.is_file():
            raise FileNotFoundError(f"pretrained {name_or_path!r}: {path} not found (set "
                                    f"{data.SHARED_ENV} to the shared directory)")
        return path, known
    path = Path(name_or_path)
    if not path.is_file():
        raise FileNotFoundError(f"{name_or_path!r} is neither a file nor one of "
                                f"{', '.join(PRETRAINED)}")
    return path, PRETRAINED.get(path.stem)


def load_pretrained(name_or_path: str | os.PathLike, *, arch: str | None = None,
                    dataset: str | None = None, mean: Sequence[float] | None = None,
                    std: Sequence[float] | None = None,
                    insert: Insert | None = None) -> nn.Sequential:
    """A pretrained network in eval mode. ``name_or_path``: a ``PRETRAINED`` name, or a
    checkpoint path. For a file whose stem is not a ``PRETRAINED`` name give ``arch`` (one
    of ``ARCHITECTURES``) and ``dataset``; ``mean``/``std`` default to the dataset's.
    Explicit arguments override the known entry's."""
    path, known = _resolve(name_or_path)
    arch = arch or (known.arch if known else None)
    dataset = dataset or (known.dataset if known else None)
    if arch not in ARCHITECTURES or dataset is None:
        raise ValueError(f"{path}: give arch (one of {', '.join(ARCHITECTURES)}) and dataset")
    default_mean, default_std = (known.mean, known.std) if known else data.mean_std(dataset)
    architecture = ARCHITECTURES[arch]
    model = architecture.build(dataset, mean or default_mean, std or default_std, insert)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    translated = translate(state_dict_of(checkpoint), architecture.key_map)
    check(model, translated)
    state = model.state_dict()
    state.update({ours: tensor for ours, (_, tensor) in translated.items()})
    model.load_state_dict(state)
    return model.eval()
