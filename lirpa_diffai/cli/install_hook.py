"""``python -m lirpa_diffai install-hook``."""
HELP = "write the start-up hook that lets `import auto_LiRPA` work in any order"


def add_arguments(parser) -> None:
    parser.add_argument("--site-dir", default=None, help="target site-packages (default: this interpreter's)")


def run(args) -> int:
    from ..lirpa03.hook import write_pth
    print(f"wrote {write_pth(args.site_dir)}")
    return 0
