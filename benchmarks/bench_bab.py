"""Complete verification against the incomplete methods on the pretrained networks of
``../shared/models``: for each network, the first ``--n`` test images at its radius, CROWN,
alpha-CROWN, CROWN-hzono (verified counts, total seconds) and BaB (``lirpa_diffai.verify``:
verified / falsified / timeout with ``--timeout`` seconds per image, total seconds), the
MI-FGSM upper bound, and the verified accuracy of BaB as a function of the time allowed per
image (from each image's decision time). ``--heuristics`` runs BaB once per branching
heuristic (``verify.branching``) on the same images, taking turns image by image: one row
each with verified / falsified / timeout, the median and total wall seconds of its images,
their CPU seconds (the measure that holds on a shared machine), and subdomains per second
(all subdomains bounded over the wall seconds of the images that reached branch and bound).

Every finished step (a network's setup, an incomplete method's row, a BaB image) is appended
to ``--state`` (default: the ``--json`` path with ``.state.jsonl``); the same command again
skips what is recorded there, so a crashed or stopped run loses at most one image. A state
of another ``--n``, eps or timeout is refused.

    python benchmarks/bench_bab.py --n 100 --timeout 10 --json benchmarks/results/bab.json \\
        --plot docs/bab_time_curve.png
    python benchmarks/bench_bab.py --checkpoint runs/mnist_small --eps 0.1 --n 1000 \\
        --timeout 10 --methods IBP,hzono,CROWN-IBP,CROWN,CROWN-hzono   # the demo network
    python -m benchmarks.bench_bab --networks mnist_conv_small_nat --n 25 --timeout 30 \\
        --heuristics intercept,babsr,fsb,kfsb --json benchmarks/results/bab_heuristics.json

Every image counts in the accuracies (misclassified ones are never verified). BaB only
runs on the correctly classified images that no listed incomplete method proved; their
answers are added to the incomplete methods' proofs. ``alpha-CROWN`` here is the one of
BaB's root: CROWN's intermediate bounds, alpha optimised for the final node only
(``verify.bounding.root_bounds``, ``--alpha-iterations`` steps); auto_LiRPA's full
CROWN-Optimized, which also optimises every intermediate layer (about 40 CROWN passes per
step on ConvSmall), is ``alpha-CROWN-full``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

import lirpa_diffai  # noqa: F401
from lirpa_diffai import BoundedModule, data, models
from lirpa_diffai.cli.common import number
from lirpa_diffai.evaluation import margins as certify
from lirpa_diffai.evaluation.mi_fgsm import attack_correct
from lirpa_diffai.verify import BaBOptions, Status, branching, robustness_spec, verify
from lirpa_diffai.verify.bounding import root_bounds

NETWORKS = {"mnist_conv_small_nat": 0.08, "cifar_conv_small_pgd": 2 / 255,
            "resnet2b": 2 / 255}
INCOMPLETE = "CROWN,alpha-CROWN,CROWN-hzono"


class State:
    """The steps already done, read from and appended to a JSON-lines file (or nothing)."""

    def __init__(self, path):
        self.path = Path(path) if path else None
        self.records = []
        if self.path and self.path.exists():
            self.records = [json.loads(line) for line in self.path.read_text().splitlines()
                            if line.strip()]

    def find(self, **key):
        for r in self.records:
            if all(r.get(k) == v for k, v in key.items()):
                return r
        return None

    def add(self, record: dict) -> dict:
        self.records.append(record)
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")
                f.flush()
        return record


def incomplete_rows(model, bm, x, y, eps, methods, correct, batch, alpha_iterations,
                    state, name):
    rows, proved_any = [], torch.zeros(len(x), dtype=torch.bool)
    for method in methods:
        done = state.find(kind="method", network=name, method=method)
        if done:
            rows.append({k: done[k] for k in ("method", "verified", "seconds")})
            proved_any[done["proved"]] = True
            print(f"  {method}: {done['verified']} verified (resumed)", flush=True)
            continue
        start = time.perf_counter()
        masks = []
        for s in range(0, len(x), batch):
            xs, ys = x[s:s + batch], y[s:s + batch]
            if method == "alpha-CROWN":
                spec = robustness_spec(ys, 10)
                lb, _, _ = root_bounds(bm, (xs - eps).clamp(0, 1), (xs + eps).clamp(0, 1),
                                       spec.C, spec.threshold, iterations=alpha_iterations)
                masks.append((lb > 0).all(dim=1))
                continue
            if method == "alpha-CROWN-full":
                bm.bound_opts["optimize_bound_args"]["iteration"] = alpha_iterations
            masks.append(certify.certified_mask(bm, xs, ys, eps, method.replace("-full", "")))
        proved = torch.cat(masks) & correct
        proved_any |= proved
        rows.append({"method": method, "verified": int(proved.sum()),
                     "seconds": time.perf_counter() - start})
        state.add({"kind": "method", "network": name, **rows[-1],
                   "proved": proved.nonzero().flatten().tolist()})
        print(f"  {method}: {int(proved.sum())} verified, {rows[-1]['seconds']:.1f} s",
              flush=True)
    return rows, proved_any


def bab_rows(model, bm, x, y, eps, todo, timeout, already, state, name, heuristics):
    """BaB with each branching heuristic on the images ``todo``, a row each; ``already``:
    images the incomplete methods proved. The heuristics take turns image by image, so that
    a machine whose load changes during the run slows them alike."""
    samples = {h: [] for h in heuristics}
    for k, i in enumerate(todo):
        for heuristic in heuristics:
            done = state.find(kind="bab", network=name, index=i, heuristic=heuristic)
            if done is None:
                start, cpu = time.perf_counter(), time.process_time()
                [r] = verify(model, x[i:i + 1], y[i:i + 1], eps, timeout=timeout,
                             options=BaBOptions(branching=heuristic), bounded=bm)
                done = state.add({"kind": "bab", "network": name, "index": i,
                                  "heuristic": heuristic, **r.as_dict(),
                                  "wall": time.perf_counter() - start,
                                  "cpu": time.process_time() - cpu})
            samples[heuristic].append({k2: v for k2, v in done.items()
                                       if k2 not in ("kind", "network")})
            print(f"  BaB:{heuristic} {k + 1}/{len(todo)} image {i}: {done['status']} by "
                  f"{done['method']} in {done['wall']:.1f} s, {done['cpu']:.1f} CPU s "
                  f"({done['subdomains']} subdomains)", flush=True)
    return [bab_summary(f"BaB:{h}", samples[h], already) for h in heuristics]


def bab_summary(method: str, samples: list, already: int) -> dict:
    """A BaB row: counts (``verified`` includes the ``already`` proved images), median and
    total wall seconds, total CPU seconds, subdomains per wall second."""
    count = {s.value: sum(d["status"] == s.value for d in samples) for s in Status}
    return {"method": method, "verified": already + count["verified"],
            "falsified": count["falsified"], "timeout": count["timeout"],
            "bab_images": len(samples), "seconds": sum(d["wall"] for d in samples),
            "cpu": sum(d["cpu"] for d in samples),
            "median": statistics.median([d["wall"] for d in samples]) if samples else 0.0,
            "subdomains_per_s": subdomain_rate(samples), "samples": samples}


def subdomain_rate(samples: list) -> float:
    """Subdomains bounded per second over the images that reached branch and bound."""
    reached = [d for d in samples if d["subdomains"] > 0]
    return sum(d["subdomains"] for d in reached) / max(sum(d["wall"] for d in reached), 1e-9)


def network_setup(state, name, model, x, y, eps, timeout):
    """Clean and MI-FGSM counts of a network (recorded once); refuses a state of another
    run."""
    key = {"n": len(x), "eps": eps, "timeout": timeout}
    done = state.find(kind="setup", network=name)
    if done is not None:
        if any(done[k] != v for k, v in key.items()):
            raise SystemExit(f"{state.path}: {name} was run with "
                             f"{ {k: done[k] for k in key} }, not {key}; remove it or pass "
                             f"another --state")
        return done
    with torch.no_grad():
        correct = model(x).argmax(1) == y
    pgd = attack_correct(model, x, y, eps)
    return state.add({"kind": "setup", "network": name, **key,
                      "correct": correct.nonzero().flatten().tolist(),
                      "clean": int(correct.sum()), "mifgsm": int(pgd.sum())})


def run_network(name, model, x, y, eps, args, state):
    model.eval()
    setup = network_setup(state, name, model, x, y, eps, args.timeout)
    correct = torch.zeros(len(x), dtype=torch.bool)
    correct[setup["correct"]] = True
    bm = BoundedModule(model, x[:1]).eval()
    print(f"{name}: {len(x)} images, eps {eps:.4g}, clean {setup['clean']}, "
          f"MI-FGSM {setup['mifgsm']}", flush=True)
    rows, proved_any = incomplete_rows(model, bm, x, y, eps, args.methods.split(","),
                                       correct, args.batch, args.alpha_iterations, state, name)
    todo = (correct & ~proved_any).nonzero().flatten().tolist()
    rows += bab_rows(model, bm, x, y, eps, todo, args.timeout, int(proved_any.sum()), state,
                     name, args.heuristics.split(","))
    return {"network": name, "n": len(x), "eps": eps, "clean": setup["clean"],
            "mifgsm": setup["mifgsm"], "timeout": args.timeout, "rows": rows}


def curve(result, points):
    """Verified accuracy of BaB (its first heuristic) if each image had t seconds: images
    proved by the incomplete methods count at every t."""
    bab = next(row for row in result["rows"] if row["method"].startswith("BaB"))
    base = bab["verified"] - sum(s["status"] == "verified" for s in bab["samples"])
    times = sorted(s["seconds"] for s in bab["samples"] if s["status"] == "verified")
    return [(base + sum(t <= p for t in times)) / result["n"] for p in points]


def markdown(results) -> str:
    lines = ["| network | eps | images | clean | MI-FGSM | method | verified | falsified | "
             "timeout | median s | total s | CPU s | subdomains/s |",
             "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        for row in r["rows"]:
            bab = row["method"].startswith("BaB")
            extra = (f"{row['falsified']} | {row['timeout']} | {row['median']:.2f}" if bab
                     else "| | ")
            rate = f"{row['cpu']:.1f} | {row['subdomains_per_s']:.1f}" if bab else " | "
            lines.append(f"| {r['network']} | {r['eps']:.4g} | {r['n']} | {r['clean']} | "
                         f"{r['mifgsm']} | {row['method']} | {row['verified']} | {extra} | "
                         f"{row['seconds']:.1f} | {rate} |")
    return "\n".join(lines)


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in results:
        points = [r["timeout"] * k / 100 for k in range(101)]
        line, = ax.plot(points, [100 * v for v in curve(r, points)],
                        label=f"{r['network']} (eps {r['eps']:.3g})")
        ax.axhline(100 * r["mifgsm"] / r["n"], color=line.get_color(), linestyle=":",
                   linewidth=1)
    ax.set_xlabel("time allowed per image (s)")
    ax.set_ylabel("verified accuracy (%)")
    ax.set_title("BaB verified accuracy vs time (dotted: MI-FGSM upper bound)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--networks", default=",".join(NETWORKS),
                   help="comma-separated pretrained networks of ../shared/models, each at its "
                        "radius (default: %(default)s)")
    p.add_argument("--checkpoint", default=None,
                   help="a training run (or any network `certify` takes) instead of "
                        "--networks; its configuration's eps unless --eps")
    p.add_argument("--eps", type=number, default=None,
                   help="L-inf radius for every network, a number or a fraction such as 8/255 "
                        "(default: each network's own)")
    p.add_argument("--n", type=int, default=100,
                   help="the first N test images per network (default: %(default)s)")
    p.add_argument("--timeout", type=number, default=10.0,
                   help="seconds of BaB per image (default: %(default)s)")
    p.add_argument("--methods", default=INCOMPLETE,
                   help="comma-separated incomplete methods run before BaB, the names "
                        "`certify` takes, plus alpha-CROWN-full (default: %(default)s)")
    p.add_argument("--heuristics", default=branching.DEFAULT,
                   help=f"comma-separated branching heuristics, a BaB row each "
                        f"({', '.join(branching.HEURISTICS)}; default {branching.DEFAULT})")
    p.add_argument("--alpha-iterations", type=int, default=20,
                   help="alpha-CROWN optimisation steps at BaB's root (default: %(default)s)")
    p.add_argument("--batch", type=int, default=50,
                   help="images per bound call of the incomplete methods (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default: %(default)s)")
    p.add_argument("--json", default=None, help="write the results as JSON here")
    p.add_argument("--markdown", default=None, help="write the results table here")
    p.add_argument("--plot", default=None,
                   help="draw verified accuracy against time per image into this PNG")
    p.add_argument("--state", default=None,
                   help="JSON-lines file of the steps done (default: --json's .state.jsonl)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    state = State(args.state or (Path(args.json).with_suffix(".state.jsonl") if args.json
                                 else None))
    results = []
    if args.checkpoint:
        from lirpa_diffai.pipeline.model_source import load_model
        loaded = load_model(args.checkpoint)
        if (args.eps or loaded.eps) is None:
            p.error(f"give --eps: {loaded.description} has no configured eps")
        root = loaded.cfg.data_root if loaded.cfg else None
        x, y = data.load_dataset(loaded.dataset, "test", root).tensors
        results.append(run_network(loaded.description, loaded.model, x[:args.n], y[:args.n],
                                   args.eps or loaded.eps, args, state))
    else:
        for name in args.networks.split(","):
            model = models.load_pretrained(name)
            x, y = data.load_dataset(models.PRETRAINED[name].dataset, "test").tensors
            results.append(run_network(name, model, x[:args.n], y[:args.n],
                                       args.eps or NETWORKS[name], args, state))
    table = markdown(results)
    print(table)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    if args.plot:
        plot(results, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
