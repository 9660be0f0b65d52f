"""Random graphs of catalogue snippets: broadcasting shapes, batch sizes 1-3, operations along
every axis (the batch axis included), values read by several later steps (shared sub-graphs)
and by steps far after them (long skips). Everything is drawn from one seed."""
from __future__ import annotations

import random
import re
from typing import Optional, Sequence

import torch
from torch import nn

from .catalogue import SNIPPETS, Step

MAX_ELEMENTS = 48  # keeps every value small: the fuzzer checks soundness, not scale


class Graph(nn.Module):
    """``v0`` is the input; step ``i`` computes ``v{i+1}`` from the values ``wiring[i]``; the
    output is the last value, as (batch, n) like a classifier's (auto_LiRPA's backward pass
    assumes that shape): flattened from rank > 2, unsqueezed from rank 1."""

    def __init__(self, steps: Sequence[Step], wiring: Sequence[tuple]):
        super().__init__()
        self.steps = nn.ModuleList(steps)
        self.wiring = [tuple(w) for w in wiring]

    def forward(self, x):
        values = [x]
        for step, inputs in zip(self.steps, self.wiring):
            values.append(step(*(values[i] for i in inputs)))
        out = values[-1]
        return out.flatten(1) if out.dim() > 2 else (out.unsqueeze(1) if out.dim() == 1 else out)

    def describe(self) -> str:
        """The graph as torch code, one line per step."""
        lines = []
        for k, (step, inputs) in enumerate(zip(self.steps, self.wiring), start=1):
            names = dict(zip(("x", "y"), (f"v{i}" for i in inputs)))
            code = re.sub(r"\b[xy]\b", lambda m: names.get(m.group(), m.group()), step.text)
            lines.append(f"v{k} = {code}" + ("  # batch axis" if step.batch else ""))
        lines.append(f"out = v{len(self.steps)}.flatten(1)  # (batch, n): flatten(1) or unsqueeze(1)")
        return "\n".join(lines)


def random_input(rng: random.Random) -> torch.Tensor:
    batch = rng.choice((1, 2, 3))
    rank = rng.choice((2, 3, 4, 4))
    rest = [rng.choice((1, 2, 3)) for _ in range(rank - 1)]
    if rank == 4:
        rest[1:] = [rng.choice((2, 3)) for _ in rest[1:]]
    return torch.randn(batch, *rest)


def pick_input(rng: random.Random, n_values: int, unread: list) -> int:
    """Mostly the newest value no step reads yet (so few branches end unread); otherwise any
    earlier value (a long skip, or a second reader: a shared sub-graph)."""
    return unread[-1] if unread and rng.random() < 0.7 else rng.randrange(n_values)


def try_step(rng: random.Random, operator: str, values: list, unread: list) -> Optional[tuple]:
    """``(step, inputs, output)`` applying ``operator`` to values of the pool, or None."""
    a = pick_input(rng, len(values), unread)
    b = rng.randrange(len(values)) if rng.random() < 0.6 else None
    step = SNIPPETS[operator](rng, tuple(values[a].shape), None if b is None else tuple(values[b].shape))
    if step is None:
        return None
    step.operator = operator
    inputs = (a,) if step.arity == 1 else (a, b)
    try:
        with torch.no_grad():
            out = step(*(values[i] for i in inputs))
    except (RuntimeError, IndexError, ValueError):
        return None
    if not torch.is_tensor(out) or not out.is_floating_point() or out.dim() == 0:
        return None
    if not 0 < out.numel() <= MAX_ELEMENTS or not torch.isfinite(out).all():
        return None
    return step, inputs, out


def build_graph(seed: int, operators: Sequence[str], steps: int,
                forced: Optional[str] = None) -> tuple[Graph, torch.Tensor]:
    """A random graph of ``steps`` steps drawn from ``operators`` (``forced``: every step is
    that operator, for a graph that tests one operator) and its input batch."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    for _ in range(50):
        x = random_input(rng)
        values, chosen, wiring, unread = [x], [], [], [0]
        for _ in range(steps):
            for _ in range(30):
                made = try_step(rng, forced or rng.choice(operators), values, unread)
                if made is not None:
                    step, inputs, out = made
                    chosen.append(step)
                    wiring.append(inputs)
                    unread[:] = [i for i in unread if i not in inputs] + [len(values)]
                    values.append(out)
                    break
        if chosen and (forced is None or len(chosen) == steps):
            return Graph(chosen, wiring).eval(), x
    raise ValueError(f"no graph of {forced or 'these operators'} found from seed {seed}")
