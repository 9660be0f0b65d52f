"""The manifest of fixes to auto_LiRPA 0.3, each torch 2 / NumPy 2 compatibility fix, and
``import auto_LiRPA`` in any import order."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lirpa_diffai.lirpa03 import manifest
from lirpa_diffai.lirpa03.fix import fix
from tests.support import REPO as ROOT


def test_every_fix_of_the_manifest_was_applied_once_in_its_order():
    import auto_LiRPA  # noqa: F401
    names = [f.name for f in manifest.FIXES]
    assert len(names) == len(set(names))
    assert manifest.APPLIED == names  # torch 2.9+, NumPy 2, auto_LiRPA 0.3: every fix is needed here
    manifest.apply("post-import")  # a second call changes nothing
    manifest.apply("pre-import")
    assert manifest.APPLIED == names


def test_every_fix_names_a_test_that_exists():
    sources = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
    missing = [f"{f.name}: {f.test}" for f in manifest.FIXES
               if not re.search(rf"^def {re.escape(f.test)}\(", sources, re.M)]
    assert not missing, missing
    assert all(f.reason for f in manifest.FIXES)


def test_a_second_fix_of_one_attribute_must_declare_what_it_wraps(monkeypatch):
    class Target:
        def method(self):
            return 1
    monkeypatch.setattr(manifest, "APPLIED", [])
    monkeypatch.setattr(manifest, "PATCHED", {})
    monkeypatch.setattr(manifest, "REPLACED", {})

    @fix(test="-")
    def first():
        original = Target.method
        return {(Target, "method"): lambda self: original(self) + 1}

    @fix(test="-")
    def undeclared():
        return {(Target, "method"): lambda self: 0}

    @fix(test="-", after=("first",))
    def declared():
        original = Target.method
        return {(Target, "method"): lambda self: original(self) * 10}
    with pytest.raises(manifest.ManifestError, match="undeclared replaces .*Target.method, which first"):
        manifest.apply("post-import", (first, undeclared))
    assert Target().method() == 2
    manifest.apply("post-import", (declared,))
    assert Target().method() == 20 and manifest.APPLIED == ["first", "declared"]


def test_another_auto_lirpa_version_gets_no_fix_and_a_warning(monkeypatch):
    versions = {"auto_LiRPA": "0.7.1", "torch": torch.__version__}
    monkeypatch.setattr(manifest, "installed", versions.get)
    monkeypatch.setattr(manifest, "APPLIED", [])
    assert not manifest.supported()
    with pytest.warns(RuntimeWarning, match="auto_LiRPA 0.3 .* found auto_LiRPA 0.7.1"):
        manifest.apply("post-import")
    assert manifest.APPLIED == []


def test_the_docs_table_of_fixes_is_the_manifests():
    assert (ROOT / "docs" / "auto-lirpa-fixes.md").read_text() == manifest.fixes_markdown(), \
        "regenerate it: python -m lirpa_diffai.lirpa03 --markdown > docs/auto-lirpa-fixes.md"


def test_numpy_arraysetops_shim():
    from numpy.lib.arraysetops import isin
    assert isin(np.array([1, 2]), [2]).tolist() == [False, True]


def test_opset_version_setter_reaches_the_exporter():
    from torch.onnx.symbolic_helper import _set_opset_version
    from torch.onnx._internal.torchscript_exporter._globals import GLOBALS
    _set_opset_version(12)
    assert GLOBALS.export_onnx_opset_version == 12


def test_node_attributes_are_readable_by_name():
    graph = torch.jit.trace(lambda x: F.pad(x, (1, 1)), torch.zeros(1, 2)).graph
    node = next(n for n in graph.nodes() if n.kind() == "prim::Constant")
    name = node.attributeNames()[0]
    assert node[name] is not None


def test_traced_graph_uses_opset12_operators():
    from auto_LiRPA.parse_graph import parse_module
    class Clamp(torch.nn.Module):
        def forward(self, x):
            return torch.clamp(F.pad(x, (1, 1, 1, 1)), 0, 1)
    ops = {n.op: n for n in parse_module(Clamp(), (torch.zeros(1, 1, 2, 2),))[0]}
    assert len(ops["onnx::Clip"].inputs) == 3 and "min" not in ops["onnx::Clip"].attr
    assert len(ops["onnx::Pad"].inputs) >= 2


def test_bounded_module_named_members_accepts_remove_duplicate():
    from lirpa_diffai import BoundedModule
    bm = BoundedModule(torch.nn.Linear(3, 2), torch.zeros(1, 3))
    assert len(list(bm.named_parameters(remove_duplicate=False))) == 2


@pytest.mark.parametrize("op", ["pad", "avgpool", "clip"])
def test_patched_operators_bound_soundly_with_ibp_and_crown(op):
    from auto_LiRPA import BoundedTensor, PerturbationLpNorm
    from lirpa_diffai import BoundedModule
    body = {"pad": lambda x: F.pad(x, (1, 1, 1, 1)), "avgpool": lambda x: F.avg_pool2d(x, 2),
            "clip": lambda x: torch.clamp(x, -0.1, 0.2)}[op]

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.LazyLinear(3)

        def forward(self, x):
            return self.fc(torch.relu(body(x)).flatten(1))
    net, x = Net(), torch.randn(2, 2, 4, 4)
    net(x)
    bm = BoundedModule(net, x)
    for method in ("IBP", "CROWN"):
        lb, ub = bm.compute_bounds(x=(BoundedTensor(x, PerturbationLpNorm(norm=np.inf, eps=0.1)),), method=method)
        for _ in range(50):
            y = net(x + (torch.rand_like(x) * 2 - 1) * 0.1)
            assert (y >= lb - 1e-5).all() and (y <= ub + 1e-5).all()


@pytest.mark.parametrize("first", ["import auto_LiRPA", "from auto_LiRPA import BoundedTensor, PerturbationLpNorm",
                                   "import lirpa_diffai"])
def test_auto_lirpa_imports_in_any_order(first, tmp_path):
    """In the installed environment (the start-up hook is in site-packages)."""
    script = f"""{first}
import numpy as np, torch
from auto_LiRPA import BoundedModule, BoundedTensor, PerturbationLpNorm
net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8, 2))
x = torch.rand(1, 1, 4, 4)
box = BoundedTensor(x, PerturbationLpNorm(norm=np.inf, eps=0.1))
lb, ub = BoundedModule(net, x).compute_bounds(x=(box,), method="CROWN")
assert (lb <= ub).all()
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-2000:]


@pytest.mark.parametrize("channels", [1, 3])
def test_crown_through_normalisation_in_patches_mode_equals_matrix_mode(channels):
    """CROWN's intermediate bounds carry 7-dim patches through the per-channel input
    normalisation; with a batch of 3 auto_LiRPA 0.3 failed there (or mis-broadcast)."""
    from auto_LiRPA import BoundedTensor, PerturbationLpNorm
    from lirpa_diffai import BoundedModule
    from lirpa_diffai.models import Normalize
    net = torch.nn.Sequential(Normalize([0.4] * channels, [0.3 + 0.1 * c for c in range(channels)]),
                              torch.nn.Conv2d(channels, 4, 3, stride=2), torch.nn.ReLU(),
                              torch.nn.Conv2d(4, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(16, 3))
    x = torch.rand(3, channels, 9, 9)
    xb = BoundedTensor(x, PerturbationLpNorm(norm=np.inf, eps=0.1))
    bounds = {mode: BoundedModule(net, x, bound_opts={"conv_mode": mode}).compute_bounds(x=(xb,), method="CROWN")
              for mode in ("patches", "matrix")}
    torch.testing.assert_close(bounds["patches"], bounds["matrix"], rtol=1e-4, atol=1e-4)
    points = x + (torch.rand(200, *x.shape) * 2 - 1) * 0.1
    y = net(points.flatten(0, 1)).view(200, 3, 3)
    assert (y >= bounds["patches"][0] - 1e-5).all() and (y <= bounds["patches"][1] + 1e-5).all()


def test_alpha_crown_with_a_mostly_unstable_layer():
    """More than 90% unstable ReLUs: auto_LiRPA 0.3 built full alphas but indexed them as
    sparse ones; alpha-CROWN must run and stay within CROWN's bounds."""
    from auto_LiRPA import BoundedTensor, PerturbationLpNorm
    from lirpa_diffai import BoundedModule
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    x = torch.rand(2, 1, 4, 4)
    xb = BoundedTensor(x, PerturbationLpNorm(norm=np.inf, eps=1.0))
    bm = BoundedModule(net, x, bound_opts={"optimize_bound_args": {"iteration": 5}})
    unstable = bm.compute_bounds(x=(xb,), method="CROWN")
    relu = bm.relus[0].inputs[0]
    assert ((relu.lower < 0) & (relu.upper > 0)).float().mean() > 0.9
    lb, ub = bm.compute_bounds(x=(xb,), method="alpha-CROWN")
    assert (lb >= unstable[0] - 1e-5).all() and (ub <= unstable[1] + 1e-5).all()


def run_python(script: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True)


def test_startup_hook_imports_nothing_heavy(tmp_path):
    """The .pth hook runs at every interpreter start (twice in a Linux venv: lib and lib64):
    it loads the lirpa03 package alone, not torch or lirpa_diffai, and installs one finder."""
    result = run_python("import sys; finder = sys.modules['lirpa_diffai.lirpa03.hook'].AutoLirpaFinder\n"
                        "print('torch' in sys.modules, 'auto_LiRPA' in sys.modules, 'lirpa_diffai' in sys.modules,"
                        " sum(isinstance(f, finder) for f in sys.meta_path))", tmp_path)
    assert result.returncode == 0 and result.stdout.split() == ["False", "False", "False", "1"], \
        result.stderr[-2000:]


@pytest.mark.parametrize("first", ["import auto_LiRPA", "import lirpa_diffai"])
def test_auto_lirpa_import_keeps_warning_filters_and_is_quiet(first, tmp_path):
    """auto_LiRPA 0.3 calls warnings.simplefilter("once") at import (turning on every warning
    of the process) and torch.jit.script (deprecated in torch 2.13)."""
    result = run_python(f"import warnings\n{first}\n"
                        "assert not [f for f in warnings.filters if f[0] == 'once'], warnings.filters\n"
                        "print('ok')", tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
    assert "torch.jit.script" not in result.stderr


def test_a_hook_that_finds_no_lirpa03_leaves_nothing_behind(tmp_path):
    """The .pth of this install, with another ``lirpa_diffai`` first on the path (an older
    layout): start-up is silent and leaves no half-loaded module."""
    (tmp_path / "lirpa_diffai").mkdir()
    (tmp_path / "lirpa_diffai" / "__init__.py").write_text("")
    script = "import sys; print(any(k.startswith('lirpa_diffai') for k in sys.modules))"
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0 and result.stdout.split() == ["False"], result.stderr[-2000:]
    assert "Error processing" not in result.stderr


def test_auto_lirpa_internal_warnings_go_to_its_debug_log():
    """auto_LiRPA's warnings about its internals ("Creating an identity matrix ... please
    submit a bug report", "There is an inf value in the bias of LiRPA bounds", ...) reach
    neither the user's warnings nor stderr: its debug log only. Other ``warnings`` functions
    of those modules are the standard ones."""
    import logging
    import warnings
    from auto_LiRPA import backward_bound, forward_bound, optimized_bounds
    from auto_LiRPA.operators import base, pooling
    from auto_LiRPA.utils import logger
    modules = (backward_bound, forward_bound, optimized_bounds, base, pooling)
    records, level = [], logger.level
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for module in modules:
                module.warnings.warn(f"Creating an identity matrix ({module.__name__})")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert caught == []
    logged = [r.getMessage() for r in records if r.levelno == logging.DEBUG]
    for module in modules:
        assert f"warning: Creating an identity matrix ({module.__name__})" in logged
        assert module.warnings.catch_warnings is warnings.catch_warnings
