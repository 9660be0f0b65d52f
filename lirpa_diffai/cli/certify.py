"""``python -m lirpa_diffai certify MODEL [--methods ...] [--eps E] [--limit N] [--json PATH]
[--batch-size B] [--regions] [--network NAME [--network-args YAML] --dataset D]``."""
from ..evaluation.margins import DEFAULT_METHODS
from .common import EXIT_INTERRUPTED

HELP = ("evaluate a network (a training run, a graft output, a pretrained network or a state "
        "dict): standard accuracy, accuracy under MI-FGSM and certified accuracy per bound "
        "method")

DEFAULT_METHOD_LIST = ",".join(DEFAULT_METHODS)


def add_arguments(parser) -> None:
    from .common import MODEL_HELP, add_model_options, number
    parser.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    add_model_options(parser)
    parser.add_argument("--methods", default=DEFAULT_METHOD_LIST,
                        help=f"comma-separated bound methods (default: {DEFAULT_METHOD_LIST}); "
                             f"BaB is the complete verifier, BaB:NAME with the branching "
                             f"heuristic NAME (intercept, babsr, fsb, kfsb)")
    parser.add_argument("--eps", type=number, default=None,
                        help="L-inf radius, a number or a fraction such as 8/255 (default: the "
                             "training configuration's; needed for other networks)")
    parser.add_argument("--limit", type=int, default=None,
                        help="the first N test images (default: the configuration's "
                             "test_subset, else all)")
    parser.add_argument("--json", default=None,
                        help="also write the results to this file (rewritten as each "
                             "method's row finishes)")
    parser.add_argument("--hzono-rows", default=None, metavar="ROWS",
                        help="correlated input rows of the hzono methods: 0 (a box), k "
                             "(CorrelateMax k) or all (default: the training configuration's)")
    parser.add_argument("--batch-size", type=int, default=100, help="images per bound call")
    parser.add_argument("--regions", action="store_true",
                        help="also the fraction of unstable ReLUs per layer and method (BaB "
                             "has none) and the median smallest distances to region and "
                             "decision boundaries")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                        help="time per sample of the complete verifier BaB (default 60); "
                             "with --json, the samples it decided are kept in "
                             "<json stem>.bab.jsonl and a run started again resumes")


def run(args) -> int:
    from .common import CommandError, check_output_path
    check_output_path(args.json, "--json")
    from ..goals import SourceError
    from ..training import TrainingError
    from ..pipeline.certify_run import LaterStageError, certify_checkpoint
    try:
        report, table = certify_checkpoint(args.model, args.methods, args.eps, args.limit,
                                           args.batch_size, args.json, hzono_rows=args.hzono_rows,
                                           regions=args.regions, timeout=args.timeout,
                                           network=args.network, network_args=args.network_args,
                                           dataset=args.dataset)
    except LaterStageError as err:
        print(err.table)
        raise CommandError(str(err)) from None
    except (SourceError, TrainingError, FileNotFoundError, ValueError) as err:
        raise CommandError(str(err)) from None
    except KeyboardInterrupt:
        import sys
        from pathlib import Path
        kept = (f"; the finished rows are in {args.json}, and the samples BaB decided in "
                f"{Path(args.json).with_suffix('.bab.jsonl')}: run the same command again to "
                f"resume BaB" if args.json else "")
        print(f"\ncertify interrupted{kept}", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(table)
    failed = [m.method for m in report.methods if m.error]
    if failed:
        kept = " and in " + args.json if args.json else ""
        raise CommandError(f"{', '.join(failed)} failed (the reason is in the table{kept}); "
                           f"the other rows are complete")
    return 0
