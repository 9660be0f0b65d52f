"""A trained network as ONNX (``python -m lirpa_diffai export CHECKPOINT --onnx PATH``), for
other verifiers.

The exported graph is the network's concrete function ``x -> logits`` on inputs in the
data range: its input normalisation (``models.Normalize``) stays in the graph as a
subtraction and a division, and DiffAI's abstract layers, the identity in concrete
execution, are left out (each becomes ``nn.Identity``, which the exporter drops). The batch
axis is dynamic. It is written with torch's TorchScript exporter (``dynamo=False``; that
exporter needs the ``onnx`` package, ``pip install 'lirpa-diffai[onnx]'``) and checked with
``onnx.checker``.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..domain.abstract_layers import AbstractLayer
from ..grafting.activation import GraftedReLU

INPUT_NAME, OUTPUT_NAME = "input", "logits"


class ExportError(ValueError):
    """A network that cannot be exported, or a failed export."""


def concrete_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in eval mode with every abstract layer replaced by
    ``nn.Identity``: the same concrete function, without the custom operators the abstract
    layers trace to."""
    out = copy.deepcopy(model).eval()
    for name, module in list(out.named_modules()):
        if isinstance(module, AbstractLayer):
            parent, _, child = name.rpartition(".")
            setattr(out.get_submodule(parent) if parent else out, child, nn.Identity())
    return out


def refuse_custom_activations(model: nn.Module) -> None:
    """ExportError naming the first grafted ReLU of ``model``: linearity grafting's activation
    traces to the operator ``custom::GraftedRelu``, which no other verifier reads."""
    for name, module in model.named_modules():
        if isinstance(module, GraftedReLU):
            raise ExportError(f"the network has grafted ReLUs ({name}: {module.extra_repr()}); "
                              "their operator custom::GraftedRelu is not standard ONNX, so "
                              "grafted networks are not exported")


def export_onnx(model: nn.Module, input_shape: Sequence[int], path) -> Path:
    """Write ``model``'s concrete function (see the module docstring) as ONNX to ``path``
    for inputs of shape ``(batch, *input_shape)``; the file appears only when complete and
    checked. Returns the path. ExportError if ``onnx`` is missing, the network has grafted
    ReLUs, or the exporter or the checker refuses it."""
    try:
        import onnx
    except ImportError:
        raise ExportError("exporting to ONNX needs the onnx package: "
                          "pip install 'lirpa-diffai[onnx]'") from None
    refuse_custom_activations(model)
    net = concrete_copy(model)
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    example = torch.zeros(1, *input_shape)
    try:
        with torch.no_grad():
            torch.onnx.export(net, (example,), str(partial), dynamo=False,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
        onnx.checker.check_model(str(partial))
    except Exception as err:  # the exporter's and the checker's errors have many types
        partial.unlink(missing_ok=True)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ExportError(f"torch's ONNX exporter failed: {first}") from None
    os.replace(partial, path)
    return path
