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
