"""Command line: ``python -m lirpa_diffai COMMAND``.

Each command is a module of ``lirpa_diffai.cli`` with ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``; the modules import torch and the heavy parts only inside ``run``.
"""
import argparse
import importlib
import sys

COMMANDS = ("train", "certify", "graft", "plot", "install_hook")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lirpa_diffai", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"lirpa_diffai.cli.{name}")
        sub = commands.add_parser(name.replace("_", "-"), help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from .runtime import keep_freed_memory
    keep_freed_memory()  # large hzono tensors: reuse freed memory instead of page-faulting it in
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
