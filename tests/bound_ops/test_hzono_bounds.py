"""``method="hzono"`` on traced graphs: equal to an independent implementation of the paper's
formulas, sound by sampling, never looser than IBP with the boxy ReLU."""
import copy

import numpy as np
import pytest
import torch
from auto_LiRPA import BoundedTensor, PerturbationLpNorm
from hypothesis import given, settings, strategies as st
from torch import nn

from lirpa_diffai import BoundedModule, HybridZonotope, PerturbationHybridZonotope, UnsupportedOperatorError

from tests.support import assert_inside, attack_points, box_samples, forward_each, reference_relu


def ball(x, eps):
    return BoundedTensor(x, PerturbationLpNorm(norm=np.inf, eps=eps))


def random_mlp(widths):
    layers = []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


# ------------------------------------------------------- independent reference (NumPy)
def reference_hzono(net, lower, upper, relu, rows="all", C=None):
    """The paper's hybrid zonotope through Linear/ReLU written out with explicit matrices:
    head c, box radius b, generator matrix E (m, n) per sample. A spec ``C`` is merged into
    the last linear layer (``C W``, ``C b``), as IBP does."""
    results = []
    for lo, hi in zip(lower.double().numpy(), upper.double().numpy()):
        c, b = (hi + lo) / 2, (hi - lo) / 2
        if rows == "all":
            E, b = np.diag(b), np.zeros_like(b)
        elif rows:
            picked = np.argsort(-(c + b), kind="stable")[:rows]
            E = np.zeros((rows, c.size))
            E[np.arange(rows), picked] = b[picked]
            b = b.copy()
            b[picked] = 0
        else:
            E = np.zeros((0, c.size))
        for index, layer in enumerate(net):
            if isinstance(layer, nn.Linear):
                W, bias = layer.weight.detach().double().numpy(), layer.bias.detach().double().numpy()
                if C is not None and index == len(net) - 1:
                    W, bias = C.double().numpy()[0] @ W, C.double().numpy()[0] @ bias
                c, E, b = W @ c + bias, E @ W.T, np.abs(W) @ b
            else:
                c, b, E = reference_relu(c, b, E, relu)
        r = b + np.abs(E).sum(0)
        results.append((c - r, c + r))
    lb, ub = zip(*results)
    return torch.tensor(np.array(lb)), torch.tensor(np.array(ub))


@pytest.mark.parametrize("relu", ["boxy", "deepz"])
@pytest.mark.parametrize("rows", [0, 3, "all"])
@pytest.mark.parametrize("with_spec", [False, True])
def test_hzono_equals_reference_implementation(relu, rows, with_spec):
    for trial in range(3):
        net = random_mlp([6, 12, 10, 8, 4]).eval()
        x = torch.randn(2, 6)
        C = torch.randn(1, 3, 4).expand(2, 3, 4) if with_spec else None
        bm = BoundedModule(net, x, bound_opts={"hzono": {"relu": relu, "correlate_input": rows}})
        lb, ub = bm.compute_bounds(x=(ball(x, 0.3),), C=C, method="hzono")
        ref_lb, ref_ub = reference_hzono(net, x - 0.3, x + 0.3, relu, rows, C)
        torch.testing.assert_close(lb.double(), ref_lb, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ub.double(), ref_ub, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ branching graphs
class Branchy(nn.Module):
    """Residual add, concat, batch norm, average and max pooling, pad, slice, sigmoid, tanh."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.conv3 = nn.Conv2d(12, 4, 1)
        self.fc = nn.Linear(4 * 4 * 4, 5)

    def forward(self, x):
        a = torch.relu(self.bn(self.conv1(x)))
        b = torch.relu(self.conv2(a)) + a
        c = torch.cat([nn.functional.avg_pool2d(b, 2), nn.functional.max_pool2d(a, 2)], dim=1)
        d = torch.tanh(self.conv3(c)) - 0.5 * torch.sigmoid(c[:, :4])
        d = nn.functional.pad(d, (1, 1, 1, 1))[:, :, 1:5, 1:5]
        return self.fc(torch.flatten(nn.functional.leaky_relu(d, 0.1), 1))


@pytest.mark.parametrize("relu", ["boxy", "deepz", "switch", "smooth"])
@pytest.mark.parametrize("train", [False, True])
def test_hzono_is_sound_on_branching_graph(relu, train):
    net = Branchy()
    x = torch.rand(3, 3, 8, 8)
    bm = BoundedModule(net, x, bound_opts={"hzono": {"relu": relu, "correlate_input": 16}})
    bm.train(train)
    eps = 0.05
    lb, ub = bm.compute_bounds(x=(ball(x, eps),), method="hzono")
    # in training mode the bounds hold for batch norm with the clean batch's statistics
    concrete = with_batch_statistics(net, x) if train else net.eval()
    points = torch.cat([box_samples(x - eps, x + eps, 64), attack_points(concrete, x - eps, x + eps, 5)])
    with torch.no_grad():
        assert_inside(forward_each(concrete, points), lb, ub)


def with_batch_statistics(net, x):
    """An eval-mode copy of ``net`` whose batch norms use the statistics of ``x``'s batch."""
    frozen = copy.deepcopy(net).train()
    captured = {}
    def capture(mod, inp, out):  # returns None: a hook's return value would replace the output
        captured[mod] = inp[0]
    hooks = [bn.register_forward_hook(capture) for bn in frozen.modules() if isinstance(bn, nn.BatchNorm2d)]
    with torch.no_grad():
        frozen(x)
    for hook in hooks:
        hook.remove()
    for bn, inp in captured.items():
        bn.running_mean = inp.mean((0, 2, 3))
        bn.running_var = inp.var((0, 2, 3), unbiased=False)
    return frozen.eval()


def test_with_batch_statistics_is_the_training_mode_forward_pass():
    """The capture pass must not replace batch-norm outputs (a hook returning a value does):
    with two batch norms the second one saw the first one's input."""
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Conv2d(3, 3, 3), nn.BatchNorm2d(3))
    with torch.no_grad():
        for bn in (net[1], net[4]):
            bn.weight.uniform_(0.5, 2.0)
            bn.bias.uniform_(-1.0, 1.0)
    x = torch.rand(4, 2, 7, 7) * 3 + 1
    with torch.no_grad():
        torch.testing.assert_close(with_batch_statistics(net, x)(x), copy.deepcopy(net).train()(x))


def test_boxy_hzono_is_never_looser_than_ibp():
    for net, x in ((Branchy().eval(), torch.rand(4, 3, 8, 8)), (random_mlp([10, 30, 30, 5]), torch.randn(4, 10))):
        for rows in (0, 8, "all"):
            bm = BoundedModule(net, x, bound_opts={"hzono": {"correlate_input": rows}})
            lb, ub = bm.compute_bounds(x=(ball(x, 0.1),), method="hzono")
            ilb, iub = bm.compute_bounds(x=(ball(x, 0.1),), method="IBP")
            assert (lb >= ilb - 1e-5).all() and (ub <= iub + 1e-5).all()
            if rows == 0:
                torch.testing.assert_close(lb, ilb, rtol=1e-5, atol=1e-5)


def test_eps_zero_gives_the_forward_pass():
    net = Branchy().eval()
    x = torch.rand(2, 3, 8, 8)
    bm = BoundedModule(net, x)
    lb, ub = bm.compute_bounds(x=(ball(x, 0.0),), method="hzono")
    torch.testing.assert_close(lb, net(x), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ub, net(x), rtol=1e-5, atol=1e-6)


def test_hzono_output_is_the_spec_zonotope_and_methods_are_case_insensitive():
    net = random_mlp([5, 8, 3])
    x = torch.randn(2, 5)
    bm = BoundedModule(net, x, bound_opts={"hzono": {"correlate_input": "all", "relu": "deepz"}})
    C = torch.eye(3)[None, :2].expand(2, 2, 3)
    lb, ub = bm.compute_bounds(x=(ball(x, 0.1),), C=C, method="HZono")
    assert isinstance(bm.hzono_output, HybridZonotope) and bm.hzono_output.shape == (2, 2)
    torch.testing.assert_close((lb, ub), bm.hzono_output.concretize())
    nips = bm.compute_bounds(x=(ball(x, 0.1),), method="HNIPS")
    deepz = bm.compute_bounds(x=(ball(x, 0.1),), method="hzono")
    torch.testing.assert_close(nips, deepz)
    box = bm.compute_bounds(x=(ball(x, 0.1),), method="HBox")
    assert (box[1] - box[0]).sum() >= (deepz[1] - deepz[0]).sum() - 1e-6


def test_bad_options_and_operators_are_refused_with_names():
    net = random_mlp([4, 3])
    with pytest.raises(ValueError, match="did you mean 'relu'"):
        BoundedModule(net, torch.randn(1, 4), bound_opts={"hzono": {"rleu": "boxy"}})
    with pytest.raises(ValueError, match="boxy, deepz"):
        BoundedModule(net, torch.randn(1, 4), bound_opts={"hzono": {"relu": "crown"}})

    class CumulativeSum(nn.Module):   # (no hzono transformer: refused by node and operator)
        def forward(self, x):
            return torch.cumsum(x, 1)
    bm = BoundedModule(CumulativeSum(), torch.randn(1, 4))
    with pytest.raises(UnsupportedOperatorError, match=r"graph node '.*' \(operator CumSum"):
        bm.compute_bounds(x=(ball(torch.randn(1, 4), 0.1),), method="hzono")


# -------------------------------------------------------- zonotope perturbation domain
@pytest.mark.parametrize("method", ["hzono", "IBP", "CROWN-IBP", "CROWN"])
def test_zonotope_input_set_is_sound_for_every_method(method):
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    head = torch.rand(2, 1, 6, 6)
    errors = torch.randn(3, 2, 1, 6, 6) * 0.05
    beta = torch.rand(2, 1, 6, 6) * 0.02
    ptb = PerturbationHybridZonotope.from_tensors(head, beta, errors)
    bm = BoundedModule(net, head)
    lb, ub = bm.compute_bounds(x=(BoundedTensor(head, ptb),), method=method)
    z = ptb.zonotope
    n = 1000
    e = torch.rand(n, 3, 1, 1, 1, 1) * 2 - 1
    e = torch.where(torch.rand_like(e) < 0.5, e.sign(), e)
    points = head + beta * (torch.rand((n,) + tuple(head.shape)) * 2 - 1) + (e * z.errors).sum(1)
    assert_inside(torch.stack([net(p) for p in points]), lb, ub)


def test_crown_concretizes_a_linear_function_over_a_zonotope_exactly():
    W = torch.randn(3, 5)
    net = nn.Linear(5, 3, bias=False)
    net.weight.data = W
    head, errors, beta = torch.randn(1, 5), torch.randn(2, 1, 5), torch.rand(1, 5)
    ptb = PerturbationHybridZonotope.from_tensors(head, beta, errors)
    lb, ub = BoundedModule(net, head).compute_bounds(x=(BoundedTensor(head, ptb),), method="CROWN")
    spread = (errors[:, 0] @ W.T).abs().sum(0) + beta[0] @ W.abs().T
    torch.testing.assert_close(ub[0], head[0] @ W.T + spread)
    torch.testing.assert_close(lb[0], head[0] @ W.T - spread)


# ------------------------------------------------------------ random graphs (property)
class RandomGraph(nn.Module):
    """A random DAG of convs, ReLUs, residual adds and concats, ending in a linear layer."""

    def __init__(self, ops, channels):
        super().__init__()
        self.ops = ops
        self.convs = nn.ModuleList()
        widths = [channels]
        for op in ops:
            if op == "conv":
                self.convs.append(nn.Conv2d(widths[-1], channels, 3, padding=1))
                widths.append(channels)
            elif op == "cat":
                widths.append(widths[-1] + widths[-2] if len(widths) > 1 else 2 * widths[-1])
            else:
                widths.append(widths[-1])
        self.fc = nn.Linear(widths[-1] * 16, 4)
        self.stem = nn.Conv2d(2, channels, 1)

    def forward(self, x):
        values = [self.stem(x)]
        convs = iter(self.convs)
        for op in self.ops:
            last = values[-1]
            if op == "conv":
                values.append(next(convs)(last))
            elif op == "relu":
                values.append(torch.relu(last))
            elif op == "add":
                same = [v for v in values[:-1] if v.shape == last.shape]
                values.append(last + (same[0] if same else last))
            elif op == "cat":
                values.append(torch.cat([last, values[-2] if len(values) > 1 else last], dim=1))
        return self.fc(torch.flatten(values[-1], 1))


@given(ops=st.lists(st.sampled_from(["conv", "relu", "add", "cat"]), min_size=1, max_size=6),
       relu=st.sampled_from(["boxy", "deepz", "switch", "smooth"]),
       rows=st.sampled_from([0, 4, "all"]), seed=st.integers(0, 1000))
@settings(max_examples=20, deadline=None)
def test_hzono_is_sound_on_random_graphs(ops, relu, rows, seed):
    torch.manual_seed(seed)
    net = RandomGraph(ops, 2).eval()
    x = torch.rand(2, 2, 4, 4)
    bm = BoundedModule(net, x, bound_opts={"hzono": {"relu": relu, "correlate_input": rows}})
    lb, ub = bm.compute_bounds(x=(ball(x, 0.1),), method="hzono")
    with torch.no_grad():
        outputs = torch.stack([net(p) for p in box_samples(x - 0.1, x + 0.1, 100)])
    assert_inside(outputs, lb, ub)


class DenseBlock(nn.Module):
    """Three DenseNet layers ``x -> cat(x, conv(act(x)))``: each activation's input is the
    previous one plus new channels, the case the per-part transformer results serve."""

    def __init__(self, act):
        super().__init__()
        self.act = act
        self.convs = nn.ModuleList(nn.Conv2d(3 + 2 * i, 2, 3, padding=1) for i in range(3))

    def forward(self, x):
        for conv in self.convs:
            x = torch.cat([x, conv(self.act(x))], dim=1)
        return self.act(x).flatten(1)


@pytest.mark.parametrize("act,relu", [(nn.ReLU(), "boxy"), (nn.ReLU(), "deepz"), (nn.ReLU(), "switch"),
                                      (nn.Sigmoid(), "boxy"), (nn.Tanh(), "boxy")])
@pytest.mark.parametrize("rows", [0, 4])
def test_elementwise_on_a_concatenation_runs_once_per_part(monkeypatch, act, relu, rows):
    from lirpa_diffai import hybrid_zono
    from lirpa_diffai.bound_ops.registry import HzonoContext, joined

    torch.manual_seed(0)
    net, x = DenseBlock(act).eval(), torch.rand(2, 3, 5, 5)
    bm = BoundedModule(net, x, bound_opts={"hzono": {"relu": relu, "correlate_input": rows}}).eval()
    transformed = []
    for name in ("relu", "s_shaped"):
        original = getattr(hybrid_zono, name)
        def counting(z, *args, original=original):
            transformed.append(z.head.numel())
            return original(z, *args)
        monkeypatch.setattr(hybrid_zono, name, counting)

    def bounds():
        transformed.clear()
        lb, ub = bm.compute_bounds(x=(ball(x, 0.1),), method="hzono")
        return lb, ub, sum(transformed)

    lb, ub, per_part = bounds()
    monkeypatch.setattr(HzonoContext, "elementwise", lambda self, key, fn, z: fn(joined(z)))
    lb_whole, ub_whole, whole = bounds()
    # equal up to float32 rounding (tanh's vectorised kernel on different lengths)
    torch.testing.assert_close((lb, ub), (lb_whole, ub_whole), rtol=1e-5, atol=1e-6)
    assert per_part < whole  # each channel transformed once: 3+2+2+2 of the 3+5+7+9 channels
    points = torch.cat([box_samples(x - 0.1, x + 0.1, 64), attack_points(net, x - 0.1, x + 0.1, 5)])
    with torch.no_grad():
        assert_inside(torch.stack([net(p) for p in points]), lb, ub)


def test_a_concatenation_is_joined_only_for_a_reader_that_needs_it(monkeypatch):
    """In a dense block the concatenations are read by ReLUs (per part) and by the next
    concatenation (its parts): only the ReLU images that a conv or the flatten reads are joined,
    and the per-node bounds of a concatenation, taken from its parts, equal the joined ones."""
    from lirpa_diffai import hybrid_zono
    from lirpa_diffai.bound_ops.registry import Concatenation

    joins, original = [], hybrid_zono.concat
    monkeypatch.setattr(hybrid_zono, "concat", lambda zonos, fn: joins.append(len(zonos)) or original(zonos, fn))
    torch.manual_seed(0)
    net, x = DenseBlock(nn.ReLU()).eval(), torch.rand(2, 3, 5, 5)
    bm = BoundedModule(net, x, bound_opts={"hzono": {"correlate_input": 4}}).eval()
    bm.compute_bounds(x=(ball(x, 0.1),), method="hzono")
    assert joins == [2, 3, 4]  # the ReLU images read by the 2nd and 3rd conv and by the flatten

    z = [hybrid_zono.HybridZonotope.from_box(-torch.rand(2, c, 3, 3), torch.rand(2, c, 3, 3)) for c in (1, 2)]
    lazy = Concatenation.of([Concatenation.of(z, 1), z[0]], 1)
    assert len(lazy.parts) == 3 and lazy.shape == (2, 4, 3, 3)
    torch.testing.assert_close(lazy.concretize(), lazy.joined.concretize())


def test_a_pass_frees_each_value_after_its_last_reader(monkeypatch):
    """Peak memory of a deep network: the value of a node is dropped once no later node reads it
    (ResNet-34 with 16 rows: 1284 -> 63 MiB above the start in benchmarks)."""
    import weakref
    from lirpa_diffai import hybrid_zono

    outputs, alive_at_call = [], []
    original = hybrid_zono.relu
    def recording(z, *args):
        alive_at_call.append(sum(ref() is not None for ref in outputs))
        out = original(z, *args)
        outputs.append(weakref.ref(out))
        return out
    monkeypatch.setattr(hybrid_zono, "relu", recording)
    net = nn.Sequential(*[m for _ in range(6) for m in (nn.Linear(8, 8), nn.ReLU())]).eval()
    x = torch.rand(2, 8)
    bm = BoundedModule(net, x, bound_opts={"hzono": {"correlate_input": 4}}).eval()
    bm.compute_bounds(x=(ball(x, 0.1),), method="hzono")
    assert len(alive_at_call) == 6 and max(alive_at_call) <= 1  # only the one the Linear just read


def test_identity_memo_forgets_collected_keys():
    from lirpa_diffai.bound_ops.registry import IdentityMemo

    class Key:
        pass
    memo, key = IdentityMemo(), Key()
    memo[key] = "value"
    assert memo.get(key) == "value" and memo.get(Key()) is None
    del key
    assert len(memo) == 0


@pytest.mark.parametrize("method", ["hzono", "IBP", "CROWN-IBP", "CROWN", "CROWN-hzono"])
def test_bounding_leaves_the_parameters_requires_grad_as_they_were(method):
    """auto_LiRPA 0.3 sets each shared parameter's ``requires_grad`` to the module's training
    flag on every pass: an eval-mode bound froze the network being trained."""
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    net[2].weight.requires_grad_(False)  # a layer the user froze
    x = torch.rand(2, 4)
    flags = [p.requires_grad for p in net.parameters()]
    for training in (False, True):
        bm = BoundedModule(net, x).train(training)
        with torch.no_grad():
            bm.compute_bounds(x=(ball(x, 0.1),), method=method)
            bm(x)
        assert [p.requires_grad for p in net.parameters()] == flags


@given(ops=st.lists(st.sampled_from(["conv", "relu", "add", "cat"]), min_size=1, max_size=6),
       relu=st.sampled_from(["boxy", "deepz"]), rows=st.sampled_from([0, 4]), seed=st.integers(0, 1000))
@settings(max_examples=15, deadline=None)
def test_layout_and_lazy_concatenation_do_not_change_bounds(ops, relu, rows, seed):
    """The pass's speed-ups (channels-last values, concatenations kept as parts) give the
    bounds of the plain pass: contiguous values, every concatenation joined at once."""
    from unittest import mock
    from lirpa_diffai.bound_ops.registry import HzonoContext, joined

    torch.manual_seed(seed)
    net = RandomGraph(ops, 2).eval()
    x = torch.rand(2, 2, 4, 4)
    bm = BoundedModule(net, x, bound_opts={"hzono": {"relu": relu, "correlate_input": rows}})
    fast = bm.compute_bounds(x=(ball(x, 0.1),), method="hzono")
    with mock.patch.object(HybridZonotope, "channels_last", lambda self: self), \
         mock.patch.object(HzonoContext, "elementwise", lambda self, key, fn, z: fn(joined(z))):
        plain = bm.compute_bounds(x=(ball(x, 0.1),), method="hzono")
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-6)
