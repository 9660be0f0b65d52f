"""Affine operators with constant weights: Gemm/Linear, MatMul, Conv, ConvTranspose, BatchNorm."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from auto_LiRPA.operators import (BoundBatchNormalization, BoundConv, BoundConvTranspose,
                                  BoundLinear, BoundMatMul)

from .. import hybrid_zono as hz
from ..hybrid_zono import HybridZonotope
from .registry import register, UnsupportedOperatorError


def _require_constant(node, args, index, what):
    if isinstance(args[index], HybridZonotope):
        raise UnsupportedOperatorError(
            f"hzono: node '{node.name}' ({type(node).__name__}) has a perturbed {what}; "
            "only constant weights are supported")


def gemm_weight_bias(node, w, b):
    """Gemm ``alpha * x @ W^T + beta * b`` (ONNX's transB convention) as ``(W, bias)``."""
    if node.transA:
        raise UnsupportedOperatorError(f"hzono: node '{node.name}' (Gemm) with transA=1")
    w = w if node.transB else w.t()  # a view: no copy of the weight
    return scaled(w, node.alpha), (None if b is None else scaled(b, node.beta))


def scaled(t, factor):
    """``factor * t``; ``t`` itself (no copy) when ``factor`` is 1, as in every nn.Linear."""
    return t if factor == 1 else factor * t


@register(BoundLinear)
def linear(ctx, node, x, w, b=None):
    _require_constant(node, (x, w), 1, "weight")
    if x.head.dim() < 2:
        raise UnsupportedOperatorError(
            f"hzono: node '{node.name}' (Gemm) contracts the batch axis of a perturbed value "
            f"of shape {tuple(x.shape)}, which mixes samples")
    w, bias = gemm_weight_bias(node, w, b)
    return x.linear_map(lambda t: F.linear(t, w), bias, lambda t: F.linear(t, w.abs()))


def linear_with_spec(node, x, w, b, C):
    """A final Gemm merged with the spec ``C`` (B, S, n): ``(C W) x + C b``, so that ``beta``
    goes through ``|C W|`` rather than ``|C| |W|`` (what IBP does with ``C`` too)."""
    w, bias = gemm_weight_bias(node, w, b)
    cw = torch.einsum("bsn,nk->bsk", C, w)
    def spec(t):  # (..., B, k) -> (..., B, S)
        return torch.einsum("bsk,...bk->...bs", cw, t)
    head = spec(x.head) + (0 if bias is None else torch.einsum("bsn,n->bs", C, bias))
    beta = torch.einsum("bsk,bk->bs", cw.abs(), x.beta)
    return HybridZonotope(head, beta, None if x.errors is None else spec(x.errors), x.ids)


def _require_per_sample_matmul(node, z, const, contracted_axis):
    """``x @ y`` contracts the last axis of ``x`` and the second-to-last of ``y``; a perturbed
    operand whose contracted axis is the batch axis, or a constant with more axes than it,
    would mix or move the samples."""
    if z.head.dim() + contracted_axis <= 0:
        raise UnsupportedOperatorError(
            f"hzono: node '{node.name}' (MatMul) contracts the batch axis of its perturbed "
            f"operand (shape {tuple(z.shape)}), which mixes samples")
    if const.dim() > z.head.dim():
        raise UnsupportedOperatorError(
            f"hzono: node '{node.name}' (MatMul) multiplies a perturbed operand of shape "
            f"{tuple(z.shape)} by a constant of shape {tuple(const.shape)}: its extra leading "
            "axes would move the batch axis")


def _require_batched_matrices(node, x, y):
    """Two perturbed operands multiply sample by sample only as batches of matrices of one
    rank, ``(B, ..., n, k) @ (B, ..., k, p)``."""
    if x.head.dim() < 3 or x.head.dim() != y.head.dim():
        raise UnsupportedOperatorError(
            f"hzono: node '{node.name}' (MatMul) multiplies perturbed operands of shapes "
            f"{tuple(x.shape)} and {tuple(y.shape)}; only batches of matrices of one rank "
            "(B, ..., n, k) @ (B, ..., k, p) keep the samples apart")


@register(BoundMatMul)
def matmul(ctx, node, x, y):
    """``x @ y`` with one side constant; of two perturbed values (attention's ``q @ k^T`` and
    ``softmax(.) @ v``): :func:`~lirpa_diffai.hybrid_zono.product` with ``torch.matmul``."""
    if isinstance(x, HybridZonotope) and isinstance(y, HybridZonotope):
        _require_batched_matrices(node, x, y)
        return hz.product(x, y, torch.matmul)
    if isinstance(y, HybridZonotope):
        _require_per_sample_matmul(node, y, x, -2)
        return hz.times_constant(y, x, torch.matmul, constant_first=True)
    _require_per_sample_matmul(node, x, y, -1)
    if y.dim() > 2:  # y's leading axes pair with the samples: the rows cannot be folded in
        return hz.times_constant(x, y, torch.matmul)
    return x.linear_map(lambda t: t @ y, None, lambda t: t @ y.abs())


@register(BoundConv)
def conv(ctx, node, x, w, b=None):
    """``Conv1d`` / ``Conv2d``: ``W x + b`` on the center, ``W`` on each row, ``|W|`` on ``beta``."""
    _require_constant(node, (x, w), 1, "weight")
    convolution = F.conv1d if w.dim() == 3 else F.conv2d
    def apply(weight):
        return lambda t: convolution(t, weight, None, node.stride, node.padding, node.dilation, node.groups)
    bias = None if b is None else b.view((-1,) + (1,) * (w.dim() - 2))
    return x.linear_map(apply(w), bias, apply(w.abs()))


@register(BoundConvTranspose)
def conv_transpose(ctx, node, x, w, b=None):
    _require_constant(node, (x, w), 1, "weight")
    def apply(weight):
        return lambda t: F.conv_transpose2d(t, weight, None, node.stride, node.padding,
                                            node.output_padding, node.groups, node.dilation)
    return x.linear_map(apply(w), b.view(-1, 1, 1) if b is not None else None, apply(w.abs()))


def batch_norm_affine(node, weight, bias, running_mean, running_var):
    """BatchNorm as ``scale * x + shift``: in training mode with the statistics of the
    concrete forward pass (auto_LiRPA's convention, held fixed), else the running ones."""
    mean, var = (node.current_mean, node.current_var) if node.training else (running_mean, running_var)
    scale = weight / torch.sqrt(var + node.eps)
    return scale, bias - mean * scale


@register(BoundBatchNormalization)
def batch_norm(ctx, node, x, weight, bias, running_mean, running_var):
    scale, shift = batch_norm_affine(node, weight, bias, running_mean, running_var)
    shape = (-1,) + (1,) * (x.head.dim() - 2)
    return x.scale(scale.view(shape)).shift(shift.view(shape))
