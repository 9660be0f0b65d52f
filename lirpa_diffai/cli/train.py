"""``python -m lirpa_diffai train CONFIG.yaml [--epochs N] [--out DIR] [--resume]``."""
HELP = "train a zoo network with a goal from a YAML configuration (see examples/goals/)"


def add_arguments(parser) -> None:
    parser.add_argument("config", help="training configuration (YAML)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="total number of epochs (default: the configuration's)")
    parser.add_argument("--out", default=None,
                        help="output directory (default: the configuration's output, else "
                             "runs/<config name>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run whose checkpoint is in the output directory")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from .common import CommandError
    if args.epochs is not None and args.epochs < 1:
        raise CommandError("--epochs must be a positive integer")
    from ..goals import SourceError
    from ..training import TrainingError, train
    try:
        metrics = train(args.config, out=args.out, epochs=args.epochs, resume=args.resume,
                        progress=not args.no_progress)
    except (SourceError, TrainingError, FileNotFoundError) as err:
        raise CommandError(str(err)) from None
    return 0 if metrics else 1
