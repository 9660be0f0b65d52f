"""The trainer's refusals: bad configurations and arguments, unusable outputs, checkpoints that
do not fit."""
from __future__ import annotations

from ..goals.errors import SourceError


class ConfigError(SourceError):
    """A training-configuration file was refused (unknown key, wrong type, bad value)."""


class TrainingError(ValueError):
    """A refused run: bad arguments, a checkpoint that does not fit, an unusable output."""


class CheckpointError(TrainingError):
    """A checkpoint that cannot be read or does not fit the network of its configuration."""
