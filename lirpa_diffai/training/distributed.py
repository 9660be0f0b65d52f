"""Processes of a run: one, or several under ``torchrun`` (gloo on CPU, nccl on CUDA), and the
collective operations the trainer needs (gather objects, sum numbers)."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch


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


