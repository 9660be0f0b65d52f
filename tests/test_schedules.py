"""Schedules of the training DSL (paper section 4.1): values against hand computations."""
import re

import pytest

from lirpa_diffai.goals import (Const, GoalSyntaxError, Lin, Until, parse_schedule,
                                step_schedule)


@pytest.mark.parametrize("t, expected", [
    (0, 0.0), (5, 0.0), (10, 0.0),      # warm-up: the start value for 10 epochs
    (25, 0.1),                          # (25 - 10) / 150
    (85, 0.5), (160, 1.0), (400, 1.0),  # then clamped at the end value
])
def test_lin_start_end_steps_warmup(t, expected):
    assert parse_schedule("Lin(0,1,150,10)")(t) == pytest.approx(expected)


def test_lin_other_values():
    assert parse_schedule("Lin(0,0.5,150,10)")(47.5) == pytest.approx(0.125)
    assert parse_schedule("Lin(0,0.35,150,10)")(160) == pytest.approx(0.35)
    assert parse_schedule("Lin(0,1,20,20)")(30) == pytest.approx(0.5)
    assert parse_schedule("Lin(0,1,20,20)")(19.9) == 0.0
    # decreasing, fractional epochs, warm-up defaulting to 0
    assert parse_schedule("Lin(1, 0.1, 10)")(2.5) == pytest.approx(1 - 0.9 * 0.25)
    assert Lin(1, 0.1, 10) == Lin(1, 0.1, 10, 0)


def test_lin_with_zero_steps_is_a_step():
    s = Lin(0, 1, 0, 3)
    assert [s(t) for t in (0, 2.99, 3, 10)] == [0, 0, 1, 1]


def test_until_shifts_time_for_the_second_schedule():
    s = parse_schedule("Until(10, Lin(0,1,10), Lin(1,0,10))")
    assert s(5) == pytest.approx(0.5)
    assert s(10) == pytest.approx(1.0)      # s2(0)
    assert s(15) == pytest.approx(0.5)      # s2(5)
    assert s(30) == pytest.approx(0.0)


def test_paper_deeploss_weight_schedules():
    # SkipNet-18 Combo: Until(90, Lin(0,0.2,50,40), 0)
    combo = parse_schedule("Until(90, Lin(0,0.2,50,40), 0)")
    assert combo(40) == 0.0 and combo(65) == pytest.approx(0.1) and combo(89) == \
        pytest.approx(0.2 * 49 / 50) and combo(90) == 0.0
    # ResNet-Large LargeCombo: Until(24, Lin(0,0.1,20,4), Lin(0.1,0,50))
    large = parse_schedule("Until(24, Lin(0,0.1,20,4), Lin(0.1,0,50))")
    assert large(14) == pytest.approx(0.05)
    assert large(30) == pytest.approx(0.1 - 0.1 * 6 / 50)
    assert parse_schedule("Until(1,0,Lin(0.5,0,50,3))")(0.5) == 0.0
    assert parse_schedule("Until(1,0,Lin(0.5,0,50,3))")(29) == pytest.approx(0.25)


def test_schedules_nest_in_every_argument():
    s = Lin(0, Lin(0, 2, 10), 10)           # end value itself annealed
    assert s(5) == pytest.approx(0.5 * 1.0)
    assert Until(Lin(5, 1, 4), 1, 2)(3) == 2          # threshold 5 - 3 = 2 <= t: s2
    assert Until(Lin(5, 1, 4), 1, 2)(1) == 1          # threshold 4 > t: s1


def test_numbers_are_constants():
    assert parse_schedule("0.5") == Const(0.5) == parse_schedule(0.5)
    assert parse_schedule("3")(123.0) == 3.0
    assert parse_schedule({"Lin": [0, 1, 150, 10]}) == Lin(0, 1, 150, 10)
    assert parse_schedule("1e-3") == Const(0.001)
    assert parse_schedule("-2") == Const(-2)


@pytest.mark.parametrize("text", [
    "Lin(0, 1, 150, 10)", "Until(10, 0, Lin(0, 0.5, 150, 10))", "0.125", "1e-05",
    "Lin(Lin(0, 1, 2, 0), Until(3, 1, 2), 150, 10)",
])
def test_str_round_trips(text):
    s = parse_schedule(text)
    assert str(s) == text
    assert parse_schedule(str(s)) == s and hash(parse_schedule(str(s))) == hash(s)


def test_step_schedule_multiplies_at_milestones():
    s = step_schedule([10, 20, 250, 300], 0.1)
    for t, expected in [(0, 1), (9.99, 1), (10, 0.1), (19, 0.1), (20, 0.01), (260, 1e-3),
                        (299, 1e-3), (300, 1e-4), (1000, 1e-4)]:
        assert s(t) == pytest.approx(expected)
    with pytest.raises(ValueError, match="increasing"):
        step_schedule([10, 5], 0.1)


@pytest.mark.parametrize("text, message", [
    ("Lin(0,1)", "Lin takes 3 to 4 arguments (start, end, steps, warmup=0), got 2"),
    ("Lin(0,1,-5)", "'steps' must be >= 0"),
    ("Until(1, 2)", "Until takes 3 arguments (m, s1, s2), got 2"),
    ("Box", "expected a schedule or a number, got goal Box"),
    ("Linn(0, 1, 2)", "unknown constructor 'Linn'; did you mean 'Lin'?"),
    ("Lin(0, Box, 2)", "Lin argument 'end' must be a schedule or a number, got goal Box"),
    ("Lin(0, 1, 2", "expected ')' or ','"),
])
def test_bad_schedules_are_refused(text, message):
    with pytest.raises(GoalSyntaxError, match=re.escape(message)):
        parse_schedule(text)
