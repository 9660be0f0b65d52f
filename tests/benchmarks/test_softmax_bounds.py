"""benchmarks/softmax_bounds.py: the two softmax bounds of hzono on a ViT."""
from __future__ import annotations

import torch

from benchmarks.softmax_bounds import widths_and_seconds
from lirpa_diffai.models.modern import vit_tiny_centred


def test_pairwise_is_at_most_as_wide_as_shifted_and_both_reach_the_point_at_eps_0():
    torch.manual_seed(0)
    model, x = vit_tiny_centred("mnist").eval(), torch.rand(2, 1, 28, 28)
    shifted, _ = widths_and_seconds(model, x, 1e-4, (0.0, 1.0), 4, "shifted")
    pairwise, _ = widths_and_seconds(model, x, 1e-4, (0.0, 1.0), 4, "pairwise")
    assert 0 < pairwise <= shifted * (1 + 1e-5)
    assert widths_and_seconds(model, x, 0.0, (0.0, 1.0), 4, "shifted")[0] < 1e-4
