"""Bad input to ``BoundedModule.compute_bounds`` gets a clear error for every method (issue 10),
a spec ``C`` is taken in every shape IBP takes, and ``nn.Dropout`` works with hzono."""
import numpy as np
import pytest
import torch
from auto_LiRPA import BoundedTensor, PerturbationLpNorm
from torch import nn

from lirpa_diffai import BoundedModule, PerturbationHybridZonotope, UnsupportedOperatorError

from tests.support import assert_inside, box_samples


METHODS = ["hzono", "IBP", "CROWN", "CROWN-IBP", "CROWN-hzono", "alpha-CROWN"]


def small_net():
    return nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))


def box(x, lower, upper):
    return BoundedTensor(x, PerturbationLpNorm(norm=np.inf, x_L=lower, x_U=upper))


def ball(x, eps):
    return BoundedTensor(x, PerturbationLpNorm(norm=np.inf, eps=eps))


def bad_inputs(x):
    nan = x.clone()
    nan[0, 1] = float("nan")
    inf_upper = x + 0.1
    inf_upper[1, 0] = float("inf")
    zono_beta = torch.zeros_like(x)
    zono_beta[0, 0] = float("nan")
    return {
        r"x_L > x_U at 2 entries \(first at index \(0, 2\)\)": box(x, x + 0.1 * (torch.arange(3) == 2), x),
        r"eps = -0.1 is negative": ball(x, -0.1),
        r"input 0's values has 1 NaN": ball(nan, 0.1),
        r"input 0's x_U has 1 NaN or infinite": box(x, x - 0.1, inf_upper),
        r"input 0's eps has 1 NaN": ball(x, float("nan")),
        r"input 0's zonotope beta has 1 NaN": BoundedTensor(
            x, PerturbationHybridZonotope.from_tensors(x, zono_beta)),
    }


@pytest.mark.parametrize("method", METHODS)
def test_bad_input_sets_are_refused_by_every_method(method):
    x = torch.randn(2, 3)
    bm = BoundedModule(small_net(), x)
    for message, bounded in bad_inputs(x).items():
        with pytest.raises(ValueError, match=message):
            bm.compute_bounds(x=(bounded,), method=method)


@pytest.mark.parametrize("method", METHODS)
def test_a_2d_spec_means_the_same_spec_for_every_sample(method):
    x = torch.randn(2, 3)
    net = small_net()
    bm = BoundedModule(net, x)
    C = torch.tensor([[1.0, -1.0], [0.5, 2.0], [0.0, 1.0]])
    lb, ub = bm.compute_bounds(x=(ball(x, 0.1),), C=C, method=method)
    lb3, ub3 = bm.compute_bounds(x=(ball(x, 0.1),), C=C.expand(2, 3, 2), method=method)
    torch.testing.assert_close((lb, ub), (lb3, ub3))
    with torch.no_grad():
        outputs = torch.stack([net(p) @ C.t() for p in box_samples(x - 0.1, x + 0.1, 100)])
    assert_inside(outputs, lb, ub)


@pytest.mark.parametrize("method", METHODS)
def test_specs_of_a_wrong_shape_are_refused_with_the_expected_shape(method):
    x = torch.randn(2, 3)
    bm = BoundedModule(small_net(), x)
    for C in (torch.randn(2, 3, 4), torch.randn(3, 3, 2), torch.randn(2, 3), torch.randn(2, 1, 3, 2)):
        with pytest.raises(ValueError, match=r"C has shape .*; expected \(batch = 2, specs, 2\)"):
            bm.compute_bounds(x=(ball(x, 0.1),), C=C, method=method)


def test_unknown_method_names_the_known_ones_and_the_nearest():
    x = torch.randn(2, 3)
    bm = BoundedModule(small_net(), x)
    with pytest.raises(ValueError, match=r"unknown bound method 'hzonoo'; did you mean 'hzono'\?.*IBP.*alpha-CROWN"):
        bm.compute_bounds(x=(ball(x, 0.1),), method="hzonoo")
    with pytest.raises(ValueError, match=r"did you mean 'CROWN-IBP'"):
        bm.compute_bounds(x=(ball(x, 0.1),), method="crown_ibp")


# -------------------------------------------------------------------------- dropout
class DropNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.drop, self.fc2 = nn.Linear(3, 6), nn.Dropout(0.5), nn.Linear(6, 2)

    def forward(self, x):
        return self.fc2(torch.relu(self.drop(self.fc1(x))))


@pytest.mark.parametrize("rows", [0, "all"])
def test_dropout_is_the_identity_in_eval_mode(rows):
    net = DropNet()
    x = torch.randn(3, 3)
    bm = BoundedModule(net, x, bound_opts={"hzono": {"correlate_input": rows}}).eval()
    net.eval()
    lb, ub = bm.compute_bounds(x=(ball(x, 0.2),), method="hzono")
    with torch.no_grad():
        assert_inside(torch.stack([net(p) for p in box_samples(x - 0.2, x + 0.2, 200)]), lb, ub)
        lb0, ub0 = bm.compute_bounds(x=(ball(x, 0.0),), method="hzono")
        torch.testing.assert_close((lb0, ub0), (net(x), net(x)))


def test_dropout_in_training_mode_bounds_the_last_forward_passs_mask():
    """As auto_LiRPA's IBP and CROWN: the function bounded is the network with the dropout
    mask the last forward pass drew (``x=None`` keeps it)."""
    net = DropNet()
    x = torch.randn(3, 3)
    bm = BoundedModule(net, x).train()
    with pytest.raises(UnsupportedOperatorError, match=r"node '.*' \(Dropout\) in training mode.*mask"):
        bm.compute_bounds(x=(ball(x, 0.2),), method="hzono")
    for eps in (0.0, 0.2):
        out = bm(ball(x, eps))
        mask = next(n for n in bm.modules() if type(n).__name__ == "BoundDropout").mask
        lb, ub = bm.compute_bounds(method="hzono")
        ilb, iub = bm.compute_bounds(method="IBP")
        torch.testing.assert_close((lb, ub), (ilb, iub), rtol=1e-5, atol=1e-5)  # a box: IBP

        def with_mask(p):
            return net.fc2(torch.relu(net.fc1(p) * mask / 0.5))
        with torch.no_grad():
            assert_inside(torch.stack([with_mask(p) for p in box_samples(x - eps, x + eps, 200)]), lb, ub)
            if eps == 0:
                torch.testing.assert_close((lb, ub), (out, out))
