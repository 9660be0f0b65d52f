"""Neuron selection: the instability counts, both significance scores and the rank-normalised
combination equal independent computations on small networks."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from auto_LiRPA import BoundedModule as LirpaModule
from auto_LiRPA import BoundedTensor, PerturbationLpNorm
from auto_LiRPA.operators import BoundRelu
from torch import nn

from lirpa_diffai.grafting import (choose_masks, graft, gradient_significance, normalized_rank,
                                   select, unstable_counts, weight_significance)
from lirpa_diffai.grafting.rewrite import GraftingError


def mlp():
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3)).eval()


def ibp_unstable_by_hand(net, x, eps):
    """Per image, the unstable neurons of both ReLUs under interval arithmetic (B, 8), (B, 6)."""
    lin1, lin2 = net[0], net[2]
    lo, hi = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    out = []
    for lin in (lin1, lin2):
        c, r = (hi + lo) / 2, (hi - lo) / 2
        center, radius = c @ lin.weight.T + lin.bias, r @ lin.weight.abs().T
        l, u = center - radius, center + radius
        out.append((l < 0) & (u > 0))
        lo, hi = l.clamp(min=0), u.clamp(min=0)
    return out


def test_ibp_instability_equals_interval_arithmetic():
    net, x = mlp(), torch.rand(40, 5)
    with torch.no_grad():
        first, second = ibp_unstable_by_hand(net, x, 0.15)
    counts = unstable_counts(net, x, 0.15, "IBP", batch_size=16)
    assert list(counts) == ["_1", "_3"]
    assert torch.equal(counts["_1"], first.sum(0)) and torch.equal(counts["_3"], second.sum(0))
    assert 0 < counts["_1"].sum() < 40 * 8 and 0 < counts["_3"].sum() < 40 * 6  # not trivial


@pytest.mark.parametrize("method", ["CROWN", "CROWN-IBP"])
def test_crown_instability_equals_auto_lirpa_on_the_plain_network(method):
    net, x, eps = mlp(), torch.rand(20, 5), 0.15
    bm = LirpaModule(net, x[:1])
    ptb = PerturbationLpNorm(norm=np.inf, x_L=(x - eps).clamp(0, 1), x_U=(x + eps).clamp(0, 1))
    bm.compute_bounds(x=(BoundedTensor(x, ptb),), method=method)
    relus = [n for n in bm._modules.values() if isinstance(n, BoundRelu)]
    expected = [((r.inputs[0].lower < 0) & (r.inputs[0].upper > 0)).sum(0) for r in relus]
    counts = unstable_counts(net, x, eps, method)
    assert torch.equal(counts["_1"], expected[0]) and torch.equal(counts["_3"], expected[1])


def test_hzono_without_rows_counts_as_ibp_and_grafted_neurons_count_zero():
    net, x = mlp(), torch.rand(30, 5)
    ibp = unstable_counts(net, x, 0.15, "IBP")
    assert all(torch.equal(ibp[s], c) for s, c in unstable_counts(net, x, 0.15, "hzono").items())
    mask = (torch.arange(8) % 2).float()
    grafted = graft(net, {"_1": mask})
    counts = unstable_counts(grafted, x, 0.15, "IBP")
    assert (counts["_1"][mask == 1] == 0).all()
    assert torch.equal(counts["_1"][mask == 0], ibp["_1"][mask == 0])


def test_gradient_significance_equals_per_image_autograd():
    net, x, y = mlp(), torch.rand(12, 5), torch.randint(0, 3, (12,))
    expected1, expected2 = torch.zeros(8), torch.zeros(6)
    for xi, yi in zip(x, y):
        h1 = torch.relu(net[0](xi[None])).detach().requires_grad_(True)
        h2 = torch.relu(net[2](h1))
        h2.retain_grad()
        F.cross_entropy(net[4](h2), yi[None]).backward()
        expected1 += h1.grad[0].abs() / len(x)
        expected2 += h2.grad[0].abs() / len(x)
    scores = gradient_significance(net, x, y, batch_size=5)
    torch.testing.assert_close(scores["_1"], expected1)
    torch.testing.assert_close(scores["_3"], expected2)


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(2, 3, 3, padding=1), nn.Conv2d(3, 3, 3, stride=2, padding=1)
        self.fc = nn.Linear(3 * 3 * 3, 4)

    def forward(self, x):
        h = F.relu(self.conv1(x))
        g = self.conv2(h).relu()
        return self.fc(torch.flatten(g, 1))


def test_weight_significance_equals_column_sums_of_the_explicit_matrices():
    net = ConvNet()
    scores = weight_significance(net, torch.zeros(1, 2, 5, 5))
    basis = torch.eye(3 * 5 * 5).reshape(-1, 3, 5, 5)  # every neuron of the first ReLU alone
    with torch.no_grad():
        matrix = F.conv2d(basis, net.conv2.weight.abs(), None, 2, 1).flatten(1)  # (neuron, outputs)
    torch.testing.assert_close(scores["relu"], matrix.sum(1).reshape(3, 5, 5))
    torch.testing.assert_close(scores["relu_1"], net.fc.weight.abs().sum(0).reshape(3, 3, 3))


def test_weight_significance_refuses_other_readers():
    net = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Tanh())
    with pytest.raises(GraftingError, match="site '_1'.*feeds call_module '2'"):
        weight_significance(net, torch.zeros(1, 3))


def test_normalized_rank_shares_ties():
    ranks = normalized_rank(torch.tensor([3.0, 1.0, 3.0, 2.0, 0.0]))
    torch.testing.assert_close(ranks, torch.tensor([3.5, 1.0, 3.5, 2.0, 0.0], dtype=torch.float64) / 4)


def test_select_combines_ranks_with_lam():
    u = {"a": torch.tensor([0.9, 0.1, 0.5, 0.0]), "b": torch.tensor([0.2, 0.8])}
    s = {"a": torch.tensor([1.0, 2.0, 0.1, 3.0]), "b": torch.tensor([0.5, 5.0])}
    # lam = 1: the most unstable; lam = 0: the least significant
    top_u = select(u, s, 0.5, lam=1.0)
    assert top_u["a"].tolist() == [1, 0, 1, 0] and top_u["b"].tolist() == [0, 1]
    top_s = select(u, s, 0.5, lam=0.0)
    assert top_s["a"].tolist() == [1, 0, 1, 0] and top_s["b"].tolist() == [1, 0]
    # lam = 0.5 by hand: c = (rank(u) + 1 - rank(s)) / 2 over the 6 neurons
    ru, rs = np.array([5, 1, 3, 0, 2, 4]) / 5, np.array([2, 3, 0, 4, 1, 5]) / 5
    c = (ru + 1 - rs) / 2
    expected = np.zeros(6)
    expected[np.argsort(-c, kind="stable")[:2]] = 1
    got = select(u, s, 2 / 6, lam=0.5)
    assert torch.cat([got["a"], got["b"]]).tolist() == expected.tolist()
    per_layer = select(u, s, 0.5, lam=1.0, scope="layer")
    assert per_layer["a"].sum() == 2 and per_layer["b"].sum() == 1


@pytest.mark.parametrize("ratio", [-0.1, 1.5, "half", True])
def test_a_ratio_outside_zero_one_is_refused(ratio):
    with pytest.raises(ValueError, match="ratio must be a number in \\[0, 1\\]"):
        select({"a": torch.zeros(2)}, {"a": torch.zeros(2)}, ratio)


def test_choose_masks_grafts_the_requested_fraction():
    net, x, y = mlp(), torch.rand(20, 5), torch.randint(0, 3, (20,))
    masks, stats = choose_masks(net, x, y, 0.05, 0.5, method="IBP")
    assert sum(int(m.sum()) for m in masks.values()) == 7  # round(0.5 * 14)
    assert stats["sites"]["_1"]["neurons"] == 8 and stats["method"] == "IBP"
