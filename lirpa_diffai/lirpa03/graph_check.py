"""Construction checks: the graph auto_LiRPA traced computes the model's function.

auto_LiRPA 0.3 traces some operators into Bound classes that ignore their settings, so every
bound method then bounds another function than the model (reflect / edge padding became zero
padding). :func:`refuse_mistraced_nodes` refuses the nodes known to be affected, by name;
:func:`check_graph_matches_model` is the general guard: on the example input and on a
perturbed copy the graph's forward must equal the model's (both in eval mode, so no
BatchNorm statistics change and Dropout draws nothing), else it names the first graph node
whose value differs from the module it was traced from.
"""
from __future__ import annotations

import contextlib

import torch
from auto_LiRPA.operators import BoundBuffers, BoundDropout, BoundInput, BoundPad, BoundParams
from auto_LiRPA.utils import unpack_inputs

from ..errors import UnsupportedOperatorError
from .state import eval_mode

RELATIVE_TOLERANCE = 1e-4  # of the largest output magnitude (float32 reorderings stay far below)
SECOND_INPUT_SEED = 20260  # the perturbed input is reproducible and leaves the global RNG alone


class GraphMismatchError(ValueError):
    """The traced graph computes another function than the model."""


def refuse_mistraced_nodes(graph) -> None:
    """Refuse nodes whose settings auto_LiRPA 0.3 drops: ``Pad`` with mode reflect / edge
    (``F.pad(mode=...)``, ``Conv2d(padding_mode="reflect"/"replicate")``) runs as zero padding."""
    for node in graph._modules.values():
        mode = getattr(node, "mode", "constant")
        if isinstance(node, BoundPad) and mode != "constant":
            raise UnsupportedOperatorError(
                f"graph node '{node.name}' (operator Pad, mode '{mode}'): auto_LiRPA 0.3 computes "
                "and bounds it as zero padding, another function than the model's; use constant "
                "padding (Conv2d(padding_mode='zeros'), F.pad(mode='constant')) or "
                "padding_mode='circular'")


def tensors_of(output) -> list:
    """The tensors of a (nested tuple / list / dict) model output, in order."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        return [t for item in output for t in tensors_of(item)]
    return []


def plain(t: torch.Tensor) -> torch.Tensor:
    """``t`` as a plain tensor (not a ``BoundedTensor``)."""
    return t.as_subclass(torch.Tensor) if isinstance(t, torch.Tensor) and type(t) is not torch.Tensor else t


def perturbed_copy(t, generator: torch.Generator):
    """``t`` plus Gaussian noise of 10 % of its spread (integer inputs, e.g. token ids, unchanged)."""
    t = plain(t)
    if not (isinstance(t, torch.Tensor) and t.is_floating_point()):
        return t
    noise = torch.randn(t.shape, generator=generator, dtype=t.dtype).to(t.device)
    spread = t.std() if t.numel() > 1 else t.abs().max()
    return t + 0.1 * (spread + 1e-3) * noise


def largest_difference(got, expected) -> float:
    """Max |got - expected| over the outputs scaled by ``1 + max |expected|``; inf on a shape change."""
    worst = 0.0
    for g, e in zip(got, expected):
        if g.shape != e.shape:
            return float("inf")
        scale = 1 + e.abs().max().item() if e.numel() else 1.0
        worst = max(worst, ((g.double() - e.double()).abs().max().item() / scale) if e.numel() else 0.0)
    return worst if len(got) == len(expected) else float("inf")


@contextlib.contextmanager
def first_output(model):
    """Inside the block, record the output of ``model``'s first call (auto_LiRPA's construction
    runs the model once on the example input before tracing it), detached, into the yielded list."""
    recorded = []

    def hook(_module, _inputs, output):
        if not recorded:
            recorded.append([t.detach() for t in tensors_of(output)])
    handle = model.register_forward_hook(hook)
    try:
        yield recorded
    finally:
        handle.remove()


def example_outputs(graph, model, inputs, recorded) -> tuple:
    """The model's and the graph's eval-mode outputs on the example input, reused from the
    construction where its passes ran in eval mode (else computed)."""
    expected = got = None
    # a model in eval mode without Dropout: auto_LiRPA ran the model, traced it and ran the graph
    # in eval mode (BatchNorm nodes are built so), all with the statistics it has now
    if recorded and not any(m.training for m in model.modules()) and not any(
            isinstance(node, BoundDropout) for node in graph._modules.values()):
        cached = [getattr(graph[name], "forward_value", None) for name in graph.output_name]
        expected = recorded[0]
        got = cached if all(isinstance(t, torch.Tensor) for t in cached) else None
    with eval_mode(model, graph), torch.no_grad():
        expected = tensors_of(model(*inputs)) if expected is None else expected
        got = tensors_of(graph(*inputs)) if got is None else got
    return expected, got


def check_graph_matches_model(graph, model, global_input, recorded=(), tol: float = RELATIVE_TOLERANCE) -> None:
    """Raise :class:`GraphMismatchError` unless ``graph`` (a built auto_LiRPA BoundedModule)
    computes ``model``'s outputs on ``global_input`` and on a perturbed copy of it, in eval
    mode, without gradients. ``recorded``: :func:`first_output` of the construction, which
    (with the graph's cached values) spares the example input's passes when it ran in eval
    mode; the graph's inputs are the example's again afterwards."""
    raw = unpack_inputs(global_input, device=graph.device)
    inputs = [plain(t) for t in raw]
    generator = torch.Generator().manual_seed(SECOND_INPUT_SEED)
    second = [perturbed_copy(t, generator) for t in inputs]
    checks = [("the example input", inputs, example_outputs(graph, model, inputs, recorded))]
    with eval_mode(model, graph), torch.no_grad():
        checks.append(("a perturbed copy of the example input", second,
                       (tensors_of(model(*second)), tensors_of(graph(*second)))))
    graph._set_input(*raw)
    for which, xs, (expected, got) in checks:
        difference = largest_difference(got, expected)
        if difference > tol:
            with eval_mode(model, graph), torch.no_grad():
                where = first_differing_node(graph, model, xs, tol)
            graph._set_input(*raw)
            raise GraphMismatchError(
                f"the graph auto_LiRPA traced computes another function than the model on {which} "
                f"(outputs differ by {difference:.3g} relative); {where}")


def module_of_node(graph) -> dict:
    """``{node name: module name}`` for the node that produces each module's output: the last
    node, in graph order, that reads one of the module's own parameters or buffers."""
    last_reader = {}
    for node in graph._modules.values():
        for i in node.inputs:
            if isinstance(i, (BoundParams, BoundBuffers)):
                last_reader[i.ori_name.rpartition(".")[0]] = node.name
    return {node: module for module, node in last_reader.items()}


def first_differing_node(graph, model, xs, tol: float) -> str:
    """A sentence naming the first graph node (in graph order) whose value differs from the
    output of the module it was traced from, and the operators it was computed through."""
    outputs, hooks = {}, []
    for name, module in model.named_modules():
        hooks.append(module.register_forward_hook(
            lambda _m, _i, out, name=name: outputs.__setitem__(name, out)))
    try:
        model(*xs)
    finally:
        for hook in hooks:
            hook.remove()
    graph(*xs)
    mapped = module_of_node(graph)
    for node in graph._modules.values():
        module = mapped.get(node.name)
        value, expected = getattr(node, "forward_value", None), outputs.get(module)
        if not (isinstance(value, torch.Tensor) and isinstance(expected, torch.Tensor)):
            continue
        difference = largest_difference([value], [expected])
        if difference > tol:
            through = ", ".join(f"{type(n).__name__[5:]} '{n.name}'" for n in unmapped_ancestors(node, mapped))
            return (f"first differing graph node '{node.name}' (operator {type(node).__name__[5:]}, "
                    f"traced from module '{module}', differs by {difference:.3g} relative)"
                    + (f", computed through {through}" if through else ""))
    return ("no node traced from a module with parameters differs; compare the output node "
            f"'{graph.final_name}' (operator {type(graph.final_node()).__name__[5:]})")


def unmapped_ancestors(node, mapped: dict, limit: int = 8) -> list:
    """The operator nodes between ``node`` and the nearest nodes traced from modules (or the
    inputs): where a mistraced operator without parameters hides."""
    found, stack, seen = [], list(node.inputs), set()
    while stack and len(found) < limit:
        n = stack.pop()
        value = getattr(n, "forward_value", None)
        if (n.name in seen or n.name in mapped or isinstance(n, BoundInput)
                or not (isinstance(value, torch.Tensor) and value.is_floating_point())):
            continue  # shape arithmetic (integer tensors) is not where values go wrong
        seen.add(n.name)
        found.append(n)
        stack.extend(n.inputs)
    return found
