"""Max pooling over windows that may overlap, as CROWN bounds it (:mod:`.fixes_pooling` installs
it on ``BoundMaxPool``): the windows of every output as an ``unfold`` of the input padded with
``-inf`` (the padding of max pooling), the backward map as its transpose ``fold``, which sums
the coefficients that several overlapping windows put on one input.

The relaxation of ``y = max_{i in W} x_i`` over a window ``W`` of inputs with bounds
``l_i <= x_i <= u_i`` (DeepPoly's max pool, Singh et al. POPL 2019; auto_LiRPA's ``BoundMaxPool``):
lower ``y >= sum_i a_i x_i`` for any ``a`` on the simplex of ``W`` (``a`` the one-hot of
``argmax_i l_i``, or alpha-CROWN's optimised weights); upper ``y <= x_j`` where
``l_j >= max_{i != j} u_i`` (then ``y = x_j``), else ``y <= max_i u_i``. Padded positions are
outside ``W``: no weight of either bound lands on them.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import prod

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Windows:
    """The geometry of a 2-d max pool on an input of spatial size ``size``: each output
    ``(oh, ow)`` reads ``kernel`` positions ``stride * o - padding + dilation * k``. ``extra``:
    the padding past the bottom / right that ``ceil_mode``'s last windows reach."""
    size: tuple
    out: tuple
    kernel: tuple
    stride: tuple
    padding: tuple
    dilation: tuple

    @property
    def extra(self) -> tuple:
        return tuple(max(0, (o - 1) * s + d * (k - 1) + 1 - (n + 2 * p))
                     for n, o, k, s, p, d in zip(self.size, self.out, self.kernel, self.stride, self.padding,
                                                 self.dilation))

    @property
    def padded(self) -> tuple:
        return tuple(n + 2 * p + e for n, p, e in zip(self.size, self.padding, self.extra))

    @property
    def taps(self) -> int:
        return prod(self.kernel)

    def unfold(self, t: torch.Tensor, fill: float) -> torch.Tensor:
        """``(N, C, H, W) -> (N, C, taps, oh, ow)``: each output's window, positions outside
        the input read ``fill``."""
        (ph, pw), (eh, ew) = self.padding, self.extra
        n, c = t.shape[:2]
        t = F.pad(t.reshape(n * c, 1, *self.size), (pw, pw + ew, ph, ph + eh), value=fill)
        cols = F.unfold(t, self.kernel, dilation=self.dilation, stride=self.stride)
        return cols.reshape(n, c, self.taps, *self.out)

    def fold(self, w: torch.Tensor) -> torch.Tensor:
        """The transpose of :meth:`unfold`: ``(N, C, taps, oh, ow) -> (N, C, H, W)``, summing the
        entries that overlapping windows put on one input; padded positions are dropped."""
        n, c = w.shape[:2]
        image = F.fold(w.reshape(n * c, self.taps, prod(self.out)), self.padded, self.kernel,
                       dilation=self.dilation, stride=self.stride)
        (ph, pw), (h, wd) = self.padding, self.size
        return image.reshape(n, c, *self.padded)[..., ph:ph + h, pw:pw + wd]

    def inside(self, like: torch.Tensor) -> torch.Tensor:
        """``(1, 1, taps, oh, ow)``: True where a window position lies in the input."""
        return self.unfold(torch.ones(1, 1, *self.size, dtype=like.dtype, device=like.device), 0.0) > 0


def windows_of(node) -> Windows:
    """The :class:`Windows` of a ``BoundMaxPool`` node (its shapes are known once it ran)."""
    return Windows(tuple(node.input_shape[-2:]), tuple(node.output_shape[-2:]), tuple(node.kernel_size),
                   tuple(node.stride), tuple(node.padding), tuple(node.dilation))


@dataclass
class Relaxation:
    """Per output ``(B, C, oh, ow)`` and window position ``taps``: ``lower_d`` the one-hot of the
    largest lower bound; ``upper_d`` that one-hot where the output is that input (else 0);
    ``upper_b`` the largest upper bound where it is not (else 0)."""
    lower_d: torch.Tensor
    upper_d: torch.Tensor
    upper_b: torch.Tensor


def relax(win: Windows, lower: torch.Tensor, upper: torch.Tensor) -> Relaxation:
    """The max pool's linear bounds from its input bounds (module docstring); ``lower``,
    ``upper``: ``(B, C, H, W)``."""
    inside = win.inside(lower)
    lw, uw = win.unfold(lower, -torch.inf), win.unfold(upper, -torch.inf)
    # a position inside the input always outranks the padding, also where l = -inf
    score = torch.where(inside, lw.nan_to_num(neginf=torch.finfo(lw.dtype).min), -torch.inf)
    best = score.argmax(dim=2, keepdim=True)
    one_hot = torch.zeros_like(lw).scatter_(2, best, 1.0)
    others = torch.where(one_hot.bool(), -torch.inf, uw).amax(dim=2)
    exact = lw.gather(2, best).squeeze(2) >= others
    upper_b = torch.where(exact, torch.zeros_like(others), uw.amax(dim=2))
    return Relaxation(one_hot, one_hot * exact.unsqueeze(2), upper_b)


def simplex_weights(alpha: torch.Tensor, inside: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    """alpha-CROWN's lower-bound weights ``a`` on the simplex of each window's inputs: ``max(alpha,
    0)`` outside the padding, normalised to sum 1; ``fallback`` (the one-hot) where that is all 0."""
    w = alpha.clamp(min=0) * inside
    total = w.sum(dim=2, keepdim=True)
    return torch.where(total > 0, w / torch.where(total > 0, total, torch.ones_like(total)), fallback)


def weighted_bias(A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``sum A b`` per (spec, batch) for ``A (S, B, C, oh, ow)``, ``b (B, C, oh, ow)``; a zero
    coefficient times an infinite bound counts 0, not NaN."""
    return torch.where(A == 0, torch.zeros_like(A), A * b).flatten(2).sum(-1)


def backward(win: Windows, A: torch.Tensor, d_pos: torch.Tensor, d_neg: torch.Tensor, b_pos=None, b_neg=None):
    """One side of the backward pass for dense ``A (S, B, C, oh, ow)``: the input's coefficients
    ``fold(A+ d_pos + A- d_neg)`` ``(S, B, C, H, W)`` and the bias ``A+ b_pos + A- b_neg`` (a
    missing ``b``: 0). ``d_pos``, ``d_neg``: ``(B, C, taps, oh, ow)``, or with a leading spec axis."""
    pos, neg = A.clamp(min=0), A.clamp(max=0)
    coefficients = pos.unsqueeze(3) * d_pos + neg.unsqueeze(3) * d_neg
    s, b = A.shape[:2]
    next_A = win.fold(coefficients.reshape(s * b, *coefficients.shape[2:])).reshape(s, b, -1, *win.size)
    bias = sum(weighted_bias(part, b_part) for part, b_part in ((pos, b_pos), (neg, b_neg)) if b_part is not None)
    return next_A, bias


def tap_kernel(win: Windows, channels: int, like: torch.Tensor) -> torch.Tensor:
    """The windows as a convolution: ``(C * taps, C, KH, KW)``, output channel ``c * taps + t``
    the input channel ``c`` at window position ``t`` (the dilated kernel's one-hots), so that
    ``conv(x)`` is :meth:`Windows.unfold` of ``x`` (zero padding) with its axes ``C, taps`` merged."""
    (kh, kw), (dh, dw) = win.kernel, win.dilation
    kernel = torch.zeros(channels, win.taps, channels, (kh - 1) * dh + 1, (kw - 1) * dw + 1,
                         dtype=like.dtype, device=like.device)
    eye = torch.eye(channels, dtype=like.dtype, device=like.device)
    for t in range(win.taps):
        a, b = divmod(t, kw)
        kernel[:, t, :, a * dh, b * dw] = eye
    return kernel.reshape(channels * win.taps, channels, *kernel.shape[-2:])


def taps_convolution(node, win: Windows, kernel: torch.Tensor):
    """A stand-in ``BoundConv`` for :func:`tap_kernel` on the max pool's input (its backward
    pass keeps ``Patches``), and its kernel node."""
    import types
    channels = node.input_shape[1]
    conv = types.SimpleNamespace(
        input_shape=node.input_shape, output_shape=(node.output_shape[0], channels * win.taps, *win.out),
        stride=list(win.stride), padding=list(win.padding), dilation=[1, 1], groups=1, has_bias=False,
        relu_followed=False, is_input_perturbed=lambda index: False)
    return conv, types.SimpleNamespace(lower=kernel)


def per_tap(patches: torch.Tensor, taps: int) -> torch.Tensor:
    """Patches over the pool's output ``(..., C, h, w)`` repeated for each window position:
    ``(..., C * taps, h, w)`` (the coefficients of the merged ``C, taps`` axis before the sum)."""
    shape = patches.shape
    return patches.unsqueeze(-3).expand(*shape[:-3], shape[-3], taps, *shape[-2:]).reshape(
        *shape[:-3], shape[-3] * taps, *shape[-2:])
