"""The grafted activation ``m (a x + b) + (1 - m) relu(x)`` under every bound method: sound
(sampling and PGD aimed at each bound), exact at eps = 0, in eval and training mode; with all
masks 0 the network and its bounds are the ReLU network's; a grafted neuron's bounds are the
affine image; the bounds' gradients reach only the grafted slopes."""
import copy

import numpy as np
import pytest
import torch
from auto_LiRPA import BoundedTensor, PerturbationLpNorm
from torch import nn

from lirpa_diffai import BoundedModule
from lirpa_diffai.grafting import GraftedReLU

from tests.support import assert_inside, attack_points, box_samples


METHODS = ["IBP", "CROWN", "CROWN-IBP", "alpha-CROWN", "hzono", "HNIPS", "HSwitch", "HSmooth",
           "CROWN-hzono"]


def ball(x, eps):
    return BoundedTensor(x, PerturbationLpNorm(norm=np.inf, eps=eps))


def random_graft(mask):
    """A GraftedReLU with ``mask`` and random slopes (of both signs) and intercepts."""
    act = GraftedReLU(mask)
    act.slope.data.uniform_(-1.0, 1.5)
    act.intercept.data.uniform_(-0.3, 0.3)
    return act


class Net(nn.Module):
    """conv -> act -> conv -> act (residual) -> relu -> avg-pool -> linear -> act -> linear,
    with ``act(shape)`` giving each activation (the relu needs the bounds of an activation's
    output as intermediate bounds)."""

    def __init__(self, act):
        super().__init__()
        self.conv1, self.act1 = nn.Conv2d(2, 4, 3, stride=2, padding=1), act((4, 4, 4))
        self.conv2, self.act2 = nn.Conv2d(4, 4, 3, padding=1), act((4, 4, 4))
        self.fc1, self.act3 = nn.Linear(16, 12), act((12,))
        self.fc2 = nn.Linear(12, 5)

    def forward(self, x):
        h = self.act1(self.conv1(x))
        h = nn.functional.avg_pool2d(torch.relu(self.act2(self.conv2(h) + h)), 2)
        return self.fc2(self.act3(self.fc1(h.flatten(1))))


def relu_and_grafted(density):
    """A ReLU network and the same weights with GraftedReLUs whose masks have ``density``."""
    relu_net = Net(lambda shape: nn.ReLU())
    grafted = Net(lambda shape: random_graft((torch.rand(shape) < density).float()))
    state = {k: v for k, v in relu_net.state_dict().items()}
    grafted.load_state_dict(state, strict=False)
    return relu_net.eval(), grafted.eval()


def bounds(bm, x, eps, method):
    bm.bound_opts["optimize_bound_args"]["iteration"] = 5
    return bm.compute_bounds(x=(ball(x, eps),), method=method)


def hzono_module(net, x):
    return BoundedModule(net, x, bound_opts={"hzono": {"relu": "deepz", "correlate_input": "all"}})


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("method", METHODS)
def test_bounds_are_sound(method, training):
    _, net = relu_and_grafted(0.5)
    x = torch.rand(2, 2, 8, 8)
    bm = hzono_module(net, x).train(training)
    eps = 0.1
    lb, ub = bounds(bm, x, eps, method)
    lower, upper = x - eps, x + eps
    points = torch.cat([box_samples(lower, upper, 100), attack_points(net, lower, upper, steps=5)])
    with torch.no_grad():
        outputs = torch.stack([net(p) for p in points])
    assert_inside(outputs, lb.detach(), ub.detach())
    # the bounds are not the trivial ones: a crossing output has lb < ub, and they are finite
    assert torch.isfinite(lb).all() and torch.isfinite(ub).all()


@pytest.mark.parametrize("method", METHODS)
def test_eps_zero_gives_the_forward_pass(method):
    _, net = relu_and_grafted(0.5)
    x = torch.rand(2, 2, 8, 8)
    bm = hzono_module(net, x)
    lb, ub = bounds(bm, x, 0.0, method)
    with torch.no_grad():
        y = net(x)
    torch.testing.assert_close(lb.detach(), y, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ub.detach(), y, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(bm(x).detach(), y, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_all_masks_zero_is_the_relu_network(method):
    relu_net, net = relu_and_grafted(0.0)
    x = torch.rand(3, 2, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(net(x), relu_net(x), atol=0, rtol=0)
    lb, ub = bounds(hzono_module(net, x), x, 0.05, method)
    lb_ref, ub_ref = bounds(hzono_module(relu_net, x), x, 0.05, method)
    torch.testing.assert_close(lb.detach(), lb_ref.detach(), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(ub.detach(), ub_ref.detach(), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_grafted_neuron_bounds_are_the_affine_image(method):
    """``x -> W x + c -> act``: a grafted neuron's range over the box is exactly
    ``a (W x0 + c) + b -+ eps |a| |W|_1`` for every method; the others keep ReLU's bounds."""
    torch.manual_seed(1)
    mask = (torch.arange(10) % 2 == 0).float()
    linear, act = nn.Linear(6, 10), random_graft(mask)
    net = nn.Sequential(linear, act).eval()
    x, eps = torch.rand(4, 6), 0.2
    lb, ub = bounds(hzono_module(net, x), x, eps, method)
    with torch.no_grad():
        center = act.slope * linear(x) + act.intercept
        radius = eps * act.slope.abs() * linear.weight.abs().sum(1)
    grafted = mask.bool()
    torch.testing.assert_close(lb.detach()[:, grafted], (center - radius)[:, grafted], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ub.detach()[:, grafted], (center + radius)[:, grafted], atol=1e-5, rtol=1e-5)
    relu_lb, relu_ub = bounds(hzono_module(nn.Sequential(copy.deepcopy(linear), nn.ReLU()), x),
                              x, eps, method)
    torch.testing.assert_close(lb.detach()[:, ~grafted], relu_lb.detach()[:, ~grafted], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(ub.detach()[:, ~grafted], relu_ub.detach()[:, ~grafted], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("method", ["IBP", "CROWN", "hzono"])
def test_bound_gradients_reach_only_grafted_slopes(method):
    _, net = relu_and_grafted(0.5)
    x = torch.rand(2, 2, 8, 8)
    bm = hzono_module(net, x).train()
    lb, ub = bounds(bm, x, 0.05, method)
    (ub - lb).sum().backward()
    for act in (net.act1, net.act2, net.act3):
        grad = act.slope.grad
        assert grad is not None and grad[act.mask == 1].abs().sum() > 0
        assert (grad[act.mask == 0] == 0).all()


def test_forward_mode_is_refused_with_the_node_named():
    _, net = relu_and_grafted(0.5)
    x = torch.rand(1, 2, 8, 8)
    with pytest.raises(NotImplementedError, match="GraftedRelu.*forward-mode"):
        BoundedModule(net, x).compute_bounds(x=(ball(x, 0.1),), method="forward")


def test_mask_must_fit_and_be_binary():
    with pytest.raises(ValueError, match="only 0 and 1"):
        GraftedReLU(torch.full((3,), 0.5))
    act = GraftedReLU(torch.ones(3), site="fc1_relu")
    with pytest.raises(ValueError, match="'fc1_relu'.*shape \\(3,\\).*\\(4,\\)"):
        act(torch.zeros(2, 4))
