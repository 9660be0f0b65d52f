"""The training loop (``python -m lirpa_diffai train``).

One :class:`~lirpa_diffai.goals.config.TrainConfig` drives a run. The network and one
``lirpa_diffai.BoundedModule`` around it are built once; each step evaluates the goal's loss
at the fractional epoch ``t`` (so schedules move within an epoch), sets the learning rate to
``cfg.lr_at(t)`` and takes an optimizer step. After each epoch the run writes, in its output
directory:

``checkpoint.pt``   written atomically (a temporary file in the same directory, then
                    ``os.replace``): model and optimizer state, the completed epoch, the
                    configuration's text and path, the metrics so far and the RNG states of
                    every process (torch, numpy, python). Everything is a tensor or plain
                    Python, so it loads with ``torch.load(..., weights_only=True)``.
``metrics.jsonl``   one JSON object per epoch: ``epoch`` (1-based), ``train_loss``,
                    ``train_accuracy`` (the network in eval mode on each training batch
                    before its step), ``test_accuracy`` and ``test_certified`` (when the
                    test subset was evaluated), ``eps`` (the radius the goal's abstract part
                    trains on at the end of the epoch), ``lr``, ``seconds``, ``schedules``.

The order of the training examples in epoch e is a function of ``(seed, e)`` only
(``DistributedSampler.set_epoch``), so a resumed run sees the same batches; together with the
restored RNG states, ``--resume`` continues exactly where the interrupted run stopped.

Several processes (``torchrun --nproc_per_node=N``): gloo on CPU, nccl on CUDA. The goal's
loss -- concrete forward passes and ``bm.compute_bounds`` alike -- is computed inside the
``forward`` of one module, :class:`GoalLoss`, and that module is wrapped in
``DistributedDataParallel``. DDP's reducer is prepared by each ``forward`` call and its hooks
sit on the parameters' gradient accumulators, which the BoundedModule shares with the
network, so the gradients of the bounds are averaged like any others. (Calling
``bm.compute_bounds`` outside a DDP ``forward`` would leave the reducer unprepared and the
gradients unsynchronised.) Each process takes ``batch_size / N`` examples of every global
batch, so a run gives the same updates as one process up to float noise (exactly so for
networks without batch norm and goals without sampling).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..certify import certified_mask
from ..goals.config import TrainConfig, parse_config
from .batches import augment, epoch_batches, load_data
from .checkpoint import CHECKPOINT, CHECKPOINT_FORMAT, METRICS, load_checkpoint, \
    load_state_checked, save_atomic, write_metrics
from .distributed import Dist, all_sum, gather_objects, init_distributed
from .errors import TrainingError
from .readouts import format_metrics, goal_eps, progress_fields, schedule_values
from .rng import rng_state, seed_everything, set_rng_state
from .step import GoalLoss, bounded_module, build_network, make_optimizer, training_step


def evaluate(model: nn.Module, bm, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig,
             dist: Dist, certify: bool = True, batch_size: int = 200) -> dict:
    """Clean accuracy and (``certify``) certified accuracy with ``cfg.method`` at ``cfg.eps``
    on ``(x, y)``, split over the processes; the network and bounded module are put back in
    training mode afterwards."""
    model.eval()
    bm.eval()
    shard = torch.arange(dist.rank, len(x), dist.world)
    correct = proved = 0.0
    try:
        for idx in shard.split(batch_size):
            xb, yb = x[idx].to(dist.device), y[idx].to(dist.device)
            with torch.no_grad():
                right = model(xb).argmax(1) == yb
            correct += right.sum().item()
            if certify:
                ok = certified_mask(bm, xb, yb, cfg.eps, cfg.method, cfg.data_range,
                                    cfg.num_classes)
                proved += (ok & right).sum().item()
    finally:
        model.train()
        bm.train()
    correct, proved = all_sum([correct, proved], dist)
    out = {"test_accuracy": correct / len(x)}
    if certify:
        out["test_certified"] = proved / len(x)
    return out


@dataclass
class Run:
    """A training run's state: what the checkpoint stores."""

    cfg: TrainConfig
    config_text: str
    config_path: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    epoch: int = 0
    metrics: list = field(default_factory=list)

    def checkpoint(self, rng_states: list) -> dict:
        return {"format": CHECKPOINT_FORMAT, "state_dict": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "epoch": self.epoch,
                "config_text": self.config_text, "config_path": self.config_path,
                "network": self.cfg.network, "dataset": self.cfg.dataset,
                "metrics": self.metrics, "rng": rng_states,
                "sampler": {"seed": self.cfg.seed, "next_epoch": self.epoch}}


def output_dir(cfg: TrainConfig, config_path: str, out: str | None) -> Path:
    """``out``, else the configuration's ``output``, else ``runs/<config stem>``."""
    return Path(out or cfg.output or Path("runs") / Path(config_path).stem)


def start_run(config_path: str, out: Path, resume: bool, dist: Dist,
              log=print) -> tuple[Run, list | None]:
    """A fresh run, or the run in ``out``'s checkpoint (``resume``); also the RNG states to
    restore (None for a fresh run)."""
    path = Path(config_path)
    if not path.is_file():
        raise TrainingError(f"configuration file {config_path} not found")
    text = path.read_text()
    cfg = parse_config(text, str(path))
    ckpt_path = out / CHECKPOINT
    ckpt = None
    if resume and ckpt_path.is_file():
        ckpt = load_checkpoint(ckpt_path)
        if ckpt["config_text"] != text:
            raise TrainingError(f"{config_path} differs from the configuration the run in "
                                f"{out} was started with; resume with the same file")
    elif resume:
        log(f"no checkpoint in {out}; starting a new run")
    elif ckpt_path.exists():
        raise TrainingError(f"{ckpt_path} exists: pass --resume to continue that run, or "
                            "choose another --out")
    seed_everything(cfg.seed)
    model = build_network(cfg).to(dist.device)
    optimizer = make_optimizer(model, cfg)
    run = Run(cfg, text, str(path), model, optimizer)
    if ckpt is None:
        return run, None
    load_state_checked(model, ckpt["state_dict"], cfg.network)
    optimizer.load_state_dict(ckpt["optimizer"])
    run.epoch, run.metrics = int(ckpt["epoch"]), list(ckpt.get("metrics", []))
    return run, ckpt.get("rng")


def train(config_path: str, out: str | None = None, epochs: int | None = None,
          resume: bool = False, progress: bool = True, log=print) -> list[dict]:
    """Train as the configuration says (``epochs`` overrides its epoch count); returns the
    metrics of every epoch so far. See the module docstring for what is written."""
    cfg0 = parse_config(Path(config_path).read_text(), config_path) \
        if Path(config_path).is_file() else None
    if cfg0 is None:
        raise TrainingError(f"configuration file {config_path} not found")
    dist = init_distributed(cfg0.device)
    out_dir = output_dir(cfg0, config_path, out)
    run, rng_states = start_run(config_path, out_dir, resume, dist,
                                log if dist.is_main else _quiet)
    cfg, model = run.cfg, run.model
    total = epochs or cfg.epochs
    if dist.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_metrics(out_dir / METRICS, run.metrics)
    (x_train, y_train), (x_test, y_test) = load_data(cfg)
    bm = bounded_module(model, cfg, x_train[:1].to(dist.device))
    model.train()
    bm.train()
    loss_module: nn.Module = GoalLoss(model, bm, cfg)
    if dist.active:
        from torch.nn.parallel import DistributedDataParallel
        loss_module = DistributedDataParallel(
            loss_module, device_ids=[dist.device.index] if dist.device.type == "cuda" else None)
    if rng_states is not None:
        mine = rng_states[dist.rank] if dist.rank < len(rng_states) else None
        if mine is None:
            raise TrainingError(f"the checkpoint holds RNG states of {len(rng_states)} "
                                f"processes; this run has {dist.world}")
        set_rng_state(mine)
    if run.epoch >= total and dist.is_main:
        log(f"the run in {out_dir} has completed {run.epoch} of {total} epochs already")
    while run.epoch < total:
        metrics = train_epoch(run, loss_module, bm, (x_train, y_train), dist, progress)
        last = run.epoch + 1 == total
        if (cfg.test_every and (run.epoch + 1) % cfg.test_every == 0) or last:
            metrics.update(evaluate(model, bm, x_test, y_test, cfg, dist))
        run.epoch += 1
        run.metrics.append(metrics)
        states = gather_objects(rng_state(), dist)
        if dist.is_main:
            save_atomic(run.checkpoint(states), out_dir / CHECKPOINT)
            write_metrics(out_dir / METRICS, run.metrics)
            log(format_metrics(metrics))
    if dist.active:
        import torch.distributed as tdist
        tdist.barrier()
        tdist.destroy_process_group()
    return run.metrics


def _quiet(*_args, **_kwargs) -> None:
    pass


def train_epoch(run: Run, loss_module: nn.Module, bm, train_data: tuple, dist: Dist,
                progress: bool) -> dict:
    """One epoch of training; returns its metrics (without the test part)."""
    from tqdm import tqdm
    cfg, model, epoch = run.cfg, run.model, run.epoch
    x_all, y_all = train_data
    batches = epoch_batches(len(x_all), cfg.batch_size, cfg.seed, epoch, dist)
    start, loss_sum, correct, seen = time.perf_counter(), 0.0, 0.0, 0.0
    bar = tqdm(batches, desc=f"epoch {epoch + 1}", unit="batch", leave=False,
               disable=not (progress and dist.is_main), dynamic_ncols=True, mininterval=1.0)
    lr = cfg.lr_at(epoch)
    for i, idx in enumerate(bar):
        t = epoch + i / len(batches)
        x, y = x_all[idx].to(dist.device), y_all[idx].to(dist.device)
        if cfg.augment:
            x = augment(x)
        with torch.no_grad():
            model.eval()
            correct += (model(x).argmax(1) == y).sum().item()
            model.train()
        lr = cfg.lr_at(t)
        loss_sum += training_step(loss_module, run.optimizer, x, y, t, lr) * len(y)
        seen += len(y)
        if i % 10 == 0 or i + 1 == len(batches):
            bar.set_postfix(progress_fields(cfg, t, loss_sum / seen, correct / seen, lr),
                            refresh=False)
    loss_sum, correct, seen = all_sum([loss_sum, correct, seen], dist)
    end_t = float(epoch + 1)
    return {"epoch": epoch + 1, "train_loss": loss_sum / seen,
            "train_accuracy": correct / seen, "eps": goal_eps(cfg, end_t), "lr": lr,
            "seconds": time.perf_counter() - start,
            "schedules": schedule_values(cfg.goal, end_t)}


