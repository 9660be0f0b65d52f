"""Fixtures and hooks only; the shared helpers are in ``tests/support.py``."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import lirpa_diffai  # noqa: F401  (patches auto_LiRPA before the tests import it)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module's tests: the machine's 2 cores are shared, and one thread
    avoids oversubscription (use with ``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class _BrokenTorchvision:
    """A meta-path finder whose ``torchvision`` fails at import as a build for another torch
    does (a RuntimeError, not an ImportError)."""

    def find_spec(self, name, path=None, target=None):
        if name == "torchvision" or name.startswith("torchvision."):
            import importlib.machinery
            return importlib.machinery.ModuleSpec(name, self)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        raise RuntimeError("operator torchvision::nms does not exist")


@pytest.fixture
def broken_torchvision(monkeypatch):
    """``import torchvision`` raises RuntimeError, as the package index's CUDA build does on the
    CPU torch."""
    import sys
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_BrokenTorchvision(), *sys.meta_path])
