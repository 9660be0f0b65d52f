"""``nn.MultiheadAttention`` written out while auto_LiRPA traces
(lirpa_diffai.lirpa03.written_out_attention): the same function as torch's module (float32
tolerance; eval and training mode with dropout 0; batch first or not; separate key / value
sizes; the attention weights when asked), the module unchanged after, and what the written-out
form does not express refused by module name."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import lirpa_diffai
from lirpa_diffai.errors import UnsupportedOperatorError
from lirpa_diffai.lirpa03.written_out_attention import attention_written_out


CONFIGS = {
    "batch_first": dict(embed_dim=8, num_heads=2, batch_first=True),
    "sequence_first": dict(embed_dim=8, num_heads=4, batch_first=False),
    "no_bias": dict(embed_dim=6, num_heads=3, bias=False, batch_first=True),
    "kdim_vdim": dict(embed_dim=8, num_heads=2, kdim=5, vdim=3, batch_first=True),
}


def inputs(config, seed=0):
    torch.manual_seed(seed)
    length, batch = 5, 3
    shape = (batch, length) if config.get("batch_first") else (length, batch)
    return (torch.randn(*shape, config["embed_dim"]), torch.randn(*shape, config.get("kdim", config["embed_dim"])),
            torch.randn(*shape, config.get("vdim", config["embed_dim"])))


class Holder(nn.Module):
    def __init__(self, attention):
        super().__init__()
        self.attention = attention


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_written_out_attention_computes_torchs_function(name, training):
    torch.manual_seed(1)
    attention = nn.MultiheadAttention(**CONFIGS[name]).train(training)
    q, k, v = inputs(CONFIGS[name])
    with torch.no_grad():
        expected = attention(q, k, v, average_attn_weights=False)
        averaged = attention(q, k, v)
        with attention_written_out(Holder(attention)):
            written = attention(q, k, v, average_attn_weights=False)
            written_averaged = attention(q, k, v)
            written_only = attention(q, k, v, need_weights=False)
    for got, want in ((written, expected), (written_averaged, averaged)):
        torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got[1], want[1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(written_only[0], expected[0], rtol=1e-5, atol=1e-6)
    assert written_only[1] is None
    assert "forward" not in vars(attention)   # the module's own forward again


def test_a_transformer_encoder_layer_traces_into_bound_operators():
    """Without LayerNorm's nodes in question: the graph of the written-out layer computes the
    layer (auto_LiRPA 0.3 met one aten::ATen node it could not bound)."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True).eval()
    x = torch.randn(2, 4, 8)
    bm = lirpa_diffai.BoundedModule(layer, x)
    torch.testing.assert_close(bm(x), layer(x), rtol=1e-5, atol=1e-5)
    assert "MatMul" in {type(n).__name__.removeprefix("Bound") for n in bm._modules.values()}


class Masked(nn.Module):
    def __init__(self, **call):
        super().__init__()
        self.attention = nn.MultiheadAttention(4, 2, batch_first=True)
        self.call = call

    def forward(self, x):
        return self.attention(x, x, x, need_weights=False, **self.call)[0]


MASK = torch.zeros(3, 3, dtype=torch.bool)


@pytest.mark.parametrize("call, what", [
    (dict(attn_mask=MASK), "attention mask"),
    (dict(key_padding_mask=torch.zeros(2, 3, dtype=torch.bool)), "key_padding_mask"),
])
def test_masks_are_refused_by_module_name(call, what):
    message = rf"MultiheadAttention in module 'attention' is given an? {what}"
    with pytest.raises(UnsupportedOperatorError, match=message):
        lirpa_diffai.BoundedModule(Masked(**call).eval(), torch.randn(2, 3, 4))


@pytest.mark.parametrize("options, what", [(dict(add_bias_kv=True), "add_bias_kv"),
                                           (dict(add_zero_attn=True), "add_zero_attn")])
def test_unexpressed_options_are_refused_by_module_name(options, what):
    net = nn.Sequential(nn.Linear(4, 4))
    net.append(Holder(nn.MultiheadAttention(4, 2, batch_first=True, **options)))
    with pytest.raises(UnsupportedOperatorError, match=rf"module '1.attention' has {what}"):
        with attention_written_out(net):
            pass


def test_attention_dropout_in_training_mode_is_refused():
    attention = nn.MultiheadAttention(4, 2, dropout=0.1, batch_first=True).train()
    x = torch.randn(2, 3, 4)
    with attention_written_out(Holder(attention)):
        with pytest.raises(UnsupportedOperatorError,
                           match=r"MultiheadAttention in module 'attention' drops attention weights in training mode"):
            attention(x, x, x)
        attention.eval()
        attention(x, x, x)
