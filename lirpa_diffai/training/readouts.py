"""What the trainer reports while it runs: the eps and schedule values of the goal at time
``t``, the progress bar's fields and the line printed per epoch."""
from __future__ import annotations

from dataclasses import fields

from ..goals import AdvInclusion, Goal, InclusionSample, NormalAdv, Sample, Sub
from ..goals.box import BoxGoal
from .config import TrainConfig
from ..schedules import Const, Schedule


def eps_factor(goal: Goal, t: float) -> float | None:
    """The fraction of eps that the goal's abstract (``Box``) part trains on at ``t``: the
    product of the ``Sub``/``Sample`` deltas on the way to the one ``Box`` (1 for a bare
    ``Box``; inside ``BiSample``, whose box radius depends on the data, an upper bound);
    None when the goal has no ``Box`` or several, or its radius is not a fraction of eps."""
    paths = list(_box_paths(goal, t, 1.0))
    return paths[0] if len(paths) == 1 else None


def _box_paths(goal: Goal, t: float, factor: float | None):
    """The factor of each Box in ``goal``; None for one whose radius is not a fraction of
    eps (DiffAI's ``w=`` or ``NormalAdv`` on the way)."""
    if isinstance(goal, NormalAdv) or any(f.type == "Radius" and getattr(goal, f.name) is not None
                                          for f in fields(goal)):
        factor = None
    if isinstance(goal, BoxGoal):
        yield factor
    elif isinstance(goal, (InclusionSample, AdvInclusion)):
        yield from _box_paths(goal.inner(), t, None if factor is None else factor * goal.sub(t))
        if isinstance(goal, AdvInclusion):
            yield from _box_paths(goal.a, t, factor)
    elif isinstance(goal, (Sub, Sample)):
        inner = goal.inner()
        yield from _box_paths(inner, t, None if factor is None else factor * goal.delta(t))
        if isinstance(goal, Sample):
            yield from _box_paths(goal.gs, t, factor)
    else:                    # any other goal: its goals (DList's and DProb's in pairs)
        for g in goal.arguments():
            if isinstance(g, tuple):
                g = g[0]
            if isinstance(g, Goal):
                yield from _box_paths(g, t, factor)


def schedule_values(goal: Goal, t: float) -> dict[str, float]:
    """The current value of every non-constant schedule argument of the goal, keyed by its
    path (``"Mix.lam"``, ``"Mix.g2.Sub.delta"``; a DList pair: ``"DList.pairs[2].w"`` and
    ``"DList.pairs[2].MMR.k_b"``)."""
    out: dict[str, float] = {}

    def visit(value, key):
        if isinstance(value, Schedule) and not isinstance(value, Const):
            out[key] = float(value(t))
        elif isinstance(value, Goal):
            walk(value, f"{key}.{type(value).__name__}")

    def walk(term, path):
        for f in fields(term):
            value = getattr(term, f.name)
            key = f"{path}.{f.name}"
            if hasattr(term, "variadic_item"):         # DList, DProb: (goal, weight) pairs
                for i, (g, w) in enumerate(value, 1):
                    visit(w, f"{key}[{i}].w")
                    walk(g, f"{key}[{i}].{type(g).__name__}")
            else:
                visit(value, key)
    walk(goal, type(goal).__name__)
    return out


def goal_eps(cfg: TrainConfig, t: float) -> float:
    """The radius the goal's abstract part trains on at ``t`` (``eps`` times the eps factor,
    or ``eps`` when the goal has no single factor)."""
    factor = eps_factor(cfg.goal, t)
    return cfg.eps * (1.0 if factor is None else factor)




def progress_fields(cfg: TrainConfig, t: float, loss: float, acc: float, lr: float) -> dict:
    """The progress bar's read-out: loss, accuracy, lr, the goal's eps and its schedules."""
    fields = {"loss": f"{loss:.4f}", "acc": f"{acc:.3f}", "lr": f"{lr:.3g}",
              "eps": f"{goal_eps(cfg, t):.4g}"}
    fields.update({".".join(k.split(".")[-2:]): f"{v:.3g}"
                   for k, v in schedule_values(cfg.goal, t).items()})
    return fields


def format_metrics(m: dict) -> str:
    """One line per epoch for the terminal."""
    parts = [f"epoch {m['epoch']}", f"loss {m['train_loss']:.4f}",
             f"train acc {m['train_accuracy']:.2%}"]
    if "test_accuracy" in m:
        parts.append(f"test acc {m['test_accuracy']:.2%}")
    if "test_certified" in m:
        parts.append(f"certified {m['test_certified']:.2%}")
    parts += [f"eps {m['eps']:.4g}", f"lr {m['lr']:.3g}", f"{m['seconds']:.1f} s"]
    return ", ".join(parts)


def format_duration(seconds: float) -> str:
    """``"42 s"``, ``"3.5 min"`` or ``"2.1 h"``."""
    if seconds < 90:
        return f"{seconds:.2g} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
