"""The hzono domain as one table: auto_LiRPA Bound class -> hybrid-zonotope transformer.

A transformer is ``fn(ctx, node, *inputs) -> HybridZonotope | Tensor`` where each input is a
:class:`~lirpa_diffai.hybrid_zono.HybridZonotope` (a perturbed value) or the node's concrete
input (a constant: weights, shapes, ...). It is called only when some input is perturbed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Callable

import torch

from .. import hybrid_zono as hz

HZONO_TRANSFORMERS: dict[type, Callable] = {}


def register(*bound_classes: type):
    """Decorator: make ``fn`` the hzono transformer of ``bound_classes`` (exact type match
    first, then the nearest registered base class)."""
    def decorate(fn):
        for cls in bound_classes:
            HZONO_TRANSFORMERS[cls] = fn
        return fn
    return decorate


class UnsupportedOperatorError(NotImplementedError):
    """A graph node whose operator has no hzono transformer."""


def transformer_for(node) -> Callable:
    for cls in type(node).__mro__:
        if cls in HZONO_TRANSFORMERS:
            return HZONO_TRANSFORMERS[cls]
    onnx_op = getattr(node, "op_type", None) or type(node).__name__.removeprefix("Bound")
    raise UnsupportedOperatorError(
        f"hzono has no transformer for graph node '{node.name}' (operator {onnx_op}, "
        f"bound class {type(node).__name__}); supported: "
        + ", ".join(sorted(c.__name__ for c in HZONO_TRANSFORMERS)))


@dataclass
class HzonoContext:
    """What transformers may read or record during one hzono pass."""

    relu: str = "boxy"
    training: bool = False
    aux_losses: list = field(default_factory=list)  # (weight, loss) recorded by DeepLoss
    # id(z) -> (z, axis, parts): the concatenations built in this pass, parts flattened
    concatenations: dict = field(default_factory=dict)
    # (key, id(part)) -> (part, result) of elementwise transformers applied part by part
    part_results: dict = field(default_factory=dict)

    def record_concatenation(self, z: "hz.HybridZonotope", axis: int, parts) -> "hz.HybridZonotope":
        """Remember that ``z`` is ``cat(parts, axis)``; a part that is itself a recorded
        concatenation along ``axis`` contributes its own parts."""
        flat = []
        for part in parts:
            inner = self.concatenations.get(id(part))
            flat.extend(inner[2] if inner is not None and inner[1] == axis else (part,))
        self.concatenations[id(z)] = (z, axis, tuple(flat))
        return z

    def elementwise(self, key, fn: Callable, z: "hz.HybridZonotope") -> "hz.HybridZonotope":
        """``fn(z)`` for an elementwise transformer ``fn`` (``key`` names it and its options).

        An elementwise map commutes with concatenation, ``f(cat(a, b)) = cat(f(a), f(b))``, so on
        a concatenation recorded in this pass ``fn`` runs once per part and its results are
        reused: in a DenseNet block, where each layer's input is the previous input plus a few
        new channels, only the new channels are transformed (and concretized)."""
        entry = self.concatenations.get(id(z))
        if entry is None:
            return fn(z)
        _, axis, parts = entry
        results = [self._part_result(key, fn, part) for part in parts]
        return self.record_concatenation(hz.concat(results, partial(torch.cat, dim=axis)), axis, results)

    def _part_result(self, key, fn, part):
        cached = self.part_results.get((key, id(part)))
        if cached is None:
            cached = self.part_results[(key, id(part))] = (part, fn(part))  # keeps part alive: ids stay unique
        return cached[1]
