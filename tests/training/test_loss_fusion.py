"""Loss fusion (``lirpa_diffai.training.loss_fusion``): the fused cross-entropy bound equals the
unfused one where both are exact (eps = 0; two classes on an affine network), and elsewhere it
is sound: no point sampled in the box, and no PGD point aimed at the loss, has a larger
cross-entropy. For CROWN-IBP, CROWN-hzono and CROWN, in eval and training mode."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lirpa_diffai import BoundedModule
from lirpa_diffai.evaluation.margins import margin_spec
from lirpa_diffai.goals import GoalContext, parse_goal
from lirpa_diffai.training.config import parse_config
from lirpa_diffai.training.errors import ConfigError
from lirpa_diffai.training.loss_fusion import (box_input, exp_chord, fused_loss_bound,
                                               unfused_loss_bound)

from tests.soundness.witness import eval_reference
from tests.support import box_samples

METHODS = ("CROWN-IBP", "CROWN-hzono", "CROWN")


def conv_bn_net(classes):
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Flatten(), nn.Linear(4 * 5 * 5, 16), nn.ReLU(), nn.Linear(16, classes))


def randomized(net):
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
    return net


def setup(classes, training, batch=4):
    net = randomized(conv_bn_net(classes))
    x = 0.2 + 0.6 * torch.rand(batch, 2, 5, 5)
    y = torch.randint(0, classes, (batch,))
    bm = BoundedModule(net, x[:1])
    bm.train(training)
    return net, bm, x, y


def unfused(bm, x_L, x_U, y, classes, method):
    lb, _ = bm.compute_bounds(x=box_input(x_L, x_U), C=margin_spec(y, classes), method=method)
    return unfused_loss_bound(-lb)


def worst_sampled_loss(reference, x_L, x_U, y, samples=300, steps=20):
    """The largest cross-entropy per sample over uniform points, corners and a PGD attack
    (signed gradient ascent on the loss) in the box."""
    points = box_samples(x_L, x_U, samples)
    with torch.no_grad():
        worst = torch.stack([F.cross_entropy(reference(p), y, reduction="none") for p in points]).amax(0)
    x = ((x_L + x_U) / 2).clone()
    for _ in range(steps):
        x.requires_grad_(True)
        loss = F.cross_entropy(reference(x), y, reduction="none")
        (grad,) = torch.autograd.grad(loss.sum(), x)
        x = torch.min(torch.max(x.detach() + (x_U - x_L) / 8 * grad.sign(), x_L), x_U)
        worst = torch.maximum(worst, loss.detach())
    with torch.no_grad():
        return torch.maximum(worst, F.cross_entropy(reference(x), y, reduction="none"))


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("method", METHODS)
def test_at_eps_0_fused_and_unfused_equal_the_clean_loss(method, training):
    net, bm, x, y = setup(7, training)
    fused = fused_loss_bound(bm, box_input(x, x), y, 7, method)
    clean = F.cross_entropy(eval_reference(net, x, training)(x), y, reduction="none")
    torch.testing.assert_close(fused, clean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(unfused(bm, x, x, y, 7, method), clean, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_two_classes_on_an_affine_network_fused_equals_unfused(method):
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
    x, y = torch.rand(6, 3, 4), torch.tensor([0, 1, 0, 1, 1, 0])
    bm = BoundedModule(net, x[:1])
    x_L, x_U = x - 0.1, x + 0.1
    fused = fused_loss_bound(bm, box_input(x_L, x_U), y, 2, method)
    torch.testing.assert_close(fused, unfused(bm, x_L, x_U, y, 2, method), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("eps", [0.0, 0.03, 0.1])
def test_the_fused_bound_holds_under_sampling_and_attack(method, training, eps):
    net, bm, x, y = setup(7, training)
    x_L, x_U = x - eps, x + eps
    bound = fused_loss_bound(bm, box_input(x_L, x_U), y, 7, method).detach()
    worst = worst_sampled_loss(eval_reference(net, x, training), x_L, x_U, y)
    assert (worst <= bound + 1e-5 * (1 + bound.abs())).all(), (worst, bound)
    if eps > 0:  # the bound is not trivially loose: within a few nats of the attack
        assert (bound - worst < 5).all()


@pytest.mark.parametrize("method", METHODS)
def test_the_fused_bound_holds_on_a_residual_network(method):
    from lirpa_diffai.models import ParSum
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(),
                        ParSum(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                                             nn.Conv2d(4, 4, 3, padding=1)), nn.Identity()),
                        nn.ReLU(), nn.Flatten(), nn.Linear(100, 9))
    x, y = 0.2 + 0.6 * torch.rand(4, 2, 5, 5), torch.randint(0, 9, (4,))
    bm = BoundedModule(net, x[:1])
    x_L, x_U = x - 0.05, x + 0.05
    bound = fused_loss_bound(bm, box_input(x_L, x_U), y, 9, method).detach()
    worst = worst_sampled_loss(eval_reference(net, x, False), x_L, x_U, y)
    assert (worst <= bound + 1e-5 * (1 + bound.abs())).all(), (worst, bound)


def test_the_fused_bound_holds_with_200_classes_and_large_logits():
    net, bm, x, y = setup(200, training=False, batch=3)
    with torch.no_grad():
        net[-1].weight.mul_(30)  # margins of tens: exp would overflow without the shift
    x_L, x_U = x - 0.05, x + 0.05
    for method in METHODS:
        bound = fused_loss_bound(bm, box_input(x_L, x_U), y, 200, method).detach()
        assert torch.isfinite(bound).all()
        worst = worst_sampled_loss(eval_reference(net, x, False), x_L, x_U, y, samples=100)
        assert (worst <= bound + 1e-5 * (1 + bound.abs())).all(), method


def test_the_chord_lies_above_exp_and_is_the_tangent_at_zero_width():
    lower = torch.tensor([-3.0, 0.5, 2.0, 1.0, -50.0, -1e4, 0.9], requires_grad=True)
    upper = torch.tensor([1.0, 0.5, 2.0 + 1e-8, 4.0, -49.0, 1.5, 1.6], requires_grad=True)
    shift = torch.tensor(1.5)
    slope, intercept = exp_chord(lower, upper, shift)
    (grad_l, grad_u) = torch.autograd.grad((slope + intercept).sum(), (lower, upper))
    assert torch.isfinite(torch.cat([slope, intercept, grad_l, grad_u])).all()
    m = lower + (upper - lower) * torch.linspace(0, 1, 101).unsqueeze(1)
    assert (slope * m + intercept >= torch.exp(m - shift) * (1 - 1e-6) - 1e-7).all()
    torch.testing.assert_close(slope[1], torch.exp(lower[1] - shift))


def test_gradients_reach_the_first_layer_through_the_intermediate_boxes():
    """The intermediate boxes of the first pass keep their gradient (they are not handed to
    auto_LiRPA as constants): the fused loss's gradient differs from the one with them
    detached."""
    net, bm, x, y = setup(7, training=True)
    fused_loss_bound(bm, box_input(x - 0.05, x + 0.05), y, 7, "CROWN-IBP").mean().backward()
    grad = net[0].weight.grad.clone()
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    net.zero_grad()
    lb, _ = bm.compute_bounds(x=box_input(x - 0.05, x + 0.05), C=margin_spec(y, 7), method="CROWN-IBP")
    unfused_loss_bound(-lb).mean().backward()
    assert not torch.allclose(grad, net[0].weight.grad)


def test_box_fused_in_the_goal_language_takes_the_fused_bound():
    goal = parse_goal("Box(fused=True)")
    assert goal.fused and str(goal) == "Box(fused=True)"
    net, bm, x, y = setup(7, training=False)
    calls = []

    def loss_bound(x_L, x_U, labels):
        calls.append((x_L, x_U))
        return fused_loss_bound(bm, box_input(x_L, x_U), labels, 7, "CROWN-IBP")
    ctx = GoalContext(model=net, eps=0.05, num_classes=7, loss_bound=loss_bound)
    loss = goal.loss(ctx, x, y, 0.0)
    torch.testing.assert_close(loss, loss_bound((x - 0.05).clamp(0, 1), (x + 0.05).clamp(0, 1), y).mean())
    assert len(calls) == 2
    with pytest.raises(ValueError, match="loss fusion needs the method"):
        goal.loss(GoalContext(model=net, eps=0.05, num_classes=7), x, y, 0.0)
    plain = GoalContext(model=net, eps=0.05, num_classes=7, loss_bound=loss_bound, loss_fusion=True)
    torch.testing.assert_close(parse_goal("Box").loss(plain, x, y, 0.0), loss)


CONFIG = "network: conv_small\ndataset: mnist\neps: 0.1\ngoal: Box\nepochs: 1\n"


def test_the_trainer_option_needs_a_fusable_method():
    cfg = parse_config(CONFIG + "method: crown-hzono\nloss_fusion: true\n", validate_network=str)
    assert (cfg.method, cfg.loss_fusion) == ("CROWN-hzono", True)
    with pytest.raises(ConfigError, match="loss_fusion needs method") as err:
        parse_config(CONFIG + "method: IBP\nloss_fusion: true\n", validate_network=str)
    assert err.value.line == 7


def test_the_trainers_loss_is_the_fused_bound_with_loss_fusion():
    from lirpa_diffai.training.step import GoalLoss
    net, bm, x, y = setup(10, training=True)
    cfg = parse_config(CONFIG + "method: CROWN-IBP\nloss_fusion: true\n", validate_network=str)
    loss = GoalLoss(net, bm, cfg)(x, y, 0.0)
    x_L, x_U = (x - 0.1).clamp(0, 1), (x + 0.1).clamp(0, 1)
    torch.testing.assert_close(loss, fused_loss_bound(bm, box_input(x_L, x_U), y, 10, "CROWN-IBP").mean())
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())
