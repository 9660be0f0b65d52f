"""Fixtures and hooks only; the shared helpers are in ``tests/support.py``."""
from __future__ import annotations

import os

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


# ------------------------------------------------------------------ CPU time per test
# The suite's budget is CPU time (10 minutes on an idle 2-core machine): on a shared, loaded
# machine wall time (--durations) says little. ``--cpu-durations=N`` reports each test's CPU
# seconds, setup to teardown, its waited-for child processes included.
CPU_SECONDS: dict[str, float] = {}


def pytest_addoption(parser):
    parser.addoption("--cpu-durations", type=int, default=None, metavar="N",
                     help="report the tests' total CPU seconds and the N tests taking most (0: all)")


def cpu_now() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    start = cpu_now()
    yield
    CPU_SECONDS[item.nodeid] = cpu_now() - start


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    shown = config.getoption("cpu_durations")
    if shown is None or not CPU_SECONDS:
        return
    ranked = sorted(CPU_SECONDS.items(), key=lambda item: -item[1])
    terminalreporter.write_sep("=", f"CPU time: {sum(CPU_SECONDS.values()):.1f} s over {len(ranked)} tests")
    for nodeid, seconds in ranked[:shown or None]:
        terminalreporter.write_line(f"{seconds:8.2f}s {nodeid}")
