"""Layer options and model shapes outside auto_LiRPA 0.3's defaults (issue 21, fifth case):
each is bounded soundly or refused naming its graph node, its operator and the setting, never
a bare IndexError / AssertionError or an error that blames the next layer."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.support import assert_bounds_hold
from lirpa_diffai import BoundedModule


def lazily(*layers, shape):
    """``layers`` then a linear head, sized on an input of ``shape``."""
    net = nn.Sequential(*layers, nn.Flatten(), nn.LazyLinear(2))
    net(torch.zeros(shape))
    return net.eval()


REFUSED = {
    "Conv3d": (lambda: lazily(nn.Conv3d(1, 2, 2), shape=(1, 1, 3, 3, 3)), (1, 1, 3, 3, 3), "Conv",
               "3-D convolution"),
    "ConvTranspose1d": (lambda: lazily(nn.ConvTranspose1d(2, 2, 3), shape=(2, 2, 4)), (2, 2, 4), "ConvTranspose",
                        "1-D transposed convolution"),
}


@pytest.mark.parametrize("layer", sorted(REFUSED))
def test_layer_options_auto_lirpa_cannot_bound_are_refused_by_node(layer):
    make, shape, operator, setting = REFUSED[layer]
    with pytest.raises(NotImplementedError,
                       match=rf"graph node '[^']+' \(operator {operator}, Bound{operator}\): .*{setting}"):
        BoundedModule(make(), torch.randn(*shape))


class TwoInputs(nn.Module):
    """No parameters, two inputs: auto_LiRPA 0.3 took the device of the input tuple."""

    def forward(self, x, y):
        return torch.relu(x - y) + 0.5 * x


@pytest.mark.parametrize("method", ["IBP", "CROWN", "CROWN-IBP", "forward"])
def test_a_model_without_parameters_and_two_inputs_is_bounded(method):
    from auto_LiRPA import BoundedTensor, PerturbationLpNorm
    import numpy as np
    x, y = torch.randn(2, 3), torch.randn(2, 3)
    bm = BoundedModule(TwoInputs(), (x, y))
    lb, ub = bm.compute_bounds(x=(BoundedTensor(x, PerturbationLpNorm(norm=np.inf, eps=0.2)), y),
                               method=method)
    inside = x + 0.4 * (torch.rand(64, 2, 3) - 0.5)
    with torch.no_grad():
        outputs = torch.stack([TwoInputs()(p, y) for p in inside])
    assert (outputs >= lb - 1e-5).all() and (outputs <= ub + 1e-5).all()


@pytest.mark.parametrize("layer", [
    nn.Conv2d(2, 2, (3, 1), stride=(2, 1), padding=(1, 0), dilation=(1, 2)),
    nn.Conv2d(2, 4, 3, groups=2, padding=1),
    nn.ConvTranspose2d(2, 2, 2, stride=2),
    nn.ConvTranspose2d(2, 2, 3, stride=2, padding=1),
    nn.ConvTranspose2d(2, 2, 2, stride=(1, 2)),
    nn.ConvTranspose2d(2, 4, 3, stride=2, output_padding=1, dilation=2, groups=2),
    nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
], ids=["rectangular-dilated", "groups", "convtranspose-default", "convtranspose-padding",
        "convtranspose-stride-1-2", "convtranspose-output-padding-dilation-groups", "avgpool-ceil"])
def test_supported_layer_options_are_bounded_soundly(layer):
    net = lazily(layer, nn.ReLU(), shape=(2, 2, 6, 6))
    x = torch.randn(2, 2, 6, 6)
    bm = BoundedModule(net, x)
    for method in ("IBP", "CROWN", "CROWN-IBP"):
        assert_bounds_hold(bm, net, x, 0.1, method, samples=32)
