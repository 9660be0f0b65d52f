"""``lirpa_diffai.BoundedModule``: auto_LiRPA's BoundedModule with ``method="hzono"``."""
from __future__ import annotations

import difflib
from typing import Optional

import auto_LiRPA
import torch
from auto_LiRPA.operators import BoundBatchNormalization, BoundLinear

from . import hybrid_zono as hz
from .bound_ops import HzonoContext, transformer_for
from .bound_ops.linear import linear_with_spec
from .hybrid_zono import HybridZonotope
from .perturbation import input_zonotope

# method name -> ReLU variant (None: the one in bound_opts["hzono"]["relu"])
HZONO_METHODS = {"hzono": None, "hbox": "boxy", "hnips": "deepz", "hswitch": "switch", "hsmooth": "smooth"}

HZONO_OPTIONS = {
    "relu": "boxy",           # ReLU transformer: boxy | deepz | switch | smooth
    "correlate_input": 0,     # input rows: 0 (a box), k > 0 (CorrelateMax k), or "all"
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
    rows = opts["correlate_input"]
    if not (rows == "all" or (isinstance(rows, int) and rows >= 0)):
        raise ValueError(f"bound_opts['hzono']['correlate_input'] = {rows!r}; "
                         "expected a non-negative int or 'all'")
    return opts


def correlate_input(z: HybridZonotope, rows) -> HybridZonotope:
    if rows == "all":
        return hz.correlate_all(z)
    return hz.correlate_max_k(z, rows) if rows else z


class BoundedModule(auto_LiRPA.BoundedModule):
    """auto_LiRPA's ``BoundedModule`` with the HybridZonotope domain as ``method="hzono"``.

    ``bound_opts["hzono"]``: ``relu`` (``"boxy"``, DiffAI's default; ``"deepz"``,
    ``"switch"``, ``"smooth"``) and ``correlate_input`` (0: the input box has no correlated
    rows, as DiffAI's ``Box``; k: CorrelateMax k on the input; ``"all"``: one row per input
    dim). The methods ``"HBox"``, ``"HNIPS"``, ``"HSwitch"``, ``"HSmooth"`` select the ReLU.
    After an hzono pass, ``hzono_output`` is the output zonotope (after ``C``) and
    ``hzono_aux_losses`` the ``(weight, loss)`` pairs recorded by DeepLoss layers.
    Every other method goes to auto_LiRPA unchanged.
    """

    def __init__(self, model, global_input, bound_opts=None, device="auto", verbose=False,
                 custom_ops=None):
        bound_opts = dict(bound_opts or {})
        bound_opts["hzono"] = hzono_options(bound_opts.get("hzono"))
        super().__init__(model, global_input, bound_opts=bound_opts, device=device,
                         verbose=verbose, custom_ops=custom_ops)
        self.hzono_output: Optional[HybridZonotope] = None
        self.hzono_aux_losses: list = []
        self._topological_orders: dict = {}

    def train(self, mode: bool = True) -> "BoundedModule":
        """As ``nn.Module.train``: returns ``self`` (auto_LiRPA 0.3's returns ``None``)."""
        super().train(mode)
        return self

    def eval(self) -> "BoundedModule":
        return self.train(False)

    def compute_bounds(self, x=None, aux=None, C=None, method="backward", *args, **kwargs):
        key = method.lower() if isinstance(method, str) else method
        if key in HZONO_METHODS:
            return self.compute_hzono_bounds(x, C=C, relu=HZONO_METHODS[key], **kwargs)
        return super().compute_bounds(x, aux, C, method, *args, **kwargs)

    def compute_hzono_bounds(self, x=None, C=None, relu=None, final_node_name=None,
                             bound_lower=True, bound_upper=True, store_bounds=False):
        """One forward pass of hybrid zonotopes over the graph in topological order.

        ``C`` (B, S, n_out) is applied to the output zonotope before concretization.
        ``store_bounds`` also concretizes every perturbed node into ``node.lower/upper``
        (intermediate bounds for CROWN)."""
        opts = self.bound_opts["hzono"]
        if x is not None:
            self._set_input(*x)
        final = self.final_node() if final_node_name is None else self[final_node_name]
        ctx = HzonoContext(relu=relu or opts["relu"], training=self.training)
        if self.training:
            self._refresh_batch_statistics(final)
        merge_spec = C is not None and isinstance(final, BoundLinear) and final.inputs[0].perturbed
        values = {}
        for node in self._topological_order(final):
            if node is final and merge_spec:
                out = linear_with_spec(node, *(values[i.name] for i in node.inputs), C)
                break
            values[node.name] = value = self._hzono_node(ctx, node, values, opts)
            if store_bounds and isinstance(value, HybridZonotope):
                node.lower, node.upper = value.concretize()
                node.interval = (node.lower, node.upper)
        else:
            out = values[final.name]
            if not isinstance(out, HybridZonotope):
                out = HybridZonotope.from_point(out)
            if C is not None:
                out = out.apply_spec(C)
        self.hzono_output, self.hzono_aux_losses = out, ctx.aux_losses
        lower, upper = out.concretize()
        return (lower if bound_lower else None), (upper if bound_upper else None)

    def _hzono_node(self, ctx, node, values, opts):
        if not node.inputs:
            value = node.forward()
            if getattr(node, "perturbation", None) is not None:
                return correlate_input(input_zonotope(node.perturbation, value), opts["correlate_input"])
            return value
        args = [values[i.name] for i in node.inputs]
        if any(isinstance(a, HybridZonotope) for a in args):
            value = transformer_for(node)(ctx, node, *args)
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
