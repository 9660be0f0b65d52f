"""What a new user meets (issue 23): certify keeps finished rows when a later stage fails and
takes any network a user has; eps as a fraction; the names other tools use; the resume
command; BaB's progress bar; bench_bab's help; verify's threads, seed and per-sample times;
an install without pip's resolver error."""
import argparse
import json
import re
import sys

import pytest
import torch
from torch import nn

from lirpa_diffai.__main__ import main

from tests.support import REPO, SHARED, needs_mnist

needs_models = pytest.mark.skipif(not (SHARED / "models" / "mnist_conv_small_nat.pth").is_file(),
                                  reason="needs ../shared/models")

TINY = ("network: conv_small\ndataset: mnist\neps: 0.1\ngoal: Mix(Point, Box, 0.5)\n"
        "epochs: 1\nbatch_size: 20\ntrain_subset: 40\ntest_subset: 10\nseed: 1\n")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """A kept two-step smoke run of ConvSmall."""
    tmp = tmp_path_factory.mktemp("ux")
    (tmp / "tiny.yaml").write_text(TINY)
    assert main(["train", str(tmp / "tiny.yaml"), "--out", str(tmp / "run"), "--no-progress",
                 "--max-steps", "2", "--keep-smoke", "--threads", "1"]) == 0
    return tmp / "run"


def cli(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([*map(str, argv), "--threads", "1"])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


# ------------------------------------------------------------- certify keeps finished rows

@needs_mnist
def test_certify_bab_with_regions_reports_the_incomplete_methods(smoke_run, tmp_path, capsys):
    """Was: ValueError unknown bound method 'BaB' after every row was computed."""
    out_json = tmp_path / "r.json"
    code, out, err = cli(capsys, "certify", smoke_run, "--methods", "IBP,BaB", "--limit", "3",
                         "--timeout", "1", "--regions", "--json", out_json)
    assert code == 0, err
    report = json.loads(out_json.read_text())
    assert [m["method"] for m in report["methods"]] == ["IBP", "BaB"]
    assert set(report["regions"]["unstable"]) == {"IBP"}
    assert "unstable ReLUs" in out


@needs_mnist
def test_a_failing_later_stage_keeps_the_rows(smoke_run, tmp_path, capsys, monkeypatch):
    from lirpa_diffai.evaluation import regions
    from lirpa_diffai.mmr import RegionError

    def broken(*args, **kwargs):
        raise RegionError("no region statistics for this network")
    monkeypatch.setattr(regions, "region_statistics", broken)
    out_json = tmp_path / "r.json"
    code, out, err = cli(capsys, "certify", smoke_run, "--methods", "IBP,hzono", "--limit", "4",
                         "--regions", "--json", out_json)
    assert code == 2 and err.startswith("error: --regions failed: RegionError: no region")
    assert "| certified, IBP |" in out and "| certified, hzono |" in out
    assert [m["method"] for m in json.loads(out_json.read_text())["methods"]] == ["IBP", "hzono"]


@needs_mnist
def test_each_row_is_written_as_it_finishes(smoke_run, tmp_path, capsys, monkeypatch):
    """Ctrl-C during the second method: the first one's row is in the JSON already."""
    import lirpa_diffai.pipeline.certify_run as certify_run
    real = certify_run.proof_and_width

    def interrupted_at_hzono(bm, x, pred, eps, method, *args):
        if method == "hzono":
            raise KeyboardInterrupt
        return real(bm, x, pred, eps, method, *args)
    monkeypatch.setattr(certify_run, "proof_and_width", interrupted_at_hzono)
    out_json = tmp_path / "r.json"
    code, out, err = cli(capsys, "certify", smoke_run, "--methods", "IBP,hzono", "--limit", "4",
                         "--json", out_json)
    assert code == 130 and f"the finished rows are in {out_json}" in err
    assert re.search(r"IBP: certified [\d.]+% in [\d.]+ s", out)
    assert [m["method"] for m in json.loads(out_json.read_text())["methods"]] == ["IBP"]


# ---------------------------------------------------------------- any network a user has

@needs_mnist
@needs_models
@pytest.mark.parametrize("source", ["mnist_conv_small_nat",
                                    str(SHARED / "models" / "mnist_conv_small_nat.pth")])
def test_certify_a_pretrained_network_by_name_or_file(source, tmp_path, capsys):
    out_json = tmp_path / "p.json"
    code, out, err = cli(capsys, "certify", source, "--methods", "IBP", "--limit", "5",
                         "--eps", "2/255", "--json", out_json)
    assert code == 0, err
    report = json.loads(out_json.read_text())
    assert report["network"] == "mnist_conv_small_nat" and report["dataset"] == "mnist"
    assert report["clean"] >= 0.8


@needs_mnist
def test_certify_a_state_dict_of_a_zoo_network_or_an_import_path(tmp_path, capsys,
                                                                 monkeypatch):
    from lirpa_diffai import models
    path = tmp_path / "weights.pth"
    torch.save(models.get("conv_small", "mnist").state_dict(), path)
    code, out, err = cli(capsys, "certify", path, "--network", "conv_small", "--eps", "0.01",
                         "--methods", "IBP", "--limit", "3")
    assert code == 0, err and "conv_small (weights.pth)" in out

    pkg = tmp_path / "uxnets"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "from torch import nn\n\n\nclass Mlp(nn.Sequential):\n"
        "    def __init__(self, hidden=8):\n"
        "        super().__init__(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(),\n"
        "                         nn.Linear(hidden, 10))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "uxnets", raising=False)
    import importlib
    net = importlib.import_module("uxnets").Mlp(hidden=12)
    torch.save({"state_dict": net.state_dict()}, path)
    code, out, err = cli(capsys, "certify", path, "--network", "uxnets:Mlp", "--network-args",
                         "{hidden: 12}", "--dataset", "mnist", "--eps", "0.01", "--methods",
                         "IBP,hzono", "--limit", "3")
    assert code == 0, err
    code, out, err = cli(capsys, "certify", path, "--network", "uxnets:Mlp", "--dataset",
                         "mnist", "--eps", "0.01")
    assert code == 2 and "'0.weight'" not in err and "(12, 784)" in err  # hidden=8 misfits


@needs_models
@pytest.mark.parametrize("argv, message", [
    (["mnist_conv_small_nat"], "give --eps: mnist_conv_small_nat is not a training run"),
    (["conv_small", "--eps", "0.1"], "conv_small is a zoo network, not a pretrained network"),
    (["no_such_net"], "no_such_net not found"),
    (["{tmp}/net.onnx", "--eps", "0.1"], "ONNX files are not supported"),
    (["{tmp}/w.pth", "--eps", "0.1"], "give --network"),
    (["{tmp}/w.pth", "--network", "pkg.mod:Net", "--eps", "0.1"], "give --dataset"),
])
def test_certify_refuses_what_it_cannot_load_by_name(argv, message, tmp_path, capsys):
    (tmp_path / "net.onnx").write_bytes(b"onnx")
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "w.pth")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code, out, err = cli(capsys, "certify", *argv, "--methods", "IBP")
    assert code == 2 and message in err, err


@needs_mnist
@needs_models
def test_plot_layers_and_graft_take_the_same_sources(smoke_run, tmp_path, capsys):
    code, out, err = cli(capsys, "plot", "layers", "--network", str(SHARED / "models" /
                         "mnist_conv_small_nat.pth"), "--methods", "IBP", "--limit", "2",
                         "--eps", "1/255", "--json", tmp_path / "w.json")
    assert code == 0, err
    assert json.loads((tmp_path / "w.json").read_text())["network"] == \
        f"mnist_conv_small_nat ({SHARED / 'models' / 'mnist_conv_small_nat.pth'})"


# ------------------------------------------------------------------------ small things

def test_eps_takes_fractions_parsed_not_evaluated():
    from lirpa_diffai.cli.common import number
    assert number("8/255") == 8 / 255 and number("0.1") == 0.1 and number("1e-2") == 0.01
    for text in ("8/0", "__import__('os')", "1/2/3", "nan", "8 / x"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected a"):
            number(text)


@pytest.mark.parametrize("command", [["certify", "run"], ["graft", "run", "--ratio", "0.1",
                                                           "--out", "o"],
                                     ["plot", "layers"]])
def test_every_eps_option_takes_a_fraction(command):
    from lirpa_diffai.__main__ import build_parser
    assert build_parser().parse_args([*command, "--eps", "8/255"]).eps == 8 / 255


def test_deepz_is_answered_with_its_names_here():
    from lirpa_diffai.pipeline.certify_run import parse_methods
    with pytest.raises(ValueError, match="DeepZ is 'ZNIPS' here .* or 'HNIPS'"):
        parse_methods("IBP,deepz")


def test_an_unquoted_yaml_mapping_in_a_value_hints_to_quote_it():
    from lirpa_diffai.training.errors import ConfigError
    from lirpa_diffai.training.config import parse_config
    text = "network: conv_small\ndataset: mnist\neps: 0.1\nepochs: 1\ngoal: Mix(Point, w: Box)\n"
    with pytest.raises(ConfigError, match="line 5.*|quote a value") as info:
        parse_config(text, "c.yaml")
    assert "quote a value that holds one" in str(info.value) and "line 5" in str(info.value)
    from lirpa_diffai.goals import SourceError
    for goal in ("Mix(Point, Box, lam: 0.5)", "Sub(0.5, Box): 1"):
        with pytest.raises(SourceError, match="YAML read this goal as a mapping .* quote the "
                                              "goal") as info:
            parse_config(text.replace("Mix(Point, w: Box)", "Box"), "c.yaml",
                         overrides=[f"goal={goal}"])
        assert "line 1, column 1 of --set goal=" in str(info.value)


def test_the_resume_command_repeats_threads_and_epochs(tmp_path):
    from lirpa_diffai.cli.train import repeated_options
    from lirpa_diffai.training.loop import interrupted_message
    (tmp_path / "checkpoint.pt").write_bytes(b"x")
    options = repeated_options(argparse.Namespace(epochs=9, threads=1))
    text = interrupted_message(2, tmp_path, "c.yaml", ["lr=0.1"], None, options)
    assert text.endswith(f"train c.yaml --out {tmp_path} --resume --set lr=0.1 --epochs 9 "
                         "--threads 1")


def test_bab_progress_bar_counts_what_its_postfix_counts(monkeypatch):
    import tqdm
    from lirpa_diffai.verify.campaign import verify_images
    seen = []

    class Recorder(tqdm.tqdm):
        def set_postfix(self, **counts):
            seen.append((self.n, sum(counts.values())))
            super().set_postfix(**counts)
    monkeypatch.setattr(tqdm, "tqdm", Recorder)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    x = torch.rand(5, 2)
    y = model(x).argmax(1)
    y[0] = (y[0] + 1) % 3                                      # one misclassified sample
    verify_images(model, x, y, 0.01, timeout=2.0, num_classes=3)
    assert seen == [(i, i) for i in range(1, 6)]


def test_verify_decides_each_sample_on_its_own_with_threads_and_seed(monkeypatch):
    from lirpa_diffai.verify import api
    batches = []
    real = api.decide_batch

    def recorded(bm, model, x_L, *args):
        batches.append(len(x_L))
        return real(bm, model, x_L, *args)
    monkeypatch.setattr(api, "decide_batch", recorded)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
    x = torch.rand(3, 4)
    y = model(x).argmax(1)
    threads, state = torch.get_num_threads(), torch.get_rng_state()
    runs = [api.verify(model, x, y, 0.05, timeout=5.0, num_classes=3, threads=1, seed=7)
            for _ in range(2)]
    assert batches == [1] * 6
    assert [r.status for r in runs[0]] == [r.status for r in runs[1]]
    assert all(r.seconds > 0 for r in runs[0])
    assert torch.get_num_threads() == threads and torch.equal(torch.get_rng_state(), state)
    from lirpa_diffai.verify import bounded_for_verify  # the reusable module, exported
    assert bounded_for_verify(model, x) is not None


def test_bench_bab_help_documents_every_option(capsys):
    from benchmarks import bench_bab
    with pytest.raises(SystemExit):
        bench_bab.main(["--help"])
    text = capsys.readouterr().out
    assert "Every image counts in the accuracies" in text            # the whole description
    options = re.findall(r"^  (--[a-z-]+)(?: [A-Z_]+)?(?:\s{2,}(\S.*))?$", text, re.M)
    assert len(options) >= 13
    lines = text.splitlines()
    for option, inline in options:
        if not inline:   # the help text starts on the next line
            nxt = lines[next(i for i, line in enumerate(lines) if line.startswith(f"  {option}")) + 1]
            assert nxt.startswith(" " * 10) and nxt.strip(), option


def test_make_install_puts_auto_lirpa_after_every_resolving_pip_install():
    """pip prints its resolver's red ERROR about auto-lirpa's torch pin when an install that
    resolves dependencies runs after auto_LiRPA is in the venv; --no-deps installs skip the
    check, so auto_LiRPA goes in last."""
    recipe = (REPO / "Makefile").read_text().split("$(STAMP):", 1)[1].split("\n\n", 1)[0]
    installs = [line.strip() for line in recipe.splitlines() if "pip install" in line]
    assert installs[-1].endswith("pip install --no-deps auto_LiRPA==0.3")
    assert not any("auto_LiRPA" in line for line in installs[:-1])
