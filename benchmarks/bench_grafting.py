"""Linearity grafting (Chen et al. 2022) at eps = 2/255 on the adversarially trained
``resnet2b`` and ``cifar_conv_small_pgd`` and a ConvMed trained here with PGD at 2/255
(``examples/goals/madry_cifar_conv_med.yaml``; ``--networks`` takes pretrained names, training
run directories and checkpoint files, as ``python -m lirpa_diffai graft`` does): for grafting
ratios 0, 25% and 50%, before and after a fine-tune, on the first N CIFAR-10 test images. The
columns of a row:

- ``unstable (CROWN)``: unstable ReLU neurons over all neurons (grafted ones included, never
  unstable), averaged over the images, with CROWN's pre-activation bounds;
- ``clean``, ``PGD``: clean accuracy and accuracy under PGD (20 steps of eps/4 from a random
  start; a sample counts as attacked when any point the attack visits is misclassified);
- ``CROWN``, ``alpha-CROWN``, ``CROWN-hzono``: verified accuracy of each incomplete method
  (hzono with one correlated row per input dimension and the DeepZ ReLU for the intermediate
  bounds), ``s ...`` their seconds;
- ``BaB``: verified accuracy of complete verification: an image counts when CROWN, alpha-CROWN
  or CROWN-hzono verified it or ``lirpa_diffai.verify.verify`` (its PGD, alpha-CROWN and branch
  and bound, ``--bab-timeout`` seconds per image) returns VERIFIED on it; ``BaB fals/timeout``:
  how many images ``verify`` falsified (a checked counterexample) and how many it left open at
  the timeout; ``s BaB``: its seconds. ``verify`` runs only on the images PGD did not break and
  no incomplete method verified (``--bab-timeout 0`` skips the column);
- ``s fine-tune``: the seconds of the fine-tune (rows after fine-tuning).

alpha-CROWN (auto_LiRPA's, every layer's slopes optimised, ``--alpha-iterations``; 0 skips
the column) is run only on the images PGD did not break and CROWN did not verify (its bound
starts at CROWN's and auto_LiRPA keeps the best one, so a CROWN-verified image is counted as
alpha-CROWN-verified); CROWN-hzono runs on every image PGD did not break. ``verify`` starts
from its own alpha-CROWN (the last layer's slopes on CROWN's intermediate bounds);
``bab_verified_at_root`` in results.json counts the images it proved there, before any
split. Soundness is asserted on every row: no image verified by any method was broken by PGD, no image ``verify``
falsified was verified by an incomplete method, and each of its counterexamples lies in the
input box and violates the margins.

Selection: ``choose_masks`` with CROWN-IBP instability and gradient significance on the first
``--select-images`` training images, lam = 0.5, global. Ratio 0 is the network itself (grafted
with all-zero masks, the same function), fine-tuned like the others. Fine-tuning (the paper's
objective): ``train`` with GradAlign(0.2) (FGSM from a random start with step 1.25 eps, plus
GradAlign weight 0.2), SGD lr 0.001 (weights) / 0.01 (slopes and intercepts) annealed linearly
to 0, on the first ``--train-images`` training images for ``--epochs`` epochs.

Results go to ``--out``/results.json after every row; a rerun skips the rows already there
(and refuses a results.json of other settings). Parallel processes need one ``--out`` each.
The run in docs/grafting.md, one process per network (``runs/madry_cifar_conv_med`` from the
example config; on resnet2b auto_LiRPA's alpha-CROWN cost 36 to 66 s per image at 20
iterations and 16 s at 5 at 1 thread here, so its column is skipped there)::

    python benchmarks/bench_grafting.py --networks cifar_conv_small_pgd --bab-timeout 5 --out runs/grafting_full_cs
    python benchmarks/bench_grafting.py --networks runs/madry_cifar_conv_med --bab-timeout 5 --out runs/grafting_full_cm
    python benchmarks/bench_grafting.py --networks resnet2b --alpha-iterations 0 --bab-timeout 5 \\
        --out runs/grafting_full_r2b
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from lirpa_diffai import BoundedModule, data
from lirpa_diffai.evaluation.margins import margin_spec
from lirpa_diffai.cli.graft import source_network
from lirpa_diffai.pipeline.model_source import load_trained
from lirpa_diffai.grafting import choose_masks, graft, grafted_modules
from lirpa_diffai.grafting.checkpoint import (GRAFTED_FILE, base_network, grafted_checkpoint,
                                              read_grafted)
from lirpa_diffai.grafting.instability import ball, site_nodes, with_every_site_grafted
from lirpa_diffai.models import PRETRAINED
from lirpa_diffai.runtime import keep_freed_memory
from lirpa_diffai.training import CHECKPOINT, save_atomic, train
from lirpa_diffai.verify import Status, verify

EPS = 2 / 255
HZONO_BATCH = 4
EPOCHS = 10
SETTINGS = ("images", "select_images", "train_images", "epochs", "alpha_iterations",
            "bab_timeout")  # a results.json holds rows of one setting
NETWORKS = "cifar_conv_small_pgd,resnet2b,runs/madry_cifar_conv_med"
FINETUNE = """network: {network}
dataset: {dataset}
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


def evaluate(model, x, y, eps, batch, iterations, bab_timeout):
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
    todo = (robust & ~crown).nonzero().flatten() if iterations > 0 else []
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
               verified_alpha_crown=float(alpha.float().mean()) if iterations > 0 else None,
               verified_crown_hzono=float(hz.float().mean()))
    if bab_timeout > 0:
        row.update(complete_verification(probe, x, y, eps, robust, crown | alpha | hz,
                                         bab_timeout))
    return row


def complete_verification(model, x, y, eps, robust, proved, timeout):
    """The BaB columns: ``verify`` (``timeout`` seconds per image; no incomplete method before
    its alpha-CROWN, they ran already) on the images PGD did not break (``robust``) that no
    incomplete method verified (``proved``). Asserts that no verified image is one PGD broke
    and that every falsified image has a counterexample in its box that the network
    misclassifies, on an image no incomplete method verified."""
    bm = BoundedModule(model, x[:1]).eval()  # plain: verify's alpha-CROWN and BaB options
    todo = robust & ~proved
    status = {s: torch.zeros(len(x), dtype=torch.bool) for s in Status}
    at_root, start = 0, time.time()
    for k in todo.nonzero().flatten().tolist():  # one image a call, as bench_bab.py
        [r] = verify(model, x[k:k + 1], y[k:k + 1], eps, timeout=timeout, incomplete=(),
                     bounded=bm)
        status[r.status][k] = True
        at_root += r.status is Status.VERIFIED and r.method == "alpha-CROWN"
        if r.status is Status.FALSIFIED:
            check_counterexample(model, r.counterexample, x[k], y[k], eps)
    seconds = time.time() - start
    verified = proved | status[Status.VERIFIED]
    assert not (verified & ~robust).any(), "verified but attacked: unsound"
    assert not (status[Status.FALSIFIED] & proved).any(), "falsified but verified: unsound"
    return {"verified_bab": float(verified.float().mean()),
            "bab_falsified": int(status[Status.FALSIFIED].sum()),
            "bab_timeout": int(status[Status.TIMEOUT].sum()), "bab_images": int(todo.sum()),
            "bab_verified_at_root": at_root,
            "seconds_bab": seconds, "bab_timeout_s": timeout}


def check_counterexample(model, point, x, y, eps):
    """Assert that ``point`` lies in the eps-ball of ``x`` (clipped to [0, 1]) and that some
    margin ``f_y - f_j`` (j != y) is <= 0 there."""
    lo, hi = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    assert point is not None and bool(((point >= lo - 1e-6) & (point <= hi + 1e-6)).all()), \
        "a BaB counterexample outside the input box: unsound"
    with torch.no_grad():
        logits = model(point.view(1, *x.shape))[0]
    assert bool(logits[y] <= torch.cat([logits[:y], logits[y + 1:]]).max()), \
        "a BaB counterexample that violates no margin: unsound"


def network_label(source: str) -> str:
    """A short name for a ``--networks`` entry: the pretrained name, a run directory's name,
    or a checkpoint file's name (its run directory's for ``checkpoint.pt``)."""
    if source in PRETRAINED:
        return source
    path = Path(source)
    return path.parent.name if path.name == CHECKPOINT else path.stem


def cifar_source(source: str) -> None:
    """Exit with a message unless ``source`` is a CIFAR-10 network ``graft`` accepts."""
    try:
        _, entry, _ = source_network(source)
    except Exception as err:  # FileNotFoundError, TrainingError, GraftingError
        raise SystemExit(f"--networks {source}: {err}") from None
    dataset = base_network(entry)[2]
    if dataset != "cifar10":
        raise SystemExit(f"--networks {source}: a {dataset} network; this benchmark measures "
                         "CIFAR-10 networks")


def grafted_network(source, ratio, x_sel, y_sel, out: Path):
    """The grafted network of ``ratio`` (written to ``out``/grafted.pt) and its statistics;
    ``source``: a ``--networks`` entry, loaded as ``python -m lirpa_diffai graft`` does."""
    base, entry, _ = source_network(source)
    if ratio == 0:
        masks = {s: torch.zeros(m.mask.shape) for s, m in
                 grafted_modules(with_every_site_grafted(base, x_sel)).items()}
        stats = {"ratio": 0.0}
    else:
        masks, stats = choose_masks(base, x_sel, y_sel, EPS, ratio, method="CROWN-IBP")
    model = graft(base, masks, x_sel[:1])
    out.mkdir(parents=True, exist_ok=True)
    save_atomic(grafted_checkpoint(model, entry, EPS, stats), out / GRAFTED_FILE)
    return model.eval()


def finetune(out: Path, epochs, train_images) -> float:
    """Fine-tune ``out``/grafted.pt into ``out``/run (resumed if started); its seconds. The
    configuration names the grafted checkpoint's own network and dataset, as ``train`` checks."""
    ckpt = read_grafted(out / GRAFTED_FILE)
    config = out / "finetune.yaml"
    config.write_text(FINETUNE.format(network=ckpt["network"], dataset=ckpt["dataset"],
                                      graft=GRAFTED_FILE, eps=EPS, epochs=epochs,
                                      train_images=train_images))
    start = time.time()
    train(str(config), out=str(out / "run"), resume=True, progress=False, log=lambda *a: None)
    return time.time() - start


def bab_cells(r) -> str:
    """The BaB columns of a row, dashes where it was run with ``--bab-timeout 0``."""
    if "verified_bab" not in r:
        return "- | - | -"
    return (f"{r['verified_bab']:.1%} | {r['bab_falsified']}/{r['bab_timeout']} | "
            f"{r['seconds_bab']:.0f}")


def percent(value) -> str:
    return "-" if value is None else f"{value:.1%}"


def table(rows) -> str:
    head = ("| network | grafted | fine-tuned | unstable (CROWN) | clean | PGD | CROWN | "
            "alpha-CROWN | CROWN-hzono | BaB | BaB fals/timeout | s BaB | s CROWN | s alpha | "
            "s hzono | s fine-tune |\n"
            "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
    return head + "".join(
        f"| {r['network']} | {r['ratio']:.0%} | {'yes' if r['finetuned'] else 'no'} | "
        f"{r['unstable_ratio']:.1%} | {r['clean']:.1%} | {r['pgd']:.1%} | {r['verified_crown']:.1%} | "
        f"{percent(r['verified_alpha_crown'])} | {r['verified_crown_hzono']:.1%} | {bab_cells(r)} | "
        f"{r['seconds_crown']:.0f} | {r['seconds_alpha_crown']:.0f} | {r['seconds_crown_hzono']:.0f} | "
        f"{r.get('seconds_finetune', 0):.0f} |\n" for r in rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", default=NETWORKS,
                        help="pretrained names, training run directories or checkpoint files")
    parser.add_argument("--ratios", default="0,0.5,0.25")
    parser.add_argument("--images", type=int, default=200, help="first N test images")
    parser.add_argument("--select-images", type=int, default=200, help="training images scored")
    parser.add_argument("--train-images", type=int, default=5000, help="fine-tuning images")
    parser.add_argument("--epochs", type=int, default=EPOCHS, help="fine-tuning epochs")
    parser.add_argument("--bab-timeout", type=float, default=10.0,
                        help="seconds of complete verification per image (0: no BaB column)")
    parser.add_argument("--alpha-iterations", type=int, default=20,
                        help="alpha-CROWN's iterations (0: no alpha-CROWN column; BaB still "
                             "starts from its own alpha-CROWN)")
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
    settings = {k: getattr(args, k) for k in SETTINGS}
    for r in rows:
        if r.get("settings") != settings:
            raise SystemExit(f"{results_path}: its {r['network']} rows were measured with "
                             f"{r.get('settings')}, not {settings}; give another --out")
    done = {(r["network"], r["ratio"], r["finetuned"]) for r in rows}
    x_train, y_train = data.load_dataset("cifar10", "train").tensors
    x_sel, y_sel = x_train[:args.select_images], y_train[:args.select_images]
    x, y = (t[:args.images] for t in data.load_dataset("cifar10", "test").tensors)
    ratios = [float(r) for r in args.ratios.split(",")]
    sources = args.networks.split(",")
    for source in sources:
        cifar_source(source)
    if len({network_label(s) for s in sources}) < len(sources):
        raise SystemExit(f"--networks {args.networks}: two entries share the row label "
                         f"{[network_label(s) for s in sources]}")
    for source in sources:
        name = network_label(source)
        for finetuned in (False, True):  # every ratio before fine-tuning first
            for ratio in ratios:
                if (name, ratio, finetuned) in done:
                    continue
                where = out / f"{name}_{int(ratio * 100)}"
                torch.manual_seed(0)
                extra = {}
                if not finetuned:
                    model = grafted_network(source, ratio, x_sel, y_sel, where)
                else:
                    if not (where / GRAFTED_FILE).is_file():
                        grafted_network(source, ratio, x_sel, y_sel, where)
                    extra["seconds_finetune"] = finetune(where, args.epochs, args.train_images)
                    model, _ = load_trained(where / "run")
                    torch.manual_seed(0)
                row = {"network": name, "ratio": ratio, "finetuned": finetuned,
                       "images": len(x), "settings": settings, **extra,
                       **evaluate(model, x, y, EPS, args.batch, args.alpha_iterations,
                                  args.bab_timeout)}
                rows.append(row)
                partial = results_path.with_suffix(".json.part")
                partial.write_text(json.dumps(rows, indent=1) + "\n")
                partial.replace(results_path)  # a crash never leaves half a file
                print(table([row]).splitlines()[-1], flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
