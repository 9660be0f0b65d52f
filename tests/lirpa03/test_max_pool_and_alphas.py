"""Max pooling of every setting (overlapping windows, -inf padding, dilation, ceil_mode) in the
CROWN family and IBP (lirpa03.fixes_pooling), alpha-CROWN's alphas (lirpa03.fixes_alpha), and
patches-mode coefficients through Pad, Slice and scalar constants: sound against sampled
points, corners and PGD aimed at each bound, exact at eps = 0."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from auto_LiRPA import BoundedTensor, PerturbationLpNorm
from torch import nn

import lirpa_diffai
from lirpa_diffai.lirpa03.max_pool import Windows
from tests.architectures import BY_NAME, family_case
from tests.soundness.check import Case, run_case
from tests.soundness.methods import METHODS


POOLS = {
    "resnet-stem": dict(kernel_size=3, stride=2, padding=1),
    "googlenet-stride-1": dict(kernel_size=3, stride=1, padding=1),
    "squeezenet-ceil": dict(kernel_size=3, stride=2, ceil_mode=True),
    "ceil-and-padding": dict(kernel_size=2, stride=2, padding=1, ceil_mode=True),
    "ceil-past-the-edge": dict(kernel_size=2, stride=2, ceil_mode=True),
    "dilated": dict(kernel_size=3, stride=1, padding=1, dilation=2),
    "plain": dict(kernel_size=2),
    "rectangular": dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 0)),
}
LABELS = ["IBP", "CROWN", "CROWN-IBP", "alpha-CROWN", "CROWN-hzono", "hzono[boxy,rows=0]"]


def pooled(settings: dict) -> nn.Module:
    torch.manual_seed(0)
    pool = nn.MaxPool2d(**settings)
    side = pool(torch.zeros(1, 4, 7, 7)).shape[-1]
    # the convolution after the pool is bounded for its ReLU: patches reach the pool
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), pool, nn.Conv2d(4, 3, 3, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(3 * pool(torch.zeros(1, 4, 7, 7)).shape[-2] * side, 3)).eval()


def bounds(model, x, method, eps=2 / 255, **opts):
    bm = lirpa_diffai.BoundedModule(model, x, bound_opts={"optimize_bound_args": {"iteration": 3}, **opts})
    return bm.compute_bounds(x=(BoundedTensor(x, PerturbationLpNorm(norm=np.inf, eps=eps)),), method=method)


# the quick run: IBP and CROWN on every pool, a few pools for the other methods
QUICK = {("IBP", pool) for pool in POOLS} | {("CROWN", pool) for pool in POOLS} | {
    ("alpha-CROWN", "resnet-stem"), ("alpha-CROWN", "ceil-past-the-edge"), ("CROWN-IBP", "dilated"),
    ("CROWN-hzono", "googlenet-stride-1"), ("hzono[boxy,rows=0]", "squeezenet-ceil")}
GRID = [pytest.param(pool, label, marks=() if (label, pool) in QUICK else (pytest.mark.slow,))
        for pool in sorted(POOLS) for label in LABELS]


@pytest.mark.parametrize("pool, label", GRID)
def test_max_pool_of_every_setting_is_sound_and_exact_at_zero(pool, label):
    case = Case(pooled(POOLS[pool]), torch.rand(2, 3, 7, 7), eps=0.05, seed=0)
    outcome = run_case(case, METHODS[label], False, samples=100, pgd_steps=8, pgd_targets=8)
    assert outcome.kind == "sound", outcome


@pytest.mark.parametrize("pool", sorted(POOLS))
def test_max_pool_bounds_are_the_same_from_patches_and_from_matrices(pool):
    """The backward pass on ``Patches`` (the windows as a convolution) and on dense coefficients
    (unfold / fold) are the same relaxation."""
    model, x = pooled(POOLS[pool]), torch.rand(2, 3, 7, 7)
    (patches_lb, patches_ub), (matrix_lb, matrix_ub) = (bounds(model, x, "CROWN", conv_mode=mode, eps=0.05)
                                                        for mode in ("patches", "matrix"))
    assert torch.allclose(patches_lb, matrix_lb, atol=1e-5) and torch.allclose(patches_ub, matrix_ub, atol=1e-5)


def test_the_windows_fold_is_the_transpose_of_their_unfold():
    """<fold(w), x> = <w, unfold(x)>: overlapping windows sum their coefficients on one input;
    the -inf padding never enters (unfold with fill 0 here, fold drops the padding)."""
    win = Windows((5, 6), (3, 3), (3, 3), (2, 2), (1, 1), (1, 1))
    x, w = torch.randn(2, 3, 5, 6), torch.randn(2, 3, 9, 3, 3)
    assert torch.allclose((win.fold(w) * x).sum(), (w * win.unfold(x, 0.0)).sum(), atol=1e-5)
    assert torch.equal(win.unfold(x, -torch.inf).amax(2), nn.functional.max_pool2d(x, 3, 2, 1))


def tighter_than_crown(family: str, strictly: bool = True):
    """alpha-CROWN bounds the family (its soundness: tests/test_architectures.py's grid) at least
    as tightly as CROWN, and (``strictly``) more tightly somewhere."""
    case = family_case(BY_NAME[family])
    (crown_lb, crown_ub), (alpha_lb, alpha_ub) = (bounds(case.model, case.x, m) for m in ("CROWN", "alpha-CROWN"))
    assert (alpha_lb >= crown_lb - 1e-5).all() and (alpha_ub <= crown_ub + 1e-5).all()
    assert not strictly or (alpha_ub - alpha_lb).sum() < (crown_ub - crown_lb).sum()


@pytest.mark.parametrize("family", ["LeNet", "VGG", "ResNet stem"])
def test_alpha_crown_bounds_tanh_and_max_pool_after_convolutions(family):
    tighter_than_crown(family)


def test_alpha_crown_bounds_a_squeeze_excitation_gate_with_stable_relus():
    tighter_than_crown("MobileNetV3", strictly=False)   # its ReLUs' alphas move no bound here


class Shifted(nn.Module):
    """``op(x)`` with a scalar constant before zero-padded convolutions (a strided one too)."""

    def __init__(self, op):
        super().__init__()
        self.op = op
        self.conv1, self.conv2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 2, 3, stride=2, padding=2)

    def forward(self, x):
        return self.conv2(torch.relu(self.conv1(self.op(x))) - 0.25).flatten(1)


SHIFTS = {"x - c": lambda x: x - 0.1307, "x + c": lambda x: x + 0.5, "c - x": lambda x: 0.3 - x,
          "(x - c) / s": lambda x: (x - 0.1307) / 0.3081}


@pytest.mark.parametrize("shift", sorted(SHIFTS))
def test_a_scalar_constant_before_a_padded_convolution_in_patches_mode(shift):
    """Patches mode leaves the constant out at the padding: sound, and the bounds of matrix mode."""
    torch.manual_seed(0)
    model, x = Shifted(SHIFTS[shift]).eval(), torch.rand(2, 3, 8, 8)
    outcome = run_case(Case(model, x, 2 / 255, 0), METHODS["CROWN"], False, samples=100, pgd_steps=8, pgd_targets=8)
    assert outcome.kind == "sound", outcome
    patches, matrix = bounds(model, x, "CROWN"), bounds(model, x, "CROWN", conv_mode="matrix")
    for p, m in zip(patches, matrix):
        assert torch.allclose(p, m, atol=1e-5)


class PaddedAndSliced(nn.Module):
    """Padding of spatial and channel axes with a constant, and a spatial strided slice, between
    convolutions: patches reach Pad and Slice on axes other than the channels."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(6, 3, 3, padding=1)

    def forward(self, x):
        y = torch.relu(self.conv1(x))
        z = nn.functional.pad(y[:, :, 1::2, ::3], (1, 0, 2, 1, 1, 1), value=0.5)
        return self.conv2(z).flatten(1)


@pytest.mark.parametrize("label", ["CROWN", pytest.param("alpha-CROWN", marks=pytest.mark.slow), "CROWN-IBP"])
def test_pad_and_slice_of_spatial_axes_take_patches(label):
    torch.manual_seed(0)
    case = Case(PaddedAndSliced().eval(), torch.rand(2, 3, 8, 8), eps=0.05, seed=0)
    outcome = run_case(case, METHODS[label], False, samples=100, pgd_steps=8, pgd_targets=8)
    assert outcome.kind == "sound", outcome


class BetweenConvolutions(nn.Module):
    """``op`` of an image between two ReLU convolutions: patches reach ``op``'s backward pass."""

    def __init__(self, op, channels_after: int = 3):
        super().__init__()
        self.op = op
        self.conv1, self.conv2 = nn.Conv2d(2, 3, 3, padding=1), nn.Conv2d(channels_after, 2, 3, padding=1)
        self.linear = nn.Linear(2 * 6 * 6, 3)

    def forward(self, x):
        y = self.op(torch.relu(self.conv1(x)))
        return self.linear(torch.relu(self.conv2(y)).flatten(1))


WEIGHT = torch.randn(6, 6, generator=torch.Generator().manual_seed(3))
OPERATORS_BETWEEN = {
    "softmax over width": lambda y: torch.softmax(y, -1),
    "softmax over height (transposed)": lambda y: torch.softmax(y, 2),
    "max over width, expanded": lambda y: y.amax(-1, keepdim=True).expand(-1, -1, -1, 6),
    "x @ W": lambda y: y @ WEIGHT,
    "x * x": lambda y: y * y,
    "C / (x + 1)": lambda y: WEIGHT / (y + 1),
}


@pytest.mark.parametrize("label", ["CROWN", "alpha-CROWN", "CROWN-IBP", "CROWN-hzono"])
@pytest.mark.parametrize("operator", sorted(OPERATORS_BETWEEN))
def test_patches_reach_transpose_and_matmul_in_crown(operator, label):
    """Patches-mode coefficients reaching softmax, ReduceMax, Transpose, MatMul with a constant,
    a product of two perturbed values and a constant tensor over a perturbed one are made dense
    (``transpose_and_matmul_take_patches``, ``broadcast_product_patches``,
    ``attention_ops.dense_pair``, ``division_denominator_checked``), and alpha-CROWN starts a ReLU
    that only the softmax reads (``relu_not_reached_by_crown``): each failed before. Sound at
    sampled, corner and PGD points, exact at eps = 0."""
    torch.manual_seed(0)
    case = Case(BetweenConvolutions(OPERATORS_BETWEEN[operator]).eval(), torch.rand(2, 2, 6, 6), eps=0.1, seed=0)
    outcome = run_case(case, METHODS[label], False, samples=100, pgd_steps=8, pgd_targets=8)
    assert outcome.kind == "sound", outcome
