"""DiffAI's goals (its goals.py): LinMix, DProb / Coin, MI_FGSM / PGD / IFGSM with their
parameters, NormalAdv, NormalPoint, PointA / PointB, InclusionSample (InSamp), AdvInclusion,
AdvDom, BiAdv. Their spellings (DiffAI's README and the paper's Table 2 compositions), round
trips, semantics, one training step each, and refusals with positions."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import lirpa_diffai  # noqa: F401  (patches auto_LiRPA before it is used)
from tests.support import assert_goal_refused_at, box_bounds_fn
from lirpa_diffai.goals import (IFGSM, MI_FGSM, PGD, AdvDom, AdvInclusion, BiAdv, BiSample, Box,
                                Coin, DProb, GoalContext, GoalSyntaxError,
                                InclusionSample, LinMix, Normal, NormalAdv, NormalPoint,
                                Lin, Point, PointA, PointB, Sample, Sub, Uniform, parse_goal,
                                to_mapping)
from lirpa_diffai.goals.core import margin_loss
from lirpa_diffai.goals.errors import Origin


N_IN, N_OUT = 6, 4
EPS = 0.031373

# DiffAI's README: its goals as DiffAI writes them (CIFAR-10 schemes at eps 0.031373, the
# MNIST scheme at 0.1), each with the paper's composition (Table 2 style) meaning the same
# on inputs whose eps box lies inside the data range; the MNIST and Mix examples have none.
DIFFAI_SPELLINGS = {
    "Baseline": ("LinMix(a=Point(), b=Box(w=Lin(0,0.031373,150,10)), bw=Lin(0,0.5,150,10))",
                 "Mix(Point, Sub(Lin(0,1,150,10), Box), Lin(0,0.5,150,10))"),
    "InSamp": ("LinMix(a=Point(), b=InSamp(Lin(0,1,150,10)), bw=Lin(0,0.5, 150,10))",
               "Mix(Point, Sample(Lin(0,1,150,10), 1, Uniform, Box), Lin(0,0.5,150,10))"),
    "InSampLPA": ("LinMix(a=Point(), b=InSamp(Lin(0,1,150,20), w=Lin(0,0.031373, 150, 20)), "
                  "bw=Lin(0,0.5, 150, 20))",
                  "Mix(Point, Sub(Lin(0,1,150,20), Sample(Lin(0,1,150,20), 1, Uniform, Box)), "
                  "Lin(0,0.5,150,20))"),
    "Adv1ISLPA": ("LinMix(a=IFGSM(w=Lin(0,0.031373,20,20), k=1), b=InSamp(Lin(0,1,150,10), "
                  "w=Lin(0,0.031373,150,10)), bw=Lin(0,0.5,150,10))",
                  "Mix(Sub(Lin(0,1,20,20), IFGSM1), Sub(Lin(0,1,150,10), Sample(Lin(0,1,150,10), "
                  "1, Uniform, Box)), Lin(0,0.5,150,10))"),
    # the README's Adv_5IS_18 as printed there: no a=, so a is the default Point
    "Adv5IS18 as printed": ("LinMix(b=InSamp(Lin(0,1,200,40)), bw=Lin(0,0.5, 200, 40))",
                 "Mix(Point, Sample(Lin(0,1,200,40), 1, Uniform, Box), Lin(0,0.5,200,40))"),
    "BiAdvL": ("LinMix(a=IFGSM(k=2), b=BiAdv(a=IFGSM(k=3, w=Lin(0,0.031373, 150, 30)), b=Box()), "
               "bw=Lin(0,0.6, 200, 30))",
               "Mix(IFGSM2, BiSample(Sub(Lin(0,1,150,30), IFGSM3), Box), Lin(0,0.6,200,30))"),
}
OTHER_SPELLINGS = [
    "LinMix(a=IFGSM(w=Lin(0,0.2,100,20), k=3), b=InSamp(Lin(0,1,150,50), w=Lin(0,0.2,150,50)), "
    "bw=Lin(0,0.5,150,50))",                                   # the README's MNIST eps 0.1
    "LinMix(a=PGD(r=3,k=16,restart=2, w=0.1), b=BiAdv(a=IFGSM(k=5, w=0.05)), bw=0.1)",
    "MI_FGSM(k=20,r=2)", "PGD(r=3,k=16,restart=2, w=0.1)", "IFGSM(k=4, w=0.1)",
    "Coin(a=IFGSM(), b=Box(), ap=1, bp=0.1)", "Coin",
    "DProb((IFGSM(w=0.1),1), (Box(w=0.01),0.1), (Box(w=0.1),0.01))",
    "AdvDom(a=IFGSM(), b=DList((PointB(),1), (PointA(), 1), (Box(), 0.2)))",
    "BiAdv(a=IFGSM(), b=Box())", "NormalAdv(a=IFGSM(), w=0.3)", "InSamp(0.2, w=0.1)",
    "InclusionSample(0.5, a=Uniform, normal=True)", "AdvInclusion(Lin(0,1,10,0), b=Box(w=0.1))",
    "NormalPoint", "NormalPoint(0.1)", "PGD(should_end=False)", "MI_FGSM(restart=5, mu=0)",
    "LinMix", "DProb()", "DList",
]
ALL_SPELLINGS = [t for pair in DIFFAI_SPELLINGS.values() for t in pair] + OTHER_SPELLINGS


def small_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(N_IN, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                         nn.Linear(16, N_OUT))


def ibp_bounds(model):
    return box_bounds_fn(model, "IBP", torch.zeros(1, N_IN))


class Recorder:
    """Bounds that record the boxes they are given; lower bound: -(box width summed)."""

    def __init__(self):
        self.boxes = []

    def __call__(self, x_L, x_U, C):
        self.boxes.append((x_L.clone(), x_U.clone()))
        lb = -(x_U - x_L).sum(1, keepdim=True).expand(C.shape[:2])
        return lb, -lb


def batch(seed=1, n=8, inside=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, N_IN, generator=g)
    return (x * 0.8 + 0.1 if inside else x), torch.randint(0, N_OUT, (n,), generator=g)


def ctx_for(model=None, bounds=None, eps=0.1):
    return GoalContext(model=model or small_net(), bounds=bounds, eps=eps, num_classes=N_OUT)


# ------------------------------------------------------------------ spellings, round trips

@pytest.mark.parametrize("text", ALL_SPELLINGS)
def test_diffai_spellings_parse_and_round_trip(text):
    goal = parse_goal(text)
    assert parse_goal(str(goal)) == goal
    mapping = to_mapping(goal)
    assert parse_goal(mapping) == goal
    dumped = yaml.safe_dump({"goal": mapping})
    assert parse_goal(yaml.safe_load(dumped)["goal"]) == goal
    node = yaml.compose(dumped, Loader=yaml.SafeLoader).value[0][1]
    assert parse_goal(node, origin=Origin("x.yaml")) == goal


def test_defaults_are_diffais():
    assert MI_FGSM() == parse_goal("MI_FGSM") == MI_FGSM(None, 20, 100, 0.8, True, None)
    assert PGD() == parse_goal("PGD()") == PGD(k=5, r=5.0, should_end=True, restart=None)
    assert (PGD().mu, IFGSM().mu, IFGSM().r) == (0, 0, 1)
    assert parse_goal("IFGSM") == IFGSM(5) and parse_goal("PGD40") == PGD(40)
    assert LinMix() == LinMix(Point(), Box(), 0.1)
    assert Coin() == Coin(Point(), Box(), 0.8, 0.2)
    assert parse_goal("DProb()") == parse_goal("DProb") == DProb(((Point(), 0.8), (Box(), 0.2)))
    assert parse_goal("DList()") == parse_goal({"DList": None}) == \
        parse_goal("DList((Point, 1), (Box, 0.1))")
    assert parse_goal("InSamp(0.5)") == InclusionSample(0.5, Box(), False, None)
    assert parse_goal("AdvInclusion(0.5)") == AdvInclusion(0.5, IFGSM(), Box(), None)
    assert AdvDom() == AdvDom(IFGSM(), Box()) and BiAdv() == BiAdv(IFGSM(), Box())
    assert NormalAdv() == NormalAdv(IFGSM(), None) and NormalPoint().w is None
    assert str(PGD(40, r=2, restart=1, should_end=False)) == \
        "PGD(40, r=2, restart=1, should_end=False)"
    assert str(parse_goal("MI_FGSM(k=20,r=2)")) == "MI_FGSM(r=2, k=20)"
    for name in ("LinMix", "Coin", "MI_FGSM", "NormalAdv", "AdvDom", "BiAdv", "NormalPoint"):
        assert str(parse_goal(f"{name}()")) == name == to_mapping(parse_goal(name))
    assert str(parse_goal("InSamp(0.2, w=0.1)")) == "InclusionSample(0.2, w=0.1)"


def _same_loss(g1, g2, ctx, x, y, t, seed=0):
    torch.manual_seed(seed)
    a = g1.loss(ctx, x, y, t)
    torch.manual_seed(seed)
    b = g2.loss(ctx, x, y, t)
    torch.testing.assert_close(a, b)
    return a


@pytest.mark.parametrize("name", list(DIFFAI_SPELLINGS))
@pytest.mark.parametrize("t", [5.0, 40.0, 300.0])
def test_diffai_spelling_means_its_table2_composition(name, t):
    """Same random numbers, same loss: DiffAI's w= is Sub(w / eps), LinMix is Mix, InSamp is
    Sample(delta, 1, Uniform, Box), BiAdv is BiSample (on boxes inside the data range)."""
    diffai, paper = (parse_goal(s) for s in DIFFAI_SPELLINGS[name])
    model = small_net()
    x, y = batch()
    ctx = ctx_for(model, ibp_bounds(model), eps=EPS)
    loss = _same_loss(diffai, paper, ctx, x, y, t)
    assert torch.isfinite(loss)


def test_more_equivalences_on_regions():
    ctx, (x, y) = ctx_for(), batch(n=32)
    box = (x - 0.1, x + 0.1)
    for a, b in [(InclusionSample(0.3), Sample(0.3, 1, Uniform(), Box())),
                 (AdvInclusion(0.4, IFGSM(3)), Sample(0.4, 1, IFGSM(3), Box())),
                 (BiAdv(PGD(3), Box()), BiSample(PGD(3), Box())),
                 (IFGSM(2, w=0.05), Sub(0.5, IFGSM(2))),
                 (PGD(4, r=2, w=0.02), Sub(0.2, PGD(4, r=2)))]:
        torch.manual_seed(3)
        ra = a.region(ctx, box, y, 0)
        torch.manual_seed(3)
        rb = b.region(ctx, box, y, 0)
        torch.testing.assert_close(ra, rb)


# ------------------------------------------------------------------------ combinators

def test_linmix_mixes_by_its_weight():
    rec = Recorder()
    ctx, (x, y) = ctx_for(bounds=rec), batch()
    ce = F.cross_entropy(ctx.model(x), y)
    box_loss = margin_loss(torch.full((len(y), N_OUT - 1), -0.2 * N_IN))
    for goal, t, bw in [(LinMix(bw=0.25), 0, 0.25), (parse_goal("LinMix(bw=Lin(0,1,10,0))"), 3, 0.3),
                        (LinMix(bw=0), 0, 0.0), (LinMix(bw=1), 0, 1.0)]:
        torch.testing.assert_close(goal.loss(ctx, x, y, t), (1 - bw) * ce + bw * box_loss)
    assert len(rec.boxes) == 3                     # bw = 0: the Box side is not computed


def test_coin_and_dprob_draw_each_goal_with_its_probability():
    """One goal per call (per batch), goal i with probability w_i / sum w (torch's
    generator)."""
    ctx, (x, y) = ctx_for(), batch(n=4)
    box = (x - 0.1, x + 0.1)
    widths = {0: 0, 5: 1, 10: 2}                   # Sub(0)/Sub(0.5)/Box: which was drawn
    n = 2000
    for goal, probs in [(Coin(Sub(0, Box()), Box()), (0.8, 0, 0.2)),
                        (Coin(Sub(0, Box()), Box(), ap=1, bp=3), (0.25, 0, 0.75)),
                        (parse_goal("DProb((Sub(0, Box), 1), (Sub(0.5, Box), 0.1), (Box, 0.01))"),
                         (1 / 1.11, 0.1 / 1.11, 0.01 / 1.11))]:
        counts = [0, 0, 0]
        torch.manual_seed(0)
        for _ in range(n):
            l, u = goal.region(ctx, box, y, 0)
            scale = ((u - l) / 0.02).round().unique()
            assert len(scale) == 1                 # the whole batch gets one goal
            counts[widths[int(scale)]] += 1
        for c, p in zip(counts, probs):
            assert abs(c / n - p) <= 4 * math.sqrt(p * (1 - p) / n) + 1e-9, (goal, counts)


def test_dprob_with_one_goal_is_that_goal():
    ctx, (x, y) = ctx_for(), batch()
    assert torch.equal(DProb(((Point(), 2.0),)).loss(ctx, x, y, 0), Point().loss(ctx, x, y, 0))


# ------------------------------------------------------------------------ points, boxes

def test_point_a_and_b_are_the_ends_of_the_box_between_two_points():
    model = nn.Linear(N_IN, N_OUT)
    ctx, (x, y) = ctx_for(model), batch()
    box = (x - 0.1, x + 0.1)
    y = model(x).argmax(1)                          # correctly classified: IFGSM moves
    m = IFGSM(3).region(ctx, box, y, 0)[0]
    assert (m - x).abs().max() > 0.05
    for point in (PointA(), PointB()):              # alone: the center, like Point
        assert torch.equal(point.region(ctx, box, y, 0)[0], x)
    assert torch.equal(AdvDom(IFGSM(3), PointA()).region(ctx, box, y, 0)[0], x)    # original
    assert torch.equal(AdvDom(IFGSM(3), PointB()).region(ctx, box, y, 0)[0], m)    # attack
    l, u = AdvDom(IFGSM(3), Box()).region(ctx, box, y, 0)
    assert torch.equal(l, torch.minimum(x, m)) and torch.equal(u, torch.maximum(x, m))
    d = (m - x).abs()
    torch.testing.assert_close(BiAdv(IFGSM(3), PointA()).region(ctx, box, y, 0)[0], x - d)
    torch.testing.assert_close(BiAdv(IFGSM(3), PointB()).region(ctx, box, y, 0)[0], x + d)
    # DiffAI's README: AdvDom(a=IFGSM(), b=DList((PointB(),1), (PointA(), 1), (Box(), 0.2)))
    rec = Recorder()
    ctx = ctx_for(model, rec)
    goal = parse_goal("AdvDom(a=IFGSM(3), b=DList((PointB(),1), (PointA(), 1), (Box(), 0.2)))")
    box_loss = margin_loss(-(u - l).sum(1, keepdim=True).expand(-1, N_OUT - 1))
    want = (F.cross_entropy(model(m), y) + F.cross_entropy(model(x), y) + 0.2 * box_loss) / 2.2
    torch.testing.assert_close(goal.loss_on(ctx, box, y, 0), want)
    torch.testing.assert_close(rec.boxes[0], (l, u))


def test_inclusion_sample_draws_boxes_inside_the_box():
    torch.manual_seed(0)
    ctx, (x, y) = ctx_for(), batch(n=256)
    box = (x - 0.1, x + 0.1)
    l, u = InclusionSample(0.3).region(ctx, box, y, 0)
    assert torch.allclose(u - l, torch.full_like(l, 0.06))           # width sub (u - l)
    assert torch.all(l >= box[0] - 1e-6) and torch.all(u <= box[1] + 1e-6)
    b = (l + u) / 2 - x                                               # uniform in +-0.07
    assert b.min() < -0.065 and b.max() > 0.065 and abs(float(b.mean())) < 0.005
    l, u = InclusionSample(0.3, normal=True).region(ctx, box, y, 0)   # N(0, (0.07)^2) centers
    b = (l + u) / 2 - x
    assert abs(float(b.std()) - 0.07) < 0.005
    assert 0.28 < float((b.abs() > 0.07).float().mean()) < 0.36      # not clipped: ~32% out
    l, u = InclusionSample(0.5, w=0.02).region(ctx, box, y, 0)        # w replaces the radius
    assert torch.allclose(u - l, torch.full_like(l, 0.02))
    assert torch.all(((l + u) / 2 - x).abs() <= 0.01 + 1e-6)
    edge = torch.zeros(4, N_IN)                                       # clipped to the range
    l, u = InclusionSample(0.5).region(ctx, (edge, edge + 0.1), y[:4], 0)
    assert torch.all(l >= 0)


def test_normal_point_is_normal_and_not_clipped_to_the_box():
    torch.manual_seed(0)
    ctx, (x, y) = ctx_for(), batch(n=512)
    box = (x - 0.05, x + 0.05)
    p = NormalPoint().region(ctx, box, y, 0)[0] - x
    assert abs(float(p.std()) - 0.05) < 0.003
    assert 0.28 < float((p.abs() > 0.05).float().mean()) < 0.36
    q = NormalPoint(0.01).region(ctx, box, y, 0)[0] - x
    assert abs(float(q.std()) - 0.01) < 0.001
    edge = torch.zeros(64, N_IN)
    assert NormalPoint(0.5).region(ctx, (edge, edge), y[:64], 0)[0].min() >= 0


def test_normal_adv_scales_the_box_by_one_half_normal_draw_per_batch():
    ctx, (x, y) = ctx_for(), batch()
    x = x * 0.2 + 0.4                              # box x -+ 0.01 |z|: never clipped
    box = (x - 0.01, x + 0.01)
    scales = []
    for seed in range(400):
        torch.manual_seed(seed)
        l, u = NormalAdv(Box()).region(ctx, box, y, 0)
        ratio = ((u - l) / 0.02).flatten()
        assert torch.allclose(ratio, ratio[0].expand_as(ratio), atol=1e-4)   # one per batch
        assert torch.allclose((l + u) / 2, x, atol=1e-6)
        scales.append(float(ratio[0]))
    assert abs(np.mean(scales) - math.sqrt(2 / math.pi)) < 0.08      # E|z| of z ~ N(0, 1)
    box = (x - 0.1, x + 0.1)
    torch.manual_seed(0)
    l, u = NormalAdv(Box(), w=0.02).region(ctx, box, y, 0)
    torch.manual_seed(0)
    z = torch.randn(()).abs()
    torch.testing.assert_close(u - l, (2 * 0.02 * z).expand_as(u))


# ------------------------------------------------------------------------------ attacks

def one_logit_model():
    """Logits ``[a . x, 0, 0, 0]``: the sign of CE's input gradient never changes
    (``(p_0 - [y = 0]) a``)."""
    model = nn.Linear(N_IN, N_OUT)
    with torch.no_grad():
        model.weight[1:] = 0
        model.bias.zero_()
    return model


def test_attack_steps_are_r_h_over_k_from_the_center():
    model = one_logit_model()
    ctx, (x, y) = ctx_for(model), batch(n=64)
    box = (x - 0.1, x + 0.1)
    x_ = x.clone().requires_grad_(True)
    grad_sign = torch.autograd.grad(F.cross_entropy(model(x_), y, reduction="sum"), x_)[0].sign()
    assert (grad_sign != 0).all()
    for goal, reach in [(MI_FGSM(r=0.5, k=10, should_end=False), 0.05),
                        (PGD(4, r=2, should_end=False), 0.1), (PGD(should_end=False), 0.1),
                        (IFGSM(3, should_end=False), 0.1), (IFGSM(3, w=0.04, should_end=False), 0.04)]:
        p = goal.region(ctx, box, y, 0)[0]
        torch.testing.assert_close(p, x + reach * grad_sign)
    right = model(x).argmax(1) == y                # should_end: misclassified ones stay
    p = PGD(4, r=1).region(ctx, box, y, 0)[0]
    assert torch.equal(p[~right], x[~right]) and (p[right] != x[right]).all()
    flat = nn.Linear(N_IN, N_OUT)                  # zero gradient: mysign(0) = +1
    nn.init.zeros_(flat.weight)
    p = IFGSM(1, should_end=False).region(ctx_for(flat), box, y, 0)[0]
    torch.testing.assert_close(p, x + 0.1)


def test_momentum_keeps_the_direction_of_past_gradients():
    """One step against the gradient's sign for mu = 0, with the old direction for mu > 0:
    a model whose input gradient flips after the first step (|x - c| along e_0)."""
    class Kink(nn.Module):
        def forward(self, x):
            v = 0.3 * x[:, :1] - 10 * (x[:, :1] - 0.52).relu()
            return torch.cat([-v, v, torch.zeros_like(x[:, :2])], 1)
    ctx = ctx_for(Kink())
    x, y = torch.full((1, N_IN), 0.45), torch.tensor([0])
    box = (x - 0.1, x + 0.1)
    # steps of 0.05: mu = 0 goes .45 .50 .55 .50; mu = 0.8 keeps going up (clipped at .55)
    no_momentum = MI_FGSM(r=1.5, k=3, mu=0, should_end=False).region(ctx, box, y, 0)[0]
    momentum = MI_FGSM(r=1.5, k=3, mu=0.8, should_end=False).region(ctx, box, y, 0)[0]
    torch.testing.assert_close(no_momentum[0, 0], torch.tensor(0.5))
    torch.testing.assert_close(momentum[0, 0], torch.tensor(0.55))


def test_restarts_start_anywhere_in_the_box():
    model = small_net()
    ctx, (x, y) = ctx_for(model), batch(n=256)
    box = (x - 0.1, x + 0.1)
    torch.manual_seed(0)
    p = PGD(1, r=1e-3, restart=1, should_end=False).region(ctx, box, y, 0)[0] - x
    assert p.min() < -0.09 and p.max() > 0.09 and abs(float(p.mean())) < 0.01
    torch.manual_seed(1)
    q = PGD(1, r=1e-3, restart=1, should_end=False).region(ctx, box, y, 0)[0] - x
    assert not torch.equal(p, q)


# ------------------------------------------------------------------ one training step each

STEP_GOALS = ["LinMix(a=IFGSM(2), b=InSamp(0.5), bw=0.5)", "Coin(a=PGD(2), b=Box, ap=0, bp=1)",
              "Coin(a=MI_FGSM(k=3), b=Box, ap=1, bp=0)", "DProb((NormalAdv(a=Box), 1))",
              "PointA", "PointB", "NormalPoint", "InSamp(0.3, normal=True)",
              "AdvInclusion(0.5, a=PGD(2, restart=1))", "AdvDom(a=IFGSM(2))", "BiAdv(a=PGD(2))",
              "NormalAdv(a=MI_FGSM(k=2), w=0.05)",
              "AdvDom(a=IFGSM(2), b=DList((PointB(),1), (PointA(), 1), (Box(), 0.2)))"]


@pytest.mark.parametrize("text", STEP_GOALS)
def test_one_training_step_reaches_every_weight(text):
    model = small_net()
    ctx, (x, y) = ctx_for(model, ibp_bounds(model)), batch(inside=False)
    y = model(x).argmax(1)                          # attacks move: every sample is right
    torch.manual_seed(0)
    loss = parse_goal(text).loss(ctx, x, y, 1.0)
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_a_diffai_spelled_config_trains_a_step(tmp_path):
    from lirpa_diffai import training
    from lirpa_diffai.training.config import load_config
    path = tmp_path / "diffai.yaml"
    path.write_text("network: conv_small\ndataset: mnist\neps: 0.1\nepochs: 1\ngoal: >-\n"
                    f"  {OTHER_SPELLINGS[0].replace('k=3', 'k=1')}\n")
    cfg = load_config(path)
    assert isinstance(cfg.goal, LinMix)
    model = training.build_network(cfg).train()
    torch.manual_seed(0)
    x, y = torch.rand(2, 1, 28, 28), torch.tensor([3, 7])
    bm = training.wrap_for_training(model, cfg, x)
    loss = training.training_step(training.GoalLoss(model, bm, cfg), training.make_optimizer(
        model, cfg), x, y, 100.0, cfg.lr_at(100.0))
    assert math.isfinite(loss) and loss > 0


# ------------------------------------------------------------------------------ refusals

@pytest.mark.parametrize("text, message, column", [
    ("LinMix(bw=1.5)", "LinMix argument 'bw' must be in [0, 1], got 1.5", 8),
    ("Coin(ap=-1)", "Coin argument 'ap' must be >= 0, got -1", 6),
    ("Coin(ap=0, bp=0)", "Coin's weights must have a positive sum", 1),
    ("DProb((Point, 1), (Box, Lin(0, 1, 2)))", "weight of pair 2' must be a number", 19),
    ("DProb((Point, 1), Box)", "DProb argument 2 must be a pair", 19),
    ("PGD(k=5, restart=6)", "PGD argument 'restart' must be <= k = 5, got 6", 1),
    ("PGD(should_end=1)", "PGD argument 'should_end' must be True or False, got 1", 5),
    ("MI_FGSM(r=0)", "MI_FGSM argument 'r' must be > 0, got 0", 9),
    ("MI_FGSM(mu=inf)", "MI_FGSM argument 'mu' must be a number, got inf", 9),
    ("IFGSM(w=-0.1)", "IFGSM argument 'w' must be >= 0, got -0.1", 7),
    ("InSamp(1.5)", "InclusionSample argument 'sub' must be in [0, 1], got 1.5", 8),
    ("InSamp(0.5, normal=Box)", "'normal' must be True or False, got goal Box", 13),
    ("AdvDom(a=LinMix)", "AdvDom argument 'a' must produce a point or box", 1),
    ("Mix(Point, BiAdv(a=DList((Point, 1))), 0.5)", "BiAdv argument 'a' must produce", 12),
    ("NormalAdv(a=Point, w=True)", "'w' must be a schedule or a number, got True", 20),
    ("AdvInclusion()", "AdvInclusion takes 1 to 4 arguments (sub, a=IFGSM5, b=Box, w=None)", 1),
    ("PointA(1)", "PointA takes 0 arguments", 1),
    ("Coin(a=Point, c=Box)", "Coin has no parameter 'c'", 15),
    ("Coin(ap=Lin(0, 1, 2))", "Coin argument 'ap' must be a number, got schedule", 6),
    ("MI_FGSM(k=Lin(0, 1, 2))", "MI_FGSM argument 'k' must be a positive integer", 9),
])
def test_bad_arguments_are_refused_at_their_position(text, message, column):
    assert_goal_refused_at(text, message, column)


@pytest.mark.parametrize("text, message", [
    ("Mix(Point,\n  InSamp(Lin(0, 2, 10, 0)), 0.5)", "'sub' is 2 at epoch 10; it must be in [0, 1]"),
    ("Mix(Point,\n  LinMix(bw=Lin(0, 2, 10, 0)), 0.5)", "'bw' is 2 at epoch 10"),
    ("Mix(Point,\n  NormalPoint(Lin(0, -1, 10, 0)), 0.5)", "'w' is -1 at epoch 10; it must be >= 0"),
])
def test_schedules_out_of_range_are_refused_while_training_at_their_position(text, message):
    model = small_net()
    ctx, (x, y) = ctx_for(model, ibp_bounds(model)), batch()
    with pytest.raises(GoalSyntaxError) as err:
        parse_goal(text).loss(ctx, x, y, 10.0)
    assert message in str(err.value) and (err.value.line, err.value.column) == (2, 3)


def test_bad_arguments_in_a_config_file_name_its_line(tmp_path):
    from lirpa_diffai.training.config import load_config
    path = tmp_path / "bad.yaml"
    path.write_text("network: conv_small\ndataset: mnist\neps: 0.1\nepochs: 1\ngoal:\n"
                    "  LinMix:\n    a: {IFGSM: {k: 2, w: -1}}\n")
    with pytest.raises(GoalSyntaxError, match="'w' must be >= 0") as err:
        load_config(path)
    assert (err.value.line, err.value.column, err.value.source) == (7, 23, str(path))


# -------------------------------------------------------------- property: random round trips

radii = st.one_of(st.none(), st.floats(0, 1),
                  st.builds(Lin, st.floats(0, 1), st.floats(0, 1), st.floats(0, 50), st.floats(0, 9)))
fractions = st.floats(0, 1)
leaves = st.one_of(
    st.sampled_from([Point(), PointA(), PointB(), Normal(), Uniform(), Box(), NormalPoint()]),
    st.builds(IFGSM, st.integers(1, 9), radii, st.none(), st.booleans()),
    st.builds(PGD, st.integers(2, 9), st.floats(0.1, 9), radii, st.sampled_from([None, 1, 2]),
              st.booleans()),
    st.builds(MI_FGSM, radii, st.floats(0.1, 30), st.integers(2, 20), st.floats(0, 1)))


def _regional(inner):
    return inner.filter(lambda g: g.has_region)


goals = st.recursive(leaves, lambda inner: st.one_of(
    st.builds(LinMix, inner, inner, fractions),
    st.builds(lambda pairs: DProb(tuple(pairs)),
              st.lists(st.tuples(inner, st.floats(0.1, 5)), min_size=1, max_size=3)),
    st.builds(Coin, inner, inner, st.floats(0.1, 1), st.floats(0, 1)),
    st.builds(InclusionSample, fractions, inner, st.booleans(), radii),
    st.builds(AdvInclusion, fractions, _regional(inner), inner, radii),
    st.builds(NormalAdv, inner, radii),
    st.builds(AdvDom, _regional(inner), inner), st.builds(BiAdv, _regional(inner), inner)),
    max_leaves=6)


@settings(max_examples=80, deadline=None)
@given(goals)
def test_random_diffai_goals_round_trip(goal):
    assert parse_goal(str(goal)) == goal
    assert parse_goal(yaml.safe_load(yaml.safe_dump(to_mapping(goal)))) == goal


def test_training_read_outs_see_the_box_inside_diffais_goals():
    from lirpa_diffai.training import eps_factor, schedule_values
    assert eps_factor(parse_goal("LinMix(b=InSamp(Lin(0, 1, 10, 0)))"), 5.0) == 0.5
    assert eps_factor(parse_goal("Coin(a=IFGSM, b=AdvInclusion(0.25))"), 0.0) == 0.25
    assert eps_factor(parse_goal("DProb((Point, 1), (Sub(0.5, Box), 1))"), 0.0) == 0.5
    assert eps_factor(parse_goal("BiAdv"), 0.0) == 1.0
    for radius_not_of_eps in ("LinMix(b=Box(w=0.1))", "InSamp(0.5, w=0.1)", "NormalAdv(a=Box)"):
        assert eps_factor(parse_goal(radius_not_of_eps), 0.0) is None
    assert schedule_values(parse_goal("LinMix(a=IFGSM(w=Lin(0, 1, 10, 0)), bw=Lin(0, 1, 4, 0))"),
                           2.0) == pytest.approx({"LinMix.a.IFGSM.w": 0.2, "LinMix.bw": 0.5})
