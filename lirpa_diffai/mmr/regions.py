"""The linear region of a ReLU network at a point, exactly (Croce, Andriushchenko, Hein,
"Provable Robustness of ReLU networks via Maximization of Linear Regions", AISTATS 2019,
section 3).

With every ReLU's 0/1 pattern of the clean pass at ``x`` held fixed, the network is affine, so
every pre-activation ``z_j`` and every logit ``f_c`` is affine in the input inside the region.
Their gradients are the rows of the region's Jacobian, computed here by pushing the identity
basis of the input through the traced graph: a hybrid zonotope with ``head = x``, ``beta = 0``
and one error row per input dimension goes through the hzono registry's affine transformers
(exact on such a zonotope: the rows are the Jacobian rows, folded into the batch), and through
each ReLU with its clean pattern fixed (:func:`relu_fixed_pattern`). The input dimensions are
taken in chunks, and each chunk's rows are reduced to dual-norm partial sums at once.

With ``q`` the dual norm of ``p`` (``p = inf``: ``q = 1``; ``p = 2``: ``q = 2``)::

    d_B(j) = |z_j(x)| / max(||grad_x z_j(x)||_q, 1e-5)                  (region boundary)
    d_D(c) = (f_y(x) - f_c(x)) / max(||grad_x f_y(x) - grad_x f_c(x)||_q, 1e-5),  c != y

(the reference implementation instead raises each Jacobian entry below 1e-5 to 1e-5; the
floor here is on the norm only). ``d_B`` is the l_p distance from ``x`` to the hyperplane on
which ``z_j`` changes sign (the region's facet when it is one); ``d_D`` the distance to the
hyperplane on which the region's affine map ties class ``c`` with ``y``.

**Column order of d_B.** One column per element of the input of every ReLU node of the
graph, ReLU nodes in the graph's topological order (the order of the hzono pass; for a
sequential network, the order of its layers), each input flattened in the logical
(C, H, W) order of the tensor: :func:`relu_layers` names them.
"""
from __future__ import annotations

import copy
import math
import weakref
from dataclasses import dataclass

import torch
from auto_LiRPA.operators import (BoundAdd, BoundAveragePool, BoundBatchNormalization, BoundBuffers,
                                  BoundConcat, BoundConv, BoundConvTranspose, BoundDiv,
                                  BoundFlatten, BoundGlobalAveragePool, BoundLinear,
                                  BoundMatMul, BoundMul, BoundNeg, BoundPad, BoundParams,
                                  BoundReduceMean, BoundReduceSum, BoundRelu, BoundReshape,
                                  BoundShape, BoundSlice, BoundSqueeze, BoundSub, BoundTranspose,
                                  BoundUnsqueeze)

from ..bound_ops import UnsupportedOperatorError, transformer_for
from ..bound_ops.abstract import BoundAbstractLayer
from ..bound_ops.registry import is_perturbed, joined
from ..bounded_module import BoundedModule
from ..errors import operator_name
from ..hybrid_zono import HybridZonotope, fresh_ids

Tensor = torch.Tensor

# Operators whose hzono transformer maps a zonotope with beta = 0 exactly (affine in the
# perturbed input, constant weights): on the identity basis they give the Jacobian rows.
AFFINE_OPS = (BoundLinear, BoundMatMul, BoundConv, BoundConvTranspose, BoundBatchNormalization,
              BoundAdd, BoundSub, BoundNeg, BoundMul, BoundDiv, BoundReshape, BoundFlatten,
              BoundSqueeze, BoundUnsqueeze, BoundTranspose, BoundSlice, BoundConcat, BoundPad,
              BoundShape, BoundAveragePool, BoundGlobalAveragePool, BoundReduceMean,
              BoundReduceSum)

# affine only while at most one operand depends on the input (hzono bounds the product too)
BILINEAR_OPS = (BoundMul, BoundDiv, BoundMatMul)

DUAL = {"inf": 1, "2": 2}          # p -> q
DENOMINATOR_FLOOR = 1e-5
ROW_BUDGET = 2 ** 26               # elements of one chunk's widest row tensor (256 MiB in fp32)


class RegionError(ValueError):
    """A network or argument the region computation cannot handle."""


def norm_key(p) -> str:
    """``p`` as ``"inf"`` or ``"2"`` (accepts ``"inf"``, ``float("inf")``, ``2``, ``"2"``);
    any other value is a :class:`RegionError`."""
    text = str(p).strip().lower()
    if text in ("inf", "2", "2.0"):
        return "2" if text.startswith("2") else "inf"
    raise RegionError(f"p must be inf or 2 (the l_p norm of the distances), got {p!r}")


# ------------------------------------------------------------------------ the graph

_BOUNDED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def bounded_network(model, x: Tensor) -> BoundedModule:
    """``model`` itself if it is a ``lirpa_diffai.BoundedModule``, else a BoundedModule traced
    from it (cached per network and input shape while the network lives), in the network's
    current mode, reading the network's own parameters and buffers.

    The graph is traced from a copy of the network, then pointed at the network's tensors:
    auto_LiRPA's tracing reloads the traced network's state in place, which would invalidate
    any autograd graph already built on the network (a cross-entropy term of the same loss),
    and it copies the buffers (a batch norm's running statistics would go stale)."""
    if isinstance(model, BoundedModule):
        return model
    per_shape = _BOUNDED.setdefault(model, {})
    key = (tuple(x.shape[1:]), x.dtype, str(x.device))
    if key not in per_shape:
        traced = BoundedModule(copy.deepcopy(model), x[:1].detach(), device=str(x.device))
        per_shape[key] = share_tensors(traced, model)
    bm = per_shape[key]
    bm.train(model.training)
    return bm


def share_tensors(bm: BoundedModule, model) -> BoundedModule:
    """``bm`` with its parameter and buffer nodes holding ``model``'s tensors (by name)."""
    params, buffers = dict(model.named_parameters()), dict(model.named_buffers())
    for node in bm.modules():
        if isinstance(node, BoundParams):
            node._parameters["param"] = params[node.ori_name]
        elif isinstance(node, BoundBuffers) and node.ori_name in buffers:
            node._buffers["buffer"] = buffers[node.ori_name]
    return bm


def graph_order(bm: BoundedModule) -> list:
    """The nodes the output depends on, each after its inputs."""
    return bm._topological_order(bm.final_node())


def is_network_input(bm: BoundedModule, node) -> bool:
    """Whether ``node`` is the network's (data) input, not a parameter, buffer or constant."""
    return (node.name in bm.input_name and not isinstance(node, BoundParams)
            and getattr(node, "input_index", None) is not None)


def perturbed_names(bm: BoundedModule) -> set:
    """Names of the nodes that depend on the network's input."""
    out = set()
    for node in graph_order(bm):
        if is_network_input(bm, node) or any(i.name in out for i in node.inputs):
            out.add(node.name)
    return out


def check_piecewise_linear(bm: BoundedModule) -> None:
    """A :class:`RegionError` naming the first node on the input's path that is neither
    affine, a ReLU nor an abstract layer (the identity): a sigmoid, tanh, softmax, max-pool,
    a product of two input-dependent values... has no (exact, finite) linear region here."""
    perturbed = perturbed_names(bm)
    for node in graph_order(bm):
        if node.name not in perturbed or not node.inputs:
            continue
        if type(node) in BILINEAR_OPS and sum(i.name in perturbed for i in node.inputs) > 1:
            raise RegionError(
                f"the linear-region distances (MMR) need a piecewise-linear ReLU network; graph node "
                f"'{node.name}' ({type(node).__name__}) multiplies two perturbed values, which is not "
                "affine in the input")
        if type(node) in AFFINE_OPS or type(node) is BoundRelu or isinstance(node, BoundAbstractLayer):
            continue
        op = operator_name(node)
        raise RegionError(
            f"the linear-region distances (MMR) need a piecewise-linear ReLU network; graph node "
            f"'{node.name}' (operator {op}, bound class {type(node).__name__}) is not one of its "
            "supported operators (affine maps, ReLU, DiffAI's abstract layers)")


@dataclass(frozen=True)
class ReluLayer:
    """One block of d_B's columns: the input of ReLU node ``name`` (``size`` neurons)."""

    name: str
    size: int


def relu_layers(bm: BoundedModule) -> list[ReluLayer]:
    """The ReLU nodes in d_B's column order, each with its number of input neurons."""
    return [ReluLayer(n.name, math.prod(n.inputs[0].output_shape[1:]))
            for n in graph_order(bm) if type(n) is BoundRelu]


# ---------------------------------------------------------------- the Jacobian pass

def relu_fixed_pattern(z: HybridZonotope) -> HybridZonotope:
    """ReLU with the 0/1 pattern of the clean value ``head`` held fixed (active iff
    ``head > 0``, the reference's convention): exact on the region of ``head``."""
    keep = (z.head > 0).to(z.head.dtype)
    errors = None if z.errors is None else z.errors * keep
    return HybridZonotope(z.head * keep, z.beta * keep, errors, z.ids)


def identity_rows(x: Tensor, start: int, stop: int) -> Tensor:
    """Rows ``start..stop-1`` of the identity basis of the input, for every sample:
    (stop - start, B, *x.shape[1:])."""
    batch, d = x.shape[0], x[0].numel()
    rows = x.new_zeros((stop - start, batch, d))
    index = torch.arange(start, stop, device=x.device)
    rows[torch.arange(stop - start, device=x.device), :, index] = 1
    return rows.view((stop - start,) + tuple(x.shape))


def _fixed_batch_norm_statistics(node, head: Tensor) -> None:
    """A training-mode batch norm uses the statistics of the clean batch (auto_LiRPA's
    convention), which are those of ``head``."""
    dims = [0] + list(range(2, head.dim()))
    node.current_mean = head.mean(dims)
    node.current_var = head.var(dims, unbiased=False)


def _node_value(ctx, node, args):
    if type(node) is BoundRelu:
        return relu_fixed_pattern(joined(args[0]))
    if isinstance(node, BoundAbstractLayer):
        return args[0]
    if type(node) is BoundBatchNormalization and node.training:
        _fixed_batch_norm_statistics(node, joined(args[0]).head)
    transformer = transformer_for(node)
    if not transformer.reads_parts:
        args = [joined(a) if is_perturbed(a) else a for a in args]
    return transformer(ctx, node, *args)


def jacobian_pass(bm: BoundedModule, x: Tensor, rows: Tensor, visit) -> HybridZonotope:
    """One pass of ``HybridZonotope(x, 0, rows)`` over the graph with fixed ReLU patterns;
    ``visit(node, z)`` is called with every ReLU node's input zonotope (head: the clean
    pre-activation, errors: its Jacobian rows for ``rows``). Returns the output zonotope."""
    from ..bound_ops import HzonoContext
    ctx = HzonoContext(training=bm.training)
    final = bm.final_node()
    last_reader = bm._last_readers(final)
    values: dict = {}
    for node in graph_order(bm):
        if not node.inputs:
            if isinstance(node, BoundParams):
                value = node.param      # not node.forward(): it resets requires_grad
            elif is_network_input(bm, node):
                value = HybridZonotope(x, torch.zeros_like(x), rows, fresh_ids(rows.shape[0]))
                value = value.channels_last()
            else:
                value = node.forward()
        else:
            args = [values[i.name] for i in node.inputs]
            if any(map(is_perturbed, args)):
                if type(node) is BoundRelu:
                    visit(node, joined(args[0]))
                try:
                    value = _node_value(ctx, node, args)
                except UnsupportedOperatorError as err:   # e.g. a product of two perturbed values
                    raise RegionError(f"the linear-region distances (MMR): {err}") from None
            else:
                value = node.forward(*args)
            if isinstance(value, (torch.Size, tuple)):
                value = torch.tensor(value, device=x.device)
        values[node.name] = value
        for name in last_reader.get(node.name, ()):
            del values[name]
    out = joined(values[final.name])
    if not isinstance(out, HybridZonotope):
        raise RegionError("the network's output does not depend on its input")
    return out


def chunk_size(bm: BoundedModule, x: Tensor, budget: int = ROW_BUDGET) -> int:
    """Input dimensions per pass so that the widest node's rows hold about ``budget``
    elements."""
    widest = max(math.prod(n.output_shape[1:]) for n in graph_order(bm)
                 if getattr(n, "output_shape", None) and len(n.output_shape) > 1)
    return max(1, min(x[0].numel(), budget // max(1, x.shape[0] * widest)))


def _dual_sum(rows: Tensor, q: int) -> Tensor:
    """``sum_i |r_i|^q`` over the rows (dimension 0), flattened per sample: (B, n)."""
    flat = rows.flatten(2)
    return (flat.abs() if q == 1 else flat.square()).sum(0)


def _dual_norm(partial: Tensor, q: int) -> Tensor:
    """``max(||.||_q, 1e-5)`` from ``sum |r|^q`` (q = 2: the floor is applied before the root,
    which gives the same value and a finite gradient at 0)."""
    if q == 1:
        return partial.clamp_min(DENOMINATOR_FLOOR)
    return partial.clamp_min(DENOMINATOR_FLOOR ** 2).sqrt()


def region_distances(model, x: Tensor, y: Tensor, p="inf", chunk: int | None = None
                     ) -> tuple[Tensor, Tensor]:
    """``(d_B, d_D)``: ``d_B`` (B, H) the l_p distances from each ``x`` to the hyperplanes of
    its region's ReLU pre-activations (column order: see the module docstring), ``d_D``
    (B, K) the distances to the decision hyperplanes ``f_y = f_c`` (``+inf`` at ``c = y``;
    negative where ``x`` is misclassified). Differentiable in the network's weights.

    ``model``: a ``torch.nn.Module`` (traced once per input shape) or a
    ``lirpa_diffai.BoundedModule``; ``chunk``: input dimensions per pass (default: about
    :data:`ROW_BUDGET` elements in the widest node)."""
    q = DUAL[norm_key(p)]
    bm = bounded_network(model, x)
    check_piecewise_linear(bm)
    d = x[0].numel()
    chunk = chunk or chunk_size(bm, x)
    names = [layer.name for layer in relu_layers(bm)]
    sums: dict = {}
    heads: dict = {}
    logits = margins = None
    index = y.view(1, -1, 1)
    for start in range(0, d, chunk):
        rows = identity_rows(x, start, min(d, start + chunk))

        def visit(node, z):
            part = _dual_sum(z.errors, q)
            sums[node.name] = part if node.name not in sums else sums[node.name] + part
            heads[node.name] = z.head.flatten(1)

        out = jacobian_pass(bm, x, rows, visit)
        errors = out.errors.flatten(2)                          # (c, B, K)
        diff = errors.gather(2, index.expand(errors.shape[0], -1, 1)) - errors
        part = _dual_sum(diff, q)
        margins = part if margins is None else margins + part
        logits = out.head.flatten(1)
    d_b = torch.cat([heads[n].abs() / _dual_norm(sums[n], q) for n in names], dim=1) \
        if names else x.new_zeros((x.shape[0], 0))
    gap = logits.gather(1, y.view(-1, 1)) - logits
    d_d = gap / _dual_norm(margins, q)
    true_class = torch.zeros_like(d_d, dtype=torch.bool).scatter(1, y.view(-1, 1), True)
    return d_b, d_d.masked_fill(true_class, math.inf)
