"""Region statistics: unstable-ReLU fractions that are sound (a ReLU called stable keeps its
sign at every sampled and attacked point of the box, and none is unstable at eps 0), medians
of the smallest distances, and ``certify --regions``."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from lirpa_diffai.__main__ import main
from lirpa_diffai.bounded_module import BoundedModule
from lirpa_diffai.mmr import region_distances
from lirpa_diffai.evaluation.regions import region_statistics, relu_input_labels, unstable_masks

from tests.support import attack_points, box_samples, needs_mnist

METHODS = ["IBP", "hzono", "CROWN", "CROWN-hzono"]


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.ReLU(), nn.Flatten(),
                         nn.Linear(64, 12), nn.ReLU(), nn.Linear(12, 3)).eval()


def pre_activations(net, x):
    """The inputs of the two ReLUs at points x (n, B, ...): a list of (n, B, ...)."""
    a = net[0](x.flatten(0, 1))
    b = net[3](net[2](net[1](a)))
    return [a.unflatten(0, x.shape[:2]), b.unflatten(0, x.shape[:2])]


class PreActivations(nn.Module):
    """The pre-activations ``index`` of the network as one output vector (for tests.support's
    attack, which pushes each output up and down)."""

    def __init__(self, net, index):
        super().__init__()
        self.net, self.index = net, index

    def forward(self, t):
        z = torch.cat([z[0].flatten(1) for z in pre_activations(self.net, t.unsqueeze(0))], 1)
        return z[:, self.index]


@pytest.mark.parametrize("method,training", [(m, False) for m in METHODS]
                         + [("hzono", True), ("CROWN-hzono", True)])
def test_a_relu_called_stable_keeps_its_sign_in_the_box(method, training):
    net = small_net()
    x = torch.rand(3, 1, 9, 9)
    eps = 0.05
    bm = BoundedModule(net, x[:1]).train(training)
    masks = list(unstable_masks(bm, x, eps, method).values())
    lo, hi = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    clean = torch.cat([z[0].flatten(1) for z in pre_activations(net, x[None])], 1)
    nearest_zero = clean.abs().min(0).values.argsort()[:8]      # the easiest to flip
    points = torch.cat([box_samples(lo, hi, 100),
                        attack_points(PreActivations(net, nearest_zero), lo, hi)])
    for z, unstable, clean in zip(pre_activations(net, points), masks, pre_activations(net, x[None])):
        flips = (torch.sign(z) != torch.sign(clean)).any(0)
        assert not (flips & ~unstable).any(), f"{method}: a ReLU called stable changed sign"
    assert any(m.any() for m in masks)


@pytest.mark.parametrize("method", METHODS)
def test_nothing_is_unstable_at_eps_zero(method):
    net = small_net()
    x = torch.rand(3, 1, 9, 9)
    bm = BoundedModule(net, x[:1]).eval()
    masks = unstable_masks(bm, x, 0.0, method)
    assert not any(m.any() for m in masks.values())


def test_statistics_are_the_counts_and_medians_they_claim():
    net = small_net()
    x, y = torch.rand(7, 1, 9, 9), torch.tensor([0, 1, 2, 0, 1, 2, 0])
    bm = BoundedModule(net, x[:1]).eval()
    stats = region_statistics(net, bm, x, y, 0.03, ["IBP", "CROWN"], batch_size=3)
    assert list(stats.sizes.values()) == [64, 12] and stats.images == 7
    for method in ("IBP", "CROWN"):
        masks = list(unstable_masks(bm, x, 0.03, method).values())
        for mask, label in zip(masks, relu_input_labels(bm).values()):
            assert stats.unstable[method][label] == pytest.approx(mask.float().mean().item())
        total = sum(m.sum().item() for m in masks) / (76 * 7)
        assert stats.unstable[method]["total"] == pytest.approx(total)
    d_b, d_d = region_distances(net, x, y)
    # float32 distances computed in batches of other sizes: a float32 tolerance, not the last bit
    assert stats.median_min_d_b == pytest.approx(d_b.min(1).values.median().item(), rel=1e-5)
    assert stats.median_min_d_d == pytest.approx(d_d.min(1).values.median().item(), rel=1e-5)


@needs_mnist
def test_certify_regions_on_a_trained_checkpoint(tmp_path, capsys):
    (tmp_path / "tiny.yaml").write_text(
        "network: conv_small\ndataset: mnist\neps: 0.1\ngoal: Point\nepochs: 1\n"
        "batch_size: 50\ntrain_subset: 100\ntest_subset: 20\ntest_every: 0\nseed: 1\n")
    assert main(["train", str(tmp_path / "tiny.yaml"), "--out", str(tmp_path / "run"),
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["certify", str(tmp_path / "run"), "--methods", "IBP,CROWN", "--limit", "10",
                 "--eps", "0.01", "--regions", "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "| unstable ReLUs | neurons | IBP | CROWN |" in out and "| total | 3604 |" in out
    regions = json.loads((tmp_path / "r.json").read_text())["regions"]
    assert regions["images"] == 10 and set(regions["unstable"]) == {"IBP", "CROWN"}
    assert 0 <= regions["unstable"]["CROWN"]["total"] <= 1
    assert regions["median_min_d_b"] >= 0
