"""Training configurations in YAML: ``load_config(path) -> TrainConfig``.

The file is read with ``yaml.compose`` and the safe loader only; every refused key or value
raises :class:`ConfigError` naming the file, line and column (and, for an unknown key, the
nearest known one). Keys (``*`` = required)::

    network*      zoo name (``lirpa_diffai.models.names()``; e.g. conv_small, resnet_tiny), or
                  an import path ``package.module:Name`` of an ``nn.Module`` class or of a
                  function returning one (imported with importlib, never evaluated); with
                  ``graft``, the grafted checkpoint's network (e.g. resnet2b)
    network_args  keyword arguments of an import-path network (a mapping of plain values)
    init          default (the network's own initialisation) | ibp: Shi et al. 2021's IBP
                  initialisation, weights ~ N(0, 2 pi / fan_in^2) so that interval widths
                  keep their size from layer to layer at initialisation
    grad_clip     clip the gradient's global L2 norm to this value before each step, as
                  DiffAI does (default: no clipping), > 0
    graft         a grafted checkpoint (``python -m lirpa_diffai graft``; relative to this
                  file's directory) to fine-tune: the network and its starting weights
    graft_lr      learning rate of the grafted slopes and intercepts (default: optimizer.lr);
                  follows lr_schedule like the others; they get no weight decay
    dataset*      mnist | cifar10 (inputs in the data range [0, 1])
    eps*          L-inf training radius, 0 < eps <= 1
    goal*         the training goal: paper notation (a string) or the nested-mapping form,
                  e.g. "Mix(Point, Sub(Lin(0,1,150,10), Box), Lin(0,0.5,150,10))"
    epochs*       number of training epochs (positive integer)
    method        bound method of abstract goals (Box): hzono (default) | IBP | CROWN-IBP |
                  CROWN | CROWN-hzono, case-insensitive
    loss_fusion   true: every Box goal takes the fused bound of the cross-entropy (one
                  backward pass whatever the number of classes; lirpa_diffai.training.
                  loss_fusion); needs method CROWN-IBP, CROWN-hzono or CROWN (default false)
    hzono:        options of the hzono method (bound_opts["hzono"])
      relu        boxy (default) | deepz | switch | smooth
      correlate_input  input rows: 0 (a box, default), k (CorrelateMax k) or all
    optimizer:
      name        adam (default) | sgd
      lr          initial learning rate (default 0.001), > 0
      momentum    sgd only (default 0.9), >= 0
      weight_decay  L2 regularisation (default 0), >= 0
    lr_schedule   multiplier of lr over time t (epochs): a schedule ("Lin(1, 0.1, 100, 50)",
                  a number, or the mapping form), or {milestones: [10, 20], gamma: 0.1}:
                  multiplied by gamma at each milestone epoch (default 1: constant)
    batch_size    training batch size (default 128)
    test_every    evaluate every this many epochs; 0: after the last epoch only (default 1)
    seed          random seed (default 0)
    augment       random crop (padding 4) and horizontal flip; default: true for cifar10,
                  false for mnist
    train_subset  use only the first N training examples (default: all)
    test_subset   evaluate on the first N test examples (default: all)
    data_root     where the dataset is, and only there: a directory that does not hold it is
                  an error (default: lirpa_diffai.data's search order)
    device        torch device (default cpu)
    output        directory for checkpoints and logs (default: none)

Any key can also be given on the command line, ``--set key=value`` (``--set
optimizer.lr=0.01`` for a nested one): the value is YAML, validated like the file's, and
errors name the ``--set`` argument instead of the file.
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import yaml

from ..hybrid_zono import RELU_VARIANTS
from .errors import ConfigError, Origin
from .goals import Goal
from .parser import from_node, parse_goal, yaml_value
from .schedules import Const, Schedule, as_schedule, step_schedule

METHODS = {"hzono": "hzono", "ibp": "IBP", "crown-ibp": "CROWN-IBP", "crown": "CROWN",
           "crown-hzono": "CROWN-hzono"}
FUSED = ("CROWN-IBP", "CROWN-hzono", "CROWN")  # methods with a fused loss bound
DATASETS = ("mnist", "cifar10")
DATA_RANGE = (0.0, 1.0)


@dataclass(frozen=True)
class OptimizerConfig:
    """``torch.optim`` settings: ``name`` adam | sgd, ``lr``, ``momentum`` (sgd),
    ``weight_decay``."""

    name: str = "adam"
    lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 0.0


@dataclass(frozen=True)
class TrainConfig:
    """A validated training configuration (see the module docstring for every key)."""

    network: str
    dataset: str
    eps: float
    goal: Goal
    epochs: int
    network_args: dict = field(default_factory=dict)
    init: str = "default"
    grad_clip: float | None = None
    method: str = "hzono"
    loss_fusion: bool = False
    hzono: dict = field(default_factory=lambda: {"relu": "boxy"})
    optimizer: OptimizerConfig = OptimizerConfig()
    lr_schedule: Schedule = Const(1)
    batch_size: int = 128
    test_every: int = 1
    seed: int = 0
    augment: bool = False
    train_subset: int | None = None
    test_subset: int | None = None
    data_root: str | None = None
    device: str = "cpu"
    output: str | None = None
    graft: str | None = None
    graft_lr: float | None = None
    source: str | None = None

    @property
    def data_range(self) -> tuple[float, float]:
        """``(lo, hi)`` of the inputs: both datasets are scaled to [0, 1]."""
        return DATA_RANGE

    @property
    def num_classes(self) -> int:
        """The number of labels (10 for MNIST and CIFAR-10)."""
        return 10

    @property
    def bound_opts(self) -> dict:
        """``bound_opts`` for ``lirpa_diffai.BoundedModule``."""
        return {"hzono": dict(self.hzono)}

    def lr_at(self, t: float) -> float:
        """The learning rate at time ``t`` (epochs): ``optimizer.lr * lr_schedule(t)``."""
        return self.optimizer.lr * self.lr_schedule(t)


# ------------------------------------------------------------------------------ converters

@dataclass(frozen=True)
class Reader:
    """Converts YAML nodes of one file, raising errors at their position."""

    source: str

    def error(self, node: yaml.Node, message: str) -> ConfigError:
        """A :class:`ConfigError` at ``node``."""
        mark = node.start_mark
        return ConfigError(message, mark.line + 1, mark.column + 1, self.source_of(node))

    def source_of(self, node: yaml.Node) -> str:
        """The file, or the ``--set`` argument, that ``node`` was written in."""
        name = getattr(node.start_mark, "name", "")
        return name if name.startswith(OVERRIDE_PREFIX) else self.source

    def scalar(self, node: yaml.Node, what: str):
        """The Python value of a scalar node, else an error naming ``what`` was expected."""
        if not isinstance(node, yaml.ScalarNode):
            raise self.error(node, f"expected {what}, got a {_node_kind(node)}")
        try:
            return yaml_value(node)
        except ValueError as err:
            raise self.error(node, str(err)) from None

    def mapping(self, node: yaml.Node, keys: dict, what: str) -> dict:
        """``{key: converted value}`` of a mapping node whose keys must be in ``keys``
        (``name -> converter(reader, node)``); unknown and repeated keys are refused."""
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, f"expected a mapping ({what}), got a {_node_kind(node)}")
        out, seen = {}, set()
        for key_node, value_node in node.value:
            key = self.scalar(key_node, "a key")
            if key not in keys:
                near = difflib.get_close_matches(str(key), list(keys), n=1, cutoff=0.6)
                hint = f"; did you mean {near[0]!r}?" if near else \
                    f"; known keys: {', '.join(keys)}"
                raise self.error(key_node, f"unknown key {key!r} in {what}{hint}")
            if key in seen:
                raise self.error(key_node, f"key {key!r} given twice in {what}")
            seen.add(key)
            out[key] = keys[key](self, value_node)
        return out


def _node_kind(node: yaml.Node) -> str:
    return {yaml.MappingNode: "mapping", yaml.SequenceNode: "list"}.get(type(node), "scalar")


def number(lo: float | None = None, hi: float | None = None, integer: bool = False,
           lo_open: bool = False) -> Callable:
    """A converter for a number in ``[lo, hi]`` (``(lo, hi]`` if ``lo_open``)."""
    kind = "an integer" if integer else "a number"
    bounds = (f" in {'(' if lo_open else '['}{lo}, {hi}]" if hi is not None else
              f" {'>' if lo_open else '>='} {lo}" if lo is not None else "")

    def convert(reader: Reader, node: yaml.Node):
        value = reader.scalar(node, kind + bounds)
        ok_type = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, ok_type) or \
                not math.isfinite(value):
            raise reader.error(node, f"expected {kind}{bounds}, got {value!r}")
        low_bad = lo is not None and (value <= lo if lo_open else value < lo)
        if low_bad or (hi is not None and value > hi):
            raise reader.error(node, f"expected {kind}{bounds}, got {value!r}")
        return value if integer else float(value)
    return convert


def choice(options, canonical: Callable[[str], str] = str.lower) -> Callable:
    """A converter for one of ``options`` (a list, or a dict from normalised spelling to
    the value kept), compared after ``canonical``."""
    table = options if isinstance(options, dict) else {o: o for o in options}

    def convert(reader: Reader, node: yaml.Node):
        value = reader.scalar(node, f"one of {', '.join(table.values())}")
        if not isinstance(value, str) or canonical(value) not in table:
            raise reader.error(node, f"expected one of {', '.join(table.values())}, "
                                     f"got {value!r}")
        return table[canonical(value)]
    return convert


def typed(kind: type, what: str, nullable: bool = False) -> Callable:
    """A converter for a scalar of Python type ``kind`` (or null when ``nullable``)."""
    def convert(reader: Reader, node: yaml.Node):
        value = reader.scalar(node, what)
        if value is None and nullable:
            return None
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise reader.error(node, f"expected {what}, got {value!r}")
        return value
    return convert


def optional(convert: Callable) -> Callable:
    """``convert``, or None for a null value."""
    def maybe(reader: Reader, node: yaml.Node):
        if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
            return None
        return convert(reader, node)
    return maybe


def goal_value(reader: Reader, node: yaml.Node) -> Goal:
    """The ``goal`` key: a string in the paper's notation or the nested-mapping form."""
    return parse_goal(node, Origin(reader.source_of(node)))


def lr_schedule_value(reader: Reader, node: yaml.Node) -> Schedule:
    """The ``lr_schedule`` key: a schedule, or ``{milestones: [...], gamma: g}``."""
    if isinstance(node, yaml.MappingNode) and any(
            isinstance(k, yaml.ScalarNode) and k.value in STEP_KEYS for k, _ in node.value):
        steps = reader.mapping(node, STEP_KEYS, "lr_schedule")
        if "milestones" not in steps:
            raise reader.error(node, "lr_schedule with gamma needs milestones")
        return step_schedule(steps["milestones"], steps.get("gamma", 0.1))
    value = from_node(node, reader.source_of(node))
    try:
        return as_schedule(value)
    except TypeError:
        raise reader.error(node, f"expected a schedule or a number, got {value}") from None


def milestones_value(reader: Reader, node: yaml.Node) -> list:
    """A non-empty, strictly increasing list of positive epochs."""
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        raise reader.error(node, "expected a non-empty list of epochs")
    epochs = [number(0, lo_open=True)(reader, n) for n in node.value]
    if any(b <= a for a, b in zip(epochs, epochs[1:])):
        raise reader.error(node, f"milestones must increase strictly, got {epochs}")
    return epochs


def correlate_input_value(reader: Reader, node: yaml.Node):
    """``hzono.correlate_input``: a non-negative integer or ``all``."""
    if isinstance(node, yaml.ScalarNode) and node.value == "all":
        return "all"
    return number(0, integer=True)(reader, node)


def plain_value(reader: Reader, node: yaml.Node):
    """A plain YAML value (numbers, strings, booleans, null, lists and mappings of them)."""
    if isinstance(node, yaml.SequenceNode):
        return [plain_value(reader, n) for n in node.value]
    if isinstance(node, yaml.MappingNode):
        return {reader.scalar(k, "a key"): plain_value(reader, v) for k, v in node.value}
    return reader.scalar(node, "a value")


def keyword_arguments(reader: Reader, node: yaml.Node) -> dict:
    """``network_args``: a mapping from parameter names to plain values."""
    if not isinstance(node, yaml.MappingNode):
        raise reader.error(node, f"expected a mapping of keyword arguments, got a "
                                 f"{_node_kind(node)}")
    out = {}
    for key_node, value_node in node.value:
        key = reader.scalar(key_node, "a parameter name")
        if not isinstance(key, str) or not key.isidentifier() or key in out:
            raise reader.error(key_node, f"expected a parameter name given once, got {key!r}")
        out[key] = plain_value(reader, value_node)
    return out


def section(keys: dict, what: str) -> Callable:
    """A converter for a nested mapping with ``keys``."""
    return lambda reader, node: reader.mapping(node, keys, what)


STEP_KEYS = {"milestones": milestones_value, "gamma": number(0, lo_open=True)}
OPTIMIZER_KEYS = {"name": choice(("adam", "sgd")), "lr": number(0, lo_open=True),
                  "momentum": number(0), "weight_decay": number(0)}
HZONO_KEYS = {"relu": choice(RELU_VARIANTS), "correlate_input": correlate_input_value}
POSITIVE_INT = number(1, integer=True)
TOP_KEYS = {
    "network": typed(str, "a network name"),
    "network_args": keyword_arguments,
    "init": choice(("default", "ibp")),
    "grad_clip": optional(number(0, lo_open=True)),
    "dataset": choice(DATASETS),
    "eps": number(DATA_RANGE[0], DATA_RANGE[1] - DATA_RANGE[0], lo_open=True),
    "goal": goal_value,
    "epochs": POSITIVE_INT,
    "method": choice(METHODS, lambda s: s.lower().replace("_", "-")),
    "loss_fusion": typed(bool, "true or false"),
    "hzono": section(HZONO_KEYS, "hzono"),
    "optimizer": section(OPTIMIZER_KEYS, "optimizer"),
    "lr_schedule": lr_schedule_value,
    "batch_size": POSITIVE_INT,
    "test_every": number(0, integer=True),
    "seed": number(0, integer=True),
    "augment": optional(typed(bool, "true or false")),
    "train_subset": optional(POSITIVE_INT),
    "test_subset": optional(POSITIVE_INT),
    "data_root": typed(str, "a path", nullable=True),
    "device": typed(str, "a torch device name"),
    "output": typed(str, "a path", nullable=True),
    "graft": typed(str, "a path to a grafted checkpoint"),
    "graft_lr": number(0, lo_open=True),
}
REQUIRED_KEYS = ("network", "dataset", "eps", "goal", "epochs")


def check_network_in_zoo(name: str) -> str:
    """The zoo name of ``name`` (``lirpa_diffai.models.names()``, or the paper's spelling such
    as ``ResNet-Tiny``); ``ValueError`` with the nearest zoo name otherwise."""
    from .. import models
    return models.canonical_name(name)


def check_network(name: str) -> str:
    """An import path ``package.module:Name`` whose target imports and is callable, else the
    zoo name of ``name`` (see :func:`check_network_in_zoo`)."""
    from ..models import custom
    if custom.is_import_path(name):
        custom.import_network(name)
        return name
    return check_network_in_zoo(name)


OVERRIDE_PREFIX = "--set "


def override_node(text: str, argument: str) -> yaml.Node:
    """The YAML node of ``text``, its marks naming the ``--set`` ``argument``."""
    loader = yaml.SafeLoader(text)
    loader.name = OVERRIDE_PREFIX + argument
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as err:
        raise ConfigError(f"invalid YAML: {err.problem or err.context}",
                          source=loader.name) from None
    finally:
        loader.dispose()
    return node if node is not None else yaml.ScalarNode(
        "tag:yaml.org,2002:null", "", yaml.Mark(loader.name, 0, 0, 0, None, None))


def apply_override(root: yaml.MappingNode, argument: str) -> None:
    """Splice ``key=value`` (``a.b=value`` for a nested key) into the composed file."""
    key, sep, value = argument.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"expected key=value, got {argument!r}",
                          source=OVERRIDE_PREFIX + argument)
    mapping = root
    parts = key.strip().split(".")
    for depth, part in enumerate(parts):
        mark = yaml.Mark(OVERRIDE_PREFIX + argument, 0, 0, 0, None, None)
        entry = next((pair for pair in mapping.value
                      if isinstance(pair[0], yaml.ScalarNode) and pair[0].value == part), None)
        if depth + 1 == len(parts):
            new = override_node(value, argument)
            if entry is None:
                mapping.value.append((yaml.ScalarNode("tag:yaml.org,2002:str", part, mark,
                                                      mark), new))
            else:
                mapping.value[mapping.value.index(entry)] = (entry[0], new)
        elif entry is None or not isinstance(entry[1], yaml.MappingNode):
            inner = yaml.MappingNode("tag:yaml.org,2002:map", [], mark, mark)
            if entry is None:
                mapping.value.append((yaml.ScalarNode("tag:yaml.org,2002:str", part, mark,
                                                      mark), inner))
            else:
                mapping.value[mapping.value.index(entry)] = (entry[0], inner)
            mapping = inner
        else:
            mapping = entry[1]


def parse_config(text: str, source: str = "<string>",
                 validate_network: Callable[[str], str] = check_network,
                 overrides: Sequence[str] = ()) -> TrainConfig:
    """A :class:`TrainConfig` from YAML ``text`` with the ``--set`` ``overrides``
    (``key=value``) applied; errors name ``source`` (or the override)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        raise ConfigError(f"invalid YAML: {err.problem or err.context}",
                          mark.line + 1 if mark else None, mark.column + 1 if mark else None,
                          source) from None
    if root is None:
        raise ConfigError("empty configuration", source=source)
    reader = Reader(source)
    if overrides and isinstance(root, yaml.MappingNode):
        for argument in overrides:
            apply_override(root, argument)
    values = reader.mapping(root, TOP_KEYS, "the training configuration")
    missing = [k for k in REQUIRED_KEYS if k not in values]
    if missing:
        raise reader.error(root, f"missing required key{'s' if len(missing) > 1 else ''} "
                                 f"{', '.join(missing)}")
    key_nodes = {k.value: (k, v) for k, v in root.value}
    if "graft" in values:  # the network comes from the grafted checkpoint (checked when built)
        values["graft"] = str(relative_to_source(values["graft"], source))
    else:
        if "graft_lr" in values:
            raise reader.error(key_nodes["graft_lr"][0], "graft_lr needs graft (a grafted "
                                                         "checkpoint to fine-tune)")
        values["network"] = checked_network(reader, key_nodes, values, validate_network)
    optimizer = values.get("optimizer", {})
    if optimizer.get("name", "adam") != "sgd" and "momentum" in optimizer:
        raise reader.error(key_nodes["optimizer"][1], "momentum applies to the sgd optimizer "
                                                      "only")
    values["optimizer"] = OptimizerConfig(**optimizer)
    values["hzono"] = {"relu": "boxy", **values.get("hzono", {})}
    if values.get("loss_fusion") and values.get("method", "hzono") not in FUSED:
        raise reader.error(key_nodes["loss_fusion"][1], "loss_fusion needs method CROWN-IBP, "
                                                        "CROWN-hzono or CROWN")
    if values.get("augment") is None:
        values["augment"] = values["dataset"] == "cifar10"
    return TrainConfig(**values, source=source)


def checked_network(reader: Reader, key_nodes: dict, values: dict,
                    validate_network: Callable[[str], str]) -> str:
    """The validated ``network``: a zoo network defined for the dataset, or an import path
    whose target takes ``network_args`` and builds an ``nn.Module``; errors at its line."""
    from .. import models
    from ..models import custom
    node = key_nodes["network"][1]
    try:
        name = validate_network(values["network"])
    except ValueError as err:
        raise reader.error(node, str(err)) from None
    args = values.get("network_args")
    if custom.is_import_path(name):
        try:
            custom.check_builds_module(name, args or {})
        except ValueError as err:
            raise reader.error(key_nodes["network_args"][1] if "network_args" in key_nodes and
                               isinstance(err, custom.ArgumentsError) else node,
                               str(err)) from None
    elif args is not None:
        raise reader.error(key_nodes["network_args"][0], "network_args applies to a network "
                           "given by import path (package.module:Name) only")
    elif name in models.names():
        try:
            models.check_dataset(name, values["dataset"])
        except ValueError as err:
            raise reader.error(node, str(err)) from None
    return name


def relative_to_source(path: str, source: str) -> Path:
    """``path``, taken relative to the directory of the configuration file ``source`` (when
    ``source`` is a file and ``path`` is relative)."""
    p = Path(path)
    origin = Path(source)
    return p if p.is_absolute() or not origin.is_file() else origin.parent / p


def load_config(path, validate_network: Callable[[str], str] = check_network,
                overrides: Sequence[str] = ()) -> TrainConfig:
    """The :class:`TrainConfig` in the YAML file ``path``. ``validate_network`` checks (and
    may canonicalise) the network name, raising ValueError to refuse it."""
    return parse_config(Path(path).read_text(), str(path), validate_network, overrides)
