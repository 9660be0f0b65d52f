"""The pure zonotope domain: DiffAI's ``Zonotope`` (``ZBox``, ``ZSwitch``, ``ZSmooth``, ``ZNIPS``),
which is DeepZ (Singh et al. 2018) as ERAN has it when the ReLU is DeepZ's.

A pure zonotope is a :class:`~lirpa_diffai.hybrid_zono.HybridZonotope` whose box part is turned
into correlated rows after every non-linear transformer (DiffAI's ``Zonotope.applySuper``)::

    h = (c, beta, E)   ->   (c, 0, [E; diag(beta)])

Both describe the same set (``beta_i b_i`` with ``b_i`` in [-1, 1] is the row
``beta_i e_i`` of a fresh symbol ``e_i``), so the conversion is exact; what changes is what
later layers can do: an affine map keeps the fresh rows correlated across its outputs, where
it pushes a box part through ``|W|``, so the next layers' images of that error can cancel.

Noise symbols: each new row gets a fresh id, so branches that meet again (a residual add, a
concatenation) share exactly the rows of their common ancestors. Row t of sample b stands for
the t-th element of sample b whose box part is non-zero (samples are perturbed independently,
see ``HybridZonotope.map_batched``), so a layer adds ``max_b |{i : beta_{b,i} > 0}|`` rows: the
unstable neurons of the worst sample for the DeepZ / switch / smooth ReLUs, none for a stable
layer. DiffAI adds one row per element, zeros included; the bounds are the same.

Cost: the rows grow with depth, by the unstable neurons of every non-linear layer, and every
affine layer maps all of them, so a pass costs about ``(m_in + sum of unstable counts) / m_in``
times a hybrid-zonotope pass that starts with the same ``m_in`` input rows (measured in
``benchmarks/bench_hzono.py``). ``DecorrelateMin k`` inside the network caps the rows at k.
"""
from __future__ import annotations

from ..hybrid_zono import HybridZonotope, correlate_where


def box_to_rows(z: HybridZonotope) -> HybridZonotope:
    """DiffAI's ``Zonotope.applySuper`` / ``hybrid_to_zono``: ``(c, beta, E) -> (c, 0,
    [E; diag(beta)])``, one fresh row per element with a non-zero box part (per sample)."""
    return correlate_where(z, z.beta > 0)
