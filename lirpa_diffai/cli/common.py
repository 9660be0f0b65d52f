"""What every subcommand shares: the common options, the error convention and the check of an
output path.

Convention: a refused input or a failed command raises :class:`CommandError`; ``__main__``
prints ``error: <message>`` on stderr and exits with status 2 (argparse's own usage errors
exit 2 as well); a command stopped by Ctrl-C returns :data:`EXIT_INTERRUPTED`. Nothing here
imports torch until a command runs.
"""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130   # 128 + SIGINT, the shell's convention


class CommandError(Exception):
    """A refused input or a failed command, reported as ``error: <message>`` (exit 2)."""


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def number(text: str) -> float:
    """argparse type: a finite number, also written as a fraction ``a/b`` (``8/255``, as
    radii are written in this field); parsed, never evaluated."""
    from ..training.reader import number_from_text
    try:
        value = number_from_text(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or a fraction a/b such as 8/255, "
                                         f"got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def yaml_mapping(text: str) -> dict:
    """argparse type: a YAML mapping (``{hidden: 64}``), read with the safe loader."""
    import yaml
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise argparse.ArgumentTypeError(f"invalid YAML {text!r}: "
                                         f"{getattr(err, 'problem', None) or err}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a mapping such as '{{hidden: 64}}', got "
                                         f"{text!r}")
    return value


MODEL_HELP = ("a training run directory (or its checkpoint.pt), a graft output, a pretrained "
              "network's name or file (mnist_conv_small_nat, ../shared/models/resnet2b.pth), "
              "or a state dict (.pth) with --network")


def add_model_options(parser: argparse.ArgumentParser, network_help: str | None = None) -> None:
    """``--network``, ``--network-args`` and ``--dataset``: what a state dict belongs to."""
    parser.add_argument("--network", default=None, metavar="NAME", help=network_help or (
        "the network a state dict belongs to: a zoo network (conv_small, ...) or "
        "package.module:Name"))
    parser.add_argument("--network-args", type=yaml_mapping, default=None, metavar="YAML",
                        help="keyword arguments of package.module:Name, a YAML mapping "
                             "('{hidden: 64}')")
    parser.add_argument("--dataset", choices=("mnist", "cifar10"), default=None,
                        help="the dataset (default: the network's)")


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """The options every subcommand takes, in their own help group."""
    group = parser.add_argument_group("common options")
    group.add_argument("--threads", type=positive_int, default=None,
                       help="torch CPU threads per process (default: torch's; on a busy "
                            "machine 1 avoids oversubscription)")


def apply_common_options(args: argparse.Namespace) -> None:
    """Put the common options into effect before a command runs."""
    if getattr(args, "threads", None):
        import torch
        torch.set_num_threads(args.threads)


def check_output_path(path: str | None, option: str) -> None:
    """Refuse, before any work, an output file that cannot be written: its directory is
    missing or not writable, or the path is a directory."""
    if path is None:
        return
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise CommandError(f"{option} {path}: is a directory, not a file")
    if not parent.is_dir():
        raise CommandError(f"{option} {path}: directory {parent} does not exist")
    if target.exists():
        if not os.access(target, os.W_OK):
            raise CommandError(f"{option} {path}: the file is not writable")
    elif not os.access(parent, os.W_OK | os.X_OK):
        raise CommandError(f"{option} {path}: directory {parent} is not writable")
