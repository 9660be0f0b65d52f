"""The zoo of the paper's networks by name: ``get(name, dataset)`` and ``names()``."""
from __future__ import annotations

import difflib
import re
from typing import Callable, NamedTuple

from torch import nn

from .. import data
from . import abstract_variants, custom, densenet, feedforward, modern, resnet

BOTH = ("mnist", "cifar10")
CIFAR = ("cifar10",)


class Entry(NamedTuple):
    """A zoo network: its builder ``(dataset, insert=None) -> nn.Sequential``, the datasets
    the paper defines it for, and its name in the paper."""

    build: Callable[..., nn.Sequential]
    datasets: tuple[str, ...]
    paper_name: str


ZOO: dict[str, Entry] = {
    "ffnn": Entry(feedforward.ffnn, BOTH, "FFNN"),
    "conv_small": Entry(feedforward.conv_small, BOTH, "ConvSmall"),
    "conv_med": Entry(feedforward.conv_med, BOTH, "ConvMed"),
    "conv_big": Entry(feedforward.conv_big, BOTH, "ConvBig"),
    "conv_large_ibp": Entry(feedforward.conv_large_ibp, BOTH, "ConvLargeIBP"),
    "truncated_vgg": Entry(feedforward.truncated_vgg, BOTH, "TruncatedVGG"),
    "resnet_tiny": Entry(resnet.resnet_tiny, CIFAR, "ResNet-Tiny"),
    "skipnet18": Entry(resnet.skipnet18, CIFAR, "SkipNet-18"),
    "resnet18": Entry(resnet.resnet18, CIFAR, "ResNet-18"),
    "resnet34": Entry(resnet.resnet34, CIFAR, "ResNet-34"),
    "resnet_large": Entry(resnet.resnet_large, CIFAR, "ResNet-Large"),
    "densenet100": Entry(densenet.densenet100, CIFAR, "DenseNet-100"),
    "resnet_tiny_fewcombo": Entry(abstract_variants.resnet_tiny_fewcombo, CIFAR, "ResNet-Tiny FewCombo"),
    "resnet_tiny_manyfixed": Entry(abstract_variants.resnet_tiny_manyfixed, CIFAR, "ResNet-Tiny ManyFixed"),
    "skipnet18_combo": Entry(abstract_variants.skipnet18_combo, CIFAR, "SkipNet-18 Combo"),
    "resnet_large_largecombo": Entry(abstract_variants.resnet_large_largecombo, CIFAR, "ResNet-Large LargeCombo"),
    # not the paper's: today's architecture families (issue 20), for DiffAI training on them
    "mobilenet_tiny": Entry(modern.mobilenet_tiny, BOTH, "MobileNet-Tiny"),
    "vit_tiny": Entry(modern.vit_tiny, BOTH, "ViT-Tiny"),
    "vit_tiny_centred": Entry(modern.vit_tiny_centred, BOTH, "ViT-Tiny Centred"),
}


def names() -> list[str]:
    """Names accepted by ``get``, in the order of the paper's tables."""
    return list(ZOO)


def _key(name: str) -> str:
    return re.sub(r"[-_ ]", "", name.lower())


def canonical_name(name: str) -> str:
    """The zoo name for ``name``, also accepting the paper's spelling ("ResNet-Tiny").
    Raises ValueError naming the choices and the nearest match."""
    by_key = {_key(n): n for n in ZOO}
    by_key.update({_key(e.paper_name): n for n, e in ZOO.items()})
    if _key(name) in by_key:
        return by_key[_key(name)]
    near = by_key[difflib.get_close_matches(_key(name), list(by_key), n=1, cutoff=0.0)[0]]
    raise ValueError(f"unknown network {name!r}; did you mean {near!r}? "
                     f"Choices: {', '.join(ZOO)}")


def check_dataset(name: str, dataset: str) -> str:
    """The zoo name of ``name`` if the paper defines it for ``dataset``, else ValueError."""
    name = canonical_name(name)
    data.check_name(dataset)
    entry = ZOO[name]
    if dataset not in entry.datasets:
        raise ValueError(f"{name} is defined for {', '.join(entry.datasets)} only, "
                         f"not {dataset!r}")
    return name


def get(name: str, dataset: str = "cifar10", **kwargs) -> nn.Sequential:
    """A freshly initialised zoo network ``name`` for ``dataset`` ("mnist" | "cifar10").
    ``kwargs`` go to the builder; ``insert={"after:<stage>": module, ...}`` places extra
    modules at stage boundaries (see ``lirpa_diffai.models.common.stack``)."""
    return ZOO[check_dataset(name, dataset)].build(dataset, **kwargs)


def build(name: str, dataset: str, network_args: dict | None = None) -> nn.Module:
    """The network of a training configuration: ``package.module:Name(**network_args)``
    for an import path (see :mod:`.custom`), else the zoo network ``name`` for
    ``dataset``."""
    if custom.is_import_path(name):
        return custom.build(name, network_args)
    return get(name, dataset)
