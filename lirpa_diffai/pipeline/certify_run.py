"""Evaluating a trained network (``python -m lirpa_diffai certify``): standard accuracy,
accuracy under MI-FGSM and, per bound method (DiffAI's "test domain"), what DiffAI's tester
prints, each timed.

A sample is *proved* by a method when every lower bound of the margins ``y_pred - y_j`` over
``[max(x - eps, lo), min(x + eps, hi)]`` is positive, ``pred`` being the network's prediction
on ``x``; it is *certified* when it is proved and ``pred`` is its label. Per method:

- ``proved`` = Pr[proved], ``certified`` = Pr[correct and proved] (fractions of all
  evaluated samples), ``correct_given_proved`` = Pr[correct | proved] = certified / proved
  (0 when nothing is proved, as DiffAI prints it);
- ``mean_width``: the mean over the samples of DiffAI's width ``sum_k (u_k - l_k) / 2`` over
  the logits (``certify.proof_and_width``);
- ``seconds``: the method's total time over all samples (DiffAI's ``Time``).

DiffAI's input box is ``x +- eps`` unclipped; this one is clipped to the data range, a subset,
so its bounds are at least as tight.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from ..evaluation.mi_fgsm import attack_correct
from ..evaluation.margins import METHOD_ERRORS, method_error, proof_and_width
from ..domain.methods import DOMAINS
from ..training.batches import dataset_of
from ..training.errors import TrainingError


@dataclass
class MethodRow:
    """One bound method's figures (see the module docstring) and its wall-clock seconds, or
    the ``error`` of a method that failed (then no figures). ``complete``: for the complete
    verifier ``BaB``, its ``verify.campaign.CompleteSummary`` as a dict (counts, each
    sample's status); BaB verifies only correctly classified samples and has no output
    element, so its ``proved``, ``correct_given_proved`` and ``mean_width`` are None, as is
    the ``mean_width`` of a method that optimizes its bounds (``certify.proof_and_width``)."""

    method: str
    certified: Optional[float] = None
    seconds: Optional[float] = None
    error: Optional[str] = None
    complete: Optional[dict] = None
    proved: Optional[float] = None
    correct_given_proved: Optional[float] = None
    mean_width: Optional[float] = None


def method_row(method: str, proved: torch.Tensor, correct: torch.Tensor,
               width: Optional[torch.Tensor], seconds: float) -> MethodRow:
    """DiffAI's figures from the per-sample ``proved`` and ``correct`` masks and widths:
    Pr[proved], Pr[correct and proved], Pr[correct | proved] (0 if nothing is proved) and
    the mean width (None without widths: an optimizing method)."""
    pr_proved = proved.float().mean().item()
    pr_certified = (proved & correct).float().mean().item()
    return MethodRow(method, pr_certified, seconds, proved=pr_proved,
                     correct_given_proved=pr_certified / pr_proved if pr_proved > 0 else 0.0,
                     mean_width=None if width is None else width.double().mean().item())


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
    regions: dict | None = None     # lirpa_diffai.evaluation.regions.RegionStats.as_dict(), if asked

    def as_dict(self) -> dict:
        """The report as a dict; a method's ``error`` only where it failed."""
        d = asdict(self)
        for row in d["methods"]:
            for key in ("error", "complete"):
                if row[key] is None:
                    del row[key]
        return d

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)


def batches(n: int, size: int):
    """Index slices of ``size`` covering ``range(n)``."""
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def evaluate_network(model: nn.Module, bm, x: torch.Tensor, y: torch.Tensor, eps: float,
                     methods, batch_size: int = 100, data_range=(0.0, 1.0),
                     num_classes: int = 10, network: str = "", dataset: str = "",
                     progress=None, timeout: float = 60.0, state_path=None,
                     on_row=None) -> Report:
    """Clean, MI-FGSM and certified accuracy of ``model`` (eval mode) on ``(x, y)``.
    ``bm`` is a ``lirpa_diffai.BoundedModule`` around ``model`` in eval mode; ``progress``
    (optional) is called with a message before each part. A method that fails
    (``certify.METHOD_ERRORS``) gets its error in its row; the other methods still run.
    The method ``"BaB"`` or ``"BaB:<heuristic>"`` (run last) is the complete verifier of
    :mod:`verify.campaign` (with that branching heuristic)
    with ``timeout`` seconds per sample and the stop/resume file ``state_path``; the
    samples the other methods proved are not verified again. ``on_row(report)`` (optional)
    is called after each finished row."""
    say = progress or (lambda _msg: None)
    done = on_row or (lambda _report: None)
    parts = batches(len(x), batch_size)
    with torch.no_grad():
        pred = torch.cat([model(x[s]).argmax(1) for s in parts])
    correct = pred == y
    say("MI-FGSM")
    start = time.perf_counter()
    robust = torch.cat([attack_correct(model, x[s], y[s], eps, data_range) for s in parts])
    report = Report(network, dataset, len(x), eps, correct.float().mean().item(),
                    robust.float().mean().item(), time.perf_counter() - start)
    done(report)
    proved_by: dict = {}
    bab = [m for m in methods if is_bab(m)]
    for method in [m for m in methods if not is_bab(m)]:
        say(method)
        start = time.perf_counter()
        try:
            batches_out = [proof_and_width(bm, x[s], pred[s], eps, method, data_range,
                                           num_classes) for s in parts]
        except METHOD_ERRORS as err:
            report.methods.append(MethodRow(method, error=method_error(err)))
            done(report)
            continue
        seconds = time.perf_counter() - start
        proved = torch.cat([p for p, _ in batches_out])
        width = None if batches_out[0][1] is None else torch.cat([w for _, w in batches_out])
        proved_by[method] = proved & correct
        report.methods.append(method_row(method, proved, correct, width, seconds))
        done(report)
    if bab:
        from ..verify import BaBOptions
        from ..verify.campaign import verify_images
        say(f"{bab[-1]} (timeout {timeout:g} s per sample)")
        options = BaBOptions(**({"branching": bab[-1].split(":")[1]} if ":" in bab[-1] else {}))
        summary = verify_images(model, x, y, eps, timeout, data_range, num_classes,
                                proved=proved_by, state_path=state_path, network=network,
                                options=options)
        report.methods.append(MethodRow(bab[-1], summary.verified_accuracy, summary.seconds,
                                        complete=summary.as_dict()))
        done(report)
    return report


def format_report(r: Report) -> str:
    """The terminal table of a report."""
    head = (f"{r.network} on {r.n} {r.dataset} test images, eps = {r.eps:g}\n"
            f"standard accuracy: {r.clean:.1%}\n\n")
    lines = ["| evaluation | accuracy | seconds |", "|---|---:|---:|",
             f"| MI-FGSM (mu 0.8, 20 steps of eps/10) | {r.attack:.1%} | "
             f"{r.attack_seconds:.1f} |"]
    lines += [f"| certified, {m.method} | failed: {m.error.replace('|', '/')} | |" if m.error
              else f"| certified, {m.method} | {m.certified:.1%} | {m.seconds:.1f} |"
              for m in r.methods]
    lines += [complete_line(m.complete) for m in r.methods if m.complete]
    return (head + "\n".join(lines) + "\n\nAs DiffAI's tester prints it, per method:\n\n"
            + format_diffai_table(r.methods))


def format_diffai_table(rows: list[MethodRow]) -> str:
    """DiffAI's tester line per method as a markdown table (a figure a method does not
    have: "-"; a failed method: its error)."""
    def cell(value, spec):
        return "-" if value is None else format(value, spec)
    lines = ["| method | width | Pr[proved] | Pr[correct and proved] | Pr[correct \\| proved] "
             "| seconds |", "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {m.method} | failed: {m.error.replace('|', '/')} | | | | |" if m.error else
              f"| {m.method} | {cell(m.mean_width, '.6g')} | {cell(m.proved, '.3f')} | "
              f"{cell(m.certified, '.3f')} | {cell(m.correct_given_proved, '.3f')} | "
              f"{cell(m.seconds, '.2f')} |" for m in rows]
    return "\n".join(lines)


def complete_line(complete: dict) -> str:
    """The counts line under the table for the complete verifier's row."""
    from ..verify.campaign import CompleteSummary, format_summary
    return "\n" + format_summary(CompleteSummary(**complete))


# ------------------------------------------------------------------- the certify command

def known_methods() -> dict[str, str]:
    """Accepted method names (lower case) -> the spelling passed to ``compute_bounds``."""
    from ..bounded_module import CROWN_HZONO_METHODS
    from ..training.config import METHODS
    names = dict(METHODS)
    names.update({m: SPELLING.get(m, m) for m in DOMAINS})
    names.update({m: SPELLING.get(m, m) for m in CROWN_HZONO_METHODS})
    names["alpha-crown"] = "alpha-CROWN"
    names["bab"] = "BaB"   # the complete verifier (lirpa_diffai.verify)
    return names


# how the tables print the hzono variants (compute_bounds takes any case)
SPELLING = {**{key: domain.name for key, domain in DOMAINS.items()},
            "crown-hzono": "CROWN-hzono", "alpha-crown-hzono": "alpha-CROWN-hzono"}


# what other tools call methods that have another name here
OTHER_NAMES = {
    "deepz": "DeepZ is 'ZNIPS' here (a pure zonotope with DeepZ's ReLU, as ERAN has it), or "
             "'HNIPS' (the hybrid zonotope with DeepZ's ReLU).",
    "deeppoly": "DeepPoly's relaxation is auto_LiRPA's 'CROWN' (backward linear bounds).",
    "zonotope": "a zonotope is 'ZNIPS', 'ZBox', 'ZSwitch' or 'ZSmooth' here (by ReLU).",
}


def is_bab(method: str) -> bool:
    """Whether a parsed method is the complete verifier, ``BaB`` or ``BaB:<heuristic>``."""
    return method.split(":")[0] == "BaB"


def parse_bab(name: str) -> str:
    """``"BaB:<heuristic>"`` from a method ``bab:NAME`` (NAME: a branching heuristic of
    :data:`verify.branching.HEURISTICS`, any case); a ValueError naming the known
    heuristics otherwise."""
    from ..verify.branching import heuristic
    heuristic_name = name.split(":", 1)[1].strip().lower()
    heuristic(heuristic_name)
    return f"BaB:{heuristic_name}"


def parse_methods(text: str) -> list[str]:
    """``"hzono,IBP"`` -> ``["hzono", "IBP"]``; ``BaB:fsb`` is the complete verifier with
    the branching heuristic ``fsb``; an unknown name is a ValueError with the nearest known
    one."""
    import difflib
    known = known_methods()
    out = []
    for name in (part.strip() for part in text.split(",")):
        if not name:
            continue
        if name.lower().startswith("bab:"):
            out.append(parse_bab(name))
            continue
        key = name.lower().replace("_", "-")
        if key not in known:
            near = difflib.get_close_matches(key, list(known), n=1, cutoff=0.0)
            hint = OTHER_NAMES.get(key, f"did you mean {known[near[0]]!r}?")
            raise ValueError(f"unknown bound method {name!r}; {hint} "
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


class LaterStageError(TrainingError):
    """A stage after the method rows (``--regions``, writing ``--json``) failed; ``report``
    and ``table`` hold the complete rows."""

    def __init__(self, message: str, report: Report, table: str):
        super().__init__(message)
        self.report, self.table = report, table


class RowWriter:
    """Called with the report after each finished row: logs the row and rewrites the JSON
    file (if any), so that no finished row is lost to a later failure or Ctrl-C. A failed
    write is remembered (``error``), not raised: the evaluation goes on."""

    def __init__(self, json_path: str | None, log):
        self.path, self.log, self.error = json_path, log, None

    def __call__(self, report: Report) -> None:
        if report.methods:
            self.log(f"    {row_summary(report.methods[-1])}")
        self.write(report)

    def write(self, report: Report) -> None:
        if not self.path:
            return
        try:
            Path(self.path).write_text(report.to_json() + "\n")
        except OSError as err:
            self.error = f"--json {self.path}: {err.strerror or err}"


def row_summary(row: MethodRow) -> str:
    """One finished row as a log line."""
    if row.error:
        return f"{row.method}: failed: {row.error}"
    return f"{row.method}: certified {row.certified:.1%} in {row.seconds:.1f} s"


def certify_checkpoint(source, methods: str, eps: float | None = None,
                       limit: int | None = None, batch_size: int = 100,
                       json_path: str | None = None, log=print,
                       hzono_rows: str | None = None, regions: bool = False,
                       timeout: float = 60.0, network: str | None = None,
                       network_args: dict | None = None,
                       dataset: str | None = None) -> tuple[Report, str]:
    """Evaluate a network on its dataset's test split (see :func:`evaluate_network`);
    returns the report and its table. ``source``, ``network``, ``network_args`` and
    ``dataset``: any network :func:`model_source.load_model` takes (a network without a
    training run needs ``eps``). Each finished row is logged and, with ``json_path``,
    written to that file at once; a failure after the rows (``regions``, the JSON file)
    raises :class:`LaterStageError` with the complete rows.
    With the method ``BaB``, ``timeout`` is its time per sample and the samples it decided
    are kept in ``<json stem>.bab.jsonl`` next to ``json_path`` for a resumed run.
    ``hzono_rows`` ("0", "k" or "all") replaces the configuration's
    ``hzono.correlate_input`` for the hzono methods (and CROWN-hzono). ``regions`` adds the
    region statistics of :mod:`lirpa_diffai.evaluation.regions` (unstable ReLUs per layer and
    bound method, BaB having no per-layer bounds; median smallest d_B and d_D).
    Refused input raises TrainingError (CheckpointError, ConfigError)."""
    from ..bounded_module import BoundedModule, parse_correlate_input
    from .model_source import evaluation_config, load_model
    try:
        method_list = parse_methods(methods)
        if limit is not None and limit < 1:
            raise ValueError(f"--limit must be a positive integer, got {limit}")
        if batch_size < 1:
            raise ValueError(f"--batch-size must be a positive integer, got {batch_size}")
        if not (timeout > 0 and timeout < float("inf")):
            raise ValueError(f"--timeout must be a positive number of seconds, got {timeout:g}")
        loaded = load_model(source, network, network_args, dataset)
        cfg = evaluation_config(loaded, eps)
        eps = check_eps(cfg.eps if eps is None else eps, cfg.data_range)
    except ValueError as err:
        raise TrainingError(str(err)) from None
    model = loaded.model
    x, y = dataset_of(cfg, "test").tensors
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
    log(f"evaluating {loaded.description} on {len(x)} {cfg.dataset} test images at eps {eps:g}")
    state_path = Path(json_path).with_suffix(".bab.jsonl") if json_path else None
    writer = RowWriter(json_path, log)
    try:
        report = evaluate_network(model, bm, x, y, eps, method_list, batch_size,
                                  cfg.data_range, cfg.num_classes, cfg.network, cfg.dataset,
                                  progress=lambda m: log(f"  {m} ..."), timeout=timeout,
                                  state_path=state_path, on_row=writer)
    except ValueError as err:  # a state file of another run, a refused network
        raise TrainingError(str(err)) from None
    table = format_report(report)
    if regions:
        table = add_regions(report, table, model, bm, x, y, method_list, batch_size,
                            cfg.data_range, log)
        writer.write(report)
    if writer.error:
        raise LaterStageError(f"{writer.error}; every row is in the table above", report,
                              table)
    return report, table


def add_regions(report: Report, table: str, model, bm, x, y, methods: list, batch_size: int,
                data_range, log) -> str:
    """The table with the region statistics of the incomplete methods added (and
    ``report.regions`` set); a failure raises :class:`LaterStageError` keeping the rows."""
    from ..mmr import RegionError
    from ..evaluation.regions import format_region_stats, region_statistics
    log("  region statistics ...")
    try:
        stats = region_statistics(model, bm, x, y, report.eps,
                                  [m for m in methods if not is_bab(m)], batch_size, data_range)
    except (RegionError, *METHOD_ERRORS) as err:
        raise LaterStageError(f"--regions failed: {method_error(err)}; the rows above are "
                              "complete", report, table) from None
    report.regions = stats.as_dict()
    return table + "\n\n" + format_region_stats(stats)
