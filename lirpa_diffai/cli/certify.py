"""``python -m lirpa_diffai certify``."""
HELP = "certify (not yet available)"


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    raise SystemExit("python -m lirpa_diffai certify: not yet available")
