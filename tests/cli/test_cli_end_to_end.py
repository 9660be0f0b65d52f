"""The whole pipeline from the command line, in a fresh output directory, as a new user tries
it: a smoke training run kept with --keep-smoke, then certify, plot, export and graft on it,
each step's outputs checked."""
import importlib.util
import json

import torch

from lirpa_diffai.__main__ import main

from tests.support import needs_mnist

pytestmark = needs_mnist

CONFIG = """network: conv_small
dataset: mnist
eps: 0.1
goal: Mix(Point, Sub(Lin(0, 1, 1, 0), Box), 0.5)
epochs: 3
batch_size: 20
train_subset: 60
test_subset: 10
seed: 3
"""


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([*map(str, argv), "--threads", "1"])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_smoke_train_certify_plot_export_graft(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(CONFIG)
    run_dir = tmp_path / "fresh" / "run"

    code, out, err = run(capsys, "train", config, "--out", run_dir, "--max-steps", "2",
                         "--keep-smoke", "--no-progress")
    assert code == 0, err
    assert "kept as a smoke run (not resumable)" in out
    ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert ckpt["smoke"] == {"steps": 2} and ckpt["epoch"] == 1
    [metrics] = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert metrics["smoke"] is True and "test_accuracy" in metrics

    code, out, err = run(capsys, "train", config, "--out", run_dir, "--resume", "--no-progress")
    assert code == 2 and "smoke run's checkpoint" in err and "not resumable" in err

    report_path = tmp_path / "certify.json"
    code, out, err = run(capsys, "certify", run_dir, "--methods", "IBP,hzono", "--limit", "10",
                         "--eps", "8/255", "--json", report_path)
    assert code == 0, err
    assert "a smoke run of 2 steps" in out and "| certified, hzono |" in out
    report = json.loads(report_path.read_text())
    assert report["n"] == 10 and abs(report["eps"] - 8 / 255) < 1e-12
    assert [m["method"] for m in report["methods"]] == ["IBP", "hzono"]

    widths = tmp_path / "widths.json"
    code, out, err = run(capsys, "plot", "layers", "--network", run_dir, "--methods", "IBP,hzono",
                         "--limit", "4", "--json", widths)
    assert code == 0, err
    assert set(json.loads(widths.read_text())["widths"]) == {"IBP", "hzono"}

    code, out, err = run(capsys, "plot", "training", run_dir / "metrics.jsonl",
                         "--out", tmp_path / "curves.png")
    if importlib.util.find_spec("matplotlib"):
        assert code == 0 and (tmp_path / "curves.png").stat().st_size > 0
    else:
        assert code == 2 and "needs matplotlib" in err

    code, out, err = run(capsys, "export", run_dir, "--onnx", tmp_path / "net.onnx")
    assert code == 0, err
    assert (tmp_path / "net.onnx").stat().st_size > 0 and "conv_small on mnist" in out

    graft_dir = tmp_path / "grafted"
    code, out, err = run(capsys, "graft", run_dir, "--ratio", "0.1", "--images", "20",
                         "--batch-size", "20", "--out", graft_dir, "--eps", "2/255")
    assert code == 0, err
    assert {p.name for p in graft_dir.iterdir()} >= {"masks.pt", "grafted.pt", "selection.json"}
    assert json.loads((graft_dir / "selection.json").read_text())["grafted"] > 0
