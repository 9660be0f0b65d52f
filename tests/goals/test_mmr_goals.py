"""The goals MMR, DList and PGD: both notations, round trips, one training step each, the
losses they define, and refusals with positions."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from tests.support import EXAMPLE_GOALS, assert_goal_refused_at
from lirpa_diffai import training
from lirpa_diffai.goals import GoalContext, GoalSyntaxError, parse_goal, to_mapping
from lirpa_diffai.training.config import load_config
from lirpa_diffai.goals.catalogue import MMR, PGD
from lirpa_diffai.mmr import mmr_loss


MADRY = "PGD(40, r=2, restart=1, should_end=False)"      # Madry et al.'s PGD40
RECIPE = (f"DList((Mix(Point, {MADRY}, 0.5), 1), "
          "(MMR(0.2, 0.2, Lin(0.1, 0.02, 100, 0), 10), Lin(0, 0.5, 10, 0)))")


@pytest.mark.parametrize("text,mapping", [
    ("MMR(0.2, 0.1, 0.05, 10)", {"MMR": [0.2, 0.1, 0.05, 10]}),
    ("MMR(0.2, 0.1, 5, 3, 2)", {"MMR": {"gamma_b": 0.2, "gamma_d": 0.1, "k_b": 5, "k_d": 3, "p": 2}}),
    ("MMR(Lin(0.1, 0.2, 5, 0), 0.2, 0.1, 10, p=inf)", {"MMR": ["Lin(0.1, 0.2, 5, 0)", 0.2, 0.1, 10, "inf"]}),
    ("PGD40", {"PGD": 40}),
    ("PGD(7)", {"PGD": {"k": 7}}),
    ("DList((Point, 1), (Box, 0.5))", {"DList": [["Point", 1], ["Box", 0.5]]}),
    (MADRY, {"PGD": {"k": 40, "r": 2, "restart": 1, "should_end": False}}),
    (RECIPE, {"DList": [[{"Mix": ["Point", MADRY, 0.5]}, 1],
                        [{"MMR": [0.2, 0.2, {"Lin": [0.1, 0.02, 100, 0]}, 10]}, "Lin(0, 0.5, 10, 0)"]]}),
])
def test_both_notations_give_the_same_goal_and_round_trip(text, mapping):
    goal = parse_goal(text)
    assert parse_goal(mapping) == goal
    assert parse_goal(str(goal)) == goal
    assert parse_goal(to_mapping(goal)) == goal
    assert parse_goal(yaml.safe_load(yaml.safe_dump(to_mapping(goal)))) == goal


def test_the_recipe_reads_as_the_paper_writes_it():
    goal = parse_goal(RECIPE)
    (adv, w1), (mmr, w2) = goal.pairs
    assert isinstance(mmr, MMR) and mmr.p == "inf"
    assert w1(3) == 1 and w2(0) == 0 and w2(5) == pytest.approx(0.25) and w2(50) == 0.5
    assert mmr.k_b(0) == pytest.approx(0.1) and mmr.k_b(100) == pytest.approx(0.02)
    assert str(goal) == RECIPE.replace(", 10)", ", 10, inf)", 1)


@pytest.mark.parametrize("text,message,column", [
    ("MMR(0, 0.2, 0.1, 10)", "argument 'gamma_b' must be > 0", 5),
    ("MMR(0.2, -1, 0.1, 10)", "argument 'gamma_d' must be > 0", 10),
    ("MMR(0.2, 0.2, 1.5, 10)", "argument 'k_b' must be a fraction", 15),
    ("MMR(0.2, 0.2, 0.1, 0)", "argument 'k_d' must be a fraction", 20),
    ("MMR(0.2, 0.2, 0.1, 10, 1)", "argument 'p' must be inf or 2", 24),
    ("DList((Point, 1), (Box, -2))", "weight of pair 2 must be >= 0", 19),
    ("DList((Point, 1), Box)", "argument 2 must be a pair", 19),
    ("DList((Point, 1), (Box))", "expected ','", 23),
    ("DList((Point, 1), (Box, 1), 3)", "DList argument 3 must be a pair", 29),
    ("PGD(0)", "must be a positive integer", 5),
])
def test_bad_arguments_are_refused_at_their_position(text, message, column):
    assert_goal_refused_at(text, message, column)


@pytest.mark.parametrize("mmr,message,column", [
    ("MMR(0, 0.2, 0.1, 10)", "argument 'gamma_b' must be > 0", 14),
    ("MMR(0.2, 0.2, 2.5, 10)", "argument 'k_b' must be a fraction", 24),
    ("MMR(0.2, 0.2, 0.1, 10, 1)", "argument 'p' must be inf or 2", 33),
])
def test_bad_arguments_in_a_config_file_name_the_file_line_and_column(tmp_path, mmr, message,
                                                                      column):
    path = tmp_path / "mmr.yaml"
    path.write_text("network: conv_small\ndataset: mnist\neps: 0.1\n"
                    f"goal: |\n  DList((Point, 1),\n        ({mmr}, 0.5))\n")
    with pytest.raises(GoalSyntaxError, match=message) as err:
        load_config(path)
    assert (err.value.source, err.value.line, err.value.column) == (str(path), 6, column)


def tiny_net():
    return nn.Sequential(nn.Conv2d(1, 3, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(27, 10),
                         nn.ReLU(), nn.Linear(10, 4))


def context(net, eps=0.1):
    return GoalContext(model=net, eps=eps, num_classes=4)


def batch():
    return torch.rand(6, 1, 7, 7), torch.tensor([0, 1, 2, 3, 0, 1])


@pytest.mark.parametrize("text", ["MMR(0.3, 0.3, 0.2, 4)", "PGD5",
                                  RECIPE.replace("PGD(40", "PGD(3").replace(", 10)", ", 4)"),
                                  "DList((Point, 1), (MMR(0.3, 0.3, 6, 4, 2), 0.5))"])
def test_one_training_step_changes_every_layer(text):
    """One optimizer step on the goal: a finite loss with a gradient on every layer."""
    net, (x, y) = tiny_net(), batch()
    goal = parse_goal(text)
    loss = goal.loss(context(net), x, y, 20.0)
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    before = [p.detach().clone() for p in net.parameters()]
    torch.optim.SGD(net.parameters(), lr=0.1).step()
    assert all((a != b).any() for a, b in zip(before, net.parameters()))


def test_mmr_goal_is_the_regularizer_at_the_box_center():
    net, (x, y) = tiny_net(), batch()
    goal = parse_goal("MMR(0.3, Lin(0.1, 0.5, 10, 0), 0.2, 4, 2)")
    x = x.clamp(0.1, 0.9)                 # the eps-0.1 box lies inside [0, 1]: its center is x
    got = goal.loss(context(net), x, y, 5.0)
    want = mmr_loss(net, x, y, gamma_b=0.3, gamma_d=0.3, k_b=0.2, k_d=4, p=2)
    torch.testing.assert_close(got, want)


def test_dlist_divides_by_the_sum_of_the_weights():
    net, (x, y) = tiny_net(), batch()
    goal = parse_goal("DList((Point, 1), (MMR(0.3, 0.3, 0.2, 4), Lin(0, 0.5, 10, 0)))")
    ce = F.cross_entropy(net(x), y)
    reg = mmr_loss(net, x, y, gamma_b=0.3, gamma_d=0.3, k_b=0.2, k_d=4)
    torch.testing.assert_close(goal.loss(context(net, eps=0.0), x, y, 5.0),
                               (ce + 0.25 * reg) / 1.25)
    torch.testing.assert_close(goal.loss(context(net, eps=0.0), x, y, 0.0), ce)


def test_dlist_with_zero_total_weight_is_refused_with_its_position():
    net, (x, y) = tiny_net(), batch()
    goal = parse_goal("Mix(Point,\n  DList((Point, Lin(0, 1, 2, 1))), 0.5)")
    with pytest.raises(GoalSyntaxError, match="weights sum to 0") as err:
        goal.loss(context(net), x, y, 0.0)
    assert (err.value.line, err.value.column) == (2, 3)


def test_pgd_points_stay_in_the_box_and_raise_the_loss():
    net, (x, y) = tiny_net(), batch()
    eps = 0.05
    ctx = context(net, eps)
    lo, hi = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    madry = PGD(10, r=2, restart=1, should_end=False)
    point = madry.point(ctx, (lo, hi), y, 0.0)
    assert ((point >= lo) & (point <= hi)).all()
    assert not torch.equal(point, madry.point(ctx, (lo, hi), y, 0.0))   # random start
    per_sample = F.cross_entropy(net(point), y, reduction="none")
    assert (per_sample >= F.cross_entropy(net(x), y, reduction="none") - 1e-6).float().mean() >= 0.8


def test_mmr_refuses_a_network_it_cannot_handle_naming_the_config_position(tmp_path):
    path = tmp_path / "mmr.yaml"
    path.write_text("network: conv_small\ndataset: mnist\neps: 0.1\nepochs: 1\n"
                    "goal: |\n  DList((Point, 1),\n        (MMR(0.2, 0.2, 5000, 10), 1))\n")
    cfg = load_config(path)
    net = training.build_network(cfg)
    x, y = torch.rand(2, 1, 28, 28), torch.tensor([1, 2])
    with pytest.raises(GoalSyntaxError, match="k_b = 5000 but the network has only 3604") as err:
        cfg.goal.loss(GoalContext(model=net, eps=0.1), x, y, 0.0)
    assert (err.value.line, err.value.column, err.value.source) == (7, 10, str(path))
    sig = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Sigmoid(), nn.Linear(3, 2))
    with pytest.raises(GoalSyntaxError, match=r"operator Sigmoid.* at line 1, column 1"):
        parse_goal("MMR(0.2, 0.2, 1, 2)").loss(GoalContext(model=sig, num_classes=2),
                                                torch.rand(2, 4), torch.tensor([0, 1]), 0.0)


def test_the_mmr_example_configs_load_and_take_a_step():
    examples = EXAMPLE_GOALS
    for name, shape in (("mmr_mnist.yaml", (1, 28, 28)), ("mmr_cifar10.yaml", (3, 32, 32))):
        cfg = load_config(examples / name)
        cfg = dataclasses.replace(cfg, goal=parse_goal(str(cfg.goal).replace("PGD(40,", "PGD(2,")
                                                       .replace("PGD(7,", "PGD(2,")))
        assert "PGD(2, r=2, restart=1, should_end=False)" in str(cfg.goal)
        torch.manual_seed(0)
        model = training.build_network(cfg).train()
        x, y = torch.rand((2,) + shape), torch.tensor([3, 7])
        bm = training.wrap_for_training(model, cfg, x)
        optimizer = training.make_optimizer(model, cfg)
        loss = training.training_step(training.GoalLoss(model, bm, cfg), optimizer, x, y, 20.0,
                                      cfg.lr_at(20.0))
        assert loss > 0


def test_training_read_outs_see_inside_dlist():
    from lirpa_diffai.training import eps_factor, schedule_values
    goal = parse_goal(RECIPE)
    assert schedule_values(goal, 5.0) == pytest.approx({
        "DList.pairs[2].w": 0.25, "DList.pairs[2].MMR.k_b": 0.1 - 0.08 * 5 / 100})
    assert eps_factor(goal, 5.0) is None                         # no Box
    assert eps_factor(parse_goal("DList((Point, 1), (Sub(0.5, Box), 1))"), 5.0) == 0.5
