"""``python -m lirpa_diffai plot``."""
HELP = "plot (not yet available)"


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    raise SystemExit("python -m lirpa_diffai plot: not yet available")
