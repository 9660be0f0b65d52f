"""Where a check fails, in words: how many entries, and the first one (for error messages)."""
from __future__ import annotations


def entries_where(mask, lower=None, upper=None) -> str:
    """``"at N entries (first at index I)"`` for the ``N`` true entries of ``mask``, with the first
    one's interval ``: [l, u]`` inside the parentheses when ``lower`` and ``upper`` are given."""
    first = tuple(int(i) for i in mask.nonzero()[0])
    interval = "" if lower is None else f": [{lower[first].item():.4g}, {upper[first].item():.4g}]"
    return f"at {int(mask.sum())} entries (first at index {first}{interval})"
