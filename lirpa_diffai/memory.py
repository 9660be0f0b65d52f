"""What a bound method will need, estimated before it runs, and what the machine has.

:func:`estimate_bound_memory` is an upper estimate of the peak memory (bytes) that one
``compute_bounds`` call adds, from the graph's node sizes alone (nothing is computed).
With ``b`` images, ``s`` bytes per element, ``A`` the elements per image of every node that
depends on the input (its value, lower and upper bound are kept), ``M`` the largest such
node, ``n`` the input's elements per image, ``S`` the specification's rows and ``W`` the
largest parameter (``|W|`` or its positive and negative parts are taken once per layer):

=====================  ==========================================================================
method                 estimate
=====================  ==========================================================================
IBP                    ``3 A b s + 2 W s``
hzono and DiffAI's     ``(r + 3) A b s + 2 W s``, ``r`` the input rows (``correlate_input``;
domains                ``all``: ``n``); a pure zonotope (``Z*``) adds a row per pre-activation
                       neuron
forward                IBP's ``+ (2 A + 4 M) n b s`` (a lower and an upper coefficient matrix per
                       node, and the temporaries of the widest)
CROWN-IBP, CROWN-hzono IBP's (hzono's) ``+ 12 S M b s`` (one backward pass from the output:
                       ``lA``, ``uA``, their positive and negative parts and products)
CROWN                  IBP's ``+ max_L 12 m_L w_L b s`` over the nodes ``L`` auto_LiRPA bounds
                       by a backward pass (``backward_starts``) and the output (``m_L`` its
                       elements, ``w_L`` the widest row of its coefficient matrix: a node's
                       size, or a patch ``C k k`` where auto_LiRPA's patches mode keeps one
                       through convolutions, pooling and element-wise operators, ``k`` the
                       receptive field)
alpha-CROWN            CROWN's ``+ 12 S (A + R) b s + 10 sum_R sum_L m_L |R| b s`` (the final
                       backward pass is kept for autograd, ``R`` ReLU neurons; a lower and an
                       upper slope per ReLU ``R`` and start node ``L`` after it, with their
                       gradient, Adam's two moments and the best ones so far)
=====================  ==========================================================================

auto_LiRPA's sparse intermediate bounds (unstable neurons only) need less, so the estimate is an
upper one for the graph's tensors (``tests/test_memory.py`` measures it against the resident
memory a fresh process adds: 1.2x to 3.8x on an MLP and a small CNN). Operators outside those
named take CROWN's coefficients dense, which over-estimates where auto_LiRPA keeps patches.
Not counted: what a process's first backward pass allocates once (auto_LiRPA's TorchScript
helpers are compiled then; about 40 MiB measured).
Methods not listed get no estimate (None).

:func:`available_memory` is what the device has free: ``MemAvailable`` of /proc/meminfo,
less where a cgroup limit is lower, or CUDA's free memory.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import torch
from auto_LiRPA.operators import (BoundActivation, BoundAdd, BoundBatchNormalization, BoundConv,
                                  BoundDiv, BoundInput, BoundLinear, BoundMaxPool, BoundMul, BoundRelu,
                                  BoundSub)

from .domain.methods import DOMAINS, random_count

MIB = 2 ** 20
MEMORY_CHECK_FROM = 64 * MIB  # smaller estimates start without reading the free memory
CROWN_IBP_METHODS = ("crown-ibp", "ibp+backward", "crown-hzono")
CROWN_METHODS = ("crown", "backward")
ALPHA_METHODS = ("alpha-crown", "crown-optimized", "alpha-crown-hzono")
BACKWARD_TEMPORARIES = 12   # coefficient-matrix copies alive at once in a backward pass (measured 8-10)
SLOPE_COPIES = 10  # alpha-CROWN's lower and upper slopes, each with gradient, Adam's 2 moments, best
# a patch of coefficients passes these unchanged (same shape in, same shape out), and a product
# or quotient by a constant
PATCH_KEEPING = (BoundActivation, BoundBatchNormalization, BoundAdd, BoundSub)


def input_nodes(bm) -> list:
    """The nodes whose value depends on a perturbed or plain input, in graph order."""
    return [n for n in bm._modules.values() if getattr(n, "from_input", False)
            and getattr(n, "output_shape", None) is not None]


def per_image(node) -> int:
    """Elements per image of ``node``'s output (its traced shape without the batch axis)."""
    return math.prod(node.output_shape[1:])


def largest_parameter(bm) -> int:
    """Elements of the module's largest parameter or buffer."""
    return max((t.numel() for t in (*bm.parameters(), *bm.buffers())), default=0)


def hzono_rows(bm, key: str, n_in: int, pre_activation: int) -> int:
    """Input rows of an hzono-family pass (see the module's table)."""
    domain = DOMAINS[key]
    rows = domain.input_rows if domain.input_rows is not None else bm.bound_opts["hzono"]["correlate_input"]
    count = n_in if rows == "all" else (random_count(rows) or 0) if isinstance(rows, str) else int(rows)
    return count + (pre_activation if domain.pure else 0)


def patch_side(node, side: Optional[int], source) -> Optional[int]:
    """The receptive field (patch side) at ``source``, an input of ``node``, of a patch of side
    ``side`` at ``node``; None where the coefficients become a dense matrix (a convolution turns
    a patch wider than its input into one, and operators other than these take the dense one:
    auto_LiRPA and ``lirpa03`` keep patches through them)."""
    if side is None or len(source.output_shape) != 4:
        return None
    same_shape = tuple(source.output_shape) == tuple(node.output_shape)
    if same_shape and (isinstance(node, PATCH_KEEPING) or isinstance(node, (BoundMul, BoundDiv))
                       and not any(getattr(i, "from_input", False) for i in node.inputs if i is not source)):
        return side
    if isinstance(node, BoundMaxPool) and source is node.inputs[0]:
        kernel, stride = max(node.kernel_size), max(node.stride)
        return max(side * kernel, (side - 1) * stride + kernel)  # its patches are upsampled
    if not isinstance(node, BoundConv) or source is not node.inputs[0]:
        return None
    kernel = max(node.inputs[1].output_shape[-2:])
    span = max(node.dilation) * (kernel - 1) + 1
    wider = (side - 1) * max(node.stride) + span
    return wider if wider <= min(source.output_shape[-2:]) else None


def wider_patch(a: Optional[int], b: Optional[int]) -> Optional[int]:
    """The patch side two readers need of one node: the wider, None (dense) if either is."""
    return None if a is None or b is None else max(a, b)


def starts_patches(node) -> bool:
    """Whether auto_LiRPA 0.3 starts a backward pass from ``node`` with an identity patch (a
    convolution, batch norm, sum or difference of images in patches mode)."""
    return (getattr(node, "patches_start", False) or isinstance(node, (BoundAdd, BoundSub))) \
        and getattr(node, "mode", None) == "patches" and len(node.output_shape) == 4


def row_width(start, ancestors: list, patches: bool) -> int:
    """The widest row (elements per image) of the coefficient matrix of a backward pass from
    ``start`` over the nodes ``ancestors`` (graph order, ``start`` last): a node's size, or
    ``C k k`` where the coefficients stay patches (convolution starts in patches mode)."""
    side = {start.name: 1 if patches and starts_patches(start) else None}
    inside = {n.name for n in ancestors}
    widest = 0
    for node in reversed(ancestors):  # a node's readers come before it
        if node.name not in side:
            continue
        k = side[node.name]
        widest = max(widest, per_image(node) if k is None else node.output_shape[1] * k * k)
        for source in (s for s in node.inputs if s.name in inside):
            side[source.name] = wider_patch(side.get(source.name, 0), patch_side(node, k, source))
    return widest


def backward_starts(bm, nodes: list, final) -> list:
    """The nodes CROWN bounds by a backward pass of their own, as auto_LiRPA 0.3 picks them:
    the inputs of nodes that need their inputs' bounds (``nonlinear``,
    ``requires_input_bounds``), less those it bounds by IBP (a type of ``ibp_intermediate``
    such as ReLU on a bounded input, a Linear or Conv on the input), and the final node."""
    needed = set()
    for node in nodes:
        inputs = range(len(node.inputs)) if getattr(node, "nonlinear", False) else ()
        needed.update(node.inputs[i].name for i in (*inputs, *getattr(node, "requires_input_bounds", ())))

    def by_ibp(node) -> bool:
        if type(node) in tuple(getattr(bm, "ibp_intermediate", ())):
            return node.inputs[0].name in needed
        return type(node) in (BoundLinear, BoundConv) and isinstance(node.inputs[0], BoundInput)
    return [n for n in nodes if n.name in needed and n is not final and not by_ibp(n)] + [final]


def crown_backward(bm, nodes: list, starts: list, final, spec_rows: int) -> int:
    """``max_L m_L w_L`` (elements per image) over the start nodes ``starts``; the final
    node's ``m_L`` is the specification's ``spec_rows``."""
    patches = getattr(bm, "conv_mode", "patches") == "patches"
    index = {n.name: i for i, n in enumerate(nodes)}
    return max((spec_rows if node is final else per_image(node))
               * row_width(node, nodes[:index[node.name] + 1], patches) for node in starts)


def alpha_slopes(nodes: list, relus: list, starts: list, final, spec_rows: int) -> int:
    """``sum_R sum_L m_L |R|`` (elements per image): alpha-CROWN's slopes, one per ReLU
    neuron of ``R`` and row of each start node ``L`` after ``R`` (the final node's rows are
    the specification's)."""
    position = {n.name: i for i, n in enumerate(nodes)}
    return sum((spec_rows if start is final else per_image(start)) * per_image(relu)
               for relu in relus for start in starts if position[start.name] > position[relu.name])


def estimate_bound_memory(bm, x, method: str, C: Optional[torch.Tensor] = None) -> Optional[int]:
    """Upper estimate (bytes) of the peak memory one ``bm.compute_bounds(x=x, C=C,
    method=method)`` adds (the module's table); None for a method it does not cover.
    ``x``: the input tensor (or a tuple whose first tensor sets the batch and dtype)."""
    key = method.lower().replace("_", "-")
    first = x[0] if isinstance(x, (tuple, list)) else x
    batch, size = first.shape[0], first.element_size()
    nodes = input_nodes(bm)
    if not nodes:
        return 0
    total, largest, n_in = sum(map(per_image, nodes)), max(map(per_image, nodes)), math.prod(first.shape[1:])
    final = bm.final_node()
    starts = backward_starts(bm, nodes, final)
    spec = C.shape[1] if C is not None else per_image(final)
    if key in DOMAINS or key == "crown-hzono":
        pre_activation = sum(per_image(n) for n in nodes if isinstance(n, BoundActivation))
        first_pass = (hzono_rows(bm, key if key in DOMAINS else "hzono", n_in, pre_activation) + 3) * total
    else:
        first_pass = 3 * total
    if key in DOMAINS or key == "ibp":
        elements = first_pass
    elif key == "forward":
        elements = first_pass + (2 * total + 4 * largest) * n_in
    elif key in CROWN_IBP_METHODS:
        elements = first_pass + BACKWARD_TEMPORARIES * spec * largest
    elif key in CROWN_METHODS + ALPHA_METHODS:
        elements = first_pass + BACKWARD_TEMPORARIES * crown_backward(bm, nodes, starts, final, spec)
        if key in ALPHA_METHODS:
            relus = [n for n in nodes if isinstance(n, BoundRelu)]
            elements += 12 * spec * (total + sum(map(per_image, relus)))
            elements += SLOPE_COPIES * alpha_slopes(nodes, relus, starts, final, spec)
    else:
        return None
    return (elements * batch + 2 * largest_parameter(bm)) * size


def _cgroup_free() -> Optional[int]:
    """Bytes below this process's cgroup (v2) memory limit, or None without a limit."""
    root = Path("/sys/fs/cgroup")
    try:
        limit = (root / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int((root / "memory.current").read_text())
    except (OSError, ValueError):
        return None


def available_memory(device: torch.device | str = "cpu") -> Optional[int]:
    """Free bytes on ``device``: CUDA's free memory, or the smaller of /proc/meminfo's
    ``MemAvailable`` and the cgroup's headroom; None where neither can be read."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    free = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free = int(line.split()[1]) * 1024
    except OSError:
        pass
    known = [v for v in (free, _cgroup_free()) if v is not None]
    return min(known) if known else None


def memory_refusal(method: str, estimate: Optional[int], available: Optional[int]) -> Optional[str]:
    """Why ``method`` is not started (its estimate over the available memory), or None."""
    if estimate is None or available is None or estimate <= available:
        return None
    return (f"{method} would need about {estimate / MIB:,.0f} MiB by estimate "
            f"(lirpa_diffai.memory.estimate_bound_memory), more than the {available / MIB:,.0f} MiB "
            "available: bound fewer images at once, a smaller input, or a cheaper method "
            "(IBP, hzono, CROWN-IBP); bound_opts={'memory_check': False} skips this check")
