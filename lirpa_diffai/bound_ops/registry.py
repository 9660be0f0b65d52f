"""The hzono domain as one table: auto_LiRPA Bound class -> hybrid-zonotope transformer.

A transformer is ``fn(ctx, node, *inputs) -> HybridZonotope | Tensor`` where each input is a
:class:`~lirpa_diffai.hybrid_zono.HybridZonotope` (a perturbed value) or the node's concrete
input (a constant: weights, shapes, ...). It is called only when some input is perturbed.
"""
from __future__ import annotations

import weakref
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


class IdentityMemo:
    """A mapping keyed by object identity that holds no reference to its keys: an entry goes
    when its key object is garbage collected (so a recycled ``id`` never finds a stale entry)."""

    def __init__(self):
        self._entries: dict = {}  # id(key) -> (weakref to key, value)

    def get(self, key, default=None):
        entry = self._entries.get(id(key))
        return entry[1] if entry is not None and entry[0]() is key else default

    def __setitem__(self, key, value) -> None:
        def forget(ref, ident=id(key), entries=self._entries):
            if entries.get(ident, (None,))[0] is ref:
                del entries[ident]
        self._entries[id(key)] = (weakref.ref(key, forget), value)

    def __len__(self) -> int:
        return len(self._entries)


@dataclass
class HzonoContext:
    """What transformers may read or record during one hzono pass."""

    relu: str = "boxy"
    training: bool = False
    aux_losses: list = field(default_factory=list)  # (weight, loss) recorded by DeepLoss
    # concatenation -> (axis, its parts, flattened), while the concatenation lives
    concatenations: IdentityMemo = field(default_factory=IdentityMemo)
    # elementwise transformer key -> (part -> result), while the part lives
    part_results: dict = field(default_factory=dict)

    def record_concatenation(self, z: "hz.HybridZonotope", axis: int, parts) -> "hz.HybridZonotope":
        """Remember that ``z`` is ``cat(parts, axis)``; a part that is itself a recorded
        concatenation along ``axis`` contributes its own parts."""
        flat = []
        for part in parts:
            inner = self.concatenations.get(part)
            flat.extend(inner[1] if inner is not None and inner[0] == axis else (part,))
        self.concatenations[z] = (axis, tuple(flat))
        return z

    def elementwise(self, key, fn: Callable, z: "hz.HybridZonotope") -> "hz.HybridZonotope":
        """``fn(z)`` for an elementwise transformer ``fn`` (``key`` names it and its options).

        An elementwise map commutes with concatenation, ``f(cat(a, b)) = cat(f(a), f(b))``, so on
        a concatenation recorded in this pass ``fn`` runs once per part and its results are
        reused: in a DenseNet block, where each layer's input is the previous input plus a few
        new channels, only the new channels are transformed (and concretized)."""
        entry = self.concatenations.get(z)
        if entry is None:
            return fn(z)
        axis, parts = entry
        memo = self.part_results.setdefault(key, IdentityMemo())
        results = []
        for part in parts:
            result = memo.get(part)
            if result is None:
                result = memo[part] = fn(part)
            results.append(result)
        return self.record_concatenation(hz.concat(results, partial(torch.cat, dim=axis)), axis, results)
