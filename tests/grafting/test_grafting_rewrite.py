"""``graft(model, masks)``: every way of calling ReLU is found and rewritten (in-place calls
too), the weights are kept (and not shared), and what fx cannot rewrite is refused."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lirpa_diffai.grafting import GraftedReLU, GraftingError, graft, relu_sites, site_shapes
from lirpa_diffai.grafting.rewrite import grafted_modules, masks_of


class Mixed(nn.Module):
    """A shared ReLU module called twice, F.relu, torch.relu, .relu(), and an in-place ReLU
    whose input tensor is read again afterwards."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(4, 6), nn.Linear(6, 6), nn.Linear(6, 6)
        self.act = nn.ReLU()
        self.inplace = nn.ReLU(inplace=True)

    def forward(self, x):
        h = self.act(self.fc1(x))
        h = F.relu(self.fc2(h)) + torch.relu(self.fc3(h))
        h = self.act(h - 0.5)
        g = self.fc3(h)
        self.inplace(g)         # modifies g
        return g.relu() + g     # reads the modified g


def reference(model, x, masks, slope, intercept):
    """``Mixed`` evaluated by hand with every ReLU replaced by ``f`` of its site."""
    def f(site, t):
        m = masks.get(site)
        return torch.relu(t) if m is None else torch.where(m.bool(), slope * t + intercept, torch.relu(t))
    h = f("act", model.fc1(x))
    h = f("relu", model.fc2(h)) + f("relu_1", model.fc3(h))
    h = f("act_1", h - 0.5)
    g = f("inplace", model.fc3(h))
    return f("relu_2", g) + g


def test_sites_are_every_relu_call_in_order():
    assert relu_sites(Mixed()) == ["act", "relu", "relu_1", "act_1", "inplace", "relu_2"]
    shapes = site_shapes(Mixed(), torch.zeros(1, 4))
    assert {k: tuple(v) for k, v in shapes.items()} == {s: (6,) for s in relu_sites(Mixed())}


@pytest.mark.parametrize("density", [0.0, 0.5, 1.0])
def test_grafted_network_computes_the_grafted_function(density):
    model = Mixed().eval()
    masks = {site: (torch.rand(6) < density).float() for site in relu_sites(model)}
    grafted = graft(model, masks, torch.zeros(1, 4))
    slope, intercept = 0.4, 0.0
    x = torch.randn(7, 4)
    with torch.no_grad():
        out = grafted(x)
        expected = reference(model, x, masks, slope, intercept)
        torch.testing.assert_close(out, expected)
        if density == 0.0:
            torch.testing.assert_close(out, model(x.clone()))
    assert set(grafted_modules(grafted)) == set(masks)
    assert all(torch.equal(masks_of(grafted)[s], masks[s]) for s in masks)


def test_weights_are_kept_and_not_shared():
    model = Mixed()
    grafted = graft(model, {"act": torch.ones(6)})
    torch.testing.assert_close(grafted.fc1.weight, model.fc1.weight)
    grafted.fc1.weight.data.add_(1.0)
    assert not torch.equal(grafted.fc1.weight, model.fc1.weight)
    # the sites not named stay ReLUs; the shared module still serves the other call
    assert isinstance(grafted.act, nn.ReLU) and len(grafted_modules(grafted)) == 1


def test_a_grafted_network_can_be_grafted_again():
    once = graft(Mixed(), {"act": torch.ones(6)})
    twice = graft(once, {"relu": torch.ones(6)})
    assert set(grafted_modules(twice)) == {"act", "relu"}


def test_data_dependent_control_flow_is_refused():
    class Branching(nn.Module):
        def forward(self, x):
            return F.relu(x) if x.sum() > 0 else x

    with pytest.raises(GraftingError, match="torch.fx cannot trace Branching.*control flow"):
        graft(Branching(), {})


def test_a_network_without_relus_is_refused():
    with pytest.raises(GraftingError, match="Sequential has no ReLU"):
        graft(nn.Sequential(nn.Linear(2, 2), nn.Tanh()), {})


def test_masks_that_do_not_fit_are_refused():
    with pytest.raises(GraftingError, match="'nope'.*not ReLU sites.*act, relu"):
        graft(Mixed(), {"nope": torch.ones(6)})
    with pytest.raises(GraftingError, match="site 'act' has shape \\(5,\\); its activation has shape \\(6,\\)"):
        graft(Mixed(), {"act": torch.ones(5)}, torch.zeros(1, 4))
    with pytest.raises(ValueError, match="only 0 and 1"):
        graft(Mixed(), {"act": torch.full((6,), 2.0)})


def test_grafted_relu_is_the_module_type():
    grafted = graft(Mixed(), {"act": torch.ones(6)})
    assert isinstance(grafted.grafted.act, GraftedReLU)
