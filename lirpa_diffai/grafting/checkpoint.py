"""Grafted checkpoints: what ``python -m lirpa_diffai graft`` writes and ``train`` (config key
``graft``) and ``certify`` read.

A grafted checkpoint is a dict of tensors and plain values (loadable with
``torch.load(..., weights_only=True)``)::

    format      GRAFTED_FORMAT
    base        how to build the network before grafting: {"kind": "pretrained", "name": ...}
                (lirpa_diffai.models.PRETRAINED) or {"kind": "zoo", "network": ..., "dataset": ...}
    network     the base network's name; dataset: its dataset
    masks       {site: 0/1 tensor}, the grafted neurons of every ReLU site named
    state_dict  the grafted network's weights (its slopes, intercepts and masks included)
    eps         the radius the neurons were selected at; selection: the statistics (JSON-able)

The network is rebuilt as ``graft(base network, masks)`` and its weights loaded, key by key.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from .. import data, models
from .rewrite import GraftingError, graft, masks_of

GRAFTED_FORMAT = "lirpa-diffai-grafted/1"
GRAFTED_FILE = "grafted.pt"


def base_network(base: Mapping) -> tuple[nn.Module, str, str]:
    """``(network, name, dataset)`` for a checkpoint's ``base`` entry (weights not loaded)."""
    from ..models.pretrained import ARCHITECTURES, PRETRAINED
    kind = base.get("kind")
    if kind == "pretrained" and base.get("name") in PRETRAINED:
        known = PRETRAINED[base["name"]]
        return ARCHITECTURES[known.arch].build(known.dataset, known.mean, known.std), \
            base["name"], known.dataset
    if kind == "zoo":
        return models.get(base["network"], base["dataset"]), base["network"], base["dataset"]
    raise GraftingError(f"a grafted checkpoint's base network {dict(base)!r} is neither a "
                        f"pretrained network ({', '.join(PRETRAINED)}) nor a zoo network")


def grafted_checkpoint(model: nn.Module, base: Mapping, eps: float, selection: Mapping) -> dict:
    """The checkpoint dict of the grafted network ``model`` built from ``base``."""
    _, name, dataset = base_network(base)
    return {"format": GRAFTED_FORMAT, "base": dict(base), "network": name, "dataset": dataset,
            "masks": masks_of(model), "state_dict": model.state_dict(), "eps": float(eps),
            "selection": dict(selection)}


def is_grafted_checkpoint(obj) -> bool:
    """Whether ``obj`` (a loaded checkpoint) is a grafted checkpoint."""
    return isinstance(obj, dict) and obj.get("format") == GRAFTED_FORMAT


def read_grafted(path) -> dict:
    """The dict in a grafted checkpoint file (``weights_only=True``); GraftingError if the file
    is missing, unreadable or not a grafted checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise GraftingError(f"grafted checkpoint {path} not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors have many types
        raise GraftingError(f"{path} is not a readable checkpoint: {str(err).splitlines()[0]}") from None
    if not is_grafted_checkpoint(ckpt):
        raise GraftingError(f"{path} is not a grafted checkpoint (written by "
                            "`python -m lirpa_diffai graft`)")
    return ckpt


def network_from(ckpt: Mapping, source: str = "the grafted checkpoint") -> nn.Module:
    """The grafted network of a checkpoint dict, weights loaded, in eval mode."""
    base, name, dataset = base_network(ckpt["base"])
    example = torch.zeros(1, *data.input_shape(dataset))
    model = graft(base, ckpt["masks"], example)
    own, theirs = model.state_dict(), ckpt["state_dict"]
    problems = sorted(set(own) ^ set(theirs)) + \
        [k for k in own if k in theirs and own[k].shape != theirs[k].shape]
    if problems:
        raise GraftingError(f"the weights in {source} do not fit grafted {name}: "
                            + ", ".join(problems[:8]) + (" ..." if len(problems) > 8 else ""))
    model.load_state_dict(theirs)
    return model.eval()


def load_grafted(path) -> tuple[nn.Module, dict]:
    """``(grafted network in eval mode, checkpoint dict)`` from a grafted checkpoint file."""
    ckpt = read_grafted(path)
    return network_from(ckpt, str(path)), ckpt
