"""The zoo's networks of today's architecture families (lirpa_diffai.models.modern): built for
MNIST and CIFAR-10 shapes, bounded soundly by hzono and CROWN-IBP (sampled, corner and PGD
points; exact at eps = 0), and trained one step from their YAML configurations
(examples/goals/*_box.yaml) with the Box part of the goal active: the loss is finite, the step
moves the weights, and the same batch's loss changes after it."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import lirpa_diffai
from lirpa_diffai import data, models, training
from lirpa_diffai.models import modern
from lirpa_diffai.training import GoalLoss
from lirpa_diffai.training.config import load_config
from tests.support import assert_bounds_hold

pytestmark = pytest.mark.usefixtures("one_thread")

GOALS = Path(__file__).resolve().parents[2] / "examples" / "goals"
NETWORKS = ("mobilenet_tiny", "vit_tiny", "vit_tiny_centred")
CONFIGS = ("mobilenet_tiny_mnist_box.yaml", "vit_tiny_mnist_box.yaml")


@pytest.mark.parametrize("dataset", ["mnist", "cifar10"])
@pytest.mark.parametrize("name", NETWORKS)
def test_builds_for_both_datasets_with_normalize_first(name, dataset):
    torch.manual_seed(0)
    net = models.get(name, dataset).eval()
    out = net(torch.rand(3, *data.input_shape(dataset)))
    assert out.shape == (3, 10) and out.isfinite().all()
    assert isinstance(net[0], models.common.Normalize)


@pytest.mark.parametrize("method", ["hzono", "CROWN-IBP"])
@pytest.mark.parametrize("dataset", ["mnist", "cifar10"])
@pytest.mark.parametrize("name", NETWORKS)
def test_bounds_hold_at_sampled_and_attacked_points(name, dataset, method):
    torch.manual_seed(0)
    net = models.get(name, dataset).eval()
    x = torch.rand(2, *data.input_shape(dataset))
    bm = lirpa_diffai.BoundedModule(net, x)
    assert_bounds_hold(bm, net, x, 0.01, method, samples=32)


def test_centred_norm_centres_and_scales_without_dividing():
    norm = modern.CentredNorm(4)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
        norm.bias.fill_(0.5)
    x = torch.tensor([[1.0, 2.0, 3.0, 6.0]])
    torch.testing.assert_close(norm(x), torch.tensor([[-2.0, -2.0, 0.0, 12.0]]) + 0.5)


def test_attention_takes_any_batch_after_tracing():
    """The reshapes keep the batch axis free (``-1``): a BoundedModule traced on 2 images
    bounds a batch of 5."""
    torch.manual_seed(0)
    net = models.get("vit_tiny_centred", "mnist").eval()
    bm = lirpa_diffai.BoundedModule(net, torch.rand(2, 1, 28, 28))
    x = torch.rand(5, 1, 28, 28)
    torch.testing.assert_close(bm(x), net(x))


@pytest.mark.parametrize("config", CONFIGS)
def test_one_step_of_the_configuration_moves_the_weights_and_the_loss(config):
    cfg = load_config(GOALS / config)
    assert cfg.method == "hzono" and "Box" in str(cfg.goal)
    torch.manual_seed(0)
    model = training.build_network(cfg)
    x, y = torch.rand(4, *data.input_shape(cfg.dataset)), torch.tensor([3, 7, 1, 0])
    bm = training.wrap_for_training(model, cfg, x)
    model.train()
    bm.train()
    loss_module, t = GoalLoss(model, bm, cfg), float(cfg.epochs)   # the Box part at full weight
    before = [p.detach().clone() for p in model.parameters()]
    loss = training.training_step(loss_module, training.make_optimizer(model, cfg), x, y, t,
                                  cfg.lr_at(t))
    assert torch.isfinite(torch.tensor(loss))
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    with torch.no_grad():
        after = loss_module(x, y, t).item()
    assert after != loss and torch.isfinite(torch.tensor(after))
