"""A run's state and its start: a fresh run, or the run in an output directory resumed from
its checkpoint after checking that the configuration still describes it."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .config import TrainConfig
from .checkpoint import CHECKPOINT, CHECKPOINT_FORMAT, METRICS, config_differences, \
    config_of, load_checkpoint, load_state_checked
from .distributed import Dist
from .errors import TrainingError
from .rng import seed_everything
from .step import build_network, make_optimizer


@dataclass
class Run:
    """A training run's state: what the checkpoint stores."""

    cfg: TrainConfig
    config_text: str
    config_path: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    overrides: tuple = ()
    epoch: int = 0
    metrics: list = field(default_factory=list)

    def checkpoint(self, rng_states: list) -> dict:
        return {"format": CHECKPOINT_FORMAT, "state_dict": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "epoch": self.epoch,
                "config_text": self.config_text, "config_path": self.config_path,
                "overrides": list(self.overrides),
                "network": self.cfg.network, "dataset": self.cfg.dataset,
                "metrics": self.metrics, "rng": rng_states,
                "sampler": {"seed": self.cfg.seed, "next_epoch": self.epoch}}


def output_dir(cfg: TrainConfig, config_path: str, out: str | None) -> Path:
    """``out``, else the configuration's ``output``, else ``runs/<config stem>``."""
    return Path(out or cfg.output or Path("runs") / Path(config_path).stem)


def check_device(cfg: TrainConfig) -> None:
    """Refuse a ``device`` this torch cannot use, naming the configuration."""
    try:
        device = torch.device(cfg.device)
    except RuntimeError as err:
        raise TrainingError(f"device {cfg.device!r} in {cfg.source} is not a torch device: "
                            f"{err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        why = ("this torch is built without CUDA" if torch.version.cuda is None
               else "no CUDA device is visible")
        raise TrainingError(f"device {cfg.device!r} in {cfg.source}: {why} (torch "
                            f"{torch.__version__}); set device: cpu, or --set device=cpu")
    if device.type == "cuda" and device.index is not None and \
            device.index >= torch.cuda.device_count():
        raise TrainingError(f"device {cfg.device!r} in {cfg.source}: only "
                            f"{torch.cuda.device_count()} CUDA devices are visible")


def remove_leftovers(out: Path, log=print) -> None:
    """Delete the temporary files (``.checkpoint.pt.tmp<pid>``, ``.metrics.jsonl.tmp<pid>``)
    of writes that a killed process left behind; a live process's are kept."""
    for tmp in sorted(p for name in (CHECKPOINT, METRICS) for p in out.glob(f".{name}.tmp*")):
        pid = tmp.name.rpartition(".tmp")[2]
        if pid.isdigit() and not process_alive(int(pid)):
            tmp.unlink(missing_ok=True)
            log(f"removed {tmp}, left behind by an interrupted write")


def process_alive(pid: int) -> bool:
    """Whether a process with id ``pid`` exists (other than this one)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def start_run(cfg: TrainConfig, text: str, config_path: str, out: Path, resume: bool,
              dist: Dist, overrides: tuple = (), log=print) -> tuple[Run, list | None]:
    """A fresh run, or the run in ``out``'s checkpoint (``resume``); also the RNG states to
    restore (None for a fresh run)."""
    ckpt_path = out / CHECKPOINT
    ckpt = None
    if resume and ckpt_path.is_file():
        ckpt = load_checkpoint(ckpt_path)
        if "smoke" in ckpt:
            raise TrainingError(f"{ckpt_path} is a smoke run's checkpoint (--keep-smoke, "
                                f"{ckpt['smoke']['steps']} steps), not resumable; start the "
                                "real run in another --out")
        differences = config_differences(cfg, config_of(ckpt))
        if differences:
            raise TrainingError(f"{config_path} (with its --set options) differs from the "
                                f"configuration the run in {out} was started with:\n  "
                                + "\n  ".join(differences)
                                + "\nresume with the same configuration, or choose another "
                                  "--out")
    elif resume:
        log(f"no checkpoint in {out}; starting a new run")
    elif ckpt_path.exists():
        raise TrainingError(f"{ckpt_path} exists: pass --resume to continue that run, or "
                            "choose another --out")
    seed_everything(cfg.seed)
    model = build_network(cfg).to(dist.device)
    optimizer = make_optimizer(model, cfg)
    run = Run(cfg, text, config_path, model, optimizer, tuple(overrides))
    if ckpt is None:
        return run, None
    load_state_checked(model, ckpt["state_dict"], cfg.network)
    optimizer.load_state_dict(ckpt["optimizer"])
    run.epoch, run.metrics = int(ckpt["epoch"]), list(ckpt.get("metrics", []))
    return run, ckpt.get("rng")
