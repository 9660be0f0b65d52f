"""FGSM (random start, step 1.25 eps) and GradAlign(w) (Andriushchenko & Flammarion 2020)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lirpa_diffai.goals import FGSM, GoalContext, GradAlign, Point, parse_goal
from lirpa_diffai.goals.errors import GoalSyntaxError
from lirpa_diffai.goals.fast_adversarial import gradient_misalignment


def relu_net():
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))


def test_fgsm_is_one_signed_step_of_1_25_eps_from_a_uniform_start_kept_in_the_box():
    net, x, y, eps = relu_net(), torch.rand(8, 6), torch.randint(0, 3, (8,)), 0.1
    ctx = GoalContext(model=net, eps=eps)
    box = ((x - eps).clamp(0, 1), (x + eps).clamp(0, 1))
    torch.manual_seed(3)
    point = FGSM().point(ctx, box, y, 0.0)
    torch.manual_seed(3)  # the same start, by hand
    l, u = box
    start = (l + (u - l) * torch.rand_like(l)).requires_grad_(True)
    grad, = torch.autograd.grad(F.cross_entropy(net(start), y, reduction="sum"), start)
    expected = torch.min(torch.max(start + 1.25 * (u - l) / 2 * grad.sign(), l), u)
    torch.testing.assert_close(point, expected.detach())
    assert ((point >= l) & (point <= u)).all()
    inner = (x > eps) & (x < 1 - eps)   # unclipped coordinates move by 1.25 eps or hit the box
    moved = (point - start.detach()).abs()[inner]
    assert ((moved - 1.25 * eps).abs() < 1e-6).logical_or(point[inner] == l[inner]).logical_or(
        point[inner] == u[inner]).all()
    assert all(p.grad is None for p in net.parameters())


def test_gradalign_vanishes_when_the_input_gradient_keeps_its_direction():
    """A linear two-class model: grad_x CE = (p_other) (w_other - w_y), one direction for every
    point, so cos = 1 and GradAlign adds nothing."""
    net, x, y = nn.Linear(6, 2), torch.rand(5, 6), torch.randint(0, 2, (5,))
    ctx = GoalContext(model=net, eps=0.1)
    box = ((x - 0.1).clamp(0, 1), (x + 0.1).clamp(0, 1))
    loss = GradAlign(0.5, Point()).loss_on(ctx, box, y, 0.0)
    torch.testing.assert_close(loss, Point().loss_on(ctx, box, y, 0.0))


def test_gradalign_adds_w_times_the_misalignment_and_trains_through_it():
    net, x, y, eps = relu_net(), torch.rand(16, 6), torch.randint(0, 3, (16,)), 0.3
    ctx = GoalContext(model=net, eps=eps)
    box = ((x - eps).clamp(0, 1), (x + eps).clamp(0, 1))
    torch.manual_seed(5)
    loss = GradAlign(0.2, Point()).loss_on(ctx, box, y, 0.0)
    torch.manual_seed(5)
    l, u = box
    c = ((l + u) / 2).requires_grad_(True)
    r = (l + (u - l) * torch.rand_like(l)).requires_grad_(True)
    g1, = torch.autograd.grad(F.cross_entropy(net(c), y, reduction="sum"), c)
    g2, = torch.autograd.grad(F.cross_entropy(net(r), y, reduction="sum"), r)
    cos = F.cosine_similarity(g1.flatten(1), g2.flatten(1), dim=1)
    reg = loss - Point().loss_on(ctx, box, y, 0.0)
    torch.testing.assert_close(reg, 0.2 * (1 - cos.mean()))
    assert reg > 1e-4
    reg.backward()  # double backpropagation reaches the weights
    assert net[0].weight.grad.abs().sum() > 0


def test_zero_gradients_are_left_out_of_the_mean():
    g1 = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    g2 = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, -1.0]])
    torch.testing.assert_close(gradient_misalignment(g1, g2), torch.tensor(1.0))  # 1 - (1 - 1)/2


def test_the_dsl_spells_the_papers_objective():
    goal = parse_goal("GradAlign(0.2)")
    assert isinstance(goal, GradAlign) and isinstance(goal.g, FGSM) and goal.w(0.0) == 0.2
    assert str(parse_goal("FGSM")) == "FGSM(1.25)"
    with pytest.raises(GoalSyntaxError, match="GradAlign"):
        parse_goal("GradAlign()")
