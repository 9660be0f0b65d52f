"""The start-up hook: the fixes of :mod:`.manifest` run around the first ``import auto_LiRPA``,
whoever imports it first.

``lirpa_diffai_compat.pth`` in site-packages (written by ``make install`` with ``python -m
lirpa_diffai install-hook``) loads this package (``lirpa_diffai.lirpa03``) alone, not
``lirpa_diffai``, and runs :func:`install_import_hook` at interpreter start-up: a meta-path
finder in front of the first ``import auto_LiRPA`` wraps auto_LiRPA's loader to apply the
``pre-import`` fixes before its module body runs and the others after. Start-up stays cheap:
nothing heavy is imported until auto_LiRPA is. Importing ``lirpa_diffai`` installs the same
hook, so an environment without the ``.pth`` works too when ``lirpa_diffai`` is imported first.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import os
import re
import sys
import sysconfig
import warnings

from .manifest import apply as apply_fixes  # not `from . import manifest`: see .manifest

JIT_SCRIPT_DEPRECATION = r"`torch\.jit\.script` is deprecated"


class AutoLirpaLoader(importlib.abc.Loader):
    """auto_LiRPA's own loader, with the manifest's fixes before and after its module body."""

    def __init__(self, inner):
        self.inner = inner

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        apply_fixes("pre-import")
        # auto_LiRPA 0.3's import calls warnings.simplefilter("once"), which turns on every
        # warning of the whole process, and then scripts helpers with torch.jit.script, which
        # torch 2.13 deprecates. The filters are restored after its import, and the
        # deprecation (nothing a user can act on) is not shown; other warnings are.
        with warnings.catch_warnings(record=True) as caught:
            self.inner.exec_module(module)
        apply_fixes("post-import")
        for w in caught:
            if not re.match(JIT_SCRIPT_DEPRECATION, str(w.message)):
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)


class AutoLirpaFinder(importlib.abc.MetaPathFinder):
    """Finds the top-level ``auto_LiRPA`` package as usual and wraps its loader."""

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
        spec.loader = AutoLirpaLoader(spec.loader)
        return spec


def install_import_hook() -> None:
    """Apply the fixes around the first ``import auto_LiRPA`` (or now, if it is imported)."""
    if "auto_LiRPA" in sys.modules:
        apply_fixes("pre-import")
        apply_fixes("post-import")
    elif not any(isinstance(f, AutoLirpaFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, AutoLirpaFinder())


PTH_NAME = "lirpa_diffai_compat.pth"
# The .pth loads this package alone: importing it through ``lirpa_diffai`` would run
# ``lirpa_diffai/__init__`` (torch, auto_LiRPA: a second) at every interpreter start. Its modules
# import one another relatively, which needs only this package in sys.modules. site runs a .pth
# once per site directory, and a Linux venv lists its site-packages twice (lib and the lib64
# link), so the second run reuses the first's modules. A stale .pth (the package moved or was
# removed) leaves nothing behind.
_PTH_SOURCE = """\
import importlib, importlib.util
name = "lirpa_diffai.lirpa03"
package = None if name in sys.modules else importlib.util.find_spec("lirpa_diffai")
if package is not None:
    where = package.submodule_search_locations[0] + "/lirpa03"
    spec = importlib.util.spec_from_file_location(name, where + "/__init__.py", submodule_search_locations=[where])
    sys.modules[name] = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(sys.modules[name])
        importlib.import_module(name + ".hook").install_import_hook()
    except BaseException:
        for key in list(sys.modules):  # no comprehension: it would not see this exec's locals
            if key == name or key.startswith(name + "."):
                del sys.modules[key]
        raise
elif name + ".hook" in sys.modules:
    sys.modules[name + ".hook"].install_import_hook()
"""
PTH_LINE = ("import sys; exec(" + repr("try:\n" + "".join(" " + line + "\n" for line in _PTH_SOURCE.splitlines())
                                     + "except (ImportError, OSError): pass") + ")\n")


def write_pth(site_dir: str | None = None) -> str:
    """Write the start-up hook into ``site_dir`` (default: this interpreter's purelib)."""
    site_dir = site_dir or sysconfig.get_paths()["purelib"]
    path = os.path.join(site_dir, PTH_NAME)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(PTH_LINE)
    os.replace(tmp, path)
    return path
