"""torchvision's classification models, when torchvision imports here: IBP and hzono with a box
input are sound on each (sampled points, corners and PGD aimed at each bound; exact at eps = 0)
or refuse naming the graph node and its operator (tests/architectures.py's ``check``).

Skipped, saying why, where torchvision is absent or does not match torch: the package index
has only CUDA builds of torchvision, and on a CPU torch ``import torchvision`` fails with
"operator torchvision::nms does not exist" (a RuntimeError, not an ImportError). Install a
matching build with ``pip install "lirpa-diffai[torchvision]"`` (docs/compatibility.md)."""
from __future__ import annotations

from functools import lru_cache

import pytest
import torch

from tests.architectures import EPS, check
from tests.soundness.check import Case


# (torchvision builder, input side): random weights, 10 classes, two 3 x side x side images (not
# one: auto_LiRPA 0.3 traces an eval-mode network holding Dropout in training mode, where
# MobileNetV2's and EfficientNet's last BatchNorm sees one value per channel on one 32 x 32 image
# and torch raises "Expected more than 1 value per channel when training")
MODELS = (
    ("resnet18", 32),
    ("mobilenet_v2", 32),
    ("shufflenet_v2_x0_5", 32),
    ("squeezenet1_0", 64),
    ("vgg11", 32),
    ("efficientnet_b0", 32),
    ("convnext_tiny", 32),
)
LABELS = ("IBP", "hzono[boxy,rows=0]")


@lru_cache(maxsize=1)
def torchvision_models():
    """``torchvision.models``, or None with the reason it does not import (any exception: a
    build for another torch fails with a RuntimeError)."""
    try:
        import torchvision.models
    except Exception as error:  # noqa: BLE001  (a mismatched build raises RuntimeError, OSError, ...)
        return None, f"{type(error).__name__}: {error}"
    return torchvision.models, ""


@lru_cache(maxsize=None)
def case_of(name: str, side: int) -> Case:
    models, _ = torchvision_models()
    torch.manual_seed(0)
    model = getattr(models, name)(weights=None, num_classes=10).eval()
    return Case(model, torch.rand(2, 3, side, side), EPS, 0)


@pytest.mark.slow
@pytest.mark.parametrize("label", LABELS)
@pytest.mark.parametrize("name, side", MODELS, ids=[name for name, _ in MODELS])
def test_torchvision_model_is_sound_or_refused_by_node(name, side, label):
    models, why = torchvision_models()
    if models is None:
        pytest.skip(f"torchvision does not import here ({why[:200]}); "
                    f"install a build matching torch {torch.__version__}: pip install 'lirpa-diffai[torchvision]'")
    outcome = check(case_of(name, side), label)
    assert outcome.kind in ("sound", "refused"), f"torchvision {name} / {label}: {outcome}"


def test_a_broken_torchvision_gives_the_reason(broken_torchvision):
    torchvision_models.cache_clear()
    try:
        models, why = torchvision_models()
    finally:
        torchvision_models.cache_clear()
    assert models is None and why == "RuntimeError: operator torchvision::nms does not exist"
