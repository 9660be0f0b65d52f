"""Evaluating a trained network (``python -m lirpa_diffai certify``): standard accuracy,
accuracy under MI-FGSM and certified accuracy per bound method, each timed.

A sample is *certified* by a method when the network classifies it correctly and every lower
bound of the margins ``y_label - y_j`` over ``[max(x - eps, lo), min(x + eps, hi)]`` is
positive. Every accuracy is a fraction of all evaluated samples.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .attacks import attack_correct
from .certify import certified_mask
from .training.checkpoint import CHECKPOINT, config_of, load_checkpoint, load_state_checked
from .training.errors import TrainingError
from .training.step import build_network


@dataclass
class MethodRow:
    """Certified accuracy of one bound method and its wall-clock seconds."""

    method: str
    certified: float
    seconds: float


@dataclass
class Report:
    """What ``certify`` measured on ``n`` test samples at radius ``eps``."""

    network: str
    dataset: str
    n: int
    eps: float
    clean: float
    attack: float
    attack_seconds: float
    methods: list[MethodRow] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)


def batches(n: int, size: int):
    """Index slices of ``size`` covering ``range(n)``."""
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def evaluate_network(model: nn.Module, bm, x: torch.Tensor, y: torch.Tensor, eps: float,
                     methods, batch_size: int = 100, data_range=(0.0, 1.0),
                     num_classes: int = 10, network: str = "", dataset: str = "",
                     progress=None) -> Report:
    """Clean, MI-FGSM and certified accuracy of ``model`` (eval mode) on ``(x, y)``.
    ``bm`` is a ``lirpa_diffai.BoundedModule`` around ``model`` in eval mode; ``progress``
    (optional) is called with a message before each part."""
    say = progress or (lambda _msg: None)
    parts = batches(len(x), batch_size)
    with torch.no_grad():
        correct = torch.cat([model(x[s]).argmax(1) == y[s] for s in parts])
    say("MI-FGSM")
    start = time.perf_counter()
    robust = torch.cat([attack_correct(model, x[s], y[s], eps, data_range) for s in parts])
    report = Report(network, dataset, len(x), eps, correct.float().mean().item(),
                    robust.float().mean().item(), time.perf_counter() - start)
    for method in methods:
        say(method)
        start = time.perf_counter()
        proved = torch.cat([certified_mask(bm, x[s], y[s], eps, method, data_range,
                                           num_classes) for s in parts])
        seconds = time.perf_counter() - start
        report.methods.append(MethodRow(method, (proved & correct).float().mean().item(),
                                        seconds))
    return report


def format_report(r: Report) -> str:
    """The terminal table of a report."""
    head = (f"{r.network} on {r.n} {r.dataset} test images, eps = {r.eps:g}\n"
            f"standard accuracy: {r.clean:.1%}\n\n")
    lines = ["| evaluation | accuracy | seconds |", "|---|---:|---:|",
             f"| MI-FGSM (mu 0.8, 20 steps of eps/10) | {r.attack:.1%} | "
             f"{r.attack_seconds:.1f} |"]
    lines += [f"| certified, {m.method} | {m.certified:.1%} | {m.seconds:.1f} |"
              for m in r.methods]
    return head + "\n".join(lines)


# ------------------------------------------------------------------- the certify command

def known_methods() -> dict[str, str]:
    """Accepted method names (lower case) -> the spelling passed to ``compute_bounds``."""
    from . import bounded_module
    from .goals.config import METHODS
    names = dict(METHODS)
    names.update({m: SPELLING.get(m, m) for m in bounded_module.HZONO_METHODS})
    names.update({m: SPELLING.get(m, m)
                  for m in getattr(bounded_module, "CROWN_HZONO_METHODS", {})})
    return names


# how the tables print the hzono variants (compute_bounds takes any case)
SPELLING = {"hbox": "HBox", "hnips": "HNIPS", "hswitch": "HSwitch", "hsmooth": "HSmooth",
            "crown-hzono": "CROWN-hzono", "alpha-crown-hzono": "alpha-CROWN-hzono"}


def parse_methods(text: str) -> list[str]:
    """``"hzono,IBP"`` -> ``["hzono", "IBP"]``; an unknown name is a ValueError with the
    nearest known one."""
    import difflib
    known = known_methods()
    out = []
    for name in (part.strip() for part in text.split(",")):
        if not name:
            continue
        key = name.lower().replace("_", "-")
        if key not in known:
            near = difflib.get_close_matches(key, list(known), n=1, cutoff=0.0)
            raise ValueError(f"unknown bound method {name!r}; did you mean {known[near[0]]!r}? "
                             f"Known: {', '.join(sorted(set(known.values())))}")
        out.append(known[key])
    if not out:
        raise ValueError("no bound method given")
    return out


def check_eps(eps: float, data_range) -> float:
    """``eps`` if ``0 < eps <= hi - lo``, else a ValueError."""
    lo, hi = data_range
    if not (eps > 0 and eps <= hi - lo):
        raise ValueError(f"eps must be in (0, {hi - lo:g}] (the data range is [{lo:g}, {hi:g}]), "
                         f"got {eps:g}")
    return float(eps)


def load_trained(checkpoint_path) -> tuple:
    """``(model in eval mode, cfg)`` from a training checkpoint (a file, or a run directory
    holding ``checkpoint.pt``) or a grafted checkpoint (``grafted.pt`` or its directory; its
    cfg has the network, dataset and selection eps, and the defaults otherwise)."""
    from pathlib import Path
    from .grafting.checkpoint import GRAFTED_FILE, is_grafted_checkpoint, network_from
    path = Path(checkpoint_path)
    if path.is_dir():
        path = path / (GRAFTED_FILE if (path / GRAFTED_FILE).is_file() and
                       not (path / CHECKPOINT).is_file() else CHECKPOINT)
    try:
        peek = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # load_checkpoint below says what is wrong with the file
        peek = None
    if is_grafted_checkpoint(peek):
        from .grafting.rewrite import GraftingError
        try:
            return network_from(peek, str(path)), grafted_config(peek, path)
        except GraftingError as err:
            raise TrainingError(str(err)) from None
    ckpt = load_checkpoint(path)
    cfg = config_of(ckpt)
    model = build_network(cfg)
    load_state_checked(model, ckpt["state_dict"], cfg.network)
    return model.eval(), cfg


def grafted_config(ckpt: dict, path) -> "TrainConfig":
    """The configuration certify uses for a grafted checkpoint: its network, dataset and
    eps (the one its neurons were selected at)."""
    from .goals import Point
    from .goals.config import TrainConfig
    return TrainConfig(network=ckpt["network"], dataset=ckpt["dataset"], eps=ckpt["eps"],
                       goal=Point(), epochs=1, graft=str(path), source=str(path))


def certify_checkpoint(checkpoint_path, methods: str, eps: float | None = None,
                       limit: int | None = None, batch_size: int = 100,
                       json_path: str | None = None, log=print,
                       hzono_rows: str | None = None) -> tuple[Report, str]:
    """Evaluate a checkpoint on its dataset's test split (see :func:`evaluate_network`);
    returns the report and its table, and writes the JSON to ``json_path`` if given.
    ``hzono_rows`` ("0", "k" or "all") replaces the configuration's
    ``hzono.correlate_input`` for the hzono methods (and CROWN-hzono).
    Refused input raises ValueError (TrainingError, CheckpointError, ConfigError)."""
    from pathlib import Path
    from . import data
    from .bounded_module import BoundedModule, parse_correlate_input
    try:
        method_list = parse_methods(methods)
        if limit is not None and limit < 1:
            raise ValueError(f"--limit must be a positive integer, got {limit}")
        if batch_size < 1:
            raise ValueError(f"--batch-size must be a positive integer, got {batch_size}")
    except ValueError as err:
        raise TrainingError(str(err)) from None
    model, cfg = load_trained(checkpoint_path)
    try:
        eps = check_eps(cfg.eps if eps is None else eps, cfg.data_range)
    except ValueError as err:
        raise TrainingError(str(err)) from None
    x, y = data.load_dataset(cfg.dataset, "test", cfg.data_root).tensors
    n = limit or cfg.test_subset or len(x)
    x, y = x[:n], y[:n]
    bound_opts = dict(cfg.bound_opts)
    try:
        if hzono_rows is not None:
            rows = parse_correlate_input(hzono_rows, "--hzono-rows (correlate_input)")
            bound_opts["hzono"] = {**bound_opts.get("hzono", {}), "correlate_input": rows}
        bm = BoundedModule(model, x[:1], bound_opts=bound_opts).eval()
    except ValueError as err:  # bound_opts["hzono"] refused
        raise TrainingError(str(err)) from None
    log(f"evaluating {cfg.network} on {len(x)} {cfg.dataset} test images at eps {eps:g}")
    report = evaluate_network(model, bm, x, y, eps, method_list, batch_size, cfg.data_range,
                              cfg.num_classes, cfg.network, cfg.dataset,
                              progress=lambda m: log(f"  {m} ..."))
    if json_path:
        Path(json_path).write_text(report.to_json() + "\n")
    return report, format_report(report)
