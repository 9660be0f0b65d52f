"""``lirpa_diffai.BoundedModule``: auto_LiRPA's BoundedModule with ``method="hzono"``, DiffAI's
domain names (``lirpa_diffai.domain.methods``) and the combined methods ``"CROWN-hzono"`` /
``"alpha-CROWN-hzono"``."""
from __future__ import annotations

import contextlib
import difflib
import math
import warnings
from typing import Optional

import auto_LiRPA
import torch
from auto_LiRPA.operators import BoundBatchNormalization, BoundDropout, BoundLinear

from .lirpa03 import batch_axis, graph_check
from .lirpa03.follow import ModelTensors
from . import hybrid_zono as hz
from .bound_ops import HzonoContext, transformer_for
from .bound_ops.attention import SOFTMAX_BOUNDS
from .bound_ops.grafted import BoundGraftedRelu
from .bound_ops.linear import linear_with_spec
from .bound_ops.registry import is_perturbed, joined
from .bound_ops.zono import zono_transformer_for
from .domain.methods import DIFFAI_NAMES, DOMAINS, random_count, valid_rows
from .hybrid_zono import HybridZonotope
from .lirpa03.untraceable import refuse_untraceable
from .lirpa03.written_out_attention import attention_written_out
from .lirpa03.state import default_dtype_of, keep_modes_and_buffers, keep_requires_grad
from .lirpa03.input_checks import as_input_tuple, check_inputs, check_method, normalize_spec
from .domain.perturbation import input_zonotope
from .errors import BoundMemoryError, UnsupportedOperatorError
from .memory import MEMORY_CHECK_FROM, available_memory, estimate_bound_memory, memory_refusal

# combined method -> auto_LiRPA method run for the final node on hzono intermediate bounds
CROWN_HZONO_METHODS = {"crown-hzono": "backward", "alpha-crown-hzono": "alpha-crown"}

# this package's method names as the documentation spells them (any case is accepted)
OWN_METHOD_NAMES = ("hzono", *DIFFAI_NAMES, "CROWN-hzono", "alpha-CROWN-hzono")

HZONO_OPTIONS = {
    "relu": "boxy",           # ReLU transformer: boxy | deepz | switch | smooth
    "correlate_input": 0,     # input rows: 0 (a box), k > 0 (CorrelateMax k), "all", "random:k"
    "softmax": "shifted",     # softmax bound: shifted (n per row) | pairwise (DeepT's, n^2 per row)
}


def hzono_options(user: Optional[dict]) -> dict:
    """``bound_opts["hzono"]`` completed with defaults; unknown keys and values are errors."""
    user = dict(user or {})
    for key in user:
        if key not in HZONO_OPTIONS:
            near = difflib.get_close_matches(key, HZONO_OPTIONS, n=1)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            raise ValueError(f"bound_opts['hzono'] has unknown key '{key}'{hint} "
                             f"(known: {', '.join(HZONO_OPTIONS)})")
    opts = {**HZONO_OPTIONS, **user}
    if opts["relu"] not in hz.RELU_VARIANTS:
        raise ValueError(f"bound_opts['hzono']['relu'] = {opts['relu']!r}; choose one of "
                         f"{', '.join(hz.RELU_VARIANTS)}")
    if opts["softmax"] not in SOFTMAX_BOUNDS:
        raise ValueError(f"bound_opts['hzono']['softmax'] = {opts['softmax']!r}; choose one of "
                         f"{', '.join(SOFTMAX_BOUNDS)}")
    rows = opts["correlate_input"]
    if not valid_rows(rows):
        raise ValueError(f"bound_opts['hzono']['correlate_input'] = {rows!r}; "
                         "expected a non-negative int, 'all' or 'random:k'")
    return opts


def parse_correlate_input(text: str, option: str = "correlate_input"):
    """``bound_opts["hzono"]["correlate_input"]`` from command-line text: ``"all"``,
    ``"random:k"`` or a non-negative int; ``ValueError`` naming ``option`` otherwise."""
    if text == "all" or random_count(text) is not None:
        return text
    if text.isdigit():
        return int(text)
    raise ValueError(f"{option} must be 'all', 'random:k' or a non-negative integer, not {text!r}")


def correlate_input(z: HybridZonotope, rows) -> HybridZonotope:
    """The input element's rows: ``"all"`` (DiffAI's ``HBox.box``, ``errors = e_i * radius``),
    ``"random:k"`` (HRand), k > 0 (CorrelateMax k) or none."""
    if rows == "all":
        return hz.correlate_all(z)
    if random_count(rows) is not None:
        return hz.correlate_random(z, random_count(rows))
    return hz.correlate_max_k(z, rows) if rows else z


def input_device(global_input) -> torch.device:
    """The device of the first tensor among the example inputs (CPU if none)."""
    inputs = global_input if isinstance(global_input, (tuple, list)) else (global_input,)
    return next((t.device for t in inputs if torch.is_tensor(t)), torch.device("cpu"))


@contextlib.contextmanager
def optimize_args(bm, **temporary):
    """``bm.bound_opts["optimize_bound_args"]`` with ``temporary`` values inside the block."""
    args = bm.bound_opts["optimize_bound_args"]
    saved = {k: args[k] for k in temporary}
    args.update(temporary)
    try:
        yield
    finally:
        args.update(saved)


def first_tensor(x) -> Optional[torch.Tensor]:
    """The first tensor among the inputs ``x`` (a tensor or a tuple), or None."""
    return next((t for t in as_input_tuple(x) or () if torch.is_tensor(t)), None)


class BoundedModule(auto_LiRPA.BoundedModule):
    """auto_LiRPA's ``BoundedModule`` with the HybridZonotope domain as ``method="hzono"``.

    ``bound_opts["hzono"]``: ``relu`` (``"boxy"``, DiffAI's default; ``"deepz"``,
    ``"switch"``, ``"smooth"``) and ``correlate_input`` (0: the input box has no correlated
    rows, as DiffAI's ``Box``; k: CorrelateMax k on the input; ``"all"``: one row per input
    dim; ``"random:k"``: k random dims) and ``softmax`` (``"shifted"``: the interval softmax of
    the row minus its shared symbols, ``n`` operations per row; ``"pairwise"``: DeepT's bound
    over all differences ``x_j - x_i``, tighter, ``n^2`` per row; see
    ``lirpa_diffai.bound_ops.attention``). DiffAI's domain names (``"Box"``, ``"HBox"``,
    ``"HSwitch"``, ``"HSmooth"``, ``"HNIPS"``, ``"ZBox"``, ``"ZSwitch"``, ``"ZSmooth"``,
    ``"ZNIPS"``, ``"HRand"``; see ``lirpa_diffai.domain.methods``) fix the ReLU, the input rows and
    whether the value is a pure zonotope, whatever the options say.
    After an hzono pass, ``hzono_output`` is the output zonotope (after ``C``) and
    ``hzono_aux_losses`` the ``(weight, loss)`` pairs recorded by DeepLoss layers.

    ``method="CROWN-hzono"`` is CROWN-IBP with hzono in place of IBP: one hzono pass (with
    ``bound_opts["hzono"]``) bounds every perturbed node before the final one, and auto_LiRPA's
    backward (CROWN) pass bounds the final node only, taking those boxes as given
    ``intermediate_layer_bounds``. Sound because each box contains its node's values; with
    the boxy ReLU the boxes lie inside IBP's, so it is usually (CROWN is not monotone in its
    intermediate bounds, so not provably always) at least as tight as CROWN-IBP, at about
    the cost of CROWN-IBP. ``"alpha-CROWN-hzono"`` optimizes the final node's ReLU slopes
    (auto_LiRPA's alpha-CROWN, ``bound_opts["optimize_bound_args"]``) on the same fixed
    hzono intermediate bounds. ``hzono_node_bounds`` holds those boxes by node name.
    Every other method goes to auto_LiRPA unchanged.
    """

    def __init__(self, model, global_input, bound_opts=None, device="auto", verbose=False,
                 custom_ops=None):
        bound_opts = dict(bound_opts or {})
        bound_opts["hzono"] = hzono_options(bound_opts.get("hzono"))
        if device == "auto" and next(model.parameters(), None) is None:
            device = input_device(global_input)  # auto_LiRPA 0.3 reads it from one tensor input
        # the network's parameters, which the graph's parameter nodes share (a tuple, not a
        # module: a module attribute would become a graph node); set first, as auto_LiRPA's
        # __init__ already runs forward passes (before the graph follows the model's tensors)
        self._shared_parameters = tuple(model.parameters())
        self._model_tensors = None
        with keep_requires_grad(self._shared_parameters):
            with keep_modes_and_buffers(model), graph_check.first_output(model) as first, \
                    refuse_untraceable(model, global_input), attention_written_out(model):
                with warnings.catch_warnings():
                    # auto_LiRPA traces Dropout in training mode on purpose (set back to eval below)
                    warnings.filterwarnings("ignore", message=".*operator 'dropout' is set to train=True")
                    super().__init__(model, global_input, bound_opts=bound_opts, device=device,
                                     verbose=verbose, custom_ops=custom_ops)
            graph_check.refuse_mistraced_nodes(self)
            graph_check.check_graph_matches_model(self, model, global_input, first)
        self._model_tensors = ModelTensors(model, self)
        if not model.training:  # auto_LiRPA traced Dropout in training mode; the model is not
            for node in self._modules.values():
                if isinstance(node, BoundDropout):
                    node.eval()
        # intermediate bounds of a grafted ReLU come from its input's by IBP, as a ReLU's do
        self.ibp_intermediate = [*self.ibp_intermediate, BoundGraftedRelu]
        self.hzono_output: Optional[HybridZonotope] = None
        self.hzono_aux_losses: list = []
        self.hzono_node_bounds: dict = {}
        self._topological_orders: dict = {}
        self._last_readers_of: dict = {}
        self._batch_axis_checked: set = set()
        self._memory_estimates: dict = {}

    def train(self, mode: bool = True) -> "BoundedModule":
        """As ``nn.Module.train``: returns ``self`` (auto_LiRPA 0.3's returns ``None``)."""
        super().train(mode)
        return self

    def eval(self) -> "BoundedModule":
        return self.train(False)

    def _follow_model(self) -> None:
        """Bound the model as it is now (``lirpa03.follow``): its replaced tensors re-pointed,
        what the graph cannot follow refused."""
        if self._model_tensors is not None and self._model_tensors.sync():
            self._shared_parameters = tuple(self._model_tensors.model.parameters())

    def forward(self, *x, **kwargs):
        self._follow_model()
        with keep_requires_grad(self._shared_parameters):
            return super().forward(*x, **kwargs)

    def compute_bounds(self, x=None, aux=None, C=None, method="backward", *args, **kwargs):
        key = check_method(method, OWN_METHOD_NAMES)
        self._follow_model()
        x = as_input_tuple(x)
        check_inputs(x)
        C = self._checked_spec(x, C, kwargs.get("final_node_name"))
        self._check_memory(method, x, C)
        with keep_requires_grad(self._shared_parameters), default_dtype_of(x):
            result = self._compute_bounds(key, x, aux, C, method, *args, **kwargs)
        self._refuse_nan(result, method, kwargs.get("final_node_name"))
        return result

    def _compute_bounds(self, key, x, aux, C, method, *args, **kwargs):
        """``compute_bounds`` of the checked arguments, by method family."""
        if key not in DOMAINS and key != "ibp":
            self._check_batch_axis(x, kwargs.get("final_node_name"), method)
        if key in DOMAINS:
            return self.compute_hzono_bounds(x, C=C, domain=key, **kwargs)
        if key in CROWN_HZONO_METHODS:
            if args:
                raise TypeError(f"method={method!r}: pass auto_LiRPA's options by keyword")
            return self.compute_crown_hzono_bounds(x, aux, C, final=CROWN_HZONO_METHODS[key], **kwargs)
        if self.training:
            self._use_batch_statistics(x, kwargs.get("final_node_name"))
        return super().compute_bounds(x, aux, C, method, *args, **kwargs)

    def estimate_memory(self, x, method: str = "backward", C: Optional[torch.Tensor] = None) -> Optional[int]:
        """Upper estimate (bytes) of the peak memory ``compute_bounds(x=x, C=C, method=method)``
        would add, from the graph's node sizes alone (``lirpa_diffai.memory``'s table: IBP
        ``3 A b s``, hzono ``(r + 3) A b s``, CROWN's coefficient matrices ...); None for a
        method it does not cover. ``x``: the input tensor or tuple of inputs. Kept per method,
        input shape and type, specification rows and options: the graph does not change."""
        first = first_tensor(x)
        if first is None:
            return None
        key = (method.lower(), tuple(first.shape), first.dtype, None if C is None else C.shape[1],
               repr(self.bound_opts.get("hzono")), getattr(self, "conv_mode", None))
        if key not in self._memory_estimates:
            self._memory_estimates[key] = estimate_bound_memory(self, first, method, C)
        return self._memory_estimates[key]

    def _check_memory(self, method, x, C) -> None:
        """Refuse with ``BoundMemoryError``, before it starts, a call whose
        :meth:`estimate_memory` exceeds what the device has free; estimates under
        ``MEMORY_CHECK_FROM`` are not checked, and ``bound_opts["memory_check"] = False``
        skips the check."""
        if not self.bound_opts.get("memory_check", True) or x is None:
            return
        estimate = self.estimate_memory(x, method, C)
        if estimate is None or estimate < MEMORY_CHECK_FROM:
            return
        reason = memory_refusal(method, estimate, available_memory(first_tensor(x).device))
        if reason:
            raise BoundMemoryError(reason)

    def _refuse_nan(self, result, method, final_node_name=None) -> None:
        """NaN bounds are never an answer: refuse, naming the first node (in graph order) whose
        bounds are NaN or overflow float (``exp`` of a large interval), else the final node."""
        bounds = [t for t in (result[:2] if isinstance(result, tuple) else ()) if torch.is_tensor(t)]
        if not any(bool(t.isnan().any()) for t in bounds):
            return
        final = self.final_node() if final_node_name is None else self[final_node_name]

        def broken(node):
            found = [getattr(node, side, None) for side in ("lower", "upper")]
            return any(torch.is_tensor(t) and not bool(torch.isfinite(t).all()) for t in found)
        node = next((n for n in self._topological_order(final) if broken(n)), final)
        raise UnsupportedOperatorError(
            f"{method}: graph node '{node.name}' (operator {type(node).__name__[5:]}, {type(node).__name__}): "
            "its bounds are NaN or overflow (an input interval too wide for the operator in this "
            "float type); bound a smaller input set")

    def _final(self, final_node_name=None):
        """The node bounds are computed for: ``final_node_name``'s, else the output node."""
        return self.final_node() if final_node_name is None else self[final_node_name]

    def _check_batch_axis(self, x, final_node_name, method):
        """Refuse, by node, a graph whose perturbed nodes move values across the batch axis
        (``batch_axis``): once per input shapes and final node."""
        final = self._final(final_node_name)
        inputs = x if x is not None else [self[name].value for name in self.input_name]
        key = (final.name,) + tuple((tuple(getattr(t, "shape", ())), getattr(t, "ptb", None) is not None)
                                    for t in inputs)
        if key in self._batch_axis_checked:
            return
        if x is not None:
            self._set_input(*x)
        perturbed = {name: graph_check.plain(self[name].value) for name in self.input_name
                     if self[name].perturbation is not None and torch.is_tensor(self[name].value)}
        batch_axis.check_batch_axis(self._topological_order(final), perturbed, method)
        self._batch_axis_checked.add(key)

    def _use_batch_statistics(self, x, final_node_name=None):
        """auto_LiRPA 0.3's IBP / CROWN bound training-mode BatchNorm with the statistics of
        whatever forward pass ran last; take those of the clean batch ``x``, as hzono does."""
        if x is not None:
            self._set_input(*x)
        self._refresh_batch_statistics(self._final(final_node_name))

    def _checked_spec(self, x, C, final_node_name):
        """``C`` in the shape (B, S, n_out) and dtype of the inputs (``input_checks``)."""
        if C is None:
            return None
        final = self._final(final_node_name)
        if x is None:  # the inputs of the last call
            x = [getattr(self[name], "value", None) for name in self.input_name]
        inputs = [t for t in x if torch.is_tensor(t)]
        batch = inputs[0].shape[0] if inputs else None
        dtype = inputs[0].dtype if inputs and inputs[0].is_floating_point() else None
        n_out = math.prod(final.output_shape[1:])
        return normalize_spec(C, batch, n_out, dtype)

    def compute_crown_hzono_bounds(self, x=None, aux=None, C=None, final="backward",
                                   final_node_name=None, bound_lower=True, bound_upper=True,
                                   **kwargs):
        """hzono boxes for every perturbed node before the final one, then auto_LiRPA's
        ``final`` method (``"backward"``: CROWN; ``"alpha-crown"``) for the final node on
        those boxes, as CROWN-IBP does with IBP boxes. ``kwargs`` go to auto_LiRPA."""
        for taken in ("intermediate_layer_bounds", "IBP", "forward", "method"):
            if taken in kwargs:
                raise TypeError(f"CROWN-hzono sets {taken!r} itself; it cannot be passed")
        # x=None keeps the last forward pass's state (a training-mode dropout mask)
        bounds = self.hzono_intermediate_bounds(x, C, final_node_name)
        common = dict(C=C, final_node_name=final_node_name, intermediate_layer_bounds=bounds, **kwargs)
        if final == "backward":
            return super().compute_bounds(x, aux, method="backward", bound_lower=bound_lower,
                                          bound_upper=bound_upper, **common)
        x = self._current_inputs() if x is None else x
        # alpha-CROWN: auto_LiRPA's init_slope would run a full CROWN pass to place the
        # slopes (it ignores the given bounds); initialise them on the hzono boxes instead, one
        # optimization per bound direction, as auto_LiRPA's "alpha-crown" does. Its
        # iterations each call backward(): the boxes are constants to them (the optimized
        # bounds it returns carry no gradient either).
        common["intermediate_layer_bounds"] = {
            name: (lo.detach(), up.detach()) for name, (lo, up) in bounds.items()}
        for node in self._topological_order(self._final(final_node_name)):
            if isinstance(node, BoundBatchNormalization) and node.training:  # statistics of the hzono pass
                node.current_mean, node.current_var = node.current_mean.detach(), node.current_var.detach()
        results = []
        for lower, upper in ((True, False), (False, True)):
            if not (bound_lower if lower else bound_upper):
                results.append(None)
                continue
            self.init_slope(x, share_slopes=self.bound_opts["optimize_bound_args"]["use_shared_alpha"],
                            method="backward", c=C, final_node_name=final_node_name,
                            intermediate_layer_bounds=common["intermediate_layer_bounds"])
            with optimize_args(self, init_alpha=False, fix_intermediate_layer_bounds=True):
                ret = super().compute_bounds(x, aux, method="alpha-crown", bound_lower=lower,
                                             bound_upper=upper, **common)
            results.append(ret[0] if lower else ret[1])
        return tuple(results)

    def hzono_intermediate_bounds(self, x, C=None, final_node_name=None) -> dict:
        """``{node name: (lower, upper)}`` from one hzono pass, for every perturbed node that
        the final node depends on (the final node itself excluded)."""
        self.compute_hzono_bounds(x, C=C, final_node_name=final_node_name, store_bounds=True)
        final = self._final(final_node_name)
        return {name: b for name, b in self.hzono_node_bounds.items() if name != final.name}

    def _current_inputs(self) -> tuple:
        """The inputs of the last call (``x=None`` means "reuse them" in auto_LiRPA)."""
        pairs = [(index, self[name].value) for name, index in zip(self.input_name, self.input_index)
                 if index is not None]
        if not pairs or any(getattr(self[n], "value", None) is None for n in self.input_name):
            raise ValueError("x=None but no earlier call set the inputs; pass x=(BoundedTensor, ...)")
        return tuple(value for _, value in sorted(pairs, key=lambda p: p[0]))

    def compute_hzono_bounds(self, x=None, C=None, domain="hzono", final_node_name=None,
                             bound_lower=True, bound_upper=True, store_bounds=False):
        """One forward pass of hybrid (or pure) zonotopes over the graph in topological order,
        in the named ``domain`` (a key of ``DOMAINS``).

        ``C`` (B, S, n_out) is applied to the output zonotope before concretization.
        ``store_bounds`` also concretizes every perturbed node into ``node.lower/upper``
        (intermediate bounds for CROWN) and into ``hzono_node_bounds`` by node name."""
        relu, rows, pure = DOMAINS[domain].resolve(self.bound_opts["hzono"])
        if x is not None:
            self._set_input(*x)
        final = self._final(final_node_name)
        ctx = HzonoContext(relu=relu, softmax=self.bound_opts["hzono"]["softmax"], training=self.training,
                           input_rows=rows, pure_input=pure)
        if self.training:
            self._refresh_batch_statistics(final)
        merge_spec = C is not None and isinstance(final, BoundLinear) and final.inputs[0].perturbed
        values, stored = {}, {}
        last_reader = self._last_readers(final)
        for node in self._topological_order(final):
            if node is final and merge_spec:
                out = linear_with_spec(node, *(joined(values[i.name]) for i in node.inputs), C)
                break
            values[node.name] = value = self._hzono_node(ctx, node, values)
            if store_bounds and is_perturbed(value):
                node.lower, node.upper = value.concretize()
                node.interval = stored[node.name] = (node.lower, node.upper)
            for name in last_reader.get(node.name, ()):
                del values[name]  # no later node reads it: its memory can go now
        else:
            out = joined(values[final.name])
            if not isinstance(out, HybridZonotope):
                out = HybridZonotope.from_point(out)
            if C is not None:
                out = out.apply_spec(C)
        self.hzono_output, self.hzono_aux_losses = out, ctx.aux_losses
        self.hzono_node_bounds = stored
        lower, upper = out.concretize()
        return (lower if bound_lower else None), (upper if bound_upper else None)

    def _hzono_node(self, ctx, node, values):
        """The node's value: its input element, its transformer's image of its inputs (in the
        domain of its first perturbed input, see ``HzonoContext.pure``), or its forward pass."""
        if not node.inputs:
            value = node.forward()
            if getattr(node, "perturbation", None) is not None:
                ctx.pure[node.name] = ctx.pure_input
                return correlate_input(input_zonotope(node.perturbation, value),
                                       ctx.input_rows).channels_last()
            return value
        args = [values[i.name] for i in node.inputs]
        perturbed = [i.name for i, a in zip(node.inputs, args) if is_perturbed(a)]
        if perturbed:
            pure = ctx.pure[perturbed[0]]
            transformer = zono_transformer_for(node) if pure else transformer_for(node)
            ctx.pure[node.name] = node.pure_after(pure) if hasattr(node, "pure_after") else pure
            if not transformer.reads_parts:
                args = [joined(a) for a in args]
            value = transformer(ctx, node, *args)
            if isinstance(value, HybridZonotope):
                value = value.unbounded_where_not_finite()
        else:
            value = node.forward(*args)
        if isinstance(value, (torch.Size, tuple)):  # Shape nodes, as auto_LiRPA's forward pass
            value = torch.tensor(value, device=self.device)
        return value

    def _refresh_batch_statistics(self, final):
        """Training-mode batch norm uses the statistics of the concrete forward pass."""
        for node in self._topological_order(final):
            if isinstance(node, BoundBatchNormalization):
                self.get_forward_value(node)

    def _last_readers(self, final) -> dict:
        """``{node name: names of the inputs that no later node of the pass reads}`` (cached)."""
        if final.name in self._last_readers_of:
            return self._last_readers_of[final.name]
        last = {}
        for node in self._topological_order(final):
            for i in node.inputs:
                last[i.name] = node.name
        readers = {}
        for value_name, reader in last.items():
            readers.setdefault(reader, []).append(value_name)
        self._last_readers_of[final.name] = readers
        return readers

    def _topological_order(self, final) -> list:
        """The nodes ``final`` depends on, each after its inputs (iterative DFS, cached)."""
        if final.name in self._topological_orders:
            return self._topological_orders[final.name]
        order, state = [], {}
        stack = [(final, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                state[node.name] = True
                order.append(node)
                continue
            if node.name in state:
                continue
            state[node.name] = False
            stack.append((node, True))
            stack.extend((i, False) for i in reversed(node.inputs) if i.name not in state)
        self._topological_orders[final.name] = order
        return order
