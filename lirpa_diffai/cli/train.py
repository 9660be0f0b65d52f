"""``python -m lirpa_diffai train CONFIG.yaml [--epochs N] [--out DIR] [--resume]
[--set KEY=VALUE ...] [--max-steps N [--keep-smoke]] [--train-subset N] [--test-subset N]``."""
from ..training.schema import set_help

HELP = "train a network with a goal from a YAML configuration (see examples/goals/)"


def add_arguments(parser) -> None:
    parser.add_argument("config", help="training configuration (YAML)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="total number of epochs (default: the configuration's)")
    parser.add_argument("--out", default=None,
                        help="output directory (default: the configuration's output, else "
                             "runs/<config name>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run whose checkpoint is in the output directory")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        dest="overrides", help=set_help())
    parser.add_argument("--train-subset", type=int, default=None, metavar="N",
                        help="train on the first N training examples (--set train_subset=N)")
    parser.add_argument("--test-subset", type=int, default=None, metavar="N",
                        help="evaluate on the first N test examples (--set test_subset=N)")
    parser.add_argument("--max-steps", type=int, default=None, metavar="N",
                        help="a smoke run: stop after N optimizer steps, evaluate on the "
                             "test subset, write nothing (unless --keep-smoke)")
    parser.add_argument("--keep-smoke", action="store_true",
                        help="with --max-steps: write the smoke run's checkpoint and metrics, "
                             "marked as a smoke run, so that certify, plot, export and graft "
                             "can follow (it cannot be resumed)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def overrides_of(args) -> list[str]:
    """The ``--set`` arguments, with ``--train-subset`` / ``--test-subset`` as two more."""
    out = list(args.overrides)
    for key in ("train_subset", "test_subset"):
        if getattr(args, key) is not None:
            out.append(f"{key}={getattr(args, key)}")
    return out


def repeated_options(args) -> tuple:
    """The options the printed resume command repeats: ``--epochs``, ``--threads``."""
    out = ()
    for flag, value in (("--epochs", args.epochs), ("--threads", args.threads)):
        if value is not None:
            out += (flag, str(value))
    return out


def run(args) -> int:
    import sys

    from .common import EXIT_INTERRUPTED, CommandError
    for flag, value in (("--epochs", args.epochs), ("--max-steps", args.max_steps)):
        if value is not None and value < 1:
            raise CommandError(f"{flag} must be a positive integer, got {value}")
    if args.keep_smoke and args.max_steps is None:
        raise CommandError("--keep-smoke keeps a --max-steps run; give --max-steps N")
    from ..goals import SourceError
    from ..training import Interrupted, TrainingError, train
    try:
        metrics = train(args.config, out=args.out, epochs=args.epochs, resume=args.resume,
                        progress=not args.no_progress, overrides=overrides_of(args),
                        max_steps=args.max_steps, keep_smoke=args.keep_smoke,
                        command_options=repeated_options(args))
    except Interrupted as err:
        print(f"\n{err}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (SourceError, TrainingError, FileNotFoundError) as err:
        raise CommandError(str(err)) from None
    return 0 if metrics is not None else 1
