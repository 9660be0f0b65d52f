"""``plot``: per-layer bounds (sound, hzono-boxy inside IBP), metrics files, the command line.

The data functions are tested always; drawing only where matplotlib is installed."""
from __future__ import annotations

import json
import math
import sys

import pytest
import torch

from tests.support import SHARED, attack_points, box_samples
from lirpa_diffai import BoundedModule
from lirpa_diffai.__main__ import main
from lirpa_diffai.cli import plot
from lirpa_diffai.evaluation.curves import MetricsFormatError, read_metrics, series
from lirpa_diffai.data import load_dataset
from lirpa_diffai.pipeline.model_source import load_network
from lirpa_diffai.evaluation.layer_widths import (Layer, LayerWidths, bound_layers,
                                                  describe_layers, mean_widths,
                                                  measure_layer_widths, unique_labels, width_sums)
from lirpa_diffai.models import get, load_pretrained

needs_models = pytest.mark.skipif(not (SHARED / "models" / "mnist_conv_small_nat.pth").is_file(),
                                  reason="shared pretrained models not found")
EPS = 0.02


@pytest.fixture(scope="module")
def conv_small():
    return load_pretrained("mnist_conv_small_nat")


@pytest.fixture(scope="module")
def mnist_images():
    return load_dataset("mnist", "test").tensors[0][:4]


def node_values(bm, x: torch.Tensor, names) -> dict[str, torch.Tensor]:
    """Concrete values of the named nodes for inputs ``x`` (n, B, ...): {name: (n, B, ...)}."""
    with torch.no_grad():
        bm(x.flatten(0, 1))
    return {name: bm[name].forward_value.reshape(x.shape[:2] + bm[name].forward_value.shape[1:])
            for name in names}


def assert_contains(bounds, values, tol=1e-5):
    for name, (lower, upper) in bounds.items():
        scale = tol * (1 + torch.maximum(lower.abs(), upper.abs()))
        outside = ((values[name] < lower - scale) | (values[name] > upper + scale)).sum().item()
        assert outside == 0, f"{outside} values of node {name} outside its bounds"


# ------------------------------------------------------------------ layer bounds (data)

def test_unique_labels_number_repeats_only():
    assert unique_labels(["conv1", "add", "conv2", "add", "add"]) == \
        ["conv1", "add 1", "conv2", "add 2", "add 3"]


@needs_models
def test_layers_of_conv_small_are_its_pre_activations_and_output(conv_small, mnist_images):
    bm = BoundedModule(conv_small, mnist_images[:1]).eval()
    layers = describe_layers(bm)
    assert [(layer.label, layer.size) for layer in layers] == \
        [("conv1", 16 * 13 * 13), ("conv2", 32 * 5 * 5), ("fc1", 100), ("logits", 10)]
    assert layers[-1].name == bm.final_node().name


@needs_models
def test_layers_of_a_resnet_in_topological_order():
    net = load_pretrained("resnet2b")
    bm = BoundedModule(net, torch.rand(1, 3, 32, 32)).eval()
    labels = [layer.label for layer in describe_layers(bm)]
    assert labels == ["conv1", "block1.branch1.0", "add 1", "block2.branch1.0", "add 2", "fc1", "logits"]


@needs_models
@pytest.mark.parametrize("method,options", [
    ("IBP", {}), ("hzono", {"correlate_input": 0}), ("hzono", {"correlate_input": "all"}),
    ("HNIPS", {"correlate_input": "all"}), ("CROWN", {}), ("CROWN-IBP", {}),
    ("alpha-CROWN-hzono", {"correlate_input": "all"}),   # optimizes: needs autograd on
    pytest.param("alpha-CROWN", {}, marks=pytest.mark.slow)])
def test_layer_bounds_contain_sampled_and_attacked_values(conv_small, mnist_images, method, options):
    few_steps = {"optimize_bound_args": {"iteration": 3}}  # alpha: sound after any step count
    bm = BoundedModule(conv_small, mnist_images[:1], bound_opts={"hzono": options, **few_steps}).eval()
    bounds = bound_layers(bm, mnist_images, EPS, method)
    assert set(bounds) == {layer.name for layer in describe_layers(bm)}
    lower, upper = (mnist_images - EPS).clamp(0, 1), (mnist_images + EPS).clamp(0, 1)
    points = torch.cat([box_samples(lower, upper, 64), attack_points(conv_small, lower, upper, steps=5)])
    assert_contains(bounds, node_values(bm, points, bounds))


@needs_models
def test_layer_bounds_sound_on_a_branching_network():
    net = load_pretrained("resnet2b")
    x = load_dataset("cifar10", "test").tensors[0][:2]
    bm = BoundedModule(net, x[:1], bound_opts={"hzono": {"correlate_input": "all"}}).eval()
    eps = 2 / 255
    points = box_samples((x - eps).clamp(0, 1), (x + eps).clamp(0, 1), 32)
    for method in ("IBP", "hzono", "CROWN"):
        bounds = bound_layers(bm, x, eps, method)
        assert len(bounds) == 7, method
        assert_contains(bounds, node_values(bm, points, bounds))


@needs_models
@pytest.mark.parametrize("rows", [0, "all"])
def test_hzono_boxy_layer_bounds_inside_ibp(conv_small, mnist_images, rows):
    options = {"relu": "boxy", "correlate_input": rows}
    bm = BoundedModule(conv_small, mnist_images[:1], bound_opts={"hzono": options}).eval()
    ibp = bound_layers(bm, mnist_images, EPS, "IBP")
    hzono = bound_layers(bm, mnist_images, EPS, "hzono")
    for name, (lower, upper) in ibp.items():
        assert (hzono[name][0] >= lower - 1e-5).all() and (hzono[name][1] <= upper + 1e-5).all(), name
    final = bm.final_node().name
    ibp_width = (ibp[final][1] - ibp[final][0]).mean()
    hzono_width = (hzono[final][1] - hzono[final][0]).mean()
    if rows == 0:  # a box input: boxy hzono is IBP
        assert torch.isclose(hzono_width, ibp_width, rtol=1e-5)
    else:          # correlated input rows: strictly tighter at the output
        assert hzono_width < 0.5 * ibp_width


@needs_models
def test_measure_layer_widths_orders_methods(conv_small, mnist_images):
    bm = BoundedModule(conv_small, mnist_images[:1], bound_opts={"hzono": {"correlate_input": "all"}}).eval()
    table = measure_layer_widths(bm, mnist_images, EPS, ["IBP", "hzono", "CROWN"], batch_size=3)
    assert table.images == 4 and [layer.label for layer in table.layers][-1] == "logits"
    ibp, hzono, crown = (table.widths[m] for m in ("IBP", "hzono", "CROWN"))
    assert ibp[0] == pytest.approx(hzono[0]) == pytest.approx(crown[0])  # first layer: exact box
    assert all(h <= i * (1 + 1e-5) for h, i in zip(hzono, ibp))
    assert crown[-1] < ibp[-1] and ibp == sorted(ibp)  # widths grow with depth on this network
    # the mean over two batches (3 + 1 images) equals one batch of all four
    single = measure_layer_widths(bm, mnist_images, EPS, ["IBP"], batch_size=4)
    assert single.widths["IBP"] == pytest.approx(ibp, rel=1e-5)


def test_width_sums_and_means_weight_batches_by_entries():
    batch1 = {"a": (torch.zeros(2, 3), torch.ones(2, 3)), "b": (torch.zeros(2), torch.full((2,), 4.0))}
    batch2 = {"a": (torch.zeros(1, 3), torch.full((1, 3), 4.0))}
    sums = [width_sums(batch1), width_sums(batch2)]
    assert sums[0]["a"] == (6.0, 6) and sums[1]["a"] == (12.0, 3)
    layers = [Layer("a", "a", 3), Layer("b", "b", 1), Layer("c", "c", 1)]
    means = mean_widths(sums, layers)
    assert means[:2] == [pytest.approx(18 / 9), 4.0] and math.isnan(means[2])


def test_width_sums_refuse_crossed_bounds():
    with pytest.raises(ValueError, match="node x: lower bound above upper"):
        width_sums({"x": (torch.ones(3), torch.zeros(3))})


def test_layer_widths_json_round_trip_with_missing_values():
    table = LayerWidths([Layer("/3", "conv1", 8), Layer("/9", "logits", 10)],
                        {"IBP": [0.5, 3.0], "CROWN": [math.nan, 1.0]}, eps=0.1, images=5,
                        network="net", dataset="mnist", options={"relu": "boxy"})
    text = json.dumps(table.as_dict(), allow_nan=False)
    back = LayerWidths.from_dict(json.loads(text))
    assert back.layers == table.layers and back.widths["IBP"] == [0.5, 3.0]
    assert math.isnan(back.widths["CROWN"][0]) and back.eps == 0.1 and back.options == {"relu": "boxy"}


# ------------------------------------------------------------------ metrics files (data)

def write_lines(tmp_path, lines, name="metrics.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_read_metrics_tolerates_missing_keys_nulls_and_extra_keys(tmp_path):
    path = write_lines(tmp_path, [
        '{"epoch": 2, "train_loss": 0.5, "train_accuracy": 0.9, "eps": 0.1, "lr": 0.001, "seconds": 10}',
        '',
        '{"epoch": 1, "train_loss": 1.5, "train_accuracy": 0.6, "test_accuracy": null, "eps": 0.05,'
        ' "schedules": {"Mix.lam": 0.25}, "goal": "Box"}',
        '{"epoch": 3, "train_loss": 0.4, "test_accuracy": 0.95, "test_certified": 0.7, "eps": 0.1}',
    ])
    records = read_metrics(path)
    assert [r["epoch"] for r in records] == [1, 2, 3]
    curves = series(records)
    assert curves["train_loss"] == ([1, 2, 3], [1.5, 0.5, 0.4])
    assert curves["test_accuracy"] == ([3], [0.95]) and curves["lr"] == ([2], [0.001])
    assert "schedules" not in curves and "goal" not in curves


def test_read_metrics_repeated_epoch_keeps_the_last_line(tmp_path):
    path = write_lines(tmp_path, ['{"epoch": 1, "train_loss": 2.0}', '{"epoch": 1, "train_loss": 1.0}'])
    assert series(read_metrics(path))["train_loss"] == ([1], [1.0])


@pytest.mark.parametrize("line,message", [
    ('{"epoch": 1, "train_loss": }', "not JSON"),
    ('[1, 2]', "expected a JSON object, found list"),
    ('{"train_loss": 1.0}', "'epoch' must be a number, found None"),
    ('{"epoch": "one"}', "'epoch' must be a number"),
    ('{"epoch": true}', "'epoch' must be a number"),
    ('{"epoch": 2, "test_accuracy": "95%"}', "'test_accuracy' must be a number or null"),
])
def test_read_metrics_names_file_and_line_of_a_malformed_line(tmp_path, line, message):
    path = write_lines(tmp_path, ['{"epoch": 1, "train_loss": 1.0}', line])
    with pytest.raises(MetricsFormatError, match=message) as err:
        read_metrics(path)
    assert f"{path}:2:" in str(err.value)


def test_read_metrics_refuses_an_empty_file(tmp_path):
    with pytest.raises(MetricsFormatError, match="no records"):
        read_metrics(write_lines(tmp_path, ["", "  "]))


# ------------------------------------------------------------------ command line

def refused(argv, capsys) -> str:
    """Run the command line, expect the common error convention (exit 2, ``error: ``, no
    traceback) and return the message."""
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    return err


def test_missing_matplotlib_says_how_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    path = write_lines(tmp_path, ['{"epoch": 1, "train_loss": 1.0}'])
    err = refused(["plot", "training", str(path)], capsys)
    assert "pip install 'lirpa-diffai[plot]'" in err and "pip install matplotlib" in err


@needs_models
def test_layers_json_only_runs_without_matplotlib(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = tmp_path / "widths.json"
    assert main(["plot", "layers", "--limit", "2", "--methods", "IBP,hzono", "--json", str(out)]) == 0
    table = LayerWidths.from_dict(json.loads(out.read_text()))
    assert table.images == 2 and table.network == "mnist_conv_small_nat" and table.eps == 0.02
    assert [layer.label for layer in table.layers] == ["conv1", "conv2", "fc1", "logits"]
    assert table.widths["hzono"][-1] < table.widths["IBP"][-1]
    assert "| logits | 10 |" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["--methods", " , "], "no bound method given"),
    (["--methods", "IBP,ibp"], "names a method twice"),
    (["--methods", "IBP,CROWN_IBP,crwn"], "unknown bound method 'crwn'; did you mean 'CROWN'"),
    (["--correlate-input", "some"], "--correlate-input must be 'all', 'random:k' or a non-negative integer"),
    (["--network", "conv_small"], "not a pretrained network"),
    (["--network", "conv_small", "--checkpoint", "/nonexistent.pt"], "checkpoint /nonexistent.pt not found"),
])
def test_layers_argument_errors(argv, message, capsys):
    assert message in refused(["plot", "layers", "--json", "/dev/null"] + argv, capsys)


@needs_models
@pytest.mark.parametrize("eps", ["0", "-0.1", "1.5"])
def test_layers_refuse_the_eps_certify_refuses(eps, capsys):
    """One rule for plot layers and certify: eps in (0, hi - lo] of the data range."""
    err = refused(["plot", "layers", "--json", "/dev/null", "--eps", eps], capsys)
    assert "eps must be in (0, 1]" in err


@pytest.mark.parametrize("option", ["--json", "--out"])
def test_layers_refuse_an_unwritable_output_before_any_work(option, tmp_path, capsys, monkeypatch):
    import lirpa_diffai.pipeline.model_source as model_source
    monkeypatch.setattr(model_source, "load_network", lambda *a: pytest.fail("the network was loaded"))
    err = refused(["plot", "layers", option, str(tmp_path / "missing" / "x.out")], capsys)
    assert f"{option} {tmp_path / 'missing' / 'x.out'}: directory" in err and "does not exist" in err


def test_layers_checkpoint_of_a_zoo_network(tmp_path):
    net = get("conv_small", "mnist")
    path = tmp_path / "w.pt"
    torch.save({"state_dict": net.state_dict()}, path)
    loaded, dataset, description = load_network("conv_small", str(path))
    assert dataset == "mnist" and "w.pt" in description
    assert torch.equal(loaded.fc1.weight, net.fc1.weight)


def test_layers_training_checkpoint_takes_network_from_its_config(tmp_path, capsys):
    net = get("conv_small", "mnist")
    text = "network: conv_small\ndataset: mnist\neps: 0.1\ngoal: Box\nepochs: 1\n"
    path = tmp_path / "checkpoint.pt"
    torch.save({"state_dict": net.state_dict(), "config_text": text, "epoch": 1}, path)
    loaded, dataset, _ = load_network("ignored", str(path))
    assert dataset == "mnist" and torch.equal(loaded.conv1.weight, net.conv1.weight)
    assert load_network("ignored", str(tmp_path))[1] == "mnist"     # the run directory
    with pytest.raises(ValueError, match="is a mnist network, not cifar10"):
        load_network("ignored", str(path), "cifar10")
    torch.save({"state_dict": get("conv_med", "mnist").state_dict(), "config_text": text, "epoch": 1}, path)
    assert "do not fit network 'conv_small'" in refused(
        ["plot", "layers", "--checkpoint", str(path), "--json", str(tmp_path / "x.json")], capsys)


# ------------------------------------------------------------------ drawing (matplotlib)

def test_methods_keep_the_users_spelling():
    assert plot.parse_methods("ibp, HNIPS,crown_ibp") == ["ibp", "HNIPS", "CROWN-IBP"]


def test_method_labels_name_the_hzono_options():
    options = {"relu": "boxy", "correlate_input": 0}
    assert plot.method_label("CROWN", options) == "CROWN"
    assert plot.method_label("hzono", options) == "hzono (boxy, box input)"
    assert plot.method_label("HNIPS", options) == "HNIPS (deepz, input rows: all)"   # DiffAI's HNIPS
    assert plot.method_label("Box", {"correlate_input": "all"}) == "Box (boxy, box input)"
    assert plot.method_label("CROWN-hzono", {"correlate_input": 16}) == "CROWN-hzono (boxy, input rows: 16)"


def test_draw_layer_widths_plots_the_table_on_a_log_axis(tmp_path):
    figure = pytest.importorskip("matplotlib.figure")
    from matplotlib.image import imread
    table = LayerWidths([Layer("/3", "conv1", 8), Layer("/9", "logits", 10)],
                        {"IBP": [0.5, 3.0], "hzono": [0.5, 1.0]}, eps=0.1, images=5,
                        network="net", dataset="mnist", options={"relu": "boxy", "correlate_input": "all"})
    out = tmp_path / "layers.png"
    fig = plot.draw_layer_widths(figure, table, str(out))
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    assert [list(line.get_ydata()) for line in ax.lines] == [[0.5, 3.0], [0.5, 1.0]]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["IBP", "hzono (boxy, input rows: all)"]
    assert imread(out).shape[0] > 100


def test_plot_training_end_to_end(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from matplotlib.image import imread
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    path = write_lines(run_dir, [
        json.dumps({"epoch": e, "train_loss": 2.0 / e, "train_accuracy": 0.3 * e, "test_accuracy": 0.3 * e,
                    "test_certified": 0.2 * e, "eps": 0.05 * e, "lr": 1e-3 / 10 ** (e - 1), "seconds": 5})
        for e in (1, 2, 3)])
    assert main(["plot", "training", str(path)]) == 0
    out = run_dir / "training_curves.png"
    assert f"wrote {out}" in capsys.readouterr().out and imread(out).shape[1] > 500


def test_draw_training_panels_and_gaps(tmp_path):
    figure = pytest.importorskip("matplotlib.figure")
    curves = {"train_loss": ([1, 2], [1.0, 0.5]), "test_accuracy": ([2], [0.9]),
              "lr": ([1, 2], [1e-3, 1e-5])}
    fig = plot.draw_training(figure, curves, str(tmp_path / "t.png"), "run")
    accuracy, loss, eps, lr = fig.axes
    assert [line.get_label() for line in accuracy.lines] == ["test accuracy"]
    assert list(loss.lines[0].get_ydata()) == [1.0, 0.5]
    assert not eps.lines and "not in the metrics file" in eps.texts[0].get_text()
    assert [t.get_text() for t in eps.get_legend().get_texts()] == ["lr"]
    assert accuracy.get_ylim() == pytest.approx((-0.02, 1.02))
    assert lr.get_yscale() == "log" and list(lr.lines[0].get_ydata()) == [1e-3, 1e-5]
