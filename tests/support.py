"""What the tests share besides fixtures (those stay in ``conftest.py``): the repository's paths,
points inside input sets (samples, corners, attacks), the soundness assertion, small reference
implementations, and the draw of a grid's quick cases. Imported as ``tests.support``; it needs
no ``lirpa_diffai`` at import (the few helpers that call it import it inside)."""
from __future__ import annotations

import copy
import importlib.util
import os
import types
import zlib
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pytest
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
EXAMPLE_GOALS = EXAMPLES / "goals"      # the shipped YAML training configurations
SHARED = Path(os.environ.get("LIRPA_DIFFAI_SHARED", REPO.parent / "shared"))

HAVE_MNIST = (SHARED / "datasets" / "mnist.npz").is_file()
needs_mnist = pytest.mark.skipif(not HAVE_MNIST, reason="needs ../shared/datasets/mnist.npz")



class Lambda(nn.Module):
    """A module computing ``fn(x)`` (a traced function as a network)."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def load_script(path: Path) -> types.ModuleType:
    """A stand-alone script (``examples/*.py``, which is no package) as a module, loaded from its
    file and named after it, without putting its folder on ``sys.path``; its ``__main__`` block
    does not run."""
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def box_samples(lower: torch.Tensor, upper: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` points per sample of the box: uniform ones and random corners, shape (n, B, ...)."""
    u = torch.rand((n,) + tuple(lower.shape))
    corners = torch.rand((n,) + tuple(lower.shape)) < 0.5
    u[: n // 2] = corners[: n // 2].to(lower.dtype)
    return lower + (upper - lower) * u


def forward_each(model, points: torch.Tensor) -> torch.Tensor:
    """``torch.stack([model(p) for p in points])`` as one :func:`torch.func.vmap` call: each
    point is still its own batch (operations across the batch axis keep their meaning).
    Point by point where the model cannot be vmapped (dropout's randomness, batch norm's
    running-statistics update)."""
    try:
        return torch.func.vmap(model)(points)
    except Exception:  # noqa: BLE001  (any failure: the plain loop)
        return torch.stack([model(p) for p in points])


def attack_points(model, lower, upper, steps: int = 10) -> torch.Tensor:
    """PGD points in the box pushing each output up and down: (2 * n_out, B, ...). The
    attacks are independent and run side by side in one vmapped pass per step; one after
    the other where the model cannot be vmapped."""
    n_out = model(lower).flatten(1).shape[1]
    try:
        return side_by_side_attacks(model, lower, upper, steps, n_out)
    except Exception:  # noqa: BLE001  (no batching rule, randomness, in-place updates)
        pass
    points = []
    for sign in (1.0, -1.0):
        for j in range(n_out):
            x = ((lower + upper) / 2).clone().requires_grad_(True)
            step = (upper - lower) / 4
            for _ in range(steps):
                out = model(x).flatten(1)[:, j].sum() * sign
                (grad,) = torch.autograd.grad(out, x)
                x = torch.max(torch.min(x + step * grad.sign(), upper), lower).detach().requires_grad_(True)
            points.append(x.detach())
    return torch.stack(points)


def side_by_side_attacks(model, lower, upper, steps: int, n_out: int) -> torch.Tensor:
    """:func:`attack_points`' attacks (output ``j`` up, for each ``j``, then down) as one
    vmapped batch of attacks: the same steps, each attack's gradient its own."""
    signs = torch.tensor([1.0] * n_out + [-1.0] * n_out)
    targets = torch.arange(n_out).repeat(2)
    x = ((lower + upper) / 2).expand(2 * n_out, *lower.shape).clone().requires_grad_(True)
    step = (upper - lower) / 4
    vmapped = torch.func.vmap(model)
    for _ in range(steps):
        out = vmapped(x).flatten(2)                      # (attack, B, n_out)
        objective = (out[torch.arange(2 * n_out), :, targets].sum(1) * signs).sum()
        (grad,) = torch.autograd.grad(objective, x)
        x = torch.max(torch.min(x + step * grad.sign(), upper), lower).detach().requires_grad_(True)
    return x.detach()


def assert_inside(outputs: torch.Tensor, lb: torch.Tensor, ub: torch.Tensor, tol: float = 1e-5):
    """Every row of ``outputs`` (n, B, ...) lies in ``[lb, ub]`` up to float noise."""
    scale = tol * (1 + torch.maximum(lb.abs(), ub.abs()))
    below = (outputs < lb - scale).sum().item()
    above = (outputs > ub + scale).sum().item()
    assert below == 0 and above == 0, (
        f"{below} values below and {above} above the bounds; worst excess "
        f"{max((lb - outputs).max().item(), (outputs - ub).max().item()):.3g}")


def reference_relu(c, b, E, relu):
    """The paper's ReLU on one sample's hybrid zonotope (center ``c``, box radius ``b``,
    generators ``E`` (m, n)) in NumPy: the exact interval ReLU without rows, else ``boxy``
    (a crossing neuron becomes ``[0, u]``) or ``deepz`` (``lam = u/(u-l)``, ``mu = -lam l/2``)."""
    r = b + np.abs(E).sum(0)
    l, u = c - r, c + r
    if E.shape[0] == 0:
        lo, hi = np.maximum(l, 0), np.maximum(u, 0)
        return (hi + lo) / 2, (hi - lo) / 2, E
    active, cross = l >= 0, (l < 0) & (u > 0)
    if relu == "boxy":
        return (np.where(active, c, np.where(cross, u / 2, 0.0)),
                np.where(active, b, np.where(cross, u / 2, 0.0)), E * active)
    lam = np.where(active, 1.0, np.where(cross, u / np.where(cross, u - l, 1.0), 0.0))
    mu = np.where(cross, -lam * l / 2, 0.0)
    return lam * c + mu, lam * b + mu, E * lam


def box_bounds_fn(model, method, example):
    """The trainer's bounds function (``GoalContext.bounds``) for ``model``: auto_LiRPA's
    ``method`` on the box ``[x_L, x_U]`` with spec C, traced on ``example``."""
    from auto_LiRPA import BoundedModule, BoundedTensor, PerturbationLpNorm
    bounded = BoundedModule(model, example)

    def bounds(x_L, x_U, C):
        x = BoundedTensor((x_L + x_U) / 2, PerturbationLpNorm(norm=np.inf, x_L=x_L, x_U=x_U))
        return bounded.compute_bounds(x=(x,), C=C, method=method)
    return bounds


def assert_split_bounds_hold(net, bm, spec, x_L, x_U, lower, upper, j: int, k: int,
                             beta: bool) -> None:
    """Split neuron ``j`` of the first and ``k`` of the second activation layer of ``net``
    (``Flatten, Linear, act, Linear, act, ...``, one sample of 1-d input) both ways and bound
    the four subdomains with branch and bound's :func:`bound_domains`: every sampled input
    of each subdomain has margins above its bound."""
    from lirpa_diffai.verify.bounding import bound_domains
    width = [t.shape[1] for t in lower]
    splits = [torch.zeros(4, n, dtype=torch.int8) for n in width]
    splits[0][:, j] = torch.tensor([1, 1, -1, -1], dtype=torch.int8)
    splits[1][:, k] = torch.tensor([1, -1, 1, -1], dtype=torch.int8)
    lb, _ = bound_domains(bm, x_L, x_U, spec.C, spec.threshold,
                          [t.expand(4, -1) for t in lower], [t.expand(4, -1) for t in upper],
                          splits, beta=beta)
    pts = x_L + (x_U - x_L) * torch.rand(100000, x_L.shape[1])
    with torch.no_grad():
        z1 = net[1](pts)
        z2 = net[3](net[2](z1))
        margins = spec.margins(net(pts))  # spec of batch 1 broadcasts
    for d, (a, b) in enumerate([(1, 1), (1, -1), (-1, 1), (-1, -1)]):
        inside = (a * z1[:, j] >= 0) & (b * z2[:, k] >= 0)
        if inside.any():
            assert (margins[inside].min(0).values >= lb[d] - 1e-5).all()


def assert_goal_refused_at(text: str, message: str, column: int) -> None:
    """``parse_goal(text)`` raises a GoalSyntaxError whose text contains ``message``, at line 1
    and ``column``."""
    from lirpa_diffai.goals import GoalSyntaxError, parse_goal
    with pytest.raises(GoalSyntaxError) as err:
        parse_goal(text)
    assert message in str(err.value)
    assert (err.value.line, err.value.column) == (1, column)


def bounds_of(bm, x: torch.Tensor, eps: float, method: str, **kwargs):
    """``bm.compute_bounds`` of the L-inf ball ``x +- eps`` with ``method``, detached."""
    from auto_LiRPA import BoundedTensor, PerturbationLpNorm
    ptb = PerturbationLpNorm(norm=np.inf, eps=eps)
    lb, ub = bm.compute_bounds(x=(BoundedTensor(x, ptb),), method=method, **kwargs)
    return lb.detach(), ub.detach()


def assert_bounds_hold(bm, f, x: torch.Tensor, eps: float, method: str, samples: int = 64,
                       refusal_allowed: bool = False):
    """``bm``'s ``method`` bounds of the ball ``x +- eps`` contain ``f`` at sampled, corner and
    PGD points, are never NaN, and equal ``f(x)`` at ``eps = 0`` (float32 tolerance);
    ``refusal_allowed``: or ``method`` refuses, naming a graph node and its operator."""
    try:
        lb, ub = bounds_of(bm, x, eps, method)
        lb0, ub0 = bounds_of(bm, x, 0.0, method)
    except Exception as error:  # noqa: BLE001  (every error is a refusal or a failure)
        if refusal_allowed and refused_by_node(error, bm):
            return
        raise AssertionError(f"{method} failed without naming a node: {type(error).__name__}: {error}") \
            from error
    lower, upper = x - eps, x + eps
    points = torch.cat([box_samples(lower, upper, samples), attack_points(f, lower, upper)])
    with torch.no_grad():
        outputs, clean = forward_each(f, points), f(x)
    for bound in (lb, ub, lb0, ub0):
        assert not bound.isnan().any(), f"{method}: NaN bounds"
    assert_inside(outputs, lb, ub)
    torch.testing.assert_close(lb0, clean, atol=1e-5, rtol=1e-5, msg=f"{method} lower at eps=0")
    torch.testing.assert_close(ub0, clean, atol=1e-5, rtol=1e-5, msg=f"{method} upper at eps=0")


def refused_by_node(error: BaseException, bm) -> bool:
    """Whether ``error``'s message names a graph node of ``bm`` (``node '<name>'``) and an
    operator (``operator X`` or a ``BoundX`` class)."""
    import re
    message = str(error)
    names = {node.name for node in bm._modules.values()}
    named = any(name in names for name in re.findall(r"node '([^']+)'", message))
    return named and re.search(r"operator \w+|\bBound[A-Z]\w*", message) is not None


def with_clean_batch_statistics(net: nn.Module, x: torch.Tensor) -> nn.Module:
    """The function every method bounds in training mode: ``net`` with each BatchNorm's
    statistics those of the clean batch ``x`` at that layer, held fixed (an eval-mode copy)."""
    ref = copy.deepcopy(net).train()
    seen = {}
    norms = [m for m in ref.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    hooks = [m.register_forward_pre_hook(lambda m, i: seen.setdefault(m, i[0].detach())) for m in norms]
    with torch.no_grad():
        ref(x)
    for hook in hooks:
        hook.remove()
    for m, value in seen.items():
        dims = [0] + list(range(2, value.ndim))
        m.running_mean.copy_(value.mean(dims))
        m.running_var.copy_(value.var(dims, unbiased=False))
    return ref.eval()


# ------------------------------------------------------------------ the two tiers
# `make test` runs the quick tier (-m "not slow"), `make test-all` both. A parametrized grid
# keeps a deterministic draw of its cases quick and marks the rest slow: every case runs in
# exactly one tier.


def rank(key: str, candidates: Iterable[str]) -> list[str]:
    """``candidates`` in the order of the CRC-32 of ``key|candidate``: a fixed shuffle per key,
    the same on every run and machine (unlike ``hash``); adding a candidate moves no other's
    place relative to the rest."""
    return sorted(candidates, key=lambda c: (zlib.crc32(f"{key}|{c}".encode()), c))


def draw(key: str, candidates: Iterable[str], k: int = 1) -> list[str]:
    """The first ``k`` of :func:`rank`."""
    return rank(key, candidates)[:k]


def drawn_rows(rows: Iterable[str], columns: Sequence[str], k: int = 1) -> set[tuple[str, str]]:
    """The quick cells of a grid: ``k`` columns drawn for each row."""
    return {(row, column) for row in rows for column in draw(row, columns, k)}


def slow_unless(quick: bool) -> tuple:
    """The marks of a case: none in the quick tier, ``slow`` otherwise."""
    return () if quick else (pytest.mark.slow,)
