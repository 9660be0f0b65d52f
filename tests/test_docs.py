"""The documentation: the README stays short, the mkdocs site builds with --strict (broken links
and anchors fail it), and every relative link and repository path in the pages resolves."""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PAGES = sorted(DOCS.glob("*.md"))

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
# a repository path in a code span or prose: lirpa_diffai/..., tests/..., benchmarks/..., examples/..., docs/...
REPO_PATH = re.compile(r"(?<![\w/.$-])((?:lirpa_diffai|tests|benchmarks|examples|docs)/[\w./-]*\w)")


def prose(text: str) -> str:
    """The text without fenced code blocks (commands there name output paths)."""
    return FENCE.sub("", text)


def slug(heading: str) -> str:
    """Python-Markdown's toc slug (mkdocs' default) of a heading's text."""
    text = re.sub(r"[`*_]", "", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(path: Path) -> set[str]:
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.*?)\s*#*$", prose(path.read_text()), re.M)}


def relative_links(path: Path):
    for target in LINK.findall(prose(path.read_text())):
        if re.match(r"[a-z]+:", target) or target.startswith("//"):
            continue                                   # http:, https:, mailto:
        yield target


def test_readme_is_at_most_250_lines():
    lines = README.read_text().count("\n")
    assert lines <= 250, f"README.md has {lines} lines; move the detail to a docs/ page"


@pytest.mark.parametrize("path", [README] + PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(path):
    broken = []
    for target in relative_links(path):
        file, _, anchor = target.partition("#")
        resolved = path if not file else (path.parent / file).resolve()
        if not resolved.exists():
            broken.append(f"{target}: no file {resolved}")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading with the anchor #{anchor} in {resolved.name}")
    assert not broken, f"{path.name}: " + "; ".join(broken)


@pytest.mark.parametrize("path", [README] + PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_repository_path_exists(path):
    """Paths the text names (`lirpa_diffai/training/config.py`, `tests/verify/test_verify.py`) exist,
    so a moved module cannot leave the manual behind."""
    missing = sorted({p for p in REPO_PATH.findall(prose(path.read_text()))
                      if not p.endswith(".state.jsonl") and not (ROOT / p).exists()})
    assert not missing, f"{path.name} names paths that do not exist: {missing}"


def test_every_page_is_in_the_nav():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())

    def files(nav):
        for entry in nav:
            value = next(iter(entry.values())) if isinstance(entry, dict) else entry
            yield from (files(value) if isinstance(value, list) else [value])

    listed = set(files(config["nav"]))
    pages = {p.name for p in PAGES}
    assert pages <= listed, f"pages missing from mkdocs.yml's nav: {sorted(pages - listed)}"
    assert listed <= pages, f"nav entries without a page: {sorted(listed - pages)}"


def test_site_builds_strictly(tmp_path):
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed (the docs extra: pip install -e '.[docs]'; make install does)")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                             str(ROOT / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "index.html").is_file()
