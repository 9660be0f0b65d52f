"""Initialisations for certified training (the configuration's ``init`` key)."""
from __future__ import annotations

import math

import torch
from torch import nn

INITS = ("default", "ibp")


def ibp_init(model: nn.Module) -> nn.Module:
    """Shi et al. 2021 ("Fast Certified Robust Training with Short Warmup", section 3.2): every
    ``Linear`` and ``Conv`` weight ~ N(0, sigma^2) with ``sigma = sqrt(2 pi) / fan_in`` and
    biases 0. With it, E|w| = sigma sqrt(2 / pi) = 2 / fan_in, so an interval of width w at a
    layer's input gives width about 2 w before the ReLU and w after it (half the units
    active): IBP's bound widths keep their size from layer to layer instead of growing
    exponentially with depth. Draws from torch's global RNG; returns ``model``."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            fan_in = module.weight[0].numel()
            with torch.no_grad():
                module.weight.normal_(0.0, math.sqrt(2 * math.pi) / fan_in)
                if module.bias is not None:
                    module.bias.zero_()
    return model


def initialise(model: nn.Module, init: str) -> nn.Module:
    """``model`` with the initialisation ``init`` applied (``default``: left as built)."""
    if init == "ibp":
        return ibp_init(model)
    if init != "default":
        raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
    return model
