"""``certify --methods ...,BaB --timeout T``: the complete verifier's counts, verified accuracy
and per-sample statuses in the JSON, a resumed run that keeps the decided samples, and the
refusals (non-positive timeout, a state file of another run); ``BaB:NAME`` picks the branching
heuristic."""
import json

import pytest

from lirpa_diffai.__main__ import main

from tests.support import needs_mnist

pytest.importorskip("highspy", reason="BaB's exact LP needs highspy")
pytestmark = needs_mnist

TINY = ("network: conv_small\ndataset: mnist\neps: 0.1\n"
        "goal: Point\nepochs: 1\nbatch_size: 50\n"
        "train_subset: 2000\ntest_subset: 50\nseed: 1\n")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bab")
    (tmp / "tiny.yaml").write_text(TINY)
    assert main(["train", str(tmp / "tiny.yaml"), "--out", str(tmp / "run"),
                 "--no-progress"]) == 0
    return str(tmp / "run" / "checkpoint.pt")


def certify(checkpoint, out, eps="0.05", timeout="3"):
    return main(["certify", checkpoint, "--methods", "CROWN,BaB", "--limit", "10", "--eps",
                 eps, "--timeout", timeout, "--json", str(out)])


def test_bab_row_counts_every_sample_and_proves_at_least_crown(checkpoint, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert certify(checkpoint, out) == 0
    printed = capsys.readouterr().out
    assert "certified, BaB" in printed and "timeout 3 s per sample" in printed
    report = json.loads(out.read_text())
    crown, bab = report["methods"]
    summary = bab["complete"]
    assert summary["verified"] + summary["falsified"] + summary["timed_out"] == 10
    assert [s["index"] for s in summary["samples"]] == list(range(10))
    assert {s["status"] for s in summary["samples"]} <= {"verified", "falsified", "timeout"}
    assert crown["certified"] <= bab["certified"] == summary["verified"] / 10
    assert bab["certified"] <= report["attack"] + 1e-6  # nothing verified that MI-FGSM breaks
    assert any(s["method"] not in ("CROWN", "misclassified") for s in summary["samples"])


def test_a_stopped_run_resumes_with_the_decided_samples_kept(checkpoint, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert certify(checkpoint, out) == 0
    state = tmp_path / "r.bab.jsonl"
    lines = state.read_text().splitlines()
    assert len(lines) == 11 and json.loads(lines[0])["state"]["eps"] == 0.05
    state.write_text("\n".join(lines[:6]) + "\n" + lines[6][:10])  # stopped mid-write
    assert certify(checkpoint, out) == 0
    summary = json.loads(out.read_text())["methods"][1]["complete"]
    assert summary["resumed"] == 5
    assert state.read_text().splitlines()[:6] == lines[:6]
    assert [s["index"] for s in summary["samples"]] == list(range(10))


def test_ctrl_c_keeps_the_decided_samples_and_says_how_to_resume(checkpoint, tmp_path, capsys,
                                                                  monkeypatch):
    from lirpa_diffai.verify import campaign

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(campaign, "verify", interrupted)
    out = tmp_path / "r.json"
    assert certify(checkpoint, out) == 130
    err = capsys.readouterr().err
    assert "r.bab.jsonl" in err and "run the same command again" in err
    kept = [json.loads(line) for line in (tmp_path / "r.bab.jsonl").read_text().splitlines()[1:]]
    assert [s["index"] for s in kept] == list(range(len(kept))) and len(kept) < 10
    monkeypatch.undo()
    assert certify(checkpoint, out) == 0
    summary = json.loads(out.read_text())["methods"][1]["complete"]
    assert summary["resumed"] == len(kept) and len(summary["samples"]) == 10


def test_refusals(checkpoint, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert certify(checkpoint, out, timeout="0") == 2
    assert "--timeout must be a positive number" in capsys.readouterr().err
    (tmp_path / "r.bab.jsonl").write_text(json.dumps(
        {"state": {"network": "conv_small", "eps": 0.3, "timeout": 3.0}}) + "\n")
    assert certify(checkpoint, out) == 2
    err = capsys.readouterr().err
    assert "holds another run" in err and "Traceback" not in err


def test_bab_takes_its_branching_heuristic_after_a_colon(checkpoint, tmp_path, capsys):
    """``BaB:babsr``: the row is named for the heuristic and counts every sample; an unknown
    heuristic is refused before anything runs, with the known ones."""
    out = tmp_path / "h.json"
    assert main(["certify", checkpoint, "--methods", "CROWN,BaB:BaBSR", "--limit", "4",
                 "--eps", "0.05", "--timeout", "3", "--json", str(out)]) == 0
    assert "certified, BaB:babsr" in capsys.readouterr().out
    bab = json.loads(out.read_text())["methods"][1]
    assert bab["method"] == "BaB:babsr"
    summary = bab["complete"]
    assert summary["verified"] + summary["falsified"] + summary["timed_out"] == 4
    assert main(["certify", checkpoint, "--methods", "CROWN,BaB:widest"]) != 0
    err = capsys.readouterr().err
    assert "unknown branching heuristic 'widest'" in err and "kfsb" in err
