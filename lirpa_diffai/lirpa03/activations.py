"""Bound classes for the activations auto_LiRPA 0.3 lacks or cannot relax (Hardsigmoid,
Hardswish, SiLU, GELU in both forms, ELU, Softplus with beta and threshold), each one graph
node (:mod:`.fixes_activations` traces them so).

Every method reads the activation's pieces (:mod:`.activation_pieces`): IBP takes the exact
interval; CROWN, CROWN-IBP, alpha-CROWN and forward mode take the parallelogram with the
chord slope ``k = (f(u) - f(l)) / (u - l)``, ``k x + lo <= f(x) <= k x + hi`` with ``lo, hi``
the sound extreme deviations of ``f(x) - k x`` on ``[l, u]`` (for a convex piece the upper
line is the chord and the lower one the parallel tangent; for a concave one the reverse).
"""
from __future__ import annotations

import math
from functools import cached_property

from auto_LiRPA.operators import BoundActivation

# not ``from . import activation_pieces``: see .manifest (the start-up hook loads this package alone)
from .activation_pieces import (Activation, chord_slope, deviation, elu, gelu, hard_sigmoid, hard_swish,
                                interval, silu, softplus)


class BoundSmoothActivation(BoundActivation):
    """An elementwise activation given by :meth:`activation` (from the node's attributes)."""

    def activation(self) -> Activation:
        raise NotImplementedError

    @cached_property
    def act(self) -> Activation:
        return self.activation()

    def forward(self, x):
        return self.act.fn(x)

    def interval_propagate(self, *v):
        return interval(self.act, *v[0])

    def bound_relax(self, x):
        slope = chord_slope(self.act, x.lower, x.upper)
        lo, hi = deviation(self.act, slope, x.lower, x.upper)
        self.lw, self.lb, self.uw, self.ub = slope, lo, slope, hi


class BoundHardSigmoid(BoundSmoothActivation):
    """ONNX ``HardSigmoid(alpha, beta)`` (``nn.Hardsigmoid``)."""

    def activation(self):
        return hard_sigmoid(self.attr.get("alpha", 0.2), self.attr.get("beta", 0.5))


class BoundHardSwish(BoundSmoothActivation):
    """``nn.Hardswish`` (traced as ``custom::HardSwish``)."""

    def activation(self):
        return hard_swish()


class BoundSiLU(BoundSmoothActivation):
    """``nn.SiLU`` / ``F.silu`` (traced as ``custom::SiLU``)."""

    def activation(self):
        return silu()


class BoundGelu(BoundSmoothActivation):
    """``nn.GELU`` with ``approximate`` ``"none"`` (erf) or ``"tanh"`` (``custom::Gelu``)."""

    def activation(self):
        return gelu(self.attr.get("approximate", "none"))


class BoundElu(BoundSmoothActivation):
    """ONNX ``Elu(alpha)`` (``nn.ELU``)."""

    def activation(self):
        return elu(self.attr.get("alpha", 1.0))


class BoundSoftplusBeta(BoundSmoothActivation):
    """``nn.Softplus(beta, threshold)`` (``custom::Softplus``); beta > 0."""

    def activation(self):
        beta, threshold = self.attr.get("beta", 1.0), self.attr.get("threshold", math.inf)
        if not beta > 0:
            raise NotImplementedError(
                f"graph node '{self.name}' (operator Softplus, beta = {beta}): only beta > 0 is "
                "supported (a non-positive beta makes softplus concave or undefined)")
        return softplus(beta, threshold)


# traced operator -> Bound class
ACTIVATION_OPS = {
    "onnx::HardSigmoid": BoundHardSigmoid,
    "onnx::Elu": BoundElu,
    "custom::HardSwish": BoundHardSwish,
    "custom::SiLU": BoundSiLU,
    "custom::Gelu": BoundGelu,
    "custom::Softplus": BoundSoftplusBeta,
}
