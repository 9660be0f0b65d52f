"""The architecture-by-method table (``docs/architectures.md``): every bound method on small
versions of the architecture families people train today (``tests/architectures.py``).

    python -m benchmarks.architecture_table --markdown docs/architectures.md

Each cell: ``bounded`` (sound against sampled points, corners and PGD aimed at each bound, and
exact at eps = 0), ``refused: <the error, which names the graph node and operator>``, or in
bold a failure (unsound, inexact, crash). After the table, the refusals that remain anywhere in
the project (:mod:`benchmarks.refusals`). About a minute on one core.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import logging
import sys
import warnings
from pathlib import Path

import torch

from benchmarks import refusals
from tests import architectures


def run_all(witness=None) -> dict:
    """``{(family, column title): Outcome}`` over every family and method column."""
    results = {}
    for family in architectures.FAMILIES:
        case = architectures.family_case(family)
        for title, label in architectures.METHOD_COLUMNS:
            results[(family.name, title)] = architectures.check(case, label, witness=witness)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--markdown", nargs="?", const="-", default="-",
                        help="write the table here (default: stdout)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    logging.getLogger("auto_LiRPA").setLevel(logging.CRITICAL)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        text = architectures.markdown(run_all()) + "\n" + refusals.markdown()
    if args.markdown == "-":
        print(text, end="")
    else:
        Path(args.markdown).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
