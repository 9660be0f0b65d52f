"""Branch and bound on grafted networks (linearity grafting's ``m (a z + b) + (1 - m) relu(z)``):
it splits the ReLU neurons only, closes fully split subdomains with the exact LP (the graph is
affine there), and every answer agrees with the MIP oracle run on an equivalent ReLU network
built independently from the weights."""
import pytest
import torch
from torch import nn

from lirpa_diffai import BoundedModule
from lirpa_diffai.grafting import GraftedReLU
from lirpa_diffai.verify import BaBOptions, Status, mip_minimum, robustness_spec, verify
from lirpa_diffai.verify.falsify import pgd
from lirpa_diffai.verify.bounding import Domains, affine_neurons, root_bounds, split_relus
from lirpa_diffai.verify.lp import closable

from tests.support import assert_split_bounds_hold

pytest.importorskip("highspy", reason="the exact LP/MIP needs highspy "
                    "(pip install 'lirpa-diffai[complete]')")


def grafted_mlp(seed, n_in=16, width=24, n_out=4, depth=2, ratio=0.5):
    """Flatten, then ``depth`` times Linear + GraftedReLU (``ratio`` of the neurons grafted,
    random slopes of both signs and intercepts), then Linear."""
    torch.manual_seed(seed)
    layers, d = [nn.Flatten()], n_in
    for _ in range(depth):
        act = GraftedReLU((torch.rand(width) < ratio).float())
        act.slope.data.uniform_(-1.0, 1.5)
        act.intercept.data.uniform_(-0.3, 0.3)
        layers += [nn.Linear(d, width), act]
        d = width
    return nn.Sequential(*layers, nn.Linear(d, n_out)).eval()


def relu_equivalent(net: nn.Sequential) -> nn.Sequential:
    """The same function on inputs in [0, 1] with ReLUs only: a grafted neuron ``a z + b``
    becomes ``a relu(z + K) + b - a K`` with ``K`` above every ``|z|`` (a crude bound carried
    layer by layer), an always active ReLU the MIP needs no binary for; each neuron becomes two
    units, relu(z) for its ReLU part and relu(z + K), folded into the following linear layer."""
    mods = list(net)
    out, pending, reach = [mods[0]], None, 1.0   # act(z) = G relu(Z) + c; |input| <= reach
    for mod in mods[1:]:
        if isinstance(mod, nn.Linear):
            W, b = mod.weight.detach(), mod.bias.detach()
            reach = float(W.abs().sum(1).max() * reach + b.abs().max())
            if pending is not None:
                G, c = pending
                W, b = W @ G, b + W @ c
            out.append(nn.Linear(W.shape[1], W.shape[0]))
            out[-1].weight.data, out[-1].bias.data = W.clone(), b.clone()
        else:
            m, a, k = mod.mask.detach(), mod.slope.detach(), 2 * reach + 1
            last = out[-1]
            W, b = last.weight.data, last.bias.data
            last.weight.data, last.bias.data = torch.cat([W, W]), torch.cat([b, b + k])
            out.append(nn.ReLU())
            pending = (torch.cat([torch.diag(1 - m), torch.diag(m * a)], dim=1),
                       m * (mod.intercept.detach() - a * k))
            reach = float(reach * max(1.0, a.abs().max()) + mod.intercept.detach().abs().max())
    return nn.Sequential(*out).eval()


def box(x, eps):
    return (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)


def test_the_relu_equivalent_computes_the_grafted_network():
    net = grafted_mlp(0)
    x = torch.rand(256, 1, 4, 4)
    with torch.no_grad():
        assert torch.allclose(relu_equivalent(net)(x), net(x), atol=1e-5)


def test_grafted_networks_are_decided_and_agree_with_mip():
    """Without attacks every sample is decided by BaB alone and agrees with the exact MIP of the
    equivalent ReLU network; before grafted ReLUs were split, BaB stopped at alpha-CROWN
    (a timeout on every undecided sample)."""
    eps, net = 0.1, grafted_mlp(2, width=16)
    oracle_net = relu_equivalent(net)
    torch.manual_seed(0)
    x = torch.rand(6, 1, 4, 4)
    y = net(x).argmax(1)
    results = verify(net, x, y, eps, timeout=60, attack_restarts=0,
                     options=BaBOptions(attack_every=0, batch=16))
    bab = [r for r in results if r.method == "BaB"]
    assert len(bab) >= 2 and all(r.subdomains > 0 for r in bab)
    assert sum(r.lp_calls for r in results) >= 1
    statuses = {r.status for r in bab}
    assert statuses == {Status.VERIFIED, Status.FALSIFIED}
    for i, r in enumerate(results):
        spec = robustness_spec(y[i:i + 1], 4)
        x_L, x_U = box(x[i:i + 1], eps)
        oracle = mip_minimum(oracle_net, x_L, x_U, spec, time_limit=60)
        assert oracle.optimal.all()
        assert (r.status is Status.VERIFIED) == (not oracle.falsified), (i, r, oracle.value)
        if r.status is Status.FALSIFIED:
            cex = r.counterexample
            assert ((cex >= x_L) & (cex <= x_U)).all()
            with torch.no_grad():
                assert spec.violated(net(cex)).all()


def test_verified_grafted_samples_survive_strong_pgd_at_eps_and_at_zero():
    net = grafted_mlp(5, depth=3)
    torch.manual_seed(1)
    x = torch.rand(8, 1, 4, 4)
    y = net(x).argmax(1)
    for eps in (0.08, 0.0):
        results = verify(net, x, y, eps, timeout=30)
        x_L, x_U = box(x, eps)
        _, margin = pgd(net, x_L, x_U, robustness_spec(y, 4), steps=50, restarts=20)
        for i, r in enumerate(results):
            assert r.status is not Status.TIMEOUT
            assert (r.status is Status.VERIFIED) == bool(margin[i] > 0), (eps, i, r)


def small_grafted_root():
    """A 4-input grafted network, one sample's 0.3-box, its traced graph and root bounds:
    ``(net, x_L, x_U, spec, bm, lower, upper, affine)``."""
    net = grafted_mlp(3, n_in=4, width=20)
    x = torch.rand(1, 4)
    spec = robustness_spec(net(x).argmax(1), 4)
    x_L, x_U = box(x, 0.3)
    bm = BoundedModule(net, x)
    _, lower, upper = root_bounds(bm, x_L, x_U, spec.C, spec.threshold)
    affine = [affine_neurons(node) for node in split_relus(bm)]
    return net, x_L, x_U, spec, bm, lower, upper, affine


def test_grafted_neurons_are_never_split_and_the_graph_closes_to_an_lp():
    net, _, _, _, bm, lower, upper, affine = small_grafted_root()
    assert len(affine) == 2 and closable(bm)
    for fixed, act in zip(affine, (net[2], net[4])):
        assert torch.equal(fixed[0], act.mask.bool())
    root = Domains(lower, upper, [torch.zeros(1, 20, dtype=torch.int8)] * 2, torch.zeros(1, 4))
    for free, fixed, lo, up in zip(root.unstable(affine), affine, lower, upper):
        assert not (free & fixed).any()
        assert torch.equal(free, (lo < 0) & (up > 0) & ~fixed)
    assert any(((lo < 0) & (up > 0) & f).any() for lo, up, f in zip(lower, upper, affine)), \
        "the test needs an unstable grafted neuron"


@pytest.mark.parametrize("beta", [True, False])
def test_split_subdomain_bounds_of_a_grafted_network_hold_on_sampled_points(beta):
    """Split one ReLU neuron of each grafted layer both ways: every sampled input of each of
    the four subdomains has margins above its bound (beta acts through the grafted node)."""
    net, x_L, x_U, spec, bm, lower, upper, affine = small_grafted_root()
    free = Domains(lower, upper, [torch.zeros(1, 20, dtype=torch.int8)] * 2,
                   torch.zeros(1, 4)).unstable(affine)
    j, k = (int(f[0].nonzero()[0]) for f in free)
    assert_split_bounds_hold(net, bm, spec, x_L, x_U, lower, upper, j, k, beta)


@pytest.mark.parametrize("ratio, eps", [(1.0, 0.15), (0.0, 0.2)])
def test_nothing_to_split_is_decided_by_the_exact_lp(ratio, eps):
    """Every neuron grafted (an affine network: nothing to split) or no activation at all:
    the fully fixed root goes straight to the exact LP, for several images in one call."""
    net = grafted_mlp(4, width=12, ratio=ratio)
    if ratio == 0.0:
        net = nn.Sequential(*[m for m in net if not isinstance(m, GraftedReLU)]).eval()
        net[-1].weight.data *= 20   # margins that vary across the box
    torch.manual_seed(2)
    x = torch.rand(4, 1, 4, 4)
    y = net(x).argmax(1)
    results = verify(net, x, y, eps, timeout=30, attack_restarts=0,
                     options=BaBOptions(attack_every=0))
    oracle_net = relu_equivalent(net) if ratio else net
    statuses = set()
    for i, r in enumerate(results):
        oracle = mip_minimum(oracle_net, *box(x[i:i + 1], eps), robustness_spec(y[i:i + 1], 4))
        assert (r.status is Status.VERIFIED) == (not oracle.falsified), (i, r)
        statuses.add(r.status)
    assert statuses == {Status.VERIFIED, Status.FALSIFIED}
