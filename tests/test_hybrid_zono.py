"""The HybridZonotope value type and its transformers, checked against the paper's formulas and
by sampling."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

from lirpa_diffai import hybrid_zono as hz
from lirpa_diffai.hybrid_zono import HybridZonotope

from tests.support import assert_inside


def random_zonotope(batch=3, shape=(5,), rows=4, scale=1.0):
    head = torch.randn(batch, *shape) * scale
    beta = torch.rand(batch, *shape) * scale
    errors = torch.randn(rows, batch, *shape) * scale / rows if rows else None
    return HybridZonotope(head, beta, errors, hz.fresh_ids(rows))


def sample(z: HybridZonotope, n=2000):
    """Points of gamma(z): corners of the symbols with probability 1/2, else uniform."""
    def draw(shape):
        u = torch.rand(shape) * 2 - 1
        return torch.where(torch.rand(shape) < 0.5, u.sign(), u)
    b = draw((n,) + tuple(z.shape))
    x = z.head + z.beta * b
    if z.errors is not None:
        e = draw((n, z.num_errors) + (1,) * z.head.dim())
        x = x + (e * z.errors).sum(1)
    return x


def test_concretize_is_head_plus_minus_total_error():
    z = random_zonotope()
    lower, upper = z.concretize()
    total = z.beta + z.errors.abs().sum(0)
    torch.testing.assert_close(lower, z.head - total)
    torch.testing.assert_close(upper, z.head + total)


def test_concretization_is_tight_and_sound():
    z = random_zonotope(rows=3)
    lower, upper = z.concretize()
    points = sample(z, 20000)
    assert_inside(points, lower, upper)
    # every bound is reached by a corner: the sampled extremes approach it
    assert (points.max(0).values - upper).abs().max() < 0.3 * (upper - lower).max()


@pytest.mark.parametrize("variant", hz.RELU_VARIANTS)
@given(seed=st.integers(0, 10_000), rows=st.integers(0, 4))
@settings(max_examples=25, deadline=None)
def test_relu_transformers_are_sound(variant, seed, rows):
    torch.manual_seed(seed)
    z = random_zonotope(rows=rows)
    out = hz.relu(z, variant)
    # a joint sample: the same symbols drive input and output enclosures
    n = 3000
    b = torch.rand((n,) + tuple(z.shape)) * 2 - 1
    x = z.head + z.beta * b
    if rows:
        e = torch.rand(n, rows, 1, 1) * 2 - 1
        x = x + (e * z.errors).sum(1)
    lower, upper = out.concretize()
    assert_inside(torch.relu(x), lower, upper)
    if rows:
        # pointwise: relu(x(b, e)) - (head' + E' e) must fit in beta'
        residual = torch.relu(x) - out.head - (e * out.errors).sum(1)
        assert (residual.abs() <= out.beta + 1e-5).all()


def test_box_takes_exact_interval_relu_in_every_variant():
    z = random_zonotope(rows=0)
    lower, upper = z.concretize()
    for variant in hz.RELU_VARIANTS:
        lo, hi = hz.relu(z, variant).concretize()
        torch.testing.assert_close(lo, torch.relu(lower))
        torch.testing.assert_close(hi, torch.relu(upper))


def test_boxy_relu_follows_the_paper():
    head = torch.tensor([[2.0, -2.0, 0.5]])
    beta = torch.tensor([[0.5, 0.5, 0.5]])
    errors = torch.tensor([[[0.5, 0.5, 1.0]]])
    out = hz.relu_boxy(HybridZonotope(head, beta, errors, (7,)))
    # active: unchanged; dead: zero; crossing (l=-1, u=2): box [0, 2]
    torch.testing.assert_close(out.head, torch.tensor([[2.0, 0.0, 1.0]]))
    torch.testing.assert_close(out.beta, torch.tensor([[0.5, 0.0, 1.0]]))
    torch.testing.assert_close(out.errors, torch.tensor([[[0.5, 0.0, 0.0]]]))
    assert out.ids == (7,)


def test_deepz_relu_follows_the_paper():
    z = HybridZonotope(torch.tensor([[0.5]]), torch.tensor([[0.5]]), torch.tensor([[[1.0]]]), (1,))
    out = hz.relu_deepz(z)  # l = -1, u = 2: lam = 2/3, mu = 1/3
    torch.testing.assert_close(out.head, torch.tensor([[0.5 * 2 / 3 + 1 / 3]]))
    torch.testing.assert_close(out.beta, torch.tensor([[0.5 * 2 / 3 + 1 / 3]]))
    torch.testing.assert_close(out.errors, torch.tensor([[[2 / 3]]]))


def test_rows_are_aligned_by_noise_symbol():
    head = torch.zeros(1, 2)
    a = HybridZonotope(head, torch.zeros(1, 2), torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]]), (1, 2))
    b = HybridZonotope(head, torch.zeros(1, 2), torch.tensor([[[0.0, 1.0]], [[-1.0, 0.0]]]), (2, 3))
    s = a + b
    assert s.ids == (1, 2, 3)
    # symbol 2 is shared: its coefficients add; 1 and 3 stay independent
    torch.testing.assert_close(s.errors, torch.tensor([[[1.0, 0.0]], [[0.0, 2.0]], [[-1.0, 0.0]]]))
    d = a - a
    assert d.radius().abs().max() == 0  # x - x = 0 exactly when the symbols are shared


def test_independent_symbols_are_never_merged():
    z = random_zonotope(rows=2)
    w = HybridZonotope(z.head, z.beta, z.errors, hz.fresh_ids(2))
    lower, upper = (z - w).concretize()
    assert (upper - lower > 0).all()  # z - w is not 0: w's symbols are other symbols


def test_correlate_keeps_the_set_and_moves_beta_into_rows():
    z = random_zonotope(rows=2)
    for corr in (hz.correlate_all(z), hz.correlate_max_k(z, 3), hz.correlate_fixed(z, 2)):
        torch.testing.assert_close(corr.concretize()[0], z.concretize()[0])
        torch.testing.assert_close(corr.concretize()[1], z.concretize()[1])
        assert corr.ids[:2] == z.ids and len(set(corr.ids)) == corr.num_errors
    top = hz.correlate_max_k(z, 2)
    upper = z.concretize()[1]
    picked = upper.topk(2, dim=1).indices
    assert (top.beta.gather(1, picked) == 0).all()
    torch.testing.assert_close(top.errors[2:].abs().sum(0).gather(1, picked), z.beta.gather(1, picked))


def test_spec_is_applied_before_concretization():
    z = random_zonotope(rows=3, shape=(4,))
    C = torch.randn(3, 2, 4)
    lower, upper = z.apply_spec(C).concretize()
    points = sample(z, 5000)
    assert_inside(torch.einsum("bsn,kbn->kbs", C, points), lower, upper)
    naive_lower, naive_upper = z.concretize()
    interval_width = torch.einsum("bsn,bn->bs", C.abs(), naive_upper - naive_lower)
    assert ((upper - lower) <= interval_width + 1e-5).all()


def test_sigmoid_tanh_transformers_are_sound():
    z = random_zonotope(rows=3, scale=2.0)
    n = 4000
    b = torch.rand((n,) + tuple(z.shape)) * 2 - 1
    e = torch.rand(n, 3, 1, 1) * 2 - 1
    x = z.head + z.beta * b + (e * z.errors).sum(1)
    for fn, d in ((torch.sigmoid, lambda t: torch.sigmoid(t) * (1 - torch.sigmoid(t))),
                  (torch.tanh, lambda t: 1 - torch.tanh(t) ** 2)):
        out = hz.s_shaped(z, fn, d)
        residual = fn(x) - out.head - (e * out.errors).sum(1)
        assert (residual.abs() <= out.beta + 1e-5).all()


def channels_last_rows(rows):
    return hz.on_folded_rows(lambda t: t.contiguous(memory_format=torch.channels_last), rows)


def test_sum_rows_keeps_the_layout_of_a_row():
    rows = torch.randn(4, 2, 3, 5, 6)
    for layout in (rows, channels_last_rows(rows)):
        total = hz.sum_rows(layout)
        torch.testing.assert_close(total, rows.sum(0))
        assert total.stride() == layout[0].stride()
    flat = torch.randn(3, 2, 7)
    torch.testing.assert_close(hz.sum_rows(flat), flat.sum(0))


def test_channels_last_keeps_values_and_converts_images_only():
    z = random_zonotope(batch=2, shape=(3, 4, 5), rows=3)
    cl = z.channels_last()
    for a, b in zip((cl.head, cl.beta, *cl.errors), (z.head, z.beta, *z.errors)):
        assert a.is_contiguous(memory_format=torch.channels_last) and not a.is_contiguous()
        torch.testing.assert_close(a, b)
    assert cl.ids == z.ids
    flat = random_zonotope(shape=(5,))
    assert flat.channels_last() is flat


def test_concat_and_conv_keep_channels_last():
    """The layout survives the operations of a DenseNet block (conv, ReLU, concatenation,
    concretization), so the hzono pass converts its input only once."""
    z = random_zonotope(batch=2, shape=(3, 6, 6), rows=4).channels_last()
    weight = torch.randn(5, 3, 3, 3)
    conv = z.linear_map(lambda t: torch.nn.functional.conv2d(t, weight, padding=1),
                        abs_fn=lambda t: torch.nn.functional.conv2d(t, weight.abs(), padding=1))
    joined = hz.concat([z, hz.relu(conv)], lambda parts: torch.cat(parts, 1))
    lower, upper = joined.concretize()
    for t in (joined.head, joined.beta, joined.errors[0], lower, upper):
        assert t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()
    reference = hz.concat([contiguous_copy(z), hz.relu(contiguous_copy(conv))], lambda parts: torch.cat(parts, 1))
    torch.testing.assert_close(joined.concretize(), reference.concretize())


def contiguous_copy(z):
    """``z`` with contiguous tensors (the same values and ids): the reference layout."""
    return HybridZonotope(z.head.contiguous(), z.beta.contiguous(), z.errors.contiguous(), z.ids)


def test_product_of_two_zonotopes_over_shared_symbols_is_sound_and_exact_at_a_point():
    """DeepT's multiplication: ``c_y x + c_x y - c_x c_y`` plus ``[-r_x r_y, r_x r_y]``; the
    operands share a noise symbol (a gate computed from the value it gates) and broadcast."""
    torch.manual_seed(0)
    shared = torch.randn(1, 2, 3, 4, 4)
    x = hz.HybridZonotope(torch.randn(2, 3, 4, 4), torch.rand(2, 3, 4, 4) * 0.2, shared, (7,))
    y = hz.HybridZonotope(torch.randn(2, 3, 1, 1), torch.rand(2, 3, 1, 1) * 0.2,
                          shared[:, :, :, :1, :1] * 0.5, (7,))
    lower, upper = hz.product(x, y).concretize()
    e = torch.rand(4000, 1, 1, 1, 1, 1) * 2 - 1
    xs = x.head + x.beta * (torch.rand(4000, 2, 3, 4, 4) * 2 - 1) + (e * shared).sum(1)
    ys = y.head + y.beta * (torch.rand(4000, 2, 3, 1, 1) * 2 - 1) + (e * shared[:, :, :, :1, :1] * 0.5).sum(1)
    products = xs * ys
    assert (products >= lower - 1e-5).all() and (products <= upper + 1e-5).all()
    point = hz.product(hz.HybridZonotope.from_point(x.head), hz.HybridZonotope.from_point(y.head))
    assert torch.equal(point.concretize()[0], x.head * y.head) and torch.equal(point.concretize()[1], x.head * y.head)


def test_interval_relu_gradients_match_the_out_of_place_formula():
    """The box ReLU works in place (memory); its gradient is that of
    ``((relu(h + b) + relu(h - b)) / 2, (relu(h + b) - relu(h - b)) / 2)``."""
    head = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    beta = torch.rand(3, 5, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(2, 3, 5, dtype=torch.float64)
    out = hz.relu_interval(HybridZonotope(head, beta))
    got = torch.autograd.grad((weights[0] * out.head + weights[1] * out.beta).sum(), (head, beta))
    up, lo = torch.relu(head + beta), torch.relu(head - beta)
    want = torch.autograd.grad((weights[0] * (up + lo) / 2 + weights[1] * (up - lo) / 2).sum(), (head, beta))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


def test_a_linear_layer_is_bounded_without_copying_its_weight():
    from lirpa_diffai.bound_ops.linear import gemm_weight_bias

    class Gemm:
        transA, transB, alpha, beta = 0, 1, 1.0, 1.0
    w, b = torch.randn(4, 3), torch.randn(4)
    w2, b2 = gemm_weight_bias(Gemm, w, b)
    assert w2.data_ptr() == w.data_ptr() and b2.data_ptr() == b.data_ptr()
    Gemm.alpha = 2.0
    torch.testing.assert_close(gemm_weight_bias(Gemm, w, b)[0], 2 * w)


def test_correlation_of_a_value_with_only_a_batch_axis():
    """A value of shape (B,) (``amax`` of a (B, n) value): its box part becomes one row per
    sample, the same set (the pure zonotope's ``box_to_rows`` after ReduceMax)."""
    z = hz.HybridZonotope(torch.tensor([1.0, -2.0]), torch.tensor([0.5, 0.0]))
    rows = hz.correlate_where(z, z.beta > 0)
    assert rows.num_errors == 1 and torch.equal(rows.beta, torch.zeros(2))
    torch.testing.assert_close(torch.stack(rows.concretize()), torch.stack(z.concretize()))
    top = hz.correlate_max_k(z, 1)
    torch.testing.assert_close(torch.stack(top.concretize()), torch.stack(z.concretize()))
