"""Which bound methods a network and a batch can afford: a size limit per method, shared by the
example (``examples/compare_bounds.py``) and the benchmark (``benchmarks/bounds.py``).

CROWN bounds every pre-activation layer (the input of every activation node) by a backward
pass with one specification row per neuron of that layer, per image; alpha-CROWN repeats such
passes for each of its optimization steps. Their cost therefore grows with the *size*
``pre-activation neurons per image x images``, while IBP, hzono, CROWN-IBP and CROWN-hzono
take one forward pass (hzono: rows + 1) plus at most one backward pass from the output.
The measurements behind the limits: docs/speed.md, "The bound methods side by side".
"""
from __future__ import annotations

import math

from .layer_widths import layer_nodes

# method (lower case, as compute_bounds spells it) -> largest size it is run at
SIZE_LIMITS = {"crown": 200_000, "backward": 200_000,
               "alpha-crown": 50_000, "crown-optimized": 50_000}


def pre_activation_neurons(bm) -> int:
    """Neurons per image of the nodes CROWN bounds before the output: the inputs of the
    activation nodes (``layer_widths.layer_nodes`` without the output node)."""
    final = bm.final_node()
    return sum(math.prod(node.output_shape[1:]) for node in layer_nodes(bm) if node is not final)


def size_limit_reason(method: str, neurons: int, images: int,
                      limits: dict | None = SIZE_LIMITS) -> str | None:
    """Why ``method`` is not run on ``images`` images of a network with ``neurons``
    pre-activation neurons per image, or None when it fits (or ``limits`` is None)."""
    limit = (limits or {}).get(method.lower().replace("_", "-"))
    size = neurons * images
    if limit is None or size <= limit:
        return None
    return (f"skipped: over the size limit ({neurons:,} pre-activation neurons x {images} "
            f"images = {size:,} > {limit:,} for {method})")
