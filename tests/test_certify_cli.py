"""``python -m lirpa_diffai train`` / ``certify`` from the command line: a real run's table and
JSON, and every refused input answered with a clear message (no traceback)."""
import json

import pytest
import torch

from lirpa_diffai.__main__ import main
from lirpa_diffai.evaluation import parse_methods

from conftest import SHARED

needs_mnist = pytest.mark.skipif(not (SHARED / "datasets" / "mnist.npz").is_file(),
                                 reason="needs ../shared/datasets/mnist.npz")

TINY = ("network: conv_small\ndataset: mnist\neps: 0.1\n"
        "goal: Mix(Point, Sub(Lin(0,1,1,0), Box), 0.5)\nepochs: 1\nbatch_size: 50\n"
        "train_subset: 200\ntest_subset: 50\nseed: 1\n")


pytestmark = pytest.mark.usefixtures("one_thread")


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
def test_certify_hzono_rows_tighten_hzono_but_never_below_ibp(run_dir, tmp_path, capsys):
    """With the boxy ReLU, hzono's bounds lie inside IBP's: more rows certify at least as much."""
    certified = {}
    for rows in ("0", "all"):
        out_json = tmp_path / f"{rows}.json"
        assert main(["certify", str(run_dir), "--methods", "IBP,HBox,CROWN-hzono", "--limit", "24",
                     "--eps", "0.02", "--hzono-rows", rows, "--json", str(out_json)]) == 0
        methods = json.loads(out_json.read_text())["methods"]
        certified[rows] = {m["method"]: m["certified"] for m in methods}
    assert certified["0"]["HBox"] == certified["0"]["IBP"]       # no rows: IBP's box
    assert certified["all"]["HBox"] >= certified["all"]["IBP"]
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


def test_method_names_are_case_insensitive_and_canonical():
    assert parse_methods("HZONO, ibp,crown_ibp,Crown") == ["hzono", "IBP", "CROWN-IBP",
                                                         "CROWN"]
    assert parse_methods("hnips,crown-HZONO") == ["HNIPS", "CROWN-hzono"]
