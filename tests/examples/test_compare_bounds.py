"""examples/compare_bounds.py and what it shares with benchmarks/bounds.py: the examples of its
own --help, training checkpoints, progress per method, size limits, failed methods."""
import json
import shlex

import pytest
import torch

from lirpa_diffai import BoundedModule, data, models
from lirpa_diffai.evaluation import budget, margins as certify

from benchmarks import bounds
from tests.support import EXAMPLES, load_script

compare_bounds = load_script(EXAMPLES / "compare_bounds.py")  # a script, run as users run it


CONFIG = "network: conv_small\ndataset: mnist\neps: 0.1\ngoal: Box\nepochs: 1\n"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory holding a training checkpoint of a seeded ConvSmall."""
    out = tmp_path_factory.mktemp("run")
    torch.manual_seed(3)
    net = models.get("conv_small", "mnist")
    torch.save({"state_dict": net.state_dict(), "config_text": CONFIG, "epoch": 1},
               out / "checkpoint.pt")
    return out


def help_examples() -> list[list[str]]:
    """The command lines of the script's --help, as argument lists."""
    lines = [line.strip() for line in compare_bounds.__doc__.splitlines()]
    commands = [line.split("#")[0] for line in lines if line.startswith("python examples/compare_bounds.py")]
    return [shlex.split(c)[2:] for c in commands]


def test_every_example_of_the_help_runs(run_dir, capsys, tmp_path):
    examples = help_examples()
    assert len(examples) == 4
    for argv in examples:
        argv = [str(run_dir) if a == "runs/mnist_small" else a for a in argv]
        out_json = tmp_path / "rows.json"
        assert compare_bounds.main(argv + ["--batch", "2", "--json", str(out_json)]) == 0, argv
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err and "| method |" in captured.out
        rows = json.loads(out_json.read_text())
        for row in rows:   # each method ran or was skipped for its size, none failed
            assert row["error"] is None or row["error"].startswith("skipped: over the size limit"), row


def test_a_training_checkpoint_gives_network_dataset_and_weights(run_dir, capsys):
    assert compare_bounds.main(["--checkpoint", str(run_dir / "checkpoint.pt"), "--batch", "3",
                                "--methods", "IBP", "--eps", "0.1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("conv_small (checkpoint.pt) on 3 mnist test images")
    ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    net = models.get("conv_small", "mnist")
    net.load_state_dict(ckpt["state_dict"])
    x, y = (t[:3] for t in data.load_dataset("mnist", "test").tensors)
    lower, upper = certify.bound_margins(BoundedModule(net.eval(), x), x, y, 0.1, "IBP")
    assert f"| IBP | {(upper - lower).mean().item():.4g} |" in out


def test_progress_per_method_and_a_skipped_method(capsys, monkeypatch):
    monkeypatch.setitem(budget.SIZE_LIMITS, "crown", 3604 * 2 - 1)  # ConvSmall, 2 images: over
    assert compare_bounds.main(["--batch", "2", "--methods", "IBP,CROWN,CROWN-IBP"]) == 0
    err = [line.strip() for line in capsys.readouterr().err.splitlines()]
    assert err[0] == "IBP ..." and err[1].startswith("IBP: mean bound width")
    assert err[2] == ("CROWN: skipped: over the size limit (3,604 pre-activation neurons x 2 images"
                      " = 7,208 > 7,207 for CROWN)")
    assert err[3] == "CROWN-IBP ..."
    assert compare_bounds.main(["--batch", "2", "--methods", "CROWN", "--no-size-limit"]) == 0
    assert "CROWN: mean bound width" in capsys.readouterr().err


def test_alpha_crown_hzono_runs_and_tightens_crown_hzono(tmp_path, capsys):
    out_json = tmp_path / "alpha.json"
    assert compare_bounds.main(["--batch", "2", "--rows", "all", "--methods",
                                "CROWN-hzono,alpha-CROWN-hzono", "--json", str(out_json)]) == 0
    crown, alpha = json.loads(out_json.read_text())
    assert crown["error"] is None and alpha["error"] is None
    assert alpha["mean_width"] <= crown["mean_width"] * (1 + 1e-4)


@pytest.mark.parametrize("argv, message", [
    (["--network", "resnet_tiny", "--dataset", "mnist"], "resnet_tiny is defined for cifar10 only"),
    (["--network", "mnist_conv_small_nat", "--dataset", "cifar10"], "is a mnist network, not cifar10"),
    (["--eps", "0"], "eps must be in (0, 1]"),
    (["--methods", "CROWN,crwn"], "unknown bound method 'crwn'"),
    (["--json", "/nonexistent/dir/rows.json"], "directory /nonexistent/dir does not exist"),
    (["--checkpoint", "/nonexistent.pt"], "checkpoint /nonexistent.pt not found"),
])
def test_bad_input_is_a_usage_error(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        compare_bounds.main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err and "Traceback" not in err


# ------------------------------------------------------------- shared: certify, budget

class Failing:
    """A BoundedModule stand-in whose CROWN fails."""

    def __init__(self, bm):
        self.bm = bm

    def compute_bounds(self, method, **kwargs):
        if method == "CROWN":
            raise RuntimeError("CROWN refused\nmore detail")
        return self.bm.compute_bounds(method=method, **kwargs)


def test_compare_methods_keeps_the_rows_around_a_failed_or_skipped_method():
    torch.manual_seed(0)
    net = models.get("ffnn", "mnist").eval()
    x, y = torch.rand(2, 1, 28, 28), torch.tensor([1, 2])
    seen = []
    rows = certify.compare_methods(Failing(BoundedModule(net, x)), x, y, 0.01,
                                   ["IBP", "CROWN", "alpha-CROWN", "CROWN-IBP"],
                                   skip=lambda m: "skipped: too big" if m == "alpha-CROWN" else None,
                                   progress=seen.append)
    assert [(r.method, r.error) for r in rows] == [
        ("IBP", None), ("CROWN", "RuntimeError: CROWN refused"), ("alpha-CROWN", "skipped: too big"),
        ("CROWN-IBP", None)]
    assert rows[3].mean_width <= rows[0].mean_width and rows[1].seconds is None
    assert seen[:3] == ["IBP ...", certify.format_row(rows[0]), "CROWN ..."]
    table = certify.format_table(rows)
    assert "| CROWN | RuntimeError: CROWN refused | | |" in table


@pytest.mark.parametrize("method, expected", [("alpha-CROWN", True), ("alpha-crown-hzono", True),
                                              ("CROWN-Optimized", True), ("CROWN", False),
                                              ("hzono", False), ("CROWN-hzono", False)])
def test_only_optimizing_methods_need_autograd(method, expected):
    assert certify.needs_autograd(method) is expected
    with certify.bound_grad_mode(method):
        assert torch.is_grad_enabled() is expected


def test_size_limit_reason():
    assert budget.size_limit_reason("CROWN", 1000, 200) is None                 # 200 000: fits
    assert "200,001 > 200,000 for CROWN" in budget.size_limit_reason("CROWN", 200_001, 1)
    assert budget.size_limit_reason("alpha-CROWN", 30_000, 2) is not None
    assert budget.size_limit_reason("CROWN-IBP", 10**9, 10) is None            # no limit
    assert budget.size_limit_reason("CROWN", 10**9, 10, limits=None) is None


@pytest.mark.parametrize("label, skipped", [
    ("conv_small:mnist", set()), ("conv_big:mnist", {"alpha-CROWN"}),
    ("resnet_tiny:cifar10", {"CROWN", "alpha-CROWN"})])
def test_the_benchmark_skips_by_the_shared_size_limit(label, skipped):
    spec = bounds.parse_network(label)
    x = torch.zeros((1,) + ((1, 28, 28) if spec.dataset == "mnist" else (3, 32, 32)))
    neurons = budget.pre_activation_neurons(BoundedModule(spec.build(), x))
    over = {m for m in ("CROWN", "alpha-CROWN", "CROWN-IBP", "CROWN-hzono")
            if budget.size_limit_reason(bounds.METHODS[m], neurons, spec.batch)}
    assert over == skipped
