"""Networks auto_LiRPA 0.3 cannot trace into Bound operators (``nn.LSTM``, a custom
``autograd.Function`` without a Bound class): :func:`refuse_untraceable` turns auto_LiRPA's
log lines and generic ``NotImplementedError('There are unsupported operations')`` into one
:class:`~lirpa_diffai.errors.UnsupportedOperatorError` naming every unsupported operator and
the module it comes from.

auto_LiRPA names its graph nodes by the tracer's debug names only (``/84``); the module of a
node is found by tracing once more with module scopes recorded (torch's
``_trace_module_map``, what the ONNX exporter sets), which runs only when the construction
has already failed.
"""
from __future__ import annotations

import contextlib
import logging
import warnings

import torch
from auto_LiRPA.utils import logger as lirpa_logger

from ..errors import UnsupportedOperatorError

GENERIC_MESSAGE = "There are unsupported operations"
ROOT_SCOPE = "(model)"
HINT = ("replace them by operators auto_LiRPA supports; a custom autograd.Function needs a "
        "symbolic() emitting g.op('custom::Name') and a Bound class registered with "
        "auto_LiRPA.register_custom_op")


class UnsupportedNodes(logging.Filter):
    """A filter on auto_LiRPA's logger that keeps the graph nodes it reports as unsupported
    and drops its log lines about them (the error this module raises says it all)."""

    def __init__(self):
        super().__init__()
        self.ops: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if message.startswith("The node has an unsupported operation"):
            op = getattr(record.args[0] if record.args else None, "op", None)
            if op is not None and op not in self.ops:
                self.ops.append(op)
            return False
        return not (message.startswith("Unsupported operations")
                    or message.startswith("Name: "))


def scoped_nodes(model: torch.nn.Module, inputs: tuple) -> list:
    """auto_LiRPA's parsed operator nodes of ``model``, their names prefixed by the scopes of
    the modules they were traced in (``(model)/body/body.0/12``)."""
    import torch.jit._trace as trace
    from auto_LiRPA.parse_graph import parse_module
    saved = trace._trace_module_map
    trace._trace_module_map = {m: name or ROOT_SCOPE for name, m in model.named_modules()}
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")   # the first trace has shown the tracer's warnings
            nodes, *_ = parse_module(model, inputs)
    finally:
        trace._trace_module_map = saved
    return nodes


def origins(model: torch.nn.Module, inputs: tuple, ops: list[str]) -> dict[str, list[str]]:
    """``{operator: [the modules it occurs in, as "'name' (Type)"]}`` for ``ops``; an empty
    list for an operator whose module cannot be found."""
    modules = dict(model.named_modules())
    found: dict[str, list[str]] = {op: [] for op in ops}
    try:
        nodes = scoped_nodes(model, inputs)
    except Exception:  # noqa: BLE001 -- the names are extra; the error is raised anyway
        return found
    for node in nodes:
        if node.op not in found:
            continue
        scope = node.name.rsplit("/", 1)[0].rsplit("/", 1)[-1]
        module = modules.get("" if scope == ROOT_SCOPE else scope)
        where = (f"the forward of the model itself ({type(module).__name__})" if scope == ROOT_SCOPE
                 else f"module '{scope}' ({type(module).__name__})" if module is not None
                 else f"scope '{scope}'")
        if where not in found[node.op]:
            found[node.op].append(where)
    return found


def unsupported_message(found: dict[str, list[str]]) -> str:
    """The refusal naming each operator and where it comes from."""
    parts = [f"{op} in {', '.join(where)}" if where else op for op, where in found.items()]
    return (f"auto_LiRPA cannot bound {len(parts)} operator{'s' if len(parts) > 1 else ''} of "
            f"this network: {'; '.join(parts)}; {HINT}")


@contextlib.contextmanager
def refuse_untraceable(model: torch.nn.Module, inputs):
    """Inside the block (auto_LiRPA's ``BoundedModule.__init__``), unsupported operators
    raise :class:`UnsupportedOperatorError` naming each one and its module instead of
    auto_LiRPA's log lines and generic ``NotImplementedError``."""
    nodes = UnsupportedNodes()
    lirpa_logger.addFilter(nodes)
    try:
        yield
    except NotImplementedError as err:
        if str(err) != GENERIC_MESSAGE or not nodes.ops:
            raise
        inputs = inputs if isinstance(inputs, tuple) else (inputs,)
        raise UnsupportedOperatorError(unsupported_message(origins(model, inputs, nodes.ops))) \
            from None
    finally:
        lirpa_logger.removeFilter(nodes)
