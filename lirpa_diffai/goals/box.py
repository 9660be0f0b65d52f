"""The abstract goal ``Box`` (paper Table 1): the box as an abstract element, bounded by the
trainer's bound method, with the worst-case cross-entropy loss."""
from __future__ import annotations

from dataclasses import dataclass

from ..evaluation.margins import margin_spec
from .core import Goal, keyword_notation, margin_loss


class BoxGoal(Goal):
    """A goal whose loss is the worst case over its region, an abstract element: the region
    bounded by ``ctx.bounds`` with the margin spec ``e_y - e_j`` (in the domain
    ``bound_method()`` names, the configured one by default); loss: cross-entropy on
    ``[0, -lb]``, then ``(1 - w) * loss + w * deep_loss`` for each DeepLoss pair in
    ``ctx.aux_losses()``. The base of ``Box`` and of DiffAI's named domains."""

    def region(self, ctx, box, y, t):
        return box

    def loss_on(self, ctx, box, y, t):
        if ctx.bounds is None:
            raise ValueError(f"the {type(self).__name__} goal needs ctx.bounds (a bound method)")
        lo, hi = self.region(ctx, box, y, t)
        lb, _ = ctx.bounds(lo, hi, margin_spec(y, ctx.num_classes), **self.bound_method())
        loss = margin_loss(lb)
        for weight, deep_loss in ctx.aux_losses():
            loss = (1 - weight) * loss + weight * deep_loss
        return loss

    def bound_method(self) -> dict:
        """Keywords for ``ctx.bounds``: none, the configured method (a named domain of
        ``lirpa_diffai.goals.domain_goals`` gives its own)."""
        return {}


@dataclass(frozen=True)
class Box(BoxGoal):
    """The box ``<(l + u) / 2, (u - l) / 2, 0>`` as an abstract element, bounded with the
    configured method (:class:`BoxGoal`'s loss). DiffAI's ``w`` (a radius, or a schedule of
    one) replaces the box by ``[c - w, c + w]`` around its center c, clipped to the data
    range."""

    w: Radius = None

    def __str__(self) -> str:
        return keyword_notation(self)

    def region(self, ctx, box, y, t):
        return self.resized(ctx, box, self.w, t)


__all__ = ["Box", "BoxGoal", "margin_spec"]
