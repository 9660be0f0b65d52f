"""benchmarks/bounds.py: its pieces on tiny inputs, and one small end-to-end run."""
import json
import re
import time

import pytest
import torch

from benchmarks import bounds
from lirpa_diffai import BoundedModule, data
from lirpa_diffai.evaluation import margins as certify


def test_margin_figures_count_widths_margins_and_samples():
    lower = torch.tensor([[0.5, 1.0], [-1.0, 2.0]])
    upper = torch.tensor([[1.5, 4.0], [1.0, 3.0]])
    figures = bounds.margin_figures(lower, upper)
    assert figures == {"mean_width": pytest.approx((1 + 3 + 2 + 1) / 4), "margins_proved": 0.75, "verified": 0.5}


def test_ratios_need_both_rows_with_figures():
    rows = [bounds.Row("CROWN-hzono", seconds=2.0, mean_width=3.0), bounds.Row("CROWN", seconds=8.0, mean_width=1.5),
            bounds.Row("CROWN-IBP", error="RuntimeError: boom")]
    assert bounds.ratios(rows) == {"time_crown_hzono_over_crown": 0.25, "width_crown_hzono_over_crown": 2.0,
                                   "width_crown_hzono_over_crown_ibp": None, "time_ratio_is_upper_bound": False}


def test_a_timed_out_crown_bounds_the_time_ratio_from_above():
    rows = [bounds.Row("CROWN-hzono", 3.0, 1.0, 3.0, 0.0, 0.0),
            bounds.Row("CROWN", error="MethodTimeout: over the 60 s budget", timed_out_after=60.0)]
    r = bounds.ratios(rows)
    assert r["time_crown_hzono_over_crown"] == 0.05 and r["time_ratio_is_upper_bound"]
    assert r["width_crown_hzono_over_crown"] is None
    result = {"network": "n", "dataset": "cifar10", "eps": 2 / 255, "batch": 1, "correlate_input": 16,
              "clean_accuracy": 0.0, "rows": [vars(x) for x in rows], "ratios": r}
    assert "| n | < 0.05 | - | - |" in bounds.markdown([result])


def test_run_with_timeout_interrupts_and_restores_the_alarm():
    start = time.perf_counter()
    with pytest.raises(bounds.MethodTimeout, match="0.2"):
        bounds.run_with_timeout(lambda: [time.sleep(0.01) for _ in range(1000)], 0.2)
    assert time.perf_counter() - start < 2
    assert bounds.run_with_timeout(lambda: 7, 5) == 7
    time.sleep(0.3)  # no stray alarm left behind


class FailingModule:
    """Stands in for a BoundedModule whose bound computation fails or hangs."""

    def __init__(self, behaviour):
        self.behaviour = behaviour

    def compute_bounds(self, **kwargs):
        if self.behaviour == "hang":
            while True:
                time.sleep(0.01)
        raise self.behaviour


@pytest.mark.parametrize("behaviour,expected", [
    (MemoryError("cannot allocate"), "MemoryError: cannot allocate"),
    (RuntimeError("self.stride != kernel\nmore"), "RuntimeError: self.stride != kernel"),
    ("hang", "MethodTimeout: over the 0.2 s budget"),
    (RuntimeError("The following operation failed in the TorchScript interpreter.\n  A.clamp(max=0)\n"
                  "RuntimeError: [enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
                  "memory: you tried to allocate 253755392 bytes. Error code 12"),
     "RuntimeError: out of memory (a 242 MiB allocation failed)")])
def test_a_failing_method_becomes_an_error_row(behaviour, expected):
    row = bounds.run_method(FailingModule(behaviour), None, None, "CROWN", timeout=0.2)
    assert row.error == expected and row.seconds is None
    assert (row.timed_out_after == 0.2) == (behaviour == "hang")


def test_markdown_shows_figures_errors_and_ratios():
    rows = [bounds.Row("IBP", 0.5, 10.0, 4.0, 0.25, 0.0), bounds.Row("CROWN", error="RuntimeError: a | b")]
    result = {"network": "tiny:mnist", "dataset": "mnist", "eps": 0.1, "batch": 2, "correlate_input": "all",
              "clean_accuracy": 0.5, "rows": [vars(r) for r in rows], "ratios": bounds.ratios(rows)}
    text = bounds.markdown([result])
    assert "| tiny:mnist (0.1, 2, all; acc 50%) | IBP | 0.5 | 10 | 4 | 25.0% | 0.0% |" in text
    assert "RuntimeError: a / b" in text  # a '|' would break the table
    # without CROWN figures the ratio cells say why
    assert "| tiny:mnist | - (CROWN RuntimeError: a / b) | - | - |" in text


def test_parse_network_defaults_overrides_and_errors():
    spec = bounds.parse_network("conv_small:mnist")
    assert (spec.eps, spec.batch, spec.pretrained, spec.correlate) == (0.1, 4, False, 64)
    assert bounds.parse_network("ConvSmall:mnist", batch=3).batch == 3
    assert bounds.parse_network("resnet34:cifar10", rows="all").correlate == "all"
    assert bounds.parse_network("conv_small:mnist", rows=0).correlate == 0
    assert bounds.parse_network("resnet2b").pretrained and bounds.parse_network("resnet2b").dataset == "cifar10"
    other = bounds.parse_network("conv_med:cifar10")
    assert other.eps == pytest.approx(2 / 255) and other.label == "conv_med:cifar10"
    with pytest.raises(ValueError, match="did you mean"):
        bounds.parse_network("resnet_tinyy")


def test_bad_rows_is_a_usage_error(capsys):
    with pytest.raises(SystemExit):
        bounds.main(["--rows", "some"])
    assert "--rows must be 'all', 'random:k' or a non-negative integer, not 'some'" in capsys.readouterr().err


def test_unknown_method_is_a_usage_error(capsys):
    with pytest.raises(SystemExit):
        bounds.main(["--methods", "IBP,CROWN-hzonoo"])
    assert "unknown method(s) CROWN-hzonoo" in capsys.readouterr().err


def test_one_network_end_to_end(tmp_path):
    """Every method sees the same images: IBP's width equals a direct computation on the
    first test images; CROWN-hzono (boxy, correlated input) is not looser than CROWN-IBP."""
    spec = bounds.NetworkSpec("conv_small", "mnist", 0.1, 2)
    out_json, out_md = tmp_path / "b.json", tmp_path / "b.md"
    start = time.perf_counter()
    assert bounds.main(["--networks", "conv_small:mnist", "--batch", "2", "--methods", "IBP,CROWN-IBP,CROWN-hzono",
                        "--json", str(out_json), "--markdown", str(out_md), "--memory-gib", "0"]) == 0
    elapsed = time.perf_counter() - start
    written = json.loads(out_json.read_text())
    total = float(re.search(r"total ([0-9.]+) s", written["header"]).group(1))
    assert 0 < total <= elapsed + 0.01   # the run's seconds, not rounded to 0
    result = written["results"][0]
    rows = {r["method"]: r for r in result["rows"]}
    assert all(r["error"] is None for r in rows.values())
    x, y = data.load_dataset("mnist", "test").tensors
    net = spec.build()
    lb, ub = BoundedModule(net, x[:2]).compute_bounds(
        x=(certify.input_box(x[:2], 0.1),), C=certify.margin_spec(y[:2], 10), method="IBP")
    assert rows["IBP"]["mean_width"] == pytest.approx((ub - lb).mean().item(), rel=1e-5)
    assert rows["CROWN-hzono"]["mean_width"] < rows["CROWN-IBP"]["mean_width"]
    assert result["ratios"]["width_crown_hzono_over_crown_ibp"] < 1
    assert "| CROWN-hzono |" in out_md.read_text()


def test_bench_hzono_report_judges_targets_in_eval_mode_only():
    from benchmarks import bench_hzono
    methods = {m: {"seconds": 1.0, "peak_mib": 1.0, "fresh_peak_mib": 1.0} for m in ("forward", "IBP")}

    def result(name, train, hzono0, hzono16):
        return {"network": name, "train_mode": train, "methods": methods,
                "ratios": {"hzono0_over_ibp": hzono0, "hzono16_over_17_forward": hzono16}}
    text = bench_hzono.report([result("fast", False, 1.0, 1.6), result("abstract", True, 2.6, 0.4)])
    assert "fast: hzono0_over_ibp = 1.00 (target <= 1.25) ok" in text
    assert "fast: hzono16_over_17_forward = 1.60 (target <= 1.5) MISSED" in text
    assert "abstract: hzono0_over_ibp = 2.60 (no target: abstract layers act in training mode)" in text
    assert "| abstract (train) | IBP | 1.000 | 1 |" in text
