"""The exceptions of the public API."""
from __future__ import annotations


class UnsupportedOperatorError(NotImplementedError):
    """A graph node that a bound method cannot bound soundly: the message names the node, its
    operator and why."""
