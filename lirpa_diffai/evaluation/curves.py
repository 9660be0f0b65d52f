"""Training curves from a training run's metrics file: the data of ``plot training``.

The file (``<out>/metrics.jsonl`` of ``python -m lirpa_diffai train``) holds one JSON object
per line, one line per epoch, with flat keys: ``epoch`` (required, a number) and any of
``train_loss``, ``train_accuracy``, ``test_accuracy``, ``test_certified``, ``eps``, ``lr``,
``seconds`` (numbers; a missing key or ``null`` is a gap). Other keys are ignored. Blank lines
are skipped; a line for an epoch already seen replaces it (a resumed run). Every malformed line
raises :class:`MetricsFormatError` naming the file and line. Nothing here needs matplotlib.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

METRICS = ("train_loss", "train_accuracy", "test_accuracy", "test_certified", "eps", "lr", "seconds")

Series = dict[str, tuple[list[float], list[float]]]


class MetricsFormatError(ValueError):
    """A metrics file line that is not a JSON object with a numeric ``epoch``."""


def is_number(value) -> bool:
    """A JSON number (bool excluded, though Python counts it as an int)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_record(text: str, where: str) -> dict[str, float]:
    """One line as ``{"epoch": ..., metric: value}`` with only the known, present metrics.

    ``where`` (``"file:line"``) prefixes every error message."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        raise MetricsFormatError(f"{where}: not JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(record, dict):
        raise MetricsFormatError(f"{where}: expected a JSON object, found {type(record).__name__}")
    if not is_number(record.get("epoch")):
        raise MetricsFormatError(f"{where}: 'epoch' must be a number, found {record.get('epoch')!r}")
    out = {"epoch": float(record["epoch"])}
    for key in METRICS:
        value = record.get(key)
        if value is None:
            continue
        if not is_number(value):
            raise MetricsFormatError(f"{where}: {key!r} must be a number or null, found {value!r}")
        out[key] = float(value)
    return out


def read_metrics(path: str | os.PathLike) -> list[dict[str, float]]:
    """The records of a metrics file, sorted by epoch (a repeated epoch keeps its last line).

    Raises FileNotFoundError for a missing file and MetricsFormatError for a malformed line
    or a file without records."""
    path = Path(path)
    by_epoch: dict[float, dict] = {}
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                record = parse_record(line, f"{path}:{number}")
                by_epoch[record["epoch"]] = record
    if not by_epoch:
        raise MetricsFormatError(f"{path}: no records (expected one JSON object per line)")
    return [by_epoch[e] for e in sorted(by_epoch)]


def series(records: list[dict[str, float]]) -> Series:
    """``{metric: (epochs, values)}`` for every metric present in at least one record;
    records without the metric (or with a non-finite value) are left out of its series."""
    out: Series = {}
    for key in METRICS:
        points = [(r["epoch"], r[key]) for r in records if key in r and math.isfinite(r[key])]
        if points:
            out[key] = ([e for e, _ in points], [v for _, v in points])
    return out
