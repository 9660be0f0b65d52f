"""The soundness fuzzer (tests/soundness): every operator auto_LiRPA traces, every method of
``lirpa_diffai.BoundedModule``, eval and training mode. Each case gives sound bounds (they
contain samples, corners and PGD points aimed at each bound, and equal f(x) at eps = 0) or
refuses naming the graph node and its operator. A failure prints its seed and a replay command.

Known failures (tests/soundness/known.py, each a finding of issue 10) are expected failures,
strictly: a known case that passes fails the test until its entry is removed.
"""
from __future__ import annotations

from functools import lru_cache

import pytest

from soundness.catalogue import NOT_TRACEABLE, SNIPPETS, bound_classes
from soundness.check import build
from soundness.known import expected_failure
from soundness.methods import METHODS, QUICK
from soundness.sweep import Record, graph_case, operator_case, run

pytestmark = pytest.mark.usefixtures("one_thread")

OPERATORS = sorted(SNIPPETS)
QUICK_GRAPH_SEEDS = range(4)
SLOW_GRAPH_SEEDS = range(4, 40)
SLOW_OPERATOR_SEEDS = (1, 2)


@lru_cache(maxsize=None)
def cached_operator_case(operator: str, seed: int):
    return operator_case(operator, seed)


def expect(record: Record) -> None:
    """Pass a sound or refused case; xfail a known failure; fail the rest with a replay."""
    known = expected_failure(record.code, record.method, record.training)
    if record.outcome.ok:
        if known is not None and record.operator != "graph":
            pytest.fail(f"known failure no longer fails (strict xfail): {known.finding}; "
                        f"remove its entry from tests/soundness/known.py\n{record.report()}")
        return
    if record.known is not None:
        pytest.xfail(record.known.finding)
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
    case = cached_operator_case(operator, 0)
    try:
        bounded = build(case.model, case.x, METHODS["IBP"], training=False)
    except Exception as error:  # noqa: BLE001
        known = expected_failure(case.model.describe(), "IBP", False)
        if known is None:
            raise
        pytest.xfail(f"{known.finding} ({type(error).__name__}: {error})")
    traced = {type(node).__name__ for node in bounded._modules.values()}
    assert operator in traced, f"{case.model.describe()} traced into {sorted(traced)}, not {operator}"


# ------------------------------------------------------------------ one operator at a time
@pytest.mark.parametrize("method", QUICK)
@pytest.mark.parametrize("operator", OPERATORS)
def test_operator_sound_or_refused_eval(operator, method):
    expect(run(cached_operator_case(operator, 0), operator, method, training=False))


@pytest.mark.parametrize("operator", OPERATORS)
def test_operator_sound_or_refused_training_hzono(operator):
    expect(run(cached_operator_case(operator, 0), operator, "hzono[deepz,rows=all]", training=True))


@pytest.mark.slow
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("operator", OPERATORS)
def test_operator_sound_or_refused_all_methods(operator, method, training):
    for seed in (0,) + SLOW_OPERATOR_SEEDS:
        if seed == 0 and method in QUICK and not training:
            continue  # the quick test's case
        expect(run(cached_operator_case(operator, seed), operator, method, training))


# ------------------------------------------------------------------ random graphs
def check_graph(seed: int, methods) -> None:
    case = graph_case(seed)
    failures, known = [], []
    for method in methods:
        for training in (False, True):
            record = run(case, "graph", method, training)
            if not record.outcome.ok:
                (known if record.known else failures).append(record)
    assert not failures, "\n\n".join(r.report() for r in failures)


@pytest.mark.parametrize("seed", QUICK_GRAPH_SEEDS)
def test_random_graph_sound_or_refused(seed):
    check_graph(seed, QUICK)


@pytest.mark.slow
@pytest.mark.parametrize("seed", SLOW_GRAPH_SEEDS)
def test_random_graph_sound_or_refused_all_methods(seed):
    check_graph(seed, list(METHODS))
