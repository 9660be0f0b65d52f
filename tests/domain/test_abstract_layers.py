"""DiffAI's abstract layers (paper section 3): equal to an independent implementation of the
paper's definitions under hzono, the identity for auto_LiRPA's methods and in concrete
execution, inactive in eval mode when ``only_train``, sound on ResNet-Tiny FewCombo, useful on
a trained MNIST network, DeepLoss against its O(n^2) definition, checkpoints interchangeable."""
import time

import numpy as np
import pytest
import torch
from auto_LiRPA import BoundedTensor, PerturbationLpNorm
from torch import nn

import lirpa_diffai.hybrid_zono as hz
from lirpa_diffai import (BoundedModule, Concretize, CorrelateAll, CorrelateFixed, CorrelateMaxK,
                          CorrelateMaxPool, DecorrelateAll, DecorrelateMin, DeepLoss, HybridZonotope,
                          data, models, set_epoch)
from lirpa_diffai.domain.abstract_layers import AbstractLayer
from lirpa_diffai.bound_ops.abstract import deep_loss, window_maxima
from lirpa_diffai.schedules import Lin, Until
from lirpa_diffai.models.common import ParSum, stack

from tests.support import assert_inside, attack_points, box_samples, forward_each, reference_relu


def box(lower, upper):
    return BoundedTensor((lower + upper) / 2, PerturbationLpNorm(norm=np.inf, x_L=lower, x_U=upper))


def without_abstract_layers(net: nn.Sequential) -> nn.Sequential:
    return nn.Sequential(*(m for m in net if not isinstance(m, AbstractLayer)))


# ------------------------------------------------- independent reference (NumPy, per sample)
def ref_correlate(b, E, P):
    """New rows ``e_t`` with ``beta_i`` at ``i = P[t]``; ``beta_P = 0``."""
    P = np.unique(P)
    rows = np.zeros((len(P), b.size))
    rows[np.arange(len(P)), P] = b[P]
    b = b.copy()
    b[P] = 0
    return b, np.vstack([E, rows])


def ref_abstract(layer, c, b, E, first):
    n, r = c.size, b + np.abs(E).sum(0)
    if isinstance(layer, CorrelateAll):
        return c, *ref_correlate(b, E, np.arange(n))
    if isinstance(layer, CorrelateFixed):
        return c, *ref_correlate(b, E, [i * n // layer.k for i in range(min(layer.k, n))])
    if isinstance(layer, CorrelateMaxK):
        return c, *ref_correlate(b, E, np.argsort(-(c + r))[:layer.k])
    if isinstance(layer, CorrelateMaxPool):
        (k,), (s,) = layer.kernel_size, layer.stride
        f = c if first else b
        return c, *ref_correlate(b, E, [w + np.argmax(f[w:w + k]) for w in range(0, n - k + 1, s)])
    if isinstance(layer, DecorrelateAll):
        return c, r, E[:0]
    if isinstance(layer, DecorrelateMin):
        keep = np.sort(np.argsort(-np.abs(E).sum(1))[:layer.k])
        drop = np.setdiff1d(np.arange(E.shape[0]), keep)
        return c, b + np.abs(E[drop]).sum(0), E[keep]
    raise TypeError(layer)


def reference_bounds(net, lower, upper, relu, C=None):
    """The paper's hybrid zonotope (center c, box radius b, generators E (m, n)) of each sample
    through ``net``'s Linear / ReLU / abstract layers, written with explicit matrices. The spec
    ``C`` is merged into the final linear layer (``C W``, as IBP and hzono do)."""
    assert isinstance(net[-1], nn.Linear)
    result = []
    for s, (lo, hi) in enumerate(zip(lower.numpy(), upper.numpy())):
        c, b, E = (hi + lo) / 2, (hi - lo) / 2, np.zeros((0, lo.size))
        for i, layer in enumerate(net):
            if isinstance(layer, nn.Linear):
                W, bias = layer.weight.detach().numpy(), layer.bias.detach().numpy()
                if C is not None and i == len(net) - 1:
                    W, bias = C[s].numpy() @ W, C[s].numpy() @ bias
                c, b, E = W @ c + bias, np.abs(W) @ b, E @ W.T
            elif isinstance(layer, nn.ReLU):
                c, b, E = reference_relu(c, b, E, relu)
            else:
                c, b, E = ref_abstract(layer, c, b, E, first=i == 0)
        r = b + np.abs(E).sum(0)
        result.append((c - r, c + r))
    lb, ub = zip(*result)
    return torch.tensor(np.array(lb)), torch.tensor(np.array(ub))


def mlp_with(layers_at: dict, widths=(6, 12, 10, 8, 4)) -> nn.Sequential:
    """Linear/ReLU layers of ``widths``; ``layers_at[i]`` goes before the i-th Linear
    (``len(widths) - 1`` is the end)."""
    modules = []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        modules += layers_at.get(i, [])
        modules.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            modules.append(nn.ReLU())
    return nn.Sequential(*modules, *layers_at.get(len(widths) - 1, []))


CONFIGS = {
    "maxk_then_min": lambda: {0: [CorrelateMaxK(3, False)], 2: [DecorrelateMin(2, False)]},
    "all_min_maxk": lambda: {0: [CorrelateAll()], 1: [DecorrelateMin(4, False)],
                             2: [CorrelateMaxK(4, False)]},
    "all_decorrelate_all": lambda: {0: [CorrelateAll()], 2: [DecorrelateAll(False)],
                                    3: [CorrelateAll()]},
    "min_keeps_everything": lambda: {0: [CorrelateMaxK(2, False)], 1: [DecorrelateMin(5, False)],
                                     2: [DecorrelateMin(0, False), CorrelateMaxK(20, False)]},
    "fixed_and_maxpool": lambda: {0: [CorrelateMaxPool([3], only_train=False)],
                                  1: [CorrelateFixed(5, False)],
                                  2: [CorrelateMaxPool([2], [1], only_train=False), Concretize(False),
                                      CorrelateMaxPool([4], [3], only_train=False)]},
}


@pytest.mark.parametrize("relu", ["boxy", "deepz"])
@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("with_spec", [False, True])
def test_hzono_equals_reference_implementation(config, relu, with_spec):
    net = mlp_with(CONFIGS[config]()).double()
    x = torch.randn(3, 6, dtype=torch.float64)
    lower, upper = x - 0.3, x + 0.3
    C = torch.randn(3, 5, 4, dtype=torch.float64) if with_spec else None
    bm = BoundedModule(net, x, bound_opts={"hzono": {"relu": relu}})
    lb, ub = bm.compute_bounds(x=(box(lower, upper),), C=C, method="hzono")
    ref_lb, ref_ub = reference_bounds(net, lower, upper, relu, C)
    torch.testing.assert_close(lb, ref_lb, rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(ub, ref_ub, rtol=1e-5, atol=1e-9)
    # the layers matter: the same network without them gives other bounds
    plain = BoundedModule(without_abstract_layers(net), x, bound_opts={"hzono": {"relu": relu}})
    plain_lb, _ = plain.compute_bounds(x=(box(lower, upper),), C=C, method="hzono")
    assert not torch.allclose(lb, plain_lb)


def test_arguments_are_checked():
    for bad in (lambda: CorrelateMaxK(0), lambda: CorrelateFixed(2.5), lambda: DecorrelateMin(-1),
                lambda: CorrelateMaxPool((2, 2, 2, 2)), lambda: CorrelateMaxPool(2, stride=0)):
        with pytest.raises(ValueError):
            bad()
    with pytest.raises(TypeError):
        DeepLoss("0.5")
    assert CorrelateMaxPool(3).stride == [3, 3] and DecorrelateMin(0).k == 0


# ------------------------------------------------------------ the HybridZonotope operations
def random_zonotope(m=6, batch=4, shape=(3, 5)):
    head = torch.randn(batch, *shape)
    return HybridZonotope.from_generators(head, torch.randn(m, batch, *shape), torch.rand(batch, *shape))


def test_decorrelate_min_keeps_the_heaviest_rows_per_sample_in_order():
    z = random_zonotope()
    out = hz.decorrelate_min_k(z, 2)
    mass = z.errors.abs().flatten(2).sum(2)                      # (m, B)
    for b in range(z.shape[0]):
        keep = sorted(mass[:, b].argsort(descending=True)[:2].tolist())
        torch.testing.assert_close(out.errors[:, b], z.errors[keep, b])
    kept_per_sample = mass.topk(2, dim=0).indices.sort(dim=0).values
    assert not (kept_per_sample == kept_per_sample[:, :1]).all(), "samples should differ here"
    assert set(out.ids).isdisjoint(z.ids) and len(out.ids) == 2
    torch.testing.assert_close(out.radius(), z.radius())          # same interval concretization
    assert hz.decorrelate_min_k(z, 6) is z and hz.decorrelate_min_k(z, 9) is z
    assert hz.decorrelate_min_k(z, 0).errors is None


def test_correlate_where_selects_per_sample_and_keeps_the_set():
    z = random_zonotope()
    mask = torch.rand(z.shape) < 0.3
    mask[0] = False
    mask[1, 0, :] = True
    out = hz.correlate_where(z, mask)
    assert out.num_errors - z.num_errors == mask.flatten(1).sum(1).max()
    torch.testing.assert_close(out.radius(), z.radius())
    assert (out.beta[mask] == 0).all() and torch.equal(out.beta[~mask], z.beta[~mask])
    new = out.errors[z.num_errors:]
    assert ((new != 0).flatten(2).sum(2) <= 1).all()               # one entry per new row
    torch.testing.assert_close(new.abs().sum(0), z.beta * mask)
    assert hz.correlate_where(z, torch.zeros_like(mask)) is z


@pytest.mark.parametrize("kernel,stride", [([2, 2], [2, 2]), ([3, 2], [1, 2]), ([2, 2, 3], [1, 2, 2])])
def test_window_maxima_against_loops(kernel, stride):
    f = torch.randn(2, 4, 6, 7)
    mask = window_maxima(f, kernel, stride)
    expected = torch.zeros_like(mask)
    planes = f.reshape(2, -1, *f.shape[-len(kernel):])
    exp = expected.view_as(planes)
    sizes = planes.shape[2:]
    for b in range(2):
        for q in range(planes.shape[1]):
            for start in np.ndindex(*[(n - k) // s + 1 for n, k, s in zip(sizes, kernel, stride)]):
                window = tuple(slice(i * s, i * s + k) for i, k, s in zip(start, kernel, stride))
                block = planes[b, q][window]
                pos = np.unravel_index(int(block.argmax()), block.shape)
                exp[b, q][tuple(w.start + p for w, p in zip(window, pos))] = True
    assert torch.equal(mask, expected)


def test_window_maxima_of_an_input_smaller_than_the_window_is_its_maximum():
    """A 2x2 window on a 1x1 (or 1x3) plane is cut to the plane's height (the fuzzer's
    random graph seed 5 pooled a 1x1 map and max-pooling had no window)."""
    f = torch.randn(2, 3, 1, 3)
    mask = window_maxima(f, [2, 2], [2, 2])
    expected = torch.zeros_like(mask)
    expected[:, :, 0, 0] = f[:, :, 0, :2].argmax(-1) == 0
    expected[:, :, 0, 1] = f[:, :, 0, :2].argmax(-1) == 1
    # column 2 starts no full window (stride 2, width 2), as in max-pooling
    assert torch.equal(mask, expected)
    assert window_maxima(torch.randn(2, 3, 1, 1), [2, 2], [2, 2]).all()


# ------------------------------------------------------------------------------ DeepLoss
def deep_loss_quadratic(lower, upper):
    """L_deep straight from the definition, O(n^2) per sample."""
    l, u = lower.flatten(1), upper.flatten(1)
    lb = torch.where(l[:, None, :] <= l[:, :, None], torch.relu(u[:, None, :] - l[:, :, None]), 0)
    ub = torch.where(u[:, :, None] <= u[:, None, :], torch.relu(u[:, :, None] - l[:, None, :]), 0)
    return ((lb.amax(2) + ub.amax(2)).sum(1) / (2 * l.shape[1])).mean()


@pytest.mark.parametrize("ties", [False, True])
def test_deep_loss_matches_its_definition(ties):
    center = torch.randn(5, 3, 7, 7)
    radius = torch.rand(5, 3, 7, 7)
    if ties:
        center, radius = (center * 2).round() / 2, (radius * 2).round() / 2
    lower, upper = center - radius, center + radius
    torch.testing.assert_close(deep_loss(lower, upper), deep_loss_quadratic(lower, upper))


def test_deep_loss_layer_records_weighted_loss_in_training_only():
    torch.manual_seed(1)
    layer = DeepLoss(lambda epoch: 0.1 * epoch)
    front = nn.Sequential(nn.Linear(5, 9), nn.ReLU(), nn.Linear(9, 7))
    net = nn.Sequential(*front, layer, nn.ReLU(), nn.Linear(7, 3))
    x = torch.randn(4, 5)
    xb = box(x - 0.2, x + 0.2)
    bm = BoundedModule(net, x)
    bm.train()
    set_epoch(net, 3)
    bm.compute_bounds(x=(xb,), method="hzono")
    [(weight, loss)] = bm.hzono_aux_losses
    assert weight == pytest.approx(0.3)
    lower, upper = BoundedModule(front, x).compute_bounds(x=(xb,), method="hzono")
    torch.testing.assert_close(loss, deep_loss_quadratic(lower, upper))
    loss.backward()
    assert front[0].weight.grad is not None and front[0].weight.grad.abs().sum() > 0
    bm.eval()
    bm.compute_bounds(x=(xb,), method="hzono")
    assert bm.hzono_aux_losses == []


# ------------------------------------------------ the identity for auto_LiRPA and concretely
def small_resnet(insert=None) -> nn.Sequential:
    residual = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 3, 3, padding=1))
    stages = [("conv1", nn.Conv2d(1, 3, 3, padding=1)), ("conv1_relu", nn.ReLU()),
              ("block1", ParSum(nn.Conv2d(3, 3, 1), residual)), ("block1_relu", nn.ReLU()),
              ("flatten", nn.Flatten()), ("fc1", nn.Linear(3 * 5 * 5, 16)), ("fc1_relu", nn.ReLU()),
              ("logits", nn.Linear(16, 5))]
    return stack(stages, insert)


def every_layer() -> dict:
    """Each kind of abstract layer, all ``only_train`` (the default but for CorrelateAll)."""
    return {"before:conv1": CorrelateMaxPool(2),
            "after:conv1_relu": [CorrelateMaxK(8), CorrelateMaxPool((2, 2, 2)), DecorrelateMin(3)],
            "after:block1_relu": [CorrelateFixed(6), DeepLoss(0.5), DecorrelateAll()],
            "after:fc1_relu": [Concretize(), CorrelateAll(only_train=True)]}


@pytest.fixture(scope="module")
def resnet_pair():
    torch.manual_seed(0)
    net = small_resnet(every_layer())
    plain = small_resnet()
    plain.load_state_dict(net.state_dict(), strict=True)
    return net, plain


LIRPA_METHODS = ["IBP", "CROWN", "CROWN-IBP", "CROWN-Optimized"]


@pytest.mark.parametrize("method", LIRPA_METHODS)
def test_lirpa_bounds_equal_without_the_layers(resnet_pair, method):
    net, plain = resnet_pair
    x = torch.rand(2, 1, 5, 5)
    C = torch.randn(2, 3, 5)
    opts = {"optimize_bound_args": {"iteration": 3}}
    bounds = []
    for model in (net, plain):
        bm = BoundedModule(model, x, bound_opts=opts)
        bm.train()
        bounds.append(bm.compute_bounds(x=(box(x - 0.05, x + 0.05),), C=C, method=method,
                                        bound_upper=method != "CROWN-Optimized"))
    for ours, theirs in zip(*bounds):
        if theirs is not None:
            torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)  # float32, two graphs


def test_concrete_output_and_state_dict_unchanged(resnet_pair):
    net, plain = resnet_pair
    x = torch.rand(3, 1, 5, 5)
    assert list(net.state_dict()) == list(plain.state_dict())
    assert torch.equal(net(x), plain(x))
    assert torch.equal(BoundedModule(net, x)(x), plain(x))
    for layer in net:
        if isinstance(layer, AbstractLayer):
            assert not layer.state_dict() and not list(layer.parameters())


def test_eval_mode_only_train_layers_change_nothing(resnet_pair):
    net, plain = resnet_pair
    x = torch.rand(2, 1, 5, 5)
    results = []
    for model in (net, plain):
        bm = BoundedModule(model, x)
        bm.eval()
        results.append(bm.compute_bounds(x=(box(x - 0.05, x + 0.05),), method="hzono"))
        assert bm.hzono_aux_losses == []
    for ours, theirs in zip(*results):
        assert torch.equal(ours, theirs)
    bm = BoundedModule(net, x)
    bm.train()
    assert not torch.equal(bm.compute_bounds(x=(box(x - 0.05, x + 0.05),), method="hzono")[0], results[1][0])


def check_sound(net, x, lower, upper, method="hzono", steps=5):
    bm = BoundedModule(net, x)
    bm.train()
    lb, ub = bm.compute_bounds(x=(box(lower, upper),), method=method)
    with torch.no_grad():
        outputs = forward_each(net, box_samples(lower, upper, 64))
    assert_inside(outputs, lb, ub)
    points = attack_points(net, lower, upper, steps=steps)
    with torch.no_grad():
        attacked = forward_each(net, points)
    assert_inside(attacked, lb, ub)
    return bm, lb, ub


def test_sound_by_sampling_small_resnet_training_mode(resnet_pair):
    net, _ = resnet_pair
    x = torch.rand(2, 1, 5, 5)
    check_sound(net, x, x - 0.1, x + 0.1, steps=10)


def test_sound_by_sampling_resnet_tiny_fewcombo_training_mode():
    torch.manual_seed(0)
    net = models.get("resnet_tiny_fewcombo", "cifar10")
    x = torch.rand(2, 3, 32, 32)
    eps = 2 / 255
    start = time.perf_counter()
    bm, lb, ub = check_sound(net, x, (x - eps).clamp(0, 1), (x + eps).clamp(0, 1), steps=3)
    assert bm.hzono_output.num_errors == 10 + 500   # CorrelateMax 10, then CorrelateAll 500
    print(f"ResNet-Tiny FewCombo, batch 2: build + hzono + 64 samples + PGD "
          f"{time.perf_counter() - start:.1f} s, mean width {(ub - lb).mean():.3g}")


def test_checkpoint_of_fewcombo_loads_into_resnet_tiny():
    torch.manual_seed(0)
    combo = models.get("resnet_tiny_fewcombo", "cifar10")
    plain = models.get("resnet_tiny", "cifar10")
    plain.load_state_dict(combo.state_dict(), strict=True)
    assert list(plain.state_dict()) == list(combo.state_dict())
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(plain(x), combo(x))


VARIANTS = {  # name: (base network, DeepLoss weight schedules)
    "resnet_tiny_fewcombo": ("resnet_tiny", []),
    "resnet_tiny_manyfixed": ("resnet_tiny", []),
    "skipnet18_combo": ("skipnet18", ["Until(90, Lin(0, 0.2, 50, 40), 0)"]),
    "resnet_large_largecombo": ("resnet_large", ["Until(1, 0, Lin(0.5, 0, 50, 3))",
                                                 "Until(24, Lin(0, 0.1, 20, 4), Lin(0.1, 0, 50, 0))"]),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_zoo_variants_keep_the_base_parameters(name):
    base, schedules = VARIANTS[name]
    net = models.get(name, "cifar10")
    assert list(net.state_dict()) == list(models.get(base, "cifar10").state_dict())
    names = [n for n, _ in net.named_children()]
    last = net[names.index("logits") - 1]
    assert isinstance(last, CorrelateAll) and not last.only_train
    assert all(m.only_train for m in net if isinstance(m, AbstractLayer) and m is not last)
    assert [str(m.weight) for m in net if isinstance(m, DeepLoss)] == schedules


def test_deep_loss_weight_follows_the_epoch():
    layer = DeepLoss(Until(90, Lin(0, 0.2, 50, 40), 0))
    assert layer.current_weight() == 0.0
    set_epoch(nn.Sequential(layer), 65)
    assert layer.current_weight() == pytest.approx(0.2 * 25 / 50)
    assert DeepLoss(0.25).current_weight() == 0.25


# ------------------------------------------------------------ correlation helps (MNIST)
def test_correlation_tightens_bounds_on_a_trained_mnist_network():
    try:
        train = data.load_dataset("mnist", "train")
    except data.DatasetNotFoundError as e:
        pytest.skip(str(e))
    torch.manual_seed(0)
    images, labels = train.tensors
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(),
                        nn.Linear(100, 10))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    for step in range(300):
        index = torch.randint(len(images), (64,))
        loss = nn.functional.cross_entropy(net(images[index]), labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    x = images[-20:]
    lower, upper = (x - 0.02).clamp(0, 1), (x + 0.02).clamp(0, 1)
    widths = {}
    for name, layer in [("none", []), ("CorrelateMaxK 100", [CorrelateMaxK(100, only_train=False)]),
                        ("CorrelateAll", [CorrelateAll()])]:
        model = nn.Sequential(*layer, *net)
        bm = BoundedModule(model, x)
        lb, ub = bm.compute_bounds(x=(box(lower, upper),), method="hzono")
        widths[name] = ub - lb
    print("mean width of the logits: " + ", ".join(f"{k} {w.mean():.4f}" for k, w in widths.items()))
    for name in ("CorrelateMaxK 100", "CorrelateAll"):
        assert widths[name].mean() <= widths["none"].mean()
        assert (widths[name] < widths["none"] - 1e-6).any()
