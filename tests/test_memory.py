"""Memory estimates (``lirpa_diffai.memory``): above the resident memory a bound call really
adds, not absurdly so, and a call over the available memory refused before it starts."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from auto_LiRPA import BoundedTensor, PerturbationLpNorm
from torch import nn

import lirpa_diffai
from lirpa_diffai import BoundedModule, BoundMemoryError, memory
from lirpa_diffai import bounded_module as bounded_module_file
from tests.support import REPO

METHODS = ("IBP", "hzono", "HBox", "CROWN-IBP", "CROWN-hzono", "CROWN", "alpha-CROWN", "forward")
NETS = ("mlp", "cnn")
# alpha-CROWN takes seconds: measured on 4 images where its slopes are largest (the CNN's)
CASES = [(net, method) for net in NETS for method in METHODS if (net, method) != ("mlp", "alpha-CROWN")]
LOOSEST = 50  # an estimate more than this many times the measured peak is noise, not an estimate


def small_net(name: str) -> tuple[nn.Module, torch.Tensor]:
    """An MLP (256 inputs) or a small CNN (14 x 14, a strided convolution), seeded, with a
    batch large enough that the bound tensors outweigh the interpreter's own allocations."""
    torch.manual_seed(0)
    if name == "mlp":
        net = nn.Sequential(nn.Flatten(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 256),
                            nn.ReLU(), nn.Linear(256, 10))
        return net, torch.rand(16, 1, 16, 16)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, 1, 1), nn.ReLU(), nn.Conv2d(8, 16, 4, 2, 1), nn.ReLU(),
                        nn.Flatten(), nn.Linear(16 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 10))
    return net, torch.rand(8, 1, 14, 14)


def bounded(net: nn.Module, x: torch.Tensor, **opts) -> tuple[BoundedModule, BoundedTensor]:
    """A fresh BoundedModule of ``net`` and ``x`` perturbed by eps 0.01 (L-inf); alpha-CROWN
    takes 2 steps (its memory does not grow with them)."""
    opts = {"optimize_bound_args": {"iteration": 2}, **opts}
    return BoundedModule(net, torch.zeros_like(x), bound_opts=opts), BoundedTensor(x, PerturbationLpNorm(eps=0.01))


def measure_in_this_process() -> dict:
    """``{"net/method": [estimate, peak]}`` (bytes): the estimate, and the resident memory one
    ``compute_bounds`` adds (VmHWM after a reset, ``benchmarks.bench_hzono.timed``) on a fresh
    BoundedModule, after a warm-up call on another one (code pages and caches loaded)."""
    from benchmarks.bench_hzono import timed
    found = {}
    for name, method in CASES:
        net, x = small_net(name)
        x = x[:4] if method == "alpha-CROWN" else x
        with torch.enable_grad() if method == "alpha-CROWN" else torch.no_grad():
            warm, xb = bounded(net, x)
            warm.compute_bounds(x=(xb,), method=method)
            del warm
            bm, xb = bounded(net, x)
            estimate = bm.estimate_memory(x, method)
            _, _, peak_mib = timed(lambda bm=bm, xb=xb, m=method: bm.compute_bounds(x=(xb,), method=m))
        found[f"{name}/{method}"] = [estimate, peak_mib * memory.MIB]
    return found


@pytest.fixture(scope="module")
def measured() -> dict:
    """:func:`measure_in_this_process` in a fresh interpreter whose large allocations are
    mapped and unmapped one by one (``MALLOC_MMAP_THRESHOLD_``), so resident memory follows the
    tensors alive."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    code = "import json, tests.test_memory as t; print(json.dumps(t.measure_in_this_process()))"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("net, method", CASES, ids=[f"{n}-{m}" for n, m in CASES])
def test_estimate_bounds_the_measured_peak(measured, net, method):
    estimate, peak = measured[f"{net}/{method}"]
    assert estimate >= peak, f"{net} {method}: estimate {estimate / 2**20:.2f} MiB < measured {peak / 2**20:.2f} MiB"
    assert estimate <= LOOSEST * max(peak, 2 ** 18), (
        f"{net} {method}: estimate {estimate / 2**20:.2f} MiB > {LOOSEST} x measured {peak / 2**20:.2f} MiB")


def test_estimate_grows_with_batch_rows_and_spec():
    net, x = small_net("cnn")
    bm, _ = bounded(net, x)
    one = bm.estimate_memory(x[:1], "IBP")
    assert bm.estimate_memory(x, "IBP") > one
    assert bm.estimate_memory(x[:1], "CROWN") > bm.estimate_memory(x[:1], "CROWN-IBP") > one
    rows, _ = bounded(net, x, hzono={"correlate_input": 8})
    assert rows.estimate_memory(x, "hzono") > bm.estimate_memory(x, "hzono")
    assert bm.estimate_memory(x, "CROWN-IBP", C=torch.ones(16, 1, 10)) < bm.estimate_memory(x, "CROWN-IBP")
    assert bm.estimate_memory(x, "no-such-method") is None
    # the estimates kept per call follow the options: more rows on the same module, more memory
    boxed = bm.estimate_memory(x, "hzono")
    bm.bound_opts["hzono"]["correlate_input"] = 8
    assert bm.estimate_memory(x, "hzono") == rows.estimate_memory(x, "hzono") > boxed


def test_patches_shrink_crown_estimate_of_convolutions():
    """auto_LiRPA's patches mode keeps a convolution's coefficients as receptive fields."""
    net, x = small_net("cnn")
    patches, _ = bounded(net, x)
    matrix, _ = bounded(net, x, conv_mode="matrix")
    assert patches.estimate_memory(x, "CROWN") < matrix.estimate_memory(x, "CROWN")


@pytest.fixture
def little_memory(monkeypatch):
    """Every estimate checked, and 64 KiB free."""
    monkeypatch.setattr(bounded_module_file, "MEMORY_CHECK_FROM", 0)
    monkeypatch.setattr(bounded_module_file, "available_memory", lambda device: memory.MIB // 16)


@pytest.mark.parametrize("method", ["CROWN", "hzono", "forward"])
def test_over_the_available_memory_is_refused_before_it_starts(little_memory, monkeypatch, method):
    net, x = small_net("mlp")
    bm, xb = bounded(net, x)
    started = []
    monkeypatch.setattr(BoundedModule, "_compute_bounds", lambda *a, **k: started.append(a))
    with pytest.raises(BoundMemoryError) as refused:
        bm.compute_bounds(x=(xb,), method=method)
    estimate = bm.estimate_memory(x, method)
    assert estimate > memory.MIB // 16
    assert method in str(refused.value) and f"about {estimate / memory.MIB:,.0f} MiB by estimate" in str(refused.value)
    assert not started and all(getattr(n, "lower", None) is None for n in bm._modules.values())
    assert isinstance(refused.value, MemoryError)


def test_memory_check_false_skips_the_check(little_memory):
    net, x = small_net("mlp")
    bm, xb = bounded(net, x, memory_check=False)
    lb, ub = bm.compute_bounds(x=(xb,), method="CROWN")
    assert (lb <= ub).all()


def test_enough_memory_runs(monkeypatch):
    monkeypatch.setattr(bounded_module_file, "MEMORY_CHECK_FROM", 0)
    net, x = small_net("mlp")
    bm, xb = bounded(net, x)
    lb, ub = bm.compute_bounds(x=(xb,), method="IBP")
    assert (lb <= ub).all()


def test_available_memory_reads_the_machine():
    free = memory.available_memory("cpu")
    assert free is None or 0 < free
    assert memory.memory_refusal("CROWN", 2 * memory.MIB, 3 * memory.MIB) is None
    assert memory.memory_refusal("CROWN", None, memory.MIB) is None
    assert "CROWN would need about 3 MiB" in memory.memory_refusal("CROWN", 3 * memory.MIB, memory.MIB)


def test_exported():
    assert lirpa_diffai.BoundMemoryError is BoundMemoryError


def test_crown_starts_are_the_nodes_auto_lirpa_bounds_by_a_backward_pass():
    """The CNN: its first convolution reads the input (IBP bounds it), ReLUs take IBP of their
    bounded inputs; the second convolution (patches), the hidden Linear and the output start
    backward passes."""
    from auto_LiRPA.operators import BoundConv, BoundLinear
    net, x = small_net("cnn")
    bm, _ = bounded(net, x)
    nodes = memory.input_nodes(bm)
    starts = memory.backward_starts(bm, nodes, bm.final_node())
    assert [type(n) for n in starts] == [BoundConv, BoundLinear, BoundLinear]
    assert memory.starts_patches(starts[0]) and not memory.starts_patches(starts[1])
    index = {n.name: i for i, n in enumerate(nodes)}
    # the second convolution's 4 x 4 kernel over the first's 8 channels (wider than its 6 x 6
    # receptive field on the one input channel)
    assert memory.row_width(starts[0], nodes[:index[starts[0].name] + 1], True) == 8 * 4 * 4
    assert memory.row_width(starts[0], nodes[:index[starts[0].name] + 1], False) == 8 * 14 * 14
