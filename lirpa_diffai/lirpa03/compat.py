"""Make auto_LiRPA 0.3 (the newest on the package index, written for torch < 1.13 and
NumPy 1) import and run on torch 2.13 and NumPy 2.

Each patch is a small named function that checks whether it is needed, changes nothing
otherwise, and is applied at most once. ``install()`` applies the ones needed before
``auto_LiRPA`` is imported; ``patch_loaded()`` the ones that act on auto_LiRPA's own
classes.

Import order: ``lirpa_diffai_compat.pth`` in site-packages (written by ``make install``
with ``python -m lirpa_diffai install-hook``) loads this module alone (not the package) and
runs ``install_import_hook()`` at interpreter start-up. That puts a meta-path finder in front of the first
``import auto_LiRPA``, which wraps auto_LiRPA's loader to patch before and after its
module body runs. Start-up stays cheap: nothing is imported until auto_LiRPA is.
Importing ``lirpa_diffai`` installs the same hook, so an environment without the
``.pth`` works too when ``lirpa_diffai`` is imported first.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import re
import sys
import types
import warnings

APPLIED: list[str] = []  # names of the patches applied in this process, for tests
JIT_SCRIPT_DEPRECATION = r"`torch\.jit\.script` is deprecated"


def _once(fn):
    """Run ``fn`` at most once per process; record its name when it changed something."""
    done = []

    def wrapper():
        if done:
            return
        done.append(True)
        if fn():
            APPLIED.append(fn.__name__)
    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


@_once
def numpy_arraysetops() -> bool:
    """NumPy 2 removed ``numpy.lib.arraysetops``; auto_LiRPA imports ``isin`` from it."""
    import numpy
    try:
        import numpy.lib.arraysetops  # noqa: F401
        return False
    except ImportError:
        shim = types.ModuleType("numpy.lib.arraysetops")
        shim.isin = numpy.isin
        sys.modules["numpy.lib.arraysetops"] = shim
        return True


@_once
def onnx_set_opset_version() -> bool:
    """torch >= 2.9 moved the TorchScript exporter's globals; ``_set_opset_version`` is gone."""
    import torch.onnx.symbolic_helper as helper
    if hasattr(helper, "_set_opset_version"):
        return False
    from torch.onnx._internal.torchscript_exporter._globals import GLOBALS

    def _set_opset_version(opset_version: int) -> None:
        GLOBALS.export_onnx_opset_version = opset_version
    helper._set_opset_version = _set_opset_version
    return True


@_once
def jit_node_getitem() -> bool:
    """torch 2 dropped ``Node.__getitem__``; read an attribute with its typed getter."""
    import torch
    if hasattr(torch._C.Node, "__getitem__"):
        return False

    def getitem(node, name):
        return getattr(node, node.kindOf(name))(name)
    torch._C.Node.__getitem__ = getitem
    return True


@_once
def bounded_module_named_members() -> bool:
    """torch >= 2.0 calls ``_named_members(..., remove_duplicate=...)``, which
    auto_LiRPA 0.3's override does not accept."""
    import inspect
    from auto_LiRPA import BoundedModule
    original = BoundedModule._named_members
    if "remove_duplicate" in inspect.signature(original).parameters:
        return False

    def _named_members(self, get_members_fn, prefix="", recurse=True, remove_duplicate=True):
        return original(self, get_members_fn, prefix, recurse)
    BoundedModule._named_members = _named_members
    return True


@_once
def onnx_symbolic_opsets() -> bool:
    """torch >= 2.9 registers the TorchScript exporter's opset-10+ symbolics only when
    ``torch.onnx.export`` imports them; auto_LiRPA's tracer never does, so opset 12 silently
    falls back to opset-9 forms (``Pad``/``Clip`` with attributes) that auto_LiRPA cannot read."""
    import importlib
    import pkgutil
    try:
        import torch.onnx._internal.torchscript_exporter as exporter
    except ImportError:
        return False
    missing = [m.name for m in pkgutil.iter_modules(exporter.__path__)
               if m.name.startswith("symbolic_opset") and f"{exporter.__name__}.{m.name}" not in sys.modules]
    for name in missing:
        importlib.import_module(f"{exporter.__name__}.{name}")
    return bool(missing)


PRE_IMPORT = (numpy_arraysetops, onnx_set_opset_version, onnx_symbolic_opsets, jit_node_getitem)
@_once
def bound_pad_tensor_value() -> bool:
    """torch 2's ``F.pad`` refuses a tensor ``value``; opset-12 ``Pad`` hands ``BoundPad.forward``
    a one-element tensor, or an empty one for ONNX's omitted optional input (meaning 0)."""
    import torch
    import torch.nn.functional as F
    try:
        F.pad(torch.zeros(1, 1, 1, 1), [0, 0, 0, 0], value=torch.tensor([0.0]))
        return False
    except TypeError:
        pass
    from auto_LiRPA.operators import BoundPad
    original = BoundPad.forward

    def forward(self, x, pad, value=0.0):
        if isinstance(value, torch.Tensor):
            value = float(value) if value.numel() else 0.0
        return original(self, x, pad, value)
    BoundPad.forward = forward
    return True


@_once
def prim_constant_interval() -> bool:
    """opset-12 ``Pad`` gets its omitted ``value`` from a ``prim::Constant`` node, which IBP
    then visits; auto_LiRPA 0.3 gives that node no ``interval_propagate``."""
    from auto_LiRPA.operators import Bound, BoundPrimConstant
    if BoundPrimConstant.interval_propagate is not Bound.interval_propagate:
        return False

    def interval_propagate(self, *v):
        value = self.forward()
        return value, value
    BoundPrimConstant.interval_propagate = interval_propagate
    return True


@_once
def contiguous_backward_coefficients() -> bool:
    """torch 2 hands ``AveragePool`` backward a non-contiguous ``A``, on which auto_LiRPA 0.3
    calls ``.view``."""
    import torch
    from packaging.version import Version
    if Version(torch.__version__.split("+")[0]) < Version("2.0"):
        return False
    from auto_LiRPA.operators import BoundAveragePool
    original = BoundAveragePool.bound_backward

    def contiguous(A):
        return A.contiguous() if isinstance(A, torch.Tensor) else A

    def bound_backward(self, last_lA, last_uA, x):
        return original(self, contiguous(last_lA), contiguous(last_uA), x)
    BoundAveragePool.bound_backward = bound_backward
    return True


@_once
def patches_broadcast_constant() -> bool:
    """auto_LiRPA 0.3 bug: in patches mode (its default), multiplying the coefficients by a
    per-channel constant shaped (1, C, 1, 1), as an input normalisation traces to, hits an
    assertion; only a constant with an explicit batch dimension is handled. Expand it.
    Patches of an intermediate node (out_c, B, out_h, out_w, in_c, kh, kw), as CROWN builds
    for every pre-activation bound, need the constant as (1, B, 1, 1, C, 1, 1); auto_LiRPA
    multiplies it unshaped, which fails for B not in (1, out_w)."""
    import auto_LiRPA
    if auto_LiRPA.__version__ != "0.3":
        return False
    import torch
    from auto_LiRPA.operators import BoundMul
    from auto_LiRPA.patches import Patches
    original = BoundMul._multiply_by_const

    def multiply_by_const(x, const):
        if (isinstance(x, Patches) and isinstance(const, torch.Tensor) and const.ndim == 4
                and const.size(0) == 1 and const.shape[2:] == (1, 1)):
            const = const.expand(x.patches.size(1), -1, -1, -1)
            if x.patches.ndim == 7 and const.size(1) == x.patches.size(4):
                per_channel = const.reshape(1, const.size(0), 1, 1, const.size(1), 1, 1)
                return x.create_similar(x.patches * per_channel)
        return original(x, const)
    BoundMul._multiply_by_const = staticmethod(multiply_by_const)
    return True


@_once
def relu_full_alpha_indices() -> bool:
    """auto_LiRPA 0.3 bug (an indentation slip in ``BoundRelu.init_opt_parameters``): when more
    than ``minimum_sparsity`` of a ReLU layer is unstable it creates full-size alphas but
    resets ``alpha_indices`` to None only when verbose, so alpha-CROWN then scatters the full
    alphas as if sparse and fails. Reset it as the verbose path does."""
    import auto_LiRPA
    if auto_LiRPA.__version__ != "0.3":
        return False
    from auto_LiRPA.operators import BoundRelu
    original = BoundRelu.init_opt_parameters

    def init_opt_parameters(self, start_nodes):
        original(self, start_nodes)
        if self.alpha_indices is not None:
            total = self.inputs[0].lower[0].numel()
            if self.alpha_indices[0].size(0) > self.options.get("minimum_sparsity", 0.9) * total:
                self.alpha_indices = None
    BoundRelu.init_opt_parameters = init_opt_parameters
    return True


def _sibling(name: str) -> types.ModuleType:
    """``lirpa_diffai.<name>``, loaded from the file next to this one as the start-up hook loads
    this module (without importing the package)."""
    import os
    full = f"lirpa_diffai.lirpa03.{name}"
    if full not in sys.modules:
        spec = importlib.util.spec_from_file_location(full, os.path.join(os.path.dirname(__file__), name + ".py"))
        sys.modules[full] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[full])
    return sys.modules[full]


def _only_for(version: str, patch):
    """``patch``, applied only when the imported auto_LiRPA is ``version``."""
    def guarded() -> bool:
        import auto_LiRPA
        return auto_LiRPA.__version__ == version and patch()
    guarded.__name__, guarded.__doc__ = patch.__name__, patch.__doc__
    return guarded


# soundness fixes of auto_LiRPA 0.3, kept in their own modules (the linear operators' first:
# the last fix wraps every operator method as patched)
SOUNDNESS = tuple(_once(_only_for(fixes.FOR_VERSION, patch))
                  for fixes in (_sibling("fixes_linear"), _sibling("fixes_nonlinear"))
                  for patch in fixes.PATCHES)
POST_IMPORT = (bounded_module_named_members, patches_broadcast_constant, bound_pad_tensor_value, prim_constant_interval,
               contiguous_backward_coefficients, relu_full_alpha_indices) + SOUNDNESS


def install() -> None:
    """Apply the patches auto_LiRPA needs before its own import."""
    for patch in PRE_IMPORT:
        patch()


def patch_loaded() -> None:
    """Apply the patches to auto_LiRPA's classes (auto_LiRPA must be importable)."""
    for patch in POST_IMPORT:
        patch()


class _AutoLirpaLoader(importlib.abc.Loader):
    def __init__(self, inner):
        self.inner = inner

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        install()
        # auto_LiRPA 0.3's import calls warnings.simplefilter("once"), which turns on every
        # warning of the whole process, and then scripts helpers with torch.jit.script, which
        # torch 2.13 deprecates. The filters are restored after its import, and the
        # deprecation (nothing a user can act on) is not shown; other warnings are.
        with warnings.catch_warnings(record=True) as caught:
            self.inner.exec_module(module)
        patch_loaded()
        for w in caught:
            if not re.match(JIT_SCRIPT_DEPRECATION, str(w.message)):
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)


class _AutoLirpaFinder(importlib.abc.MetaPathFinder):
    """Wraps the loader of the top-level ``auto_LiRPA`` package so that the patches run
    around its import, whoever imports it first."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "auto_LiRPA":
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _AutoLirpaLoader(spec.loader)
        return spec


def install_import_hook() -> None:
    """Patch around the first ``import auto_LiRPA`` (or now, if it is already imported)."""
    if "auto_LiRPA" in sys.modules:
        install()
        patch_loaded()
    elif not any(isinstance(f, _AutoLirpaFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _AutoLirpaFinder())


PTH_NAME = "lirpa_diffai_compat.pth"
# The start-up hook loads this file alone as ``lirpa_diffai.lirpa03.compat``: importing it through the
# package would run ``lirpa_diffai/__init__`` (torch, auto_LiRPA: a second) at every interpreter
# start. site runs a .pth once per site directory, and a Linux venv lists its site-packages
# twice (lib and the lib64 link), so the second run must reuse the first's module.
_PTH_SOURCE = """\
import importlib.util
name = "lirpa_diffai.lirpa03.compat"
package = None if name in sys.modules else importlib.util.find_spec("lirpa_diffai")
if package is not None:
    spec = importlib.util.spec_from_file_location(name, package.submodule_search_locations[0] + "/lirpa03/compat.py")
    sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sys.modules[name])
if name in sys.modules:
    sys.modules[name].install_import_hook()
"""
PTH_LINE = ("import sys; exec(" + repr("try:\n" + "".join(" " + line + "\n" for line in _PTH_SOURCE.splitlines())
                                     + "except (ImportError, OSError): pass") + ")\n")


def write_pth(site_dir: str | None = None) -> str:
    """Write the start-up hook into ``site_dir`` (default: this interpreter's purelib)."""
    import os
    import sysconfig
    site_dir = site_dir or sysconfig.get_paths()["purelib"]
    path = os.path.join(site_dir, PTH_NAME)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(PTH_LINE)
    os.replace(tmp, path)
    return path

