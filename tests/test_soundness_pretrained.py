"""The soundness fuzzer's check on the third-party networks of ``shared/models``
(``lirpa_diffai.models.load_pretrained``) at eps 1/255, 2/255 and 8/255: every method gives
bounds that contain samples, corners and PGD points aimed at each logit's bounds, and equal the
logits at eps = 0 (or refuses naming the node and its operator)."""
from __future__ import annotations

from functools import lru_cache

import pytest

from lirpa_diffai import data, models

from soundness.check import Case, run_case
from soundness.known import expected_failure
from soundness.methods import METHODS, QUICK

pytestmark = pytest.mark.usefixtures("one_thread")

SHARED_MODELS = data.shared_root() / "models"
WITNESS = {"samples": 100, "pgd_steps": 10, "pgd_targets": 10}
IMAGES = 2


@lru_cache(maxsize=None)
def network_case(name: str, eps: float) -> Case:
    if not (SHARED_MODELS / models.PRETRAINED[name].file).is_file():
        pytest.skip(f"{name} not in {SHARED_MODELS}")
    net = models.load_pretrained(name).eval()
    images = data.load_dataset(models.PRETRAINED[name].dataset, "test").tensors[0][:IMAGES]
    return Case(net, images, eps, seed=0)


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


@pytest.mark.parametrize("method", QUICK)
def test_mnist_conv_small_sound(method):
    check("mnist_conv_small_nat", 2 / 255, method, training=False)


@pytest.mark.slow
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("eps", [1 / 255, 2 / 255, 8 / 255], ids=["1/255", "2/255", "8/255"])
@pytest.mark.parametrize("name", sorted(models.PRETRAINED))
def test_pretrained_network_sound(name, eps, method, training):
    if name == "mnist_conv_small_nat" and eps == 2 / 255 and method in QUICK and not training:
        pytest.skip("the quick test's case")
    check(name, eps, method, training)
