"""Fixes for today's activations and for auto_LiRPA's misleading prints; :mod:`.manifest`
applies them."""
from __future__ import annotations

from .fix import fix

OPSET = 12   # the opset auto_LiRPA 0.3 traces with


def activation_symbolics() -> dict:
    """``aten`` operator -> the symbolic that traces it as one ``custom::`` node (torch's own
    opset-12 symbolics spell SiLU, Hardswish and GELU out as products of the input with a
    function of it, and drop Softplus's threshold)."""
    from torch.onnx import symbolic_helper

    def typed(g, x, op, **attrs):
        out = g.op(op, x, **attrs)
        out.setType(x.type())
        return out

    def silu(g, x):
        return typed(g, x, "custom::SiLU")

    def hardswish(g, x):
        return typed(g, x, "custom::HardSwish")

    def gelu(g, x, approximate="none"):
        return typed(g, x, "custom::Gelu", approximate_s=symbolic_helper._maybe_get_const(approximate, "s"))

    def softplus(g, x, beta, threshold):
        return typed(g, x, "custom::Softplus", beta_f=symbolic_helper._maybe_get_const(beta, "f"),
                     threshold_f=symbolic_helper._maybe_get_const(threshold, "f"))
    return {"aten::silu": silu, "aten::hardswish": hardswish, "aten::gelu": gelu, "aten::softplus": softplus}


@fix(test="test_activation_is_one_graph_node")
def activations_traced_whole():
    """auto_LiRPA 0.3 has no Bound class for ``HardSigmoid``, ``Elu``, GELU's ``Erf`` and no
    relaxation for ``Softplus``; torch's exporter spells ``SiLU``, ``Hardswish`` and ``GELU`` out
    as products of two perturbed values (``x * sigmoid(x)``) and drops Softplus's
    ``threshold``. While auto_LiRPA traces a model, ``aten::silu``, ``hardswish``, ``gelu`` and
    ``softplus`` become one ``custom::`` node each (the symbolics are removed after, so
    ``torch.onnx.export`` is unchanged), and these operators get the Bound classes of
    :mod:`lirpa_diffai.lirpa03.activations` (exact interval, chord-slope parallelogram)."""
    from auto_LiRPA import bound_general, register_custom_op
    from torch.onnx import register_custom_op_symbolic, unregister_custom_op_symbolic

    from .activations import ACTIVATION_OPS
    parse_module = bound_general.parse_module
    symbolics = activation_symbolics()
    for op, cls in ACTIVATION_OPS.items():   # entries added to auto_LiRPA's operator map
        register_custom_op(op, cls)

    def traced_with_whole_activations(*args, **kwargs):
        for name, symbolic in symbolics.items():
            register_custom_op_symbolic(name, symbolic, OPSET)
        try:
            return parse_module(*args, **kwargs)
        finally:
            for name in symbolics:
                unregister_custom_op_symbolic(name, OPSET)
    return {(bound_general, "parse_module"): traced_with_whole_activations}


DROPOUT_MESSAGE = ("Dropout operation CANNOT be parsed", "Set model to train() mode!")


@fix(test="test_dropout_wraps_without_the_misleading_message")
def dropout_message_silenced():
    """auto_LiRPA 0.3 prints "Dropout operation CANNOT be parsed ... Set model to train()
    mode!" when it wraps an eval-mode network holding ``nn.Dropout``, although it then traces
    it in training mode itself (and lirpa_diffai's BoundedModule sets the Dropout nodes back
    to eval). Those two lines are dropped; any other line of the check is printed."""
    import contextlib
    import io

    from auto_LiRPA import BoundedModule
    check = BoundedModule.check_incompatible_nodes

    def check_incompatible_nodes(self, model):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            result = check(self, model)
        kept = [line for line in out.getvalue().splitlines()
                if line and not any(m in line for m in DROPOUT_MESSAGE)]
        if kept:
            print("\n".join(kept))
        return result
    return {(BoundedModule, "check_incompatible_nodes"): check_incompatible_nodes}
