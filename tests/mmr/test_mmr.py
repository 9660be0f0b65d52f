"""MMR's region distances against autograd Jacobians, the regularizer against a direct
implementation and finite differences, the region claim by sampling and attack, refusals."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lirpa_diffai.mmr import RegionError, mmr_loss, region_distances, relu_layers
from lirpa_diffai.mmr.regions import bounded_network


class Residual(nn.Module):
    """conv-relu, a residual block with eval-mode batch norm, average pooling, a concatenation
    of two ReLU branches, then two linear layers: every operator family of the graph pass."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(2, 4, 3, padding=1)
        self.a = nn.Conv2d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.b = nn.Conv2d(4, 4, 3, padding=1)
        self.pool = nn.AvgPool2d(2)
        self.left, self.right = nn.Linear(36, 6), nn.Linear(36, 5)
        self.fc = nn.Linear(11, 4)
        self.relus = nn.ModuleList(nn.ReLU() for _ in range(5))

    def forward(self, x):
        r = self.relus
        h = r[0](self.stem(x))
        h = r[2](h + self.b(r[1](self.bn(self.a(h)))))
        h = self.pool(h).flatten(1)
        return self.fc(torch.cat([r[3](self.left(h)), r[4](self.right(h))], 1))


def fully_connected():
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 9), nn.ReLU(), nn.Linear(9, 7), nn.ReLU(),
                         nn.Linear(7, 4))


def convolutional():
    return nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Conv2d(3, 4, 2), nn.ReLU(), nn.Flatten(), nn.Linear(16, 6),
                         nn.ReLU(), nn.Linear(6, 4))


NETWORKS = {"fc": (fully_connected, (2, 2, 3)), "conv": (convolutional, (2, 6, 6)),
            "residual": (Residual, (2, 6, 6))}


def make(kind: str, batch: int = 3):
    build, shape = NETWORKS[kind]
    net = build().double().eval()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    x = torch.rand((batch,) + shape, dtype=torch.float64)
    y = torch.arange(batch) % 4
    return net, x, y


def relu_inputs(net, x):
    """Every ReLU module's input in call order, flattened per sample, and the logits."""
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(i[0].flatten(1)))
             for m in net.modules() if isinstance(m, nn.ReLU)]
    try:
        logits = net(x)
    finally:
        for h in hooks:
            h.remove()
    return torch.cat(seen, 1), logits


def reference_distances(net, x, y, q):
    """d_B and d_D of each sample from autograd Jacobians of its pre-activations and logits."""
    d_b, d_d = [], []
    for b in range(len(x)):
        def outputs(t):
            z, f = relu_inputs(net, t.unsqueeze(0))
            return torch.cat([z, f], 1)[0]
        jac = torch.autograd.functional.jacobian(outputs, x[b]).flatten(1)
        value = outputs(x[b])
        k = 4
        jz, jf, z, f = jac[:-k], jac[-k:], value[:-k], value[-k:]
        d_b.append(z.abs() / jz.norm(p=q, dim=1).clamp_min(1e-5))
        gap = f[y[b]] - f
        d = gap / (jf[y[b]] - jf).norm(p=q, dim=1).clamp_min(1e-5)
        d[y[b]] = math.inf
        d_d.append(d)
    return torch.stack(d_b), torch.stack(d_d)


@pytest.mark.parametrize("kind", list(NETWORKS))
@pytest.mark.parametrize("p,q", [("inf", 1), (2, 2)])
def test_distances_equal_autograd_jacobians(kind, p, q):
    net, x, y = make(kind)
    d_b, d_d = region_distances(net, x, y, p, chunk=5)   # several chunks, the last partial
    ref_b, ref_d = reference_distances(net, x, y, q)
    assert d_b.shape == ref_b.shape and d_b.shape[1] == sum(l.size for l in relu_layers(bounded_network(net, x)))
    torch.testing.assert_close(d_b, ref_b, rtol=1e-5, atol=1e-12)
    torch.testing.assert_close(d_d, ref_d, rtol=1e-5, atol=1e-12)


def test_chunking_does_not_change_the_distances():
    net, x, y = make("conv")
    whole = region_distances(net, x, y, "inf", chunk=72)
    for chunk in (1, 7):
        for a, b in zip(whole, region_distances(net, x, y, "inf", chunk=chunk)):
            torch.testing.assert_close(a, b)


def direct_mmr(net, x, y, gamma_b, gamma_d, k_b, k_d, q):
    d_b, d_d = reference_distances(net, x, y, q)
    rb = (1 - torch.topk(d_b, k_b, largest=False).values / gamma_b).clamp_min(0).sum(1) / k_b
    dd = (1 - torch.topk(d_d, k_d, largest=False).values / gamma_d).clamp_min(0).sum(1) / k_d
    return (rb + dd).mean()


@pytest.mark.parametrize("kind", list(NETWORKS))
@pytest.mark.parametrize("p,q", [("inf", 1), (2, 2)])
def test_mmr_loss_equals_the_formula(kind, p, q):
    net, x, y = make(kind)
    h = sum(l.size for l in relu_layers(bounded_network(net, x)))
    gamma = 0.5 if q == 2 else 0.2
    got = mmr_loss(net, x, y, gamma_b=gamma, gamma_d=2 * gamma, k_b=0.3, k_d=4, p=p)
    want = direct_mmr(net, x, y, gamma, 2 * gamma, max(1, int(0.3 * h)), 4, q)
    assert want > 0
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-12)  # float32, two formulas


@pytest.mark.parametrize("kind", list(NETWORKS))
@pytest.mark.parametrize("p", ["inf", 2])
def test_mmr_gradient_matches_finite_differences(kind, p):
    net, x, y = make(kind)
    kwargs = dict(gamma_b=1.0, gamma_d=3.0, k_b=0.5, k_d=4, p=p)
    loss = mmr_loss(net, x, y, **kwargs)
    params = [w for w in net.parameters() if w.requires_grad]
    grads = torch.autograd.grad(loss, params)
    assert any(g.abs().sum() > 0 for g in grads)
    gen = torch.Generator().manual_seed(1)
    h = 1e-6
    for w, g in zip(params, grads):
        for flat in torch.randint(w.numel(), (2,), generator=gen):
            with torch.no_grad():
                w.view(-1)[flat] += h
                up = mmr_loss(net, x, y, **kwargs)
                w.view(-1)[flat] -= 2 * h
                down = mmr_loss(net, x, y, **kwargs)
                w.view(-1)[flat] += h
            fd = (up - down) / (2 * h)
            assert abs(fd - g.reshape(-1)[flat]) <= 1e-5 * (1 + abs(fd)), (w.shape, flat)


def patterns(net, x):
    z, f = relu_inputs(net, x)
    return z > 0, f.argmax(1)


def worst_direction(net, x, b, column, q):
    """The unit (l_p) direction from x[b] that moves pre-activation ``column`` towards 0 fastest."""
    xb = x[b:b + 1].clone().requires_grad_(True)
    z, _ = relu_inputs(net, xb)
    grad, = torch.autograd.grad(z[0, column], xb)
    toward = -torch.sign(z[0, column].detach())
    if q == 1:
        return toward * grad.sign()
    return toward * grad / grad.norm()


@pytest.mark.parametrize("kind", ["conv", "residual"])
@pytest.mark.parametrize("p,q", [("inf", 1), (2, 2)])
def test_the_region_holds_inside_d_b_and_ends_at_it(kind, p, q):
    """Sampling and attack: every point closer than the smallest d_B keeps the ReLU pattern
    (and so the prediction, below the smallest d_D too); along the worst direction of the
    nearest boundary the pattern changes just beyond it."""
    net, x, y = make(kind, batch=4)
    d_b, d_d = region_distances(net, x, y, p)
    pattern, label = patterns(net, x)
    for b in range(len(x)):
        r, j = d_b[b].min(0)
        r = r.item()
        ball = torch.rand((64,) + x.shape[1:], dtype=x.dtype) * 2 - 1
        if q == 2:
            ball = ball / ball.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        else:
            ball[:32] = ball[:32].sign()                  # corners of the l_inf ball
        direction = worst_direction(net, x, b, j, q)
        inside = x[b] + 0.999 * r * torch.cat([ball, direction])
        got, _ = patterns(net, inside)
        assert (got == pattern[b]).all(), f"sample {b}: pattern changed within d_B = {r:.3g}"
        attack = attack_pattern(net, x[b:b + 1], 0.999 * r, q)
        got, _ = patterns(net, attack)
        assert (got == pattern[b]).all(), f"sample {b}: PGD changed the pattern within d_B"
        beyond, _ = patterns(net, x[b] + 1.001 * r * direction)
        assert not (beyond == pattern[b]).all()
        within = min(r, d_d[b].min().item())
        if within > 0:
            _, pred = patterns(net, x[b] + 0.999 * within * torch.cat([ball, direction]))
            assert (pred == label[b]).all()


def attack_pattern(net, x, radius, q, steps=20):
    """PGD in the l_p ball of ``radius`` that pushes every pre-activation towards zero."""
    sign = torch.sign(relu_inputs(net, x)[0]).detach()
    delta = torch.zeros_like(x, requires_grad=True)
    for _ in range(steps):
        z, _ = relu_inputs(net, x + delta)
        loss = -(z * sign).clamp_min(0).min()
        grad, = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            if q == 1:
                delta += radius / 4 * grad.sign()
                delta.clamp_(-radius, radius)
            else:
                delta += radius / 4 * grad / grad.norm().clamp_min(1e-30)
                delta *= (radius / delta.norm().clamp_min(1e-30)).clamp(max=1)
    return (x + delta).detach()


def test_misclassified_points_have_negative_decision_distances():
    net, x, y = make("fc", batch=8)
    _, d_d = region_distances(net, x, y)
    wrong = net(x).argmax(1) != y
    assert ((d_d.min(1).values < 0) == wrong).all()
    assert torch.isinf(d_d.gather(1, y.view(-1, 1))).all()


# ----------------------------------------------------------------------------- refusals

@pytest.mark.parametrize("kwargs,message", [
    (dict(gamma_b=0.0), "gamma_b must be > 0"),
    (dict(gamma_d=-1.0), "gamma_d must be > 0"),
    (dict(k_b=0), "k_b must be a fraction"),
    (dict(k_b=1.5), "k_b must be a fraction"),
    (dict(k_b=1000), "k_b = 1000 but the network has only 16 ReLU inputs"),
    (dict(k_d=5), "k_d = 5 but the network has only 4 classes"),
    (dict(p=1), "p must be inf or 2"),
])
def test_bad_arguments_are_refused(kwargs, message):
    net, x, y = make("fc")
    args = dict(gamma_b=0.1, gamma_d=0.1, k_b=3, k_d=4, p="inf", **{})
    args.update(kwargs)
    with pytest.raises(RegionError, match=message):
        mmr_loss(net, x, y, **args)


@pytest.mark.parametrize("layer,op", [(nn.Sigmoid(), "Sigmoid"), (nn.Tanh(), "Tanh"),
                                      (nn.MaxPool2d(2), "MaxPool")])
def test_non_piecewise_linear_networks_are_refused_by_node(layer, op):
    net = nn.Sequential(nn.Conv2d(1, 2, 3), layer, nn.Flatten(), nn.LazyLinear(3))
    x = torch.rand(2, 1, 6, 6)
    net(x)
    with pytest.raises(RegionError, match=rf"graph node '.+' \(operator {op}"):
        region_distances(net, x, torch.tensor([0, 1]))


def test_training_mode_batch_norm_uses_the_batch_statistics_held_fixed():
    """In training mode the region is that of the network with the clean batch's batch-norm
    statistics held fixed (auto_LiRPA's convention): the eval-mode network with those
    statistics as running statistics has the same distances."""
    net, x, y = make("residual", batch=5)
    net.train()
    captured = []
    hook = net.bn.register_forward_hook(lambda m, i, o: captured.append(i[0].detach()))
    net(x)
    hook.remove()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    d_b, d_d = region_distances(net, x, y)
    h = captured[0]
    net.load_state_dict(state)
    net.eval()
    net.bn.running_mean.copy_(h.mean((0, 2, 3)))
    net.bn.running_var.copy_(h.var((0, 2, 3), unbiased=False))
    ref_b, ref_d = reference_distances(net, x, y, 1)
    torch.testing.assert_close(d_b, ref_b, rtol=1e-5, atol=1e-12)
    torch.testing.assert_close(d_d, ref_d, rtol=1e-5, atol=1e-12)


def test_the_traced_graph_follows_the_networks_weights_and_running_statistics():
    """A cached graph reads the network's current tensors, and tracing it leaves an autograd
    graph already built on the network usable."""
    net, x, y = make("residual")
    ce = nn.functional.cross_entropy(net(x), y)        # built before the first trace
    loss = ce + mmr_loss(net, x, y, gamma_b=1.0, gamma_d=1.0, k_b=5, k_d=4)
    loss.backward()
    with torch.no_grad():
        net.bn.running_mean.add_(0.3)
        net.fc.weight.mul_(1.5)
    d_b, d_d = region_distances(net, x, y)
    ref_b, ref_d = reference_distances(net, x, y, 1)
    torch.testing.assert_close(d_b, ref_b, rtol=1e-5, atol=1e-12)
    torch.testing.assert_close(d_d, ref_d, rtol=1e-5, atol=1e-12)


class Square(nn.Module):
    def forward(self, x):
        h = torch.relu(x.flatten(1))
        return h * h


def test_a_product_of_two_input_dependent_values_is_refused_by_node():
    x = torch.rand(2, 1, 2, 2)
    with pytest.raises(RegionError, match=r"node '.+' \(BoundMul\) multiplies two perturbed"):
        region_distances(Square(), x, torch.tensor([0, 1]))
