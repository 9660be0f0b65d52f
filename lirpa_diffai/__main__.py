"""Command line: ``python -m lirpa_diffai COMMAND``."""
import argparse
import sys


def _install_hook(args) -> int:
    from ._compat import write_pth
    print(f"wrote {write_pth(args.site_dir)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lirpa_diffai", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    hook = commands.add_parser(
        "install-hook", help="write the start-up hook that lets `import auto_LiRPA` work in any order")
    hook.add_argument("--site-dir", default=None, help="target site-packages (default: this interpreter's)")
    hook.set_defaults(run=_install_hook)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
