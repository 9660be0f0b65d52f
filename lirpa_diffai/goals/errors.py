"""Errors that point into the text the user wrote: a goal expression or a YAML file.

A position is 1-based (line, column). When a goal expression comes from a YAML scalar, an
:class:`Origin` maps positions inside the expression to positions inside the file.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Origin:
    """Where an expression's first character lies in its source.

    ``line``/``column`` (1-based) locate character 1 of line 1 of the expression;
    ``continuation_column`` is the column of character 1 on the expression's later lines
    (a YAML block scalar's indentation). ``source`` names the file, if any.
    """

    source: str | None = None
    line: int = 1
    column: int = 1
    continuation_column: int = 1

    def locate(self, line: int, column: int) -> tuple[int, int]:
        """The (line, column) in the source of (line, column) inside the expression."""
        if line == 1:
            return self.line, self.column + column - 1
        return self.line + line - 1, self.continuation_column + column - 1


class SourceError(ValueError):
    """A refused input, with the position it was found at (when known).

    ``str(err)`` reads ``"<message> at line L, column C of <source>"``; the parts are kept
    as ``message``, ``line``, ``column``, ``source`` and ``path`` (the keys/arguments leading
    to the offending value, for inputs without positions such as Python mappings).
    """

    def __init__(self, message: str, line: int | None = None, column: int | None = None,
                 source: str | None = None, path: str | None = None,
                 snippet: str | None = None):
        self.message, self.line, self.column = message, line, column
        self.source, self.path, self.snippet = source, path, snippet
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.line is not None:
            where.append(f"line {self.line}, column {self.column}")
        if self.source:
            where.append(self.source)
        text = self.message
        if self.path:
            text += f" (in {self.path})"
        if where:
            text += " at " + " of ".join(where)
        if self.snippet:
            text += "\n" + self.snippet
        return text


class GoalSyntaxError(SourceError):
    """A goal or schedule expression (paper notation or YAML mapping form) was refused."""


def caret_snippet(text: str, line: int, column: int) -> str:
    """The ``line``-th line of ``text`` with a caret under ``column`` (both 1-based)."""
    lines = text.splitlines() or [""]
    shown = lines[min(line, len(lines)) - 1]
    return f"  {shown}\n  {' ' * (column - 1)}^"
