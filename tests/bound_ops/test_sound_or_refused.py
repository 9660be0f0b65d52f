"""Issue 10, the project's own code: hzono on broadcast constants, on operators that subclass a
registered Bound class and on operations that mix the samples of a batch is sound (sampling and
PGD points inside the bounds, eps = 0 gives the forward pass) or refused by node; the crashes
found on the way are fixed."""
import copy
import inspect

import numpy as np
import pytest
import torch
from auto_LiRPA import BoundedTensor, PerturbationLpNorm
from auto_LiRPA.operators import Bound
from torch import nn

from lirpa_diffai import BoundedModule, PerturbationHybridZonotope, UnsupportedOperatorError
from lirpa_diffai.bound_ops import HZONO_TRANSFORMERS, transformer_for

from tests.support import assert_inside, attack_points, box_samples


ROWS = (0, "all")


def ball(x, eps):
    return BoundedTensor(x, PerturbationLpNorm(norm=np.inf, eps=eps))


def assert_sound(net, x, eps, method="hzono", rows="all", relu="boxy", train=False, **kwargs):
    """Bounds of ``method`` contain sampled and PGD points of the box, and equal the forward
    pass at eps = 0."""
    bm = BoundedModule(net, x, bound_opts={"hzono": {"correlate_input": rows, "relu": relu}}).train(train)
    lb, ub = bm.compute_bounds(x=(ball(x, eps),), method=method, **kwargs)
    points = torch.cat([box_samples(x - eps, x + eps, 64), attack_points(net, x - eps, x + eps, 5)])
    with torch.no_grad():
        assert_inside(torch.stack([net(p) for p in points]), lb, ub)
        lb0, ub0 = bm.compute_bounds(x=(ball(x, 0.0),), method=method, **kwargs)
        torch.testing.assert_close(lb0, net(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ub0, net(x), rtol=1e-5, atol=1e-5)
    return lb, ub


# ------------------------------------------------- case 1: constants of a larger shape
class PositionalSum(nn.Module):
    """``x`` and a constant of a larger shape (a positional embedding), then a sum over the
    broadcast axis T: ``x + pos`` and ``pos - x`` counted ``x``'s perturbation once."""

    def __init__(self, op):
        super().__init__()
        self.op = op
        self.pos = nn.Parameter(torch.randn(1, 5, 3))

    def forward(self, x):  # x: (B, 1, 3)
        y = {"add": lambda: x + self.pos, "sub": lambda: self.pos - x, "mul": lambda: x * self.pos,
             "div": lambda: x / (self.pos.abs() + 1)}[self.op]()
        return torch.relu(y.sum(1)) + y.mean(1)


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
@pytest.mark.parametrize("rows", ROWS)
def test_perturbed_value_plus_broadcast_constant_counts_every_copy(op, rows):
    net = PositionalSum(op)
    x = torch.randn(3, 1, 3)
    lb, ub = assert_sound(net, x, 0.1, rows=rows)
    ilb, iub = BoundedModule(net, x).compute_bounds(x=(ball(x, 0.1),), method="IBP")
    if rows == 0:  # a box: exactly IBP
        torch.testing.assert_close((lb, ub), (ilb, iub), rtol=1e-5, atol=1e-5)


def test_constant_that_adds_leading_axes_is_refused_by_node():
    class Grow(nn.Module):
        def forward(self, x):  # (B, 3) * (4, 1, 3) -> (4, B, 3): the batch axis moves
            return (x * torch.ones(4, 1, 3)).sum(0)
    x = torch.randn(2, 3)
    bm = BoundedModule(Grow(), x)
    with pytest.raises(UnsupportedOperatorError, match=r"node '.*' \(BoundMul\).*batch axis"):
        bm.compute_bounds(x=(ball(x, 0.1),), method="hzono")


# ------------------------------------------------------------- case 2: exact registry
class Atan(nn.Module):
    def forward(self, x):
        return torch.atan(x) * 2


@pytest.mark.parametrize("rows", ROWS)
def test_atan_has_its_own_sound_transformer(rows):
    lin = nn.Linear(4, 4)
    net = nn.Sequential(lin, Atan(), nn.Linear(4, 2))
    assert_sound(net, torch.randn(3, 4) * 2, 0.5, rows=rows)


def test_tan_which_subclasses_a_registered_class_is_refused():
    class Tan(nn.Module):
        def forward(self, x):
            return torch.tan(x)
    x = torch.rand(2, 3) * 0.5
    bm = BoundedModule(Tan(), x)
    with pytest.raises(UnsupportedOperatorError, match=r"node '.*' \(operator .*BoundTan\).*subclasses BoundAtan"):
        bm.compute_bounds(x=(ball(x, 0.1),), method="hzono")


def all_bound_classes():
    def walk(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from walk(sub)
    return set(walk(Bound))


def test_every_bound_class_without_its_own_entry_is_refused():
    """Derived from every Bound class loaded (auto_LiRPA's and this package's), so a new
    subclass of a registered class is covered automatically."""
    unregistered = [cls for cls in all_bound_classes()
                    if cls not in HZONO_TRANSFORMERS and not inspect.isabstract(cls)]
    inheriting = [cls for cls in unregistered if any(b in HZONO_TRANSFORMERS for b in cls.__mro__[1:])]
    assert inheriting, "expected auto_LiRPA's BoundTan to subclass a registered class"
    for cls in unregistered:
        node = cls.__new__(cls)
        nn.Module.__init__(node)
        node.name = f"/{cls.__name__}"
        with pytest.raises(UnsupportedOperatorError, match=f"node '/{cls.__name__}'.*{cls.__name__}"):
            transformer_for(node)


# ---------------------------------------------------- case 3: ops that mix the batch
class MixBatch(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        self.lin = nn.Linear(4, 4)

    def forward(self, x):  # x: (2, 4)
        h = self.lin(x)
        if self.kind == "centre":
            y = h - h.mean(0, keepdim=True)
        elif self.kind == "pair":
            y = h[0:1] - h[1:2]
        elif self.kind == "reshape":  # the batch axis folded into the features and back
            y = h - h.reshape(4, 2).t()
        elif self.kind == "transpose":
            y = h[:, :2] - h[:, :2].t()
        else:  # concat along the batch, then a sum over it
            y = h - torch.cat([h[1:], h[:1]], 0)
        return torch.relu(y) + y


@pytest.mark.parametrize("kind", ["centre", "pair", "reshape", "transpose", "concat"])
@pytest.mark.parametrize("relu", ["boxy", "deepz"])
def test_operations_that_mix_samples_are_sound_with_correlated_rows(kind, relu):
    net = MixBatch(kind)
    x = torch.randn(2, 4)
    # rows shared by index: sample 0's and sample 1's rows cancelled before
    lb, ub = assert_sound(net, x, 0.2, rows="all", relu=relu)
    assert (ub - lb).min() > 0


def test_per_sample_operations_keep_their_rows():
    """A map that keeps every sample in place (flatten, a slice of features) keeps the rows:
    the same bounds as before, tighter than a box."""
    class Regroup(nn.Module):
        def forward(self, x):
            return x.reshape(x.shape[0], 2, 3).transpose(1, 2)[:, 1:].flatten(1)
    net = nn.Sequential(nn.Linear(6, 6), Regroup(), nn.Linear(4, 2))
    x = torch.randn(3, 6)
    bm = BoundedModule(net, x, bound_opts={"hzono": {"correlate_input": "all"}})
    lb, ub = bm.compute_bounds(x=(ball(x, 0.1),), method="hzono")
    ilb, iub = bm.compute_bounds(x=(ball(x, 0.1),), method="IBP")
    assert ((ub - lb) < (iub - ilb) - 1e-4).all()


def test_matmul_contracting_the_batch_axis_is_refused():
    class Gram(nn.Module):
        def forward(self, x):  # (4, B) @ (B, 3): mixes the samples
            return torch.ones(4, x.shape[0]) @ x
    x = torch.randn(2, 3)
    bm = BoundedModule(Gram(), x)
    with pytest.raises(UnsupportedOperatorError, match=r"node '.*' \(MatMul\) contracts the batch axis"):
        bm.compute_bounds(x=(ball(x, 0.1),), method="hzono")


def test_matmul_with_a_per_sample_constant_is_sound():
    class PerSample(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(3, 4, 2))

        def forward(self, x):  # (B, 1, 4) @ (B, 4, 2), B = 3
            return torch.relu(x @ self.w).flatten(1)
    assert_sound(PerSample(), torch.randn(3, 1, 4), 0.2)


# ------------------------------------------------------------------------- crashes
class NestedConcat(nn.Module):
    def forward(self, x):  # (B, 2, 3, 3)
        wide = torch.cat([x, -x], 3)
        return torch.relu(torch.cat([wide, wide[:, :, :1]], 2)).flatten(1)


@pytest.mark.parametrize("rows", ROWS)
def test_nested_concatenations_along_different_axes(rows):
    assert_sound(NestedConcat(), torch.randn(2, 2, 3, 3), 0.1, rows=rows)


class OneSidedClamp(nn.Module):
    def __init__(self, side):
        super().__init__()
        self.lin, self.side = nn.Linear(4, 4), side

    def forward(self, x):
        y = self.lin(x)
        return torch.clamp(y, min=0.1) if self.side == "min" else torch.clamp(y, max=-0.1)


@pytest.mark.parametrize("side", ["min", "max"])
@pytest.mark.parametrize("method", ["hzono", "IBP", "CROWN", "CROWN-hzono"])
def test_one_sided_clamp_for_every_method(side, method):
    assert_sound(OneSidedClamp(side), torch.randn(3, 4), 0.3, method=method)


def test_zonotope_input_with_crown_in_patches_mode():
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Conv2d(3, 3, 3, padding=1), nn.ReLU(),
                        nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    head = torch.rand(2, 1, 6, 6)
    errors = torch.randn(3, 2, 1, 6, 6) * 0.05
    beta = torch.rand(2, 1, 6, 6) * 0.02
    bm = BoundedModule(net, head, bound_opts={"conv_mode": "patches", "sparse_intermediate_bounds": False})
    ptb = PerturbationHybridZonotope.from_tensors(head, beta, errors)
    lb, ub = bm.compute_bounds(x=(BoundedTensor(head, ptb),), method="CROWN")
    e = torch.rand(500, 3, 1, 1, 1, 1) * 2 - 1
    b = torch.rand(500, *head.shape) * 2 - 1
    points = head + beta * b + (e * errors).sum(1)
    with torch.no_grad():
        assert_inside(torch.stack([net(p) for p in points]), lb, ub)


@pytest.mark.parametrize("method", ["hzono", "IBP", "CROWN-hzono", "alpha-CROWN-hzono"])
def test_float64_network_with_a_float32_spec(method):
    net = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 3)).double()
    x = torch.randn(2, 3, dtype=torch.float64)
    C = torch.eye(3)[None, :2].expand(2, 2, 3)  # float32, as torch.eye makes it
    bm = BoundedModule(net, x)
    lb, ub = bm.compute_bounds(x=(ball(x, 0.1),), C=C, method=method)
    assert lb.dtype == ub.dtype == torch.float64
    points = box_samples(x - 0.1, x + 0.1, 200)
    with torch.no_grad():
        assert_inside(torch.stack([net(p)[:, :2] for p in points]), lb, ub)


def test_alpha_crown_hzono_in_training_mode_with_batch_norm():
    """The hzono pass's batch statistics (the clean batch's) are constants to alpha-CROWN's
    iterations: it used to backward through them twice."""
    net = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2))
    x = torch.randn(4, 3)
    bm = BoundedModule(net, x).train()
    lb, ub = bm.compute_bounds(x=(ball(x, 0.1),), method="alpha-CROWN-hzono")
    lb0, ub0 = bm.compute_bounds(x=(ball(x, 0.0),), method="alpha-CROWN-hzono")
    frozen = copy.deepcopy(net).eval()  # batch norm with the clean batch's statistics
    with torch.no_grad():
        h = net[0](x)
        frozen[1].running_mean, frozen[1].running_var = h.mean(0), h.var(0, unbiased=False)
        assert_inside(torch.stack([frozen(p) for p in box_samples(x - 0.1, x + 0.1, 200)]), lb, ub)
        torch.testing.assert_close((lb0, ub0), (frozen(x), frozen(x)), rtol=1e-5, atol=1e-5)
