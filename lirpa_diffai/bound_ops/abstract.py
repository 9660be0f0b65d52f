"""Bound classes of DiffAI's abstract layers (``lirpa_diffai.domain.abstract_layers``, paper section 3)
and their hzono transformers.

Every abstract layer is the identity for auto_LiRPA's methods (forward, IBP, CROWN, forward
mode), so those give exactly the bounds of the network without it. For ``method="hzono"``
it transforms the hybrid zonotope ``h = (h_C, h_B, h_E)``; ``h'_C = h_C`` always. A layer with
``only_train`` acts only while the node (the BoundedModule) is in training mode.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from auto_LiRPA import register_custom_op
from auto_LiRPA.operators import Bound, BoundInput

from .. import hybrid_zono as hz
from ..domain import zonotope
from ..domain.abstract_layers import TRACED_DEEP_LOSSES
from ..hybrid_zono import HybridZonotope
from .registry import register

Tensor = torch.Tensor


class BoundAbstractLayer(Bound):
    """The identity for every auto_LiRPA method; ``hzono(ctx, z)`` is the layer's transformer."""

    def __init__(self, attr=None, inputs=None, output_index=0, options=None):
        super().__init__(attr, inputs, output_index, options)
        self.only_train = bool(self.attr.get("only_train", 0))

    def forward(self, x):
        return x

    def interval_propagate(self, *v):
        return v[0]

    def bound_backward(self, last_lA, last_uA, x):
        return [(last_lA, last_uA)], 0, 0

    def bound_forward(self, dim_in, x):
        return x

    def acts(self) -> bool:
        return self.training or not self.only_train

    def hzono(self, ctx, z: HybridZonotope) -> HybridZonotope:
        raise NotImplementedError

    def pure_after(self, pure: bool) -> bool:
        """Whether the value after this layer is a pure zonotope (``pure``: whether its input
        is); only ToZono / ToHZono change it."""
        return pure


def abstract_layer(ctx, node, z):
    """The hzono transformer of every abstract layer: its own ``hzono`` where it acts."""
    return node.hzono(ctx, z) if node.acts() else z


class BoundCorrelateAll(BoundAbstractLayer):
    """``P`` = all dims."""

    def hzono(self, ctx, z):
        return hz.correlate_all(z)


class BoundCorrelateFixed(BoundAbstractLayer):
    """``P = {floor(i p / k) | 0 <= i < k}``."""

    def hzono(self, ctx, z):
        return hz.correlate_fixed(z, self.attr["k"])


class BoundCorrelateMaxK(BoundAbstractLayer):
    """``P`` = the k dims with the largest upper bound, per sample."""

    def hzono(self, ctx, z):
        return hz.correlate_max_k(z, self.attr["k"])


class BoundCorrelateMaxPool(BoundAbstractLayer):
    """``P = {i | f(i) in MAXPOOL(f)}`` with ``f = h_C`` on the network input, else ``h_B``."""

    def hzono(self, ctx, z):
        f = z.head if isinstance(self.inputs[0], BoundInput) else z.beta
        return hz.correlate_where(z, window_maxima(f, self.attr["kernel_size"], self.attr["stride"]))


class BoundDecorrelateAll(BoundAbstractLayer):
    """``h'_B = h_B + sum_j |h_E,j|``, no rows (also Concretize)."""

    def hzono(self, ctx, z):
        return z.decorrelate_all()


class BoundDecorrelateMin(BoundAbstractLayer):
    """Keep the k rows with the largest total |coefficient| per sample, the rest into ``h_B``."""

    def hzono(self, ctx, z):
        return hz.decorrelate_min_k(z, self.attr["k"])


class BoundCorrRand(BoundAbstractLayer):
    """``P`` = k dims drawn at random, per sample."""

    def hzono(self, ctx, z):
        return hz.correlate_random(z, self.attr["k"])


class BoundDecorrRand(BoundAbstractLayer):
    """k rows drawn at random per sample go into ``h_B``."""

    def hzono(self, ctx, z):
        return hz.decorrelate_random(z, self.attr["k"])


class BoundToZono(BoundAbstractLayer):
    """``h_B`` into fresh rows; the value is a pure zonotope from here on."""

    def hzono(self, ctx, z):
        return zonotope.box_to_rows(z)

    def pure_after(self, pure):
        return True if self.acts() else pure


class BoundToHZono(BoundAbstractLayer):
    """The value is a hybrid zonotope from here on."""

    def hzono(self, ctx, z):
        return z

    def pure_after(self, pure):
        return False if self.acts() else pure


class BoundDeepLoss(BoundAbstractLayer):
    """Records ``(weight, L_deep(iota(h)))`` in ``ctx.aux_losses``; ``h`` passes unchanged."""

    def __init__(self, attr=None, inputs=None, output_index=0, options=None):
        super().__init__(attr, inputs, output_index, options)
        self.current_weight = TRACED_DEEP_LOSSES[self.attr["key"]].current_weight

    def hzono(self, ctx, z):
        ctx.aux_losses.append((self.current_weight(), deep_loss(*z.concretize())))
        return z


def window_maxima(f: Tensor, kernel_size, stride) -> Tensor:
    """Boolean mask (shaped like ``f``, (B, *shape)) of the positions that hold the maximum of
    some max-pooling window over the last ``len(kernel_size)`` dims of each sample. A window
    larger than the input is the whole input (max-pooling would have no window at all)."""
    dims = len(kernel_size)
    if f.dim() - 1 < dims:
        raise ValueError(f"CorrelateMaxPool: a {dims}-D kernel on inputs of shape {tuple(f.shape[1:])}")
    pool = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[dims - 1]
    planes = f.reshape(f.shape[0], -1, *f.shape[f.dim() - dims:])
    kernel_size = tuple(min(k, size) for k, size in zip(kernel_size, planes.shape[2:]))
    _, index = pool(planes, kernel_size, stride, return_indices=True)
    mask = torch.zeros(planes.shape[:2] + (planes[0, 0].numel(),), dtype=torch.bool, device=f.device)
    return mask.scatter(2, index.flatten(2), True).view_as(f)


def deep_loss(lower: Tensor, upper: Tensor) -> Tensor:
    """The paper's ``L_deep,f`` (section 3.3) with ``f = relu``, averaged over the batch, of the
    intervals ``[lower, upper]`` (B, *shape) flattened per sample into n dims::

        L_lb,i = max{f(u_j - l_i) | l_j <= l_i}     L_ub,i = max{f(u_i - l_j) | u_i <= u_j}
        L_deep = 1/(2n) sum_i (L_lb,i + L_ub,i)

    in O(n log n): ``L_ub`` is ``L_lb`` of the mirrored intervals ``[-u, -l]``."""
    lower, upper = lower.flatten(1), upper.flatten(1)
    both = _lower_overlap(lower, upper) + _lower_overlap(-upper, -lower)
    return both.mean(1).mean() / 2


def _lower_overlap(lower: Tensor, upper: Tensor) -> Tensor:
    """``L_lb,i = relu(max{u_j | l_j <= l_i} - l_i)`` per sample (B, n): sort by lower bound,
    prefix maximum of the upper bounds, read at the last position whose lower bound is <= l_i."""
    sorted_lower, order = lower.sort(dim=1)
    prefix_max = upper.gather(1, order).cummax(dim=1).values
    last = torch.searchsorted(sorted_lower.detach().contiguous(), lower.detach().contiguous(), right=True) - 1
    return F.relu(prefix_max.gather(1, last) - lower)


ABSTRACT_OPS = {
    "custom::CorrelateAll": BoundCorrelateAll,
    "custom::CorrelateFixed": BoundCorrelateFixed,
    "custom::CorrelateMaxK": BoundCorrelateMaxK,
    "custom::CorrelateMaxPool": BoundCorrelateMaxPool,
    "custom::DecorrelateAll": BoundDecorrelateAll,
    "custom::Concretize": BoundDecorrelateAll,
    "custom::DecorrelateMin": BoundDecorrelateMin,
    "custom::CorrRand": BoundCorrRand,
    "custom::DecorrRand": BoundDecorrRand,
    "custom::ToZono": BoundToZono,
    "custom::ToHZono": BoundToHZono,
    "custom::DeepLoss": BoundDeepLoss,
}

for _op, _bound in ABSTRACT_OPS.items():
    register_custom_op(_op, _bound)
register(*dict.fromkeys(ABSTRACT_OPS.values()))(abstract_layer)
