"""``certify``'s figures as DiffAI's tester prints them (width, Pr[proved], Pr[correct and
proved], Pr[correct | proved]), each compared with an independent count: DiffAI's Box and
HBox domains computed by hand on a network with one hidden layer."""
import pytest
import torch
from torch import nn

from lirpa_diffai import BoundedModule
from lirpa_diffai.evaluation.margins import certified_mask
from lirpa_diffai.pipeline.certify_run import MethodRow, evaluate_network, format_diffai_table

K = 3          # classes
EPS = 0.03


@pytest.fixture(scope="module")
def case():
    """A 4-6-3 ReLU network, 300 inputs inside [0.2, 0.8]^4 (eps never reaches the data
    range's clipping) and labels drawn at random, so that some wrong predictions are proved."""
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, K)).eval()
    with torch.no_grad():
        net[0].weight.mul_(8)    # two classes predicted, about half the samples proved
    x = 0.2 + 0.6 * torch.rand(300, 4)
    y = torch.randint(0, K, (300,))
    return net, x, y


def zonotope_count(net, x, y, eps, correlated: bool):
    """DiffAI's domains by hand on ``net``: the input box as a box (``correlated=False``:
    Box, also IBP) or with one error row per input dimension (HBox), DiffAI's boxy ReLU
    (a neuron whose interval crosses 0 becomes the box [0, u]), the last layer merged with
    each margin row ``e_pred - e_j``, and DiffAI's width ``sum_k (beta_k + sum_e |E_ek|)``.
    Returns (proved, correct, width) per sample."""
    (w1, b1), (w2, b2) = ((m.weight.detach(), m.bias.detach()) for m in (net[0], net[2]))
    n, d = x.shape
    head = x @ w1.T + b1
    if correlated:               # errors (B, rows, hidden): row e is eps * W1[:, e]
        errors, beta = (eps * w1.T).expand(n, d, -1), torch.zeros_like(head)
    else:
        errors, beta = torch.zeros(n, 0, head.shape[1]), eps * w1.abs().sum(dim=1).expand(n, -1)
    radius = beta + errors.abs().sum(dim=1)
    lo, hi = head - radius, head + radius
    crossing, positive = (lo < 0) & (hi > 0), head > 0
    keep = (~crossing & positive).float()
    head = torch.where(crossing, hi / 2, head * keep)
    beta = torch.where(crossing, hi / 2, beta * keep)
    errors = errors * keep.unsqueeze(1)
    pred = net(x).argmax(1)
    proved = torch.ones(n, dtype=torch.bool)
    for j in range(K):
        c = w2[pred] - w2[j]                       # (B, hidden): the margin row through W2
        lb = ((c * head).sum(1) + b2[pred] - b2[j] - (c.abs() * beta).sum(1)
              - (errors * c.unsqueeze(1)).sum(2).abs().sum(1))
        proved &= (pred == j) | (lb > 0)
    width = beta @ w2.abs().sum(dim=0) + (errors @ w2.T).abs().sum(dim=(1, 2))
    return proved, pred == y, width


@pytest.mark.parametrize("method, rows", [("IBP", 0), ("hzono", 0), ("HBox", "all")])
def test_each_figure_equals_the_independent_count(case, method, rows):
    net, x, y = case
    proved, correct, width = zonotope_count(net, x, y, EPS, correlated=rows == "all")
    # the regime in which every figure means something: some proved, not all, and some
    # proved samples wrongly classified (Pr[correct | proved] < 1)
    assert 0 < proved.sum() < len(x) and (proved & ~correct).any() and (proved & correct).any()
    bm = BoundedModule(net, x[:1], bound_opts={"hzono": {"correlate_input": rows}}).eval()
    report = evaluate_network(net, bm, x, y, EPS, [method], batch_size=128, num_classes=K)
    row, = report.methods
    n = len(x)
    assert row.proved == pytest.approx(proved.sum().item() / n)
    assert row.certified == pytest.approx((proved & correct).sum().item() / n)
    assert row.correct_given_proved == pytest.approx(
        (proved & correct).sum().item() / proved.sum().item())
    assert row.mean_width == pytest.approx(width.mean().item(), rel=1e-5)
    assert row.seconds > 0 and report.clean == pytest.approx(correct.float().mean().item())


def test_crown_certified_is_the_label_margins_proof(case):
    """Pr[correct and proved] with margins of the prediction equals the certified accuracy
    with margins of the label (a wrong prediction can never be proved for its label); CROWN's
    width is at most IBP's on this one-hidden-layer network."""
    net, x, y = case
    bm = BoundedModule(net, x[:1]).eval()
    report = evaluate_network(net, bm, x, y, EPS, ["IBP", "CROWN"], batch_size=300,
                              num_classes=K)
    ibp, crown = report.methods
    assert crown.certified == pytest.approx(
        certified_mask(bm, x, y, EPS, "CROWN", num_classes=K).float().mean().item())
    assert crown.proved >= crown.certified and crown.mean_width <= ibp.mean_width + 1e-6


def test_nothing_proved_gives_zero_and_the_table_marks_missing_figures(case):
    net, x, y = case
    report = evaluate_network(net, BoundedModule(net, x[:1]).eval(), x[:40], y[:40], 1.0,
                              ["IBP"], num_classes=K)
    assert report.methods[0].proved == 0 and report.methods[0].correct_given_proved == 0.0
    table = format_diffai_table([MethodRow("BaB", 0.5, 2.0), MethodRow("CROWN", error="boom")])
    assert "| BaB | - | - | 0.500 | - | 2.00 |" in table and "| CROWN | failed: boom |" in table
