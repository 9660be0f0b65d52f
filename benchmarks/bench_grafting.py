"""Linearity grafting (Chen et al. 2022) on the adversarially trained ``resnet2b`` and
``cifar_conv_small_pgd`` at eps = 2/255: for grafting ratios 0, 25% and 50%, before and after a
short fine-tune, on the first N CIFAR-10 test images:

- the unstable-neuron ratio under CROWN (unstable ReLU neurons over all neurons, grafted ones
  included, averaged over the images),
- clean accuracy and accuracy under PGD (20 steps of eps/4 from a random start; a sample counts
  as attacked when any point the attack visits is misclassified),
- verified accuracy with CROWN, alpha-CROWN and CROWN-hzono (hzono with one correlated row per
  input dimension and the DeepZ ReLU for the intermediate bounds), and the seconds of each.

alpha-CROWN is run only on the images PGD did not break and CROWN did not verify (its bound
starts at CROWN's and auto_LiRPA keeps the best one, so a CROWN-verified image is counted as
alpha-CROWN-verified); CROWN-hzono runs on every image PGD did not break.

Selection: ``choose_masks`` with CROWN-IBP instability and gradient significance on the first
``--select-images`` training images, lam = 0.5, global. Ratio 0 is the network itself (grafted
with all-zero masks, the same function), fine-tuned like the others. Fine-tuning: ``train`` with
GradAlign(0.2) (FGSM step 1.25 eps + GradAlign 0.2), SGD lr 0.001 (weights) / 0.01 (slopes and
intercepts), on the first ``--train-images`` training images for ``--epochs`` epochs.

Results go to ``--out``/results.json after every row; a rerun skips the rows already there.
Run: ``nice python benchmarks/bench_grafting.py --threads 1``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from auto_LiRPA import BoundedTensor, PerturbationLpNorm

from lirpa_diffai import BoundedModule, data, models
from lirpa_diffai.certify import margin_spec
from lirpa_diffai.evaluation import load_trained
from lirpa_diffai.grafting import choose_masks, graft, grafted_modules
from lirpa_diffai.grafting.checkpoint import GRAFTED_FILE, grafted_checkpoint
from lirpa_diffai.grafting.instability import site_nodes, with_every_site_grafted
from lirpa_diffai.runtime import keep_freed_memory
from lirpa_diffai.training import save_atomic, train

EPS = 2 / 255
HZONO_BATCH = 4
FINETUNE = """network: {network}
dataset: cifar10
graft: {graft}
eps: {eps!r}
goal: GradAlign(0.2)
method: IBP
epochs: {epochs}
optimizer: {{name: sgd, lr: 0.001, momentum: 0.9, weight_decay: 0.0005}}
graft_lr: 0.01
lr_schedule: Lin(1, 0, {epochs}, 0)
batch_size: 64
train_subset: {train_images}
test_subset: 10
seed: 0
"""


def ball(x, eps):
    return BoundedTensor(x, PerturbationLpNorm(norm=np.inf, x_L=(x - eps).clamp(0, 1),
                                               x_U=(x + eps).clamp(0, 1)))


def pgd_robust(model, x, y, eps, steps=20):
    """True where no point visited by PGD (random start, ``steps`` steps of eps/4) is
    misclassified."""
    lo, hi = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    point = lo + (hi - lo) * torch.rand_like(x)
    robust = torch.ones(len(x), dtype=torch.bool)
    for _ in range(steps + 1):
        point.requires_grad_(True)
        out = model(point)
        robust &= out.argmax(1) == y
        grad, = torch.autograd.grad(F.cross_entropy(out, y, reduction="sum"), point)
        point = torch.min(torch.max(point.detach() + eps / 4 * grad.sign(), lo), hi)
    return robust


def margins_lower(bm, x, y, method, eps, iterations=20):
    bm.bound_opts["optimize_bound_args"]["iteration"] = iterations
    lb, _ = bm.compute_bounds(x=(ball(x, eps),), C=margin_spec(y, 10), method=method,
                              bound_upper=False)
    return (lb > 0).all(1).detach()


def evaluate(model, x, y, eps, batch, iterations):
    """The row's numbers for one network (see the module docstring)."""
    row = {}
    with torch.no_grad():
        clean = model(x).argmax(1) == y
    start = time.time()
    robust = clean & pgd_robust(model, x, y, eps)
    row["seconds_pgd"] = time.time() - start
    probe = with_every_site_grafted(model, x).eval()
    masks = {site: m.mask.bool() for site, m in grafted_modules(probe).items()}
    bm = BoundedModule(probe, x[:1], bound_opts={"hzono": {"relu": "deepz", "correlate_input": "all"}})
    crown = torch.zeros(len(x), dtype=torch.bool)
    unstable, start = 0, time.time()
    for i in range(0, len(x), batch):
        with torch.no_grad():
            crown[i:i + batch] = margins_lower(bm, x[i:i + batch], y[i:i + batch], "CROWN", eps)
        for site, node in site_nodes(bm, probe).items():
            lower, upper = node.inputs[0].lower, node.inputs[0].upper
            unstable += int(((lower < 0) & (upper > 0) & ~masks[site]).sum())
    row["seconds_crown"] = time.time() - start
    neurons = sum(m.numel() for m in masks.values())
    row["unstable_ratio"] = unstable / (neurons * len(x))
    alpha = crown.clone()
    todo = (robust & ~crown).nonzero().flatten()
    start = time.time()
    for i in range(0, len(todo), batch):
        idx = todo[i:i + batch]
        alpha[idx] = margins_lower(bm, x[idx], y[idx], "alpha-CROWN", eps, iterations)
    row["seconds_alpha_crown"] = time.time() - start
    hz = torch.zeros(len(x), dtype=torch.bool)
    todo = robust.nonzero().flatten()
    start = time.time()
    for i in range(0, len(todo), HZONO_BATCH):  # one row per input dim: keep the batch small
        idx = todo[i:i + HZONO_BATCH]
        with torch.no_grad():
            hz[idx] = margins_lower(bm, x[idx], y[idx], "CROWN-hzono", eps)
    row["seconds_crown_hzono"] = time.time() - start
    assert not ((crown | alpha | hz) & ~robust).any(), "verified but attacked: unsound"
    row.update(clean=float(clean.float().mean()), pgd=float(robust.float().mean()),
               verified_crown=float(crown.float().mean()),
               verified_alpha_crown=float(alpha.float().mean()),
               verified_crown_hzono=float(hz.float().mean()))
    return row


def grafted_network(name, ratio, x_sel, y_sel, out: Path):
    """The grafted network of ``ratio`` (written to ``out``/grafted.pt) and its statistics."""
    base = models.load_pretrained(name)
    if ratio == 0:
        masks = {s: torch.zeros(m.mask.shape) for s, m in
                 grafted_modules(with_every_site_grafted(base, x_sel)).items()}
        stats = {"ratio": 0.0}
    else:
        masks, stats = choose_masks(base, x_sel, y_sel, EPS, ratio, method="CROWN-IBP")
    model = graft(base, masks, x_sel[:1])
    out.mkdir(parents=True, exist_ok=True)
    save_atomic(grafted_checkpoint(model, {"kind": "pretrained", "name": name}, EPS, stats),
                out / GRAFTED_FILE)
    return model.eval()


def finetune(name, out: Path, epochs, train_images) -> float:
    config = out / "finetune.yaml"
    config.write_text(FINETUNE.format(network=name, graft=GRAFTED_FILE, eps=EPS, epochs=epochs,
                                      train_images=train_images))
    start = time.time()
    train(str(config), out=str(out / "run"), resume=True, progress=False, log=lambda *a: None)
    return time.time() - start


def table(rows) -> str:
    head = ("| network | grafted | fine-tuned | unstable (CROWN) | clean | PGD | CROWN | "
            "alpha-CROWN | CROWN-hzono | s CROWN | s alpha | s hzono | s fine-tune |\n"
            "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
    return head + "".join(
        f"| {r['network']} | {r['ratio']:.0%} | {'yes' if r['finetuned'] else 'no'} | "
        f"{r['unstable_ratio']:.1%} | {r['clean']:.1%} | {r['pgd']:.1%} | {r['verified_crown']:.1%} | "
        f"{r['verified_alpha_crown']:.1%} | {r['verified_crown_hzono']:.1%} | "
        f"{r['seconds_crown']:.0f} | {r['seconds_alpha_crown']:.0f} | {r['seconds_crown_hzono']:.0f} | "
        f"{r.get('seconds_finetune', 0):.0f} |\n" for r in rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", default="cifar_conv_small_pgd,resnet2b")
    parser.add_argument("--ratios", default="0,0.5,0.25")
    parser.add_argument("--images", type=int, default=200, help="first N test images")
    parser.add_argument("--select-images", type=int, default=200, help="training images scored")
    parser.add_argument("--train-images", type=int, default=1000, help="fine-tuning images")
    parser.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs")
    parser.add_argument("--alpha-iterations", type=int, default=20)
    parser.add_argument("--batch", type=int, default=25)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="runs/bench_grafting")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    rows = json.loads(results_path.read_text()) if results_path.is_file() else []
    done = {(r["network"], r["ratio"], r["finetuned"]) for r in rows}
    x_train, y_train = data.load_dataset("cifar10", "train").tensors
    x_sel, y_sel = x_train[:args.select_images], y_train[:args.select_images]
    x, y = (t[:args.images] for t in data.load_dataset("cifar10", "test").tensors)
    ratios = [float(r) for r in args.ratios.split(",")]
    for name in args.networks.split(","):
        for finetuned in (False, True):  # every ratio before fine-tuning first
            for ratio in ratios:
                if (name, ratio, finetuned) in done:
                    continue
                where = out / f"{name}_{int(ratio * 100)}"
                torch.manual_seed(0)
                extra = {}
                if not finetuned:
                    model = grafted_network(name, ratio, x_sel, y_sel, where)
                else:
                    if not (where / GRAFTED_FILE).is_file():
                        grafted_network(name, ratio, x_sel, y_sel, where)
                    extra["seconds_finetune"] = finetune(name, where, args.epochs, args.train_images)
                    model, _ = load_trained(where / "run")
                    torch.manual_seed(0)
                row = {"network": name, "ratio": ratio, "finetuned": finetuned,
                       "images": len(x), **extra,
                       **evaluate(model, x, y, EPS, args.batch, args.alpha_iterations)}
                rows.append(row)
                results_path.write_text(json.dumps(rows, indent=1) + "\n")
                print(table([row]).splitlines()[-1], flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
