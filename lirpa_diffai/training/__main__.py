"""``python -m lirpa_diffai.training --markdown``: the docs page of the training configuration's
keys (``docs/configuration-keys.md``)."""
import argparse

from .schema import config_markdown

parser = argparse.ArgumentParser(prog="python -m lirpa_diffai.training",
                                 description="the docs page of the training configuration's keys")
parser.add_argument("--markdown", action="store_true", required=True, help="print docs/configuration-keys.md")
parser.parse_args()
print(config_markdown(), end="")
