"""The HybridZonotope domain (Mirman, Gehr, Vechev 2018; Mirman, Singh, Vechev 2020, section 2).

A hybrid zonotope over p variables is ``h = (head, beta, errors)``::

    h(b, e) = head + beta * b + sum_j errors_j * e_j,    b in [-1, 1]^p,  e in [-1, 1]^m

``head`` (B, *shape) is the center, ``beta`` (B, *shape) >= 0 the uncorrelated (box) radius,
``errors`` (m, B, *shape) the correlated generators, one row per noise symbol ``e_j``
(``None`` when m = 0: then ``h`` is a box and costs what IBP costs).

Every row carries a noise-symbol id (``ids``, one int per row). Two operands of a binary
operation share a row only where their ids agree; rows without a partner are independent
symbols. New symbols get fresh ids from :func:`fresh_ids`.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

Tensor = torch.Tensor

_next_id = itertools.count()


def fresh_ids(count: int) -> tuple[int, ...]:
    """``count`` noise-symbol ids never handed out before in this process."""
    return tuple(next(_next_id) for _ in range(count))


@dataclass(frozen=True)
class HybridZonotope:
    """The value type of the domain; see the module docstring for the meaning of the fields."""

    head: Tensor
    beta: Tensor
    errors: Optional[Tensor] = None
    ids: tuple[int, ...] = ()

    def __post_init__(self):
        m = 0 if self.errors is None else self.errors.shape[0]
        if len(self.ids) != m:
            raise ValueError(f"HybridZonotope has {m} error rows but {len(self.ids)} ids")
        shapes = [self.head.shape, self.beta.shape] + ([] if self.errors is None else [self.errors.shape[1:]])
        if any(s != shapes[0] for s in shapes[1:]):
            self._broadcast(shapes)

    def _broadcast(self, shapes) -> None:
        """Expand ``head``, ``beta`` and each row to their common broadcast shape: a constant
        of a larger shape (``x + pos``, ``x * w``) widens ``head`` alone, and a later reduction
        over the widened axes must count ``beta`` and the rows once per element."""
        if len({len(s) for s in shapes}) != 1:
            raise ValueError(f"HybridZonotope parts of different ranks {[tuple(s) for s in shapes]}: "
                             "broadcasting would move the batch axis")
        full = torch.broadcast_shapes(*shapes)
        object.__setattr__(self, "head", self.head.expand(full))
        object.__setattr__(self, "beta", self.beta.expand(full))
        if self.errors is not None:
            object.__setattr__(self, "errors", self.errors.expand((self.errors.shape[0],) + full))

    # ----------------------------------------------------------------- construction
    @staticmethod
    def from_box(lower: Tensor, upper: Tensor) -> "HybridZonotope":
        """The box ``[lower, upper]``: ``head = (l + u) / 2``, ``beta = (u - l) / 2``, no rows."""
        return HybridZonotope((upper + lower) / 2, (upper - lower) / 2)

    @staticmethod
    def from_point(x: Tensor) -> "HybridZonotope":
        return HybridZonotope(x, torch.zeros_like(x))

    @staticmethod
    def from_generators(head: Tensor, errors: Tensor, beta: Optional[Tensor] = None) -> "HybridZonotope":
        """A zonotope with fresh noise symbols for the rows of ``errors`` (m, B, *shape)."""
        beta = torch.zeros_like(head) if beta is None else beta
        return HybridZonotope(head, beta, errors, fresh_ids(errors.shape[0]))

    # -------------------------------------------------------------------- queries
    @property
    def num_errors(self) -> int:
        return 0 if self.errors is None else self.errors.shape[0]

    @property
    def shape(self) -> torch.Size:
        return self.head.shape

    def radius(self) -> Tensor:
        """Total error ``beta + sum_j |errors_j|`` (the paper's epsilon_H)."""
        if self.errors is None:
            return self.beta
        return self.beta + sum_rows(self.errors.abs())

    def concretize(self) -> tuple[Tensor, Tensor]:
        """Interval concretization ``head -+ (beta + sum_j |errors_j|)``."""
        r = self.radius()
        return self.head - r, self.head + r

    def with_rows(self, errors: Optional[Tensor], ids: Sequence[int]) -> "HybridZonotope":
        return HybridZonotope(self.head, self.beta, errors, tuple(ids))

    # ------------------------------------------------------------- affine maps
    def linear_map(self, fn: Callable[[Tensor], Tensor], bias: Optional[Tensor] = None,
                   abs_fn: Optional[Callable[[Tensor], Tensor]] = None) -> "HybridZonotope":
        """Image under ``x -> fn(x) + bias`` with ``fn`` linear and batch-agnostic (conv, linear,
        pooling): ``fn`` sees the m rows folded into the batch. ``abs_fn`` is ``fn`` with
        absolute coefficients (for ``beta``); omit it when ``fn``'s coefficients are >= 0."""
        head = fn(self.head)
        if bias is not None:  # in place: fn's result is fresh, and no backward reads it
            head = head.add_(bias) if head.shape == torch.broadcast_shapes(head.shape, bias.shape) \
                else head + bias
        beta = (abs_fn or fn)(self.beta)
        errors = None if self.errors is None else on_folded_rows(fn, self.errors)
        return HybridZonotope(head, beta, errors, self.ids)

    def map_batched(self, fn: Callable[[Tensor], Tensor]) -> "HybridZonotope":
        """Image under a linear ``fn`` with coefficients >= 0 that may depend on the batch
        dimension (reshape with an explicit batch size, transpose, slice, concat...):
        ``fn`` is applied to each error row through ``torch.vmap``.

        Row ``j`` of sample ``b`` stands for the symbol ``e_j`` of sample ``b`` alone (samples
        are perturbed independently). Where ``fn`` moves values between samples
        (``x.mean(0)``, ``x[1:2]``, a reshape of the batch axis) two samples' rows would meet
        as one symbol and cancel, so the rows are first moved into ``beta``
        (``decorrelate_all``): the box image of a map with coefficients >= 0 is sound."""
        z = self
        if z.errors is not None and not keeps_samples(fn, z.head):
            z = z.decorrelate_all()
        errors = None if z.errors is None else torch.vmap(fn)(z.errors)
        return HybridZonotope(fn(z.head), fn(z.beta), errors, z.ids)

    def scale(self, factor) -> "HybridZonotope":
        """Elementwise product with a constant (broadcast like the concrete tensor)."""
        errors = None if self.errors is None else self.errors * factor
        absf = factor.abs() if isinstance(factor, Tensor) else abs(factor)
        return HybridZonotope(self.head * factor, self.beta * absf, errors, self.ids)

    def shift(self, offset) -> "HybridZonotope":
        return HybridZonotope(self.head + offset, self.beta, self.errors, self.ids)

    def __neg__(self) -> "HybridZonotope":
        return self.scale(-1.0)

    def __add__(self, other) -> "HybridZonotope":
        if not isinstance(other, HybridZonotope):
            return self.shift(other)
        (ea, eb), ids = align_rows([self, other])
        errors = None if ea is None else ea + eb
        return HybridZonotope(self.head + other.head, self.beta + other.beta, errors, ids)

    __radd__ = __add__

    def __sub__(self, other) -> "HybridZonotope":
        return self + (-other)

    def __rsub__(self, other) -> "HybridZonotope":
        return (-self) + other

    # ----------------------------------------------------------- specification
    def apply_spec(self, C: Tensor) -> "HybridZonotope":
        """Image under the spec matrix ``C`` (B, S, n) applied to the flattened output."""
        flat = self.linear_map(lambda t: t.flatten(-len(self.shape) + 1))
        def spec(t):  # (..., B, n) -> (..., B, S)
            return torch.einsum("bsn,...bn->...bs", C, t)
        errors = None if flat.errors is None else spec(flat.errors)
        beta = torch.einsum("bsn,bn->bs", C.abs(), flat.beta)
        return HybridZonotope(spec(flat.head), beta, errors, self.ids)

    # ------------------------------------------------------------ decorrelation
    def decorrelate_all(self) -> "HybridZonotope":
        """DecorrelateAll: ``beta' = beta + sum_j |errors_j|``, no rows left."""
        return HybridZonotope(self.head, self.radius())

    def channels_last(self) -> "HybridZonotope":
        """The same zonotope with its image-shaped tensors (B, C, H, W) in channels-last
        memory layout (``errors``: each row's images); other shapes are returned unchanged.

        oneDNN's convolutions over the error rows folded into the batch are faster in this
        layout (measured: docs/speed.md), and the elementwise transformers, ``sum_rows`` and
        ``concat`` keep it, so the hzono pass converts its input once."""
        if self.head.dim() != 4:
            return self
        def convert(t):
            return t.contiguous(memory_format=torch.channels_last)
        errors = None if self.errors is None else on_folded_rows(convert, self.errors)
        return HybridZonotope(convert(self.head), convert(self.beta), errors, self.ids)

    def unbounded_where_not_finite(self) -> "HybridZonotope":
        """The elements whose ``head``, ``beta`` or rows are not finite (overflow: ``inf - inf``
        in a later affine map would give NaN) as ``[-inf, inf]``: head 0, ``beta = inf``, rows 0.
        First one test on the sum of every entry (finite when all are; NaN and inf propagate
        into it), then, only where it fails, the elementwise test."""
        total = self.head.sum() + self.beta.sum() + (0 if self.errors is None else self.errors.sum())
        if torch.isfinite(total):
            return self
        parts = self.head + self.beta if self.errors is None else self.head + self.beta + sum_rows(self.errors)
        bad = ~torch.isfinite(parts)
        if not bad.any():
            return self
        zero = torch.zeros((), dtype=self.head.dtype, device=self.head.device)
        errors = None if self.errors is None else torch.where(bad, zero, self.errors)
        return HybridZonotope(torch.where(bad, zero, self.head), torch.where(bad, math.inf, self.beta),
                              errors, self.ids)

    def detach(self) -> "HybridZonotope":
        errors = None if self.errors is None else self.errors.detach()
        return HybridZonotope(self.head.detach(), self.beta.detach(), errors, self.ids)


def keeps_samples(fn: Callable[[Tensor], Tensor], like: Tensor) -> bool:
    """Whether the linear ``fn`` (coefficients >= 0) on tensors shaped like ``like`` (B, ...)
    keeps the batch size and builds output sample ``b`` from input sample ``b`` alone.

    Probed with the sample labels ``v = b + 1``: ``fn(v) / fn(1)`` and ``fn(v^2) / fn(1)``
    are the mean and second moment of the labels an output element reads (weighted by the
    coefficients), so both equal ``b + 1`` and ``(b + 1)^2`` exactly when it reads sample
    ``b`` only (zero variance). A batch of one sample has nothing to mix with."""
    batch = like.shape[0]
    if batch == 1:
        return True
    label = torch.arange(1, batch + 1, dtype=torch.float64, device=like.device)
    def labelled(power):
        return (label ** power).view((batch,) + (1,) * (like.dim() - 1)).expand(like.shape)
    ones = fn(labelled(0))
    if ones.dim() == 0 or ones.shape[0] != batch:
        return False
    out_label = label.view((batch,) + (1,) * (ones.dim() - 1))
    return all(torch.allclose(fn(labelled(p)), out_label ** p * ones, rtol=1e-9, atol=1e-12)
               for p in (1, 2))


def on_folded_rows(fn: Callable[..., Tensor], *rows: Tensor) -> Tensor:
    """``fn`` on row tensors (m, B, *shape) with the m rows folded into the batch
    (m * B, *shape), its result unfolded to (m, B', *shape')."""
    return fn(*(r.flatten(0, 1) for r in rows)).unflatten(0, (rows[0].shape[0], -1))


def sum_rows(rows: Tensor) -> Tensor:
    """``rows.sum(0)`` in the memory layout of one row (torch's reduction returns a contiguous
    tensor, and a contiguous operand mixed with channels-last ones, see
    ``HybridZonotope.channels_last``, slows every later elementwise op): the sum runs over
    the rows permuted so that their layout is contiguous, and is permuted back."""
    order = sorted(range(1, rows.dim()), key=lambda d: -rows.stride(d))
    inverse = sorted(range(len(order)), key=lambda i: order[i])
    return rows.permute(0, *order).sum(0).permute(*inverse)


def align_rows(zonos: Sequence[HybridZonotope]) -> tuple[list[Optional[Tensor]], tuple[int, ...]]:
    """Error rows of each operand laid out over the union of their noise symbols.

    Returns one (M, B, *shape) tensor per operand (zeros where an operand lacks a symbol),
    or ``None`` for all when no operand has rows, and the ids of the M rows."""
    if all(z.ids == zonos[0].ids for z in zonos):
        if zonos[0].errors is None:
            return [None] * len(zonos), ()
        return [z.errors for z in zonos], zonos[0].ids
    order: dict[int, int] = {}
    for z in zonos:
        for i in z.ids:
            order.setdefault(i, len(order))
    aligned = []
    for z in zonos:
        rows = z.head.new_zeros((len(order),) + tuple(z.head.shape))
        if z.errors is not None:
            index = torch.tensor([order[i] for i in z.ids], device=rows.device)
            rows = rows.index_copy(0, index, z.errors.expand((len(z.ids),) + tuple(z.head.shape)))
        aligned.append(rows)
    return aligned, tuple(order)


def times_constant(z: HybridZonotope, c: Tensor, op: Callable[[Tensor, Tensor], Tensor],
                   constant_first: bool = False) -> HybridZonotope:
    """The image of ``z`` under ``t -> op(t, c)`` (``op(c, t)`` with ``constant_first``) for a
    bilinear ``op`` (``torch.mul``, ``torch.matmul``) and a constant ``c``: ``head`` and each
    row map through it, ``beta`` through ``op`` with ``|c|`` (``|op(b, c)| <= op(|b|, |c|)``)."""
    def apply(t, const):
        return op(const, t) if constant_first else op(t, const)
    errors = None if z.errors is None else apply(z.errors, c)
    return HybridZonotope(apply(z.head, c), apply(z.beta, c.abs()), errors, z.ids)


def product(x: HybridZonotope, y: HybridZonotope,
            op: Callable[[Tensor, Tensor], Tensor] = torch.mul) -> HybridZonotope:
    """``op(x, y)`` of two zonotopes over shared noise symbols for a bilinear ``op`` whose
    coefficients are products of entries (``torch.mul``, broadcast; ``torch.matmul``): DeepT's
    multiplication (Bonaert et al., PLDI 2021) with its quadratic term bounded by an interval.
    With ``x = c_x + d_x``, ``y = c_y + d_y``, ``|d_x| <= r_x``, ``|d_y| <= r_y`` (the radii)::

        op(x, y) = op(c_x, c_y) + op(d_x, c_y) + op(c_x, d_y) + op(d_x, d_y)

    the middle terms are linear in the noise: rows ``op(e_x, c_y) + op(c_x, e_y)`` (aligned by
    symbol, exact, :func:`product_rows`), box part ``op(beta_x, |c_y|) + op(|c_x|, beta_y)``;
    and ``|op(d_x, d_y)| <= op(r_x, r_y)`` (each entry a sum of products) goes into ``beta``.
    Exact where either radius is 0."""
    (ex, ey), ids = align_rows([x, y]) if x.errors is not None and y.errors is not None \
        else ([x.errors, y.errors], x.ids or y.ids)
    head = op(x.head, y.head)
    beta = op(x.beta, y.head.abs()) + op(x.head.abs(), y.beta) + op(x.radius(), y.radius())
    return HybridZonotope(head, beta, product_rows(ex, ey, x.head, y.head, op), ids)


def product_rows(ex: Optional[Tensor], ey: Optional[Tensor], cx: Tensor, cy: Tensor,
                 op: Callable[[Tensor, Tensor], Tensor]) -> Optional[Tensor]:
    """The rows ``op(e_x, c_y) + op(c_x, e_y)`` of a product (either rows may be None). For
    ``torch.matmul`` with both, one matmul over the joined contraction axis,
    ``[e_x, c_x] @ [c_y; e_y]``: the rows of the (large) result are written once."""
    if ex is None:
        return None if ey is None else op(cx, ey)
    if ey is None:
        return op(ex, cy)
    if op is torch.matmul and cx.dim() >= 2 and cy.dim() >= 2:
        batch = torch.broadcast_shapes(ex.shape[:-2], ey.shape[:-2])
        left = torch.cat([ex.expand(*batch, *ex.shape[-2:]), cx.expand(*batch, *cx.shape[-2:])], -1)
        right = torch.cat([cy.expand(*batch, *cy.shape[-2:]), ey.expand(*batch, *ey.shape[-2:])], -2)
        return left @ right
    return op(ex, cy) + op(cx, ey)


def concat(zonos: Sequence[HybridZonotope], fn: Callable[[Sequence[Tensor]], Tensor]) -> HybridZonotope:
    """Image of several zonotopes under a batch-agnostic joining ``fn`` (``torch.cat`` along a
    non-batch axis), rows aligned by noise symbol; as in ``linear_map``, ``fn`` sees the rows
    folded into the batch."""
    rows, ids = align_rows(zonos)
    head = fn([z.head for z in zonos])
    beta = fn([z.beta for z in zonos])
    errors = None if rows[0] is None else on_folded_rows(lambda *folded: fn(folded), *rows)
    return HybridZonotope(head, beta, errors, ids)


# ---------------------------------------------------------------------------- ReLU
RELU_VARIANTS = ("boxy", "deepz", "switch", "smooth")


def _split_relu(z: HybridZonotope):
    lower, upper = z.concretize()
    active = lower >= 0
    crossing = (lower < 0) & (upper > 0)
    return lower, upper, active, crossing


def relu_interval(z: HybridZonotope) -> HybridZonotope:
    """Exact interval ReLU of the concretization (the Box domain's transformer):
    ``l' = relu(head - r)``, ``u' = relu(head + r)``, then ``head = (u' + l') / 2``,
    ``beta = (u' - l') / 2``; four tensors of the layer's size live at once (the ReLU and the
    halving in place, which autograd allows: relu_ keeps its result, mul_ needs neither)."""
    r = z.radius()
    lower, upper = (z.head - r).relu_(), (z.head + r).relu_()
    return HybridZonotope(torch.add(upper, lower).mul_(0.5), torch.sub(upper, lower).mul_(0.5))


def relu_boxy(z: HybridZonotope) -> HybridZonotope:
    """DiffAI's default: a stable neuron keeps (or zeroes) its generators; a crossing one,
    ``l < 0 < u``, becomes the box ``[0, u]``: ``head = beta = u/2``, its rows zeroed."""
    _, upper, active, crossing = _split_relu(z)
    keep = active.to(z.head.dtype)
    half_u = upper / 2
    head = torch.where(crossing, half_u, z.head * keep)
    beta = torch.where(crossing, half_u, z.beta * keep)
    errors = None if z.errors is None else z.errors * keep
    return HybridZonotope(head, beta, errors, z.ids)


def _slope_relaxation(z: HybridZonotope, slope: Tensor, offset: Tensor, radius: Tensor) -> HybridZonotope:
    """``y = slope * x + offset +- radius``: the generators scale, the box part scales by
    ``|slope|``, the new independent error goes into ``beta``."""
    errors = None if z.errors is None else z.errors * slope
    return HybridZonotope(z.head * slope + offset, z.beta * slope.abs() + radius, errors, z.ids)


def parallelogram(z: HybridZonotope, slope: Tensor, low: Tensor, high: Tensor) -> HybridZonotope:
    """The image of ``z`` under a function enclosed by ``slope x + [low, high]`` (DeepZ's
    parallelogram): ``y = slope x + (low + high) / 2 +- (high - low) / 2``; an infinite
    ``low`` or ``high`` gives offset 0 and an infinite radius (never ``inf - inf``)."""
    finite = torch.isfinite(low) & torch.isfinite(high)
    offset = torch.where(finite, (low + high) / 2, torch.zeros_like(low))
    radius = torch.where(finite, (high - low) / 2, torch.full_like(low, math.inf))
    return _slope_relaxation(z, slope, offset, radius)


def relu_deepz(z: HybridZonotope) -> HybridZonotope:
    """DeepZ / DiffAI's NIPS transformer: on a crossing neuron ``y = lam x + mu +- mu`` with
    ``lam = u / (u - l)``, ``mu = -lam l / 2``; stable neurons exact."""
    lower, upper, active, crossing = _split_relu(z)
    lam = torch.where(crossing, upper / (upper - lower).clamp_min(1e-30), active.to(z.head.dtype))
    mu = torch.where(crossing, -lam * lower / 2, torch.zeros_like(lower))
    return _slope_relaxation(z, lam, mu, mu)


def relu_switch(z: HybridZonotope) -> HybridZonotope:
    """DiffAI's switch: a crossing neuron with ``u > -l`` keeps its generators with slope 1,
    ``y = x - l/2 +- (-l/2)`` (the bounds ``x <= relu(x) <= x - l``); otherwise it becomes the
    box ``[0, u]`` as in boxy."""
    lower, _, _, crossing = _split_relu(z)
    boxed = relu_boxy(z)
    identity_like = crossing & (z.head > 0)  # u > -l  <=>  head > 0
    half_l = -lower / 2
    head = torch.where(identity_like, z.head + half_l, boxed.head)
    beta = torch.where(identity_like, z.beta + half_l, boxed.beta)
    errors = None if z.errors is None else torch.where(identity_like, z.errors, boxed.errors)
    return HybridZonotope(head, beta, errors, z.ids)


SMOOTH_GUARD = 1e-4  # DiffAI's creluSmooth keeps t finite where u = l


def relu_smooth(z: HybridZonotope) -> HybridZonotope:
    """DiffAI's smooth variant (``creluSmooth``): a differentiable blend of the switch's two
    relaxations of a crossing neuron, ``(1 - t) * (x - l/2 +- (-l/2)) + t * (u/2 +- u/2)`` with
    ``t = -l / (u - l + 1e-4)`` (DiffAI's guard against ``u = l``); a convex combination of
    sound enclosures is sound."""
    lower, upper, active, crossing = _split_relu(z)
    t = torch.where(crossing, -lower / (upper - lower + SMOOTH_GUARD), torch.zeros_like(lower))
    slope = torch.where(crossing, 1 - t, active.to(z.head.dtype))
    box_part = torch.where(crossing, t * upper / 2, torch.zeros_like(upper))
    line_part = torch.where(crossing, -slope * lower / 2, torch.zeros_like(lower))
    return _slope_relaxation(z, slope, box_part + line_part, box_part + line_part)


_RELUS = {"boxy": relu_boxy, "deepz": relu_deepz, "switch": relu_switch, "smooth": relu_smooth}


def relu(z: HybridZonotope, variant: str = "boxy") -> HybridZonotope:
    """ReLU transformer; a zonotope with no rows (a box) takes the exact interval ReLU."""
    if z.errors is None:
        return relu_interval(z)
    return _RELUS[variant](z)


def s_shaped(z: HybridZonotope, fn: Callable[[Tensor], Tensor],
             derivative: Callable[[Tensor], Tensor]) -> HybridZonotope:
    """Sigmoid/tanh: ``y = lam x + [f(l) - lam l, f(u) - lam u]`` with
    ``lam = min(f'(l), f'(u))`` (f' is unimodal, so ``f(x) - lam x`` is non-decreasing on
    [l, u]). Without rows this is exactly the interval ``[f(l), f(u)]``."""
    lower, upper = z.concretize()
    lam = torch.minimum(derivative(lower), derivative(upper))
    low_off = fn(lower) - lam * lower
    high_off = fn(upper) - lam * upper
    if z.errors is None:
        return HybridZonotope.from_box(fn(lower), fn(upper))
    return parallelogram(z, lam, low_off, high_off)


def monotone_box(z: HybridZonotope, fn: Callable[[Tensor], Tensor], exact: Tensor) -> HybridZonotope:
    """A non-decreasing ``fn``: where ``exact`` (the identity on the whole range) the zonotope is
    kept, elsewhere replaced by the box ``[fn(l), fn(u)]``."""
    lower, upper = z.concretize()
    box = HybridZonotope.from_box(fn(lower), fn(upper))
    keep = exact.to(z.head.dtype)
    errors = None if z.errors is None else z.errors * keep
    return HybridZonotope(torch.where(exact, z.head, box.head), torch.where(exact, z.beta, box.beta),
                          errors, z.ids)


# ------------------------------------------------------------------- correlation
def correlate(z: HybridZonotope, index: Tensor) -> HybridZonotope:
    """The paper's correlation layer (section 3.1) on the dims ``index`` (B, k) of each sample's
    flattened variables: each selected dim ``i`` gets a new row whose only non-zero entry is
    ``beta_i`` at ``i``, and ``beta_i`` becomes 0. The k new rows get fresh ids (row t of
    sample b stands for the t-th dim selected in sample b)."""
    batch, k = index.shape
    beta = z.beta.reshape(z.shape[0], -1)   # (B, p), also for values of shape (B,)
    picked = beta.gather(1, index)
    rows = beta.new_zeros((batch, k, beta.shape[1])).scatter(2, index.unsqueeze(-1), picked.unsqueeze(-1))
    new_rows = rows.transpose(0, 1).reshape((k,) + tuple(z.shape))
    new_beta = beta.scatter(1, index, torch.zeros_like(picked)).view_as(z.beta)
    errors = new_rows if z.errors is None else torch.cat([z.errors, new_rows])
    return HybridZonotope(z.head, new_beta, errors, z.ids + fresh_ids(k))


def correlate_all(z: HybridZonotope) -> HybridZonotope:
    """CorrelateAll: ``P = {i | 0 <= i < p}``."""
    p = z.beta[0].numel()
    return correlate(z, torch.arange(p, device=z.head.device).expand(z.shape[0], p))


def correlate_fixed(z: HybridZonotope, k: int) -> HybridZonotope:
    """CorrelateFixed k: ``P = {floor(i p / k) | 0 <= i < k}``."""
    p = z.beta[0].numel()
    k = min(k, p)
    index = torch.arange(k, device=z.head.device) * p // k
    return correlate(z, index.expand(z.shape[0], k))


def correlate_max_k(z: HybridZonotope, k: int) -> HybridZonotope:
    """CorrelateMax k: the k dims with the largest interval upper bound, per sample."""
    _, upper = z.concretize()
    k = min(k, upper[0].numel())
    return correlate(z, upper.reshape(upper.shape[0], -1).topk(k, dim=1).indices)


def correlate_where(z: HybridZonotope, mask: Tensor) -> HybridZonotope:
    """The correlation layer with ``P`` given per sample by the boolean ``mask`` (B, *shape)
    (section 3.1: ``h'_{E,i,m+t} = h_{B,i}`` for ``i`` in P and ``t = |P_<i|``, ``h'_{B,i} = 0``).
    Samples may select different numbers of dims: there are ``max_b |P_b|`` new rows and a
    sample with fewer selected dims gets zero rows for the rest."""
    flat = mask.reshape(mask.shape[0], -1)
    k = int(flat.sum(1).max())
    if k == 0:
        return z
    # selected dims first, each sample's in ascending order; the rest pad the k columns
    index = flat.to(torch.uint8).sort(dim=1, descending=True, stable=True).indices[:, :k]
    selected = correlate(HybridZonotope(z.head, z.beta * mask, z.errors, z.ids), index)
    return HybridZonotope(z.head, selected.beta + z.beta * ~mask, selected.errors, selected.ids)


def correlate_random(z: HybridZonotope, k: int, generator: Optional[torch.Generator] = None) -> HybridZonotope:
    """DiffAI's stochastic correlation (``CorrRand k``, ``HRand k``): ``P`` = k dims drawn
    uniformly without replacement, per sample (``min(k, p)``)."""
    batch, p = z.shape[0], z.beta[0].numel()
    k = min(k, p)
    if k == 0:
        return z
    scores = torch.rand((batch, p), generator=generator, device=z.head.device)
    return correlate(z, scores.topk(k, dim=1).indices)


def keep_rows(z: HybridZonotope, kept: Tensor) -> HybridZonotope:
    """DiffAI's decorrelation: the rows ``kept`` (k, B) of each sample stay, in that order,
    and every other row goes into the box part, ``h'_B = h_B + sum_{j not kept} |h_E,j|``.
    The kept rows get fresh ids: which symbol a kept row stands for differs between samples."""
    magnitude = z.errors.abs()
    expand = (1,) * (z.errors.dim() - 2)
    dropped = torch.ones(magnitude.shape[:2], dtype=z.head.dtype, device=z.head.device).scatter(0, kept, 0.0)
    beta = z.beta + sum_rows(magnitude * dropped.view(*dropped.shape, *expand))
    rows = z.errors.gather(0, kept.view(*kept.shape, *expand).expand(kept.shape[0], *z.shape))
    return HybridZonotope(z.head, beta, rows, fresh_ids(kept.shape[0]))


def decorrelate_min_k(z: HybridZonotope, k: int) -> HybridZonotope:
    """DecorrelateMin k (section 3.2): ``P`` = the m - k rows with the smallest
    ``sum_i |h_{E,i,j}|`` (per sample); ``h'_{B,i} = h_{B,i} + sum_{j in P} |h_{E,i,j}|`` and the
    k other rows stay, in their order. ``k >= m`` keeps every row."""
    if z.errors is None or k >= z.num_errors:
        return z
    if k <= 0:
        return z.decorrelate_all()
    mass = z.errors.abs().flatten(2).sum(2)                       # (m, B)
    return keep_rows(z, mass.topk(k, dim=0).indices.sort(dim=0).values)


def decorrelate_random(z: HybridZonotope, k: int, generator: Optional[torch.Generator] = None) -> HybridZonotope:
    """DiffAI's stochastic decorrelation (``DecorrRand k``): k rows drawn uniformly without
    replacement per sample go into the box part, the m - k others stay; ``k >= m`` moves
    every row, ``k = 0`` none."""
    if z.errors is None or k <= 0:
        return z
    if k >= z.num_errors:
        return z.decorrelate_all()
    scores = torch.rand(z.errors.shape[:2], generator=generator, device=z.head.device)   # (m, B)
    return keep_rows(z, scores.topk(z.num_errors - k, dim=0).indices.sort(dim=0).values)
