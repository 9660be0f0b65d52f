"""``method="CROWN-hzono"`` (hzono intermediate bounds, CROWN for the final node) and
``"alpha-CROWN-hzono"``: sound on branching networks, never looser than CROWN-IBP with the boxy
ReLU, the hzono boxes really are the ones CROWN uses, and only the final node is bounded by a
backward pass."""
import copy

import numpy as np
import pytest
import torch
from auto_LiRPA import BoundedTensor, PerturbationLpNorm
from torch import nn

from lirpa_diffai import BoundedModule, Concretize, CorrelateAll, CorrelateMaxK, DecorrelateMin, data, models
from lirpa_diffai.evaluation import margins as certify
from lirpa_diffai.models import ParSum, SkipCat

from tests.support import assert_inside, attack_points, box_samples

SHARED_MODELS = data.shared_root() / "models"


def ball(x, eps):
    return BoundedTensor(x, PerturbationLpNorm(norm=np.inf, eps=eps))


def conv_relu(c_in, c_out, stride=1):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.ReLU())


class Branchy(nn.Module):
    """Residual add, concat, batch norm, max and (unpadded) average pooling in one graph."""

    def __init__(self, abstract=False):
        super().__init__()
        self.stem = conv_relu(2, 4)
        self.res = ParSum(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                        nn.Conv2d(4, 4, 3, padding=1)), nn.Identity())
        self.cat = SkipCat(conv_relu(4, 3, stride=2), nn.MaxPool2d(2))  # auto_LiRPA 0.3: stride = kernel
        self.pool = nn.AvgPool2d(2)
        self.head = nn.Sequential(nn.ReLU(), nn.Flatten(), nn.Linear(7 * 2 * 2, 12), nn.ReLU(), nn.Linear(12, 5))
        self.abstract = abstract
        if abstract:  # a DiffAI abstract-layer configuration (as ResNet-Tiny FewCombo)
            self.corr_in, self.decor = CorrelateMaxK(8, only_train=False), DecorrelateMin(3, only_train=False)
            self.concretize, self.corr_all = Concretize(only_train=False), CorrelateAll()

    def forward(self, x):
        if self.abstract:
            x = self.corr_in(x)
        x = self.stem(x)
        if self.abstract:
            x = self.decor(x)
        x = self.res(x)
        if self.abstract:
            x = self.corr_all(self.concretize(x))
        return self.head(self.pool(self.cat(x)))


def randomized(net):
    """Non-trivial batch-norm statistics and weights."""
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return net.eval()


def mlp(widths):
    layers = []
    for a, b in zip(widths, widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def outputs_in_box(net, x, eps, samples=200, steps=3):
    """Network outputs at uniform points, corners and PGD points of the box: (n, B, n_out)."""
    lower, upper = x - eps, x + eps
    points = torch.cat([box_samples(lower, upper, samples), attack_points(net, lower, upper, steps=steps)])
    with torch.no_grad():
        return net(points.flatten(0, 1)).view(len(points), len(x), -1)


def check_sound(bm, x, eps, method, outputs, C=None):
    lb, ub = bm.compute_bounds(x=(ball(x, eps),), C=C, method=method)
    assert_inside(outputs if C is None else torch.einsum("bsk,nbk->nbs", C, outputs), lb, ub)
    return lb, ub


# ----------------------------------------------------------------------- soundness
@pytest.mark.parametrize("relu,rows,abstract", [("boxy", 0, False), ("boxy", "all", True),
                                                ("deepz", "all", False), ("deepz", 5, True)])
def test_crown_hzono_is_sound_on_a_branching_network(relu, rows, abstract):
    net = randomized(Branchy(abstract))
    x = torch.rand(2, 2, 8, 8)
    bm = BoundedModule(net, x, bound_opts={"hzono": {"relu": relu, "correlate_input": rows}})
    # a wide box exercises the ReLU relaxations; a narrow one gives nearly exact bounds, so
    # a too-small intermediate box shows up as an output outside them
    for eps in (0.05, 0.002):
        outputs = outputs_in_box(net, x, eps)
        check_sound(bm, x, eps, "CROWN-hzono", outputs)
        check_sound(bm, x, eps, "CROWN-hzono", outputs, C=certify.margin_spec(torch.tensor([1, 3]), 5))


def test_crown_hzono_is_sound_in_training_mode_with_abstract_layers():
    """Training mode: the only_train abstract layers act, and batch norm normalizes with the
    statistics of the clean batch, held fixed (auto_LiRPA's convention), so the reference
    network is the eval-mode copy carrying those statistics."""
    net = randomized(Branchy(abstract=True)).train()
    x = torch.rand(3, 2, 8, 8)
    bm = BoundedModule(net, x, bound_opts={"hzono": {"relu": "deepz"}}).train()
    lb, ub = bm.compute_bounds(x=(ball(x, 0.03),), method="CROWN-hzono")
    fixed = copy.deepcopy(net).eval()
    bn_inputs = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: bn_inputs.append(inp[0]))
             for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        net(x)
    for hook in hooks:
        hook.remove()
    for m, batch in zip([m for m in fixed.modules() if isinstance(m, nn.BatchNorm2d)], bn_inputs):
        m.running_mean = batch.mean(dim=(0, 2, 3))
        m.running_var = batch.var(dim=(0, 2, 3), unbiased=False)
    assert_inside(outputs_in_box(fixed, x, 0.03), lb, ub)


@pytest.mark.parametrize("relu", ["boxy", pytest.param("deepz", marks=pytest.mark.slow)])
def test_alpha_crown_hzono_is_sound_and_at_least_as_tight_as_crown_hzono(relu):
    net = randomized(Branchy())
    x = torch.rand(2, 2, 8, 8)
    bm = BoundedModule(net, x, bound_opts={"hzono": {"relu": relu, "correlate_input": "all"},
                                            "optimize_bound_args": {"iteration": 5}})
    C = certify.margin_spec(torch.tensor([0, 4]), 5)
    plain = bm.compute_bounds(x=(ball(x, 0.05),), C=C, method="CROWN-hzono")
    lb, ub = check_sound(bm, x, 0.05, "alpha-CROWN-hzono", outputs_in_box(net, x, 0.05), C=C)
    assert (lb >= plain[0] - 1e-5).all() and (ub <= plain[1] + 1e-5).all()
    assert (ub - lb).mean() < (plain[1] - plain[0]).mean()  # the slopes were optimized


class ReducedBatchOfOne(nn.Module):
    """A (1, 1, 3) batch of one sample reduced over its batch axis (``x.mean(0)``: nothing
    moves between samples, so the linear methods bound it) between two non-linearities;
    ``axis``: 0, or -3 (the batch axis named from the end)."""

    def __init__(self, reduction, axis):
        super().__init__()
        self.fc, self.head, self.reduction, self.axis = nn.Linear(3, 3), nn.Linear(3, 2), reduction, axis

    def forward(self, x):
        v = getattr(torch.tanh(self.fc(x)), self.reduction)(self.axis, keepdim=False)  # (1, 3)
        return self.head(nn.functional.elu(2 * v))


@pytest.mark.parametrize("reduction,axis", [("mean", 0), ("sum", 0), ("mean", -3)])
def test_a_batch_of_one_reduced_over_its_batch_axis_is_bounded_soundly(reduction, axis):
    """Finding F22: alpha-CROWN-hzono crashed in auto_LiRPA's ClampedMultiplication backward
    (the reduction's coefficients lacked the batch axis); each method's bounds now hold at
    sampled and PGD points, equal f(x) at eps = 0, and alpha-CROWN's are no looser."""
    torch.manual_seed(0)
    net, x, eps = ReducedBatchOfOne(reduction, axis), torch.randn(1, 1, 3), 0.3
    bm = BoundedModule(net, x, bound_opts={"optimize_bound_args": {"iteration": 5}})
    lower, upper = x - eps, x + eps
    points = torch.cat([box_samples(lower, upper, 200), attack_points(net, lower, upper, steps=5)])
    with torch.no_grad():  # one point at a time: the network reduces over its batch axis
        outputs, clean = torch.stack([net(p) for p in points]), net(x)
    found = {}
    for method in ("CROWN", "CROWN-hzono", "alpha-CROWN-hzono"):
        found[method] = check_sound(bm, x, eps, method, outputs)
        torch.testing.assert_close(bm.compute_bounds(x=(ball(x, 0.0),), method=method), (clean, clean))
    (lb, ub), (plain_lb, plain_ub) = found["alpha-CROWN-hzono"], found["CROWN-hzono"]
    assert (lb >= plain_lb - 1e-5).all() and (ub <= plain_ub + 1e-5).all()


# ------------------------------------------------------------------------ tightness
def crown_ibp_and_crown_hzono(net, x, eps, C, rows):
    bm = BoundedModule(net, x, bound_opts={"hzono": {"relu": "boxy", "correlate_input": rows}})
    with torch.no_grad():
        ibp = bm.compute_bounds(x=(ball(x, eps),), C=C, method="CROWN-IBP")
        hz = bm.compute_bounds(x=(ball(x, eps),), C=C, method="CROWN-hzono")
    return ibp, hz


def assert_not_looser(ibp, hz, rtol=1e-4):
    """Mean width of CROWN-hzono <= CROWN-IBP's (CROWN is not monotone in its intermediate
    bounds per neuron, so the per-entry check allows a small tolerance)."""
    w_ibp, w_hz = (ibp[1] - ibp[0]).mean().item(), (hz[1] - hz[0]).mean().item()
    assert w_hz <= w_ibp * (1 + rtol) + 1e-6, (w_hz, w_ibp)
    return w_hz, w_ibp


@pytest.mark.parametrize("seed", range(2))
def test_crown_hzono_boxy_is_not_looser_than_crown_ibp_on_random_networks(seed):
    torch.manual_seed(seed)
    for net, x in [(mlp([6, 20, 20, 20, 3]), torch.randn(4, 6)),
                   (randomized(Branchy()), torch.rand(4, 2, 8, 8))]:
        C = certify.margin_spec(torch.tensor([0, 1, 2, 1]), net(x).shape[1])
        for rows in (0, 3, "all"):
            ibp, hz = crown_ibp_and_crown_hzono(net, x, 0.1, C, rows)
            w_hz, w_ibp = assert_not_looser(ibp, hz)
            if rows == 0:  # no correlated rows: hzono is IBP, so the two methods coincide
                torch.testing.assert_close(hz, ibp)


@pytest.mark.parametrize("name,eps", [("mnist_conv_small_nat", 0.12), ("resnet2b", 2 / 255)])
def test_crown_hzono_is_tighter_than_crown_ibp_on_pretrained_networks(name, eps):
    if not (SHARED_MODELS / models.PRETRAINED[name].file).is_file():
        pytest.skip(f"{name} not in {SHARED_MODELS}")
    net = models.load_pretrained(name)
    test = data.load_dataset(models.PRETRAINED[name].dataset, "test")
    x, y = test.tensors[0][:3], test.tensors[1][:3]
    ibp, hz = crown_ibp_and_crown_hzono(net, x, eps, certify.margin_spec(y, 10), "all")
    w_hz, w_ibp = assert_not_looser(ibp, hz)
    assert w_hz < 0.8 * w_ibp  # correlated input rows pay off on real networks


# --------------------------------------------------------------------------- wiring
def count_backward_passes(bm, monkeypatch):
    """Wrap auto_LiRPA's backward_general to record the node each backward pass starts at."""
    started = []
    original = type(bm).backward_general

    def spy(self, *args, node=None, **kwargs):
        started.append(node.name)
        return original(self, *args, node=node, **kwargs)
    monkeypatch.setattr(type(bm), "backward_general", spy)
    return started


def test_crown_hzono_runs_one_backward_pass_on_the_hzono_boxes(monkeypatch):
    net = randomized(Branchy())
    x = torch.rand(2, 2, 8, 8)
    bm = BoundedModule(net, x, bound_opts={"hzono": {"correlate_input": "all"}})
    started = count_backward_passes(bm, monkeypatch)
    bm.compute_bounds(x=(ball(x, 0.05),), method="CROWN")
    crown_passes = len(started)
    started.clear()
    lb, ub = bm.compute_bounds(x=(ball(x, 0.05),), method="crown-HZONO")  # case-insensitive
    assert started == [bm.final_name] and crown_passes > 3
    boxes = bm.hzono_node_bounds
    relu_inputs = [r.inputs[0] for r in bm.relus]
    assert relu_inputs and all(n.name in boxes for n in relu_inputs)
    for node in relu_inputs:  # CROWN used (and kept) the hzono boxes, not its own
        assert node.lower is not None
        torch.testing.assert_close(node.lower, boxes[node.name][0], rtol=0, atol=0)
        torch.testing.assert_close(node.upper, boxes[node.name][1], rtol=0, atol=0)
    assert bm.final_name not in bm.hzono_intermediate_bounds((ball(x, 0.05),))


def test_alpha_crown_hzono_never_runs_crown_for_intermediate_nodes(monkeypatch):
    net = mlp([5, 16, 16, 2])
    x = torch.randn(3, 5)
    bm = BoundedModule(net, x, bound_opts={"optimize_bound_args": {"iteration": 4}})
    started = count_backward_passes(bm, monkeypatch)
    lb, ub = bm.compute_bounds(x=(ball(x, 0.3),), method="Alpha-CROWN-hzono")
    assert set(started) == {bm.final_name} and (lb <= ub).all()
    assert bm.bound_opts["optimize_bound_args"]["init_alpha"] is True  # restored


def test_crown_hzono_reuses_the_last_inputs_and_rejects_its_own_arguments():
    net = mlp([4, 8, 3])
    x = torch.randn(2, 4)
    bm = BoundedModule(net, x)
    first = bm.compute_bounds(x=(ball(x, 0.2),), method="CROWN-hzono")
    again = bm.compute_bounds(method="CROWN-hzono")
    torch.testing.assert_close(first, again)
    with pytest.raises(TypeError, match="intermediate_layer_bounds"):
        bm.compute_bounds(x=(ball(x, 0.2),), method="CROWN-hzono", intermediate_layer_bounds={})
    lower_only = bm.compute_bounds(x=(ball(x, 0.2),), method="CROWN-hzono", bound_upper=False)
    assert lower_only[1] is None
    torch.testing.assert_close(lower_only[0], first[0])
