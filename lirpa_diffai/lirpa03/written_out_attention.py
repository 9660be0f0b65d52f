"""``nn.MultiheadAttention`` written out in operators auto_LiRPA can trace and bound.

torch's ``MultiheadAttention`` (and so ``nn.TransformerEncoderLayer``) runs a fused kernel that
auto_LiRPA 0.3 traces as one ``aten::ATen`` node it cannot bound. While auto_LiRPA traces a
network (:func:`attention_written_out`), each ``MultiheadAttention`` computes the same
function with the same parameter tensors, step by step (Vaswani et al. 2017)::

    q, k, v = x_q W_q^T + b_q,  x_k W_k^T + b_k,  x_v W_v^T + b_v      (split into h heads)
    out = concat_heads(softmax(q k^T / sqrt(d_head)) v) W_o^T + b_o

so the graph holds ``MatMul`` of two perturbed values, ``Softmax`` and shape operators. What
this form does not express is refused by module name: attention masks and key padding masks,
``add_bias_kv``, ``add_zero_attn``, dropout on the attention weights in training mode.
"""
from __future__ import annotations

import contextlib
import math
import types

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UnsupportedOperatorError


def refuse(name: str, what: str) -> UnsupportedOperatorError:
    return UnsupportedOperatorError(
        f"MultiheadAttention in module '{name}' {what}, which its written-out form (softmax of "
        "q k^T / sqrt(d) times v, traced for auto_LiRPA) does not express")


def check_module(name: str, attention: nn.MultiheadAttention) -> None:
    """Refuse, by module name, what :func:`written_out_forward` does not compute."""
    if attention.bias_k is not None or attention.bias_v is not None:
        raise refuse(name, "has add_bias_kv=True")
    if attention.add_zero_attn:
        raise refuse(name, "has add_zero_attn=True")


def projections(attention: nn.MultiheadAttention) -> tuple:
    """``((W_q, b_q), (W_k, b_k), (W_v, b_v))``: slices of ``in_proj_weight`` / ``in_proj_bias``,
    or the separate ``q_proj_weight`` ... when key and value have their own sizes."""
    e = attention.embed_dim
    bias = attention.in_proj_bias
    biases = (None,) * 3 if bias is None else (bias[:e], bias[e:2 * e], bias[2 * e:])
    if attention._qkv_same_embed_dim:
        w = attention.in_proj_weight
        weights = (w[:e], w[e:2 * e], w[2 * e:])
    else:
        weights = (attention.q_proj_weight, attention.k_proj_weight, attention.v_proj_weight)
    return tuple(zip(weights, biases))


def split_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, L, E) -> (B, heads, L, E / heads)."""
    b, length, e = t.shape
    return t.reshape(b, length, heads, e // heads).transpose(1, 2)


def written_out_forward(name: str):
    """``MultiheadAttention.forward`` of the module docstring, for the module named ``name``."""
    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        if key_padding_mask is not None:
            raise refuse(name, "is given a key_padding_mask")
        if attn_mask is not None or is_causal:
            raise refuse(name, "is given an attention mask")
        if self.training and self.dropout > 0:
            raise refuse(name, f"drops attention weights in training mode (dropout={self.dropout})")
        if not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        (wq, bq), (wk, bk), (wv, bv) = projections(self)
        q, k, v = (split_heads(F.linear(t, w, b), self.num_heads)
                   for t, w, b in ((query, wq, bq), (key, wk, bk), (value, wv, bv)))
        weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(self.head_dim), dim=-1)
        heads = weights @ v
        batch, _, length, _ = heads.shape
        out = F.linear(heads.transpose(1, 2).reshape(batch, length, self.embed_dim),
                       self.out_proj.weight, self.out_proj.bias)
        if not self.batch_first:
            out = out.transpose(0, 1)
        if not need_weights:
            return out, None
        return out, weights.mean(1) if average_attn_weights else weights
    return forward


@contextlib.contextmanager
def attention_written_out(model: nn.Module):
    """Inside the block, every ``nn.MultiheadAttention`` of ``model`` runs
    :func:`written_out_forward` (an instance attribute; after the block, the instance's own
    attributes are as before; the parameters are the module's own tensors). A module it
    cannot express is refused first, by name."""
    found = [(name, m) for name, m in model.named_modules() if type(m) is nn.MultiheadAttention]
    for name, attention in found:
        check_module(name, attention)
    before = [vars(attention).get("forward") for _, attention in found]
    for name, attention in found:
        attention.forward = types.MethodType(written_out_forward(name), attention)
    try:
        yield
    finally:
        for (_, attention), forward in zip(found, before):
            if forward is None:
                del attention.forward
            else:
                attention.forward = forward
