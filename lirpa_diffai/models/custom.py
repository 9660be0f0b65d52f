"""Networks named by import path: ``network: package.module:Name`` in a training configuration,
with ``network_args`` as keyword arguments. ``Name`` is an ``nn.Module`` class or a function
returning a module; it is imported with :mod:`importlib` and looked up with ``getattr`` only
(the text is never evaluated)."""
from __future__ import annotations

import importlib
import inspect
import re
from typing import Callable

import torch
from torch import nn

IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


class ArgumentsError(ValueError):
    """``network_args`` that the network's signature does not accept."""


def is_import_path(name: str) -> bool:
    """Whether ``name`` is meant as ``package.module:Name`` (it holds a colon)."""
    return ":" in name


def import_network(path: str) -> Callable[..., nn.Module]:
    """The callable that ``package.module:Name`` names; ValueError saying what did not
    import or what is missing."""
    if not IMPORT_PATH.match(path):
        raise ValueError(f"network {path!r} is not an import path package.module:Name")
    module_name, attribute = path.split(":")
    try:
        target = importlib.import_module(module_name)
    except Exception as err:  # a user's module can fail at import with any error
        raise ValueError(f"network {path!r}: module {module_name!r} does not import "
                         f"({type(err).__name__}: {err})") from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ValueError(f"network {path!r}: {module_name!r} has no attribute "
                             f"{attribute!r}")
        target = getattr(target, part)
    if not callable(target) or (inspect.isclass(target) and not issubclass(target, nn.Module)):
        raise ValueError(f"network {path!r} is a {type(target).__name__}, not an nn.Module "
                         "class or a function returning one")
    return target


def build(path: str, network_args: dict | None = None) -> nn.Module:
    """A fresh module from ``package.module:Name(**network_args)``; ValueError if the call
    does not return an ``nn.Module``."""
    factory = import_network(path)
    args = dict(network_args or {})
    try:
        inspect.signature(factory).bind(**args)
    except TypeError as err:
        raise ArgumentsError(f"network {path!r} does not take network_args "
                             f"{sorted(args)}: {err}") from None
    except ValueError:  # no signature (a builtin): let the call decide
        pass
    try:
        module = factory(**args)
    except Exception as err:  # the user's constructor can fail with any error
        raise ValueError(f"network {path!r} failed to build: {type(err).__name__}: "
                         f"{err}") from None
    if not isinstance(module, nn.Module):
        raise ValueError(f"network {path!r} returned a {type(module).__name__}, not an "
                         "nn.Module")
    return module


def check_builds_module(path: str, network_args: dict) -> None:
    """:func:`build` once, leaving torch's RNG as it was (a configuration is checked before
    the run seeds its initial weights)."""
    with torch.random.fork_rng(devices=[]):
        build(path, network_args)
