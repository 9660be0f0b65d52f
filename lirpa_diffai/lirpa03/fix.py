"""One entry of the manifest (:mod:`.manifest`): a named change to auto_LiRPA 0.3 or to the
torch / NumPy it runs on, with the reason (its docstring) and the test that shows it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

STAGES = ("pre-import", "post-import")


@dataclass(frozen=True)
class Fix:
    """``build()`` returns ``{(owner, attribute): replacement}``, reading the attributes it
    wraps when it runs (so a fix listed in ``after`` has already replaced them). ``after``
    names the earlier fixes whose replacement of a shared attribute this one wraps (``"*"``:
    any); without it, a second fix of one attribute is an error. ``stage``: before or after
    auto_LiRPA's module body runs. ``since_torch``: applied only on torch at or above it."""
    name: str
    build: Callable[[], dict[tuple[Any, str], Any]]
    reason: str
    test: str
    stage: str = "post-import"
    after: tuple[str, ...] = ()
    since_torch: str | None = None


def fix(test: str, stage: str = "post-import", after: tuple[str, ...] = (),
        since_torch: str | None = None) -> Callable[[Callable], Fix]:
    """Declare the decorated ``build`` function as a :class:`Fix`; its docstring is the reason
    and ``test`` names the test function (under ``tests/``) that fails without it."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; one of {STAGES}")

    def declare(build: Callable) -> Fix:
        reason = " ".join((build.__doc__ or "").split())
        return Fix(build.__name__, build, reason, test, stage, tuple(after), since_torch)
    return declare
