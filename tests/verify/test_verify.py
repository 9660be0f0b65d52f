"""Complete verification (``lirpa_diffai.verify``): beta-CROWN subdomain bounds are sound, every
answer agrees with the exact MIP oracle, verified samples survive strong PGD, falsified ones
come with a checked counterexample, and bad input is refused clearly."""
import math
import time

import numpy as np
import pytest
import torch
from torch import nn

from lirpa_diffai import BoundedModule, CorrelateAll
from lirpa_diffai.models import ParSum
from lirpa_diffai.verify import (BaBOptions, Spec, Status, VerificationError, mip_minimum,
                                 robustness_spec, verify)
from lirpa_diffai.verify.falsify import pgd
from auto_LiRPA import BoundedTensor, PerturbationLpNorm
from lirpa_diffai.verify.bab import refreshed_bounds
from lirpa_diffai.verify.lp import closable
from lirpa_diffai.verify.bounding import bound_domains, root_bounds
from lirpa_diffai.verify.input_split import input_branch_and_bound

from tests.support import assert_split_bounds_hold

highspy = pytest.importorskip("highspy", reason="the exact LP/MIP needs highspy "
                              "(pip install 'lirpa-diffai[complete]')")


def mlp(seed, n_in=16, width=24, n_out=4, depth=2):
    torch.manual_seed(seed)
    layers, d = [nn.Flatten()], n_in
    for _ in range(depth):
        layers += [nn.Linear(d, width), nn.ReLU()]
        d = width
    return nn.Sequential(*layers, nn.Linear(d, n_out)).eval()


def box(x, eps):
    return (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)


def assert_agrees_with_mip(net, x, y, eps, results, n_out):
    decided = 0
    for i, r in enumerate(results):
        spec = robustness_spec(y[i:i + 1], n_out)
        x_L, x_U = box(x[i:i + 1], eps)
        oracle = mip_minimum(net, x_L, x_U, spec, time_limit=60)
        if r.status is Status.VERIFIED:
            assert not oracle.falsified, f"sample {i}: verified, but the MIP finds {oracle.value}"
            decided += 1
        elif r.status is Status.FALSIFIED:
            assert oracle.falsified or not oracle.optimal.all(), f"sample {i}: MIP proves it"
            cex = r.counterexample
            assert ((cex >= x_L) & (cex <= x_U)).all()
            with torch.no_grad():
                assert spec.violated(net(cex)).all()
            decided += 1
    return decided


def test_random_networks_agree_with_mip_without_attack():
    """BaB alone (no PGD beyond the box centre): every answer is the MIP's, and the LP of
    fully fixed subdomains is what finds the counterexamples."""
    eps, net = 0.08, mlp(2)
    x = torch.rand(5, 1, 4, 4)
    y = net(x).argmax(1)
    results = verify(net, x, y, eps, timeout=30, attack_restarts=0,
                     options=BaBOptions(attack_every=0, batch=16))
    assert assert_agrees_with_mip(net, x, y, eps, results, 4) == 5
    statuses = [r.status for r in results if r.method == "BaB"]
    assert Status.VERIFIED in statuses and Status.FALSIFIED in statuses
    assert sum(r.lp_calls for r in results) >= 1


def test_mip_with_float32_bounds_of_a_fixed_input_is_the_forward_pass():
    """A point box (x_L = x_U) whose given pre-activation bounds are off by a float32
    rounding of a long sum (2e-6 relative, inward: what CROWN's bounds of a nearly fixed
    neuron did on cifar_conv_small_pgd): the MIP's minimum is the forward pass's margin, not
    "infeasible" (which proved every row of a box PGD falsifies)."""
    net = mlp(3)
    x = torch.rand(1, 1, 4, 4)
    y = net(x).argmin(1)          # the smallest logit: every margin is negative
    spec = robustness_spec(y, 4)
    pre, h = [], x.flatten(1)
    for layer in (net[1], net[3]):
        z = layer(h).detach()[0]
        rounding = 2e-6 * (1 + z.abs())
        pre.append((z + rounding, z - rounding))
        h = torch.relu(z[None])
    oracle = mip_minimum(net, x, x, spec, pre_bounds=pre, time_limit=30)
    margins = spec.C[0].double() @ net(x)[0].detach().double()
    assert oracle.optimal.all() and oracle.falsified
    assert np.allclose(oracle.value, margins.numpy(), atol=1e-4)


def test_bounds_crossing_by_a_rounding_error_are_no_empty_subdomain():
    """A point box with each pre-activation's lower bound a float32 rounding above its upper
    one (what CROWN's and hzono's bounds of a pixel-patch box did): the subdomain holds the
    point, so its bound is at most the forward pass's margin, never the +inf of an empty
    subdomain."""
    net = mlp(3)
    x = torch.rand(1, 1, 4, 4)
    y = net(x).argmin(1)
    spec = robustness_spec(y, 4)
    bm = BoundedModule(net, x)
    lower, upper, h = [], [], x.flatten(1)
    for layer in (net[1], net[3]):
        z = layer(h).detach()
        rounding = 2e-6 * (1 + z.abs())
        lower.append(z + rounding)
        upper.append(z - rounding)
        h = torch.relu(z)
    splits = [torch.zeros(1, t[0].numel(), dtype=torch.int8) for t in lower]
    lb, _ = bound_domains(bm, x, x, spec.C, spec.threshold, lower, upper, splits, iterations=2)
    margins = (spec.C[0] @ net(x)[0]).detach()
    assert (lb[0] <= margins + 1e-3).all(), (lb, margins)


def test_verified_samples_survive_strong_pgd_and_counterexamples_are_real():
    net = mlp(2)
    torch.manual_seed(1)
    x = torch.rand(8, 1, 4, 4)
    y = net(x).argmax(1)
    eps = 0.08
    results = verify(net, x, y, eps, timeout=60)
    statuses = {r.status for r in results}
    assert Status.VERIFIED in statuses and Status.FALSIFIED in statuses
    x_L, x_U = box(x, eps)
    spec = robustness_spec(y, 4)
    _, margin = pgd(net, x_L, x_U, spec, steps=50, restarts=30)
    assert sum(r.status is Status.VERIFIED and r.method == "BaB" for r in results) >= 1
    for i, r in enumerate(results):
        if r.status is Status.VERIFIED:
            assert margin[i] > 0
        if r.status is Status.FALSIFIED:  # BaB may find what PGD misses
            cex = r.counterexample
            assert ((cex >= x_L[i]) & (cex <= x_U[i])).all()
            with torch.no_grad():
                assert spec.select(slice(i, i + 1)).violated(net(cex)).all()
        assert 0 <= r.seconds < 70


def test_a_sample_out_of_time_is_a_timeout_never_a_guess():
    net = mlp(2)
    x = torch.rand(5, 1, 4, 4)
    y = net(x).argmax(1)
    results = verify(net, x, y, 0.08, timeout=1e-3, attack_restarts=0,
                     options=BaBOptions(attack_every=0))
    bab = [r for r in results if r.method == "BaB"]
    assert bab and all(r.status is Status.TIMEOUT and r.subdomains == 0 for r in bab)


@pytest.mark.parametrize("beta", [True, False])
def test_subdomain_bounds_hold_on_sampled_points_of_each_subdomain(beta):
    """Split two unstable neurons both ways: every sampled input of each of the four
    subdomains has margins above its bound (the beta sign convention of auto_LiRPA 0.3)."""
    net = mlp(3, n_in=4, width=20, depth=2)
    x = torch.rand(1, 4)
    y = net(x).argmax(1)
    spec = robustness_spec(y, 4)
    x_L, x_U = box(x, 0.3)
    bm = BoundedModule(net, x)
    _, lower, upper = root_bounds(bm, x_L, x_U, spec.C, spec.threshold)
    j = int(((lower[0] < 0) & (upper[0] > 0))[0].nonzero()[0])
    k = int(((lower[1] < 0) & (upper[1] > 0))[0].nonzero()[0])
    assert_split_bounds_hold(net, bm, spec, x_L, x_U, lower, upper, j, k, beta)


def test_refreshed_intermediate_bounds_hold_on_each_subdomain():
    """CROWN on the split-tightened bounds (``BaBOptions(refresh=True)``): every sampled
    input of a subdomain has its second-layer pre-activations inside the new bounds, which
    are never looser than the parent's."""
    net = mlp(3, n_in=4, width=20, depth=2)
    x = torch.rand(1, 4)
    spec = robustness_spec(net(x).argmax(1), 4)
    x_L, x_U = box(x, 0.3)
    bm = BoundedModule(net, x)
    _, lower, upper = root_bounds(bm, x_L, x_U, spec.C, spec.threshold)
    unstable = ((lower[0] < 0) & (upper[0] > 0))[0].nonzero().flatten()[:2].tolist()
    splits = [torch.zeros(4, 20, dtype=torch.int8), torch.zeros(4, 20, dtype=torch.int8)]
    splits[0][:, unstable[0]] = torch.tensor([1, 1, -1, -1], dtype=torch.int8)
    splits[0][:, unstable[1]] = torch.tensor([1, -1, 1, -1], dtype=torch.int8)
    new_lower, new_upper = refreshed_bounds(bm, x_L, x_U, spec.C,
                                            [t.expand(4, -1) for t in lower],
                                            [t.expand(4, -1) for t in upper], splits)
    assert (new_lower[1] >= lower[1] - 1e-6).all() and (new_upper[1] <= upper[1] + 1e-6).all()
    assert (new_upper[1] - new_lower[1]).sum() < (upper[1] - lower[1]).sum() * 4
    pts = x_L + (x_U - x_L) * torch.rand(100000, 4)
    with torch.no_grad():
        z1 = net[1](pts)
        z2 = net[3](net[2](z1))
    for d, (a, b) in enumerate([(1, 1), (1, -1), (-1, 1), (-1, -1)]):
        inside = (a * z1[:, unstable[0]] >= 0) & (b * z1[:, unstable[1]] >= 0)
        assert (z2[inside] >= new_lower[1][d] - 1e-5).all()
        assert (z2[inside] <= new_upper[1][d] + 1e-5).all()


def test_eps_zero_is_decided_by_the_forward_pass():
    net = mlp(1)
    x = torch.rand(4, 1, 4, 4)
    y = net(x).argmax(1)
    y[0] = (y[0] + 1) % 4
    results = verify(net, x, y, 0.0, timeout=5)
    assert results[0].status is Status.FALSIFIED
    assert all(r.status is Status.VERIFIED for r in results[1:])


def two_d_net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                        nn.Linear(16, 3)).eval()
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Linear):
                m.weight.mul_(3)  # sharper decision regions on [-4, 4]^2
    return net


def test_input_splitting_on_a_two_dimensional_input_agrees_with_mip():
    net = two_d_net()
    cand = torch.rand(4000, 2) * 8 - 4
    with torch.no_grad():
        top = net(cand).topk(2, dim=1).values
    x = cand[(top[:, 0] - top[:, 1]).argsort()[0:1600:100]]  # near and far from boundaries
    y = net(x).argmax(1)
    eps = 0.15
    results = verify(net, x, y, eps, timeout=10, attack_restarts=0, data_range=(-4, 4))
    assert sum(r.method == "input-BaB" for r in results) >= 2
    for i, r in enumerate(results):
        assert r.status is not Status.TIMEOUT
        oracle = mip_minimum(net, x[i:i + 1] - eps, x[i:i + 1] + eps,
                             robustness_spec(y[i:i + 1], 3))
        assert (r.status is Status.VERIFIED) == oracle.verified


def test_input_splitting_proves_what_crown_cannot():
    """A box that CROWN leaves open but the MIP proves robust is verified by splitting it."""
    net = two_d_net()
    bm = BoundedModule(net, torch.zeros(1, 2))
    torch.manual_seed(3)
    found = 0
    for x in torch.rand(40, 1, 2) * 8 - 4:
        y = net(x).argmax(1)
        spec = robustness_spec(y, 3)
        for eps in (0.3, 0.6, 1.0):
            lb, _, _ = root_bounds(bm, x - eps, x + eps, spec.C, spec.threshold)
            if (lb > 0).all() or not mip_minimum(net, x - eps, x + eps, spec).verified:
                continue
            outcome = input_branch_and_bound(bm, net, x - eps, x + eps, spec,
                                             time.perf_counter() + 20, BaBOptions())
            assert outcome.status is Status.VERIFIED and outcome.subdomains > 1
            found += 1
            break
        if found == 1:
            break
    assert found == 1


def test_residual_network_with_an_abstract_layer_is_decided_soundly():
    torch.manual_seed(4)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 20), nn.ReLU(), CorrelateAll(),
                        ParSum(nn.Sequential(nn.Linear(20, 20), nn.ReLU(), nn.Linear(20, 20)),
                               nn.Identity()),
                        nn.ReLU(), nn.Linear(20, 4)).eval()
    x = torch.rand(6, 1, 4, 4)
    y = net(x).argmax(1)
    eps = 0.06
    results = verify(net, x, y, eps, timeout=20)
    assert all(r.status is not Status.TIMEOUT for r in results)
    x_L, x_U = box(x, eps)
    spec = robustness_spec(y, 4)
    _, margin = pgd(net, x_L, x_U, spec, steps=50, restarts=20)
    for i, r in enumerate(results):
        if r.status is Status.VERIFIED:
            assert margin[i] > 0
        else:  # falsified: a real counterexample (PGD may miss what BaB's LP finds)
            cex = r.counterexample
            assert ((cex >= x_L[i]) & (cex <= x_U[i])).all()
            with torch.no_grad():
                assert spec.select(slice(i, i + 1)).violated(net(cex)).all()
    assert {r.status for r in results} == {Status.VERIFIED, Status.FALSIFIED}


def test_the_exact_lp_is_used_only_where_fixed_relus_make_the_graph_affine():
    x = torch.rand(1, 1, 4, 4)
    pooled = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                           nn.Flatten(), nn.Linear(8, 3)).eval()
    residual = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(),
                             ParSum(nn.Sequential(nn.Linear(8, 8), nn.ReLU()), nn.Identity()),
                             nn.Linear(8, 3)).eval()
    for net, exact in ((pooled, False), (residual, True), (mlp(0), True)):
        bm = BoundedModule(net, x)
        bm.compute_bounds(x=(BoundedTensor(x, PerturbationLpNorm(norm=np.inf, eps=0.1)),),
                          method="IBP")  # marks the perturbed nodes
        assert closable(bm) is exact


def test_general_spec_with_threshold():
    """``C f > t``: a threshold above the true minimum is falsified, one below it verified."""
    net = mlp(2)
    x = torch.rand(1, 1, 4, 4)
    C = torch.tensor([[[1.0, -1.0, 0.0, 0.0]]])
    x_L, x_U = box(x, 0.05)
    exact = mip_minimum(net, x_L, x_U, Spec(C, torch.zeros(1, 1))).value[0]
    for delta, status in ((-0.01, Status.VERIFIED), (0.01, Status.FALSIFIED)):
        spec = Spec(C, torch.tensor([[exact + delta]]))
        [r] = verify(net, x, eps=0.05, spec=spec, timeout=10)
        assert r.status is status


@pytest.mark.parametrize("timeout", [0, -1.0, math.nan, math.inf, "10"])
def test_bad_timeout_is_refused(timeout):
    net = mlp(0)
    with pytest.raises(VerificationError, match="timeout"):
        verify(net, torch.rand(1, 1, 4, 4), torch.tensor([0]), 0.1, timeout=timeout)


def test_spec_of_the_wrong_shape_is_refused():
    net = mlp(0)
    x = torch.rand(2, 1, 4, 4)
    with pytest.raises(VerificationError, match=r"spec C must have shape \(batch=2"):
        verify(net, x, eps=0.1, spec=Spec(torch.zeros(2, 3, 5), torch.zeros(2, 3)), timeout=1)
    with pytest.raises(VerificationError, match="threshold must have shape"):
        verify(net, x, eps=0.1, spec=Spec(torch.zeros(2, 3, 4), torch.zeros(2)), timeout=1)


def test_network_auto_lirpa_cannot_bound_is_refused_with_the_operator():
    class Sorted(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return torch.sort(self.fc(x), dim=1).values

    with pytest.raises(VerificationError, match="TopK"):
        verify(Sorted(), torch.rand(2, 4), torch.tensor([0, 1]), 0.1, timeout=5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_model_gives_the_cpu_answers():
    net = mlp(5)
    x = torch.rand(6, 1, 4, 4)
    y = net(x).argmax(1)
    cpu = verify(net, x, y, 0.08, timeout=20)
    gpu = verify(net.cuda(), x.cuda(), y.cuda(), 0.08, timeout=20)
    assert [r.status for r in cpu] == [r.status for r in gpu]


class NegativeReciprocal(nn.Module):
    """Issue 21's network: one input, outputs ``[1 / (x - 3), -0.6]``; on x in [-0.5, 1.5]
    the margin ``f_0 - f_1`` is -0.067 at x = 1.5."""

    def __init__(self, head=None):
        super().__init__()
        self.head = head or (lambda x: 1 / (x - 3))

    def forward(self, x):
        return torch.cat([self.head(x), 0 * x - 0.6], 1)


def test_a_graph_off_relu_networks_is_never_verified_wrongly():
    """alpha-CROWN "proved" it on auto_LiRPA 0.3's relaxation of 1/y (made for y > 0) once PGD
    missed the corner (no restarts here); its counterexample is checked on the model."""
    x_L, x_U = torch.tensor([[-0.5]]), torch.tensor([[1.5]])
    [r] = verify(NegativeReciprocal(), torch.tensor([[0.5]]), torch.tensor([0]), x_L=x_L, x_U=x_U,
                 timeout=10, attack_restarts=0)
    assert r.status is Status.FALSIFIED
    assert ((r.counterexample >= x_L) & (r.counterexample <= x_U)).all()
    with torch.no_grad():
        margin = NegativeReciprocal()(r.counterexample)
    assert margin[0, 0] < margin[0, 1]


def test_an_operator_verify_does_not_trust_is_refused_by_node():
    net = NegativeReciprocal(lambda x: torch.sin(x) - 1)
    with pytest.raises(VerificationError, match=r"graph node '/\d+' \(operator Sin"):
        verify(net, torch.tensor([[0.5]]), torch.tensor([0]), x_L=torch.tensor([[-0.5]]),
               x_U=torch.tensor([[1.5]]), timeout=5)


def test_a_falsification_without_a_violating_point_is_an_error():
    from lirpa_diffai.verify.api import Ledger
    ledger = Ledger(1, None, refutes=lambda i, point: False)
    with pytest.raises(VerificationError, match="without a point"):
        ledger.settle(0, Status.FALSIFIED, "BaB", counterexample=torch.zeros(1, 1))


@pytest.mark.parametrize("seed", range(4))
def test_answers_on_a_quotient_network_agree_with_a_dense_grid(seed):
    """Off ReLU networks (no MIP applies): on one input, every answer is checked against the
    margin on a grid of 20001 points of the box (a verified sample's grid minimum is > 0)."""
    torch.manual_seed(seed)
    a, b, c = torch.randn(3)
    net = NegativeReciprocal(lambda x: a / (x - 3) + b * x + c)
    x_L, x_U = torch.tensor([[-0.5]]), torch.tensor([[1.5]])
    grid = torch.linspace(-0.5, 1.5, 20001).unsqueeze(1)
    with torch.no_grad():
        out = net(grid)
    lowest = (out[:, 0] - out[:, 1]).min().item()
    [r] = verify(net, torch.tensor([[0.5]]), torch.tensor([0]), x_L=x_L, x_U=x_U, timeout=10,
                 attack_restarts=0)
    if r.status is Status.VERIFIED:
        assert lowest > 0
    else:
        assert r.status is Status.FALSIFIED or abs(lowest) < 1e-3
