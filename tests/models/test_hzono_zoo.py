"""Every zoo network traces and gets finite, sound hzono bounds; at eps = 0 they are the forward pass."""
import numpy as np
import pytest
import torch
from auto_LiRPA import BoundedTensor, PerturbationLpNorm

from lirpa_diffai import BoundedModule, data, models

from tests.support import assert_inside, box_samples

LARGE = {"skipnet18", "resnet18", "resnet34", "resnet_large", "densenet100", "truncated_vgg", "conv_large_ibp"}


def zoo_cases():
    for name in models.names():
        entry = models.registry.ZOO[name]
        for dataset in entry.datasets:
            marks = [pytest.mark.slow] if any(name.startswith(big) for big in LARGE) else []
            yield pytest.param(name, dataset, id=f"{name}-{dataset}", marks=marks)


@pytest.mark.parametrize("name, dataset", list(zoo_cases()))
def test_zoo_network_gets_sound_hzono_bounds(name, dataset):
    net = models.get(name, dataset).eval()
    x = torch.rand(2, *data.input_shape(dataset))
    bm = BoundedModule(net, x)
    with torch.no_grad():
        expected = net(x)
        lb, ub = bm.compute_bounds(x=(BoundedTensor(x, PerturbationLpNorm(norm=np.inf, eps=0.0)),), method="hzono")
        torch.testing.assert_close(lb, expected, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(ub, expected, rtol=1e-4, atol=1e-4)
        eps = 2 / 255
        lb, ub = bm.compute_bounds(x=(BoundedTensor(x, PerturbationLpNorm(norm=np.inf, eps=eps)),), method="hzono")
        assert torch.isfinite(lb).all() and torch.isfinite(ub).all()
        outputs = torch.stack([net(p) for p in box_samples(x - eps, x + eps, 6)])
    assert_inside(outputs, lb, ub, tol=1e-4)
