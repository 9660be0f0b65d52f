"""``python -m lirpa_diffai train``."""
HELP = "train (not yet available)"


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    raise SystemExit("python -m lirpa_diffai train: not yet available")
