"""The exceptions of the public API."""
from __future__ import annotations


class UnsupportedOperatorError(NotImplementedError):
    """A graph node that a bound method cannot bound soundly: the message names the node, its
    operator and why."""


def operator_name(node) -> str:
    """The operator of an auto_LiRPA graph node as refusals name it: its ONNX ``op_type`` where
    auto_LiRPA kept one, else its Bound class's name without ``Bound``."""
    return getattr(node, "op_type", None) or type(node).__name__.removeprefix("Bound")


class BoundMemoryError(MemoryError):
    """A bound method refused before it starts: its memory estimate
    (``lirpa_diffai.memory.estimate_bound_memory``) exceeds the memory available."""
