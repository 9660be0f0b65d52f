"""The soundness fuzzer (tests/soundness): every operator auto_LiRPA traces, every method of
``lirpa_diffai.BoundedModule``, eval and training mode. Each case gives sound bounds (they
contain samples, corners and PGD points aimed at each bound, and equal f(x) at eps = 0) or
refuses naming the graph node and its operator. A failure prints its seed and a replay command.

Value ranges (tests/soundness/ranges.py): every operator case moved to negative, positive, tiny
and huge values and next to a pole, and functions with a pole or a domain boundary on each side
of it. Stateful sequences (tests/soundness/stateful.py): wrap, change the model
(``load_state_dict``, in-place edits, replaced tensors), bound again.

Known failures (tests/soundness/known.py, each a finding of issue 10; the operator cases in
tests/soundness/expected_failures.txt) are expected failures, strictly: a listed case that
passes fails the test until its line is removed.
"""
from __future__ import annotations

from functools import lru_cache

import pytest

from tests.soundness.catalogue import NOT_TRACEABLE, SNIPPETS, bound_classes
from tests.soundness.check import classify_error, run_case
from tests.soundness.known import case_key, expected_failure, finding_id, load_expected
from tests.soundness.methods import METHODS, QUICK
from tests.soundness.ranges import POLES, RANGES, in_range, pole_case
from tests.soundness.stateful import ROUTES, changed_case
from tests.soundness.sweep import WITNESS, Record, graph_case, operator_case, run, traced_classes
from tests.soundness.tiers import family, quick_methods, quick_regimes


OPERATORS = sorted(SNIPPETS)
QUICK_GRAPH_SEEDS = range(3)
SLOW_GRAPH_SEEDS = range(3, 15)


EXPECTED = load_expected()


@lru_cache(maxsize=None)
def cached_operator_case(operator: str, seed: int):
    return operator_case(operator, seed)


def expect(record: Record) -> None:
    """Pass a sound or refused case; xfail a listed known failure (strictly: a listed case
    that passes fails); fail the rest with a replay command."""
    key = case_key(record.operator, record.seed, record.method, record.training)
    expected = EXPECTED.get(key)
    if record.outcome.ok:
        if expected is not None:
            pytest.fail(f"[XPASS(strict)] {key} is listed as failing with {expected} but passes: "
                        f"delete its line from tests/soundness/expected_failures.txt", pytrace=False)
        return
    if expected is not None and record.known is not None and finding_id(record.known) == expected:
        pytest.xfail(f"{key}: {record.known.finding}")
    pytest.fail(record.report(), pytrace=False)


# ------------------------------------------------------------------ operator coverage
def test_every_bound_class_has_a_snippet_or_a_reason():
    classes = set(bound_classes())
    missing = sorted(classes - set(SNIPPETS) - set(NOT_TRACEABLE))
    assert not missing, (f"Bound classes without a torch snippet in tests/soundness/catalogue.py "
                         f"and without a NOT_TRACEABLE reason: {missing}")
    assert not set(SNIPPETS) & set(NOT_TRACEABLE)
    stale = sorted((set(SNIPPETS) | set(NOT_TRACEABLE)) - classes)
    assert not stale, f"catalogue entries that are no Bound class any more: {stale}"


@pytest.mark.parametrize("operator", OPERATORS)
def test_snippet_traces_into_its_bound_class(operator):
    """The operator's graph holds its Bound class, or its construction is refused by name."""
    case = cached_operator_case(operator, 0)
    try:
        traced = traced_classes(case)
    except Exception as error:  # noqa: BLE001
        outcome = classify_error(error, None)
        if outcome.kind == "refused":
            return
        known = expected_failure(case.model.describe(), "IBP", False, outcome)
        if known is None:
            raise
        pytest.xfail(f"{known.finding} ({type(error).__name__}: {error})")
    assert operator in traced, f"{case.model.describe()} traced into {sorted(traced)}, not {operator}"


# ------------------------------------------------------------------ one operator at a time
def operator_params():
    """(operator, method, mode) for seed 0, every method in both modes: in the quick run the
    cases tests/soundness/tiers.py draws for the operator (one or two methods of each family in
    eval mode, two in training mode), the rest in the slow one."""
    for operator in OPERATORS:
        quick = quick_methods(operator, list(METHODS))
        for method in METHODS:
            for training in (False, True):
                marks = () if (method, training) in quick else (pytest.mark.slow,)
                yield pytest.param(operator, method, training, marks=marks,
                                   id=f"{operator}-{method}-{'train' if training else 'eval'}")


def test_the_quick_tier_runs_every_method_in_both_modes_on_some_operator():
    """The draw of tests/soundness/tiers.py leaves no method (nor mode) to the slow tier alone,
    and gives every operator each family in eval mode."""
    drawn = [quick_methods(operator, list(METHODS)) for operator in OPERATORS]
    for training in (False, True):
        missing = set(METHODS) - {method for cases in drawn for method, mode in cases if mode == training}
        assert not missing, f"no operator runs {sorted(missing)} in {'training' if training else 'eval'} mode quickly"
    families = {family(method) for method in METHODS}
    for operator, cases in zip(OPERATORS, drawn):
        assert {family(method) for method, mode in cases if not mode} == families, operator


@pytest.mark.parametrize("operator,method,training", operator_params())
def test_operator_sound_or_refused(operator, method, training):
    expect(run(cached_operator_case(operator, 0), operator, method, training))


# ------------------------------------------------------------------ random graphs
def check_graph(seed: int, methods) -> None:
    """Every method on the random graph of ``seed`` in both modes: sound, refused, or a
    failure that a known finding explains."""
    case = graph_case(seed)
    failures = []
    for method in methods:
        for training in (False, True):
            record = run(case, "graph", method, training)
            if not record.outcome.ok and record.known is None:
                failures.append(record)
    assert not failures, "\n\n".join(r.report() for r in failures)


@pytest.mark.parametrize("seed", QUICK_GRAPH_SEEDS)
def test_random_graph_sound_or_refused(seed):
    """The methods tests/soundness/tiers.py draws for the seed (one or two of each family)."""
    check_graph(seed, sorted({method for method, _ in quick_methods(f"graph {seed}", list(METHODS))}))


@pytest.mark.slow
@pytest.mark.parametrize("seed", SLOW_GRAPH_SEEDS)
def test_random_graph_sound_or_refused_all_methods(seed):
    check_graph(seed, list(METHODS))


# ------------------------------------------------------------------ value ranges
POLE_METHODS = ("IBP", "CROWN", "CROWN-IBP", "alpha-CROWN", "forward", "forward+backward", "CROWN-hzono",
                "hzono[boxy,rows=0]", "hzono[deepz,rows=all]", "ZBox")
# the zonotope domains on the elementary functions' value ranges too (their transformers refuse
# a range leaving the domain, by node)
ZONOTOPE_RANGE_METHODS = ("hzono[boxy,rows=0]", "hzono[deepz,rows=all]", "ZBox")
ELEMENTARY = ("BoundAbs", "BoundDiv", "BoundExp", "BoundLog", "BoundPow", "BoundReciprocal", "BoundSqrt")
KINKED = ("BoundAbs", "BoundATenHeaviside", "BoundAtan", "BoundClip", "BoundCos", "BoundDiv", "BoundExp",
          "BoundLeakyRelu", "BoundLog", "BoundMaxPool", "BoundMul", "BoundPow", "BoundReciprocal",
          "BoundReduceMax", "BoundRelu", "BoundSigmoid", "BoundSin", "BoundSoftplus", "BoundSqrt",
          "BoundTan", "BoundTanh")
MOVED = [regime for regime in RANGES if regime != "straddling"]  # straddling: the cases above


def assert_sound_or_refused(case, label: str, methods, training: bool = False) -> None:
    failures = []
    for method in methods:
        outcome = run_case(case, METHODS[method], training, **WITNESS)
        if not outcome.ok:
            failures.append(f"{outcome.kind}: {method} ({'training' if training else 'eval'} mode) on "
                            f"{label}: {outcome.detail}\n  graph:\n    "
                            + case.model.describe().replace("\n", "\n    "))
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize("regime", sorted(RANGES))
@pytest.mark.parametrize("code", sorted(POLES))
def test_pole_function_sound_or_refused(code, regime):
    """A box on either side of the pole, next to it, across it (refused), tiny and huge."""
    case = pole_case(code, regime)
    if case is None:
        pytest.skip(f"{code} is undefined on the {regime} box")
    assert_sound_or_refused(case, f"{code} on the {regime} box", POLE_METHODS)


def range_params():
    """Every operator in every moved range: in the quick run the kinked operators in each range
    and the others in two ranges drawn for each (tests/soundness/tiers.py)."""
    for operator in OPERATORS:
        quick = MOVED if operator in KINKED else quick_regimes(operator, MOVED)
        for regime in MOVED:
            marks = () if regime in quick else (pytest.mark.slow,)
            yield pytest.param(operator, regime, marks=marks, id=f"{operator}-{regime}")


@pytest.mark.parametrize("operator,regime", range_params())
def test_operator_sound_or_refused_on_value_ranges(operator, regime):
    methods = ("CROWN", "forward", "IBP") + (ZONOTOPE_RANGE_METHODS if operator in ELEMENTARY else ())
    assert_sound_or_refused(in_range(cached_operator_case(operator, 0), regime),
                            f"{operator}'s case moved to the {regime} range", methods)


@pytest.mark.slow
@pytest.mark.parametrize("regime", MOVED)
@pytest.mark.parametrize("operator", OPERATORS)
def test_operator_sound_or_refused_on_value_ranges_all_methods(operator, regime):
    case = in_range(cached_operator_case(operator, 0), regime)
    for training in (False, True):
        assert_sound_or_refused(case, f"{operator}'s case moved to the {regime} range", list(METHODS), training)


# ------------------------------------------------------------------ a model that changes
@pytest.mark.parametrize("route", sorted(ROUTES))
def test_changed_model_sound_or_refused(route):
    case = changed_case(graph_case(0), route)
    for training in (False, True):
        assert_sound_or_refused(case, f"graph 0 changed by {route}", ("IBP", "CROWN", "hzono[boxy,rows=0]"),
                                training)


@pytest.mark.slow
@pytest.mark.parametrize("route", sorted(ROUTES))
@pytest.mark.parametrize("seed", range(1, 6))
def test_changed_model_sound_or_refused_all_methods(seed, route):
    case = changed_case(graph_case(seed), route)
    for training in (False, True):
        assert_sound_or_refused(case, f"graph {seed} changed by {route}", QUICK, training)
