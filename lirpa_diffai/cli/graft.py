"""``python -m lirpa_diffai graft CHECKPOINT --ratio R [--method M] [--eps E] --out DIR``."""
HELP = ("linearity grafting: replace the most unstable, least significant ReLU neurons of a "
        "trained network by learnable affine maps (writes masks, grafted checkpoint, statistics)")


def add_arguments(parser) -> None:
    from .common import number
    parser.add_argument("checkpoint", help="a pretrained network (resnet2b, cifar_conv_small_pgd, "
                                           "...), its file, or a training checkpoint / run directory")
    parser.add_argument("--ratio", type=float, required=True,
                        help="fraction of the ReLU neurons to graft, in [0, 1]")
    parser.add_argument("--method", default="CROWN-IBP",
                        help="bound method of the instability score: IBP, CROWN-IBP (default), "
                             "CROWN or hzono")
    parser.add_argument("--eps", type=number, default=None,
                        help="L-inf radius of the instability score (default: the training "
                             "run's eps, else 2/255)")
    parser.add_argument("--significance", default="gradient", choices=("gradient", "weight"),
                        help="neuron significance: mean |dL/d activation| (default) or the "
                             "magnitude of the weights reading the neuron")
    parser.add_argument("--lam", type=float, default=0.5,
                        help="weight of instability against insignificance (default 0.5)")
    parser.add_argument("--scope", default="global", choices=("global", "layer"),
                        help="graft the top fraction over all neurons (default) or per layer")
    parser.add_argument("--images", type=int, default=1000,
                        help="training images the scores are computed on (default 1000)")
    parser.add_argument("--batch-size", type=int, default=50, help="images per bound call")
    parser.add_argument("--out", required=True, help="output directory")


def run(args) -> int:
    from ..grafting.rewrite import GraftingError
    from ..training import TrainingError
    from .common import CommandError
    try:
        stats = graft_command(args)
    except (GraftingError, TrainingError, ValueError, FileNotFoundError) as err:
        raise CommandError(str(err)) from None
    print(f"grafted {stats['grafted']} of {stats['neurons']} neurons "
          f"({stats['grafted'] / max(stats['neurons'], 1):.1%}) -> {args.out}")
    return 0


def check_arguments(args) -> None:
    """Refuse bad numbers before any work, naming the option."""
    from ..grafting.instability import method_name
    from ..grafting.selection import check_ratio
    try:
        check_ratio(args.ratio)
    except ValueError:
        raise ValueError(f"--ratio must be in [0, 1], got {args.ratio:g}") from None
    method_name(args.method)
    if args.eps is not None and not 0 < args.eps <= 1:
        raise ValueError(f"--eps must be in (0, 1], got {args.eps:g}")
    if not 0 <= args.lam <= 1:
        raise ValueError(f"--lam must be in [0, 1], got {args.lam:g}")
    if args.images < 1 or args.batch_size < 1:
        raise ValueError("--images and --batch-size must be positive integers")


def source_network(checkpoint: str):
    """``(network in eval mode, base entry, default eps or None)`` of the ``graft`` argument
    (any network :func:`~lirpa_diffai.pipeline.model_source.load_model` takes that ``graft``
    can rebuild: a pretrained or zoo network, or a training run of one)."""
    from ..pipeline.model_source import load_model
    from ..grafting.rewrite import GraftingError
    loaded = load_model(checkpoint)
    if loaded.cfg is not None and loaded.cfg.graft is not None:
        raise GraftingError(f"{checkpoint} is a grafted network already; graft its base network "
                            "with a larger --ratio instead")
    if loaded.base is None:
        raise GraftingError(f"{loaded.description}: graft rebuilds only pretrained and zoo "
                            "networks")
    return loaded.model, loaded.base, loaded.eps


def graft_command(args) -> dict:
    """Select, graft and write ``masks.pt``, ``grafted.pt`` and ``selection.json``."""
    import json
    from pathlib import Path
    from .. import data
    from ..grafting import choose_masks, graft
    from ..grafting.checkpoint import GRAFTED_FILE, base_network, grafted_checkpoint
    from ..training.checkpoint import save_atomic
    check_arguments(args)
    model, base, run_eps = source_network(args.checkpoint)
    _, _, dataset = base_network(base)
    eps = args.eps if args.eps is not None else (run_eps if run_eps is not None else 2 / 255)
    x, y = data.load_dataset(dataset, "train").tensors
    x, y = x[:args.images], y[:args.images]
    masks, stats = choose_masks(model, x, y, eps, args.ratio, method=args.method,
                                significance=args.significance, lam=args.lam, scope=args.scope,
                                batch_size=args.batch_size, data_range=data.data_range(dataset))
    grafted = graft(model, masks, x[:1])
    stats["neurons"] = sum(m.numel() for m in masks.values())
    stats["grafted"] = int(sum(m.sum() for m in masks.values()))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_atomic(masks, out / "masks.pt")
    save_atomic(grafted_checkpoint(grafted, base, eps, stats), out / GRAFTED_FILE)
    (out / "selection.json").write_text(json.dumps(stats, indent=1) + "\n")
    return stats
