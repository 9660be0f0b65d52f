"""DiffAI's abstract layers (paper section 3) as ``nn.Module``s.

Each is the identity in concrete execution. When auto_LiRPA traces a network it becomes the
custom operator ``custom::<Name>`` (see ``lirpa_diffai.bound_ops.abstract``), which is the
identity for IBP / CROWN and a transformer of the hybrid zonotope for ``method="hzono"``.
With ``only_train=True`` a layer acts only while the ``BoundedModule`` is in training mode.

A layer's state is configuration, not weights: it has no parameters or buffers, so a
checkpoint of a network with abstract layers loads into the same network without them
(as long as the other modules keep their names, as the zoo's ``insert`` does).
"""
from __future__ import annotations

import weakref
from typing import Callable, ClassVar, Sequence, Union

import torch
from torch import nn

Weight = Union[float, Callable[[float], float]]

# DeepLoss layers by the key their traced operator carries (see DeepLoss.forward)
TRACED_DEEP_LOSSES: "weakref.WeakValueDictionary[int, DeepLoss]" = weakref.WeakValueDictionary()


class _CustomIdentity(torch.autograd.Function):
    """The identity, exported as ``custom::<name>`` with the ONNX attributes ``attrs``
    (``(name_i, int or list of ints)`` pairs)."""

    @staticmethod
    def forward(ctx, x, name, attrs):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad, None, None

    @staticmethod
    def symbolic(g, x, name, attrs):
        out = g.op(f"custom::{name}", x, **{f"{key}_i": value for key, value in attrs})
        out.setType(x.type())
        return out


class AbstractLayer(nn.Module):
    """Base class: the identity, traced as ``custom::<op_name>`` with the integer fields
    ``fields`` and ``only_train`` as attributes."""

    op_name: ClassVar[str]
    fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, only_train: bool):
        super().__init__()
        self.only_train = bool(only_train)

    def attributes(self) -> tuple[tuple[str, object], ...]:
        """``(name, value)`` of the operator's attributes: the ``fields`` and ``only_train``."""
        return tuple((name, getattr(self, name)) for name in self.fields) + \
            (("only_train", int(self.only_train)),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_tracing():
            return _CustomIdentity.apply(x, self.op_name, self.attributes())
        return x

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={getattr(self, name)}" for name in self.fields + ("only_train",))


def _int_at_least(value: int, minimum: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _window(value: int | Sequence[int], default_dims: int, name: str) -> list[int]:
    size = [value] * default_dims if isinstance(value, int) else list(value)
    if len(size) not in (1, 2, 3):
        raise ValueError(f"{name} must have 1, 2 or 3 entries, got {value!r}")
    return [_int_at_least(s, 1, name) for s in size]


class CorrelateAll(AbstractLayer):
    """CorrelateAll: ``P = {i | 0 <= i < p}``; every dim ``i`` gets a new error row whose only
    non-zero entry is ``h_{B,i}``, and ``h'_B = 0``."""

    op_name = "CorrelateAll"

    def __init__(self, only_train: bool = False):
        super().__init__(only_train)


class CorrelateFixed(AbstractLayer):
    """CorrelateFixed k: ``P = {floor(i p / k) | 0 <= i < k}`` (every p/k-th flattened dim)."""

    op_name = "CorrelateFixed"
    fields = ("k",)

    def __init__(self, k: int, only_train: bool = True):
        super().__init__(only_train)
        self.k = _int_at_least(k, 1, "k")


class CorrelateMaxK(AbstractLayer):
    """CorrelateMax k: ``P = {i | UB(iota(h)_i) in TOP_k(UB(iota(h)))}``, the k dims with the
    largest interval upper bound (per sample)."""

    op_name = "CorrelateMaxK"
    fields = ("k",)

    def __init__(self, k: int, only_train: bool = True):
        super().__init__(only_train)
        self.k = _int_at_least(k, 1, "k")


class CorrelateMaxPool(AbstractLayer):
    """CorrelateMaxPool: ``P = {i | f(i) in MAXPOOL_kernel,stride(f)}``, the positions holding
    each window's maximum, with ``f = h_C`` when the layer comes before any other layer (its
    input is the network input) and ``f = h_B`` otherwise. A 2-D ``kernel_size`` (an int or
    (h, w)) pools over (H, W) per channel; a 3-D one (c, h, w) over (C, H, W), as DiffAI's
    CorrMaxPool3D. ``stride`` defaults to ``kernel_size``."""

    op_name = "CorrelateMaxPool"
    fields = ("kernel_size", "stride")

    def __init__(self, kernel_size: int | Sequence[int], stride: int | Sequence[int] | None = None,
                 only_train: bool = True):
        super().__init__(only_train)
        self.kernel_size = _window(kernel_size, 2, "kernel_size")
        self.stride = self.kernel_size if stride is None else \
            _window(stride, len(self.kernel_size), "stride")


class DecorrelateAll(AbstractLayer):
    """DecorrelateAll: ``h'_{B,i} = h_{B,i} + sum_{j<m} |h_{E,i,j}|``, no correlated rows left."""

    op_name = "DecorrelateAll"

    def __init__(self, only_train: bool = True):
        super().__init__(only_train)


class Concretize(DecorrelateAll):
    """Concretize: the interval concretization as a box; the same as DecorrelateAll."""

    op_name = "Concretize"


class DecorrelateMin(AbstractLayer):
    """DecorrelateMin k: keeps the k rows with the largest ``sum_i |h_{E,i,j}|`` (per sample)
    and moves the others into the box part, ``h'_{B,i} = h_{B,i} + sum_{j in P} |h_{E,i,j}|``;
    with ``k >= m`` every row stays."""

    op_name = "DecorrelateMin"
    fields = ("k",)

    def __init__(self, k: int, only_train: bool = True):
        super().__init__(only_train)
        self.k = _int_at_least(k, 0, "k")


class CorrRand(AbstractLayer):
    """DiffAI's CorrRand k: the correlation layer with ``P`` = k dims drawn uniformly at random
    without replacement, per sample and per pass (``min(k, p)``)."""

    op_name = "CorrRand"
    fields = ("k",)

    def __init__(self, k: int, only_train: bool = True):
        super().__init__(only_train)
        self.k = _int_at_least(k, 1, "k")


class DecorrRand(AbstractLayer):
    """DiffAI's DecorrRand k: k of the m rows, drawn uniformly at random per sample and per
    pass, move into the box part, ``h'_{B,i} = h_{B,i} + sum_{j in P} |h_{E,i,j}|``; the m - k
    others stay (``k >= m``: DecorrelateAll). Note the count: k rows *leave*, where
    DecorrelateMin k *keeps* k."""

    op_name = "DecorrRand"
    fields = ("k",)

    def __init__(self, k: int, only_train: bool = True):
        super().__init__(only_train)
        self.k = _int_at_least(k, 0, "k")


class ToZono(AbstractLayer):
    """DiffAI's ToZono: from here on the value is a pure zonotope (``lirpa_diffai.domain.zonotope``):
    its box part becomes fresh rows now, ``(c, beta, E) -> (c, 0, [E; diag(beta)])``, and after
    every later non-linearity. The ReLU variant stays the pass's. Acts in every mode by
    default, as in DiffAI."""

    op_name = "ToZono"

    def __init__(self, only_train: bool = False):
        super().__init__(only_train)


class ToHZono(AbstractLayer):
    """DiffAI's ToHZono: from here on the value is a hybrid zonotope again (non-linearities
    keep their box part); the value itself is unchanged."""

    op_name = "ToHZono"

    def __init__(self, only_train: bool = False):
        super().__init__(only_train)


class DeepLoss(AbstractLayer):
    """DeepLoss (section 3.3): during an hzono pass records
    ``L_deep(c) = 1/(2n) sum_i (L_lb,i(c) + L_ub,i(c))`` of the interval concretization ``c``
    of its input, with ``L_lb,i = max{relu(u_j - l_i) | l_j <= l_i}`` and
    ``L_ub,i = max{relu(u_i - l_j) | u_i <= u_j}``, as ``(weight, loss)`` in the
    BoundedModule's ``hzono_aux_losses``. ``weight`` is a number or a schedule
    ``weight(epoch) -> float`` read at the epoch last given to :meth:`set_epoch`."""

    op_name = "DeepLoss"
    fields = ("key",)

    def __init__(self, weight: Weight, only_train: bool = True):
        super().__init__(only_train)
        if not callable(weight) and not isinstance(weight, (int, float)):
            raise TypeError(f"weight must be a number or a callable epoch -> float, got {weight!r}")
        self.weight = weight
        self.epoch = 0.0

    @property
    def key(self) -> int:
        return id(self)

    def set_epoch(self, epoch: float) -> None:
        """The training time (fractional epochs) at which the weight schedule is read."""
        self.epoch = float(epoch)

    def current_weight(self) -> float:
        return float(self.weight(self.epoch) if callable(self.weight) else self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_tracing():
            TRACED_DEEP_LOSSES[self.key] = self
        return super().forward(x)

    def extra_repr(self) -> str:
        return f"weight={self.weight}, only_train={self.only_train}"


def set_epoch(model: nn.Module, epoch: float) -> None:
    """Set the training time of every DeepLoss layer in ``model`` (call once per step or epoch)."""
    for module in model.modules():
        if isinstance(module, DeepLoss):
            module.set_epoch(epoch)


__all__ = ["AbstractLayer", "CorrelateAll", "CorrelateFixed", "CorrelateMaxK", "CorrelateMaxPool",
           "DecorrelateAll", "DecorrelateMin", "Concretize", "CorrRand", "DecorrRand", "ToZono",
           "ToHZono", "DeepLoss", "set_epoch"]
