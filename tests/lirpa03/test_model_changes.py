"""A model that changes after it was wrapped (issue 21, third case): auto_LiRPA 0.3 copied each
buffer at tracing, so after BatchNorm's statistics moved, a ``load_state_dict`` or an in-place
edit, and after a parameter object was replaced, every method bounded the model as it was
wrapped. Stateful sequences: wrap, change, bound again; the bounds hold for the model as it is
now (sampled and PGD points; f(x) at eps = 0), for every method family, in eval and training
mode; a change the graph cannot follow (a dtype) is refused naming the tensor."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from tests.support import assert_bounds_hold, bounds_of, with_clean_batch_statistics
from lirpa_diffai import BoundedModule
from lirpa_diffai.lirpa03.follow import ModelChangedError


METHODS = ("IBP", "CROWN", "CROWN-IBP", "hzono", "HBox", "CROWN-hzono")
EPS = 0.05


def network(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3)).eval()


def train_statistics(net, x):
    """A few training-mode passes: BatchNorm's running statistics move."""
    net.train()
    with torch.no_grad():
        for k in range(3):
            net(x * (k + 2) + 1)


def load_other(net, x):
    other = network(seed=1)
    train_statistics(other, x)
    net.load_state_dict(other.state_dict())


def edit_in_place(net, x):
    with torch.no_grad():
        net[1].running_mean.add_(0.7)
        net[0].weight.mul_(-1.5)


def replace_parameters(net, x):
    net[3].weight = nn.Parameter(torch.randn_like(net[3].weight))
    net[1].running_var = torch.rand(6) + 0.5


CHANGES = {"batch-norm statistics": train_statistics, "load_state_dict": load_other,
           "in-place edits": edit_in_place, "replaced tensors": replace_parameters}


@pytest.mark.parametrize("training", [False, pytest.param(True, marks=pytest.mark.slow)],
                         ids=["eval", "train"])  # training mode: thorough runs only
@pytest.mark.parametrize("change", sorted(CHANGES))
def test_bounds_follow_a_model_changed_after_wrapping(change, training):
    x = torch.randn(4, 4)
    net = network()
    bm = BoundedModule(net, x)
    for method in METHODS:  # the old state is bounded once by each method first
        bounds_of(bm, x, EPS, method)
    CHANGES[change](net, x)
    net.train(training)
    bm.train(training)
    f = with_clean_batch_statistics(net, x) if training else net
    for method in METHODS:
        assert_bounds_hold(bm, f, x, EPS, method)


def test_two_methods_alternating_on_a_changing_model():
    x = torch.randn(4, 4)
    net = network()
    bm = BoundedModule(net, x)
    for step in range(3):
        edit_in_place(net, x)
        for method in ("CROWN", "hzono"):
            assert_bounds_hold(bm, net, x, EPS, method, samples=16)


def test_a_training_mode_pass_of_the_graph_moves_the_models_statistics():
    """The graph reads the model's own buffers: what a training-mode pass does to them is what
    the model's own pass would do."""
    x = torch.randn(4, 4)
    net, twin = network(), network()
    bm = BoundedModule(net, x).train()
    bm(x)
    twin.train()(x)
    torch.testing.assert_close(net[1].running_mean, twin[1].running_mean)


def test_a_dtype_change_is_refused_naming_the_tensor():
    x = torch.randn(4, 4)
    net = network()
    bm = BoundedModule(net, x)
    net.to(torch.float64)
    with pytest.raises(ModelChangedError, match=r"'0\.weight'.*torch\.float64.*wrap the model again"):
        bounds_of(bm, x.double(), EPS, "CROWN")


def test_a_deep_copy_follows_its_own_model():
    x = torch.randn(4, 4)
    net = network()
    bm = copy.deepcopy(BoundedModule(net, x))
    edit_in_place(net, x)
    lb, ub = bounds_of(bm, x, 0.0, "CROWN")
    with torch.no_grad():
        assert not torch.allclose(lb, net(x), atol=1e-3)  # the copy's model is not ``net``
