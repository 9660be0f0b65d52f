"""Every method string ``compute_bounds`` accepts (issue 21, fourth case): auto_LiRPA's forward
modes (``forward``, ``forward+backward``, ``forward-optimized``), ``IBP+backward`` and
``CROWN-Optimized`` bound soundly (sampled and PGD points, eps = 0, never NaN) or refuse the
node by name, in eval and training mode."""
from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.support import assert_bounds_hold, bounds_of
from lirpa_diffai import BoundedModule


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
    """``x - 3``, ``3 - x``, ``x + c`` and ``c * x``: auto_LiRPA 0.3's forward mode negated the
    constant's missing coefficients, and had no bounds of a product with a constant."""
    c = torch.tensor([[0.5, -1.0, 2.0]])
    net = Fn(lambda self, x: torch.cat([self.lin(x) - 3, 3 - self.lin(x), self.lin(x) + c,
                                        c * self.lin(x), self.lin(x) * 0.5], 1),
             lin=nn.Linear(3, 3))
    x = torch.randn(2, 3)
    assert_bounds_hold(BoundedModule(net, x), net, x, 0.3, method)


FORWARD_FINDINGS = {  # issue 21: lb > ub, NaN at eps = 0, crashes that named no node
    "max_pool": (lambda: Fn(lambda self, x: F.max_pool2d(x, 3, 2, 1).flatten(1)),
                 (1, 2, 5, 5), "MaxPool"),
    "sin_sin": (lambda: Fn(lambda self, x: torch.sin(torch.sin(self.lin(x))), lin=nn.Linear(3, 3)),
                (2, 3), "Sin"),
    "clamp": (lambda: Fn(lambda self, x: torch.clamp(self.lin(x), min=-0.3), lin=nn.Linear(3, 3)),
              (2, 3), "Clip"),
    # found by the extended fuzzer: F.pad's omitted value input crashed the forward pass
    "pad": (lambda: Fn(lambda self, x: F.pad(F.pad(x, (0, 1, 1, 0)), (1, 1, 0, 0), value=0.0).flatten(1)),
            (2, 1, 3, 3), "Pad"),
}


@pytest.mark.parametrize("method", ["forward", "forward+backward", "forward-optimized"])
@pytest.mark.parametrize("finding", sorted(FORWARD_FINDINGS))
def test_forward_modes_refuse_what_they_bound_wrongly(finding, method):
    """Sound bounds or a refusal naming the node; ``forward`` itself refuses these operators."""
    make, shape, operator = FORWARD_FINDINGS[finding]
    net, x = make(), torch.randn(*shape)
    bm = BoundedModule(net, x)
    assert_bounds_hold(bm, net, x, 0.3, method, refusal_allowed=True)
    if method == "forward":
        with pytest.raises(NotImplementedError, match=rf"graph node '/\d+' \(operator {operator}\b"):
            bounds_of(bm, x, 0.0, method)


@pytest.mark.parametrize("method", ["CROWN", "forward", "alpha-CROWN"])
def test_overflowing_bounds_are_infinite_or_refused_never_nan(method):
    """``exp(exp(x))`` on x near 60 overflows float32: the bounds were NaN; now they are the
    infinite bounds (CROWN's widening) or a refusal naming the node whose bounds overflow
    (found by the fuzzer's huge value range)."""
    net = Fn(lambda self, x: torch.exp(torch.exp(x)))
    x = torch.full((1, 2), 60.0)
    bm = BoundedModule(net, x)
    try:
        lb, ub = bounds_of(bm, x, 3.0, method)
    except NotImplementedError as refusal:
        assert re.search(r"graph node '/\d+' \(operator Exp\b.*NaN or overflow", str(refusal)), refusal
        return
    assert not (lb.isnan().any() or ub.isnan().any())
    y = net(x + (torch.rand(64, 2) * 2 - 1) * 3.0)
    assert (lb <= y).all() and (y <= ub).all()
