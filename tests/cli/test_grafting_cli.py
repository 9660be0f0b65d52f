"""End to end: ``graft`` writes masks, a grafted checkpoint (weights_only) and statistics;
``train`` fine-tunes it with GradAlign and a separate learning rate for the grafted slopes;
``certify`` takes both; bad input is refused with a message."""
import json

import pytest
import torch

from lirpa_diffai import data, models
from lirpa_diffai.__main__ import main
from lirpa_diffai.pipeline.model_source import load_trained
from lirpa_diffai.grafting import graft, grafted_modules
from lirpa_diffai.training import TrainingError, train


@pytest.fixture(scope="module")
def grafted_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("graft") / "conv_small"
    assert main(["graft", "cifar_conv_small_pgd", "--ratio", "0.3", "--method", "IBP",
                 "--images", "20", "--out", str(out)]) == 0
    return out


def test_graft_writes_masks_checkpoint_and_statistics(grafted_dir):
    masks = torch.load(grafted_dir / "masks.pt", weights_only=True)
    ckpt = torch.load(grafted_dir / "grafted.pt", weights_only=True)
    stats = json.loads((grafted_dir / "selection.json").read_text())
    assert set(masks) == {"conv1_relu", "conv2_relu", "fc1_relu"}
    total = sum(m.numel() for m in masks.values())
    assert stats["grafted"] == sum(int(m.sum()) for m in masks.values()) == round(0.3 * total)
    assert ckpt["network"] == "cifar_conv_small_pgd" and ckpt["eps"] == pytest.approx(2 / 255)
    model, cfg = load_trained(grafted_dir)
    reference = graft(models.load_pretrained("cifar_conv_small_pgd"), masks)
    x = data.load_dataset("cifar10", "test").tensors[0][:4]
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))
    assert cfg.graft and cfg.network == "cifar_conv_small_pgd"


def test_finetune_uses_graft_lr_and_certify_takes_the_run(grafted_dir, tmp_path, capsys):
    config = tmp_path / "finetune.yaml"
    config.write_text(f"""
network: cifar_conv_small_pgd
dataset: cifar10
graft: {grafted_dir / 'grafted.pt'}
eps: 0.00784313725490196
goal: GradAlign(0.2)
method: IBP
epochs: 1
optimizer: {{name: sgd, lr: 0.001, momentum: 0.9, weight_decay: 0.0005}}
graft_lr: 0.01
batch_size: 32
train_subset: 64
test_subset: 8
""")
    before = {s: (m.slope.clone(), m.mask.bool()) for s, m in
              grafted_modules(load_trained(grafted_dir)[0]).items()}
    train(str(config), out=str(tmp_path / "run"), progress=False, log=lambda *a: None)
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    groups = ckpt["optimizer"]["param_groups"]
    assert len(groups) == 2 and groups[1]["lr_scale"] == pytest.approx(10.0)
    assert groups[1]["weight_decay"] == 0.0
    model, _ = load_trained(tmp_path / "run")
    for site, m in grafted_modules(model).items():
        slope, grafted = before[site]
        if grafted.any():
            assert not torch.equal(m.slope[grafted], slope[grafted])  # trained
        assert torch.equal(m.slope[~grafted], slope[~grafted])        # no gradient, no decay
    assert main(["certify", str(tmp_path / "run"), "--methods", "IBP,CROWN", "--limit", "4"]) == 0
    assert "certified, CROWN" in capsys.readouterr().out


def test_bad_input_is_refused_with_a_message(grafted_dir, tmp_path, capsys):
    assert main(["graft", "cifar_conv_small_pgd", "--ratio", "-0.5", "--out", str(tmp_path)]) == 2
    assert "--ratio must be in [0, 1]" in capsys.readouterr().err
    assert main(["graft", "cifar_conv_small_pgd", "--ratio", "0.5", "--method", "forward",
                 "--out", str(tmp_path)]) == 2
    assert "instability method 'forward'" in capsys.readouterr().err
    config = tmp_path / "wrong.yaml"
    config.write_text(f"network: resnet2b\ndataset: cifar10\ngraft: {grafted_dir / 'grafted.pt'}\n"
                      "eps: 0.01\ngoal: FGSM\nepochs: 1\n")
    with pytest.raises(TrainingError, match="holds cifar_conv_small_pgd.*says network resnet2b"):
        train(str(config), out=str(tmp_path / "r"), progress=False, log=lambda *a: None)
