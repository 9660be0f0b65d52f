"""``python -m lirpa_diffai train`` / ``certify`` from the command line: a real run's table and
JSON, and every refused input answered with a clear message (no traceback)."""
import json

import pytest
import torch

from lirpa_diffai.__main__ import main
from lirpa_diffai.pipeline.certify_run import parse_methods

from tests.support import needs_mnist


TINY = ("network: conv_small\ndataset: mnist\neps: 0.1\n"
        "goal: Mix(Point, Sub(Lin(0,1,1,0), Box), 0.5)\nepochs: 1\nbatch_size: 50\n"
        "train_subset: 200\ntest_subset: 50\nseed: 1\n")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A one-epoch run of the tiny configuration through the command line."""
    tmp = tmp_path_factory.mktemp("cli")
    (tmp / "tiny.yaml").write_text(TINY)
    assert main(["train", str(tmp / "tiny.yaml"), "--out", str(tmp / "run"),
                 "--no-progress"]) == 0
    return tmp / "run"


def refused(argv, capsys) -> str:
    """Run the command line, expect exit status 2 and return its error message."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    return err


# ------------------------------------------------------------------------------- a run

@needs_mnist
def test_certify_prints_the_table_and_writes_json(run_dir, tmp_path, capsys):
    capsys.readouterr()
    out_json = tmp_path / "r.json"
    assert main(["certify", str(run_dir / "checkpoint.pt"), "--methods", "hzono,ibp,CROWN",
                 "--limit", "40", "--eps", "0.02", "--json", str(out_json),
                 "--batch-size", "16"]) == 0
    out = capsys.readouterr().out
    for label in ("standard accuracy", "MI-FGSM", "certified, hzono", "certified, IBP",
                  "certified, CROWN"):
        assert label in out
    report = json.loads(out_json.read_text())
    assert report["n"] == 40 and report["eps"] == 0.02 and report["network"] == "conv_small"
    assert [m["method"] for m in report["methods"]] == ["hzono", "IBP", "CROWN"]
    assert 0 <= report["attack"] <= report["clean"] <= 1
    assert all(0 <= m["certified"] <= report["attack"] for m in report["methods"])
    assert f"{report['clean']:.1%}" in out


@needs_mnist
def test_certify_runs_the_optimizing_methods(run_dir, tmp_path):
    """alpha-CROWN-hzono optimizes slopes by gradient descent: it needs autograd, which the
    other methods run without."""
    out_json = tmp_path / "alpha.json"
    assert main(["certify", str(run_dir), "--methods", "CROWN-hzono,alpha-CROWN-hzono",
                 "--limit", "8", "--eps", "0.02", "--json", str(out_json)]) == 0
    report = json.loads(out_json.read_text())
    rows = {m["method"]: m for m in report["methods"]}
    assert set(rows) == {"CROWN-hzono", "alpha-CROWN-hzono"}
    assert all("error" not in m and 0 <= m["certified"] <= report["attack"] for m in rows.values())
    assert parse_methods("alpha-crown,ALPHA-CROWN-HZONO") == ["alpha-CROWN", "alpha-CROWN-hzono"]


@needs_mnist
def test_certify_keeps_every_row_when_a_method_fails(run_dir, tmp_path, capsys, monkeypatch):
    import lirpa_diffai.pipeline.certify_run as evaluation
    real = evaluation.proof_and_width

    def failing_for_crown(bm, x, pred, eps, method, *args):
        if method == "CROWN":
            raise RuntimeError("no bounds for this one\nsecond line")
        return real(bm, x, pred, eps, method, *args)
    monkeypatch.setattr(evaluation, "proof_and_width", failing_for_crown)
    out_json = tmp_path / "partial.json"
    err = refused(["certify", str(run_dir), "--methods", "IBP,CROWN,hzono", "--limit", "8",
                   "--json", str(out_json)], capsys)
    assert "CROWN failed" in err and str(out_json) in err
    rows = json.loads(out_json.read_text())["methods"]
    assert [m["method"] for m in rows] == ["IBP", "CROWN", "hzono"]
    assert rows[1] == {"method": "CROWN", "certified": None, "seconds": None, "proved": None,
                       "correct_given_proved": None, "mean_width": None,
                       "error": "RuntimeError: no bounds for this one"}
    assert all(0 <= rows[i]["certified"] <= 1 and "error" not in rows[i] for i in (0, 2))


@needs_mnist
def test_certify_hzono_rows_tighten_hzono_but_never_below_ibp(run_dir, tmp_path, capsys):
    """With the boxy ReLU, hzono's bounds lie inside IBP's: more rows certify at least as much."""
    certified = {}
    for rows in ("0", "all"):
        out_json = tmp_path / f"{rows}.json"
        assert main(["certify", str(run_dir), "--methods", "IBP,hzono,CROWN-hzono", "--limit", "24",
                     "--eps", "0.02", "--hzono-rows", rows, "--json", str(out_json)]) == 0
        methods = json.loads(out_json.read_text())["methods"]
        certified[rows] = {m["method"]: m["certified"] for m in methods}
    assert certified["0"]["hzono"] == certified["0"]["IBP"]      # no rows: IBP's box
    assert certified["all"]["hzono"] >= certified["all"]["IBP"]
    assert certified["all"]["CROWN-hzono"] >= certified["0"]["CROWN-hzono"] - 1 / 24
    assert "correlate_input" in refused(["certify", str(run_dir), "--hzono-rows", "many"], capsys)


# --------------------------------------------------------------------- refused: training

def write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("eps, expected", [("0", "eps"), ("-0.1", "eps"), ("1.5", "eps")])
def test_train_refuses_an_eps_outside_the_data_range(tmp_path, capsys, eps, expected):
    path = write(tmp_path, TINY.replace("eps: 0.1", f"eps: {eps}"))
    err = refused(["train", path, "--out", str(tmp_path / "o")], capsys)
    assert "(0.0, 1.0]" in err and "line 3" in err
    assert not (tmp_path / "o").exists()


def test_train_refuses_a_network_not_in_the_zoo(tmp_path, capsys):
    path = write(tmp_path, TINY.replace("conv_small", "conv_smal"))
    err = refused(["train", path, "--out", str(tmp_path / "o")], capsys)
    assert "unknown network 'conv_smal'" in err and "did you mean 'conv_small'" in err


def test_train_refuses_a_missing_config_file(tmp_path, capsys):
    err = refused(["train", str(tmp_path / "nope.yaml")], capsys)
    assert "nope.yaml" in err and "not found" in err


def test_train_refuses_an_unknown_key(tmp_path, capsys):
    err = refused(["train", write(tmp_path, TINY + "epoch: 3\n")], capsys)
    assert "unknown key 'epoch'" in err and "did you mean 'epochs'" in err


# --------------------------------------------------------------------- refused: certify

@needs_mnist
@pytest.mark.parametrize("network, expected", [
    ("conv_med", ["'fc1.weight': conv_med has (100, 1568), the checkpoint (100, 800)"]),
    ("ffnn", ["unexpected 'conv1.weight' (16, 1, 4, 4)", "missing 'fc2.weight'"]),
])
def test_certify_refuses_a_checkpoint_of_another_architecture(run_dir, tmp_path, capsys,
                                                              network, expected):
    """ConvSmall's weights under a configuration naming another network."""
    ckpt = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    ckpt["config_text"] = ckpt["config_text"].replace("conv_small", network)
    torch.save(ckpt, tmp_path / "other.pt")
    err = refused(["certify", str(tmp_path / "other.pt")], capsys)
    assert f"network {network!r}" in err and "another architecture" in err
    for text in expected:                                   # names the mismatching keys
        assert text in err


@needs_mnist
@pytest.mark.parametrize("eps", ["0", "-1", "1.5"])
def test_certify_refuses_an_eps_outside_the_data_range(run_dir, capsys, eps):
    err = refused(["certify", str(run_dir), "--eps", eps], capsys)
    assert "eps must be in (0, 1]" in err


@needs_mnist
def test_certify_refuses_an_unknown_method(run_dir, capsys):
    err = refused(["certify", str(run_dir), "--methods", "hzono,CROWN-IPB"], capsys)
    assert "unknown bound method 'CROWN-IPB'" in err and "did you mean 'CROWN-IBP'" in err


def test_certify_refuses_a_missing_or_foreign_checkpoint(tmp_path, capsys):
    err = refused(["certify", str(tmp_path / "none.pt")], capsys)
    assert "none.pt" in err and "not found" in err
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    err = refused(["certify", str(tmp_path / "foreign.pt")], capsys)
    assert "not a lirpa-diffai checkpoint" in err and "lacks" in err
    (tmp_path / "text.pt").write_text("not a checkpoint")
    err = refused(["certify", str(tmp_path / "text.pt")], capsys)
    assert "not a lirpa-diffai checkpoint" in err


@pytest.mark.parametrize("content, reason", [
    (b"", "is empty (0 bytes"),
    (bytes(range(256)) * 4, "is not a file written by torch.save"),
    (TINY.encode(), "is not a file written by torch.save"),
])
def test_certify_and_plot_refuse_a_file_that_is_no_checkpoint(tmp_path, capsys, content, reason):
    """Never torch's advice to load with weights_only=False: say what the file is not."""
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(content)
    for argv in (["certify", str(path)], ["certify", str(tmp_path)],
                 ["plot", "layers", "--checkpoint", str(path), "--json", str(tmp_path / "w.json")]):
        err = refused(argv, capsys)
        assert f"{path} is not a" in err and reason in err, argv
        assert "weights_only" not in err and "\n" == err[-1] and err.count("\n") == 1


def test_method_names_are_case_insensitive_and_canonical():
    assert parse_methods("HZONO, ibp,crown_ibp,Crown") == ["hzono", "IBP", "CROWN-IBP",
                                                         "CROWN"]
    assert parse_methods("hnips,crown-HZONO") == ["HNIPS", "CROWN-hzono"]
