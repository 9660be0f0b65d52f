"""Reading goals and schedules: the paper's notation and the nested-mapping (YAML) form.

Paper notation (a tokenizer and a recursive-descent parser; nothing is ever ``eval``-ed)::

    expr     := NUMBER | LITERAL | NAME [ '(' [ args ] ')' ] | '(' expr ',' expr ')'
    args     := arg { ',' arg }
    arg      := [ NAME '=' ] expr            (keyword arguments after positional ones)
    LITERAL  := 'inf' | 'True' | 'False' | 'None'
    NAME     := [A-Za-z_][A-Za-z0-9_]*       (a constructor of GOALS, FAST_ADVERSARIAL_GOALS,
                                              DOMAIN_GOALS or SCHEDULES: Point, Box, Mix,
                                              IFGSM, ..., DiffAI's domains HBox, HSwitch,
                                              HSmooth, HNIPS, ZBox, ZSwitch, ZSmooth, ZNIPS,
                                              HRand, Lin, Until; ``IFGSMk`` / ``PGDk`` with an
                                              integer k is ``IFGSM(k)`` / ``PGD(k)``)
    NUMBER   := [+-]? (digits [. digits?] | . digits) [(e|E) [+-]? digits]

A parenthesized pair ``(g, w)`` is an argument of ``DList`` / ``DProb`` (a goal and its
weight); ``inf`` is the norm argument of ``MMR``; ``True`` / ``False`` are flags such as
``should_end``, ``None`` an optional argument left unset (``w``).

Whitespace (newlines included) separates tokens. ``Point`` and ``Point()`` are the same.

Mapping form (YAML or Python): a string is an expression in the notation above, a number is
a constant schedule, and a one-key mapping ``{Name: args}`` applies a constructor to ``args``:
a list (positional), a mapping (keywords), null (no arguments) or a single scalar::

    goal: {Mix: [Point, {Sub: [{Lin: [0, 1, 150, 10]}, Box]}, "Lin(0, 0.5, 150, 10)"]}
    goal: {Mix: {g1: Point, g2: Box, lam: 0.5}}

In the mapping form ``DList`` takes a list of two-element lists:
``{DList: [[Point, 1], ["MMR(0.2, 0.2, 0.1, 10)", 0.5]]}``.

Parameters (in order; all are also keywords; DiffAI's goals: see the docstrings of
:mod:`.adversarial`, :mod:`.sampling`, :mod:`.combinators`): ``IFGSM(k=5, ...)``, ``PGD(k=5, ...)``,
``MMR(gamma_b, gamma_d, k_b, k_d, p=inf)``, ``DList(pair, pair, ...)`` (positional only),
``Mix(g1, g2, lam)``,
``Sub(delta, g)``, ``Sample(delta, r, gs, gt)``, ``BiSample(g1, g2)``, ``HRand(k, a=HSwitch)``,
``Lin(start, end, steps, warmup=0)``, ``Until(m, s1, s2)``.
Refused inputs raise :class:`GoalSyntaxError` with the line and column (inside the YAML file
when the text came from one) and what was expected.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import MISSING, dataclass, fields
from typing import NamedTuple

import yaml

from .domain_goals import DOMAIN_GOALS
from .errors import GoalSyntaxError, Origin, caret_snippet
from .fast_adversarial import FAST_ADVERSARIAL_GOALS
from .catalogue import GOALS, Goal
from ..schedules import COERCE, SCHEDULES, Const, Schedule, Term, as_schedule, describe

CONSTRUCTORS: dict[str, type[Term]] = {**GOALS, **FAST_ADVERSARIAL_GOALS, **DOMAIN_GOALS, **SCHEDULES}
_SUFFIXED = re.compile(r"(IFGSM|PGD)(\d+)$")   # the paper's IFGSMk, and PGDk
LITERALS = {"inf": float("inf"), "True": True, "False": False, "None": None}

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[(),=])
""", re.VERBOSE)


class Token(NamedTuple):
    kind: str      # "number", "name", "punct" or "end"
    text: str
    line: int      # 1-based, inside the expression
    column: int


@dataclass(frozen=True)
class Loc:
    """Where an argument was written: an absolute (line, column) in ``source``, or, for
    Python mappings, a ``path`` of constructor names and parameters."""

    line: int | None = None
    column: int | None = None
    source: str | None = None
    path: str | None = None

    def error(self, message: str, snippet: str | None = None) -> GoalSyntaxError:
        """A :class:`GoalSyntaxError` at this location."""
        return GoalSyntaxError(message, self.line, self.column, self.source, self.path, snippet)


def tokenize(text: str) -> list[Token]:
    """The tokens of ``text`` followed by an ``end`` token; unknown characters are refused."""
    tokens, pos, line, line_start = [], 0, 1, 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        column = pos - line_start + 1
        if m is None:
            raise GoalSyntaxError(f"unexpected character {text[pos]!r}", line, column,
                                  snippet=caret_snippet(text, line, column))
        if m.lastgroup != "ws":
            tokens.append(Token(m.lastgroup, m.group(), line, column))
        for i, ch in enumerate(m.group()):
            if ch == "\n":
                line, line_start = line + 1, pos + i + 1
        pos = m.end()
    tokens.append(Token("end", "", line, len(text) - line_start + 1))
    return tokens


def _describe_token(tok: Token) -> str:
    return "end of input" if tok.kind == "end" else repr(tok.text)


def _suggest(name: str, choices) -> str:
    near = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    if not near:
        near = difflib.get_close_matches(name.lower(), [c.lower() for c in choices], n=1)
        near = [c for c in choices if near and c.lower() == near[0]]
    return f"; did you mean {near[0]!r}?" if near else f"; known: {', '.join(choices)}"


def signature(cls: type[Term]) -> str:
    """``"g1, g2, lam"``: the parameter names, optional ones as ``name=default``."""
    return ", ".join(f.name if f.default is MISSING else f"{f.name}={f.default}"
                     for f in fields(cls))


NOTATION_CHARS = set("(),")   # in a mapping key: an unquoted goal that held ': '


def resolve(name: str, loc: Loc) -> tuple[type[Term], list]:
    """The constructor called ``name`` and the arguments its name carries (``IFGSM3``)."""
    if name in CONSTRUCTORS:
        return CONSTRUCTORS[name], []
    m = _SUFFIXED.match(name)
    if m:
        return CONSTRUCTORS[m.group(1)], [int(m.group(2))]
    raise loc.error(f"unknown constructor {name!r}" + _suggest(name, list(CONSTRUCTORS)))


def build(cls: type[Term], name: str, positional: list, keywords: dict, loc: Loc) -> Term:
    """``cls`` applied to the arguments, each checked against its parameter (errors at the
    argument's Loc). ``positional`` is a list of (value, Loc); ``keywords`` maps parameter
    names to (value, Loc); ``loc`` is where the constructor's name was written."""
    if hasattr(cls, "variadic_item"):
        return build_variadic(cls, name, positional, keywords, loc)
    params = fields(cls)
    names = [f.name for f in params]
    required = sum(f.default is MISSING for f in params)
    given = len(positional) + len(keywords)
    if len(positional) > len(params) or (not keywords and len(positional) < required):
        count = str(len(params)) if required == len(params) else f"{required} to {len(params)}"
        plural = "" if count == "1" else "s"
        raise loc.error(f"{name} takes {count} argument{plural} ({signature(cls)}), "
                        f"got {given}")
    bound = dict(zip(names, positional))
    for key, (value, kloc) in keywords.items():
        if key not in names:
            raise kloc.error(f"{name} has no parameter {key!r}" + _suggest(key, names))
        if key in bound:
            raise kloc.error(f"{name} got multiple values for argument {key!r}")
        bound[key] = (value, kloc)
    missing = [f.name for f in params if f.default is MISSING and f.name not in bound]
    if missing:
        raise loc.error(f"{name} is missing argument{'s' if len(missing) > 1 else ''} "
                        f"{', '.join(repr(m) for m in missing)} ({signature(cls)})")
    values = {}
    for f in params:
        if f.name in bound:
            value, aloc = bound[f.name]
            try:
                values[f.name] = COERCE[f.type](value, cls.__name__, f.name)
            except (TypeError, ValueError) as err:
                raise aloc.error(str(err)) from None
    return construct(cls, values, loc)


def construct(cls: type[Term], values: dict, loc: Loc) -> Term:
    """``cls(**values)``, its refusals as errors at ``loc``; a goal remembers ``loc``."""
    try:
        term = cls(**values)
    except (TypeError, ValueError) as err:
        raise loc.error(str(err)) from None
    if isinstance(term, Goal):
        object.__setattr__(term, "written_at", loc)
    return term


def build_variadic(cls: type[Term], name: str, positional: list, keywords: dict, loc: Loc) -> Term:
    """A constructor whose one parameter collects every (positional) argument, each checked
    by ``cls.variadic_item(value, name, index)`` so that a refusal points at it; without
    arguments, the parameter's default (DiffAI's ``DList()``, ``DProb()``)."""
    if keywords:
        raise next(iter(keywords.values()))[1].error(f"{name} takes positional arguments only")
    if not positional:
        if fields(cls)[0].default is MISSING:
            raise loc.error(f"{name} needs at least one argument")
        return construct(cls, {}, loc)
    items = []
    for i, (value, aloc) in enumerate(positional, 1):
        try:
            items.append(cls.variadic_item(value, name, i))
        except (TypeError, ValueError) as err:
            raise aloc.error(str(err)) from None
    return construct(cls, {fields(cls)[0].name: tuple(items)}, loc)


class _Parser:
    """Recursive descent over the tokens of one expression."""

    def __init__(self, text: str, origin: Origin):
        self.text, self.origin = text, origin
        self.tokens = tokenize_at(text, origin)
        self.i = 0

    def loc(self, tok: Token) -> Loc:
        line, column = self.origin.locate(tok.line, tok.column)
        return Loc(line, column, self.origin.source)

    def fail(self, tok: Token, message: str) -> GoalSyntaxError:
        snippet = caret_snippet(self.text, tok.line, tok.column)
        return self.loc(tok).error(message, snippet)

    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def take(self) -> Token:
        tok = self.peek()
        self.i += 1
        return tok

    def expect(self, text: str, what: str) -> Token:
        tok = self.take()
        if tok.text != text or tok.kind != "punct":
            raise self.fail(tok, f"expected {what}, got {_describe_token(tok)}")
        return tok

    def whole(self):
        value = self.expr()
        tok = self.peek()
        if tok.kind != "end":
            raise self.fail(tok, f"expected end of input, got {_describe_token(tok)}")
        return value

    def expr(self):
        tok = self.take()
        if tok.kind == "number":
            return float(tok.text) if re.search(r"[.eE]", tok.text) else int(tok.text)
        if tok.kind == "name" and tok.text in LITERALS and self.peek().text != "(":
            return LITERALS[tok.text]
        if tok.kind == "name":
            return self.call(tok)
        if tok.kind == "punct" and tok.text == "(":
            return self.pair()
        raise self.fail(tok, f"expected a goal, a schedule or a number, "
                             f"got {_describe_token(tok)}")

    def pair(self) -> tuple:
        """``(a, b)`` after its '(' (DList's (goal, weight))."""
        first = self.expr()
        self.expect(",", "',' (a pair is written (goal, weight))")
        second = self.expr()
        self.expect(")", "')' closing the pair (goal, weight)")
        return (first, second)

    def call(self, name_tok: Token) -> Term:
        loc = self.loc(name_tok)
        try:
            cls, carried = resolve(name_tok.text, loc)
        except GoalSyntaxError as err:
            raise self.fail(name_tok, err.message) from None
        positional = [(v, loc) for v in carried]
        keywords: dict = {}
        if self.peek().text == "(" and self.peek().kind == "punct":
            if carried:
                raise self.fail(self.peek(), f"{name_tok.text!r} already gives "
                                             f"{fields(cls)[0].name}; write {name_tok.text} "
                                             f"without parentheses")
            self.take()
            if self.peek().text != ")":
                self.arguments(positional, keywords)
            self.expect(")", "')' or ','")
        return build(cls, name_tok.text, positional, keywords, loc)

    def arguments(self, positional: list, keywords: dict) -> None:
        while True:
            tok = self.peek()
            if tok.kind == "name" and self.peek(1).text == "=":
                self.i += 2
                if tok.text in keywords:
                    raise self.fail(tok, f"argument {tok.text!r} given twice")
                keywords[tok.text] = (self.expr(), self.loc(tok))
            elif keywords:
                raise self.fail(tok, "expected a keyword argument (name=value): positional "
                                     "arguments come before keyword arguments")
            else:
                positional.append((self.expr(), self.loc(tok)))
            if self.peek().text != ",":
                return
            self.take()


def tokenize_at(text: str, origin: Origin) -> list[Token]:
    """``tokenize``, with errors placed by ``origin``."""
    try:
        return tokenize(text)
    except GoalSyntaxError as err:
        line, column = origin.locate(err.line, err.column)
        raise GoalSyntaxError(err.message, line, column, origin.source,
                              snippet=err.snippet) from None


def _expect(value, expect: str, loc: Loc):
    """``value`` as a goal (``expect == "goal"``) or schedule, else an error at ``loc``."""
    if expect == "goal":
        if isinstance(value, Goal):
            return value
        raise loc.error(f"expected a goal, got {describe(value)}")
    try:
        return as_schedule(value)
    except TypeError:
        raise loc.error(f"expected a schedule or a number, got {describe(value)}") from None


def parse_expression(text: str, origin: Origin | None = None):
    """The goal, schedule or number written in ``text`` (paper notation)."""
    return _Parser(text, origin or Origin()).whole()


# ----------------------------------------------------------------------------- mapping form

_REPRESENT = yaml.representer.SafeRepresenter()


def yaml_value(node: yaml.Node):
    """The Python value of a YAML node under the safe schema; ``ValueError`` for a tag the
    safe loader refuses (``!!python/...``)."""
    try:
        return yaml.constructor.SafeConstructor().construct_object(node, deep=True)
    except yaml.YAMLError:
        raise ValueError(f"unsupported YAML tag {node.tag!r}") from None


def _value(node: yaml.Node, loc: Loc):
    try:
        return yaml_value(node)
    except ValueError as err:
        raise loc.error(str(err)) from None


def _node_loc(node: yaml.Node, source: str | None, path: str) -> Loc:
    mark = node.start_mark
    if mark is None:
        return Loc(source=source, path=path or None)
    return Loc(mark.line + 1, mark.column + 1, source)


def scalar_origin(node: yaml.ScalarNode, source: str | None) -> Origin:
    """Where the text of a YAML string scalar starts in its file: after the quote of a
    quoted scalar, on the line after the indicator of a block scalar (``|``, ``>``)."""
    mark = node.start_mark
    if mark is None:
        return Origin(source)
    if node.style in ("|", ">"):
        following = str(mark.buffer).split("\n")[mark.line + 1:]
        content = next((ln for ln in following if ln.strip()), "")
        indent = len(content) - len(content.lstrip(" ")) + 1
        return Origin(source, mark.line + 2, indent, indent)
    shift = 1 if node.style in ("'", '"') else 0
    return Origin(source, mark.line + 1, mark.column + 1 + shift, mark.column + 1)


def _parse_scalar(text: str, node: yaml.ScalarNode, source: str | None, path: str):
    """A string scalar parsed as notation; without a file position, errors name the path."""
    if node.start_mark is not None:
        return parse_expression(text, scalar_origin(node, source))
    try:
        return parse_expression(text)
    except GoalSyntaxError as err:
        raise GoalSyntaxError(err.message, path=path or None, snippet=err.snippet) from None


def from_node(node: yaml.Node, source: str | None = None, path: str = ""):
    """The goal, schedule or number a YAML node (from ``yaml.compose``) denotes."""
    loc = _node_loc(node, source, path)
    if isinstance(node, yaml.ScalarNode):
        value = _value(node, loc)
        if isinstance(value, str):
            return _parse_scalar(value, node, source, path)
        if value is None or isinstance(value, (int, float)):
            return value      # booleans and null: arguments such as should_end, w
        raise loc.error(f"expected a goal, a schedule or a number, got {value!r}")
    if not isinstance(node, yaml.MappingNode) or len(node.value) != 1:
        got = "a list" if isinstance(node, yaml.SequenceNode) else \
            f"a mapping with {len(node.value)} keys"
        raise loc.error("expected a constructor as a one-key mapping {Name: arguments}, "
                        f"a string or a number; got {got}")
    key, args = node.value[0]
    name = _value(key, _node_loc(key, source, path))
    here = f"{path}.{name}" if path else str(name)
    key_loc = _node_loc(key, source, here)
    if not isinstance(name, str):
        raise key_loc.error(f"expected a constructor name, got {name!r}")
    if NOTATION_CHARS & set(name):
        raise key_loc.error(f"YAML read this goal as a mapping with the key {name!r}, as "
                            "': ' starts a mapping; quote the goal (goal: \"...\"); in the "
                            "paper's notation keyword arguments take '=': Box(w=0.1)")
    cls, carried = resolve(name, key_loc)
    positional = [(v, key_loc) for v in carried]
    keywords = {}
    if isinstance(args, yaml.SequenceNode):
        for i, n in enumerate(args.value):
            where = f"{here}[{i}]"
            if hasattr(cls, "variadic_item") and isinstance(n, yaml.SequenceNode):
                value = tuple(from_node(e, source, f"{where}[{j}]") for j, e in enumerate(n.value))
            else:
                value = from_node(n, source, where)
            positional.append((value, _node_loc(n, source, where)))
    elif isinstance(args, yaml.MappingNode):
        for k, v in args.value:
            kname = _value(k, _node_loc(k, source, here))
            kloc = _node_loc(k, source, f"{here}.{kname}")
            if not isinstance(kname, str) or kname in keywords:
                raise kloc.error(f"{name}: parameter name {kname!r} is not a string or is "
                                 "given twice")
            keywords[kname] = (from_node(v, source, f"{here}.{kname}"), kloc)
    elif _value(args, key_loc) is not None:
        positional.append((from_node(args, source, f"{here}[0]"), _node_loc(args, source, here)))
    return build(cls, name, positional, keywords, key_loc)


def to_node(obj) -> yaml.Node:
    """A YAML node tree (without positions) for plain Python data: dicts, lists, strings,
    numbers, None, and goals/schedules (as their notation)."""
    if isinstance(obj, dict):
        return yaml.MappingNode("tag:yaml.org,2002:map",
                                [(to_node(k), to_node(v)) for k, v in obj.items()])
    if isinstance(obj, (list, tuple)):
        return yaml.SequenceNode("tag:yaml.org,2002:seq", [to_node(v) for v in obj])
    if isinstance(obj, Term):
        obj = str(obj)
    return _REPRESENT.represent_data(obj)


def to_mapping(term: Term):
    """The nested-mapping form of a goal or schedule: ``{Name: [args...]}`` (arguments left
    at their defaults omitted; ``{Name: {param: value}}`` when one before a given one is
    omitted), goals without arguments as their name, constants as numbers (inverse of
    :func:`parse_goal` on mappings)."""
    if isinstance(term, Const):
        v = term.value
        return int(v) if v.is_integer() and abs(v) < 1e15 else v
    def convert(a):
        if isinstance(a, tuple):
            return [convert(v) for v in a]
        return to_mapping(a) if isinstance(a, Term) else a
    name = type(term).__name__
    if hasattr(term, "variadic_item"):
        return {name: [convert(a) for a in term.arguments()]}
    given = [(f, getattr(term, f.name)) for f in fields(term)
             if f.default is MISSING or getattr(term, f.name) != f.default]
    if not given:
        return name
    if [f.name for f, _ in given] == [f.name for f in fields(term)[:len(given)]]:
        return {name: [convert(v) for _, v in given]}
    return {name: {f.name: convert(v) for f, v in given}}


def _parse(source, expect: str, origin: Origin | None):
    origin = origin or Origin()
    if isinstance(source, str):
        start = Loc(origin.line, origin.column, origin.source)
        return _expect(parse_expression(source, origin), expect, start)
    node = source if isinstance(source, yaml.Node) else to_node(source)
    return _expect(from_node(node, origin.source), expect, _node_loc(node, origin.source, ""))


def parse_goal(text_or_mapping, origin: Origin | None = None) -> Goal:
    """A :class:`Goal` from the paper's notation (``str``), a nested mapping (``dict``, see
    the module docstring) or a YAML node. ``origin`` places a string inside a file."""
    return _parse(text_or_mapping, "goal", origin)


def parse_schedule(text_or_mapping, origin: Origin | None = None) -> Schedule:
    """A :class:`Schedule` (numbers become ``Const``), read like :func:`parse_goal`."""
    if isinstance(text_or_mapping, (int, float)) and not isinstance(text_or_mapping, bool):
        return as_schedule(text_or_mapping)
    return _parse(text_or_mapping, "schedule", origin)
