"""The hzono domain as one table: auto_LiRPA Bound class -> hybrid-zonotope transformer.

A transformer is ``fn(ctx, node, *inputs) -> HybridZonotope | Tensor`` where each input is a
:class:`~lirpa_diffai.hybrid_zono.HybridZonotope` (a perturbed value) or the node's concrete
input (a constant: weights, shapes, ...). It is called only when some input is perturbed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

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
