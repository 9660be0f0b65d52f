"""Goal semantics (paper Table 1): the boxes and points each goal trains on, and its loss."""

import numpy as np
import pytest
import torch
import yaml
import torch.nn.functional as F
from torch import nn

import lirpa_diffai  # noqa: F401  (patches auto_LiRPA before it is used)
from auto_LiRPA import BoundedModule, BoundedTensor, PerturbationLpNorm
from tests.support import EXAMPLE_GOALS, box_bounds_fn
from lirpa_diffai.goals import (IFGSM, BiSample, Box, GoalContext, Lin, Mix, Normal, Point,
                                Sample, Sub, Uniform, input_box, margin_loss, margin_spec,
                                parse_goal)

N_IN, N_OUT = 6, 4
# the MMR examples need a 10-class network (k_D = 10); tests/goals/test_mmr_goals.py takes their step
EXAMPLES = sorted(p for p in EXAMPLE_GOALS.glob("*.yaml")
                  if not p.name.startswith("mmr_"))


def small_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(N_IN, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                         nn.Linear(16, N_OUT))


def lirpa_bounds(model, method):
    """The trainer's bounds function: auto_LiRPA on the box [x_L, x_U] with spec C."""
    return box_bounds_fn(model, method, torch.zeros(1, N_IN))


class Recorder:
    """A bounds function that records the boxes it is given and returns zero bounds."""

    def __init__(self):
        self.boxes = []

    def __call__(self, x_L, x_U, C):
        self.boxes.append((x_L.clone(), x_U.clone()))
        zeros = torch.zeros(C.shape[:2])
        return zeros, zeros


def batch(seed=1, n=8):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, N_IN, generator=g), torch.randint(0, N_OUT, (n,), generator=g)


def ctx_for(model=None, bounds=None, eps=0.1, **kw):
    return GoalContext(model=model or small_net(), bounds=bounds, eps=eps,
                       num_classes=N_OUT, **kw)


# ------------------------------------------------------------------------------ the boxes

def test_input_box_is_clipped_to_the_data_range():
    x = torch.tensor([[0.0, 0.05, 0.5, 0.95, 1.0, 0.3]])
    l, u = input_box(ctx_for(eps=0.1), x, t=0)
    assert torch.allclose(l, torch.tensor([[0.0, 0.0, 0.4, 0.85, 0.9, 0.2]]))
    assert torch.allclose(u, torch.tensor([[0.1, 0.15, 0.6, 1.0, 1.0, 0.4]]))
    l, u = input_box(ctx_for(eps=Lin(0, 0.2, 10)), x, t=5)      # eps may be a schedule
    assert torch.allclose(u - l, torch.tensor([[0.1, 0.15, 0.2, 0.15, 0.1, 0.2]]))


def test_sub_scales_the_box_around_its_center():
    ctx, (x, y) = ctx_for(), batch()
    box = (x - 0.1, x + 0.3)
    for delta, t in [(0.5, 0), (Lin(0, 1, 150, 10), 85)]:      # Lin(0,1,150,10)(85) = 0.5
        l, u = Sub(delta, Box()).region(ctx, box, y, t)
        c = x + 0.1
        assert torch.allclose(l, c - 0.5 * 0.2) and torch.allclose(u, c + 0.5 * 0.2)
    l, u = Sub(0, Box()).region(ctx, box, y, 0)
    assert torch.equal(l, u)


def test_sub_hands_its_box_to_the_bound_method():
    rec = Recorder()
    ctx, (x, y) = ctx_for(bounds=rec, eps=0.2), batch()
    Sub(0.25, Box()).loss(ctx, x * 0.5 + 0.25, y, t=0)       # inputs away from the edges
    l, u = rec.boxes[0]
    assert torch.allclose(u - l, torch.full_like(l, 0.25 * 0.4))
    assert torch.allclose((l + u) / 2, x * 0.5 + 0.25)


def test_sample_box_with_a_point_source_is_centred():
    ctx, (x, y) = ctx_for(), batch()
    box = (x * 0.5 + 0.2, x * 0.5 + 0.3)                      # width 0.1
    l, u = Sample(0.4, 0.5, Point(), Box()).region(ctx, box, y, 0)
    c = x * 0.5 + 0.25
    assert torch.allclose(l, c - 0.4 * 0.05) and torch.allclose(u, c + 0.4 * 0.05)


@pytest.mark.parametrize("delta, r", [(0.3, 1.0), (0.7, 1.0), (0.5, 0.5), (1.0, 0.5)])
def test_sample_box_lies_where_table1_says(delta, r):
    """b = center of Uniform on Sub(1 - r delta); gt on [b -+ delta (u - l) / 2] (clipped)."""
    torch.manual_seed(0)
    ctx, (x, y) = ctx_for(), batch(n=64)
    box = (x * 0.8 + 0.1 - 0.05, x * 0.8 + 0.1 + 0.05)         # inside [0, 1], half-width 0.05
    c, half = x * 0.8 + 0.1, 0.05
    l, u = Sample(delta, r, Uniform(), Box()).region(ctx, box, y, 0)
    b = (l + u) / 2
    assert torch.all((b - c).abs() <= (1 - r * delta) * half + 1e-6)     # b in the Sub box
    assert torch.allclose(u - l, torch.full_like(l, 2 * delta * half))    # width delta (u-l)
    assert (b - c).abs().max() > 0.5 * (1 - r * delta) * half            # and it is random
    if r == 1:                                   # r = 1: the sampled box stays in the box
        assert torch.all(l >= box[0] - 1e-6) and torch.all(u <= box[1] + 1e-6)


def test_sample_box_is_clipped_to_the_data_range():
    ctx, y = ctx_for(), torch.zeros(1, dtype=torch.long)
    box = (torch.zeros(1, N_IN), torch.full((1, N_IN), 0.2))
    torch.manual_seed(0)
    l, u = Sample(1.0, 0.0, Uniform(), Box()).region(ctx, box, y, 0)     # b anywhere in box
    assert torch.all(l >= 0) and torch.all(u <= 1)
    assert torch.any(l == 0)


def test_bisample_box_reaches_the_upper_bound_of_g1():
    ctx, (x, y) = ctx_for(), batch()
    box = (x * 0.5 + 0.2, x * 0.5 + 0.4)
    c = x * 0.5 + 0.3
    l, u = BiSample(Box(), Box()).region(ctx, box, y, 0)                 # d = u - c
    assert torch.allclose(l, box[0]) and torch.allclose(u, box[1])
    l, u = BiSample(Sub(0.5, Box()), Box()).region(ctx, box, y, 0)       # d = (u - c) / 2
    assert torch.allclose(l, c - 0.05) and torch.allclose(u, c + 0.05)
    y = ctx.model(c).argmax(1)                           # correctly classified: IFGSM moves
    p, _ = IFGSM(3).region(ctx, box, y, 0)
    l, u = BiSample(IFGSM(3), Box()).region(ctx, box, y, 0)              # d = |p - c|
    assert (p - c).abs().max() > 0.05
    assert torch.allclose(u - c, (p - c).abs(), atol=1e-6)
    assert torch.allclose(c - l, (p - c).abs(), atol=1e-6)


# ------------------------------------------------------------------------------ the points

@pytest.mark.parametrize("goal", [Point(), Normal(), Uniform(), IFGSM(1), IFGSM(5),
                                  Sub(0.5, IFGSM(3)), Sample(0.5, 1, Normal(), Uniform())])
def test_points_stay_in_the_box(goal):
    torch.manual_seed(0)
    ctx, (x, y) = ctx_for(), batch(n=64)
    box = (x - 0.3, x + 0.1)
    lo, hi = goal.region(ctx, box, y, 0)
    assert torch.equal(lo, hi)
    assert torch.all(lo >= box[0] - 1e-6) and torch.all(lo <= box[1] + 1e-6)


def test_normal_and_uniform_are_random_in_the_box():
    torch.manual_seed(0)
    ctx, (x, y) = ctx_for(), batch(n=512)
    box = (x - 0.1, x + 0.1)
    p = Uniform().region(ctx, box, y, 0)[0] - x
    assert p.min() < -0.09 and p.max() > 0.09 and abs(p.mean()) < 0.01
    q = Normal().region(ctx, box, y, 0)[0] - x
    at_edge = torch.isclose(q.abs(), torch.tensor(0.1))
    assert 0.25 < at_edge.float().mean() < 0.4      # P(|N(0, 1)| > 1) ~ 32% clipped


def test_ifgsm_moves_by_signed_steps_and_raises_the_loss():
    model = nn.Linear(N_IN, N_OUT)                 # CE convex in x: a signed step raises it
    ctx, (x, y) = ctx_for(model=model), batch(n=64)
    box = (x - 0.1, x + 0.1)
    p = IFGSM(1).region(ctx, box, y, 0)[0]
    right = model(x).argmax(1) == y
    assert torch.allclose((p - x)[right].abs(), torch.full_like(p[right], 0.1))
    assert torch.allclose(p[~right], x[~right])    # misclassified samples do not move
    ce = F.cross_entropy(model(p), y, reduction="none")
    assert torch.all(ce >= F.cross_entropy(model(x), y, reduction="none") - 1e-6)
    p5 = IFGSM(5).region(ctx, box, y, 0)[0]
    steps = (p5 - x) / 0.02                          # multiples of the step (u - l) / (2k)
    assert torch.allclose(steps, steps.round(), atol=1e-3)


def test_ifgsm_stops_misclassified_samples():
    model = nn.Linear(N_IN, N_OUT)
    ctx, (x, _) = ctx_for(model=model), batch()
    wrong = (model(x).argmax(1) + 1) % N_OUT
    p = IFGSM(4).region(ctx, (x - 0.1, x + 0.1), wrong, 0)[0]
    assert torch.allclose(p, x)


def test_attacks_leave_no_gradient_on_the_model():
    model = small_net()
    ctx, (x, y) = ctx_for(model=model), batch()
    with torch.no_grad():                           # and work under no_grad too
        IFGSM(3).region(ctx, (x - 0.1, x + 0.1), y, 0)
    IFGSM(3).region(ctx, (x - 0.1, x + 0.1), y, 0)
    assert all(p.grad is None for p in model.parameters())
    IFGSM(3).loss(ctx, x, y, 0).backward()
    assert all(p.grad is not None for p in model.parameters())


# ------------------------------------------------------------------------------ the losses

def test_margin_spec_rows_are_e_y_minus_e_j():
    y = torch.tensor([0, 2, 3])
    C = margin_spec(y, 4)
    assert C.shape == (3, 3, 4)
    for b, label in enumerate(y.tolist()):
        others = [j for j in range(4) if j != label]
        for row, j in enumerate(others):
            expected = torch.zeros(4)
            expected[label], expected[j] = 1, -1
            assert torch.equal(C[b, row], expected)


def test_point_loss_is_cross_entropy_on_the_center():
    ctx, (x, y) = ctx_for(), batch()
    x = x * 0.5 + 0.25                               # away from the edges: center == x
    assert torch.allclose(Point().loss(ctx, x, y, 0), F.cross_entropy(ctx.model(x), y))
    edge = torch.zeros_like(x)                       # clipped box [0, eps]: center eps / 2
    assert torch.allclose(Point().loss(ctx, edge, y, 0),
                          F.cross_entropy(ctx.model(edge + 0.05), y))


def test_box_loss_matches_auto_lirpa_ibp_convention():
    model = small_net()
    independent = BoundedModule(model, torch.zeros(1, N_IN))
    ctx, (x, y) = ctx_for(model=model, bounds=lirpa_bounds(model, "IBP"), eps=0.05), batch()
    loss = Box().loss(ctx, x, y, 0)
    # independently: C by hand, IBP bounds from another BoundedModule, CE over [0, -lb]
    C = torch.zeros(len(y), N_OUT - 1, N_OUT)
    for b, label in enumerate(y.tolist()):
        for row, j in enumerate(j for j in range(N_OUT) if j != label):
            C[b, row, label], C[b, row, j] = 1, -1
    l, u = (x - 0.05).clamp(0, 1), (x + 0.05).clamp(0, 1)
    lb, _ = independent.compute_bounds(
        x=(BoundedTensor(x, PerturbationLpNorm(norm=np.inf, x_L=l, x_U=u)),), C=C, method="IBP")
    logits = torch.cat([torch.zeros(len(y), 1), -lb], dim=1)
    assert torch.allclose(loss, F.cross_entropy(logits, torch.zeros(len(y), dtype=torch.long)))
    # and lb bounds the margins of sampled points of the box
    pts = l + (u - l) * torch.rand(200, *x.shape)
    margins = torch.einsum("bkn,sbn->sbk", C, model(pts))
    assert torch.all(margins >= lb - 1e-5)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_box_loss_works_with_other_bound_methods():
    model = small_net()
    x, y = batch()
    losses = {m: Box().loss(ctx_for(model=model, bounds=lirpa_bounds(model, m)), x, y, 0)
              for m in ("IBP", "CROWN-IBP", "CROWN")}
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["CROWN"] <= losses["IBP"] + 1e-6      # tighter bounds, smaller loss


def test_box_folds_in_deep_losses():
    rec = Recorder()
    deep = [(0.2, torch.tensor(3.0)), (0.5, torch.tensor(1.0))]
    ctx, (x, y) = ctx_for(bounds=rec, aux_losses=lambda: deep), batch()
    base = margin_loss(torch.zeros(len(y), N_OUT - 1))               # log(n) for lb = 0
    expected = (1 - 0.5) * ((1 - 0.2) * base + 0.2 * 3.0) + 0.5 * 1.0
    assert torch.allclose(Box().loss(ctx, x, y, 0), expected)


def test_box_needs_a_bounds_function():
    ctx, (x, y) = ctx_for(), batch()
    with pytest.raises(ValueError, match="needs ctx.bounds"):
        Box().loss(ctx, x, y, 0)


def test_mix_weights_the_two_losses_and_skips_a_zero_weight():
    model = small_net()
    ctx, (x, y) = ctx_for(model=model, bounds=lirpa_bounds(model, "IBP")), batch()
    point, box = Point().loss(ctx, x, y, 0), Box().loss(ctx, x, y, 0)
    assert torch.allclose(Mix(Point(), Box(), 0.25).loss(ctx, x, y, 0), 0.75 * point + 0.25 * box)
    lam = Lin(0, 0.5, 150, 10)                                        # 0.125 at t = 47.5
    assert torch.allclose(Mix(Point(), Box(), lam).loss(ctx, x, y, 47.5),
                          0.875 * point + 0.125 * box)
    no_bounds = ctx_for(model=model)
    assert torch.allclose(Mix(Point(), Box(), lam).loss(no_bounds, x, y, 5), point)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
@pytest.mark.parametrize("t", [0, 30, 400])
def test_every_example_goal_gives_a_differentiable_loss(path, t):
    """The examples hold every scheme of the paper's Table 2."""
    model = small_net()
    ctx, (x, y) = ctx_for(model=model, bounds=lirpa_bounds(model, "CROWN-IBP")), batch()
    loss = parse_goal(yaml.safe_load(path.read_text())["goal"]).loss(ctx, x, y, t)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
