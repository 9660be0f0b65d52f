"""Training a network with a goal of the DSL (``python -m lirpa_diffai train``).

Modules, lowest first: ``errors`` (the refusals), ``distributed`` (processes and collectives),
``rng`` (seeding, RNG states), ``batches`` (data subsets, per-epoch batches, augmentation),
``step`` (network, bounded module, the goal's loss, one optimizer step), ``readouts`` (eps and
schedule values, progress and epoch lines), ``checkpoint`` (atomic save, checked load) and
``loop`` (a run: start or resume, epochs, evaluation, checkpoints). See :mod:`.loop` for
what a run writes.
"""
from .batches import augment, epoch_batches, load_data
from .checkpoint import CHECKPOINT, METRICS, config_of, load_checkpoint, load_state_checked, \
    save_atomic, write_metrics
from .distributed import Dist, all_sum, gather_objects, init_distributed
from .errors import CheckpointError, TrainingError
from .loop import Run, evaluate, output_dir, start_run, train, train_epoch
from .readouts import eps_factor, format_metrics, goal_eps, progress_fields, schedule_values
from .rng import rng_state, seed_everything, set_rng_state
from .step import GoalLoss, bounded_module, box_bounds, build_network, make_optimizer, \
    set_lr, training_step

__all__ = ["CHECKPOINT", "METRICS", "CheckpointError", "Dist", "GoalLoss", "Run",
           "TrainingError", "all_sum", "augment", "bounded_module", "box_bounds",
           "build_network", "config_of", "epoch_batches", "eps_factor", "evaluate",
           "format_metrics", "gather_objects", "goal_eps", "init_distributed", "load_checkpoint",
           "load_data", "load_state_checked", "make_optimizer", "output_dir", "progress_fields",
           "rng_state", "save_atomic", "schedule_values", "seed_everything", "set_lr",
           "set_rng_state", "start_run", "train", "train_epoch", "training_step",
           "write_metrics"]
