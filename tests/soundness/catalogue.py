"""Every Bound class auto_LiRPA 0.3 (with this package's custom operators) can build, and for each
either a torch snippet that traces into it or the reason no torch code does.

:func:`bound_classes` enumerates the classes from auto_LiRPA's operator modules and its
operator map, so a new operator is reported by ``test_every_bound_class_is_covered`` until it
gets a snippet here or an entry in :data:`NOT_TRACEABLE`.
"""
from __future__ import annotations

import inspect
import math
import random
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from auto_LiRPA import operators
from auto_LiRPA.bound_op_map import bound_op_map
from auto_LiRPA.operators import Bound
from torch import nn

import lirpa_diffai

Shape = tuple


class Step(nn.Module):
    """One operator application ``fn(self, *inputs)``; ``text`` is its torch code on inputs
    named ``x`` (and ``y``), for replay messages and the docs' soundness table. ``batch``: the step
    reads across, or changes the size of, the batch axis."""

    def __init__(self, text: str, fn: Callable, arity: int = 1, batch: bool = False, **modules):
        super().__init__()
        self.text, self.fn, self.arity, self.batch = text, fn, arity, batch
        for name, value in modules.items():
            setattr(self, name, value)

    def forward(self, *xs):
        return self.fn(self, *xs)

    def extra_repr(self) -> str:
        return self.text


def axis(rng: random.Random, shape: Shape) -> int:
    """A random axis of ``shape``, the batch axis 0 included."""
    return rng.randrange(len(shape))


def constant_like(rng: random.Random, shape: Shape, broadcast: bool = True) -> torch.Tensor:
    """A constant that broadcasts with ``shape``: each axis 1, its size, or (where the size is 1)
    a larger one, as a positional embedding ``(1, T, D)`` meets ``(B, 1, D)``."""
    out = []
    for size in shape:
        choice = rng.random() if broadcast else 1.0
        out.append(1 if choice < 0.25 else (rng.choice((2, 3)) if size == 1 and choice < 0.5 else size))
    return torch.randn(out) * 0.5


# ------------------------------------------------------------------ snippet makers
# make(rng, x_shape, y_shape) -> Step or None (None: not applicable to these shapes)

def unary(text: str, fn: Callable) -> Callable:
    return lambda rng, xs, ys: Step(text, lambda self, x: fn(x))


def binary(symbol: str, fn: Callable) -> Callable:
    """``x op y`` with ``y`` a perturbed value of a broadcastable shape, or a constant."""
    def make(rng, xs, ys):
        if ys is not None and _broadcastable(xs, ys):
            return Step(f"x {symbol} y", lambda self, x, y: fn(x, y), arity=2, batch=xs[0] != ys[0])
        c = constant_like(rng, xs)
        if symbol == "/":
            c = c.abs() + 0.5
        return Step(f"x {symbol} const{tuple(c.shape)}", lambda self, x: fn(x, c), batch=c.shape[0] > xs[0])
    return make


def _broadcastable(a: Shape, b: Shape) -> bool:
    try:
        torch.broadcast_shapes(a, b)
        return True
    except RuntimeError:
        return False


def make_div(rng, xs, ys):
    if ys is not None and _broadcastable(xs, ys) and rng.random() < 0.5:
        return Step("x / (y * y + 1)", lambda self, x, y: x / (y * y + 1), arity=2, batch=xs[0] != ys[0])
    return binary("/", torch.div)(rng, xs, None)


def make_concat(rng, xs, ys):
    d = axis(rng, xs)
    if ys is not None and len(ys) == len(xs) and all(a == b for i, (a, b) in enumerate(zip(xs, ys)) if i != d):
        return Step(f"torch.cat([x, y], {d})", lambda self, x, y: torch.cat([x, y], d), arity=2, batch=d == 0)
    c = torch.randn(*(xs[:d] + (rng.choice((1, 2)),) + xs[d + 1:]))
    return Step(f"torch.cat([x, const], {d})", lambda self, x: torch.cat([x, c], d), batch=d == 0)


def make_where(rng, xs, ys):
    mask = torch.rand(xs) < 0.5
    if ys is not None and ys == xs:
        return Step("torch.where(mask, x, y)", lambda self, x, y: torch.where(mask, x, y), arity=2)
    return Step("torch.where(mask, x, -x)", lambda self, x: torch.where(mask, x, -x))


def make_not(rng, xs, ys):
    return Step("torch.where(~(x == 0.5), x, 2 * x)", lambda self, x: torch.where(~(x == 0.5), x, 2 * x))


def make_matmul(rng, xs, ys):
    if ys is not None and len(xs) >= 2 and ys == xs and rng.random() < 0.5:
        return Step("x @ y.transpose(-1, -2)", lambda self, x, y: x @ y.transpose(-1, -2), arity=2,
                    batch=len(xs) == 2)
    w = nn.Parameter(torch.randn(xs[-1], rng.choice((1, 2, 3))) / math.sqrt(xs[-1]))
    return Step(f"x @ W{tuple(w.shape)}", lambda self, x: x @ self.w, w=w)


def make_linear(rng, xs, ys):
    return Step(f"nn.Linear({xs[-1]}, n)(x)", lambda self, x: self.lin(x), lin=nn.Linear(xs[-1], rng.choice((1, 2, 3))))


def pair(rng, choices) -> tuple:
    """Two independent draws: a square or non-square kernel / stride / dilation."""
    return rng.choice(choices), rng.choice(choices)


def make_conv(rng, xs, ys):
    """``nn.Conv2d`` over a grid of its options (non-square kernel, stride and dilation,
    padding and its modes, groups), or ``nn.Conv1d`` on a rank-3 input (stride, padding,
    dilation, groups)."""
    if len(xs) == 3 and xs[2] >= 2:
        k, stride, pad, dil = 2, rng.choice((1, 2)), rng.choice((0, 1)), rng.choice((1, 1, 2))
        if dil * (k - 1) + 1 > xs[2] + 2 * pad:
            dil = 1
        groups = xs[1] if xs[1] > 1 and rng.random() < 0.3 else 1
        conv = nn.Conv1d(xs[1], groups * rng.choice((1, 2)), k, stride=stride, padding=pad, dilation=dil,
                         groups=groups)
        return Step(f"nn.Conv1d(.., {k}, stride={stride}, padding={pad}, dilation={dil}, groups={groups})(x)",
                    lambda self, x: self.conv(x), conv=conv)
    if len(xs) != 4:
        return None
    k, dil, stride = pair(rng, (1, 2, 3)), pair(rng, (1, 1, 2)), pair(rng, (1, 2))
    pad = rng.choice((0, 1))
    if any((k[i] - 1) * dil[i] + 1 > xs[2 + i] + 2 * pad for i in (0, 1)):
        return None
    mode = rng.choice(("zeros", "zeros", "reflect", "replicate", "circular")) if pad else "zeros"
    if mode == "reflect" and pad >= min(xs[2:]):
        mode = "zeros"
    groups = xs[1] if xs[1] > 1 and rng.random() < 0.3 else 1
    conv = nn.Conv2d(xs[1], groups * rng.choice((1, 2)), k, stride=stride, padding=pad, dilation=dil,
                     groups=groups, padding_mode=mode)
    return Step(f"nn.Conv2d(.., {k}, stride={stride}, padding={pad}, dilation={dil}, groups={groups}, "
                f"padding_mode={mode!r})(x)", lambda self, x: self.conv(x), conv=conv)


def make_conv_transpose(rng, xs, ys):
    """``nn.ConvTranspose2d`` over its options: kernel, stride (non-square too), padding,
    output_padding, dilation, groups."""
    if len(xs) != 4:
        return None
    k, stride = rng.choice((1, 2, 3)), pair(rng, (1, 2)) if rng.random() < 0.3 else (rng.choice((1, 2)),) * 2
    dil = rng.choice((1, 1, 2)) if k > 1 else 1
    pad = rng.choice((0, 0, 1)) if k > 1 else 0
    out_pad = 1 if min(stride) > 1 and rng.random() < 0.3 else 0
    groups = xs[1] if xs[1] > 1 and rng.random() < 0.3 else 1
    conv = nn.ConvTranspose2d(xs[1], groups * rng.choice((1, 2)), k, stride=stride, padding=pad,
                              output_padding=out_pad, dilation=dil, groups=groups)
    return Step(f"nn.ConvTranspose2d(.., {k}, stride={stride}, padding={pad}, output_padding={out_pad}, "
                f"dilation={dil}, groups={groups})(x)", lambda self, x: self.conv(x), conv=conv)


def make_pad(rng, xs, ys):
    if len(xs) != 4:
        return None
    mode = rng.choice(("constant", "constant", "reflect", "replicate", "circular"))
    pads = tuple(rng.choice((0, 1)) for _ in range(4))
    if mode == "reflect" and max(pads) >= min(xs[2:]):
        mode = "constant"
    value = rng.choice((None, 0.0, 0.7)) if mode == "constant" else None
    kwargs = {"mode": mode} if value is None else {"mode": mode, "value": value}
    return Step(f"F.pad(x, {pads}, **{kwargs})", lambda self, x: F.pad(x, pads, **kwargs))


def make_avg_pool(rng, xs, ys):
    """``nn.AvgPool2d`` over its options: kernel 2 or 3, stride, padding, ``ceil_mode``,
    ``count_include_pad``."""
    if len(xs) != 4 or min(xs[2:]) < 2:
        return None
    k = rng.choice((2, 3)) if min(xs[2:]) >= 3 else 2
    pad = rng.choice((0, 1)) if k > 1 else 0
    include, ceil = rng.choice((True, False)), rng.random() < 0.3
    pool = nn.AvgPool2d(k, stride=rng.choice((1, 2)), padding=pad, ceil_mode=ceil, count_include_pad=include)
    return Step(f"nn.AvgPool2d({k}, stride={pool.stride}, padding={pad}, ceil_mode={ceil}, "
                f"count_include_pad={include})(x)", lambda self, x: self.pool(x), pool=pool)


def make_max_pool(rng, xs, ys):
    """``nn.MaxPool2d`` over its options: kernel 2 or 3 (``max_pool2d(x, 3, 2, 1)``), stride 1
    or 2 (overlapping windows), padding (``-inf``), dilation, ``ceil_mode``."""
    if len(xs) != 4 or min(xs[2:]) < 2:
        return None
    k = rng.choice((2, 3)) if min(xs[2:]) >= 3 else 2
    pad = rng.choice((0, 1))
    ceil = rng.random() < 0.3
    dilation = 2 if min(xs[2:]) >= 2 * k - 1 and rng.random() < 0.3 else 1
    pool = nn.MaxPool2d(k, stride=rng.choice((1, 2)), padding=pad, dilation=dilation, ceil_mode=ceil)
    return Step(f"nn.MaxPool2d({k}, stride={pool.stride}, padding={pad}, dilation={dilation}, ceil_mode={ceil})(x)",
                lambda self, x: self.pool(x), pool=pool)


def make_adaptive_avg_pool(rng, xs, ys):
    """``nn.AdaptiveAvgPool2d`` to an output size that does not divide the input's (uneven,
    overlapping windows: its own graph node) on a map of at least 2 x 2."""
    if len(xs) != 4 or min(xs[2:]) < 2:
        return None
    out = tuple(rng.choice([o for o in range(1, s + 1) if s % o] or [s - 1]) for s in xs[2:])
    return Step(f"nn.AdaptiveAvgPool2d({out})(x)", lambda self, x: self.pool(x), pool=nn.AdaptiveAvgPool2d(out))


def make_global_avg_pool(rng, xs, ys):
    if len(xs) != 4:
        return None
    return Step("F.adaptive_avg_pool2d(x, 1)", lambda self, x: F.adaptive_avg_pool2d(x, 1))


def make_batch_norm(rng, xs, ys):
    if len(xs) not in (2, 4):
        return None
    bn = (nn.BatchNorm1d if len(xs) == 2 else nn.BatchNorm2d)(xs[1])
    with torch.no_grad():
        bn.running_mean.normal_(0, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.normal_(1, 0.5)
        bn.bias.normal_(0, 0.5)
    return Step(f"nn.BatchNorm{'1' if len(xs) == 2 else '2'}d({xs[1]})(x)", lambda self, x: self.bn(x), bn=bn)


def make_leaky_relu(rng, xs, ys):
    slope = rng.choice((0.1, -0.5, 2.0))
    return Step(f"F.leaky_relu(x, {slope})", lambda self, x: F.leaky_relu(x, slope))


def make_clip(rng, xs, ys):
    variant = rng.choice(("both", "min", "max"))
    if variant == "min":
        return Step("torch.clamp(x, min=-0.3)", lambda self, x: torch.clamp(x, min=-0.3))
    if variant == "max":
        return Step("torch.clamp(x, max=0.3)", lambda self, x: torch.clamp(x, max=0.3))
    return Step("torch.clamp(x, -0.5, 0.4)", lambda self, x: torch.clamp(x, -0.5, 0.4))


def make_kinked(text: str, fn: Callable, points: tuple, scale: float = 3.0) -> Callable:
    """``fn(scale * x + c)`` with ``c`` one of the activation's kinks / minimum / inflections
    ``points`` (or 0): the input ranges straddle it or lie on one side of it."""
    def make(rng, xs, ys):
        c = rng.choice(points + (0.0,))
        return Step(f"{text}({scale} * x + {c})", lambda self, x: fn(scale * x + c))
    return make


def make_softplus(rng, xs, ys):
    beta, threshold = rng.choice(((1.0, 20.0), (2.0, 1.0), (0.5, 2.0)))
    return Step(f"F.softplus(2 * x, {beta}, {threshold})", lambda self, x: F.softplus(2 * x, beta, threshold))


def make_gelu(rng, xs, ys):
    form = rng.choice(("none", "tanh"))
    return make_kinked(f"gelu_{form}", lambda x: F.gelu(x, approximate=form), (-1.42, -0.75, 1.42))(rng, xs, ys)


def make_elu(rng, xs, ys):
    alpha = rng.choice((1.0, 0.5, 2.0))
    return Step(f"F.elu(3 * x, {alpha})", lambda self, x: F.elu(3 * x, alpha))


def make_pow(rng, xs, ys):
    p = rng.choice((2, 3))
    return Step(f"x ** {p}", lambda self, x: x ** p)


def make_reduce(name: str, fn: Callable) -> Callable:
    def make(rng, xs, ys):
        d, keep = axis(rng, xs), rng.random() < 0.5
        if len(xs) == 1 and not keep:
            keep = True
        return Step(f"x.{name}({d}, keepdim={keep})", lambda self, x: fn(x, d, keep), batch=d == 0)
    return make


def make_with_leader(name: str, fn: Callable) -> Callable:
    """``fn(x + lead, d)`` along a random axis ``d``, ``lead`` adding ``c`` to the first element
    along ``d``: ``c = 0`` leaves the elements tied (none dominates), ``c = 30`` makes the first
    dominate the others, ``c = 2`` lies between (softmax, ReduceMax)."""
    def make(rng, xs, ys):
        d, c = axis(rng, xs), rng.choice((0.0, 2.0, 30.0))
        lead = torch.zeros(xs[d]).index_fill_(0, torch.tensor([0]), c).view((-1,) + (1,) * (len(xs) - d - 1))
        return Step(f"{name}(x + lead({c} at 0 of axis {d}), {d})", lambda self, x: fn(x + lead, d), batch=d == 0)
    return make


def make_cumsum(rng, xs, ys):
    d = axis(rng, xs)
    return Step(f"torch.cumsum(x, {d})", lambda self, x: torch.cumsum(x, d), batch=d == 0)


def make_slice(rng, xs, ys):
    d = axis(rng, xs)
    if xs[d] < 2:
        return None
    start = rng.randrange(xs[d] - 1)
    step = rng.choice((1, 2))
    index = (slice(None),) * d + (slice(start, None, step),)
    return Step(f"x[{':, ' * d}{start}::{step}]", lambda self, x: x[index], batch=d == 0)


def make_gather(rng, xs, ys):
    """``x.select(d, i)`` (a scalar index, negative too), ``torch.index_select`` with repeated
    and negative constant indices, or ``x.chunk(2, d)[k]`` (its shape arithmetic is a Gather)."""
    d = axis(rng, xs)
    if len(xs) == 1:
        return None
    i = rng.randrange(-xs[d], xs[d])
    variant = rng.choice(("select", "index", "chunk"))
    if variant == "index":
        index = torch.tensor([rng.randrange(-xs[d], xs[d]) for _ in range(rng.choice((1, 3)))])
        return Step(f"x[{':, ' * d}{index.tolist()}]", lambda self, x: x[(slice(None),) * d + (index,)],
                    batch=d == 0)
    if variant == "chunk" and xs[d] >= 2:
        k = rng.randrange(2)
        return Step(f"x.chunk(2, {d})[{k}]", lambda self, x: x.chunk(2, d)[k], batch=d == 0)
    return Step(f"x.select({d}, {i})", lambda self, x: x.select(d, i), batch=d == 0)


def make_gather_elements(rng, xs, ys):
    d = axis(rng, xs)
    index = torch.randint(xs[d], xs)
    return Step(f"torch.gather(x, {d}, index)", lambda self, x: torch.gather(x, d, index), batch=d == 0)


def make_split(rng, xs, ys):
    """``torch.split`` into parts of 1 or of two sizes."""
    d = axis(rng, xs)
    if xs[d] < 2:
        return None
    part = rng.randrange(2)
    sizes = rng.choice((1, [1, xs[d] - 1]))
    return Step(f"torch.split(x, {sizes}, {d})[{part}]", lambda self, x: torch.split(x, sizes, d)[part],
                batch=d == 0)


def make_transpose(rng, xs, ys):
    if len(xs) < 2:
        return None
    a, b = rng.sample(range(len(xs)), 2)
    return Step(f"x.transpose({a}, {b})", lambda self, x: x.transpose(a, b), batch=0 in (a, b))


def make_reshape(rng, xs, ys):
    if len(xs) < 2:
        return None
    if rng.random() < 0.3:  # moves samples of the batch into a feature axis
        return Step("x.reshape(1, -1)", lambda self, x: x.reshape(1, -1), batch=True)
    d = rng.randrange(1, len(xs))
    return Step(f"x.reshape(x.shape[:{d}] + (-1,))", lambda self, x: x.reshape(x.shape[:d] + (-1,)))


def make_flatten(rng, xs, ys):
    if len(xs) < 3:
        return None
    return Step("torch.flatten(x, 1)", lambda self, x: torch.flatten(x, 1))


def make_unsqueeze(rng, xs, ys):
    d = rng.randrange(len(xs) + 1)
    return Step(f"x.unsqueeze({d})", lambda self, x: x.unsqueeze(d), batch=d == 0)


def make_squeeze(rng, xs, ys):
    ones = [d for d, s in enumerate(xs) if s == 1]
    if not ones or len(xs) < 2:
        return None
    d = rng.choice(ones)
    return Step(f"x.squeeze({d})", lambda self, x: x.squeeze(d), batch=d == 0)


def make_expand(rng, xs, ys):
    """``x[..., :1, ...].expand(shape)`` (sizes given, or -1 for the axes kept), or ``expand_as``."""
    d = rng.randrange(1, len(xs)) if len(xs) > 1 else 0
    size = rng.choice((2, 3))
    shape = xs[:d] + (size,) + xs[d + 1:]
    index = (slice(None),) * d + (slice(0, 1),)
    if rng.random() < 0.3:
        keep = (-1,) * d + (size,) + (-1,) * (len(xs) - d - 1)
        return Step(f"x[{':, ' * d}:1].expand{keep}", lambda self, x: x[index].expand(*keep), batch=d == 0)
    if rng.random() < 0.3 and xs[d] > 1:
        return Step(f"x[{':, ' * d}:1].expand_as(x)", lambda self, x: x[index].expand_as(x), batch=d == 0)
    return Step(f"x[{':, ' * d}:1].expand{shape}", lambda self, x: x[index].expand(shape), batch=d == 0)


def make_diagonal(rng, xs, ys):
    if len(xs) < 2:
        return None
    a, b = rng.sample(range(len(xs)), 2)
    return Step(f"torch.diagonal(x, 0, {a}, {b})", lambda self, x: torch.diagonal(x, 0, a, b), batch=0 in (a, b))


def make_diag(rng, xs, ys):
    n = min(3, math.prod(xs))
    return Step(f"torch.diag(x.reshape(-1)[:{n}])", lambda self, x: torch.diag(x.reshape(-1)[:n]), batch=True)


def make_dropout(rng, xs, ys):
    return Step("nn.Dropout(0.3)(x)", lambda self, x: self.drop(x), drop=nn.Dropout(0.3))


def make_rnn(rng, xs, ys):
    if len(xs) != 3:
        return None
    return Step("nn.RNN(D, 2, batch_first=True)(x)[0]", lambda self, x: self.rnn(x)[0],
                rnn=nn.RNN(xs[-1], 2, batch_first=True))


def make_abstract(name: str, factory: Callable, rank: Optional[int] = None) -> Callable:
    def make(rng, xs, ys):
        if rank is not None and len(xs) != rank:
            return None
        return Step(f"lirpa_diffai.{name}(x)", lambda self, x: self.layer(x), layer=factory())
    return make


def make_grafted_relu(rng, xs, ys):
    """Linearity grafting's activation: a random half of the neurons affine with random slopes
    (both signs) and intercepts, ReLU elsewhere."""
    if len(xs) < 2:
        return None
    from lirpa_diffai.grafting import GraftedReLU
    act = GraftedReLU((torch.rand(xs[1:]) < 0.5).float())
    act.slope.data.uniform_(-1.0, 1.5)
    act.intercept.data.uniform_(-0.3, 0.3)
    return Step("GraftedReLU(random mask)(x)", lambda self, x: self.act(x), act=act)


def make_identity(rng, xs, ys):
    return Step("nn.Identity()(x)", lambda self, x: self.ident(x), ident=nn.Identity())


def make_buffer_add(rng, xs, ys):
    c = constant_like(rng, xs)
    step = Step(f"x + buffer{tuple(c.shape)}", lambda self, x: x + self.buf, batch=c.shape[0] > xs[0])
    step.register_buffer("buf", c)
    return step


SNIPPETS: dict[str, Callable] = {
    "BoundAbs": unary("x.abs()", torch.abs),
    "BoundAdd": binary("+", torch.add),
    "BoundSub": binary("-", torch.sub),
    "BoundMul": binary("*", torch.mul),
    "BoundDiv": make_div,
    "BoundNeg": unary("-x", torch.neg),
    "BoundAtan": unary("torch.atan(x)", torch.atan),
    "BoundTan": unary("torch.tan(torch.tanh(x))", lambda x: torch.tan(torch.tanh(x))),
    "BoundSin": unary("torch.sin(x)", torch.sin),
    "BoundCos": unary("torch.cos(x)", torch.cos),
    "BoundExp": unary("torch.exp(x)", torch.exp),
    "BoundLog": unary("torch.log(x * x + 1)", lambda x: torch.log(x * x + 1)),
    "BoundSqrt": unary("torch.sqrt(x * x + 1)", lambda x: torch.sqrt(x * x + 1)),
    "BoundReciprocal": unary("torch.reciprocal(x * x + 1)", lambda x: torch.reciprocal(x * x + 1)),
    "BoundPow": make_pow,
    "BoundSigmoid": unary("torch.sigmoid(x)", torch.sigmoid),
    "BoundTanh": unary("torch.tanh(x)", torch.tanh),
    "BoundRelu": unary("torch.relu(x)", torch.relu),
    "BoundLeakyRelu": make_leaky_relu,
    "BoundSoftplusBeta": make_softplus,
    "BoundHardSigmoid": make_kinked("F.hardsigmoid", F.hardsigmoid, (-3.0, 3.0)),
    "BoundHardSwish": make_kinked("F.hardswish", F.hardswish, (-3.0, -1.5, 3.0)),
    "BoundSiLU": make_kinked("F.silu", F.silu, (-2.4, -1.28, 2.4)),
    "BoundGelu": make_gelu,
    "BoundElu": make_elu,
    "BoundATenHeaviside": unary("torch.heaviside(x, tensor(0.5))", lambda x: torch.heaviside(x, torch.tensor(0.5))),
    "BoundATenDiag": make_diag,
    "BoundATenDiagonal": make_diagonal,
    "BoundCast": unary("x.double().float()", lambda x: x.double().float()),
    "BoundClip": make_clip,
    "BoundConcat": make_concat,
    "BoundWhere": make_where,
    "BoundNot": make_not,
    "BoundEqual": make_not,
    "BoundConv": make_conv,
    "BoundConvTranspose": make_conv_transpose,
    "BoundPad": make_pad,
    "BoundPrimConstant": make_pad,
    "BoundAveragePool": make_avg_pool,
    "BoundMaxPool": make_max_pool,
    "BoundGlobalAveragePool": make_global_avg_pool,
    "BoundAdaptiveAvgPool2d": make_adaptive_avg_pool,
    "BoundBatchNormalization": make_batch_norm,
    "BoundCumSum": make_cumsum,
    "BoundDropout": make_dropout,
    "BoundFlatten": make_flatten,
    "BoundReshape": make_reshape,
    "BoundGather": make_gather,
    "BoundGatherElements": make_gather_elements,
    "BoundIdentity": make_identity,
    "BoundLinear": make_linear,
    "BoundParams": make_linear,
    "BoundInput": make_identity,
    "BoundBuffers": make_buffer_add,
    "BoundConstant": binary("+", torch.add),
    "BoundMatMul": make_matmul,
    "BoundReduceMax": make_with_leader("torch.amax", torch.amax),
    "BoundSoftmaxWhole": make_with_leader("torch.softmax", torch.softmax),
    "BoundReduceMean": make_reduce("mean", lambda x, d, k: x.mean(d, keepdim=k)),
    "BoundReduceSum": make_reduce("sum", lambda x, d, k: x.sum(d, keepdim=k)),
    "BoundSlice": make_slice,
    "BoundSplit": make_split,
    "BoundSqueeze": make_squeeze,
    "BoundUnsqueeze": make_unsqueeze,
    "BoundTranspose": make_transpose,
    "BoundExpand": make_expand,
    "BoundShape": make_expand,
    "BoundConstantOfShape": make_expand,
    "BoundRNN": make_rnn,
    "BoundCorrelateAll": make_abstract("CorrelateAll", lambda: lirpa_diffai.CorrelateAll()),
    "BoundCorrelateFixed": make_abstract("CorrelateFixed", lambda: lirpa_diffai.CorrelateFixed(2, only_train=False)),
    "BoundCorrelateMaxK": make_abstract("CorrelateMaxK", lambda: lirpa_diffai.CorrelateMaxK(2, only_train=False)),
    "BoundCorrelateMaxPool": make_abstract("CorrelateMaxPool",
                                           lambda: lirpa_diffai.CorrelateMaxPool(2, only_train=False), rank=4),
    "BoundDecorrelateAll": make_abstract("DecorrelateAll", lambda: lirpa_diffai.DecorrelateAll(only_train=False)),
    "BoundDecorrelateMin": make_abstract("DecorrelateMin", lambda: lirpa_diffai.DecorrelateMin(2, only_train=False)),
    "BoundCorrRand": make_abstract("CorrRand", lambda: lirpa_diffai.CorrRand(2, only_train=False)),
    "BoundDecorrRand": make_abstract("DecorrRand", lambda: lirpa_diffai.DecorrRand(1, only_train=False)),
    "BoundToZono": make_abstract("ToZono", lambda: lirpa_diffai.ToZono()),
    "BoundToHZono": make_abstract("ToHZono", lambda: lirpa_diffai.ToHZono()),
    "BoundGraftedRelu": make_grafted_relu,
    "BoundDeepLoss": make_abstract("DeepLoss", lambda: lirpa_diffai.DeepLoss(1.0, only_train=False)),
}

NOT_TRACEABLE: dict[str, str] = {
    "Bound": "abstract base class of every operator",
    "BoundActivation": "abstract base class of the activations (no ONNX operator 'Activation')",
    "BoundOptimizableActivation": "abstract base class of the alpha-optimizable activations",
    "BoundAbstractLayer": "base class of this package's abstract layers (each traces into its own subclass)",
    "BoundSqr": "ONNX has no operator 'Sqr': x * x traces into Mul, x ** 2 into Pow",
    "BoundSoftmax": "softmax traces into BoundSoftmaxWhole (lirpa_diffai.lirpa03.fixes_attention)",
    "BoundSoftplus": "torch's softplus traces into custom::Softplus (BoundSoftplusBeta, with beta and "
                     "threshold; lirpa_diffai.lirpa03.fixes_activations)",
    "BoundSmoothActivation": "base class of this package's smooth activations (each traces into its own subclass)",
    "BoundRange": "torch.arange is traced as a constant (shapes are static in a trace)",
    "BoundConcatFromSequence": "auto_LiRPA's alias of BoundConcat for ONNX ConcatFromSequence, which "
                               "torch's tracer does not emit (torch.stack traces into Unsqueeze and Concat)",
}


def bound_classes() -> dict[str, type]:
    """Every Bound class auto_LiRPA can build a graph node of: the Bound subclasses of
    ``auto_LiRPA.operators`` and the custom operators in its operator map, by name."""
    found = {name: cls for name, cls in vars(operators).items()
             if inspect.isclass(cls) and issubclass(cls, Bound)}
    found.update({cls.__name__: cls for cls in bound_op_map.values()})
    for cls in list(found.values()):
        for base in cls.__mro__:
            if issubclass(base, Bound):
                found.setdefault(base.__name__, base)
    return found


def applicable(operator: str, rng: random.Random, x_shape: Shape, y_shape: Optional[Shape] = None) -> Optional[Step]:
    """The snippet of ``operator`` for inputs of these shapes, or None where it does not apply."""
    return SNIPPETS[operator](rng, tuple(x_shape), None if y_shape is None else tuple(y_shape))
