"""MI-FGSM: its points stay in the eps box and the data range, its first step is an FGSM
step, and on a really trained network certified <= attacked <= clean, sample by sample."""
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lirpa_diffai import training
from lirpa_diffai.data import eps_box
from lirpa_diffai.evaluation.mi_fgsm import attack_correct, mi_fgsm
from lirpa_diffai.bounded_module import BoundedModule
from lirpa_diffai.data import load_dataset
from lirpa_diffai.evaluation.margins import certified_mask
from lirpa_diffai.pipeline.certify_run import evaluate_network
from lirpa_diffai.pipeline.model_source import load_trained

from tests.support import needs_mnist


def small_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 20), nn.ReLU(), nn.Linear(20, 5)).eval()


@pytest.mark.parametrize("eps", [0.05, 0.3, 1.0])
def test_points_stay_in_the_eps_box_and_the_data_range(eps):
    net = small_net()
    x = torch.rand(64, 3, 2, 2)
    x[:8] = 0.0                                              # on the range's edges
    x[8:16] = 1.0
    y = torch.randint(0, 5, (64,))
    adv = mi_fgsm(net, x, y, eps)
    lower, upper = eps_box(x, eps)
    assert (adv >= lower).all() and (adv <= upper).all()
    assert (adv >= 0).all() and (adv <= 1).all()
    assert ((adv - x).abs() <= eps + 1e-6).all()
    assert not torch.equal(adv, x)                           # it did move


def test_one_iteration_is_an_fgsm_step_of_eps_over_10():
    net = small_net(1)
    x, y = torch.full((16, 3, 2, 2), 0.5), torch.randint(0, 5, (16,))
    xr = x.clone().requires_grad_(True)
    grad, = torch.autograd.grad(F.cross_entropy(net(xr), y, reduction="sum"), xr)
    expected = x + 0.02 * grad.sign()
    fooled_at_x = net(x).argmax(1) != y
    adv = mi_fgsm(net, x, y, eps=0.2, iterations=1)
    assert torch.allclose(adv[~fooled_at_x], expected[~fooled_at_x])
    assert torch.equal(adv[fooled_at_x], x[fooled_at_x])     # misclassified already: x itself


def test_the_attack_leaves_no_gradient_on_the_parameters():
    net = small_net()
    mi_fgsm(net, torch.rand(4, 3, 2, 2), torch.tensor([0, 1, 2, 3]), 0.1)
    assert all(p.grad is None for p in net.parameters())


# --------------------------------------------------------------- a really trained network

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """ConvSmall trained for two epochs on 5000 MNIST images, IBP-style goal with hzono."""
    tmp = tmp_path_factory.mktemp("attack")
    cfg = tmp / "small.yaml"
    cfg.write_text("network: conv_small\ndataset: mnist\neps: 0.05\n"
                   "goal: Mix(Point, Sub(Lin(0,1,1,0.5), Box), Lin(0,0.5,1,0.5))\n"
                   "epochs: 2\nbatch_size: 50\ntrain_subset: 5000\ntest_subset: 100\n"
                   "test_every: 0\nseed: 0\n")
    training.train(str(cfg), out=str(tmp / "run"), progress=False, log=lambda *_: 0)
    model, config = load_trained(tmp / "run")
    x, y = load_dataset("mnist", "test").tensors
    return model, config, x[:200], y[:200]


@needs_mnist
def test_certified_implies_attack_fails_implies_correct(trained):
    model, cfg, x, y = trained
    eps = 0.03
    bm = BoundedModule(model, x[:1], bound_opts=cfg.bound_opts).eval()
    with torch.no_grad():
        correct = model(x).argmax(1) == y
    robust = attack_correct(model, x, y, eps)
    assert not (robust & ~correct).any()
    assert correct.float().mean() > 0.8
    counts = {}
    for method in ("hzono", "IBP", "CROWN-IBP", "CROWN"):
        proved = certified_mask(bm, x, y, eps, method)
        assert not (proved & correct & ~robust).any(), method  # proved and attacked: unsound
        counts[method] = int((proved & correct).sum())
    assert counts["hzono"] >= 20, counts                    # the inclusions are not vacuous
    assert counts["CROWN"] >= 20, counts


@needs_mnist
def test_the_attack_finds_adversarial_examples_at_a_large_radius(trained):
    model, _, x, y = trained
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean().item()
    attacked = attack_correct(model, x, y, 0.3).float().mean().item()
    assert attacked < clean - 0.3


@needs_mnist
def test_evaluate_network_orders_the_accuracies(trained):
    model, cfg, x, y = trained
    bm = BoundedModule(model, x[:1], bound_opts=cfg.bound_opts).eval()
    report = evaluate_network(model, bm, x[:100], y[:100], 0.03, ["hzono", "IBP"], 50)
    assert report.n == 100 and [m.method for m in report.methods] == ["hzono", "IBP"]
    assert report.attack <= report.clean
    assert all(m.certified <= report.attack and m.seconds > 0 for m in report.methods)
    assert json.loads(report.to_json())["methods"][0]["method"] == "hzono"
