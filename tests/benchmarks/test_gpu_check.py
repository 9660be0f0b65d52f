"""benchmarks/gpu_check.py on a machine without a GPU: its dry run (CPU against CPU), its
comparison, and its message when CUDA is missing."""
import pytest
import torch

from benchmarks import gpu_check


def test_dry_run_compares_every_check_cpu_against_cpu(capsys):
    assert gpu_check.main(["--device", "cpu", "--batch", "4", "--repeats", "1",
                           "--verify-timeout", "0.5"]) == 0
    out = capsys.readouterr().out
    for name in ("hzono, 0 rows", "hzono, 16 rows", "CROWN-hzono, 16 rows", "training step",
                 "BaB bounds", "verify"):
        row = next(line for line in out.splitlines() if line.startswith(f"| {name} |"))
        cells = [c.strip() for c in row.split("|")[1:-1]]
        assert cells[1] == "0" and float(cells[2]) > 0 and cells[-1] == "yes", row  # deterministic


def test_a_result_off_the_cpu_fails_the_check(capsys, monkeypatch):
    made = []

    def make(net, x, y, cfg, t):
        offset = 1e-2 * len(made)   # the second (device) call differs
        made.append(offset)
        return lambda: {"loss": torch.ones(3) + offset, "grad w": torch.zeros(2)}
    monkeypatch.setattr(gpu_check, "CHECKS", {"shifted": make})
    assert gpu_check.main(["--device", "cpu", "--batch", "2", "--repeats", "1"]) == 1
    assert "| shifted | 0.01 | 0.000101 |" in capsys.readouterr().out


def test_max_difference():
    ref = {"a": torch.tensor([1.0, -4.0]), "b": torch.zeros(0)}
    assert gpu_check.max_difference(ref, {"a": torch.tensor([1.5, -4.0]), "b": torch.zeros(0)}) == (0.5, 4.0)
    nan = gpu_check.max_difference(ref, {"a": torch.tensor([float("nan"), -4.0]), "b": torch.zeros(0)})
    assert nan[0] == float("inf")
    with pytest.raises(ValueError, match="shape"):
        gpu_check.max_difference(ref, {"a": torch.zeros(3), "b": torch.zeros(0)})
    with pytest.raises(ValueError, match="different results"):
        gpu_check.max_difference(ref, {"a": torch.zeros(2)})


def test_without_cuda_it_says_so_and_exits_2(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gpu_check: CUDA is not available") and "--device cpu" in err


# ------------------------------------------------- no tensor made on the CPU inside a pass
# A tensor on the "meta" device mixed with one created on the CPU by default raises, as a
# CUDA tensor would: these catch such tensors without a GPU.

def test_augment_keeps_the_device_of_its_images():
    from lirpa_diffai.training import augment
    assert augment(torch.zeros(4, 3, 8, 8, device="meta")).device.type == "meta"


def test_attack_helpers_follow_their_inputs():
    from lirpa_diffai.data import eps_box
    from lirpa_diffai.evaluation.mi_fgsm import l1_normalise
    x = torch.zeros(2, 1, 4, 4, device="meta")
    assert all(t.device.type == "meta" for t in eps_box(x, 0.1) + (l1_normalise(x),))
