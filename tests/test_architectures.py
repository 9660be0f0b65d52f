"""Coverage measured: every bound method on small versions of the architecture families people
train today (tests/architectures.py) is sound (sampled points, corners and PGD aimed at each
bound; exact at eps = 0) or refuses with an error naming the graph node and its operator;
never NaN, never a crash without a node. The checked-in table (docs/architectures.md) is
what the methods do now."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch
from auto_LiRPA import BoundedTensor, PerturbationLpNorm

import lirpa_diffai
from tests.architectures import BY_NAME, FAMILIES, METHOD_COLUMNS, check, family_case, parse_markdown
from tests.support import drawn_rows, slow_unless


PAGE = Path(__file__).resolve().parents[1] / "docs" / "architectures.md"
EXPECTED = parse_markdown(PAGE.read_text())
KIND = {"sound": "bounded", "refused": "refused"}


@lru_cache(maxsize=None)
def case_of(family: str):
    return family_case(BY_NAME[family])


GRID = [(f.name, title, label) for f in FAMILIES for title, label in METHOD_COLUMNS]
# the quick tier checks two methods drawn for each family (every method on some family); the
# slow tier the rest of the page
QUICK_CELLS = drawn_rows([f.name for f in FAMILIES], [title for title, _ in METHOD_COLUMNS], k=2)


def page_params():
    return [pytest.param(family, title, label, marks=slow_unless((family, title) in QUICK_CELLS),
                         id=f"{family}-{title}") for family, title, label in GRID]


def test_the_quick_tier_checks_every_method_and_family():
    assert {title for _, title in QUICK_CELLS} == {title for title, _ in METHOD_COLUMNS}
    assert {family for family, _ in QUICK_CELLS} == {f.name for f in FAMILIES}


@pytest.mark.parametrize("family, title, label", page_params())
def test_sound_or_refused_by_node_as_the_page_says(family, title, label):
    outcome = check(case_of(family), label)
    assert outcome.kind in KIND, f"{family} / {title}: {outcome}"
    assert EXPECTED.get((family, title)) == KIND[outcome.kind], (
        f"{family} / {title} is now {outcome.kind} ({outcome.detail[:200]}); docs/architectures.md says "
        f"{EXPECTED.get((family, title))}: python -m benchmarks.architecture_table --markdown docs/architectures.md")


@pytest.mark.slow
@pytest.mark.parametrize("family, title, label", GRID, ids=[f"{f}-{t}" for f, t, _ in GRID])
def test_sound_or_refused_in_training_mode_with_more_witnesses(family, title, label):
    outcome = check(case_of(family), label, training=True,
                    witness={"samples": 200, "pgd_steps": 15, "pgd_targets": 16})
    # unchecked: a network holding Dropout (ViT's encoder layer) computes a random function in training mode
    assert outcome.kind in (*KIND, "unchecked"), f"{family} / {title}: {outcome}"


def test_the_page_lists_every_family_and_method():
    assert set(EXPECTED) == {(f.name, title) for f in FAMILIES for title, _ in METHOD_COLUMNS}


@pytest.mark.parametrize("method", ["IBP", "hzono", "HBox", "ZBox", "CROWN-IBP", "CROWN", "CROWN-hzono"])
def test_never_nan_on_a_deep_network_at_large_eps(method):
    """A deep residual network at random initialisation: at eps = 1e38 the bounds overflow,
    and overflow gives infinite bounds, never NaN (``inf - inf``, ``0 * inf``)."""
    from tests.architectures import BasicBlock, head
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                              *[BasicBlock(4) for _ in range(8)], *head(4)).eval()
    x = torch.rand(2, 3, 4, 4)
    bm = lirpa_diffai.BoundedModule(net, x)
    for eps in (1e30, 1e38):
        lb, ub = bm.compute_bounds(x=(BoundedTensor(x, PerturbationLpNorm(norm=np.inf, eps=eps)),), method=method)
        assert not lb.isnan().any() and not ub.isnan().any(), (method, eps)
        assert (lb <= net(x)).all() and (net(x) <= ub).all()


def test_crown_bounds_a_squeeze_excitation_gate():
    """The gate's pool feeds a 1x1 convolution in patches mode (auto_LiRPA 0.3 failed there)."""
    for family, label in (("MobileNetV3", "CROWN"), ("EfficientNet", "CROWN"), ("EfficientNet", "alpha-CROWN")):
        assert check(case_of(family), label).kind == "sound", (family, label)


class GateThenConvolutions(torch.nn.Module):
    """A squeeze-excitation gate ``x * sigmoid(fc2(relu(fc1(pool(x)))))`` (the product of a
    (B, C, H, W) value and a broadcast (B, C, 1, 1) one) followed by a 1x1 convolution, a ReLU
    and a 3x3 convolution, as in every MobileNetV3 / EfficientNet block: the ReLU's
    intermediate bounds reach the product with patches. ``relu_first``: the gated value is
    non-negative (after a ReLU), else of both signs."""

    def __init__(self, relu_first: bool):
        super().__init__()
        from lirpa_diffai.models.modern import SqueezeExcite
        self.stem, self.relu_first = torch.nn.Conv2d(3, 4, 3, padding=1), relu_first
        self.gate = SqueezeExcite(4, 4)
        self.project, self.conv = torch.nn.Conv2d(4, 4, 1), torch.nn.Conv2d(4, 3, 3, padding=1)

    def forward(self, x):
        y = self.stem(x)
        y = self.gate(torch.relu(y) if self.relu_first else y)
        return self.conv(torch.relu(self.project(y))).flatten(1)


class ProductThenConvolutions(torch.nn.Module):
    """A product of two image-shaped perturbed values of one shape, ``y * tanh(y)``, between
    convolutions."""

    def __init__(self):
        super().__init__()
        self.stem, self.conv = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Conv2d(4, 3, 3, padding=1)

    def forward(self, x):
        y = self.stem(x)
        return self.conv(y * torch.tanh(y)).flatten(1)


PRODUCTS = {"gate-non-negative": lambda: GateThenConvolutions(True),
            "gate-both-signs": lambda: GateThenConvolutions(False),
            "same-shape": ProductThenConvolutions}


@pytest.mark.parametrize("product", sorted(PRODUCTS))
@pytest.mark.parametrize("eps", [0.01, 0.3])
@pytest.mark.parametrize("label", ["CROWN", "CROWN-IBP", "alpha-CROWN", "CROWN-hzono"])
def test_crown_bounds_a_product_followed_by_convolutions(label, eps, product):
    """auto_LiRPA 0.3 failed (``shape ... is invalid``) in the backward pass of a product of
    two perturbed values, a broadcast gate or two values of one shape, with patches
    (``lirpa03.fixes_activations.broadcast_product_patches``): now sound at sampled, corner
    and PGD points aimed at each bound, and exact at eps = 0."""
    from tests.soundness.check import Case, run_case
    from tests.soundness.methods import METHODS
    torch.manual_seed(0)
    case = Case(PRODUCTS[product]().eval(), torch.rand(2, 3, 6, 6), eps=eps, seed=0)
    outcome = run_case(case, METHODS[label], False, samples=200, pgd_steps=15, pgd_targets=16)
    assert outcome.kind == "sound", outcome


class StridedShortcut(torch.nn.Module):
    """Slices with steps 2 and 3 (one from a negative start), and padding of the channel axis
    with a non-zero constant, between two convolutions."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x):
        y = torch.relu(self.conv1(x))
        z = torch.nn.functional.pad(y[:, :, ::2, -7::3], (0, 0, 0, 0, 1, 3), value=0.5)
        return self.conv2(z).flatten(1)


@pytest.mark.parametrize("label", ["IBP", "hzono[boxy,rows=0]", "hzono[deepz,rows=all]", "ZNIPS", "CROWN-IBP",
                                   "CROWN", "alpha-CROWN", "CROWN-hzono"])
def test_strided_slice_is_bounded_by_every_method(label):
    from tests.soundness.check import Case, run_case
    from tests.soundness.methods import METHODS
    torch.manual_seed(0)
    case = Case(StridedShortcut().eval(), torch.rand(2, 3, 8, 8), eps=0.05, seed=0)
    outcome = run_case(case, METHODS[label], False, samples=100, pgd_steps=8, pgd_targets=8)
    assert outcome.kind == "sound", outcome


class Scaled(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return self.conv(x / 0.3081).flatten(1)


def test_lenet_and_plain_normalisation_are_bounded_by_crown():
    """CROWN in patches mode through an average pool after a convolution (LeNet) and through a
    division by a scalar before one."""
    from tests.soundness.check import Case, run_case
    from tests.soundness.methods import METHODS
    assert check(case_of("LeNet"), "CROWN").kind == "sound"
    torch.manual_seed(0)
    case = Case(Scaled().eval(), torch.rand(2, 3, 8, 8), eps=2 / 255, seed=0)
    for label in ("CROWN", "alpha-CROWN"):
        outcome = run_case(case, METHODS[label], False, samples=200, pgd_steps=15, pgd_targets=16)
        assert outcome.kind == "sound", (label, outcome)
