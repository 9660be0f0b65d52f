"""Training a zoo network with a goal of the DSL (``python -m lirpa_diffai train``).

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

import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import data, models
from .goals import Box, Goal, GoalContext, Mix, Sample, Sub
from .goals.config import TrainConfig, parse_config
from .goals.goals import Reboxing
from .goals.schedules import Const, Schedule

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
CHECKPOINT_FORMAT = 1


class TrainingError(ValueError):
    """A refused run: bad arguments, a checkpoint that does not fit, an unusable output."""


class CheckpointError(TrainingError):
    """A checkpoint that cannot be read or does not fit the network of its configuration."""


# ----------------------------------------------------------------------- processes / RNG

@dataclass(frozen=True)
class Dist:
    """This process's place in a (possibly one-process) run."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def init_distributed(device: str = "cpu") -> Dist:
    """Join the process group that ``torchrun`` describes in the environment (``WORLD_SIZE``
    > 1): gloo for CPU, nccl for CUDA. A single process needs no group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = torch.device(device)
    if world <= 1:
        return Dist(device=dev)
    import torch.distributed as dist
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    if dev.type == "cpu":  # share the cores instead of oversubscribing them
        torch.set_num_threads(min(torch.get_num_threads(), max(1, (os.cpu_count() or 1) // world)))
    return Dist(rank, world, dev)


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and python's ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2 ** 32)
    random.seed(seed)


def rng_state() -> dict:
    """This process's RNG states as tensors and plain Python (``weights_only``-loadable)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
                       float(gauss)],
             "python": _to_lists(random.getstate())}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(_to_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _to_lists(value):
    return [_to_lists(v) for v in value] if isinstance(value, (list, tuple)) else value


def _to_tuples(value):
    return tuple(_to_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def gather_objects(obj, dist: Dist) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` (just ``[obj]`` in one process)."""
    if not dist.active:
        return [obj]
    import torch.distributed as tdist
    out = [None] * dist.world
    tdist.all_gather_object(out, obj)
    return out


def all_sum(values: list[float], dist: Dist) -> list[float]:
    """Element-wise sums of ``values`` over the processes."""
    if not dist.active:
        return list(values)
    import torch.distributed as tdist
    t = torch.tensor(values, dtype=torch.float64, device=dist.device)
    tdist.all_reduce(t)
    return t.tolist()


# ------------------------------------------------------------------------------ the data

def load_data(cfg: TrainConfig) -> tuple:
    """``(train, test)`` image and label tensors: the first ``train_subset`` /
    ``test_subset`` examples of the configuration's dataset."""
    def take(split, n):
        x, y = data.load_dataset(cfg.dataset, split, cfg.data_root).tensors
        return (x[:n], y[:n]) if n else (x, y)
    return take("train", cfg.train_subset), take("test", cfg.test_subset)


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, dist: Dist) -> list:
    """This process's index batches of epoch ``epoch`` (0-based). The permutation is
    ``DistributedSampler``'s for ``(seed, epoch)``; process r takes positions r, r + N, ...
    so the union of the processes' k-th batches is the one-process run's k-th batch of
    ``batch_size`` (the global batch)."""
    from torch.utils.data.distributed import DistributedSampler
    if batch_size % dist.world:
        raise TrainingError(f"batch_size {batch_size} is not divisible by the {dist.world} "
                            "processes")
    sampler = DistributedSampler(range(n), num_replicas=dist.world, rank=dist.rank,
                                 shuffle=True, seed=seed, drop_last=False)
    sampler.set_epoch(epoch)
    order = torch.tensor(list(sampler), dtype=torch.long)
    return list(order.split(batch_size // dist.world))


def augment(x: torch.Tensor, padding: int = 4) -> torch.Tensor:
    """Random crop (zero padding ``padding``) and random horizontal flip, per image, drawn
    from torch's global RNG."""
    b, _, h, w = x.shape
    padded = F.pad(x, [padding] * 4)
    dy = torch.randint(0, 2 * padding + 1, (b,))
    dx = torch.randint(0, 2 * padding + 1, (b,))
    rows = (dy.view(b, 1) + torch.arange(h)).view(b, 1, h, 1)
    cols = (dx.view(b, 1) + torch.arange(w)).view(b, 1, 1, w)
    idx_b = torch.arange(b).view(b, 1, 1, 1)
    out = padded[idx_b, torch.arange(x.shape[1]).view(1, -1, 1, 1), rows, cols]
    flip = torch.rand(b) < 0.5
    return torch.where(flip.view(b, 1, 1, 1), out.flip(3), out)


# --------------------------------------------------------------------- goal + bounds

def build_network(cfg: TrainConfig) -> nn.Module:
    """A freshly initialised zoo network of the configuration (seed it first)."""
    return models.get(cfg.network, cfg.dataset)


def bounded_module(model: nn.Module, cfg: TrainConfig, example: torch.Tensor):
    """A ``lirpa_diffai.BoundedModule`` around ``model`` with the configuration's options."""
    from .bounded_module import BoundedModule
    return BoundedModule(model, example[:1], bound_opts=cfg.bound_opts,
                         device=str(example.device))


def box_bounds(bm, method: str):
    """The trainer's bounds function ``(x_L, x_U, C) -> (lb, ub)`` for the goals."""
    from auto_LiRPA import BoundedTensor, PerturbationLpNorm

    def bounds(x_L, x_U, C):
        ptb = PerturbationLpNorm(norm=np.inf, x_L=x_L, x_U=x_U)
        return bm.compute_bounds(x=(BoundedTensor((x_L + x_U) / 2, ptb),), C=C, method=method)
    return bounds


class GoalLoss(nn.Module):
    """``forward(x, y, t)`` = the goal's mean loss of the batch at time ``t``. The network
    (``.model``) and its BoundedModule (``.bm``, same parameters) are submodules, so one
    DistributedDataParallel wrapper covers every way the loss reaches the parameters."""

    def __init__(self, model: nn.Module, bm, cfg: TrainConfig):
        super().__init__()
        self.model, self.bm = model, bm
        self.goal = cfg.goal
        self.context = GoalContext(model=model, bounds=box_bounds(bm, cfg.method), eps=cfg.eps,
                                   data_range=cfg.data_range, num_classes=cfg.num_classes,
                                   aux_losses=lambda: bm.hzono_aux_losses)

    def forward(self, x: torch.Tensor, y: torch.Tensor, t: float) -> torch.Tensor:
        from .abstract_layers import set_epoch
        set_epoch(self.model, t)
        return self.goal.loss(self.context, x, y, t)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every parameter group's learning rate."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam or SGD as the configuration says (lr is set per step)."""
    o = cfg.optimizer
    if o.name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum,
                               weight_decay=o.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=o.lr, weight_decay=o.weight_decay)


def training_step(loss_module: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                  y: torch.Tensor, t: float, lr: float) -> float:
    """One optimizer step on the goal's loss at time ``t``; returns the loss."""
    set_lr(optimizer, lr)
    optimizer.zero_grad(set_to_none=True)
    loss = loss_module(x, y, t)
    if not torch.isfinite(loss):
        raise TrainingError(f"the training loss is {loss.item()} at epoch {t:.3f}")
    loss.backward()
    optimizer.step()
    return loss.item()


# ------------------------------------------------------------------- schedule read-outs

def eps_factor(goal: Goal, t: float) -> float | None:
    """The fraction of eps that the goal's abstract (``Box``) part trains on at ``t``: the
    product of the ``Sub``/``Sample`` deltas on the way to the one ``Box`` (1 for a bare
    ``Box``; inside ``BiSample``, whose box radius depends on the data, an upper bound);
    None when the goal has no ``Box`` or several."""
    paths = list(_box_paths(goal, t, 1.0))
    return paths[0] if len(paths) == 1 else None


def _box_paths(goal: Goal, t: float, factor: float):
    if isinstance(goal, Box):
        yield factor
    elif isinstance(goal, Mix):
        yield from _box_paths(goal.g1, t, factor)
        yield from _box_paths(goal.g2, t, factor)
    elif isinstance(goal, (Sub, Sample)):
        inner = goal.inner()
        yield from _box_paths(inner, t, factor * goal.delta(t))
        if isinstance(goal, Sample):
            yield from _box_paths(goal.gs, t, factor)
    elif isinstance(goal, Reboxing):
        for g in goal.arguments():
            if isinstance(g, Goal):
                yield from _box_paths(g, t, factor)


def schedule_values(goal: Goal, t: float) -> dict[str, float]:
    """The current value of every non-constant schedule argument of the goal, keyed by its
    path (``"Mix.lam"``, ``"Mix.g2.Sub.delta"``)."""
    out: dict[str, float] = {}

    def walk(term, path):
        from dataclasses import fields
        for f in fields(term):
            value = getattr(term, f.name)
            key = f"{path}.{f.name}"
            if isinstance(value, Schedule) and not isinstance(value, Const):
                out[key] = float(value(t))
            elif isinstance(value, Goal):
                walk(value, f"{key}.{type(value).__name__}")
    walk(goal, type(goal).__name__)
    return out


def goal_eps(cfg: TrainConfig, t: float) -> float:
    """The radius the goal's abstract part trains on at ``t`` (``eps`` times the eps factor,
    or ``eps`` when the goal has no single factor)."""
    factor = eps_factor(cfg.goal, t)
    return cfg.eps * (1.0 if factor is None else factor)


# -------------------------------------------------------------------------- evaluation

def evaluate(model: nn.Module, bm, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig,
             dist: Dist, certify: bool = True, batch_size: int = 200) -> dict:
    """Clean accuracy and (``certify``) certified accuracy with ``cfg.method`` at ``cfg.eps``
    on ``(x, y)``, split over the processes; the network and bounded module are put back in
    training mode afterwards."""
    from .evaluation import certified_mask
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


# --------------------------------------------------------------------------- checkpoints

def save_atomic(obj, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then ``os.replace``."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_metrics(path: Path, metrics: list[dict]) -> None:
    """``metrics.jsonl`` holding exactly ``metrics``, replaced atomically."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text("".join(json.dumps(m) + "\n" for m in metrics))
    os.replace(tmp, path)


def load_checkpoint(path) -> dict:
    """A checkpoint written by the trainer, read with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors have many types
        raise CheckpointError(f"{path} is not a readable checkpoint: "
                              f"{str(err).splitlines()[0]}") from None
    needed = ("state_dict", "config_text", "epoch")
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in needed):
        raise CheckpointError(f"{path} is not a lirpa_diffai training checkpoint (it lacks "
                              f"{', '.join(needed)})")
    return ckpt


def config_of(ckpt: dict) -> TrainConfig:
    """The training configuration stored in a checkpoint."""
    return parse_config(ckpt["config_text"], ckpt.get("config_path") or "<checkpoint>")


def load_state_checked(model: nn.Module, state: dict, network: str) -> None:
    """``model.load_state_dict(state)`` after checking every key and shape; a mismatch
    raises :class:`CheckpointError` naming the network and the keys."""
    own = model.state_dict()
    problems = [f"missing {k!r} {tuple(v.shape)}" for k, v in own.items() if k not in state]
    for k, v in state.items():
        if k not in own:
            problems.append(f"unexpected {k!r} {tuple(v.shape)}")
        elif own[k].shape != v.shape:
            problems.append(f"{k!r}: {network} has {tuple(own[k].shape)}, the checkpoint "
                            f"{tuple(v.shape)}")
    if problems:
        shown = problems[:12] + ([f"... and {len(problems) - 12} more"]
                                 if len(problems) > 12 else [])
        raise CheckpointError(f"the checkpoint's weights do not fit network {network!r} of "
                              f"its configuration (another architecture?):\n  "
                              + "\n  ".join(shown))
    model.load_state_dict(state)


# ------------------------------------------------------------------------------ the run

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
