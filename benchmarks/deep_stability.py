"""Do the deep networks' schedules reach a NaN loss, and do ``init: ibp`` and
``grad_clip`` keep them finite? A short run per network and variant on the CIFAR-10 subset.

    python benchmarks/deep_stability.py                       # the three networks, both variants
    python benchmarks/deep_stability.py --configs baseline_resnet_tiny --steps 40 --batch 8 \\
        --variants default,ibp-clip --json out.json

Each run trains ``--steps`` optimizer steps of batch ``--batch`` with the configuration of
``examples/goals/<config>.yaml`` (its goal, method, optimizer and learning-rate schedule),
with the schedules compressed in time: step k of n runs at the file's epoch
``t = k / n * horizon``, where ``horizon`` is 1.25 times the epoch at which every schedule of
the goal has reached its final value, so the eps ramp happens as the file says and the last
fifth of the run is at full strength. Variants: ``default`` (torch's initialisation, no
clipping: the files as they were before ``init`` and ``grad_clip`` existed) and ``ibp-clip``
(``init: ibp`` and ``grad_clip: --clip``, what the deep files now set). For each run it
reports the step at which the loss was first not finite (or none), the mean loss of the last
10 steps, the time per step, and clean and certified accuracy (the file's method at its full
eps) on the first ``--test`` test images. One thread by default (``--threads``).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from lirpa_diffai import training
from lirpa_diffai.training import Dist, GoalLoss
from lirpa_diffai.training.config import parse_config

REPO = Path(__file__).resolve().parents[1]

CONFIGS = ("baseline_resnet_tiny", "insamplpar34_resnet34", "adv5islpad100_densenet100")
VARIANTS = {"default": ("init=default", "grad_clip=null"),
            "ibp-clip": ("init=ibp", "grad_clip={clip}")}


def horizon(goal, epochs: int) -> float:
    """1.25 times the first whole epoch at which every schedule has its final value."""
    final = training.schedule_values(goal, float(epochs))
    done = next((t for t in range(epochs + 1)
                 if training.schedule_values(goal, float(t)) == final), epochs)
    return 1.25 * max(done, 1)


def short_run(config: str, variant: str, steps: int, batch: int, n_test: int,
              clip: float) -> dict:
    """One compressed run; see the module docstring."""
    path = REPO / "examples" / "goals" / f"{config}.yaml"
    overrides = [o.format(clip=clip) for o in VARIANTS[variant]]
    overrides += [f"batch_size={batch}", f"test_subset={n_test}"]
    cfg = parse_config(path.read_text(), str(path), overrides=overrides)
    end = horizon(cfg.goal, cfg.epochs)
    (x_train, y_train), (x_test, y_test) = training.load_data(cfg)
    training.seed_everything(cfg.seed)
    model = training.build_network(cfg)
    bm = training.wrap_for_training(model, cfg, x_train[:1])
    model.train()
    bm.train()
    loss_module, optimizer = GoalLoss(model, bm, cfg), training.make_optimizer(model, cfg)
    order = torch.cat([torch.cat(training.epoch_batches(len(x_train), batch, cfg.seed, e,
                                                        Dist()))
                       for e in range(math.ceil(steps * batch / len(x_train)) + 1)])
    losses, first_nan, start = [], None, time.perf_counter()
    for k in range(steps):
        t = k / steps * end
        idx = order[k * batch:(k + 1) * batch]
        x, y = x_train[idx], y_train[idx]
        if cfg.augment:
            x = training.augment(x)
        try:
            losses.append(training.training_step(loss_module, optimizer, x, y, t, cfg.lr_at(t),
                                                 cfg.grad_clip))
        except training.TrainingError:           # a loss that is not finite
            first_nan = k + 1
            break
    seconds = (time.perf_counter() - start) / max(len(losses), 1)
    row = {"config": config, "network": cfg.network, "variant": variant, "steps": steps,
           "batch": batch, "horizon_epochs": end, "first_nonfinite_step": first_nan,
           "final_loss": sum(losses[-10:]) / len(losses[-10:]) if losses else None,
           "seconds_per_step": seconds, "eps": cfg.eps, "method": cfg.method}
    if first_nan is None:
        row.update(training.evaluate(model, bm, x_test, y_test, cfg, Dist(), batch_size=25))
    return row


def per_config(text: str, n: int) -> list[int]:
    """``"5"`` -> ``[5] * n``; ``"5,6,7"`` -> ``[5, 6, 7]`` (one per configuration)."""
    values = [int(v) for v in text.split(",")]
    if len(values) not in (1, n):
        raise SystemExit(f"expected 1 or {n} comma-separated values, got {text!r}")
    return values * n if len(values) == 1 else values


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--steps", default="60,20,10",
                        help="steps per run: one number, or one per config")
    parser.add_argument("--batch", default="16,8,8",
                        help="batch size: one number, or one per config")
    parser.add_argument("--test", type=int, default=100, help="test images evaluated")
    parser.add_argument("--clip", type=float, default=10.0, help="grad_clip of ibp-clip")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows, configs = [], args.configs.split(",")
    steps, batches = (per_config(text, len(configs)) for text in (args.steps, args.batch))
    for config, n, batch in zip(configs, steps, batches):
        for variant in args.variants.split(","):
            row = short_run(config, variant, n, batch, args.test, args.clip)
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    print("\n| network | variant | first non-finite step | final loss | clean | certified "
          "| s/step |\n|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        loss = "-" if r["final_loss"] is None else f"{r['final_loss']:.3f}"
        clean = f"{r['test_accuracy']:.0%}" if "test_accuracy" in r else "-"
        cert = f"{r['test_certified']:.0%}" if "test_certified" in r else "-"
        print(f"| {r['network']} | {r['variant']} | {r['first_nonfinite_step'] or 'none'} | "
              f"{loss} | {clean} | {cert} | {r['seconds_per_step']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
