"""``python -m lirpa_diffai export CHECKPOINT --onnx PATH``."""
HELP = ("write a trained network as ONNX (input normalisation kept, abstract layers left "
        "out) for other verifiers")


def add_arguments(parser) -> None:
    parser.add_argument("checkpoint", help="checkpoint.pt written by `train` (or its directory)")
    parser.add_argument("--onnx", required=True, metavar="PATH", help="the ONNX file to write")


def run(args) -> int:
    from .common import CommandError, check_output_path
    check_output_path(args.onnx, "--onnx")
    from .. import data
    from ..pipeline.certify_run import load_trained
    from ..goals import SourceError
    from ..pipeline.onnx_export import ExportError, export_onnx
    from ..training import TrainingError
    try:
        model, cfg = load_trained(args.checkpoint)
        path = export_onnx(model, data.input_shape(cfg.dataset), args.onnx)
    except (SourceError, TrainingError, ExportError, FileNotFoundError) as err:
        raise CommandError(str(err)) from None
    print(f"wrote {path}: {cfg.network} on {cfg.dataset}, input {data.input_shape(cfg.dataset)} "
          f"in [{cfg.data_range[0]:g}, {cfg.data_range[1]:g}] (batch axis dynamic), "
          f"output the {cfg.num_classes} logits")
    return 0
