"""The CUDA paths checked against the CPU, and timed: bounds and one training step of the demo.

    python benchmarks/gpu_check.py                 # CUDA against the CPU
    python benchmarks/gpu_check.py --device cpu    # dry run: the same checks, CPU against CPU

On the demo configuration (``examples/goals/mnist_small.yaml``: ConvSmall on MNIST, eps 0.1,
its seed's initial weights) and its first ``--batch`` test images:

- ``hzono, 0 rows`` and ``hzono, 16 rows``: the margin bounds ``y_label - y_j`` of hzono (the
  configuration's boxy ReLU) with a box input and with CorrelateMax 16 on the input;
- ``CROWN-hzono, 16 rows``: the same margins with CROWN on hzono's intermediate boxes;
- ``training step``: one step of the configuration's goal at ``--t`` (epoch time; 2.5 is in the
  middle of its eps ramp, so the Box term and the Point term both act): the loss and the
  gradient of every parameter;
- ``BaB bounds``: complete verification's bounds at eps 0.005 with the network's own
  predictions as labels: alpha-CROWN's root bounds of the batch and beta-CROWN's bounds of
  the four subdomains of the first image that split its two widest unstable first-layer
  ReLUs (``verify.bounding``);
- ``verify``: ``lirpa_diffai.verify.verify`` on the first 6 images at that eps (PGD,
  CROWN-hzono, alpha-CROWN, then branch and bound for ``--verify-timeout`` seconds): each
  image's status, or 3 where branch and bound ran (its answer depends on the device's speed).

Each is computed on the CPU (the reference) and on ``--device`` from the same weights and
images; the device's results must lie within ``atol + rtol * max|reference|`` of the CPU's
(float32; TF32 is switched off, ``--tf32`` allows it). Seconds: the median of ``--repeats``
calls after one warm-up call, the device synchronized. Exit status 0 when every check agrees,
1 when one does not, 2 when the device is not available (with a message saying so).
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = ROOT / "examples" / "goals" / "mnist_small.yaml"


@dataclass
class Check:
    """One comparison: the largest difference from the CPU, the tolerance, and the seconds."""

    name: str
    max_diff: float
    tolerance: float
    cpu_seconds: float
    device_seconds: float

    @property
    def ok(self) -> bool:
        return self.max_diff <= self.tolerance


def max_difference(reference: dict, other: dict) -> tuple[float, float]:
    """``(max |reference - other|, max |reference|)`` over the tensors of two dicts with the
    same keys and shapes (``other`` may live on another device); NaN or inf differences
    count as infinite."""
    if reference.keys() != other.keys():
        raise ValueError(f"different results: {sorted(reference)} vs {sorted(other)}")
    diff, scale = 0.0, 0.0
    for key, ref in reference.items():
        value = other[key].detach().to("cpu", torch.float64)
        ref = ref.detach().to("cpu", torch.float64)
        if value.shape != ref.shape:
            raise ValueError(f"{key}: shape {tuple(value.shape)}, the CPU's {tuple(ref.shape)}")
        gap = (value - ref).abs().max().item() if ref.numel() else 0.0
        diff = max(diff, gap if gap == gap else float("inf"))
        scale = max(scale, ref.abs().max().item() if ref.numel() else 0.0)
    return diff, scale


def timed(fn: Callable[[], dict], device: torch.device, repeats: int) -> tuple[dict, float]:
    """``fn()``'s result and the median seconds of ``repeats`` calls after a warm-up call."""
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    fn()
    seconds = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        result = fn()
        sync()
        seconds.append(time.perf_counter() - start)
    return result, statistics.median(seconds)


def margin_bounds(net, x, y, cfg, method: str, rows) -> Callable[[], dict]:
    """A function computing the margin bounds of ``method`` on the device of ``x``."""
    from lirpa_diffai import BoundedModule
    from lirpa_diffai.evaluation import margins as certify
    options = {**cfg.bound_opts, "hzono": {**cfg.bound_opts.get("hzono", {}), "correlate_input": rows}}
    bm = BoundedModule(net, x[:1], bound_opts=options, device=str(x.device)).eval()

    def run():
        lower, upper = certify.bound_margins(bm, x, y, cfg.eps, method, cfg.num_classes, cfg.data_range)
        return {"lower": lower, "upper": upper}
    return run


def training_step(net, x, y, cfg, t: float) -> Callable[[], dict]:
    """A function doing one training step of ``cfg`` at time ``t`` from ``net``'s current
    weights (restored before each call), returning the loss and the gradients."""
    from lirpa_diffai.training import GoalLoss, wrap_for_training, make_optimizer
    from lirpa_diffai.training import training_step as step
    start = copy.deepcopy(net.state_dict())
    bm = wrap_for_training(net, cfg, x[:1]).train()
    loss_module = GoalLoss(net.train(), bm, cfg)
    optimizer = make_optimizer(net, cfg)

    def run():
        net.load_state_dict(start)
        loss = step(loss_module, optimizer, x, y, t, cfg.lr_at(t))
        grads = {f"grad {name}": p.grad.clone() for name, p in net.named_parameters()}
        return {"loss": torch.tensor(loss), **grads}
    return run


VERIFY_EPS = 0.005   # at the demo's initial weights, some images need branch and bound here
VERIFY_TIMEOUT = 5.0
STATUS_CODES = {"verified": 0, "falsified": 1, "timeout": 2}


def verify_spec(net, x, cfg):
    """The margins of the network's own predictions and the eps box of ``x``."""
    from lirpa_diffai.verify import robustness_spec
    with torch.no_grad():
        labels = net(x).argmax(1)
    return labels, robustness_spec(labels, cfg.num_classes), \
        (x - VERIFY_EPS).clamp(0, 1), (x + VERIFY_EPS).clamp(0, 1)


def bab_bounds(net, x, y, cfg, t) -> Callable[[], dict]:
    """A function computing alpha-CROWN's root bounds and beta-CROWN's bounds of four split
    subdomains of the first image on the device of ``x``."""
    from lirpa_diffai.verify import bounded_for_verify
    from lirpa_diffai.verify.bounding import bound_domains, root_bounds
    _, spec, x_L, x_U = verify_spec(net, x, cfg)
    bm = bounded_for_verify(net, x)

    def run():
        lb, lower, upper = root_bounds(bm, x_L, x_U, spec.C, spec.threshold, iterations=5)
        first = torch.minimum(-lower[0][0], upper[0][0]).flatten().topk(2).indices
        splits = [torch.zeros(4, lo[0].numel(), dtype=torch.int8, device=x.device)
                  for lo in lower]
        splits[0][:, first[0]] = torch.tensor([1, 1, -1, -1], dtype=torch.int8)
        splits[0][:, first[1]] = torch.tensor([1, -1, 1, -1], dtype=torch.int8)
        four = lambda ts: [torch.cat([b[:1]] * 4) for b in ts]  # noqa: E731
        sub, _ = bound_domains(bm, x_L[:1], x_U[:1], spec.C[:1], spec.threshold[:1],
                               four(lower), four(upper), splits, iterations=5)
        return {"root lower bounds": lb, "subdomain lower bounds": sub}
    return run


def complete_verification(net, x, y, cfg, t, timeout: float = VERIFY_TIMEOUT
                          ) -> Callable[[], dict]:
    """A function running ``verify`` on the first 6 images on the device of ``x``: per image
    its status code, or 3 where branch and bound ran."""
    from lirpa_diffai.verify import verify
    from lirpa_diffai.verify import bounded_for_verify
    x = x[:6]
    labels, _, _, _ = verify_spec(net, x, cfg)
    bm = bounded_for_verify(net, x)

    def run():
        results = verify(net, x, labels, VERIFY_EPS, timeout=timeout, bounded=bm)
        return {"status": torch.tensor([3 if "BaB" in r.method else STATUS_CODES[r.status.value]
                                        for r in results])}
    return run


CHECKS = {
    "hzono, 0 rows": lambda net, x, y, cfg, t: margin_bounds(net, x, y, cfg, "hzono", 0),
    "hzono, 16 rows": lambda net, x, y, cfg, t: margin_bounds(net, x, y, cfg, "hzono", 16),
    "CROWN-hzono, 16 rows": lambda net, x, y, cfg, t: margin_bounds(net, x, y, cfg, "CROWN-hzono", 16),
    "training step": training_step,
    "BaB bounds": bab_bounds,
    "verify": complete_verification,
}


def with_verify_timeout(checks: dict, timeout: float) -> dict:
    """``checks`` with its ``verify`` check (if any) given ``timeout`` seconds per image."""
    if "verify" not in checks:
        return checks
    return {**checks, "verify": lambda net, x, y, cfg, t: complete_verification(
        net, x, y, cfg, t, timeout)}


def run_checks(device: torch.device, batch: int, t: float, repeats: int, rtol: float,
               atol: float, config: Path = DEMO_CONFIG, checks: dict | None = None
               ) -> list[Check]:
    """Every check of ``checks`` (default ``CHECKS``) on the CPU and on ``device``,
    compared."""
    from lirpa_diffai import data
    from lirpa_diffai.training.config import parse_config
    from lirpa_diffai.training import build_network, seed_everything
    cfg = parse_config(config.read_text(), str(config))
    seed_everything(cfg.seed)
    initial = build_network(cfg)
    x, y = (v[:batch] for v in data.load_dataset(cfg.dataset, "test", cfg.data_root).tensors)
    out = []
    def on(where: torch.device, make) -> tuple[dict, float]:
        net = copy.deepcopy(initial).to(where)
        return timed(make(net, x.to(where), y.to(where), cfg, t), where, repeats)
    for name, make in (CHECKS if checks is None else checks).items():
        reference, cpu_seconds = on(torch.device("cpu"), make)
        other, device_seconds = on(device, make)
        diff, scale = max_difference(reference, other)
        out.append(Check(name, diff, atol + rtol * scale, cpu_seconds, device_seconds))
    return out


def format_checks(checks: list[Check], device: torch.device) -> str:
    """A markdown table of the checks."""
    lines = [f"| check | max difference from the CPU | tolerance | CPU seconds | {device.type} seconds | agrees |",
             "|---|---:|---:|---:|---:|---|"]
    lines += [f"| {c.name} | {c.max_diff:.3g} | {c.tolerance:.3g} | {c.cpu_seconds:.4f} | "
              f"{c.device_seconds:.4f} | {'yes' if c.ok else 'NO'} |" for c in checks]
    return "\n".join(lines)


def unavailable(device: torch.device) -> str | None:
    """Why ``device`` cannot be checked, or None."""
    if device.type == "cuda" and not torch.cuda.is_available():
        built = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        return (f"gpu_check: CUDA is not available (torch {torch.__version__}, {built}, "
                f"{torch.cuda.device_count()} devices): nothing to check on a GPU here. "
                f"`--device cpu` runs the same comparisons CPU against CPU (a dry run).")
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="the device checked against the CPU (default cuda)")
    parser.add_argument("--batch", type=int, default=32, help="test images (default 32)")
    parser.add_argument("--t", type=float, default=2.5, help="epoch time of the training step (default 2.5)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per check (default 5)")
    parser.add_argument("--rtol", type=float, default=1e-4, help="tolerance relative to max|CPU result|")
    parser.add_argument("--atol", type=float, default=1e-6, help="absolute tolerance")
    parser.add_argument("--tf32", action="store_true", help="allow TF32 matmuls and convolutions on CUDA")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--verify-timeout", type=float, default=VERIFY_TIMEOUT,
                        help=f"seconds of branch and bound per image in the verify check "
                             f"(default {VERIFY_TIMEOUT:g})")
    args = parser.parse_args(argv)
    try:
        device = torch.device(args.device)
    except RuntimeError as err:
        parser.error(f"--device {args.device!r}: {err}")
    reason = unavailable(device)
    if reason:
        print(reason, file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = args.tf32
    checks = run_checks(device, args.batch, args.t, args.repeats, args.rtol, args.atol,
                        checks=with_verify_timeout(CHECKS, args.verify_timeout))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "the CPU (dry run)"
    print(f"{name} against the CPU, torch {torch.__version__}, {args.batch} images, "
          f"{torch.get_num_threads()} CPU threads")
    print(format_checks(checks, device))
    return 0 if all(c.ok for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
