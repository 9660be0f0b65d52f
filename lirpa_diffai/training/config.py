"""Reading a training configuration: ``load_config(path) -> TrainConfig``.

The file is read with ``yaml.compose`` and the safe loader only, and checked against the keys
of :mod:`.schema` (their values, defaults and help are declared there; the docs page
``docs/configuration-keys.md`` is generated from them: ``python -m
lirpa_diffai.training --markdown``). Every refused key or value raises
:class:`~.errors.ConfigError` naming the file, line and column (and, for an unknown key, the
nearest known one). ``--set key=value`` overrides (``optimizer.lr=0.01`` for a nested key)
are spliced into the file's YAML before it is checked; their errors name the ``--set``
argument instead of the file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import yaml

from ..imagenet import MANY_CLASS_DATASETS
from .errors import ConfigError
from .reader import OVERRIDE_PREFIX, Reader
from .schema import DATA_RANGE, DATASETS, FUSED, METHODS, REQUIRED, TRAIN_KEYS, \
    OptimizerConfig, TrainConfig, config_markdown

__all__ = ["DATA_RANGE", "DATASETS", "METHODS", "OptimizerConfig", "TrainConfig",
           "check_network", "check_network_in_zoo", "config_markdown", "load_config",
           "parse_config"]


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


def override_node(text: str, argument: str) -> yaml.Node:
    """The YAML node of ``text``, its marks naming the ``--set`` ``argument``."""
    loader = yaml.SafeLoader(text)
    loader.name = OVERRIDE_PREFIX + argument
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as err:
        raise ConfigError(f"invalid YAML: {err.problem or err.context}{yaml_hint(err)}",
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


def yaml_hint(err: yaml.MarkedYAMLError) -> str:
    """Advice for the YAML error an unquoted goal in the paper's notation gives: a ``:``
    inside it starts a mapping."""
    if "mapping values are not allowed" in str(err.problem):
        return ("; YAML reads ': ' as the start of a mapping, so quote a value that holds "
                "one, e.g. goal: \"...\" (in the paper's notation keyword arguments take "
                "'=': Box(w=0.1))")
    return ""


def parse_config(text: str, source: str = "<string>",
                 validate_network: Callable[[str], str] = check_network,
                 overrides: Sequence[str] = ()) -> TrainConfig:
    """A :class:`TrainConfig` from YAML ``text`` with the ``--set`` ``overrides``
    (``key=value``) applied; errors name ``source`` (or the override)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        raise ConfigError(f"invalid YAML: {err.problem or err.context}{yaml_hint(err)}",
                          mark.line + 1 if mark else None, mark.column + 1 if mark else None,
                          source) from None
    if root is None:
        raise ConfigError("empty configuration", source=source)
    reader = Reader(source)
    if overrides and isinstance(root, yaml.MappingNode):
        for argument in overrides:
            apply_override(root, argument)
    values = reader.mapping(root, TRAIN_KEYS, "the training configuration")
    missing = [k.name for k in TRAIN_KEYS if k.default is REQUIRED and k.name not in values]
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
    if values.get("loss_fusion") and values.get("method", "hzono") not in FUSED:
        raise reader.error(key_nodes["loss_fusion"][1], "loss_fusion needs method CROWN-IBP, "
                                                        "CROWN-hzono or CROWN")
    check_many_class_root(reader, key_nodes, values)
    if values.get("augment") is None:
        values["augment"] = values["dataset"] != "mnist"
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
        if values["dataset"] in MANY_CLASS_DATASETS:
            raise reader.error(node, f"the zoo's {name} is defined for mnist and cifar10 only; "
                               f"give {values['dataset']} a network by import path "
                               "(package.module:Name)")
        try:
            models.check_dataset(name, values["dataset"])
        except ValueError as err:
            raise reader.error(node, str(err)) from None
    return name


def check_many_class_root(reader: Reader, key_nodes: dict, values: dict) -> None:
    """A dataset of ``MANY_CLASS_DATASETS`` is read from ``data_root`` only: refuse, at the
    line of the key, a configuration without one or whose directory does not exist."""
    dataset = values["dataset"]
    if dataset not in MANY_CLASS_DATASETS:
        return
    root = values.get("data_root")
    if root is None:
        raise reader.error(key_nodes["dataset"][1], f"dataset {dataset} is read from data_root "
                           "only (never downloaded): set data_root to its directory")
    if not Path(root).is_dir():
        raise reader.error(key_nodes["data_root"][1], f"data_root: no directory {root} "
                           f"(dataset {dataset}; {Path(root).resolve()})")


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
