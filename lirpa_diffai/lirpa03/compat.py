"""Fixes that make auto_LiRPA 0.3 (written for torch < 1.13 and NumPy 1) import and run on
torch 2 and NumPy 2; :mod:`.manifest` applies them. The ``pre-import`` ones run before
auto_LiRPA's module body (its import fails without them)."""
from __future__ import annotations

import types

from .fix import fix


@fix(test="test_numpy_arraysetops_shim", stage="pre-import")
def numpy_arraysetops():
    """NumPy 2 removed ``numpy.lib.arraysetops``; auto_LiRPA imports ``isin`` from it."""
    import numpy
    import numpy.lib
    if int(numpy.__version__.split(".")[0]) < 2:
        return {}
    shim = types.ModuleType("numpy.lib.arraysetops")
    shim.isin = numpy.isin
    return {(numpy.lib, "arraysetops"): shim}


@fix(test="test_opset_version_setter_reaches_the_exporter", stage="pre-import", since_torch="2.9")
def onnx_set_opset_version():
    """torch >= 2.9 moved the TorchScript exporter's globals; ``_set_opset_version`` is gone."""
    import torch.onnx.symbolic_helper as helper
    from torch.onnx._internal.torchscript_exporter._globals import GLOBALS

    def _set_opset_version(opset_version: int) -> None:
        GLOBALS.export_onnx_opset_version = opset_version
    return {(helper, "_set_opset_version"): _set_opset_version}


@fix(test="test_traced_graph_uses_opset12_operators", stage="pre-import", since_torch="2.9")
def onnx_symbolic_opsets():
    """torch >= 2.9 registers the TorchScript exporter's opset-10+ symbolics only when
    ``torch.onnx.export`` imports them; auto_LiRPA's tracer never does, so opset 12 silently
    falls back to opset-9 forms (``Pad``/``Clip`` with attributes) that auto_LiRPA cannot read.
    Import them (each module registers its symbolics on import)."""
    import importlib
    import pkgutil
    import torch.onnx._internal.torchscript_exporter as exporter
    return {(exporter, m.name): importlib.import_module(f"{exporter.__name__}.{m.name}")
            for m in pkgutil.iter_modules(exporter.__path__) if m.name.startswith("symbolic_opset")}


@fix(test="test_node_attributes_are_readable_by_name", stage="pre-import")
def jit_node_getitem():
    """torch 2 dropped ``Node.__getitem__``; read an attribute with its typed getter."""
    import torch

    def getitem(node, name):
        return getattr(node, node.kindOf(name))(name)
    return {(torch._C.Node, "__getitem__"): getitem}


@fix(test="test_bounded_module_named_members_accepts_remove_duplicate")
def bounded_module_named_members():
    """torch 2 calls ``_named_members(..., remove_duplicate=...)``, which auto_LiRPA 0.3's
    override does not accept."""
    from auto_LiRPA import BoundedModule
    original = BoundedModule._named_members

    def _named_members(self, get_members_fn, prefix="", recurse=True, remove_duplicate=True):
        return original(self, get_members_fn, prefix, recurse)
    return {(BoundedModule, "_named_members"): _named_members}


@fix(test="test_patched_operators_bound_soundly_with_ibp_and_crown")
def bound_pad_tensor_value():
    """torch 2's ``F.pad`` refuses a tensor ``value``; opset-12 ``Pad`` hands ``BoundPad.forward``
    a one-element tensor, or an empty one for ONNX's omitted optional input (meaning 0)."""
    import torch
    from auto_LiRPA.operators import BoundPad
    original = BoundPad.forward

    def forward(self, x, pad, value=0.0):
        if isinstance(value, torch.Tensor):
            value = float(value) if value.numel() else 0.0
        return original(self, x, pad, value)
    return {(BoundPad, "forward"): forward}


@fix(test="test_patched_operators_bound_soundly_with_ibp_and_crown")
def prim_constant_interval():
    """opset-12 ``Pad`` gets its omitted ``value`` from a ``prim::Constant`` node, which IBP
    then visits; auto_LiRPA 0.3 gives that node no ``interval_propagate``."""
    from auto_LiRPA.operators import BoundPrimConstant

    def interval_propagate(self, *v):
        value = self.forward()
        return value, value
    return {(BoundPrimConstant, "interval_propagate"): interval_propagate}


@fix(test="test_patched_operators_bound_soundly_with_ibp_and_crown")
def contiguous_backward_coefficients():
    """torch 2 hands ``AveragePool`` backward a non-contiguous ``A``, on which auto_LiRPA 0.3
    calls ``.view``."""
    import torch
    from auto_LiRPA.operators import BoundAveragePool
    original = BoundAveragePool.bound_backward

    def contiguous(A):
        return A.contiguous() if isinstance(A, torch.Tensor) else A

    def bound_backward(self, last_lA, last_uA, x):
        return original(self, contiguous(last_lA), contiguous(last_uA), x)
    return {(BoundAveragePool, "bound_backward"): bound_backward}


@fix(test="test_auto_lirpa_prints_go_to_its_debug_log")
def prints_to_debug_log():
    """auto_LiRPA prints progress and advice to stdout in the middle of a command's output
    (``all verified at 2th iter``; "Dropout operation CANNOT be parsed ... Set model to
    train() mode!", which lirpa_diffai.BoundedModule handles itself; "BatchNorm1d may raise
    error ..."; "Batched CROWN: unstable size ..."; alpha sizes). Its modules' ``print`` goes
    to auto_LiRPA's logger at debug level instead."""
    from auto_LiRPA import backward_bound, bound_general, optimized_bounds, parse_graph, perturbations
    from auto_LiRPA.operators import activation
    from auto_LiRPA.utils import logger

    def print_to_debug_log(*args, sep=" ", **_kwargs):
        logger.debug(sep.join(str(a) for a in args).strip())
    return {(module, "print"): print_to_debug_log
            for module in (bound_general, optimized_bounds, parse_graph, backward_bound,
                           perturbations, activation)}


@fix(test="test_auto_lirpa_internal_warnings_go_to_its_debug_log")
def internal_warnings_to_debug_log():
    """auto_LiRPA 0.3 warns about its own internals in terms our users cannot act on, some
    misleading: "Creating an identity matrix with size ... If you see this message on a small
    network please submit a bug report" (CROWN's dense start of a wide node; our memory
    estimate, ``lirpa_diffai.evaluation.budget``, says what it costs), "Only relu split is
    supported so far" (alpha-CROWN with other activations: we make no splits), "There is an
    inf value in the bias of LiRPA bounds" (overflow, whose bounds are then infinite, as they
    should be), "Creating a LinearBound with zero weights", "MaxPool's optimization is not
    supported for forward mode". The ``warnings.warn`` of those modules goes to auto_LiRPA's
    logger at debug level; every other ``warnings`` function is the standard one."""
    import types
    import warnings

    from auto_LiRPA import backward_bound, forward_bound, optimized_bounds
    from auto_LiRPA.operators import base, pooling
    from auto_LiRPA.utils import logger

    def warn_to_debug_log(message, *_args, **_kwargs):
        logger.debug("warning: %s", message)
    quiet = types.SimpleNamespace(**{name: getattr(warnings, name) for name in warnings.__all__})
    quiet.warn = warn_to_debug_log
    return {(module, "warnings"): quiet
            for module in (backward_bound, forward_bound, optimized_bounds, base, pooling)}
