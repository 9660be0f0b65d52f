"""DiffAI's domains as goals (``lirpa_diffai.goals.domain_goals``): parsed in the paper's notation
and in YAML, round-trip through ``str``, bounded in their own domain whatever the configured
method, one training step each, bad arguments refused with their position."""
import pytest
import torch
import yaml
from torch import nn

from tests.support import assert_goal_refused_at
from lirpa_diffai import BoundedModule
from lirpa_diffai.goals import DOMAIN_GOALS, GoalContext, margin_loss, margin_spec, \
    parse_goal, to_mapping
from lirpa_diffai.goals.domain_goals import HNIPS, HRand, HSwitch, ZNIPS
from lirpa_diffai.training.step import box_bounds


@pytest.mark.parametrize("text", [*(n for n in DOMAIN_GOALS if n != "HRand"), "HRand(3)", "HRand(k=2, a=HNIPS)",
                                  "Mix(Point, ZNIPS, Lin(0, 1, 10))"])
def test_domain_goals_parse_and_round_trip(text):
    goal = parse_goal(text)
    assert parse_goal(str(goal)) == goal
    assert parse_goal(to_mapping(goal)) == goal
    assert parse_goal(yaml.safe_load(yaml.safe_dump(to_mapping(goal)))) == goal


def test_spellings():
    assert parse_goal("HRand(3)") == HRand(3, HSwitch()) == parse_goal({"HRand": [3]})
    assert parse_goal({"HRand": {"k": 2, "a": "HNIPS"}}) == HRand(2, HNIPS())
    assert parse_goal("ZNIPS()") == parse_goal("ZNIPS") == ZNIPS()


@pytest.mark.parametrize("text,message,column", [
    ("HRand(3, ZNIPS)", "must be one of HBox, HSwitch, HSmooth, HNIPS", 10),
    ("HRand(0)", "positive integer", 7),
    ("HRand()", "takes 1 to 2 arguments", 1),
    ("Mix(Point, HBox(1), 0.5)", "HBox takes 0 arguments", 12),
    ("ZNPIS", "did you mean 'ZNIPS'", 1),
])
def test_bad_arguments_are_refused_with_their_position(text, message, column):
    assert_goal_refused_at(text, message, column)


def context():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 3))
    x, y = torch.rand(4, 6), torch.randint(0, 3, (4,))
    bm = BoundedModule(net, x[:1], bound_opts={"hzono": {"relu": "deepz", "correlate_input": 0}})
    return net, bm, x, y, GoalContext(model=net, bounds=box_bounds(bm, "IBP"), eps=0.1, num_classes=3)


@pytest.mark.parametrize("text,method,options", [
    ("HBox", "HBox", {}), ("ZNIPS", "ZNIPS", {}), ("ZSwitch", "ZSwitch", {}),
    ("HRand(2, HNIPS)", "hzono", {"relu": "deepz", "correlate_input": "random:2"}),
])
def test_a_training_step_in_the_named_domain(text, method, options):
    """The loss is Box's loss with the goal's method (not the configured IBP), and its
    gradient reaches every parameter; the configured options are left as they were."""
    net, bm, x, y, ctx = context()
    torch.manual_seed(1)
    loss = parse_goal(text).loss(ctx, x, y, 0.0)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    assert bm.bound_opts["hzono"] == {"relu": "deepz", "correlate_input": 0, "softmax": "shifted"}
    reference = BoundedModule(net, x[:1], bound_opts={"hzono": options})
    torch.manual_seed(1)
    lb, _ = reference.compute_bounds(x=(BoundedTensorBox(x, 0.1),), C=margin_spec(y, 3), method=method)
    assert torch.allclose(loss, margin_loss(lb))
    ibp = parse_goal("Box").loss(ctx, x, y, 0.0)
    assert not torch.allclose(loss, ibp)


def BoundedTensorBox(x, eps):
    import numpy as np
    from auto_LiRPA import BoundedTensor, PerturbationLpNorm
    lo, hi = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    return BoundedTensor((lo + hi) / 2, PerturbationLpNorm(norm=np.inf, x_L=lo, x_U=hi))
