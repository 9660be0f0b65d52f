"""The package's architecture as a test: every import (module level or inside a function) goes
from a higher layer to a lower one or stays inside its own unit, so there is no cycle between
units and no upward arrow."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lirpa_diffai"

# lowest first; a unit is a subpackage or a module at the package root
LAYERS = (
    ("errors", "runtime", "schedules", "hybrid_zono", "data"),
    ("imagenet",),
    ("domain",),
    ("lirpa03",),
    ("bound_ops",),
    ("memory",),
    ("bounded_module",),
    ("mmr", "models"),
    ("evaluation", "grafting"),
    ("goals", "verify"),
    ("training",),
    ("pipeline",),
    ("cli", "__main__"),
)
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def imported_modules(path: Path, source: str | None = None) -> set[str]:
    """Every ``lirpa_diffai`` module that ``path`` (or ``source`` read as ``path``) imports, at
    any depth of its code."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("lirpa_diffai"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("lirpa_diffai"):
                target = node.module
            else:
                continue
            for alias in node.names:
                full = f"{target}.{alias.name}"
                found.add(full if is_module(full) else target)
    return found


def unit_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def arrows() -> list[tuple[str, str, str, str]]:
    """(importing module, imported module, importing unit, imported unit) across units."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = module_name(path)
        for target in imported_modules(path):
            a, b = unit_of(source), unit_of(target)
            if a is not None and b is not None and a != b:
                out.append((source, target, a, b))
    return out


def test_every_unit_has_a_layer():
    units = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()}
    assert units == set(RANK), f"units without a layer: {units - set(RANK)}; stale: {set(RANK) - units}"


def test_no_upward_import():
    upward = [f"{s} -> {t}" for s, t, a, b in arrows() if RANK[a] < RANK[b]]
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_no_cycle_between_units_of_one_layer():
    edges = {(a, b) for _, _, a, b in arrows() if RANK[a] == RANK[b]}
    both = sorted((a, b) for a, b in edges if (b, a) in edges)
    assert not both, f"units importing each other: {both}"


def test_goals_is_the_pure_goal_language():
    """The goal language knows nothing of the networks or the training configuration."""
    found = [f"{s} -> {t}" for s, t, a, b in arrows()
             if a == "goals" and b in ("models", "training")]
    assert not found, "\n".join(found)


def test_the_check_sees_an_upward_import_inside_a_function():
    """The checker itself: a function-level relative import of a higher unit is found."""
    path = PACKAGE / "models" / "resnet.py"
    source = path.read_text() + "\n\ndef f():\n    from ..goals import core\n"
    assert "lirpa_diffai.goals.core" in imported_modules(path, source)
    assert RANK["models"] < RANK["goals"]
