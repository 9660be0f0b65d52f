"""Process-wide settings that make bound computations on the CPU faster.

hzono with correlated rows makes tensors ``m + 1`` times the size of the activations at every
layer. glibc's ``malloc`` serves blocks above its mmap threshold (at most 32 MiB) with a fresh
``mmap`` and returns them to the kernel on ``free``, so each such tensor is page-faulted in and
zeroed by the kernel again at every layer. The measured cost: docs/speed.md, "glibc and large
tensors".
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_TRIM_THRESHOLD = -1   # mallopt parameters, from glibc's <malloc.h>
M_MMAP_MAX = -4


@functools.cache
def keep_freed_memory() -> bool:
    """Make glibc serve every block from its heap and keep freed memory for reuse:
    ``mallopt(M_MMAP_MAX, 0)`` and ``mallopt(M_TRIM_THRESHOLD, 2**31 - 1)``.

    The process's resident memory then stays at its peak instead of shrinking after each large
    tensor is freed, and the heap fragments. Our command-line tools and benchmarks call this at
    start (the benchmark for every method it times alike); call it in your own scripts for the
    same effect, or set
    ``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647`` before
    Python starts. Returns whether the settings took effect (False off glibc)."""
    path = ctypes.util.find_library("c")
    if path is None:
        return False
    try:
        mallopt = ctypes.CDLL(path).mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows)
        return False
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
