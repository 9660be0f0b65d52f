"""Soundness fixes for auto_LiRPA 0.3's nonlinear relaxations (LeakyReLU, Sqrt, Log, sin,
Heaviside, tan) and its ``BoundedModule`` (nested ``load_state_dict``, CROWN's start,
alpha-CROWN, errors that name no node); :mod:`.manifest` applies them.

Each fix leaves the cases that were already right on their old code path, so their bounds stay
bit-identical.
"""
from __future__ import annotations

from .entries import entries_where
from .fix import fix


def concave_leaky_relu_relaxation(lower, upper, slope):
    """Linear bounds ``(lower_d, lower_b, upper_d, upper_b)`` of ``leaky_relu(x, slope)``,
    ``slope > 1``, on ``[lower, upper]``. The function is concave there: the chord through
    ``(l', f(l'))`` and ``(u', f(u'))`` (``l' = min(l, 0)``, ``u' = max(u, 0)``) lies below it,
    and a line through 0 with a slope in ``[1, slope]`` above it (the one nearer the chord's)."""
    import torch
    l = lower.clamp(max=0)
    u = torch.max(upper.clamp(min=0), l + 1e-8)
    chord_d = (u - slope * l) / (u - l)
    chord_b = l * (slope - chord_d)
    tangent_d = torch.where(chord_d > (1 + slope) / 2, torch.full_like(chord_d, slope),
                            torch.ones_like(chord_d))
    return chord_d, chord_b, tangent_d, torch.zeros_like(chord_b)


def relaxed_side(node, last_A, pos_d, pos_b, neg_d, neg_b):
    """One side of CROWN's backward step through an elementwise relaxation: the positive part
    of ``last_A`` takes the line ``pos_d x + pos_b``, the negative part ``neg_d x + neg_b``;
    returns the new coefficients and the bias (``None, 0`` when ``last_A`` is None)."""
    if last_A is None:
        return None, 0
    pos, neg = last_A.clamp(min=0), last_A.clamp(max=0)
    return pos * pos_d + neg * neg_d, node.get_bias(pos, pos_b) + node.get_bias(neg, neg_b)


@fix(test="test_leaky_relu_of_any_slope")
def leaky_relu_bounds():
    """auto_LiRPA 0.3 bugs in ``BoundLeakyRelu``: IBP takes ``[f(l), f(u)]``, wrong for a
    negative slope (``f`` is not monotone: the minimum is ``f(0) = 0`` when ``l < 0 < u``), and
    CROWN takes the chord as the upper bound, wrong for slope > 1 (``f`` concave). IBP: the
    exact range (``f`` convex or concave, so its extremes lie at ``l``, ``u`` or 0); CROWN for
    slope > 1: :func:`concave_leaky_relu_relaxation`."""
    import torch
    from auto_LiRPA.operators import BoundLeakyRelu
    backward = BoundLeakyRelu.bound_backward

    def interval_propagate(self, *v):
        lower, upper = v[0][0], v[0][1]
        if self.alpha >= 0:
            return self.forward(lower), self.forward(upper)
        ends_l, ends_u = self.forward(lower), self.forward(upper)
        crossing = (lower < 0) & (upper > 0)
        return torch.where(crossing, torch.zeros_like(ends_l), torch.min(ends_l, ends_u)), \
            torch.max(ends_l, ends_u)

    def bound_backward(self, last_lA, last_uA, x=None, start_node=None, start_shape=None):
        if self.alpha <= 1:
            return backward(self, last_lA, last_uA, x, start_node, start_shape)
        bounds = (x.lower, x.upper) if x is not None else (self.lower, self.upper)
        lower_d, lower_b, upper_d, upper_b = (t.unsqueeze(0) if i % 2 == 0 else t for i, t in
                                              enumerate(concave_leaky_relu_relaxation(*bounds, self.alpha)))

        lA, lbias = relaxed_side(self, last_lA, lower_d, lower_b, upper_d, upper_b)
        uA, ubias = relaxed_side(self, last_uA, upper_d, upper_b, lower_d, lower_b)
        return [(lA, uA)], lbias, ubias
    return {(BoundLeakyRelu, "interval_propagate"): interval_propagate,
            (BoundLeakyRelu, "bound_backward"): bound_backward}


def _nested(prefix: str) -> bool:
    """auto_LiRPA's own test for a leaf node of a BoundedModule that is itself a child module."""
    return len(prefix.split(".")) != 2


@fix(test="test_a_bounded_module_inside_another_loads_its_parameters")
def nested_load_state_dict():
    """auto_LiRPA 0.3 bug under torch 2: a ``BoundedModule`` inside another module never loads
    its parameters through the parent's ``load_state_dict``. Its leaf nodes look up
    ``<parent prefix>.<original name>``, but torch 2 hands each child only the keys under
    its own prefix (``<parent prefix>./<node>.``). The BoundedModule, which sees all of its
    keys, now loads its leaves itself (and reports missing or unexpected keys as torch does)."""
    import torch
    from auto_LiRPA import BoundedModule
    from auto_LiRPA.operators import BoundInput
    leaf_load, module_load = BoundInput._load_from_state_dict, BoundedModule._load_from_state_dict

    def load_leaf(self, state_dict, prefix, *args):
        if not _nested(prefix):
            leaf_load(self, state_dict, prefix, *args)

    def load_module(self, state_dict, prefix, local_metadata, strict, missing_keys,
                    unexpected_keys, error_msgs):
        if prefix:
            state_dict = dict(state_dict)
            for node in self._modules.values():
                tensors = [t for t in (*node._parameters.values(), *node._buffers.values()) if t is not None]
                if not isinstance(node, BoundInput) or not tensors:
                    continue
                key = prefix + node.ori_name
                if key not in state_dict:
                    if strict:
                        missing_keys.append(key)
                    continue
                value = state_dict.pop(key)
                if value.shape != tensors[0].shape:
                    error_msgs.append(f"size mismatch for {key}: copying a param with shape "
                                      f"{tuple(value.shape)} from checkpoint, the shape in current "
                                      f"model is {tuple(tensors[0].shape)}.")
                    continue
                with torch.no_grad():
                    tensors[0].copy_(value)
        module_load(self, state_dict, prefix, local_metadata, strict, missing_keys,
                    unexpected_keys, error_msgs)
    return {(BoundInput, "_load_from_state_dict"): load_leaf,
            (BoundedModule, "_load_from_state_dict"): load_module}


def leaf_key(prefix: str, name: str, node) -> str:
    """The state-dict key auto_LiRPA's leaf ``node`` reads its tensor ``name`` from."""
    return prefix + name if len(prefix.split(".")) == 2 else ".".join(prefix.split(".")[:-2]) + "." + node.ori_name


@fix(test="test_wrapping_a_model_leaves_its_tensors_untouched", after=("nested_load_state_dict",))
def construction_keeps_tensor_versions():
    """auto_LiRPA 0.3 bug: building a ``BoundedModule`` copies the saved state back into the
    model's own parameters and buffers (``copy_`` of equal values), which bumps their version
    counters: a backward pass through any graph that saved them before (``loss = net(x)``,
    then wrapping ``net``) fails. Load only the tensors whose values the trace changed (the
    statistics a training-mode trace moves)."""
    import torch
    from auto_LiRPA import BoundedModule
    from auto_LiRPA.operators import BoundInput

    from .state import holds_already
    leaf_load, convert = BoundInput._load_from_state_dict, BoundedModule._convert

    def load_leaf(self, state_dict, prefix, *args):
        tensors = {name: t for name, t in (*self._parameters.items(), *self._buffers.items()) if t is not None}
        if tensors and all(holds_already(t, state_dict.get(leaf_key(prefix, name, self)))
                           for name, t in tensors.items()):
            return
        leaf_load(self, state_dict, prefix, *args)

    def _convert(self, model, global_input):
        def restore_changed(state_dict, strict=True):  # the saved state of this same model
            with torch.no_grad():
                for key, tensor in model.state_dict(keep_vars=True).items():
                    if key in state_dict and not holds_already(tensor, state_dict[key]):
                        tensor.copy_(state_dict[key])
        model.load_state_dict = restore_changed  # for _convert's restore of the model only
        try:
            return convert(self, model, global_input)
        finally:
            del model.load_state_dict
    return {(BoundInput, "_load_from_state_dict"): load_leaf, (BoundedModule, "_convert"): _convert}


@fix(test="test_fuzzer_findings_are_bounded_soundly")
def sqrt_upper_tangent():
    """auto_LiRPA 0.3 bug: ``BoundSqrt``'s backward pass gives its upper tangent (at the
    midpoint ``m``) the slope ``-0.5 m^-1.5`` instead of ``sqrt'(m) = 0.5 m^-0.5``, so the upper
    bound is wrong. Bound with the chord below and the midpoint tangent above (``sqrt`` is
    concave), on the interval clipped to ``x >= 0`` (its domain)."""
    import torch
    from auto_LiRPA.operators import BoundSqrt

    def bound_backward(self, last_lA, last_uA, x):
        x_l = x.lower.clamp(min=0)
        x_u = torch.max(x.upper, x_l + 1e-8)
        sqrt_l, sqrt_u = torch.sqrt(x_l), torch.sqrt(x_u)
        chord_d = (sqrt_u - sqrt_l) / (x_u - x_l).clamp(min=1e-8)  # 0 when x_u rounds to x_l: still below
        chord_b = sqrt_l - chord_d * x_l
        x_m = (x_l + x_u) / 2
        tangent_d = 0.5 / torch.sqrt(x_m)
        tangent_b = torch.sqrt(x_m) - tangent_d * x_m

        lA, lbias = relaxed_side(self, last_lA, chord_d, chord_b, tangent_d, tangent_b)
        uA, ubias = relaxed_side(self, last_uA, tangent_d, tangent_b, chord_d, chord_b)
        return [(lA, uA), (None, None)], lbias, ubias
    return {(BoundSqrt, "bound_backward"): bound_backward}


def refuse_entries(where, lower, upper, what: str, why: str) -> None:
    """``NotImplementedError`` when ``where`` holds somewhere: ``what``, at how many entries, the
    first one's index and interval ``[lower, upper]``, then ``why`` (the failing node is named
    by ``failing_nodes_named``)."""
    if bool(where.any()):
        raise NotImplementedError(f"{what} {entries_where(where, lower, upper)}, {why}")


@fix(test="test_log_below_auto_lirpas_clamp_is_bounded_soundly")
def log_without_clamp():
    """auto_LiRPA 0.3 bug: ``BoundLog`` computes and bounds ``log(max(x, 1e-12))``, not ``log``:
    on ``x`` in ``[1e-15, 1e-13]`` every method's lower bound was ``log(1e-12) = -27.6`` (the
    model's ``log(1e-15) = -34.5``). The node now computes ``log`` itself, so IBP's
    ``[log l, log u]`` is exact (``-inf`` at ``l = 0``; a NaN below 0 widens to ``-inf``, as for
    ``sqrt``). CROWN and the forward modes keep auto_LiRPA's lines, which are sound for the
    concave ``log`` on ``l > 0`` (the chord from ``(l, log l)`` below, the midpoint tangent
    above), and refuse a range reaching 0 or below by node: there ``log`` has no finite linear
    lower bound. Loss fusion's ``logsumexp`` runs as before."""
    import torch
    from auto_LiRPA.operators import BoundLog
    forward, relax = BoundLog.forward, BoundLog.bound_relax

    def log_forward(self, x):
        return forward(self, x) if self.loss_fusion else torch.log(x)

    def bound_relax(self, x):
        refuse_entries(x.lower <= 0, x.lower, x.upper, "log's input range reaches 0 or below",
                       "where log has no finite linear lower bound; bound it with IBP (-inf below) or hzono")
        return relax(self, x)
    return {(BoundLog, "forward"): log_forward, (BoundLog, "bound_relax"): bound_relax}


@fix(test="test_layer_norm_is_bounded_as_traced_by_every_method")
def pow_exponent_of_a_constant():
    """auto_LiRPA 0.3 bug: ``BoundPow``'s backward pass reads its exponent as ``y.lower``, which
    a constant node does not have in CROWN (``'BoundConstant' object has no attribute
    'lower'``): layer norm's ``(x - mean) ** 2`` failed. Read it from the constant's value; an
    exponent other than 2 (the one auto_LiRPA relaxes: the chord above, a tangent below) is
    refused."""
    import types

    import torch
    from auto_LiRPA.operators import BoundPow
    backward = BoundPow.bound_backward

    def bound_backward(self, last_lA, last_uA, x, y):
        exponent = torch.as_tensor(y.value if hasattr(y, "value") else y.forward_value)
        if exponent.numel() != 1 or float(exponent) != 2:
            raise NotImplementedError(f"CROWN: x ** {exponent.tolist()}: only the exponent 2 has a "
                                      "linear relaxation in auto_LiRPA 0.3")
        return backward(self, last_lA, last_uA, x, types.SimpleNamespace(lower=exponent))
    return {(BoundPow, "bound_backward"): bound_backward}


@fix(test="test_layer_norm_is_bounded_as_traced_by_every_method")
def unstable_locations_of_permuted_bounds():
    """auto_LiRPA 0.3 bug: CROWN's search for a ReLU's unstable inputs, and the restoring of
    their bounds, ``view`` the inputs' IBP bounds flat, which fails (``view size is not
    compatible with input tensor's size and stride``) when they are a permuted tensor: a ReLU
    after a permute back from channels last. Both take contiguous copies of them."""
    from auto_LiRPA import BoundedModule
    locate, restore = BoundedModule.get_unstable_locations, BoundedModule.restore_sparse_bounds

    def get_unstable_locations(self, ref_lower, ref_upper, *args, **kwargs):
        return locate(self, ref_lower.contiguous(), ref_upper.contiguous(), *args, **kwargs)

    def restore_sparse_bounds(self, node, unstable_idx, unstable_size, ref_lower, ref_upper):
        ref_lower, ref_upper = (None if r is None else r.contiguous() for r in (ref_lower, ref_upper))
        return restore(self, node, unstable_idx, unstable_size, ref_lower, ref_upper)
    return {(BoundedModule, "get_unstable_locations"): get_unstable_locations,
            (BoundedModule, "restore_sparse_bounds"): restore_sparse_bounds}


def image_laid_out(node, seen: dict) -> bool:
    """Whether the node's value is (B, C, H, W) as a convolution lays it out: no operator that
    moves or reduces axes (a permute to channels last, a reshape, a matrix product, a
    reduction) lies between it and the last convolution or input on any perturbed path.
    ``seen`` memoizes by node name."""
    from auto_LiRPA.operators import (BoundFlatten, BoundLinear, BoundMatMul, BoundReduceMean,
                                      BoundReduceSum, BoundReshape, BoundTranspose)
    if node.name not in seen:
        if getattr(node, "patches_start", False) or not node.inputs:
            seen[node.name] = True
        elif isinstance(node, (BoundFlatten, BoundLinear, BoundMatMul, BoundReduceMean, BoundReduceSum,
                               BoundReshape, BoundTranspose)):
            seen[node.name] = False
        else:
            seen[node.name] = all(image_laid_out(i, seen) for i in node.inputs if getattr(i, "perturbed", True))
    return seen[node.name]


@fix(test="test_operator_sound_or_refused")
def start_coefficients_without_patches():
    """auto_LiRPA 0.3 crashes when CROWN starts at a node: an Add / Sub with a non-image
    output in patches mode gets identity patches (``output_shape[-3]``), and a network without
    parameters has no dtype for them (``list(self.parameters())[0]``). Start such an Add / Sub
    as in matrix mode, and take the dtype from the node's value. A 4-D output that is not laid
    out as an image (:func:`image_laid_out`: layer norm's ``x - mean`` over channels last, in
    ConvNeXt) starts in matrix mode too: its patches would reach a reduction, which cannot take
    them."""
    import torch
    from auto_LiRPA import BoundedModule
    from auto_LiRPA.operators import BoundAdd, BoundSub
    original = BoundedModule.get_sparse_C

    def get_sparse_C(self, node, *args, **kwargs):
        flat = isinstance(node, (BoundAdd, BoundSub)) and getattr(node, "mode", None) == "patches" \
            and (len(node.output_shape) != 4 or not image_laid_out(node, {}))
        anchor = not any(True for _ in self.parameters())
        inputs = [getattr(self[name], "value", None) for name in self.input_name]
        dtype = next((v.dtype for v in inputs if isinstance(v, torch.Tensor) and v.is_floating_point()),
                     torch.get_default_dtype())
        if flat:
            node.mode = "matrix"
        if anchor:  # auto_LiRPA reads the dtype of the first parameter
            self.parameters = lambda *a, **k: iter([torch.zeros((), dtype=dtype)])
        try:
            return original(self, node, *args, **kwargs)
        finally:
            if flat:
                node.mode = "patches"
            if anchor:
                del self.parameters
    return {(BoundedModule, "get_sparse_C"): get_sparse_C}


@fix(test="test_alpha_crown_refuses_an_image_output_by_node")
def alpha_crown_output_shape():
    """auto_LiRPA 0.3's alpha-CROWN keeps its best bounds per (batch, output) row and fails
    with an ``IndexError`` when the final node's value has more axes and no specification
    ``C`` reduces it: refuse that by node. On a graph without an optimizable activation it
    fails (nothing requires a gradient): bound it with CROWN, which is what it optimizes."""
    from auto_LiRPA import BoundedModule
    original = BoundedModule.get_optimized_bounds

    def get_optimized_bounds(self, *args, **kwargs):
        node = self[kwargs.get("final_node_name") or self.final_name]
        shape = getattr(node, "output_shape", None)
        if kwargs.get("C") is None and shape is not None and len(shape) > 2:
            raise NotImplementedError(
                f"alpha-CROWN: the final graph node '{node.name}' (operator {type(node).__name__[5:]}, "
                f"{type(node).__name__}) has the shape {tuple(shape)}; alpha-CROWN bounds a (batch, n) "
                "output: flatten it or pass a specification C")
        if not self.optimizable_activations:  # nothing to optimize: alpha-CROWN is CROWN
            keep = ("x", "C", "bound_lower", "bound_upper", "final_node_name", "intermediate_layer_bounds",
                    "reference_bounds", "return_A", "needed_A_dict")
            return BoundedModule.compute_bounds(self, method="backward",
                                                **{k: v for k, v in kwargs.items() if k in keep})
        return original(self, *args, **kwargs)
    return {(BoundedModule, "get_optimized_bounds"): get_optimized_bounds}


@fix(test="test_unsound_relaxations_are_refused_by_node")
def unsound_relaxations_refused():
    """auto_LiRPA 0.3's linear relaxations of Heaviside (its lower line lies above its upper one)
    and of sin / cos (NaN coefficients on an interval of zero width, e.g. at eps = 0) give
    bounds the function escapes: CROWN, alpha-CROWN and the CROWN-hzono methods refuse these
    nodes (IBP's interval bounds of them are sound and stay). alpha-CROWN's optimized
    relaxation of tan (atan's, inverted) misses tan(x) at eps = 0: alpha-CROWN refuses it
    (CROWN's fixed relaxation of tan is sound and stays)."""
    from auto_LiRPA.operators import BoundATenHeaviside, BoundSin, BoundTan

    def refuse(why):
        def bound_backward(self, *args, **kwargs):
            raise NotImplementedError(f"auto_LiRPA 0.3's linear relaxation of this operator is "
                                      f"unsound ({why}); bound it with IBP")
        return bound_backward
    relax = BoundTan.bound_relax

    def bound_relax(self, x):
        if self.opt_stage in ("opt", "reuse"):
            raise NotImplementedError("auto_LiRPA 0.3's alpha-CROWN relaxation of tan (atan's optimized "
                                      "tangent lines, inverted) misses tan(x), even at eps = 0; bound it "
                                      "with CROWN or IBP")
        return relax(self, x)
    return {(BoundATenHeaviside, "bound_backward"): refuse("its lower line lies above its upper line"),
            (BoundSin, "bound_backward"): refuse("NaN coefficients on an interval of zero width"),
            (BoundTan, "bound_relax"): bound_relax}


@fix(test="test_alpha_crown_with_a_mostly_unstable_layer")
def relu_full_alpha_indices():
    """auto_LiRPA 0.3 bug (an indentation slip in ``BoundRelu.init_opt_parameters``): when more
    than ``minimum_sparsity`` of a ReLU layer is unstable it creates full-size alphas but
    resets ``alpha_indices`` to None only when verbose, so alpha-CROWN then scatters the full
    alphas as if sparse and fails. Reset it as the verbose path does."""
    from auto_LiRPA.operators import BoundRelu
    original = BoundRelu.init_opt_parameters

    def init_opt_parameters(self, start_nodes):
        original(self, start_nodes)
        if self.alpha_indices is not None:
            total = self.inputs[0].lower[0].numel()
            if self.alpha_indices[0].size(0) > self.options.get("minimum_sparsity", 0.9) * total:
                self.alpha_indices = None
    return {(BoundRelu, "init_opt_parameters"): init_opt_parameters}


@fix(test="test_alpha_crown_optimizes_a_relu_of_three_axes", after=('relu_full_alpha_indices',))
def full_alpha_of_any_rank():
    """auto_LiRPA 0.3's alpha-CROWN stores the slopes of a ReLU's unstable neurons only
    ("sparse features") after a linear or convolutional layer (an input of 2 or 4 axes), and
    fails with a bare ``ValueError`` for any other rank ((B, C, L) from a reshape). Its
    "sparse spec" alphas (one per unstable output of a start node) likewise take start nodes
    of 1 or 3 axes only, and fail a bare assertion for others (a ViT's (B, tokens, d) MLP
    output). Give those ReLUs a slope for every neuron and every start-node output (what it
    does when most neurons are unstable): only memory changes, not the bound."""
    from auto_LiRPA.operators import BoundRelu
    init = BoundRelu.init_opt_parameters

    def spec_of_other_rank(start_nodes) -> bool:
        return any(isinstance(shape, (list, tuple)) and len(shape) not in (1, 3) for _, shape, _ in start_nodes)

    def init_opt_parameters(self, start_nodes):
        lower = getattr(self.inputs[0], "lower", None)
        saved = self.use_sparse_features_alpha, self.use_sparse_spec_alpha
        self.use_sparse_features_alpha = saved[0] and (lower is None or lower.ndim in (2, 4))
        self.use_sparse_spec_alpha = saved[1] and not spec_of_other_rank(start_nodes)
        try:
            return init(self, start_nodes)
        finally:
            self.use_sparse_features_alpha, self.use_sparse_spec_alpha = saved
    return {(BoundRelu, "init_opt_parameters"): init_opt_parameters}


@fix(test="test_patches_reach_transpose_and_matmul_in_crown", after=('full_alpha_of_any_rank',))
def relu_not_reached_by_crown():
    """auto_LiRPA 0.3 bug: alpha-CROWN starts each ReLU's slopes from the lower slope its CROWN
    pass saved (``lower_d``), and fails (``'BoundRelu' object has no attribute 'lower_d'``)
    for a ReLU that pass never reached: one whose output only a bound with constant linear
    bounds reads (a softmax). Such a ReLU starts from CROWN's adaptive slope,
    ``|u| > |l|``; any slope in [0, 1] is sound."""
    from auto_LiRPA.operators import BoundRelu
    init = BoundRelu.init_opt_parameters

    def init_opt_parameters(self, start_nodes):
        if getattr(self, "lower_d", None) is None:
            x = self.inputs[0]
            self.lower_d = (x.upper.abs() > x.lower.abs()).to(x.lower.dtype).unsqueeze(0)
        return init(self, start_nodes)
    return {(BoundRelu, "init_opt_parameters"): init_opt_parameters}


NODE_METHODS = ("__init__", "forward", "interval_propagate", "bound_backward", "bound_forward",
                "init_opt_parameters")


def node_being_built() -> str:
    """The name of the graph node auto_LiRPA 0.3 is building (``nodesOP[n]`` in the frame of
    its ``BoundedModule._convert_nodes``, which names its nodes only after building them all);
    ``"?"`` outside it."""
    import sys
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "_convert_nodes" and "nodesOP" in frame.f_locals:
            return str(frame.f_locals["nodesOP"][frame.f_locals["n"]].name)
        frame = frame.f_back
    return "?"


def name_node_in(error: Exception, node, method: str) -> None:
    """Prefix ``error``'s message with the graph node and operator it came from (once); the
    exception keeps its type."""
    if getattr(error, "_names_graph_node", False):
        return
    operator = type(node).__name__
    detail = str(error) or f"auto_LiRPA 0.3 failed an internal check ({type(error).__name__})"
    name = getattr(node, "name", None) or node_being_built()
    error.args = (f"{method}: graph node '{name}' (operator {operator[5:]}, {operator}): {detail}",)
    error._names_graph_node = True


@fix(test="test_failures_inside_auto_lirpa_name_the_node_and_operator", after=("*",))
def failing_nodes_named():
    """auto_LiRPA 0.3 fails on many graphs it accepts with errors that name no node (bare
    assertions, shape errors deep in its operators). Every error raised in a node's
    ``forward``, ``interval_propagate``, ``bound_backward`` or ``bound_forward`` now names the
    graph node and its operator, so it is a refusal a user can act on (same exception type);
    so does every error raised while a node is built (``__init__``)."""
    import functools
    import inspect
    import auto_LiRPA.operators as operators
    classes = {c for c in vars(operators).values() if inspect.isclass(c) and issubclass(c, operators.Bound)}

    def wrap(function, method):
        @functools.wraps(function)
        def named(self, *args, **kwargs):
            try:
                return function(self, *args, **kwargs)
            except Exception as error:
                name_node_in(error, self, method)
                raise
        return named
    return {(cls, method): wrap(vars(cls)[method], method)
            for cls in classes for method in NODE_METHODS if method in vars(cls)}
