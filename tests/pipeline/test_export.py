"""``python -m lirpa_diffai export CHECKPOINT --onnx PATH``: the ONNX graph computes the
network's logits (normalisation kept, abstract layers left out), read back with onnxruntime
where it is installed, else with onnx's reference evaluator; refused inputs get one line."""
import sys

import numpy as np
import pytest
import torch

from lirpa_diffai.__main__ import main
from lirpa_diffai.domain.abstract_layers import CorrelateAll, DecorrelateMin
from lirpa_diffai.models import get

onnx = pytest.importorskip("onnx", reason="export needs the onnx package (extra: onnx)")

CONFIG = "network: conv_small\ndataset: mnist\neps: 0.1\ngoal: Box\nepochs: 1\n"


def run_onnx(path, x: np.ndarray) -> np.ndarray:
    """The ONNX file's output on ``x``: onnxruntime if installed, else onnx.reference."""
    try:
        import onnxruntime
    except ImportError:
        from onnx.reference import ReferenceEvaluator
        return ReferenceEvaluator(str(path)).run(None, {"input": x})[0]
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def refused(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    return err


def test_export_computes_the_logits_without_the_abstract_layers(tmp_path, capsys):
    torch.manual_seed(0)
    net = get("conv_small", "mnist", insert={"after:conv1_relu": DecorrelateMin(2),
                                              "before:logits": CorrelateAll(only_train=False)})
    (tmp_path / "run").mkdir()
    torch.save({"state_dict": net.state_dict(), "config_text": CONFIG, "epoch": 1},
               tmp_path / "run" / "checkpoint.pt")
    # the checkpoint's configuration names plain conv_small: load the abstract variant's
    # weights there and export the variant itself through the library as well
    from lirpa_diffai.pipeline.onnx_export import export_onnx
    export_onnx(net, (1, 28, 28), tmp_path / "abstract.onnx")
    assert main(["export", str(tmp_path / "run"), "--onnx", str(tmp_path / "net.onnx")]) == 0
    assert "wrote" in capsys.readouterr().out
    x = torch.rand(7, 1, 28, 28)
    with torch.no_grad():
        expected = net.eval()(x).numpy()
    for name in ("abstract.onnx", "net.onnx"):
        model = onnx.load(str(tmp_path / name))
        ops = [node.op_type for node in model.graph.node]
        assert ops[:2] == ["Sub", "Div"]                                  # normalisation kept
        assert all(node.domain in ("", "ai.onnx") for node in model.graph.node)  # no custom::
        np.testing.assert_allclose(run_onnx(tmp_path / name, x.numpy()), expected,
                                   rtol=1e-4, atol=1e-5)
    assert not list(tmp_path.glob(".*.partial"))


def test_export_refuses_bad_input(tmp_path, capsys, monkeypatch):
    assert "not found" in refused(["export", str(tmp_path / "none.pt"), "--onnx",
                                   str(tmp_path / "a.onnx")], capsys)
    torch.save({"state_dict": get("conv_small", "mnist").state_dict(), "config_text": CONFIG,
                "epoch": 1}, tmp_path / "c.pt")
    assert "does not exist" in refused(["export", str(tmp_path / "c.pt"), "--onnx",
                                        str(tmp_path / "no" / "a.onnx")], capsys)
    from lirpa_diffai.grafting.checkpoint import grafted_checkpoint
    from lirpa_diffai.grafting.rewrite import graft, relu_sites
    base = get("conv_small", "mnist")
    site = relu_sites(base)[-1]
    grafted = graft(base, {site: torch.ones(100)})
    torch.save(grafted_checkpoint(grafted, {"kind": "zoo", "network": "conv_small",
                                            "dataset": "mnist"}, 0.1, {}), tmp_path / "g.pt")
    err = refused(["export", str(tmp_path / "g.pt"), "--onnx", str(tmp_path / "g.onnx")], capsys)
    assert "grafted ReLUs" in err and site in err and not (tmp_path / "g.onnx").exists()
    monkeypatch.setitem(sys.modules, "onnx", None)
    assert "pip install 'lirpa-diffai[onnx]'" in refused(
        ["export", str(tmp_path / "c.pt"), "--onnx", str(tmp_path / "a.onnx")], capsys)
