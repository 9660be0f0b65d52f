"""Every method string ``compute_bounds`` accepts (issue 21, fourth case): auto_LiRPA's forward
modes (``forward``, ``forward+backward``, ``forward-optimized``), ``IBP+backward`` and
``CROWN-Optimized`` bound soundly (sampled and PGD points, eps = 0, never NaN) or refuse the
node by name, in eval and training mode."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import assert_bounds_hold
from lirpa_diffai import BoundedModule

pytestmark = pytest.mark.usefixtures("one_thread")

FORWARD = ("forward", "forward+backward")


class Fn(nn.Module):
    def __init__(self, fn, **modules):
        super().__init__()
        self.fn = fn
        for name, module in modules.items():
            setattr(self, name, module)

    def forward(self, x):
        return self.fn(self, x)


@pytest.mark.parametrize("method", FORWARD)
def test_forward_modes_through_a_constant_operand(method):
    """``x - 3``, ``3 - x`` and ``x + c``: auto_LiRPA 0.3's forward mode negated the constant's
    missing coefficients."""
    c = torch.tensor([[0.5, -1.0, 2.0]])
    net = Fn(lambda self, x: torch.cat([self.lin(x) - 3, 3 - self.lin(x), self.lin(x) + c], 1),
             lin=nn.Linear(3, 3))
    x = torch.randn(2, 3)
    assert_bounds_hold(BoundedModule(net, x), net, x, 0.3, method)
