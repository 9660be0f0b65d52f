"""Training a network with a goal of the DSL (``python -m lirpa_diffai train``).

Modules, lowest first: ``errors`` (the refusals), ``reader`` (YAML nodes to checked values),
``schema`` (the configuration's keys, declared once), ``config`` (reading a configuration
file), ``distributed`` (processes and collectives), ``rng`` (seeding, RNG states), ``batches``
(data subsets, per-epoch batches, augmentation), ``initialisation`` (IBP initialisation),
``step`` (network, bounded module, the goal's loss, one optimizer step, out-of-memory errors),
``readouts`` (eps and schedule values, progress and epoch lines), ``checkpoint`` (atomic save,
checked load, configuration comparison), ``run`` (a run's state, fresh or resumed) and ``loop``
(epochs, evaluation, checkpoints, smoke runs). See :mod:`.loop` for what a run writes.
"""
from .batches import augment, epoch_batches, load_data
from .checkpoint import CHECKPOINT, METRICS, config_of, load_checkpoint, load_state_checked, \
    save_atomic, write_metrics
from .distributed import Dist, all_sum, gather_objects, init_distributed
from .errors import CheckpointError, ConfigError, TrainingError
from .loop import Interrupted, evaluate, train, train_epoch
from .run import Run, check_device, output_dir, remove_leftovers, start_run
from .readouts import eps_factor, format_metrics, goal_eps, progress_fields, schedule_values
from .rng import rng_state, seed_everything, set_rng_state
from .step import GoalLoss, wrap_for_training, box_bounds, build_network, make_optimizer, \
    set_lr, training_step

__all__ = ["CHECKPOINT", "METRICS", "CheckpointError", "ConfigError", "Dist", "GoalLoss",
           "Interrupted", "Run", "TrainingError", "all_sum", "augment", "box_bounds",
           "build_network", "check_device", "config_of", "epoch_batches", "eps_factor",
           "evaluate", "format_metrics", "gather_objects", "goal_eps", "init_distributed",
           "load_checkpoint", "load_data", "load_state_checked", "make_optimizer", "output_dir",
           "progress_fields", "remove_leftovers", "rng_state", "save_atomic", "schedule_values",
           "seed_everything", "set_lr", "set_rng_state", "start_run", "train", "train_epoch",
           "training_step", "wrap_for_training", "write_metrics"]
