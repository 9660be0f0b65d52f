"""Command line: ``python -m lirpa_diffai COMMAND``.

Each command is a module of ``lirpa_diffai.cli`` with ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``; the modules import torch and the heavy parts only inside ``run``. Every
command also takes the common options of ``lirpa_diffai.cli.common``, and reports a refused
input as ``error: <message>`` with exit status 2 (``CommandError``).
"""
import argparse
import importlib
import sys

from .cli.common import EXIT_ERROR, CommandError, add_common_options, apply_common_options
from .errors import UnsupportedOperatorError

COMMANDS = ("train", "certify", "graft", "plot", "export", "install_hook")
DESCRIPTION = ("lirpa-diffai: train networks with DiffAI's goals and hybrid zonotopes (hzono) "
               "on auto_LiRPA, certify them, plot bounds and training curves, and export "
               "them as ONNX.")
EPILOG = "Each command's options: python -m lirpa_diffai COMMAND --help"


def leaf_parsers(parser: argparse.ArgumentParser):
    """The parsers that run a command: ``parser`` itself, or those of its subcommands."""
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subparsers:
        return [parser]
    return [leaf for action in subparsers for choice in action.choices.values()
            for leaf in leaf_parsers(choice)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lirpa_diffai", description=DESCRIPTION,
                                     epilog=EPILOG)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"lirpa_diffai.cli.{name}")
        sub = commands.add_parser(name.replace("_", "-"), help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        for leaf in leaf_parsers(sub):
            add_common_options(leaf)
        sub.set_defaults(run=module.run)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    apply_common_options(args)
    from .runtime import keep_freed_memory
    keep_freed_memory()  # large hzono tensors: reuse freed memory instead of page-faulting it in
    try:
        return args.run(args)
    except (CommandError, UnsupportedOperatorError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
