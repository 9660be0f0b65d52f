"""Box's peak memory side by side with DiffAI's own code (eth-sri/diffai), same weights.

    python -m benchmarks.diffai_memory --diffai /path/to/diffai-checkout --batch 16 --threads 1

For each network (ConvBig and ResNet-Tiny, CIFAR-10, batch 16, eps 2/255) and each side, one
fresh Python process per repeat builds the network with ``torch.manual_seed(0)``, makes one
warm-up pass and reads the peak resident memory of one more pass above the level before it
(``bench_hzono.timed``: VmHWM after ``clear_refs``, freed heap handed back first), then the
median seconds of five more passes, all under ``torch.no_grad``:

- **ours**: ``compute_bounds(method="hzono")`` with no correlated rows (DiffAI's Box) and the
  margin specification, the call ``bench_hzono.py --probe <network>:hzono_0_rows`` measures;
- **DiffAI**: the same network built by DiffAI's ``models.py`` (``ConvBig`` / ``ResNetTiny``
  behind its ``Normalize``, as its ``__main__.buildNet`` does), our weights copied into it
  (DiffAI keeps a Linear's weight as ``in x out``), its ``goals.Box`` domain on the same
  input, the forward pass and the margins' lower bounds (``helpers.preDomRes(out, y).lb()``,
  what its ``isSafe`` and ``loss`` read). DiffAI's networks end with ``CorrelateAll`` before the
  last Linear (``last_zono=True``), which makes the final affine bound exact, as merging the
  margin specification into the final Linear does for us; ``--diffai-last-box`` measures
  its pure-Box variant as well (``CorrelateAll`` replaced by DiffAI's ``Identity`` at run time).

DiffAI's code is run from the checkout, never copied. It was written for torch 0.4 and
Python <= 3.6; :func:`load_diffai` adapts it at run time, in the probe's process only:

- modules it imports but this computation never uses (``future``, ``past``, ``six``, ``PIL``,
  ``torchvision``'s ``datasets``/``transforms``) are empty stand-ins when not installed;
- ``forbiddenfruit.curse`` (which adds DiffAI's methods to tensor classes) becomes
  ``setattr`` on the classes that accept it (``torch.Tensor``, the class of every tensor);
- ``helpers.py`` has ``x.cuda(async=True)``, a syntax error since Python 3.7 (``async`` is a
  keyword): its source is compiled with that keyword argument renamed to ``non_blocking``
  (the same argument since torch 0.4); CUDA is switched off (``NOCUDA``).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import types
from pathlib import Path

import torch

from benchmarks import bench_hzono
from lirpa_diffai import data, models
from lirpa_diffai.runtime import keep_freed_memory

# our zoo name -> DiffAI's model function in models.py
DIFFAI_NAMES = {"conv_big": "ConvBig", "resnet_tiny": "ResNetTiny"}
STAND_INS = ("future", "past", "six", "PIL")


def _stand_in_modules() -> None:
    """Empty modules for DiffAI's imports that this computation never uses, where missing."""
    for name in STAND_INS:
        try:
            __import__(name)
        except ImportError:
            module = types.ModuleType(name)
            module.Image = types.SimpleNamespace(BICUBIC=None, BILINEAR=None)
            sys.modules[name] = module
    try:
        import torchvision  # noqa: F401
    except Exception:  # absent, or a build that does not match torch
        vision = types.ModuleType("torchvision")
        vision.datasets, vision.transforms = types.ModuleType("datasets"), types.ModuleType("transforms")
        sys.modules.update({"torchvision": vision, "torchvision.datasets": vision.datasets,
                            "torchvision.transforms": vision.transforms})
    try:
        import forbiddenfruit  # noqa: F401
    except ImportError:
        fruit = types.ModuleType("forbiddenfruit")

        def curse(cls, name, value):
            try:
                setattr(cls, name, value)
            except TypeError:  # a C type (torch.FloatTensor & co.); torch.Tensor covers them
                pass
        fruit.curse = curse
        sys.modules["forbiddenfruit"] = fruit


def _load_helpers(root: Path) -> None:
    """DiffAI's ``helpers.py`` as module ``helpers``, ``async=`` renamed ``non_blocking=``."""
    source = (root / "helpers.py").read_text().replace("async=True", "non_blocking=True")
    module = types.ModuleType("helpers")
    module.__file__ = str(root / "helpers.py")
    sys.modules["helpers"] = module
    exec(compile(source, module.__file__, "exec"), module.__dict__)


def load_diffai(root: str | Path):
    """DiffAI's ``(models, goals, helpers, components)`` modules from the checkout ``root``."""
    root = Path(root).resolve()
    if not (root / "ai.py").is_file():
        raise FileNotFoundError(f"--diffai {root}: no ai.py there (not a checkout of eth-sri/diffai)")
    os.environ["NOCUDA"] = "1"
    _stand_in_modules()
    sys.path.insert(0, str(root))
    _load_helpers(root)
    import components
    import goals
    import helpers
    import models as diffai_models
    return diffai_models, goals, helpers, components


def copy_weights(ours: torch.nn.Module, theirs: torch.nn.Module) -> None:
    """Our parameters into DiffAI's, in order; a 2-d weight is transposed (DiffAI's Linear
    multiplies by an ``in x out`` matrix). Raises if the two do not match one to one."""
    mine, other = list(ours.parameters()), list(theirs.parameters())
    if len(mine) != len(other):
        raise ValueError(f"{len(mine)} parameters here, {len(other)} in DiffAI's network")
    with torch.no_grad():
        for a, b in zip(mine, other):
            value = a.t() if a.dim() == 2 else a
            if value.shape != b.shape:
                raise ValueError(f"shape {tuple(value.shape)} here, {tuple(b.shape)} in DiffAI's")
            b.copy_(value)


def diffai_run(root: str, name: str, batch: int, eps: float, last_zono: bool = True):
    """One Box pass of DiffAI's code on our ``name`` network's weights: a call returning the
    margins' lower bounds, and our network (for the check that both compute the same)."""
    diffai_models, goals, helpers, components = load_diffai(root)
    torch.manual_seed(0)  # as bench_hzono's probe builds our network
    ours = models.get(name, "cifar10").eval()
    mean, std = data.mean_std("cifar10")
    if not last_zono:  # FFNN(last_zono=True) puts CorrelateAll before the last Linear
        components.CorrelateAll = lambda *args, **kwargs: components.Identity()
    net = components.Seq(components.Normalize(list(mean), list(std)),
                         getattr(diffai_models, DIFFAI_NAMES[name])(10))
    net = net.infer(list(data.input_shape("cifar10"))).eval()
    copy_weights(ours, net)
    test = data.load_dataset("cifar10", "test").tensors
    x, y = test[0][:batch], test[1][:batch]
    box = goals.Box(w=eps)

    def run():
        out = net(box.box(x, w=None))
        return helpers.preDomRes(out, y).lb().a  # .a: the tensor inside DiffAI's TaggedDomain
    return run, ours, x


def measured(run, repeats: int = 5) -> tuple[float, float]:
    """``run``'s peak extra MiB after one warm-up pass (``bench_hzono.timed``), then its
    median seconds over ``repeats`` passes, under ``torch.no_grad``."""
    with torch.no_grad():
        run()
        peak = bench_hzono.timed(run)[2]
        return peak, bench_hzono.measure(run, repeats)[0]


def probe(root: str, spec: str, batch: int, eps: float) -> tuple[float, float]:
    """``--probe ours:network`` (``bench_hzono``'s hzono with no rows) or ``--probe
    diffai:network[:box]`` (DiffAI's Box): peak extra MiB and median seconds, this process."""
    side, name, *variant = spec.split(":")
    if side == "ours":
        return measured(bench_hzono.network_runs(name, batch, eps, train=False)["hzono_0_rows"])
    run, _, _ = diffai_run(root, name, batch, eps, last_zono=variant != ["box"])
    return measured(run)


def fresh(root: str, spec: str, batch: int, eps: float, threads: int) -> tuple[float, float]:
    """:func:`probe` in a new process of this module."""
    out = subprocess.run([sys.executable, "-m", "benchmarks.diffai_memory", "--diffai", root,
                          "--probe", spec, "--batch", str(batch), "--eps", repr(eps),
                          "--threads", str(threads)], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout
    words = out.split()
    return float(words[-3]), float(words[-1])


def side_by_side(root: str, names: list[str], batch: int, eps: float, threads: int,
                 repeats: int, last_box: bool) -> list[dict]:
    """Per network and side: ``(peak MiB, seconds)`` in each of ``repeats`` fresh processes,
    and ours / DiffAI's of the median peaks and of the median times."""
    rows = []
    for name in names:
        specs = {"ours": f"ours:{name}", "diffai": f"diffai:{name}"}
        if last_box:
            specs["diffai_box"] = f"diffai:{name}:box"
        cases = {side: [fresh(root, spec, batch, eps, threads) for _ in range(repeats)]
                 for side, spec in specs.items()}
        median = {side: [sorted(v)[len(v) // 2] for v in zip(*runs)] for side, runs in cases.items()}
        rows.append({"network": name, "batch": batch,
                     "mib": {side: [m for m, _ in runs] for side, runs in cases.items()},
                     "seconds": median,
                     "ratio": median["ours"][0] / median["diffai"][0],
                     "time_ratio": median["ours"][1] / median["diffai"][1]})
    return rows


def report(rows: list[dict]) -> str:
    span = lambda v: f"{min(v):.1f}" if max(v) - min(v) < 0.05 else f"{min(v):.1f}-{max(v):.1f}"  # noqa: E731
    box = "diffai_box" in rows[0]["mib"]
    lines = ["| network | ours (hzono, 0 rows) MiB | DiffAI Box MiB |"
             + (" DiffAI Box, last_zono=False MiB |" if box else "") + " ours / DiffAI |"
             + " time ours / DiffAI |", "|---|---:|---:|" + ("---:|" if box else "") + "---:|---:|"]
    for r in rows:
        m = r["mib"]
        lines.append(f"| {r['network']}, batch {r['batch']} | {span(m['ours'])} | {span(m['diffai'])} |"
                     + (f" {span(m['diffai_box'])} |" if box else "")
                     + f" {r['ratio']:.2f} | {r['time_ratio']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--diffai", required=True, help="path to a checkout of eth-sri/diffai")
    parser.add_argument("--networks", default="conv_big,resnet_tiny")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--eps", type=float, default=2 / 255)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="fresh processes per case")
    parser.add_argument("--diffai-last-box", action="store_true",
                        help="also DiffAI's networks with last_zono=False (Box to the end)")
    parser.add_argument("--probe", help=argparse.SUPPRESS)  # ours:network | diffai:network[:box]
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as bench_hzono's probe and the command-line tools do
    torch.manual_seed(0)
    if args.probe:
        peak, seconds = probe(args.diffai, args.probe, args.batch, args.eps)
        print(f"peak_mib {peak:.3f} seconds {seconds:.5f}")
        return 0
    rows = side_by_side(args.diffai, args.networks.split(","), args.batch, args.eps, args.threads,
                        args.repeats, args.diffai_last_box)
    print(f"batch {args.batch}, {args.threads} thread(s), eps {args.eps:.4g}, torch {torch.__version__}, "
          f"{args.repeats} fresh processes per case")
    print(report(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
