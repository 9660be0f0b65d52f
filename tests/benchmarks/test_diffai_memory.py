"""benchmarks/diffai_memory.py: our weights into DiffAI's layout, and (with a DiffAI checkout
named by $DIFFAI_CHECKOUT) one fresh-process probe of each side."""
import os

import pytest
import torch
from torch import nn

from benchmarks import diffai_memory


class DiffAILinear(nn.Module):
    """A Linear as DiffAI keeps it: ``x @ weight + bias`` with weight ``in x out``."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.weight, self.bias = nn.Parameter(torch.zeros(n_in, n_out)), nn.Parameter(torch.zeros(n_out))

    def forward(self, x):
        return x @ self.weight + self.bias


def test_weights_are_copied_in_order_with_linear_weights_transposed():
    torch.manual_seed(0)
    ours = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 3))
    theirs = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), DiffAILinear(8, 3))
    diffai_memory.copy_weights(ours, theirs)
    x = torch.randn(4, 1, 4, 4)
    assert torch.allclose(ours(x), theirs(x))
    with pytest.raises(ValueError, match=r"shape \(8, 3\) here, \(8, 4\) in DiffAI's"):
        diffai_memory.copy_weights(ours, nn.Sequential(nn.Conv2d(1, 2, 3), DiffAILinear(8, 4)))
    with pytest.raises(ValueError, match="4 parameters here, 2 in DiffAI's"):
        diffai_memory.copy_weights(ours, nn.Sequential(nn.Conv2d(1, 2, 3)))


def test_a_path_without_diffai_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a checkout of eth-sri/diffai"):
        diffai_memory.load_diffai(tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("DIFFAI_CHECKOUT"), reason="set DIFFAI_CHECKOUT to a checkout of eth-sri/diffai")
@pytest.mark.parametrize("side", ["ours", "diffai"])
def test_each_side_is_measured_in_a_fresh_process(side):
    mib, seconds = diffai_memory.fresh(os.environ["DIFFAI_CHECKOUT"], f"{side}:conv_big", 2, 2 / 255, 1)
    assert mib > 0 and seconds > 0
