"""The training loop (``python -m lirpa_diffai train``).

One :class:`~lirpa_diffai.training.config.TrainConfig` drives a run. The network and one
``lirpa_diffai.BoundedModule`` around it are built once; each step evaluates the goal's loss
at the fractional epoch ``t`` (so schedules move within an epoch), sets the learning rate to
``cfg.lr_at(t)`` and takes an optimizer step. After each epoch the run writes, in its output
directory:

``checkpoint.pt``   written atomically (a temporary file in the same directory, then
                    ``os.replace``): model and optimizer state, the completed epoch, the
                    configuration's text, path and ``--set`` overrides, the metrics so far
                    and the RNG states of every process (torch, numpy, python). Everything is a tensor or plain
                    Python, so it loads with ``torch.load(..., weights_only=True)``.
``metrics.jsonl``   one JSON object per epoch: ``epoch`` (1-based), ``train_loss``,
                    ``train_accuracy`` (the network in eval mode on each training batch
                    before its step), ``test_accuracy`` and ``test_certified`` (when the
                    test subset was evaluated), ``eps`` (the radius the goal's abstract part
                    trains on at the end of the epoch), ``lr``, ``seconds``, ``schedules``.

The order of the training examples in epoch e is a function of ``(seed, e)`` only
(``DistributedSampler.set_epoch``), so a resumed run sees the same batches; together with the
restored RNG states, ``--resume`` continues exactly where the interrupted run stopped.
Ctrl-C stops a run with :class:`Interrupted` (the CLI exits 130) naming the last checkpoint
and the command that resumes it. ``max_steps`` (``--max-steps``, a smoke run) stops after that
many optimizer steps, evaluates on the test subset, and writes nothing, or with
``keep_smoke`` (``--keep-smoke``) its checkpoint and metrics, marked ``smoke``. Before the
first step, :mod:`.preflight` checks on one batch everything the run will do.

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

import shlex
import time
from pathlib import Path

import torch
from torch import nn

from ..evaluation.margins import certified_mask
from .config import TrainConfig, parse_config
from .batches import augment, epoch_batches, load_data
from .checkpoint import CHECKPOINT, METRICS, save_atomic, write_metrics
from .distributed import Dist, all_sum, gather_objects, init_distributed
from .errors import TrainingError
from .readouts import format_duration, format_metrics, goal_eps, progress_fields, \
    schedule_values
from .rng import rng_state, set_rng_state
from .run import Run, check_device, output_dir, remove_leftovers, start_run
from .preflight import preflight
from .step import GoalLoss, is_out_of_memory, out_of_memory_error, training_step

TIMING_STEPS = 4   # the time per step is measured on steps 2..4 (step 1 warms caches up)


class Interrupted(TrainingError):
    """Ctrl-C during training; the message says where the last checkpoint is."""


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
            try:
                with torch.no_grad():
                    right = model(xb).argmax(1) == yb
                correct += right.sum().item()
                if certify:
                    ok = certified_mask(bm, xb, yb, cfg.eps, cfg.method, cfg.data_range,
                                        cfg.num_classes)
                    proved += (ok & right).sum().item()
            except Exception as err:
                if is_out_of_memory(err):
                    raise out_of_memory_error(cfg, "certifying the test set", len(yb)) \
                        from None
                raise
    finally:
        model.train()
        bm.train()
    correct, proved = all_sum([correct, proved], dist)
    out = {"test_accuracy": correct / len(x)}
    if certify:
        out["test_certified"] = proved / len(x)
    return out


def train(config_path: str, out: str | None = None, epochs: int | None = None,
          resume: bool = False, progress: bool = True, log=print, overrides=(),
          max_steps: int | None = None, keep_smoke: bool = False,
          command_options: tuple = ()) -> list[dict]:
    """Train as the configuration (with the ``--set`` ``overrides``, ``key=value``) says;
    ``epochs`` overrides its epoch count, ``max_steps`` stops after that many steps without
    writing anything, or with ``keep_smoke`` writing its checkpoint and metrics marked as a
    smoke run (``smoke``: the steps taken; not resumable). Returns the metrics of every
    epoch so far (a ``max_steps`` run: of the epochs it trained in, the last one partial).
    ``command_options``: command-line options (``--threads 1``) that the printed resume
    command repeats. See the module docstring for what is written."""
    path = Path(config_path)
    if not path.is_file():
        raise TrainingError(f"configuration file {config_path} not found")
    text = path.read_text()
    cfg = parse_config(text, str(path), overrides=tuple(overrides))
    check_device(cfg)
    dist = init_distributed(cfg.device)
    say = log if dist.is_main else _quiet
    out_dir = output_dir(cfg, config_path, out)
    if dist.is_main and out_dir.is_dir():
        remove_leftovers(out_dir, say)
    run, rng_states = start_run(cfg, text, str(path), out_dir, resume, dist,
                                tuple(overrides), say)
    model = run.model
    total = epochs or cfg.epochs
    if rng_states is not None:
        say(resume_message(run, total, out_dir))
    (x_train, y_train), (x_test, y_test) = load_data(cfg)
    batch = max(cfg.batch_size // dist.world, 1)
    bm = preflight(model, cfg, x_train[:batch].to(dist.device), y_train[:batch].to(dist.device))
    if dist.is_main and (max_steps is None or keep_smoke):
        out_dir.mkdir(parents=True, exist_ok=True)
        write_metrics(out_dir / METRICS, run.metrics)
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
    steps_left, smoke, timing_log, saved = max_steps, [], say, run.epoch
    try:
        while run.epoch < total and steps_left != 0:
            metrics, steps = train_epoch(run, loss_module, bm, (x_train, y_train), dist,
                                         progress, steps_left, timing_log, total)
            timing_log = None                # the first epoch of this process only
            last = run.epoch + 1 == total
            stopped = steps_left is not None and steps >= steps_left
            if (cfg.test_every and (run.epoch + 1) % cfg.test_every == 0) or last or stopped:
                metrics.update(evaluate(model, bm, x_test, y_test, cfg, dist))
            say(format_metrics(metrics))
            run.epoch += 1
            if steps_left is not None:       # a smoke run: nothing is saved
                steps_left -= steps
                smoke.append(metrics)
                continue
            run.metrics.append(metrics)
            states = gather_objects(rng_state(), dist)
            if dist.is_main:
                save_atomic(run.checkpoint(states), out_dir / CHECKPOINT)
                write_metrics(out_dir / METRICS, run.metrics)
            saved = run.epoch
    except KeyboardInterrupt:
        raise Interrupted(interrupted_message(saved, out_dir, config_path, overrides,
                                              max_steps, command_options)) from None
    if max_steps is not None and keep_smoke:
        keep_smoke_run(run, smoke, max_steps - steps_left, out_dir, dist)
        say(f"stopped after {max_steps - steps_left} steps (--max-steps {max_steps}); kept as "
            f"a smoke run (not resumable) in {out_dir / CHECKPOINT} and {out_dir / METRICS}")
    elif max_steps is not None:
        say(f"stopped after {max_steps - steps_left} steps (--max-steps {max_steps}); "
            "nothing written (--keep-smoke keeps it)")
    if dist.active:
        import torch.distributed as tdist
        tdist.barrier()
        tdist.destroy_process_group()
    return run.metrics + smoke


def keep_smoke_run(run: Run, metrics: list, steps: int, out_dir: Path, dist: Dist) -> None:
    """Write a smoke run's checkpoint and metrics, both marked ``smoke``."""
    run.metrics = [{**m, "smoke": True} for m in metrics]
    states = gather_objects(rng_state(), dist)
    if dist.is_main:
        save_atomic({**run.checkpoint(states), "smoke": {"steps": steps}}, out_dir / CHECKPOINT)
        write_metrics(out_dir / METRICS, run.metrics)


def resume_message(run: Run, total: int, out_dir: Path) -> str:
    """What ``--resume`` does with the run in ``out_dir``."""
    if run.epoch < total:
        return (f"resuming the run in {out_dir} after epoch {run.epoch} of {total}: "
                f"training epochs {run.epoch + 1}-{total}")
    if run.epoch == total:
        return f"the run in {out_dir} has completed all its {total} epochs; nothing to train"
    return (f"the run in {out_dir} has completed {run.epoch} epochs, more than the {total} "
            f"asked for; nothing to train (give --epochs above {run.epoch} to continue it)")


def interrupted_message(saved: int, out_dir: Path, config_path: str, overrides,
                        max_steps: int | None, command_options: tuple = ()) -> str:
    """Where an interrupted run stands (``saved``: the epoch of its last checkpoint) and how
    to continue it (the command repeats ``command_options``)."""
    if max_steps is not None:
        return "interrupted (a --max-steps run writes no checkpoint)"
    ckpt = out_dir / CHECKPOINT
    if saved == 0 or not ckpt.is_file():
        return ("interrupted during epoch 1, before the first checkpoint (written after each "
                f"epoch); nothing was saved in {out_dir}")
    command = ["python", "-m", "lirpa_diffai", "train", config_path, "--out", str(out_dir),
               "--resume"]
    for argument in overrides:
        command += ["--set", argument]
    command += list(command_options)
    return (f"interrupted; the last checkpoint is {ckpt} (after epoch {saved}). Resume "
            f"with:\n  {shlex.join(command)}")


def _quiet(*_args, **_kwargs) -> None:
    pass


def train_epoch(run: Run, loss_module: nn.Module, bm, train_data: tuple, dist: Dist,
                progress: bool, max_steps: int | None = None, timing_log=None,
                total_epochs: int | None = None) -> tuple[dict, int]:
    """One epoch of training, at most ``max_steps`` steps of it; returns its metrics
    (without the test part) and the number of steps taken. ``timing_log`` (optional) is
    called with the time per step measured on the first steps and the projected times."""
    from tqdm import tqdm
    cfg, model, epoch = run.cfg, run.model, run.epoch
    x_all, y_all = train_data
    batches = epoch_batches(len(x_all), cfg.batch_size, cfg.seed, epoch, dist)
    todo = batches if max_steps is None else batches[:max_steps]
    start, loss_sum, correct, seen = time.perf_counter(), 0.0, 0.0, 0.0
    step_ends: list[float] = []
    bar = tqdm(todo, desc=f"epoch {epoch + 1}", unit="batch", leave=False,
               disable=not (progress and dist.is_main), dynamic_ncols=True, mininterval=1.0)
    lr = cfg.lr_at(epoch)
    for i, idx in enumerate(bar):
        t = epoch + i / len(batches)
        x, y = x_all[idx].to(dist.device), y_all[idx].to(dist.device)
        if cfg.augment:
            x = augment(x)
        try:
            with torch.no_grad():
                model.eval()
                correct += (model(x).argmax(1) == y).sum().item()
                model.train()
            lr = cfg.lr_at(t)
            loss_sum += training_step(loss_module, run.optimizer, x, y, t, lr,
                                      cfg.grad_clip) * len(y)
        except Exception as err:
            if is_out_of_memory(err):
                raise out_of_memory_error(cfg, f"in step {i + 1} of epoch {epoch + 1}",
                                          len(y)) from None
            raise
        seen += len(y)
        if timing_log is not None and len(step_ends) < TIMING_STEPS:
            step_ends.append(time.perf_counter())
            if len(step_ends) == min(TIMING_STEPS, len(todo)):
                bar.clear()
                timing_log(timing_message(cfg, start, step_ends, len(batches), t,
                                          total_epochs or cfg.epochs, epoch))
        if i % 10 == 0 or i + 1 == len(todo):
            bar.set_postfix(progress_fields(cfg, t, loss_sum / seen, correct / seen, lr),
                            refresh=False)
    loss_sum, correct, seen = all_sum([loss_sum, correct, seen], dist)
    end_t = float(epoch + 1)
    return {"epoch": epoch + 1, "train_loss": loss_sum / seen,
            "train_accuracy": correct / seen, "eps": goal_eps(cfg, end_t), "lr": lr,
            "seconds": time.perf_counter() - start,
            "schedules": schedule_values(cfg.goal, end_t)}, len(todo)


def timing_message(cfg: TrainConfig, start: float, step_ends: list, steps_per_epoch: int,
                   t: float, total_epochs: int, epoch: int) -> str:
    """The time per step measured on the first steps (without step 1 when there are more)
    and what it projects for an epoch and for the epochs left."""
    if len(step_ends) > 1:
        per_step = (step_ends[-1] - step_ends[0]) / (len(step_ends) - 1)
        measured = f"steps 2-{len(step_ends)}" if len(step_ends) > 2 else "step 2"
    else:
        per_step, measured = step_ends[0] - start, "step 1"
    epoch_s = per_step * steps_per_epoch
    text = (f"time per step {per_step:.3g} s ({measured}, batch {cfg.batch_size}): about "
            f"{format_duration(epoch_s)} per epoch of {steps_per_epoch} steps, "
            f"{format_duration(epoch_s * (total_epochs - epoch))} for epochs {epoch + 1}-"
            f"{total_epochs}")
    if schedule_values(cfg.goal, t) != schedule_values(cfg.goal, float(total_epochs)):
        text += " (the goal's schedules are still ramping up: later steps may cost more)"
    return text
