"""YAML nodes to checked values: the :class:`Reader` that raises errors at a node's position,
and the converters a configuration key names (:mod:`.schema`).

A converter is called as ``convert(reader, node)`` and returns the checked value or raises
:class:`~.errors.ConfigError` at the node. Its ``what`` (``"an integer >= 1"``) is both the
expected value in its error messages and the value column of the configuration's docs.
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any, Callable

import yaml

from ..goals.parser import yaml_value
from .errors import ConfigError

OVERRIDE_PREFIX = "--set "


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
            raise self.error(node, f"expected {what}, got a {node_kind(node)}")
        try:
            return yaml_value(node)
        except ValueError as err:
            raise self.error(node, str(err)) from None

    def mapping(self, node: yaml.Node, keys: tuple, what: str) -> dict:
        """``{name: converted value}`` of a mapping node whose keys must be among ``keys``
        (:class:`~.schema.Key` entries); unknown and repeated keys are refused, an unknown
        one with the nearest known name."""
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, f"expected a mapping ({what}), got a {node_kind(node)}")
        known = {key.name: key for key in keys}
        out = {}
        for key_node, value_node in node.value:
            name = self.scalar(key_node, "a key")
            if name not in known:
                near = difflib.get_close_matches(str(name), list(known), n=1, cutoff=0.6)
                hint = f"; did you mean {near[0]!r}?" if near else \
                    f"; known keys: {', '.join(known)}"
                raise self.error(key_node, f"unknown key {name!r} in {what}{hint}")
            if name in out:
                raise self.error(key_node, f"key {name!r} given twice in {what}")
            out[name] = known[name].convert(self, value_node)
        return out


def number_from_text(text: str) -> float:
    """A number written as text: ``0.03``, ``1e-3`` or a fraction ``a/b`` (``8/255``, as radii
    are written in this field); parsed, never evaluated. ``ValueError`` for anything else."""
    numerator, slash, denominator = text.strip().partition("/")
    try:
        return float(numerator) / float(denominator) if slash else float(text)
    except ZeroDivisionError:
        raise ValueError(f"division by zero in {text!r}") from None


def node_kind(node: yaml.Node) -> str:
    """``mapping``, ``list`` or ``scalar``: how an error names a node it did not expect."""
    return {yaml.MappingNode: "mapping", yaml.SequenceNode: "list"}.get(type(node), "scalar")


@dataclass(frozen=True)
class Number:
    """A number in ``[lo, hi]`` (``(lo, hi]`` if ``lo_open``; either bound may be None), an
    integer if ``integer``; a non-integer may be written as a fraction (``eps: 8/255``) or
    in exponent notation without a dot (``lr: 1e-3``, which YAML 1.1 reads as a string)."""

    lo: float | None = None
    hi: float | None = None
    integer: bool = False
    lo_open: bool = False

    @property
    def what(self) -> str:
        """``"an integer >= 1"``, ``"a number in (0.0, 1.0]"``, ..."""
        kind = "an integer" if self.integer else "a number"
        if self.hi is not None:
            return f"{kind} in {'(' if self.lo_open else '['}{self.lo}, {self.hi}]"
        if self.lo is not None:
            return f"{kind} {'>' if self.lo_open else '>='} {self.lo}"
        return kind

    def __call__(self, reader: Reader, node: yaml.Node):
        value = reader.scalar(node, self.what)
        # PyYAML reads a plain 8/255 or 1e-3 (no dot) as a string; a quoted '0.1' stays refused
        if isinstance(value, str) and node.style is None and not self.integer:
            try:
                value = number_from_text(value)
            except ValueError:
                pass  # refused below, as any other string
        ok_type = (int,) if self.integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, ok_type) or \
                not math.isfinite(value) or self.out_of_range(value):
            raise reader.error(node, f"expected {self.what}, got {value!r}")
        return value if self.integer else float(value)

    def out_of_range(self, value) -> bool:
        """Whether ``value`` lies outside the bounds."""
        low_bad = self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo)
        return low_bad or (self.hi is not None and value > self.hi)


@dataclass(frozen=True)
class Choice:
    """One of ``options`` (a tuple, or a dict from normalised spelling to the value kept),
    compared after ``canonical``."""

    options: tuple | dict
    canonical: Callable[[str], str] = str.lower

    @property
    def table(self) -> dict:
        """Normalised spelling -> the value kept."""
        return self.options if isinstance(self.options, dict) else \
            {o: o for o in self.options}

    @property
    def what(self) -> str:
        """``"one of mnist, cifar10"``."""
        return f"one of {', '.join(self.table.values())}"

    def __call__(self, reader: Reader, node: yaml.Node):
        value = reader.scalar(node, self.what)
        if not isinstance(value, str) or self.canonical(value) not in self.table:
            raise reader.error(node, f"expected {self.what}, got {value!r}")
        return self.table[self.canonical(value)]


@dataclass(frozen=True)
class Typed:
    """A scalar of Python type ``kind``, described as ``what`` (or null when ``nullable``)."""

    kind: type
    what: str
    nullable: bool = False

    def __call__(self, reader: Reader, node: yaml.Node):
        value = reader.scalar(node, self.what)
        if value is None and self.nullable:
            return None
        if not isinstance(value, self.kind) or (self.kind is not bool and
                                                isinstance(value, bool)):
            raise reader.error(node, f"expected {self.what}, got {value!r}")
        return value


@dataclass(frozen=True)
class Nullable:
    """``convert``'s value, or None for a null node."""

    convert: Callable

    @property
    def what(self) -> str:
        """The inner converter's ``what``, or null."""
        return f"{self.convert.what}, or null"

    def __call__(self, reader: Reader, node: yaml.Node):
        if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
            return None
        return self.convert(reader, node)


@dataclass(frozen=True)
class Section:
    """A nested mapping of ``keys``, named ``what`` in errors: ``build(**given)`` of the keys
    given, after ``check(given)`` returned no complaint (a message, raised at the mapping)."""

    keys: tuple
    what: str
    build: Callable[..., Any] = dict
    check: Callable[[dict], str | None] = lambda given: None

    def __call__(self, reader: Reader, node: yaml.Node):
        given = reader.mapping(node, self.keys, self.what)
        complaint = self.check(given)
        if complaint:
            raise reader.error(node, complaint)
        return self.build(**given)


@dataclass(frozen=True)
class Described:
    """A converter written as a function ``convert(reader, node)``, described as ``what``; the
    ``keys`` of a mapping form it accepts, if any."""

    what: str
    convert: Callable[[Reader, yaml.Node], Any]
    keys: tuple = ()

    def __call__(self, reader: Reader, node: yaml.Node):
        return self.convert(reader, node)


def described(what: str, keys: tuple = ()) -> Callable[[Callable], Described]:
    """Decorator: the function as a :class:`Described` converter."""
    return lambda convert: Described(what, convert, keys)


def plain_value(reader: Reader, node: yaml.Node):
    """A plain YAML value (numbers, strings, booleans, null, lists and mappings of them)."""
    if isinstance(node, yaml.SequenceNode):
        return [plain_value(reader, n) for n in node.value]
    if isinstance(node, yaml.MappingNode):
        return {reader.scalar(k, "a key"): plain_value(reader, v) for k, v in node.value}
    return reader.scalar(node, "a value")


@described("a mapping of keyword arguments (plain values)")
def keyword_arguments(reader: Reader, node: yaml.Node) -> dict:
    """A mapping from parameter names to plain values."""
    if not isinstance(node, yaml.MappingNode):
        raise reader.error(node, f"expected a mapping of keyword arguments, got a "
                                 f"{node_kind(node)}")
    out = {}
    for key_node, value_node in node.value:
        key = reader.scalar(key_node, "a parameter name")
        if not isinstance(key, str) or not key.isidentifier() or key in out:
            raise reader.error(key_node, f"expected a parameter name given once, got {key!r}")
        out[key] = plain_value(reader, value_node)
    return out
