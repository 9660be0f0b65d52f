"""Checkpoints and metrics files: written atomically (a temporary file in the same directory,
then ``os.replace``), read with ``torch.load(..., weights_only=True)`` and checked against the
network of the stored configuration."""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch
from torch import nn

from .config import TrainConfig, parse_config
from .errors import CheckpointError

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
CHECKPOINT_FORMAT = 1


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
    """A checkpoint written by the trainer, read with ``weights_only=True``. Any other file
    (empty, not written by ``torch.save``, holding other objects or other keys) raises
    :class:`CheckpointError` saying it is not a lirpa-diffai checkpoint and why."""
    path = Path(path)
    return checked_checkpoint(read_weights(path, "a lirpa-diffai checkpoint"), path)


def read_weights(path: Path, what: str):
    """``torch.load(path, weights_only=True)`` on the CPU; a missing file or one it cannot read
    raises :class:`CheckpointError` saying the file is not ``what`` and why (never torch's
    advice to load unsafely)."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # unpickling errors have many types; torch's text advises unsafe loading
        raise CheckpointError(f"{path} is not {what}: it {unreadable_reason(path)}") from None


def checked_checkpoint(ckpt, path: Path) -> dict:
    """``ckpt`` read from ``path``, if it has the trainer's keys; else :class:`CheckpointError`."""
    needed = ("state_dict", "config_text", "epoch")
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in needed):
        raise CheckpointError(f"{path} is not a lirpa-diffai checkpoint: it lacks "
                              f"{', '.join(needed)} (write one with `python -m lirpa_diffai "
                              f"train`)")
    return ckpt


TORCH_SAVE_MAGIC = (b"PK\x03\x04", b"\x80")   # zip archive (torch >= 1.6), legacy pickle


def unreadable_reason(path: Path) -> str:
    """Why ``torch.load(path, weights_only=True)`` failed, as the end of a sentence."""
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        return "is empty (0 bytes; a run killed before its first checkpoint was written?)"
    if head.startswith(TORCH_SAVE_MAGIC):
        return ("holds Python objects other than tensors and plain values, which are never "
                "unpickled (not written by `python -m lirpa_diffai train`)")
    return "is not a file written by torch.save (a configuration or another file?)"


def config_of(ckpt: dict) -> TrainConfig:
    """The training configuration stored in a checkpoint (its file's text and the ``--set``
    overrides the run was started with)."""
    return parse_config(ckpt["config_text"], ckpt.get("config_path") or "<checkpoint>",
                        overrides=tuple(ckpt.get("overrides", ())))


# keys that may change between a run and its resumption: where the file is, where the run
# writes, and how many epochs it trains in all (``--epochs``)
RESUMABLE_CHANGES = ("source", "output", "epochs")


def config_differences(now: TrainConfig, then: TrainConfig) -> list[str]:
    """``"key: now ... (the run: ...)"`` for each key of the parsed configurations that
    differs, other than :data:`RESUMABLE_CHANGES` (comments and layout never count)."""
    out = []
    for f in dataclasses.fields(now):
        a, b = getattr(now, f.name), getattr(then, f.name)
        if f.name not in RESUMABLE_CHANGES and a != b:
            out.append(f"{f.name}: {a} (the run: {b})")
    return out


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


