"""The soundness fuzzer's check on the third-party networks of ``shared/models``
(``lirpa_diffai.models.load_pretrained``) at eps 1/255, 2/255 and 8/255: every method gives
bounds that contain samples, corners and PGD points aimed at each logit's bounds, and equal the
logits at eps = 0 (or refuses naming the node and its operator)."""
from __future__ import annotations

from functools import lru_cache

import pytest

from lirpa_diffai import data, models

from tests.soundness.check import Case, run_case
from tests.soundness.known import expected_failure
from tests.soundness.methods import METHODS, QUICK


SHARED_MODELS = data.shared_root() / "models"
WITNESS = {"samples": 100, "pgd_steps": 10, "pgd_targets": 10}
IMAGES = 2


@lru_cache(maxsize=None)
def network(name: str) -> tuple:
    """The network, its first test images, and the traces its cases at every eps share."""
    if not (SHARED_MODELS / models.PRETRAINED[name].file).is_file():
        pytest.skip(f"{name} not in {SHARED_MODELS}")
    net = models.load_pretrained(name).eval()
    images = data.load_dataset(models.PRETRAINED[name].dataset, "test").tensors[0][:IMAGES]
    return net, images, {}


@lru_cache(maxsize=None)
def network_case(name: str, eps: float) -> Case:
    net, images, traced = network(name)
    return Case(net, images, eps, seed=0, traced=traced)


def check(name: str, eps: float, method: str, training: bool) -> None:
    outcome = run_case(network_case(name, eps), METHODS[method], training, **WITNESS)
    if outcome.ok:
        return
    known = expected_failure(f"pretrained:{name}", method, training, outcome)
    if known is not None:
        pytest.xfail(known.finding)
    pytest.fail(f"{outcome.kind}: {method} on {name} at eps {eps:.4g} "
                f"({'training' if training else 'eval'} mode), first {IMAGES} test images: "
                f"{outcome.detail}", pytrace=False)


# one method per family, without the two that take seconds per CIFAR network: alpha-CROWN's
# optimisation (8-40 s) and input rows "all" (one noise symbol per input pixel, 4-5 s; ZSwitch has them too)
FAMILIES = [m for m in QUICK if m not in ("alpha-CROWN", "hzono[deepz,rows=all]", "ZSwitch")]
# a wider set for the slow test: more ReLU variants and input rows, the combined methods
WIDE = FAMILIES + ["hzono[deepz,rows=2]", "Box", "hzono[smooth,rows=0]", "alpha-CROWN-hzono", "zono-input:IBP"]
# the expensive ones: on the two ConvSmalls at 2/255 only
HEAVY = ["hzono[deepz,rows=all]", "hzono[boxy,rows=all]", "zono-input:hzono[deepz,rows=all]", "ZNIPS",
         "alpha-CROWN"]


@pytest.mark.parametrize("method", FAMILIES + ["hzono[deepz,rows=all]"])
def test_mnist_conv_small_sound(method):
    check("mnist_conv_small_nat", 2 / 255, method, training=False)


def pretrained_params():
    """Every network at eps 1/255, 2/255, 8/255 with WIDE in eval mode, FAMILIES in training
    mode (the networks have no batch norm or dropout: the same function through the
    training-mode code paths) at 8/255, and HEAVY on the ConvSmalls at 2/255."""
    eps_ids = {1 / 255: "1/255", 2 / 255: "2/255", 8 / 255: "8/255"}
    for name in sorted(models.PRETRAINED):
        for eps, eps_id in eps_ids.items():
            methods = [(m, False) for m in WIDE] + [(m, True) for m in FAMILIES if eps == 8 / 255]
            if eps == 2 / 255 and name != "resnet2b":
                methods += [(m, False) for m in HEAVY]
            for method, training in methods:
                quick = FAMILIES + ["hzono[deepz,rows=all]"]
                if name == "mnist_conv_small_nat" and eps == 2 / 255 and method in quick and not training:
                    continue  # the quick test's case
                yield pytest.param(name, eps, method, training,
                                   id=f"{name}-{eps_id}-{method}-{'train' if training else 'eval'}")


@pytest.mark.slow
@pytest.mark.parametrize("name,eps,method,training", pretrained_params())
def test_pretrained_network_sound(name, eps, method, training):
    check(name, eps, method, training)
