"""The training configuration's keys, declared once: :data:`TRAIN_KEYS`.

Each :class:`Key` names its converter (the type and constraint: the value is checked, and
refused at its position, by ``convert(reader, node)``), its default (:data:`REQUIRED` for
none) and its help. From this declaration come :class:`TrainConfig` and
:class:`OptimizerConfig` (their fields and defaults), the validation of a file
(:func:`lirpa_diffai.training.config.parse_config`), the ``--set`` help of ``python -m
lirpa_diffai train`` (:func:`set_help`) and the docs page ``docs/configuration-keys.md``
(:func:`config_markdown`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass
from typing import Any, Callable

import yaml

from ..bound_ops.attention import SOFTMAX_BOUNDS
from ..goals.catalogue import Goal
from ..goals.errors import Origin
from ..goals.parser import from_node, parse_goal
from ..hybrid_zono import RELU_VARIANTS
from ..imagenet import MANY_CLASS_DATASETS
from ..schedules import Const, Schedule, as_schedule, format_number, step_schedule
from .reader import Choice, Nullable, Number, Reader, Section, Typed, described, \
    keyword_arguments

METHODS = {"hzono": "hzono", "ibp": "IBP", "crown-ibp": "CROWN-IBP", "crown": "CROWN",
           "crown-hzono": "CROWN-hzono"}
FUSED = ("CROWN-IBP", "CROWN-hzono", "CROWN")  # the methods with a fused loss bound
DATASETS = ("mnist", "cifar10", *MANY_CLASS_DATASETS)
DATA_RANGE = (0.0, 1.0)


class Required:
    """The default of a key that must be given: :data:`REQUIRED`."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED = Required()


@dataclass(frozen=True)
class Key:
    """One configuration key: ``name``, ``convert`` (a converter of :mod:`.reader`, whose
    ``what`` describes the values it accepts), ``help``, ``default`` (:data:`REQUIRED` for a
    key that must be given) and ``shown``, the default as the docs write it where the value
    alone does not say it (a default computed from other keys)."""

    name: str
    convert: Callable
    help: str
    default: Any = REQUIRED
    shown: str | None = None

    def dataclass_field(self) -> tuple:
        """The dataclass field ``(name, type, field)`` of this key."""
        if self.default is REQUIRED:
            return self.name, Any
        if isinstance(self.default, dict):
            return self.name, Any, field(default_factory=self.default.copy)
        return self.name, Any, field(default=self.default)


def defaults(keys: tuple) -> dict:
    """``{name: default}`` of the ``keys`` whose default is a value (not REQUIRED or None)."""
    return {k.name: k.default for k in keys if k.default is not REQUIRED and k.default is not None}


def config_class(name: str, keys: tuple, doc: str, bases: tuple = (), extra: tuple = ()):
    """A frozen, keyword-only dataclass ``name`` with one field per key (the key's default),
    then the ``extra`` fields."""
    return make_dataclass(name, [k.dataclass_field() for k in keys] + list(extra), bases=bases,
                          frozen=True, kw_only=True,
                          namespace={"__doc__": doc, "__module__": __name__})


# ------------------------------------------------------------------------------- sections

POSITIVE_INT = Number(1, integer=True)
NON_NEGATIVE_INT = Number(0, integer=True)

OPTIMIZER_KEYS = (
    Key("name", Choice(("adam", "sgd")), "the torch.optim optimizer", "adam"),
    Key("lr", Number(0, lo_open=True), "initial learning rate", 0.001),
    Key("momentum", Number(0), "momentum; sgd only", 0.9),
    Key("weight_decay", Number(0), "L2 regularisation", 0.0),
)
OptimizerConfig = config_class("OptimizerConfig", OPTIMIZER_KEYS,
                               "``torch.optim`` settings: the ``optimizer`` keys.")


def momentum_without_sgd(given: dict) -> str | None:
    """The complaint about an ``optimizer`` section that sets momentum for another optimizer
    than sgd."""
    if "momentum" in given and given.get("name", defaults(OPTIMIZER_KEYS)["name"]) != "sgd":
        return "momentum applies to the sgd optimizer only"
    return None


@described(f"{NON_NEGATIVE_INT.what}, or all")
def correlate_input_value(reader: Reader, node: yaml.Node):
    """``hzono.correlate_input``: a non-negative integer or ``all``."""
    if isinstance(node, yaml.ScalarNode) and node.value == "all":
        return "all"
    return NON_NEGATIVE_INT(reader, node)


HZONO_KEYS = (
    Key("relu", Choice(RELU_VARIANTS), "the ReLU transformer of hzono", "boxy"),
    Key("correlate_input", correlate_input_value,
        "correlated input rows: 0 (a box), k (CorrelateMax k) or all (every input dimension)",
        None, shown="0"),
    Key("softmax", Choice(tuple(SOFTMAX_BOUNDS)),
        "the softmax bound of hzono: shifted (n operations per row) or pairwise (DeepT's, over "
        "every difference, tighter, n^2 per row)", "shifted"),
)


def hzono_options(**given) -> dict:
    """The ``hzono`` options: the keys given, and the defaults of the others that have one."""
    return {**defaults(HZONO_KEYS), **given}


@described("a non-empty, strictly increasing list of epochs > 0")
def milestones_value(reader: Reader, node: yaml.Node) -> list:
    """A non-empty, strictly increasing list of positive epochs."""
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        raise reader.error(node, "expected a non-empty list of epochs")
    epochs = [Number(0, lo_open=True)(reader, n) for n in node.value]
    if any(b <= a for a, b in zip(epochs, epochs[1:])):
        raise reader.error(node, f"milestones must increase strictly, got {epochs}")
    return epochs


STEP_KEYS = (
    Key("milestones", milestones_value,
        "the epochs at which lr is multiplied by gamma (needed by the mapping form)", None),
    Key("gamma", Number(0, lo_open=True), "the factor at each milestone", 0.1),
)


@described("a schedule (a number, Lin(...), Until(...) or the mapping form), or "
           "{milestones: [...], gamma: g}", keys=STEP_KEYS)
def lr_schedule_value(reader: Reader, node: yaml.Node) -> Schedule:
    """The ``lr_schedule`` key: a schedule, or ``{milestones: [...], gamma: g}``."""
    names = {key.name for key in STEP_KEYS}
    if isinstance(node, yaml.MappingNode) and any(
            isinstance(k, yaml.ScalarNode) and k.value in names for k, _ in node.value):
        steps = {**defaults(STEP_KEYS), **reader.mapping(node, STEP_KEYS, "lr_schedule")}
        if "milestones" not in steps:
            raise reader.error(node, "lr_schedule with gamma needs milestones")
        return step_schedule(steps["milestones"], steps["gamma"])
    value = from_node(node, reader.source_of(node))
    try:
        return as_schedule(value)
    except TypeError:
        raise reader.error(node, f"expected a schedule or a number, got {value}") from None


@described("a goal: the paper's notation (a string) or the nested-mapping form")
def goal_value(reader: Reader, node: yaml.Node) -> Goal:
    """The ``goal`` key: a string in the paper's notation or the nested-mapping form."""
    return parse_goal(node, Origin(reader.source_of(node)))


# ------------------------------------------------------------------------------ the keys
TRAIN_KEYS = (
    Key("network", Typed(str, "a network name"),
        "zoo name (`lirpa_diffai.models.names()`, e.g. conv_small, resnet_tiny, or the "
        "paper's spelling such as ResNet-Tiny), or an import path `package.module:Name` of an "
        "`nn.Module` class or of a function returning one (imported, never evaluated); with "
        "`graft`, the grafted checkpoint's network"),
    Key("network_args", keyword_arguments,
        "keyword arguments of a network given by import path", {}, shown="none"),
    Key("init", Choice(("default", "ibp")),
        "`default`: the network's own initialisation; `ibp`: Shi et al. 2021's, weights ~ "
        "N(0, 2 pi / fan_in^2), so that interval widths keep their size from layer to layer",
        "default"),
    Key("grad_clip", Nullable(Number(0, lo_open=True)),
        "clip the gradient's global L2 norm to this value before each step, as DiffAI does",
        None, shown="no clipping"),
    Key("dataset", Choice(DATASETS),
        "the dataset; inputs are in the data range [0, 1]. tiny_imagenet (200 classes, "
        "64x64; JPEGs decoded with Pillow) and imagenet8/16/32/64 (downscaled ImageNet, 1000 "
        "classes) are read from `data_root` only, in their distributed layouts "
        "(`lirpa_diffai.imagenet`), never downloaded; zoo networks are defined for mnist and "
        "cifar10, so give these a network by import path"),
    Key("eps", Number(DATA_RANGE[0], DATA_RANGE[1] - DATA_RANGE[0], lo_open=True),
        "L-inf training radius"),
    Key("goal", goal_value,
        "the training goal, e.g. `Mix(Point, Sub(Lin(0,1,150,10), Box), Lin(0,0.5,150,10))`"),
    Key("epochs", POSITIVE_INT, "number of training epochs"),
    Key("method", Choice(METHODS, lambda s: s.lower().replace("_", "-")),
        "bound method of the abstract goals (Box), in any case", "hzono"),
    Key("loss_fusion", Typed(bool, "true or false"),
        "every Box goal takes the fused upper bound of the cross-entropy (one backward pass "
        "whatever the number of classes; docs/training-cost.md); needs method CROWN-IBP, "
        "CROWN-hzono or CROWN", False),
    Key("hzono", Section(HZONO_KEYS, "hzono", build=hzono_options),
        "options of the hzono method (bound_opts['hzono'])", hzono_options()),
    Key("optimizer", Section(OPTIMIZER_KEYS, "optimizer", build=OptimizerConfig,
                             check=momentum_without_sgd), "the optimizer", OptimizerConfig()),
    Key("lr_schedule", lr_schedule_value,
        "multiplier of optimizer.lr over time t (epochs), e.g. `Lin(1, 0.1, 100, 50)`; the "
        "mapping with milestones multiplies it by gamma at each milestone epoch", Const(1)),
    Key("batch_size", POSITIVE_INT, "training batch size", 128),
    Key("test_every", NON_NEGATIVE_INT,
        "evaluate every this many epochs; 0: after the last epoch only", 1),
    Key("seed", NON_NEGATIVE_INT, "random seed", 0),
    Key("augment", Nullable(Typed(bool, "true or false")),
        "random crop (padding 4) and horizontal flip", None,
        shown="false for mnist, true for the others"),
    Key("train_subset", Nullable(POSITIVE_INT), "use only the first N training examples",
        None, shown="all"),
    Key("test_subset", Nullable(POSITIVE_INT), "evaluate on the first N test examples", None,
        shown="all"),
    Key("data_root", Typed(str, "a path", nullable=True),
        "where the dataset is, and only there: a directory that does not hold it is an error; "
        "required for tiny_imagenet and imagenet<S>, whose directory must exist when the file "
        "is read", None, shown="`lirpa_diffai.data`'s search order"),
    Key("device", Typed(str, "a torch device name"), "torch device", "cpu"),
    Key("output", Typed(str, "a path", nullable=True),
        "directory for checkpoints and logs (`train --out` overrides it)", None,
        shown="runs/<config name>"),
    Key("graft", Typed(str, "a path to a grafted checkpoint"),
        "a grafted checkpoint (`python -m lirpa_diffai graft`; relative to the file's "
        "directory) to fine-tune: the network and its starting weights", None),
    Key("graft_lr", Number(0, lo_open=True),
        "learning rate of the grafted slopes and intercepts; follows lr_schedule like the "
        "others; they get no weight decay", None, shown="optimizer.lr"),
)


class TrainConfigReadouts:
    """What a :class:`TrainConfig` derives from its keys."""

    @property
    def data_range(self) -> tuple[float, float]:
        """``(lo, hi)`` of the inputs: every dataset is scaled to [0, 1]."""
        return DATA_RANGE

    @property
    def num_classes(self) -> int:
        """The number of labels: 10 for MNIST and CIFAR-10, 200 for Tiny ImageNet, 1000 for
        downscaled ImageNet."""
        return MANY_CLASS_DATASETS[self.dataset][0] if self.dataset in MANY_CLASS_DATASETS else 10

    @property
    def bound_opts(self) -> dict:
        """``bound_opts`` for ``lirpa_diffai.BoundedModule``."""
        return {"hzono": dict(self.hzono)}

    def lr_at(self, t: float) -> float:
        """The learning rate at time ``t`` (epochs): ``optimizer.lr * lr_schedule(t)``."""
        return self.optimizer.lr * self.lr_schedule(t)


TrainConfig = config_class(
    "TrainConfig", TRAIN_KEYS, "A validated training configuration: one field per key of "
    ":data:`TRAIN_KEYS`, and ``source``, the file it was read from.",
    bases=(TrainConfigReadouts,), extra=(("source", Any, field(default=None)),))


# ----------------------------------------------------------------------- help and docs

def rows(keys: tuple = TRAIN_KEYS, prefix: str = ""):
    """``(dotted name, key)`` of every key, a section's keys in place of the section."""
    for key in keys:
        if not isinstance(key.convert, Section):
            yield prefix + key.name, key
        yield from rows(getattr(key.convert, "keys", ()), f"{prefix}{key.name}.")


def default_text(key: Key) -> str:
    """A key's default as the docs write it."""
    if key.shown is not None:
        return key.shown
    if key.default is REQUIRED:
        return "required"
    if key.default is None:
        return "none"
    if isinstance(key.default, bool):
        return str(key.default).lower()
    if isinstance(key.default, (int, float)):
        return format_number(key.default)
    return str(key.default)


def set_help() -> str:
    """The help of ``train --set``: how to write it and every key with its default."""
    keys = ", ".join(f"{name} ({default_text(key).replace('`', '')})" for name, key in rows())
    return (f"override a configuration key (a nested one as optimizer.lr=0.01); the value is "
            f"YAML, checked like the file's; repeatable. Keys (default): {keys}. Their "
            f"values and meaning: docs/configuration-keys.md")


MARKDOWN_HEAD = """\
# Configuration keys

<!-- generated by `python -m lirpa_diffai.training --markdown` from
lirpa_diffai/training/schema.py; edit the schema, not this file -->

A training configuration is a YAML file (read with the safe loader only) whose keys are
below. Unknown keys, wrong types and out-of-range values are refused with the file, line and
column, and the nearest known key for a misspelt one. Every key can also be given on the
command line, `python -m lirpa_diffai train FILE --set key=value` (`--set optimizer.lr=0.01`
for a nested one): the value is YAML, checked the same way, and errors then name the `--set`
argument. A number may be written as a fraction, `eps: 8/255`, or as `1e-3` without a
dot (which YAML alone would read as text). `load_config(path)` of
`lirpa_diffai.training.config` reads a file into a `TrainConfig`.

| key | value | default | meaning |
|---|---|---|---|
"""


def config_markdown() -> str:
    """The docs page of the configuration keys (``docs/configuration-keys.md``)."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|")
    return MARKDOWN_HEAD + "".join(
        f"| {name} | {cell(key.convert.what)} | {cell(default_text(key))} | {cell(key.help)} |\n"
        for name, key in rows())
