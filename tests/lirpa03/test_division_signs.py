"""Division by a perturbed value of either sign (issue 21, first case): auto_LiRPA 0.3 relaxes
``1 / y`` as if ``y > 0``. Each method bounds these graphs soundly (sampled and PGD points,
eps = 0, eval and training mode) or refuses the node by name; CROWN, CROWN-IBP and IBP
bound them."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.support import assert_bounds_hold, bounds_of, Lambda
from lirpa_diffai import BoundedModule


# x in [-0.5, 1.5]: every denominator below lies in [-3.5, -1]
X, EPS = torch.tensor([[0.5]]), 1.0
BOUNDED = ("CROWN", "CROWN-IBP", "IBP")
SOUND_OR_REFUSED = ("alpha-CROWN", "forward", "forward+backward", "IBP+backward", "CROWN-hzono", "hzono")


class Quotient(nn.Module):
    """``a(x) / (clamp(relu(b(x)), max=1) - 2)`` with the weights that gave CROWN an excess of
    0.097 on auto_LiRPA 0.3 (issue 21's third case, re-drawn)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(1, 2), nn.Linear(1, 2)
        with torch.no_grad():
            self.a.weight.copy_(torch.tensor([[0.1193], [0.1182]]))
            self.a.bias.copy_(torch.tensor([-0.8171, -0.5800]))
            self.b.weight.copy_(torch.tensor([[-0.9856], [-0.9221]]))
            self.b.bias.copy_(torch.tensor([0.9858, 0.8262]))

    def forward(self, x):
        return self.a(x) / (torch.clamp(torch.relu(self.b(x)), max=1) - 2)


GRAPHS = {
    "reciprocal": lambda: Lambda(lambda x: 1 / (x - 3)),
    "x_over_negative": lambda: Lambda(lambda x: x / (x - 3)),
    "linear_over_clamp": Quotient,
    "both_signs": lambda: Lambda(lambda x: torch.cat([1 / (x - 3), x / (x + 3), 2 / (3 - x)], 1)),
}


@pytest.mark.parametrize("training", [False, pytest.param(True, marks=pytest.mark.slow)],
                         ids=["eval", "train"])  # training mode: thorough runs only
@pytest.mark.parametrize("graph", sorted(GRAPHS))
def test_reciprocal_of_a_negative_interval_is_bounded_soundly(graph, training):
    net = GRAPHS[graph]().train(training)
    bm = BoundedModule(net, X).train(training)
    for method in BOUNDED:
        assert_bounds_hold(bm, net, X, EPS, method)
    for method in SOUND_OR_REFUSED:
        assert_bounds_hold(bm, net, X, EPS, method, refusal_allowed=True)


@pytest.mark.parametrize("method", ["CROWN", "CROWN-IBP", "alpha-CROWN", "forward"])
def test_division_by_a_perturbed_denominator_is_sound_or_refused(method):
    """A denominator around 0 is refused by its node (auto_LiRPA 0.3 bounded it as if positive);
    a constant over a perturbed value is bounded (it was bounded as ``y / c``), or refused by
    the forward mode."""
    around_zero = Lambda(lambda x: x / (x - 1))
    with pytest.raises(Exception, match=r"node '/\d+' \(operator (Div|Reciprocal)"):
        bounds_of(BoundedModule(around_zero, X), X, EPS, method)
    constant_over = Lambda(lambda x: torch.tensor([[2.0, -1.0]]) / (x + 3))
    x = torch.tensor([[0.5, 0.5]])
    assert_bounds_hold(BoundedModule(constant_over, x), constant_over, x, EPS, method,
                       refusal_allowed=method == "forward")


def test_a_denominator_interval_around_zero_names_its_entries():
    bm = BoundedModule(Lambda(lambda x: 1 / (x - 1)), X)
    with pytest.raises(NotImplementedError, match=r"node '.*' \(operator Reciprocal.*contain 0"):
        bounds_of(bm, X, EPS, "CROWN")
