"""``python -m lirpa_diffai.lirpa03 --markdown``: the manifest's table of fixes (``docs/auto-lirpa-fixes.md``)."""
import sys

from .manifest import fixes_markdown

if sys.argv[1:] != ["--markdown"]:
    sys.exit("usage: python -m lirpa_diffai.lirpa03 --markdown")
sys.stdout.write(fixes_markdown())
