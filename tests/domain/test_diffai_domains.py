"""DiffAI's domain names (``lirpa_diffai.domain.methods``): each gives the bounds of an independent
plain-torch implementation of DiffAI's definitions on ConvSmall-, ConvBig- and
ResNet-Tiny-shaped networks (small widths); the pure zonotope domain is tighter than HNIPS on
average; the abstract layers CorrRand, DecorrRand, ToZono, ToHZono do what DiffAI's do."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from auto_LiRPA import BoundedTensor, PerturbationLpNorm
from torch import nn

import lirpa_diffai
from lirpa_diffai import BoundedModule, UnsupportedOperatorError
from lirpa_diffai.domain.methods import DIFFAI_NAMES
from lirpa_diffai.models import ParSum

from tests.support import assert_inside, attack_points, box_samples


EPS = 0.03


# ------------------------------------------------- the reference: DiffAI's definitions
# A zonotope is (head (B, *s), beta (B, *s), E (m, B, *s)); rows are aligned by position, as
# in DiffAI (a branch only appends rows after those of its input).
def ref_affine(z, op, op_abs, bias):
    head, beta, E = z
    folded = op(E.flatten(0, 1)).unflatten(0, E.shape[:2]) if E.shape[0] else \
        E.new_zeros((0,) + op(head).shape)
    return op(head) + bias, op_abs(beta), folded


def ref_add(a, b):
    (ha, ba, Ea), (hb, bb, Eb) = a, b
    m = max(Ea.shape[0], Eb.shape[0])
    pad = [E if E.shape[0] == m else torch.cat([E, E.new_zeros((m - E.shape[0],) + E.shape[1:])]) for E in (Ea, Eb)]
    return ha + hb, ba + bb, pad[0] + pad[1]


def ref_relu(z, variant, pure):
    """DiffAI's creluBoxy / creluSwitch / creluSmooth / creluNIPS, then, for its Zonotope,
    ``applySuper``: one new row ``e_i * beta`` per element."""
    c, b, E = z
    r = b + E.abs().sum(0)
    l, u = c - r, c + r
    if E.shape[0] == 0:  # no rows: the exact interval ReLU
        lo, hi = l.clamp_min(0), u.clamp_min(0)
        return (hi + lo) / 2, (hi - lo) / 2, E
    cross = (l < 0) & (u > 0)
    pos = (c > 0).to(c.dtype)
    if variant == "boxy":
        out = (torch.where(cross, u / 2, pos * c), torch.where(cross, u / 2, pos * b), E * (~cross * pos))
    elif variant == "switch":
        box = cross & (-l > u)
        line = cross & ~box
        out = (torch.where(box, u / 2, torch.where(line, c - l / 2, pos * c)),
               torch.where(box, u / 2, torch.where(line, b - l / 2, pos * b)),
               E * torch.where(cross, line.to(c.dtype), pos))
    elif variant == "smooth":
        nl, pu = (-l).clamp_min(0), u.clamp_min(0)
        t = nl / (pu + nl + 1e-4)
        alive = (u > 0).to(c.dtype)
        out = (alive * ((1 - t) * (c + nl / 2) + t * pu / 2), alive * ((1 - t) * (b + nl / 2) + t * pu / 2),
               E * (alive * (1 - t)))
    else:  # NIPS
        lam = torch.where((u > 0) & (u - l > 0), u / (u - l), torch.zeros_like(u))
        mu = -lam * l / 2
        keep = l >= 0
        out = (torch.where(keep, c, lam * c + mu), torch.where(keep, b, lam * b + mu), torch.where(keep, E, lam * E))
    if not pure:
        return out
    c, b, E = out
    n = b[0].numel()
    rows = torch.diag_embed(b.flatten(1)).permute(1, 0, 2).reshape((n,) + tuple(b.shape))
    return c, torch.zeros_like(b), torch.cat([E, rows])


def ref_layers(z, layers, variant, pure):
    for layer in layers:
        if isinstance(layer, nn.Conv2d):
            def conv(w):
                return lambda t: nn.functional.conv2d(t, w, None, layer.stride, layer.padding)
            z = ref_affine(z, conv(layer.weight), conv(layer.weight.abs()), layer.bias.view(-1, 1, 1))
        elif isinstance(layer, nn.Linear):
            z = ref_affine(z, lambda t: t @ layer.weight.T, lambda t: t @ layer.weight.abs().T, layer.bias)
        elif isinstance(layer, nn.Flatten):
            z = tuple(t.flatten(1) for t in z[:2]) + (z[2].flatten(2),)
        elif isinstance(layer, nn.ReLU):
            z = ref_relu(z, variant, pure)
        elif isinstance(layer, ParSum):
            z = ref_add(*(ref_layers(z, [branch], variant, pure) for branch in (layer.branch1, layer.branch2)))
        elif isinstance(layer, nn.Sequential):
            z = ref_layers(z, layer, variant, pure)
        elif not isinstance(layer, nn.Identity):
            raise TypeError(layer)
    return z


REF_DOMAINS = {"Box": ("boxy", False, False), "HBox": ("boxy", True, False),
               "HSwitch": ("switch", True, False), "HSmooth": ("smooth", True, False),
               "HNIPS": ("nips", True, False), "ZBox": ("boxy", True, True),
               "ZSwitch": ("switch", True, True), "ZSmooth": ("smooth", True, True),
               "ZNIPS": ("nips", True, True)}


def reference_bounds(net, x, eps, name):
    """DiffAI's input element (``Box.box``: beta = eps; ``HBox.box``: ``errors = e_i * eps``,
    no beta) through the network."""
    variant, rows, pure = REF_DOMAINS[name]
    n = x[0].numel()
    if rows:
        E = eps * torch.eye(n, dtype=x.dtype).unsqueeze(1).expand(n, x.shape[0], n).reshape((n,) + tuple(x.shape))
        z = (x, torch.zeros_like(x), E)
    else:
        z = (x, torch.full_like(x, eps), x.new_zeros((0,) + tuple(x.shape)))
    c, b, E = ref_layers(z, net, variant, pure)
    r = b + E.abs().sum(0)
    return c - r, c + r


# ----------------------------------------------------------------- networks
def conv_small():
    return nn.Sequential(nn.Conv2d(1, 4, 4, stride=2, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2, padding=1),
                         nn.ReLU(), nn.Flatten(), nn.Linear(54, 16), nn.ReLU(), nn.Linear(16, 5))


def conv_big():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 4, stride=2, padding=1), nn.ReLU(),
                         nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 4, stride=2, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(24, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 5))


def resnet_tiny():
    def block():
        return ParSum(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1)),
                      nn.Identity())
    return nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(), block(), nn.ReLU(), block(), nn.ReLU(),
                         nn.Flatten(), nn.Linear(4 * 5 * 5, 16), nn.ReLU(), nn.Linear(16, 5))


NETS = {"ConvSmall": conv_small, "ConvBig": conv_big, "ResNet-Tiny": resnet_tiny}


def ball(x, eps):
    return BoundedTensor(x, PerturbationLpNorm(norm=np.inf, eps=eps))


@pytest.fixture(scope="module")
def bounded_nets():
    out = {}
    for i, (name, build) in enumerate(NETS.items()):
        torch.manual_seed(i)
        net = build().double().eval()
        x = torch.rand(3, 1, 10, 10, dtype=torch.float64)
        out[name] = (net, x, BoundedModule(net, x))
    return out


# ----------------------------------------------------------------- tests
def test_every_diffai_name_is_a_method_and_has_a_reference():
    assert set(DIFFAI_NAMES) == set(REF_DOMAINS) | {"HRand"}


@pytest.mark.parametrize("net_name", list(NETS))
def test_diffai_names_give_the_reference_bounds(bounded_nets, net_name):
    net, x, bm = bounded_nets[net_name]
    with torch.no_grad():
        for name in REF_DOMAINS:
            lb, ub = bm.compute_bounds(x=(ball(x, EPS),), method=name)
            ref_lb, ref_ub = reference_bounds(net, x, EPS, name)
            scale = (ref_ub - ref_lb).abs().max()
            assert torch.allclose(lb, ref_lb, rtol=1e-5, atol=1e-5 * scale), (net_name, name)
            assert torch.allclose(ub, ref_ub, rtol=1e-5, atol=1e-5 * scale), (net_name, name)


def test_box_is_ibp_and_names_ignore_the_options(bounded_nets):
    """``Box`` has no rows (IBP's bounds); ``HBox`` correlates every input dim whatever
    ``correlate_input`` says; ``hzono`` follows the options."""
    net, x, _ = bounded_nets["ConvSmall"]
    bm = BoundedModule(net, x, bound_opts={"hzono": {"correlate_input": 3, "relu": "deepz"}})
    with torch.no_grad():
        box = bm.compute_bounds(x=(ball(x, EPS),), method="Box")
        ibp = bm.compute_bounds(x=(ball(x, EPS),), method="IBP")
        assert all(torch.allclose(a, b) for a, b in zip(box, ibp))
        bm.compute_bounds(x=(ball(x, EPS),), method="HBox")
        assert bm.hzono_output.num_errors >= x[0].numel()
        bm.compute_bounds(x=(ball(x, EPS),), method="hzono")
        assert bm.hzono_output.num_errors <= 3


def test_pure_zonotope_is_tighter_than_hnips_on_average(bounded_nets):
    """ZNIPS vs HNIPS on the same input: mean width smaller on every net; the elements where
    ZNIPS is wider are reported (its fresh rows can cancel; a box part cannot)."""
    report = []
    with torch.no_grad():
        for name, (net, x, bm) in bounded_nets.items():
            lz, uz = bm.compute_bounds(x=(ball(x, EPS),), method="ZNIPS")
            lh, uh = bm.compute_bounds(x=(ball(x, EPS),), method="HNIPS")
            wz, wh = uz - lz, uh - lh
            assert wz.mean() < wh.mean(), name
            report.append(f"{name}: ZNIPS/HNIPS mean width {float(wz.mean() / wh.mean()):.3f}, "
                          f"{int((wz > wh * (1 + 1e-9)).sum())}/{wz.numel()} bounds wider")
    print("\n".join(report))


def network_with(*layers):
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(6, 12), nn.ReLU(), *layers, nn.Linear(12, 12), nn.ReLU(), nn.Linear(12, 3)).double()


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("method", ["ZBox", "ZNIPS", "ZSwitch", "ZSmooth", "HRand"])
def test_pure_domains_sound_with_attacks_and_exact_at_eps_0(method, training):
    """Sampling and PGD points inside the bounds, bounds = f(x) at eps = 0; in training mode
    the only_train layers CorrRand / DecorrRand act inside the pure zonotope."""
    torch.manual_seed(5)
    net = network_with(lirpa_diffai.CorrRand(3), nn.Linear(12, 12).double(), nn.ReLU(), lirpa_diffai.DecorrRand(4))
    x = torch.rand(4, 6, dtype=torch.float64)
    bm = BoundedModule(net, x, bound_opts={"hzono": {"correlate_input": "random:3"}})
    bm.train(training)
    lb, ub = bm.compute_bounds(x=(ball(x, 0.2),), method=method)
    points = torch.cat([box_samples(x - 0.2, x + 0.2, 300), attack_points(net, x - 0.2, x + 0.2)])
    with torch.no_grad():
        assert_inside(net(points.flatten(0, 1)).view(*points.shape[:2], -1), lb, ub)
        lb0, ub0 = bm.compute_bounds(x=(ball(x, 0.0),), method=method)
        assert torch.allclose(lb0, net(x)) and torch.allclose(ub0, net(x))


def test_hrand_needs_its_count():
    net = network_with()
    x = torch.rand(2, 6, dtype=torch.float64)
    with pytest.raises(ValueError, match="random:k"):
        BoundedModule(net, x).compute_bounds(x=(ball(x, 0.1),), method="HRand")
    bm = BoundedModule(net, x, bound_opts={"hzono": {"correlate_input": "random:4"}})
    bm.compute_bounds(x=(ball(x, 0.1),), method="HRand")
    assert bm.hzono_output.num_errors == 4


def test_pure_zonotope_refuses_an_unclassified_operator_by_node():
    """An operator with an hzono transformer but none in the pure zonotope table is refused."""
    from lirpa_diffai.bound_ops import zono
    net = network_with()
    x = torch.rand(2, 6, dtype=torch.float64)
    bm = BoundedModule(net, x)
    relu = next(n for n in bm._modules.values() if type(n).__name__ == "BoundRelu")
    saved = zono.ZONO_TRANSFORMERS.pop(type(relu))
    try:
        with pytest.raises(UnsupportedOperatorError, match=f"node '{relu.name}'.*Relu"):
            bm.compute_bounds(x=(ball(x, 0.1),), method="ZNIPS")
        bm.compute_bounds(x=(ball(x, 0.1),), method="HNIPS")  # hzono still has it
    finally:
        zono.ZONO_TRANSFORMERS[type(relu)] = saved


# ------------------------------------------------------------ abstract layers
def hzono_rows(net, x, method="hzono", training=True, **opts):
    bm = BoundedModule(net, x, bound_opts={"hzono": opts})
    bm.train(training)
    bounds = bm.compute_bounds(x=(ball(x, 0.1),), method=method)
    return bm.hzono_output, bounds


def test_tozono_then_tohzono_switch_the_domain():
    """ToZono in front of HNIPS's network gives ZNIPS's bounds; ToHZono after the first ReLU
    of a ZNIPS pass equals an HNIPS pass with ToZono, ToHZono there; both layers are the
    identity for IBP."""
    x = torch.rand(3, 6, dtype=torch.float64)
    plain = network_with(nn.Linear(12, 12).double(), nn.ReLU())
    _, znips = hzono_rows(plain, x, "ZNIPS")
    _, got = hzono_rows(nn.Sequential(lirpa_diffai.ToZono(), *plain), x, "HNIPS")
    assert all(torch.allclose(a, b) for a, b in zip(got, znips))
    _, got = hzono_rows(nn.Sequential(*plain[:2], lirpa_diffai.ToHZono(), *plain[2:]), x, "ZNIPS")
    _, ref = hzono_rows(nn.Sequential(*plain[:2], lirpa_diffai.ToZono(), lirpa_diffai.ToHZono(), *plain[2:]),
                        x, "HNIPS")
    assert all(torch.allclose(a, b) for a, b in zip(got, ref))
    assert not all(torch.allclose(a, b) for a, b in zip(got, znips))
    to_zono = nn.Sequential(lirpa_diffai.ToZono(), *plain)
    ibp = BoundedModule(to_zono, x).compute_bounds(x=(ball(x, 0.1),), method="IBP")
    ibp_plain = BoundedModule(plain, x).compute_bounds(x=(ball(x, 0.1),), method="IBP")
    assert all(torch.equal(a, b) for a, b in zip(ibp, ibp_plain))


def test_tozono_moves_the_box_part_into_rows():
    x = torch.rand(2, 6, dtype=torch.float64)
    net = nn.Sequential(lirpa_diffai.ToZono(), nn.Linear(6, 3).double())
    out, (lb, ub) = hzono_rows(net, x, "Box")
    assert out.num_errors == 6 and float(out.beta.abs().max()) == 0.0
    _, (lb_box, ub_box) = hzono_rows(nn.Sequential(net[1]), x, "Box")
    assert (ub - lb <= ub_box - lb_box + 1e-12).all()


def test_corrrand_correlates_k_random_dims_per_sample():
    torch.manual_seed(0)
    x = torch.rand(4, 8, dtype=torch.float64)
    net = nn.Sequential(lirpa_diffai.CorrRand(3))
    out, (lb, ub) = hzono_rows(net, x, "Box")
    assert out.num_errors == 3
    picked = (out.errors != 0).sum(0)                         # (B, 8): each dim in at most one row
    assert picked.max() == 1 and (picked.sum(1) == 3).all()
    assert torch.equal(out.beta == 0, picked.bool())          # a picked dim leaves the box part
    assert torch.allclose(lb, x - 0.1) and torch.allclose(ub, x + 0.1)
    draws = {tuple(hzono_rows(net, x, "Box")[0].errors.abs().sum(0)[0].nonzero().flatten().tolist())
             for _ in range(8)}
    assert len(draws) > 1                                      # drawn anew per pass
    out, _ = hzono_rows(net, x, "Box", training=False)        # only_train by default
    assert out.num_errors == 0


def test_decorrrand_moves_k_random_rows_into_the_box_part():
    torch.manual_seed(1)
    x = torch.rand(4, 8, dtype=torch.float64)
    net = nn.Sequential(nn.Linear(8, 8).double(), lirpa_diffai.DecorrRand(5))
    out, (lb, ub) = hzono_rows(net, x, "HBox")
    full, (lb_full, ub_full) = hzono_rows(nn.Sequential(net[0]), x, "HBox")
    assert out.num_errors == 8 - 5
    assert torch.allclose(lb, lb_full) and torch.allclose(ub, ub_full)   # the radius is kept
    for b in range(4):  # each kept row of each sample is one of the sample's rows
        rows = full.errors[:, b].flatten(1)
        for kept in out.errors[:, b].flatten(1):
            assert ((rows - kept).abs().sum(1) < 1e-12).any()
    out, _ = hzono_rows(nn.Sequential(*net[:1], lirpa_diffai.DecorrRand(20)), x, "HBox")
    assert out.num_errors == 0


def test_new_abstract_layers_refuse_bad_arguments():
    with pytest.raises(ValueError, match="k must be an int >= 1"):
        lirpa_diffai.CorrRand(0)
    with pytest.raises(ValueError, match="k must be an int >= 0"):
        lirpa_diffai.DecorrRand(-1)


def test_zoo_network_with_tozono_inserted_equals_zbox():
    """HBox on the zoo's ConvSmall with ToZono after its first ReLU is ZBox on the plain
    network (ZBox turns that ReLU's box part into rows too, and every later one's)."""
    from lirpa_diffai import models
    torch.manual_seed(0)
    plain = models.get("conv_small", "mnist").eval()
    inserted = models.get("conv_small", "mnist", insert={"after:conv1_relu": lirpa_diffai.ToZono()}).eval()
    inserted.load_state_dict(plain.state_dict())
    x = torch.rand(1, 1, 28, 28)
    with torch.no_grad():
        zbox = BoundedModule(plain, x).compute_bounds(x=(ball(x, 0.01),), method="ZBox")
        got = BoundedModule(inserted, x).compute_bounds(x=(ball(x, 0.01),), method="HBox")
        hbox = BoundedModule(plain, x).compute_bounds(x=(ball(x, 0.01),), method="HBox")
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(got, zbox))
    assert not all(torch.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(got, hbox))


def test_decorrelate_min_caps_the_rows_of_the_pure_zonotope():
    """In training mode DecorrelateMin k leaves k rows, and the next ReLU adds at most one row
    per neuron: the output has at most k + 12 rows instead of 6 + 12 + 12 + 12."""
    x = torch.rand(8, 6, dtype=torch.float64)
    net = network_with(nn.Linear(12, 12).double(), nn.ReLU(), lirpa_diffai.DecorrelateMin(2))
    out, (lb, ub) = hzono_rows(net, x, "ZNIPS")
    assert out.num_errors <= 2 + 12
    full, (lb_full, ub_full) = hzono_rows(net, x, "ZNIPS", training=False)
    assert full.num_errors > 2 + 12
    assert (ub_full - lb_full).mean() < (ub - lb).mean()   # the rows it dropped could cancel
