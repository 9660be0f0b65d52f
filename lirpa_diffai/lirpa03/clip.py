"""``onnx::Clip`` (``torch.clamp``), which auto_LiRPA 0.3 lacks: a Bound class for IBP and
CROWN, registered as a custom operator when the package is imported."""
from __future__ import annotations

import torch
from auto_LiRPA.operators import BoundActivation


class BoundClip(BoundActivation):
    """``clamp(x, low, high)`` with constant ``low``/``high`` (ONNX opset >= 11 passes them as
    inputs). CROWN relaxation: the identity where ``[l, u]`` lies inside ``[low, high]``,
    otherwise the constant bounds ``clamp(l) <= y <= clamp(u)``."""

    def forward(self, x, low=None, high=None):
        self.low, self.high = clip_limit(low), clip_limit(high)
        return torch.clamp(x, self.low, self.high)

    def interval_propagate(self, *v):
        (x_lower, x_upper), *bounds = v
        low, high = (b[0] for b in bounds) if bounds else (None, None)
        return self.forward(x_lower, low, high), self.forward(x_upper, low, high)

    def bound_relax(self, x):
        lower, upper = x.lower, x.upper
        inside = torch.ones_like(lower, dtype=torch.bool)
        if self.low is not None:
            inside &= lower >= self.low
        if self.high is not None:
            inside &= upper <= self.high
        slope = inside.to(lower.dtype)
        self.lw = self.uw = slope
        self.lb = torch.where(inside, torch.zeros_like(lower), self.forward(lower, self.low, self.high))
        self.ub = torch.where(inside, torch.zeros_like(upper), self.forward(upper, self.low, self.high))

    def bound_backward(self, last_lA, last_uA, x, *bounds):
        A, lbias, ubias = super().bound_backward(last_lA, last_uA, x)
        return A + [(None, None)] * len(bounds), lbias, ubias


def clip_limit(limit):
    """A bound of ``clamp``: ``None`` where it is absent. The exporter passes an absent one
    (``clamp(min=...)``, ``clamp(max=...)``) as an empty tensor."""
    return None if limit is None or (torch.is_tensor(limit) and limit.numel() == 0) else limit
