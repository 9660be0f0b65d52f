"""auto_LiRPA 0.3's own bugs as met through ``lirpa_diffai.BoundedModule`` (``_lirpa_fixes``,
``graph_check``): each bound holds for sampled and PGD points inside the input box, equals
the forward pass at eps = 0, in eval and training mode, or the node is refused by name."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from auto_LiRPA import BoundedTensor, PerturbationLpNorm

from tests.support import assert_inside, attack_points, box_samples, Lambda, with_clean_batch_statistics
from lirpa_diffai import BoundedModule
from lirpa_diffai.lirpa03 import graph_check
from lirpa_diffai.bound_ops.registry import UnsupportedOperatorError


BACKWARD = ("CROWN", "CROWN-IBP")


def bounds(bm, x, eps, method):
    ptb = PerturbationLpNorm(norm=np.inf, eps=eps)
    return bm.compute_bounds(x=(BoundedTensor(x, ptb),), method=method)


def assert_sound(net, x, eps, methods, training=False, conv_mode="patches", samples=64, traced=None):
    """Every method's bounds contain sampled, corner and PGD points of ``x +- eps``, and equal
    the forward pass at eps = 0. ``traced``: the input the module is built with (default ``x``)."""
    net.train(training)
    bm = BoundedModule(net, x if traced is None else traced, bound_opts={"conv_mode": conv_mode}).train(training)
    f = with_clean_batch_statistics(net, x) if training else net
    lower, upper = x - eps, x + eps
    points = torch.cat([box_samples(lower, upper, samples), attack_points(f, lower, upper)])
    with torch.no_grad():
        outputs = torch.stack([f(p) for p in points])
        clean = f(x)
    for method in methods:
        lb, ub = bounds(bm, x, eps, method)
        assert_inside(outputs, lb, ub)
        lb0, ub0 = bounds(bm, x, 0.0, method)
        torch.testing.assert_close(lb0, clean, atol=1e-5, rtol=1e-5, msg=f"{method} lower at eps=0")
        torch.testing.assert_close(ub0, clean, atol=1e-5, rtol=1e-5, msg=f"{method} upper at eps=0")


def conv_head(body, channels=2, size=6):
    """``body`` then a 3x3 convolution, ReLU and a linear layer (so CROWN meets ``body`` with
    patches coefficients in patches mode), sized lazily."""
    net = nn.Sequential(body, nn.LazyConv2d(3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3))
    net(torch.zeros(2, channels, size, size))
    return net


# training mode takes the same backward passes (BatchNorm aside, tested in both modes below):
# thorough runs only
TRAINING = pytest.mark.parametrize("training", [False, pytest.param(True, marks=pytest.mark.slow)],
                                   ids=["eval", "train"])


@TRAINING
@pytest.mark.parametrize("conv_mode", ["patches", "matrix"])
def test_pad_with_a_constant_keeps_its_contribution_in_crown(conv_mode, training):
    net = conv_head(Lambda(lambda x: F.pad(x, (1, 2, 2, 1), value=0.7)))
    assert_sound(net, torch.randn(2, 2, 6, 6), 0.1, BACKWARD + ("IBP",), training, conv_mode)


POOLS = {
    "padded": dict(kernel_size=3, stride=1, padding=1),
    "exclude_pad": dict(kernel_size=3, stride=1, padding=1, count_include_pad=False),
    "ceil_strided": dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    "overlapping": dict(kernel_size=3, stride=2),
}


@pytest.mark.parametrize("conv_mode", ["patches", pytest.param("matrix", marks=pytest.mark.slow)])
@pytest.mark.parametrize("pool", sorted(POOLS))
def test_average_pool_settings_are_bounded_as_traced(pool, conv_mode):
    net = conv_head(nn.AvgPool2d(**POOLS[pool]), size=7)
    assert_sound(net, torch.randn(2, 2, 7, 7), 0.1, BACKWARD + ("IBP",), conv_mode=conv_mode)


@TRAINING
@pytest.mark.parametrize("pool", ["padded", "exclude_pad"])
def test_average_pool_before_the_output_layer(pool, training):
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.AvgPool2d(**POOLS[pool]), nn.Flatten(), nn.LazyLinear(3))
    net(torch.zeros(1, 2, 6, 6))
    assert_sound(net, torch.randn(2, 2, 6, 6), 0.1, BACKWARD + ("IBP", "CROWN-hzono"), training)


@TRAINING
@pytest.mark.parametrize("conv_mode", ["patches", "matrix"])
def test_dilated_convolutions_in_crown(conv_mode, training):
    net = nn.Sequential(nn.Conv2d(2, 4, 3, dilation=2, padding=2), nn.ReLU(),
                        nn.Conv2d(4, 3, 3, dilation=(1, 2), padding=(1, 2)), nn.ReLU(),
                        nn.Flatten(), nn.LazyLinear(3))
    net(torch.zeros(1, 2, 7, 7))
    assert_sound(net, torch.randn(2, 2, 7, 7), 0.1, BACKWARD + ("IBP", "CROWN-hzono"), training, conv_mode)


@pytest.mark.parametrize("groups", [2, 4])
def test_grouped_convolutions_in_patches_mode_bound_as_in_matrix_mode(groups):
    net = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, groups=groups), nn.ReLU(),
                        nn.Conv2d(4, 4, 3, padding=1, groups=groups), nn.ReLU(), nn.Flatten(), nn.Linear(144, 3))
    x = torch.randn(2, 4, 6, 6)
    patches = bounds(BoundedModule(net, x, bound_opts={"conv_mode": "patches"}), x, 0.1, "CROWN")
    matrix = bounds(BoundedModule(net, x, bound_opts={"conv_mode": "matrix"}), x, 0.1, "CROWN")
    torch.testing.assert_close(patches, matrix, atol=1e-5, rtol=1e-5)
    assert_sound(net, x, 0.1, BACKWARD)


def test_patches_of_a_rectangular_kernel_become_the_right_matrix():
    net = nn.Sequential(nn.Conv2d(2, 4, 5, padding=2), nn.ReLU(), nn.Conv2d(4, 3, (3, 5), padding=(1, 2)), nn.ReLU(),
                        nn.Flatten(), nn.Linear(147, 3))
    x = torch.randn(2, 2, 7, 7)
    patches = bounds(BoundedModule(net, x, bound_opts={"conv_mode": "patches"}), x, 0.1, "CROWN")
    matrix = bounds(BoundedModule(net, x, bound_opts={"conv_mode": "matrix"}), x, 0.1, "CROWN")
    torch.testing.assert_close(patches, matrix, atol=1e-5, rtol=1e-5)
    assert_sound(net, x, 0.1, ("CROWN",))


@TRAINING
@pytest.mark.parametrize("slope", [2.5, -0.5, 0.1])
def test_leaky_relu_of_any_slope(slope, training):
    net = nn.Sequential(nn.Linear(4, 8), nn.LeakyReLU(slope), nn.Linear(8, 3))
    assert_sound(net, torch.randn(3, 4), 0.3, BACKWARD + ("IBP",), training)


def test_leaky_relu_ibp_with_negative_slope_is_the_exact_range():
    net = nn.Sequential(nn.LeakyReLU(-0.5))
    bm = BoundedModule(net, torch.zeros(1, 3))
    lb, ub = bounds(bm, torch.tensor([[-1.0, 0.5, 2.0]]), 1.0, "IBP")
    torch.testing.assert_close(lb, torch.tensor([[0.0, 0.0, 1.0]]))
    torch.testing.assert_close(ub, torch.tensor([[1.0, 1.5, 3.0]]))


def batch_norm_nets():
    mlp = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 5), nn.BatchNorm1d(5),
                        nn.ReLU(), nn.Linear(5, 3))
    conv = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(48, 3))
    for net in (mlp, conv):
        for m in net.modules():  # statistics far from the defaults, so a stale set shows
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-2, 2)
                m.running_var.uniform_(0.2, 3)
    return {"mlp": (mlp, torch.randn(4, 4) * 2 + 1), "conv": (conv, torch.randn(3, 2, 4, 4) * 2 + 1)}


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("name", ["mlp", "conv"])
def test_batch_norm_every_method_uses_the_clean_batch_statistics(name, training):
    net, x = batch_norm_nets()[name]
    assert_sound(net, x, 0.05, ("IBP", "CROWN", "CROWN-IBP", "hzono", "CROWN-hzono"), training=training)


def test_batch_norm_statistics_follow_the_batch_being_bounded():
    net, x = batch_norm_nets()["mlp"]
    bm = BoundedModule(net.train(), x).train()
    other = torch.randn(5, 4) * 3
    bounds(bm, other, 0.0, "IBP")  # an earlier batch with other statistics
    lb, ub = bounds(bm, x, 0.0, "IBP")
    torch.testing.assert_close(lb, with_clean_batch_statistics(net, x)(x), atol=1e-5, rtol=1e-5)


class Holder(nn.Module):
    def __init__(self, net, x):
        super().__init__()
        self.bounded = BoundedModule(net, x)


def test_a_bounded_module_inside_another_loads_its_parameters():
    net, x = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)).eval(), torch.randn(2, 3)
    holder = Holder(net, x)
    saved = {k: torch.rand_like(v) + 0.5 if "var" in k else torch.randn_like(v) for k, v in holder.state_dict().items()}
    assert set(saved) == {f"bounded.{k}" for k in net.state_dict() if "num_batches" not in k}
    assert holder.load_state_dict(saved) is not None  # strict: no missing or unexpected key
    loaded = holder.state_dict()
    for key, value in saved.items():
        assert torch.equal(loaded[key], value), key
    reference = copy.deepcopy(net)
    reference.load_state_dict({k[len("bounded."):]: v for k, v in saved.items()}, strict=False)
    lb, ub = bounds(holder.bounded, x, 0.1, "CROWN")
    ref_lb, ref_ub = bounds(BoundedModule(reference, x), x, 0.1, "CROWN")
    torch.testing.assert_close((lb, ub), (ref_lb, ref_ub))


def test_nested_load_state_dict_reports_missing_keys():
    holder = Holder(nn.Linear(3, 2), torch.zeros(1, 3))
    saved = holder.state_dict()
    del saved["bounded.bias"]
    result = holder.load_state_dict(saved, strict=False)
    assert result.missing_keys == ["bounded.bias"] and result.unexpected_keys == []
    with pytest.raises(RuntimeError, match="bounded.bias"):
        holder.load_state_dict(saved)


def test_dropout_leaves_the_users_network_in_its_mode():
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.Dropout(0.5), nn.ReLU(), nn.Flatten(),
                        nn.Linear(12, 2)).eval()
    stats = copy.deepcopy(net[1].state_dict())
    bm = BoundedModule(net, torch.randn(2, 2, 4, 4))
    assert not any(m.training for m in net.modules())
    x = torch.randn(5, 2, 4, 4)
    net(x)
    for key, value in stats.items():
        assert torch.equal(net[1].state_dict()[key], value), key
    torch.testing.assert_close(bm(x), net(x))  # the graph's Dropout is the identity, as the model's


@pytest.mark.parametrize("padding_mode", ["reflect", "replicate"])
def test_reflect_and_edge_padding_are_refused_by_node(padding_mode):
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, padding_mode=padding_mode), nn.Flatten(), nn.Linear(48, 2))
    mode = "reflect" if padding_mode == "reflect" else "edge"
    with pytest.raises(UnsupportedOperatorError, match=rf"graph node '/\d+' \(operator Pad, mode '{mode}'\)"):
        BoundedModule(net, torch.randn(2, 2, 4, 4))
    with pytest.raises(UnsupportedOperatorError, match="operator Pad"):
        BoundedModule(Lambda(lambda x: F.pad(x, (1, 1, 1, 1), mode=padding_mode)), torch.randn(2, 2, 4, 4))


@pytest.mark.parametrize("conv_mode", ["patches", "matrix"])
def test_circular_padding_is_traced_exactly_and_bounded(conv_mode):
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular"), nn.ReLU(),
                        nn.Conv2d(3, 3, 3, padding=1, padding_mode="circular"), nn.ReLU(), nn.Flatten(),
                        nn.Linear(48, 2))
    assert_sound(net, torch.randn(2, 2, 4, 4), 0.1, BACKWARD + ("IBP",), conv_mode=conv_mode)


def test_a_graph_that_computes_another_function_fails_construction(monkeypatch):
    from auto_LiRPA.operators import BoundRelu
    monkeypatch.setattr(BoundRelu, "forward", lambda self, x: x)  # a mistraced operator
    net = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    with pytest.raises(graph_check.GraphMismatchError,
                       match=r"first differing graph node '/\d+' \(operator Linear, traced from module '2'.*"
                             r"computed through Relu '/\d+'"):
        BoundedModule(net, torch.randn(2, 3))


def test_the_construction_check_changes_no_statistics_or_modes():
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.Dropout(0.3), nn.ReLU(), nn.Flatten(),
                        nn.Linear(12, 2)).train()
    net[5].eval()
    before = copy.deepcopy(net.state_dict())
    flags = [m.training for m in net.modules()]
    rng = torch.get_rng_state()
    BoundedModule(net, torch.randn(2, 2, 4, 4))
    assert [m.training for m in net.modules()] == flags
    after = net.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())
    torch.set_rng_state(rng)  # the check draws its second input from its own generator


def test_after_the_construction_check_the_graph_holds_the_example_input():
    net, x = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)), torch.randn(2, 3)
    bm = BoundedModule(net, x)
    lb, ub = bm.compute_bounds(method="IBP")  # x=None: the last inputs
    torch.testing.assert_close((lb, ub), (net(x), net(x)))


class ConcatConstant(nn.Module):
    """A constant with one row per sample joined to a perturbed value."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)
        self.rows = torch.tensor([[1.0], [-2.0]])  # traced as a constant

    def forward(self, x):
        return torch.cat([self.fc(x), self.rows], 1)


class SubtractConstant(nn.Module):
    """``x - c`` with a constant ``c`` of the output's rank (its first axis 1 or the batch)."""

    def __init__(self, shape):
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.c = torch.randn(*shape)  # traced as a constant

    def forward(self, x):
        return torch.relu(self.fc(x) - self.c)


FINDINGS = {  # 10c's fuzzer findings F2, F6 - F9, F19 (findings-10.md)
    "leaky_relu_chain": (Lambda(lambda x: F.leaky_relu(F.leaky_relu(x, -0.5), 2.0)), (2, 3), ("IBP",) + BACKWARD),
    "gather_repeated": (Lambda(lambda x: torch.gather(x, 1, torch.tensor([[2, 0, 0], [1, 1, 2]]))), (2, 3),
                        ("IBP",) + BACKWARD),
    "concat_constant": (ConcatConstant(), (2, 2), ("IBP",) + BACKWARD),
    "divide": (Lambda(lambda x: x / (x * x + 1)), (2, 3), ("IBP",)),
    "sqrt": (Lambda(lambda x: torch.sqrt(x * x + 1)), (2, 3), ("IBP", "CROWN-IBP", "CROWN")),
    "constant_row": (SubtractConstant((1, 3)), (2, 3), ("IBP",) + BACKWARD),
    "constant_per_sample": (SubtractConstant((3, 3)), (3, 3), ("IBP",) + BACKWARD),
    "constant_column": (SubtractConstant((3, 1)), (3, 3), ("IBP",) + BACKWARD),
}


@TRAINING
@pytest.mark.parametrize("name", sorted(FINDINGS))
def test_fuzzer_findings_are_bounded_soundly(name, training):
    net, shape, methods = FINDINGS[name]
    assert_sound(net, torch.randn(*shape), 0.5, methods, training)


def test_log_below_auto_lirpas_clamp_is_bounded_soundly():
    """``log`` of arguments in [5e-14, 2e-12], on both sides of auto_LiRPA's clamp at 1e-12."""
    torch.manual_seed(0)
    assert_sound(Lambda(lambda x: torch.log(x * 1e-13)), 1 + 19 * torch.rand(2, 3), 0.5,
                 ("IBP", "CROWN", "alpha-CROWN", "forward") + BACKWARD)


def test_log_of_a_range_reaching_zero_is_minus_infinity_in_ibp_and_refused_by_node_in_crown():
    bm = BoundedModule(Lambda(lambda x: torch.log(x)), torch.ones(1, 2))
    x = torch.tensor([[0.1, 1.0]])
    lb, ub = bounds(bm, x, 0.5, "IBP")
    assert lb[0, 0] == -float("inf") and torch.isfinite(lb[0, 1]) and torch.isfinite(ub).all()
    torch.testing.assert_close((ub[0, 0], lb[0, 1]), (torch.log(x[0, 0] + 0.5), torch.log(x[0, 1] - 0.5)))
    for method in ("CROWN", "CROWN-IBP", "alpha-CROWN", "forward"):
        with pytest.raises(NotImplementedError, match=r"graph node '/\d+' \(operator Log\b.*reaches 0 or below"):
            bounds(bm, x, 0.5, method)


def test_division_by_an_interval_around_zero_is_refused_by_node():
    bm = BoundedModule(Lambda(lambda x: x / x), torch.ones(1, 2))
    with pytest.raises(NotImplementedError, match=r"graph node '/\d+' \(operator Div\b.*contain 0"):
        bounds(bm, torch.tensor([[0.1, 1.0]]), 0.5, "IBP")


def test_failures_inside_auto_lirpa_name_the_node_and_operator():
    """CumSum has no backward pass in auto_LiRPA 0.3: CROWN's failure names the node."""
    net = nn.Sequential(nn.Linear(4, 4), Lambda(lambda x: torch.cumsum(x, 1)))
    x = torch.randn(2, 4)
    with pytest.raises(NotImplementedError, match=r"graph node '/\d+' \(operator CumSum, BoundCumSum\)"):
        bounds(BoundedModule(net, x), x, 0.1, "CROWN")


@pytest.mark.parametrize("method", ["alpha-CROWN", "alpha-CROWN-hzono"])
def test_alpha_crown_refuses_an_image_output_by_node(method):
    x = torch.randn(3, 1, 4, 4)
    bm = BoundedModule(nn.Sequential(nn.BatchNorm2d(1), nn.BatchNorm2d(1)).eval(), x)
    with pytest.raises(NotImplementedError, match=r"final graph node '/\d+' \(operator BatchNormalization"):
        bounds(bm, x, 0.1, method)


@TRAINING
@pytest.mark.parametrize("method", ["alpha-CROWN", "alpha-CROWN-hzono"])
def test_alpha_crown_without_activations_is_crown(method, training):
    net, x = nn.Sequential(nn.BatchNorm2d(1), nn.BatchNorm2d(1), nn.Flatten()), torch.randn(3, 1, 4, 4)
    assert_sound(net, x, 0.05, (method,), training)
    bm = BoundedModule(net.eval(), x)
    torch.testing.assert_close(bounds(bm, x, 0.05, method), bounds(bm, x, 0.05, "CROWN"))


def test_the_start_up_hook_applies_the_fixes_without_the_package(tmp_path):
    import subprocess
    import sys
    script = ("import sys, auto_LiRPA\n"
              "applied = sys.modules['lirpa_diffai.lirpa03.manifest'].APPLIED\n"
              "print('lirpa_diffai' in sys.modules, 'leaky_relu_bounds' in applied, 'failing_nodes_named' in applied)")
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.split() == ["False", "True", "True"], result.stderr[-2000:]


@pytest.mark.parametrize("name, fn", [
    ("Sin", torch.sin), ("Cos", torch.cos),
    ("ATenHeaviside", lambda v: torch.heaviside(v, torch.tensor(0.5)))])
@pytest.mark.parametrize("method", ["CROWN", "alpha-CROWN"])
def test_unsound_relaxations_are_refused_by_node(name, fn, method):
    """auto_LiRPA 0.3's CROWN bounds of sin / cos are NaN at eps = 0 and those of Heaviside are
    inverted (lower above upper): the methods that use these relaxations refuse the node."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(3, 3)

        def forward(self, v):
            return fn(self.linear(v))
    x = torch.randn(2, 3)
    bm = BoundedModule(Net(), x)
    with pytest.raises(NotImplementedError, match=rf"graph node '/\d+' \(operator {name}, .*unsound"):
        bounds(bm, x, 0.0, method)


class AddConstant(nn.Module):
    """``body(x) + c``, then a ReLU network: ``c`` a registered buffer or a plain tensor (a graph
    constant) whose shape broadcasts against ``body``'s output."""

    def __init__(self, body, shape, buffer):
        super().__init__()
        self.body = body
        c = torch.randn(*shape)
        if buffer:
            self.register_buffer("c", c)
        else:
            self.c = c

    def forward(self, x):
        return torch.relu(self.body(x) + self.c)


CONSTANTS = {  # F12 (findings-10.md): (body, input shape, constant shape, buffer)
    "buffer_per_sample": (nn.Identity(), (2, 1, 3, 3), (2, 1, 1, 1), True),
    "buffer_vector": (nn.Linear(3, 3), (2, 3), (3,), True),
    "buffer_per_channel_after_conv": (nn.Conv2d(2, 3, 3, padding=1), (2, 2, 4, 4), (3, 1, 1), True),
    "buffer_image_per_sample_after_conv": (nn.Conv2d(2, 3, 3, padding=1), (2, 2, 4, 4), (2, 3, 4, 4), True),
    "constant_per_channel_after_conv": (nn.Conv2d(2, 3, 3, padding=1), (2, 2, 4, 4), (1, 3, 1, 1), False),
    "constant_image_per_sample_after_conv": (nn.Conv2d(2, 3, 3, padding=1), (2, 2, 4, 4), (2, 3, 4, 4), False),
}


@TRAINING
@pytest.mark.parametrize("name", sorted(CONSTANTS))
def test_buffers_and_constants_of_a_broadcast_shape_in_crown(name, training):
    """auto_LiRPA 0.3 took a buffer's first axis for the batch (``x + buf`` failed, or summed
    ``buf``'s coefficients over the samples), and with patches coefficients multiplied a
    constant added to a convolution's output by the patches' sums (a failure, or the axes
    mixed). Sound now, the convolutions' coefficients as patches and as matrices."""
    body, shape, c_shape, buffer = CONSTANTS[name]
    net = nn.Sequential(AddConstant(body, c_shape, buffer), nn.Flatten(), nn.LazyLinear(2))
    x = torch.randn(*shape)
    net(x)
    for conv_mode in ("patches", "matrix") if "conv" in name else ("patches",):
        assert_sound(net, x, 0.2, BACKWARD + ("CROWN-hzono",), training, conv_mode)


def per_sample_head(body, d=3):
    return nn.Sequential(nn.Linear(d, d), body, nn.ReLU(), nn.Linear(d, 2))


ACROSS_THE_BATCH = {  # F16 (findings-10.md): (body, input shape, operator of the refused node)
    "transpose_of_the_batch_axis": (Lambda(lambda v: v.transpose(0, 1)), (3, 3), "Transpose"),  # unsound before
    "centre_on_the_batch_mean": (Lambda(lambda v: v - v.mean(0, keepdim=True)), (3, 3), "ReduceMean"),
    "difference_of_samples": (Lambda(lambda v: v - v[1:2]), (3, 3), "Slice"),
    "cumulative_sum_over_the_batch": (Lambda(lambda v: torch.cumsum(v, 0)), (3, 3), "CumSum"),
}
CROWN_FAMILY = ("CROWN", "CROWN-IBP", "alpha-CROWN", "CROWN-hzono", "alpha-CROWN-hzono", "forward")


@TRAINING
@pytest.mark.parametrize("name", sorted(ACROSS_THE_BATCH))
def test_crown_family_refuses_nodes_that_read_across_the_batch_axis(name, training):
    """auto_LiRPA 0.3's linear relaxations keep one block of coefficients per sample: CROWN
    bounded ``x.transpose(0, 1)`` of a square batch as if each sample were on its own
    (unsound), and failed on the others. Refused now, naming the node and its operator."""
    body, shape, operator = ACROSS_THE_BATCH[name]
    x = torch.randn(*shape)
    bm = BoundedModule(per_sample_head(body).train(training), x).train(training)
    for method in CROWN_FAMILY:
        message = rf"{method}: graph node '/[\w.]+' \(operator {operator}, Bound{operator}\).*batch axis"
        with pytest.raises(UnsupportedOperatorError, match=message):
            bounds(bm, x, 0.1, method)


@TRAINING
@pytest.mark.parametrize("name", sorted(set(ACROSS_THE_BATCH) - {"cumulative_sum_over_the_batch"}))
def test_ibp_and_hzono_bound_operations_across_the_batch_axis(name, training):
    """IBP (elementwise intervals) and hzono (per-sample noise symbols) are sound there."""
    body, shape, _ = ACROSS_THE_BATCH[name]
    assert_sound(per_sample_head(body), torch.randn(*shape), 0.3, ("IBP", "hzono"), training)


def test_per_sample_graphs_pass_the_batch_axis_check():
    """Transposes, reshapes and reductions of other axes, BatchNorm in training mode (fixed
    statistics) and Dropout keep samples apart: CROWN bounds them."""
    body = nn.Sequential(nn.BatchNorm2d(2), nn.Dropout(0.2), Lambda(lambda v: v.transpose(2, 3).reshape(3, 2, 4, 4)),
                         Lambda(lambda v: v - v.mean(1, keepdim=True)), nn.Flatten(), nn.Linear(32, 2))
    assert_sound(body.eval(), torch.randn(3, 2, 4, 4), 0.1, BACKWARD + ("CROWN-hzono",), training=False)
    x = torch.randn(3, 2, 4, 4)
    bm = BoundedModule(body.train(), x).train()
    bm(BoundedTensor(x, PerturbationLpNorm(norm=np.inf, eps=0.1)))  # draws the dropout mask
    lb, ub = bm.compute_bounds(method="CROWN")  # not refused in training mode either
    assert bool((lb <= ub).all())


@TRAINING
@pytest.mark.parametrize("method", ["alpha-CROWN", "alpha-CROWN-hzono"])
def test_alpha_crown_optimizes_a_relu_of_three_axes(method, training):
    """auto_LiRPA 0.3's sparse slopes handle a ReLU after a linear or convolutional layer only
    (2 or 4 axes) and failed with a bare ValueError on (B, C, L): full slopes there."""
    net = nn.Sequential(nn.Linear(6, 6), Lambda(lambda v: v.reshape(v.shape[0], 2, 3)), nn.ReLU(), nn.Flatten(),
                        nn.Linear(6, 2))
    assert_sound(net, torch.randn(2, 6), 0.5, (method,), training)


@pytest.mark.parametrize("method", ["CROWN", "alpha-CROWN", "CROWN-IBP"])
def test_a_constant_before_a_convolution_with_another_batch_than_traced(method):
    """``(x - mean) / std`` before a convolution, traced on 2 images and bounded on 5: the
    constant's patches product took the traced batch (an einsum error in CROWN)."""
    torch.manual_seed(0)
    net = nn.Sequential(Lambda(lambda v: (v - 0.1307) / 0.3081), nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(),
                        nn.Flatten(), nn.Linear(3 * 6 * 6, 2))
    assert_sound(net, torch.rand(5, 1, 6, 6), 0.1, (method,), traced=torch.rand(2, 1, 6, 6))


@pytest.mark.parametrize("eps", [0.0, 0.02, 0.5])
def test_alpha_crown_optimizes_a_relu_before_a_token_wise_layer(eps):
    """A ReLU whose later pre-activation has the (B, tokens, d) shape of a ViT's MLP: auto_LiRPA
    0.3's sparse-spec alphas take start nodes of 1 or 3 axes only (a bare assertion where few
    of its outputs are unstable): full alphas there."""
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 4), nn.ReLU(), nn.Flatten(), nn.Linear(12, 2))
    assert_sound(net, torch.randn(2, 3, 4), eps, ("alpha-CROWN",), False)


def test_alpha_crown_refuses_tan_and_crown_bounds_it():
    """auto_LiRPA 0.3's alpha-CROWN bounds of tan missed tan(x) by 0.06 at eps = 0 (random graph
    seed 22 of the fuzzer): refused by node; CROWN's fixed relaxation stays, sound."""
    net = nn.Sequential(nn.Linear(3, 3), Lambda(lambda v: torch.tan(torch.tanh(v))), nn.Linear(3, 2))
    x = torch.randn(2, 3)
    with pytest.raises(NotImplementedError, match=r"graph node '/\d+' \(operator Tan, BoundTan\)"):
        bounds(BoundedModule(net, x), x, 0.0, "alpha-CROWN")
    assert_sound(net, x, 0.3, ("CROWN",))


@pytest.mark.parametrize("training", [False, True])
def test_wrapping_a_model_leaves_its_tensors_untouched(training):
    """A graph saved before the model is wrapped still runs backward, and the trace's moves of
    the BatchNorm statistics are undone. Parameters keep their version; buffers too in eval mode
    (a training-mode trace moves the statistics, which the restore then bumps; a training-mode
    backward does not read them)."""
    net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2)).train(training)
    x = torch.randn(5, 4)
    loss = net(x).square().sum()
    kept = dict(net.named_parameters()) if training else net.state_dict(keep_vars=True)
    versions = {name: t._version for name, t in kept.items()}
    values = copy.deepcopy(net.state_dict())
    BoundedModule(net, x)
    assert {name: t._version for name, t in kept.items()} == versions
    for name, value in net.state_dict().items():
        torch.testing.assert_close(value, values[name], rtol=0, atol=0)
    if not training:
        loss.backward()
        assert net[0].weight.grad is not None and net[0].weight.grad.abs().sum() > 0
