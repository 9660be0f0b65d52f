"""The goal DSL's notation and YAML forms, and the training-configuration loader."""
import re

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from lirpa_diffai.goals import (IFGSM, BiSample, Box, GoalSyntaxError, Lin, Mix,
                                Normal, Origin, Point, Sample, Sub, Uniform, Until, parse_goal,
                                parse_schedule, to_mapping)
from lirpa_diffai.training.config import TrainConfig, check_network_in_zoo, load_config, parse_config
from lirpa_diffai.training.errors import ConfigError
from tests.support import EXAMPLE_GOALS

EXAMPLES = sorted(EXAMPLE_GOALS.glob("*.yaml"))

# The paper's Table 2, verbatim (k instantiated), except two misprints noted below.
TABLE2 = {
    "Baseline": "Mix(Point,Sub(Lin(0,1,150,10),Box),Lin(0,0.5,150,10))",
    "InSamp": "Mix(Point,Sample(Lin(0,1,150,10),0.5,Normal,Box),Lin(0,0.5,150,10))",
    "InSampLPA": "Mix(Point,Sub(Lin(0,1,150,10),Sample(Lin(0,1,150,10),0.5,Normal,Box)),"
                 "Lin(0,0.5,150,10))",
    "AdvkIS": "Mix(Sub(Lin(0,1,20,20),IFGSMk),Sample(Lin(0,1,150,10),0.5,Normal,Box),"
              "Lin(0,0.5,150,10))",
    "AdvkISLPA": "Mix(Sub(Lin(0,1,20,20),IFGSMk),Sub(Lin(0,1,150,10),Sample(Lin(0,1,150,10),"
                 "0.5,Normal,Box)),Lin(0,0.5,150,10))",
    # printed "Sample(Lin(0,1,150,10),Uniform1,Box)"
    "AdvkISLPAUS": "Mix(Sub(Lin(0,1,20,20),IFGSMk),Sub(Lin(0,1,150,10),Sample(Lin(0,1,150,10),"
                   "1,Uniform,Box)),Lin(0,0.35,150,10))",
    "BaselineS18": "Mix(Point,Sub(Lin(0,1,200,40),Box),Lin(0,0.5,200,40))",
    "InSampS18": "Mix(Point,Sample(Lin(0,1,200,40),0.5,Normal,Box),Lin(0,0.5,200,40))",
    "AdvkISS18": "Mix(Sub(Lin(0,1,20,20),IFGSMk),Sample(Lin(0,1,200,40),0.5,Normal,Box),"
                 "Lin(0,0.5,200,40))",
    "AdvkISLPAR18": "Mix(Sub(Lin(0,1,20,20),IFGSMk),Sub(Lin(0,1,200,40),Sample(Lin(0,1,200,40),"
                    "1,Uniform,Box)),Lin(0,0.5,200,40))",
    "InSampLPAR34": "Mix(Point,Sub(Lin(0,1,200,40),Sample(Lin(0,1,200,40),1,Uniform,Box)),"
                    "Lin(0,0.5,200,40))",
    "AdvkISLPAD100": "Mix(IFGSMk,Sub(Lin(0,1,150,50),Sample(Lin(0,1,150,50),1,Uniform,Box)),"
                     "Lin(0,0.5,150,50))",
    # printed "Mix(IFGSM2,BiSample(Sub(Lin(0,1,150,30),IFGSM3),Lin(0,0.6,200,30))"
    "BiAdvL": "Mix(IFGSM2,BiSample(Sub(Lin(0,1,150,30),IFGSM3),Box),Lin(0,0.6,200,30))",
}
SCHEMES = [(name, text.replace("IFGSMk", f"IFGSM{k}"))
           for name, text in TABLE2.items() for k in ((1, 3, 5) if "IFGSMk" in text else (0,))]


@pytest.mark.parametrize("name, text", SCHEMES)
def test_table2_parses_and_round_trips(name, text):
    goal = parse_goal(text)
    assert parse_goal(str(goal)) == goal
    assert hash(parse_goal(str(goal))) == hash(goal)
    assert str(parse_goal(str(goal))) == str(goal)
    assert parse_goal(to_mapping(goal)) == goal
    assert str(goal).replace(" ", "") == text


def test_baseline_structure():
    assert parse_goal(TABLE2["Baseline"]) == Mix(Point(), Sub(Lin(0, 1, 150, 10), Box()),
                                                 Lin(0, 0.5, 150, 10))
    assert str(parse_goal(TABLE2["Baseline"])) == \
        "Mix(Point, Sub(Lin(0, 1, 150, 10), Box), Lin(0, 0.5, 150, 10))"
    assert parse_goal(TABLE2["InSamp"]).g2 == Sample(Lin(0, 1, 150, 10), 0.5, Normal(), Box())


def test_misprints_of_table2_are_refused_with_a_hint():
    with pytest.raises(GoalSyntaxError, match="unknown constructor 'Uniform1'; did you mean "
                                              "'Uniform'"):
        parse_goal("Sample(Lin(0,1,150,10),Uniform1,Box)")
    with pytest.raises(GoalSyntaxError, match="BiSample argument 'g2' must be a goal"):
        parse_goal("Mix(IFGSM2,BiSample(Sub(Lin(0,1,150,30),IFGSM3),Lin(0,0.6,200,30))")


def test_equivalent_spellings():
    k3 = IFGSM(3)
    for spelled in ["IFGSM3", "IFGSM(3)", "IFGSM(k=3)", " IFGSM ( k = 3 ) ", {"IFGSM": 3},
                    {"IFGSM": {"k": 3}}, {"IFGSM": [3]}, {"IFGSM3": None}]:
        assert parse_goal(spelled) == k3
    assert parse_goal("IFGSM") == IFGSM(5) == parse_goal("IFGSM()")
    assert parse_goal("Point()") == parse_goal("Point") == parse_goal({"Point": None}) == Point()
    assert parse_goal("Mix(g1=Point, g2=Box, lam=0.5)") == parse_goal("Mix(Point, lam=0.5, g2=Box)")
    assert parse_goal("Mix(Point,\n    Box,\n    Until(10, 0, 0.5))") == \
        Mix(Point(), Box(), Until(10, 0, 0.5))
    assert parse_goal("Sub(delta=0.5, g=Box)") == Sub(0.5, Box())
    assert parse_goal("Sample(delta=Lin(0,1,150,10), r=1, gs=Uniform, gt=Box)") == \
        Sample(Lin(0, 1, 150, 10), 1, Uniform(), Box())
    assert parse_goal("BiSample(g1=IFGSM3, g2=Box)") == BiSample(IFGSM(3), Box())
    assert parse_goal({"Mix": {"g1": "Point", "g2": {"Sub": ["Lin(0,1,150,10)", "Box"]},
                               "lam": {"Lin": [0, 0.5, 150, 10]}}}) == \
        parse_goal(TABLE2["Baseline"])


def _error(text, **kw):
    with pytest.raises(GoalSyntaxError) as info:
        parse_goal(text, **kw)
    return info.value


@pytest.mark.parametrize("text, message, line, column", [
    ("Mix(Point, Box", "expected ')' or ',', got end of input", 1, 15),
    ("Mix(Point Box, 0.5)", "expected ')' or ',', got 'Box'", 1, 11),
    ("Mix(Point, Box)", "Mix takes 3 arguments (g1, g2, lam), got 2", 1, 1),
    ("Sub(0.5)", "Sub takes 2 arguments (delta, g), got 1", 1, 1),
    ("Point(1)", "Point takes 0 arguments (), got 1", 1, 1),
    ("Sample(1, Box, Box)", "Sample takes 4 arguments (delta, r, gs, gt), got 3", 1, 1),
    ("Mixx(Point, Box, 0.5)", "unknown constructor 'Mixx'; did you mean 'Mix'?", 1, 1),
    ("Mix(Point, Bx, 0.5)", "unknown constructor 'Bx'; did you mean 'Box'?", 1, 12),
    ("Mix(Point, BiSampel(Box, Box), 0.5)", "did you mean 'BiSample'?", 1, 12),
    ("point", "unknown constructor 'point'; did you mean 'Point'?", 1, 1),
    ("Mix(Point, Box, lamb=0.5)", "Mix has no parameter 'lamb'; did you mean 'lam'?", 1, 17),
    ("Mix(Point, Box, g1=Point)", "Mix got multiple values for argument 'g1'", 1, 17),
    ("Mix(g1=Point, Box, 0.5)", "positional arguments come before keyword arguments", 1, 15),
    ("Mix(Point, 0.5, Box)", "Mix argument 'g2' must be a goal, got 0.5", 1, 12),
    ("Mix(Point, Box, Box)", "Mix argument 'lam' must be a schedule or a number, got goal Box",
     1, 17),
    ("Sample(0.5, 1, Mix(Point, Box, 0.5), Box)", "'gs' must produce a point or box", 1, 1),
    ("IFGSM(2.5)", "IFGSM argument 'k' must be a positive integer, got 2.5", 1, 7),
    ("IFGSM3(3)", "'IFGSM3' already gives k", 1, 7),
    ("Point Box", "expected end of input, got 'Box'", 1, 7),
    ("0.5", "expected a goal, got 0.5", 1, 1),
    ("Lin(0, 1, 2)", "expected a goal, got schedule Lin(0, 1, 2, 0)", 1, 1),
    ("", "expected a goal, a schedule or a number, got end of input", 1, 1),
    ("Mix(Point,,Box)", "expected a goal, a schedule or a number, got ','", 1, 11),
    ("Mix(\n  Point,\n  Box; 0.5)", "unexpected character ';'", 3, 6),
    ("__import__('os')", "unexpected character \"'\"", 1, 12),
])
def test_bad_notation_is_refused_with_position(text, message, line, column):
    err = _error(text)
    assert message in str(err)
    assert (err.line, err.column) == (line, column)
    assert f"at line {line}, column {column}" in str(err)


def test_error_shows_the_offending_line():
    err = _error("Mix(Point, Sub(0.5 Box), 0.5)")
    assert str(err).endswith("  Mix(Point, Sub(0.5 Box), 0.5)\n" + " " * 21 + "^")


def test_origin_places_errors_inside_a_file():
    err = _error("Mix(Point, Box", origin=Origin("g.yaml", line=7, column=9))
    assert (err.line, err.column, err.source) == (7, 23, "g.yaml")
    assert "at line 7, column 23 of g.yaml" in str(err)


YAML_GOALS = """\
# goals
plain: Mix(Point, Sub(Lin(0,1,150,10), Box), Lin(0,0.5,150 10))
quoted: 'Mix(Point, Boxx, 0.5)'
dquoted:   "Mix(Point, Box)"
block: |
  Mix(Point,
      Box 0.5)
nested:
  Mix: [Point, {Sub: [0.5, Boxy]}, 0.5]
keywords:
  Mix: {g1: Point, g2: Box, lamb: 3}
inner_string:
  Mix: [Point, "Sub(0.5 Box)", 0.5]
"""


@pytest.mark.parametrize("key, message, token", [
    ("plain", "expected ')' or ',', got '10'", "10))"),
    ("quoted", "unknown constructor 'Boxx'; did you mean 'Box'?", "Boxx"),
    ("dquoted", "Mix takes 3 arguments (g1, g2, lam), got 2", "Mix(Point, Box)"),
    ("block", "expected ')' or ',', got '0.5'", "0.5)"),
    ("nested", "unknown constructor 'Boxy'; did you mean 'Box'?", "Boxy"),
    ("keywords", "Mix has no parameter 'lamb'; did you mean 'lam'?", "lamb"),
    ("inner_string", "expected ')' or ',', got 'Box'", "Box)"),
])
def test_yaml_errors_point_into_the_file(key, message, token):
    root = yaml.compose(YAML_GOALS, Loader=yaml.SafeLoader)
    node = dict((k.value, v) for k, v in root.value)[key]
    err = _error(node, origin=Origin("goals.yaml"))
    assert message in err.message and err.source == "goals.yaml"
    assert f"at line {err.line}, column {err.column} of goals.yaml" in str(err)
    # the reported position is where the offending token is written in the file
    assert YAML_GOALS.splitlines()[err.line - 1][err.column - 1:].startswith(token)


@pytest.mark.parametrize("mapping, message", [
    ({"Mix": ["Point", "Box"]}, "Mix takes 3 arguments (g1, g2, lam), got 2 (in Mix)"),
    ({"Mix": ["Point", {"Sub": [0.5, "Boxx"]}, 0.5]}, "did you mean 'Box'? (in Mix[1].Sub[1])"),
    ({"Mix": {"g1": "Point", "g2": "Box"}}, "Mix is missing argument 'lam' (g1, g2, lam)"),
    ({"Mix": ["Point", "Box", True]}, "got True (in Mix[2])"),
    (["Point"], "got a list"),
    ({"Point": None, "Box": None}, "got a mapping with 2 keys"),
    ({3: None}, "expected a constructor name, got 3"),
    ({"Sub": {"delta": 0.5, 1: "Box"}}, "parameter name 1 is not a string"),
])
def test_bad_mappings_are_refused_with_a_path(mapping, message):
    assert message in str(_error(mapping))


# ------------------------------------------------------------------ property: round trips

numbers = st.one_of(st.integers(-1000, 1000),
                    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False))
schedules = st.recursive(
    numbers.map(parse_schedule),
    lambda inner: st.one_of(st.builds(Lin, inner, inner, st.floats(0, 500), inner),
                            st.builds(Until, inner, inner, inner)),
    max_leaves=6)
leaves = st.one_of(st.sampled_from([Point(), Normal(), Uniform(), Box()]),
                   st.integers(1, 20).map(IFGSM))


def _region_goals(goals):
    return goals.filter(lambda g: g.has_region)


goals = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.builds(Mix, inner, inner, schedules),
        st.builds(Sub, schedules, inner),
        st.builds(Sample, schedules, schedules, _region_goals(inner), inner),
        st.builds(BiSample, _region_goals(inner), inner)),
    max_leaves=8)


@settings(max_examples=150, deadline=None)
@given(goals)
def test_random_goals_round_trip_through_notation(goal):
    assert parse_goal(str(goal)) == goal


@settings(max_examples=150, deadline=None)
@given(goals)
def test_random_goals_round_trip_through_yaml_mappings(goal):
    text = yaml.safe_dump({"goal": to_mapping(goal)})
    assert parse_goal(yaml.safe_load(text)["goal"]) == goal
    node = yaml.compose(text, Loader=yaml.SafeLoader).value[0][1]
    assert parse_goal(node, origin=Origin("x.yaml")) == goal


@settings(max_examples=100, deadline=None)
@given(schedules)
def test_random_schedules_round_trip(schedule):
    assert parse_schedule(str(schedule)) == schedule
    assert parse_schedule(to_mapping(schedule)) == schedule


# --------------------------------------------------------------------------- configuration

BASE = """\
network: conv_small
dataset: mnist
eps: 0.1
goal: Mix(Point, Sub(Lin(0,1,3,0), Box), Lin(0,0.5,3,0))
epochs: 4
"""


def _config(extra="", drop=(), **kw) -> TrainConfig:
    lines = [ln for ln in BASE.splitlines() if ln.split(":")[0] not in drop]
    return parse_config("\n".join(lines) + "\n" + extra, "run.yaml", **kw)


def _config_error(extra="", drop=()):
    with pytest.raises((ConfigError, GoalSyntaxError)) as info:
        _config(extra, drop)
    return info.value


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_loads(path):
    config = load_config(path, validate_network=lambda name: name)
    assert isinstance(config.network, str)
    assert parse_goal(str(config.goal)) == config.goal
    assert 0 < config.eps <= 1 and config.epochs > 0


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_name_zoo_networks(path):
    raw = yaml.safe_load(path.read_text())
    network = raw["network"]
    try:
        from lirpa_diffai import models
        from lirpa_diffai.models.pretrained import PRETRAINED
    except ImportError:
        pytest.skip("lirpa_diffai.models is not importable")
    if "graft" in raw:  # a grafting fine-tune names the pretrained network it grafted
        assert network in PRETRAINED
        return
    assert network in models.names()
    assert load_config(path).network == network


def test_defaults_and_values():
    c = _config()
    assert (c.network, c.dataset, c.eps, c.epochs) == ("conv_small", "mnist", 0.1, 4)
    assert c.goal == Mix(Point(), Sub(Lin(0, 1, 3, 0), Box()), Lin(0, 0.5, 3, 0))
    assert (c.method, c.hzono, c.batch_size, c.seed, c.augment) == \
        ("hzono", {"relu": "boxy", "softmax": "shifted"}, 128, 0, False)
    assert (c.optimizer.name, c.optimizer.lr, c.optimizer.weight_decay) == ("adam", 0.001, 0)
    assert c.lr_at(100) == 0.001 and c.data_range == (0.0, 1.0) and c.num_classes == 10
    assert c.bound_opts == {"hzono": {"relu": "boxy", "softmax": "shifted"}}
    assert c.source == "run.yaml"
    assert _config(drop=("dataset",), extra="dataset: CIFAR10").augment is True


@pytest.mark.parametrize("spelled, method", [
    ("hzono", "hzono"), ("HZONO", "hzono"), ("ibp", "IBP"), ("IBP", "IBP"),
    ("crown-ibp", "CROWN-IBP"), ("CROWN_IBP", "CROWN-IBP"), ("Crown", "CROWN")])
def test_methods_are_case_insensitive(spelled, method):
    assert _config(f"method: {spelled}").method == method


def test_hzono_options():
    c = _config("hzono: {relu: DeepZ, correlate_input: all}")
    assert c.bound_opts == {"hzono": {"relu": "deepz", "softmax": "shifted", "correlate_input": "all"}}
    assert _config("hzono: {correlate_input: 8}").hzono == {"relu": "boxy", "softmax": "shifted", "correlate_input": 8}
    assert _config("hzono: {softmax: pairwise}").hzono["softmax"] == "pairwise"
    with pytest.raises(ConfigError, match="pairwise"):
        _config("hzono: {softmax: deept}")
    with pytest.raises(ConfigError, match="expected an integer >= 0, got 'some'"):
        _config("hzono: {correlate_input: some}")


def test_lr_schedules():
    steps = _config("optimizer: {name: sgd, lr: 0.1}\n"
                    "lr_schedule: {milestones: [10, 20], gamma: 0.5}")
    assert [steps.lr_at(t) for t in (0, 10, 25)] == pytest.approx([0.1, 0.05, 0.025])
    assert steps.optimizer.momentum == 0.9
    lin = _config("lr_schedule: Lin(1, 0.1, 10, 0)")
    assert lin.lr_at(5) == pytest.approx(0.001 * 0.55)
    assert _config("lr_schedule: {Until: [5, 1, 0.1]}").lr_at(6) == pytest.approx(1e-4)
    assert _config("lr_schedule: 0.5").lr_at(3) == pytest.approx(5e-4)


@pytest.mark.parametrize("extra, drop, message, line, column", [
    ("epcohs: 3", (), "unknown key 'epcohs' in the training configuration; did you mean "
                      "'epochs'?", 6, 1),
    ("optimizer: {name: sgd, lrr: 0.1}", (), "unknown key 'lrr' in optimizer; did you mean "
                                             "'lr'?", 6, 24),
    ("hzono: {reul: boxy}", (), "unknown key 'reul' in hzono; did you mean 'relu'?", 6, 9),
    ("eps: 0", ("eps",), "expected a number in (0.0, 1.0], got 0", 5, 6),
    ("eps: -0.1", ("eps",), "expected a number in (0.0, 1.0], got -0.1", 5, 6),
    ("eps: 1.5", ("eps",), "expected a number in (0.0, 1.0], got 1.5", 5, 6),
    ("eps: '0.1'", ("eps",), "expected a number in (0.0, 1.0], got '0.1'", 5, 6),
    ("eps: [0.1]", ("eps",), "got a list", 5, 6),
    ("batch_size: 1.5", (), "expected an integer >= 1, got 1.5", 6, 13),
    ("batch_size: true", (), "expected an integer >= 1, got True", 6, 13),
    ("epochs: 0", ("epochs",), "expected an integer >= 1, got 0", 5, 9),
    ("seed: -1", (), "expected an integer >= 0, got -1", 6, 7),
    ("eps: 8/0", ("eps",), "expected a number in (0.0, 1.0], got '8/0'", 5, 6),
    ("eps: 300/255", ("eps",), "expected a number in (0.0, 1.0], got 1.17", 5, 6),
    ("batch_size: 256/2", (), "expected an integer >= 1, got '256/2'", 6, 13),
    ("augment: maybe", (), "expected true or false, got 'maybe'", 6, 10),
    ("network: 3", ("network",), "expected a network name, got 3", 5, 10),
    ("dataset: svhn", ("dataset",), "expected one of mnist, cifar10, tiny_imagenet, imagenet8, "
     "imagenet16, imagenet32, imagenet64, got 'svhn'", 5, 10),
    ("method: deepz", (), "expected one of hzono, IBP, CROWN-IBP, CROWN, CROWN-hzono, got 'deepz'", 6, 9),
    ("hzono: {relu: nips}", (), "expected one of boxy, deepz, switch, smooth, got 'nips'", 6, 15),
    ("hzono: boxy", (), "expected a mapping (hzono), got a scalar", 6, 8),
    ("optimizer: {name: adam, momentum: 0.9}", (), "momentum applies to the sgd optimizer", 6,
     12),
    ("optimizer: {lr: 0}", (), "expected a number > 0, got 0", 6, 17),
    ("lr_schedule: Box", (), "expected a schedule or a number, got Box", 6, 14),
    ("lr_schedule: {milestones: [20, 10]}", (), "milestones must increase strictly", 6, 27),
    ("lr_schedule: {gamma: 0.1}", (), "lr_schedule with gamma needs milestones", 6, 14),
    ("epochs: 5", (), "key 'epochs' given twice", 6, 1),
    ("", ("goal", "eps"), "missing required keys eps, goal", 1, 1),
    ("goal: Mix(Point, Box)", ("goal",), "Mix takes 3 arguments (g1, g2, lam), got 2", 5, 7),
    ("goal: Mix(Point, Sub(0.5 Box), 0.5)", ("goal",), "expected ')' or ','", 5, 26),
    ("goal:\n  Mix: [Point, Boxx, 0.5]", ("goal",), "did you mean 'Box'?", 6, 16),
    ("network: conv_smal", ("network",), "did you mean 'conv_small'?", 5, 10),
    ("  bad: [indent", (), "invalid YAML", None, None),
])
def test_bad_configs_are_refused_with_position(extra, drop, message, line, column):
    if "conv_smal" in extra:
        pytest.importorskip("lirpa_diffai.models")
    err = _config_error(extra, drop)
    assert message in err.message
    assert err.source == "run.yaml"
    if line is not None:
        assert (err.line, err.column) == (line, column)
        assert f"at line {line}, column {column} of run.yaml" in str(err)


@pytest.mark.parametrize("text, value", [("8/255", 8 / 255), ("1/10", 0.1), ("2e-2", 0.02), ("0.5", 0.5)])
def test_eps_may_be_a_fraction_as_on_the_command_line(text, value):
    assert _config(drop=("eps",), extra=f"eps: {text}").eps == value


def test_learning_rate_in_exponent_notation_without_a_dot():
    assert _config(extra="optimizer: {lr: 1e-3}").optimizer.lr == 1e-3


def test_config_top_level_must_be_a_mapping():
    with pytest.raises(ConfigError, match="expected a mapping"):
        parse_config("- a\n- b\n", "x.yaml")
    with pytest.raises(ConfigError, match="empty configuration"):
        parse_config("", "x.yaml")


def test_network_validator_is_pluggable(tmp_path):
    def only_ffnn(name):
        if name != "ffnn":
            raise ValueError(f"no network {name!r}")
        return name.upper()
    assert _config(drop=("network",), extra="network: ffnn",
                   validate_network=only_ffnn).network == "FFNN"
    with pytest.raises(ConfigError, match="no network 'conv_small' at line 1, column 10"):
        _config(validate_network=only_ffnn)
    path = tmp_path / "c.yaml"
    path.write_text(BASE)
    assert load_config(path, validate_network=str).network == "conv_small"
    assert check_network_in_zoo("ffnn") == "ffnn"
    assert check_network_in_zoo("ResNet-Tiny") == "resnet_tiny"  # the paper's spelling
    assert _config(drop=("network",), extra="network: ConvSmall").network == "conv_small"


def test_yaml_is_loaded_safely():
    with pytest.raises(ConfigError, match=re.escape("expected a network name")):
        _config(drop=("network",), extra="network: !!python/object/apply:os.system ['true']")
    with pytest.raises(ConfigError, match="unsupported YAML tag 'tag:yaml.org,2002:python/name"):
        _config(drop=("network",), extra="network: !!python/name:os.system ''")
    with pytest.raises(GoalSyntaxError, match="unsupported YAML tag .* at line 5, column 14"):
        _config(drop=("goal",), extra="goal: {Mix: [!!python/name:os.system '', Box, 0.5]}")
