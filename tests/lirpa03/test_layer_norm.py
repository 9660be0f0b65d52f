"""Layer norm as torch traces it (``mean, sub, pow 2, mean, add eps, sqrt, div``), over the last
axis of tokens and over channels last in a convolutional network (ConvNeXt): every method
bounds it soundly (fixes ``layer_norm_division_as_traced``, ``pow_exponent_of_a_constant`` and
the channels-last start of ``start_coefficients_without_patches``)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import lirpa_diffai
from tests.soundness.check import Case, run_case
from tests.soundness.methods import METHODS
from tests.support import bounds_of


LABELS = ["IBP", "hzono[boxy,rows=0]", "HBox", "ZBox", "CROWN-IBP", "CROWN", "alpha-CROWN", "CROWN-hzono"]


class Tokens(nn.Module):
    """(B, 3, 4) tokens through LayerNorm, Linear, GELU, LayerNorm, Linear."""

    def __init__(self):
        super().__init__()
        self.norm1, self.lin1, self.norm2 = nn.LayerNorm(4), nn.Linear(4, 4), nn.LayerNorm(4)
        self.out = nn.Linear(12, 2)
        with torch.no_grad():
            self.norm1.weight.uniform_(0.5, 1.5)
            self.norm1.bias.normal_(0, 0.3)

    def forward(self, x):
        return self.out(self.norm2(nn.functional.gelu(self.lin1(self.norm1(x)))).flatten(1))


class ChannelsLast(nn.Module):
    """A convolution, LayerNorm over channels last (``permute``), back, another convolution."""

    def __init__(self):
        super().__init__()
        self.conv1, self.norm, self.conv2 = nn.Conv2d(2, 4, 3, padding=1), nn.LayerNorm(4), nn.Conv2d(4, 2, 3)

    def forward(self, x):
        y = self.norm(self.conv1(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.conv2(torch.relu(y)).flatten(1)


NETWORKS = {"tokens": (Tokens, (2, 3, 4)), "channels-last": (ChannelsLast, (2, 2, 4, 4))}


GRID = [pytest.param(network, label, marks=(pytest.mark.slow,) if (network, label) == ("channels-last", "alpha-CROWN")
                     else (), id=f"{network}-{label}") for network in sorted(NETWORKS) for label in LABELS]


@pytest.mark.parametrize("network, label", GRID)
def test_layer_norm_is_bounded_as_traced_by_every_method(network, label):
    """Sound against sampled points, corners and PGD aimed at each bound; exact at eps = 0."""
    build, shape = NETWORKS[network]
    torch.manual_seed(0)
    case = Case(build().eval(), torch.randn(shape), eps=0.02, seed=0)
    outcome = run_case(case, METHODS[label], False, samples=150, pgd_steps=12, pgd_targets=8)
    assert outcome.kind == "sound", (network, label, outcome)


def test_the_traced_division_computes_the_networks_function():
    """auto_LiRPA 0.3's ``BoundDiv`` computed another function where the denominator is a
    ``Sqrt``: its forward pass now equals the network's, eps included."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4, eps=0.5)).eval()
    x = torch.randn(2, 4) * 0.01   # a variance far below eps: eps decides the value
    torch.testing.assert_close(lirpa_diffai.BoundedModule(net, x)(x), net(x))


@pytest.mark.parametrize("method", ["IBP", "CROWN", "hzono", "HBox"])
def test_layer_norm_at_a_large_eps_is_sound_never_nan(method):
    torch.manual_seed(0)
    net = Tokens().eval()
    x = torch.randn(2, 3, 4)
    lb, ub = bounds_of(lirpa_diffai.BoundedModule(net, x), x, 3.0, method)
    assert not lb.isnan().any() and not ub.isnan().any()
    assert (lb <= net(x) + 1e-5).all() and (net(x) <= ub + 1e-5).all()


def test_crown_refuses_a_power_other_than_two_by_node():
    class Cube(nn.Module):
        def forward(self, x):
            return x ** 3
    x = torch.randn(2, 3)
    with pytest.raises(NotImplementedError, match=r"graph node '[^']+' \(operator Pow.*only the exponent 2"):
        bounds_of(lirpa_diffai.BoundedModule(Cube(), x), x, 0.1, "CROWN")
