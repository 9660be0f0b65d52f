"""``python -m lirpa_diffai export MODEL --onnx PATH [--network NAME [--network-args YAML]
--dataset D]``."""
HELP = ("write a network (a training run, a graft output, a pretrained network or a state "
        "dict) as ONNX (input normalisation kept, abstract layers left out) for other "
        "verifiers")


def add_arguments(parser) -> None:
    from .common import MODEL_HELP, add_model_options
    parser.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    add_model_options(parser)
    parser.add_argument("--onnx", required=True, metavar="PATH", help="the ONNX file to write")


def run(args) -> int:
    from .common import CommandError, check_output_path
    check_output_path(args.onnx, "--onnx")
    from .. import data
    from ..goals import SourceError
    from ..pipeline.model_source import load_model
    from ..pipeline.onnx_export import ExportError, export_onnx
    from ..training import TrainingError
    try:
        loaded = load_model(args.model, args.network, args.network_args, args.dataset)
        shape = data.input_shape(loaded.dataset)
        path = export_onnx(loaded.model, shape, args.onnx)
    except (SourceError, TrainingError, ExportError, FileNotFoundError, ValueError) as err:
        raise CommandError(str(err)) from None
    lo, hi = data.data_range(loaded.dataset)
    print(f"wrote {path}: {loaded.network} on {loaded.dataset}, input {shape} in "
          f"[{lo:g}, {hi:g}] (batch axis dynamic), output the logits")
    return 0
