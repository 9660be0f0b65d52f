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


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread for every test, set again before each one: the machine's 2 cores are
    shared, and a test that calls a command's ``main`` (``--threads``, a benchmark's default of 2)
    must not leave its thread count to the tests after it (two threads there spun on a loaded
    machine: a 1.5 s test took 30 s of CPU). A module's ``usefixtures("one_thread")`` is redundant."""
    torch.set_num_threads(1)
    yield
