"""The branching heuristics of branch and bound (``verify.branching``) and what came with them
(bounding only the rows a parent left open, the stall-driven falsifier): every subdomain that
a run with each heuristic bounds has bounds that hold on the sampled inputs inside it, every
heuristic's answers agree with the exact MIP, and each score is the formula it documents."""
import time

import pytest
import torch

from lirpa_diffai import BoundedModule
from lirpa_diffai.verify import BaBOptions, robustness_spec, verify
from lirpa_diffai.verify import bab, branching, escalation
from lirpa_diffai.verify.bounding import Domains, root_bounds
from lirpa_diffai.verify.branching import babsr, fsb, intercept

from tests.verify.test_verify import assert_agrees_with_mip, box, mlp

pytest.importorskip("highspy", reason="the exact LP/MIP needs highspy")

NAMES = list(branching.HEURISTICS)


def recorded_run(monkeypatch, net, x, eps, name, seconds=1.5):
    """Branch and bound on one sample with heuristic ``name`` (no attack); returns the
    problem, the outcome and every batch of subdomains it bounded."""
    seen = []

    def keep(problem, children, options):
        out = original(problem, children, options)
        seen.append(out[0])
        return out
    original = bab.bound_children
    monkeypatch.setattr(bab, "bound_children", keep)
    bm = BoundedModule(net, x)
    spec = robustness_spec(net(x).argmax(1), 4)
    x_L, x_U = box(x, eps)
    lb, lower, upper = root_bounds(bm, x_L, x_U, spec.C, spec.threshold)
    root = Domains(lower, upper, [torch.zeros(1, t[0].numel(), dtype=torch.int8)
                                  for t in lower], lb)
    outcome = bab.branch_and_bound(bm, net, x_L, x_U, spec, root, time.perf_counter() + seconds,
                                   BaBOptions(attack_every=0, batch=8, branching=name))
    return spec, x_L, x_U, outcome, seen


@pytest.mark.parametrize("name", NAMES)
def test_every_subdomain_bound_holds_on_its_sampled_inputs(monkeypatch, name):
    """Inputs whose pre-activations satisfy a subdomain's splits have every spec margin
    above that subdomain's bound, rows kept from the parent included (a subdomain reported
    empty, bound +inf, holds no sampled input)."""
    torch.manual_seed(0)
    net = mlp(3, n_in=4, width=12, depth=2)
    x = torch.rand(1, 4)
    spec, x_L, x_U, outcome, seen = recorded_run(monkeypatch, net, x, 0.35, name)
    assert outcome.subdomains >= 8 and seen
    pts = x_L + (x_U - x_L) * torch.rand(20000, 4)
    with torch.no_grad():
        z1 = net[1](net[0](pts))
        z2 = net[3](net[2](z1))
        margins = spec.margins(net(pts))
    checked = 0
    for domains in seen:
        for n in range(len(domains)):
            inside = torch.ones(len(pts), dtype=torch.bool)
            for z, s in zip((z1, z2), domains.split):
                sign = s[n].float()
                inside &= ((sign * z >= 0) | (sign == 0)).all(dim=1)
            if inside.any():
                assert (margins[inside].min(0).values >= domains.lb[n] - 1e-4).all(), name
                checked += 1
    assert checked >= 8


@pytest.mark.parametrize("name", NAMES)
def test_answers_agree_with_the_mip(name):
    """BaB alone (no PGD) with each heuristic: every decided sample is the MIP's answer,
    and most are decided."""
    eps, net = 0.08, mlp(2)
    torch.manual_seed(5)
    x = torch.rand(3, 1, 4, 4)
    y = net(x).argmax(1)
    results = verify(net, x, y, eps, timeout=10, attack_restarts=0,
                     options=BaBOptions(attack_every=0, batch=16, branching=name))
    assert assert_agrees_with_mip(net, x, y, eps, results, 4) >= 2


@pytest.mark.parametrize("name", NAMES)
def test_rankings_name_distinct_unfixed_neurons(name):
    """Each domain's ranked neurons are unstable, unsplit and never repeated (a repeated
    neuron would split a domain into a copy of itself)."""
    torch.manual_seed(1)
    net = mlp(3, n_in=4, width=12, depth=2)
    x = torch.rand(1, 4)
    bm = BoundedModule(net, x)
    spec = robustness_spec(net(x).argmax(1), 4)
    x_L, x_U = box(x, 0.35)
    lb, lower, upper = root_bounds(bm, x_L, x_U, spec.C, spec.threshold)
    split = [torch.zeros(1, 12, dtype=torch.int8) for _ in lower]
    problem = branching.Problem(bm, x_L, x_U, spec, [None, None])
    domains, layer, index = bab.bound_children(problem, Domains(lower, upper, split, lb),
                                               BaBOptions(branching=name))
    unstable = domains.unstable()
    picks = [(int(li), int(ii)) for li, ii in zip(layer[0], index[0]) if li >= 0]
    assert picks and len(set(picks)) == len(picks)
    assert all(bool(unstable[li][0, ii]) for li, ii in picks)


def test_unknown_heuristic_is_refused_by_name():
    with pytest.raises(ValueError, match="known: intercept, babsr, fsb, kfsb"):
        BaBOptions(branching="widest")
    assert branching.heuristic("KFSB") is branching.HEURISTICS["kfsb"]


def test_certify_methods_take_the_heuristic_after_a_colon():
    from lirpa_diffai.pipeline.certify_run import parse_methods
    assert parse_methods("CROWN,BaB:KFSB") == ["CROWN", "BaB:kfsb"]
    assert parse_methods("BaB") == ["BaB"]
    with pytest.raises(ValueError, match="unknown branching heuristic 'nope'"):
        parse_methods("BaB:nope")


def test_intercept_and_babsr_scores_are_their_formulas():
    """Hand values: l = -1, u = 3 (intercept 0.75, slope 0.75), lambda = -2, bias b = 0.5."""
    lo, up = torch.tensor([[-1.0, 0.5]]), torch.tensor([[3.0, 2.0]])
    lam, bias = torch.tensor([[-2.0, -2.0]]), torch.tensor([0.5, 0.5])
    s = intercept.scores(lo, up, lam)
    assert s[0, 0] == pytest.approx(2 * 0.75 + 1e-6 * 1)
    assert s[0, 1] == pytest.approx(0.0, abs=1e-12)   # stable: no intercept, no width
    b = babsr.scores(lo, up, lam, bias)
    # min((0.75 - 1)(-1), 0.75 (-1)) + (-2)(0.75) = -0.75 - 1.5
    assert b[0, 0] == pytest.approx(2.25)


def test_babsr_reads_the_bias_of_linear_and_conv_pre_activations():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(8, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    with torch.no_grad():
        net[0].bias.copy_(torch.tensor([1.0, -2.0]))
        net[3].bias.copy_(torch.tensor([0.5, 0.25, -1.0]))
    bm = BoundedModule(net, torch.zeros(1, 1, 4, 4))
    conv, linear = [babsr.pre_activation_bias(n) for n in bab.split_relus(bm)]
    assert conv.tolist() == [1.0] * 4 + [-2.0] * 4
    assert linear.tolist() == [0.5, 0.25, -1.0]


def test_fsb_picks_the_candidate_whose_children_bound_best():
    """FSB's first choice has a CROWN bound of its worse child at least that of every other
    filtered candidate's."""
    torch.manual_seed(2)
    net = mlp(4, n_in=4, width=16, depth=2)
    x = torch.rand(1, 4)
    bm = BoundedModule(net, x)
    spec = robustness_spec(net(x).argmax(1), 4)
    x_L, x_U = box(x, 0.3)
    lb, lower, upper = root_bounds(bm, x_L, x_U, spec.C, spec.threshold)
    domains = Domains(lower, upper, [torch.zeros(1, 16, dtype=torch.int8)] * 2, lb)
    problem = branching.Problem(bm, x_L, x_U, spec, [None, None])
    lam = [torch.randn(1, 16), torch.randn(1, 16)]
    layer, index = fsb.candidates(problem, domains, lam, 3)
    valid = layer[0] >= 0
    row = lb.argmin(1).expand(int(valid.sum()))
    children = fsb.children_bounds(problem, [t.expand(len(row), -1) for t in lower],
                                   [t.expand(len(row), -1) for t in upper],
                                   [s.expand(len(row), -1) for s in domains.split], row,
                                   layer[0][valid], index[0][valid])
    best_layer, best_index = fsb.rank(problem, domains, lam, 1, per_score=3)
    picked = ((layer[0][valid] == best_layer[0, 0]) & (index[0][valid] == best_index[0, 0]))
    assert picked.sum() == 1
    worse_child = children.min(dim=1).values
    assert worse_child[picked] >= worse_child.max() - 1e-6


def test_only_open_rows_are_bounded_again():
    lb = torch.tensor([[0.5, -1.0, -0.2], [-0.3, 0.1, 0.2]])
    assert bab.open_rows(lb).tolist() == [[1, 2], [0, 0]]


def test_the_falsifier_escalates_only_while_the_bound_stalls():
    rising = escalation.Falsifier(every=5, started=time.perf_counter() - 100)
    plans = [rising.plan(r, -1.0 + 0.1 * r) for r in range(1, 11)]
    assert plans == [None] * 4 + [(2, 20)] + [None] * 4 + [(2, 20)]
    flat = escalation.Falsifier(every=5, started=time.perf_counter() - 100)
    plans = [flat.plan(r, -0.5) for r in range(1, 13)]
    assert plans[5] == (4, escalation.STRONG_STEPS) and plans[10] == (8, escalation.STRONG_STEPS)
    spent = escalation.Falsifier(every=5, started=time.perf_counter() - 100,
                              escalated_seconds=30.0)   # over a quarter of 100 s
    assert all(p in (None, (2, 20)) for p in (spent.plan(r, -0.5) for r in range(1, 13)))
    assert escalation.Falsifier(every=0).plan(5, -0.5) is None
