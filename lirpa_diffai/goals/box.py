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
        lo, hi = self.region(ctx, box, y, t)
        if self.fuses(ctx):
            if ctx.loss_bound is None:
                raise self.refused("loss fusion needs the method CROWN-IBP, CROWN-hzono or CROWN")
            loss = ctx.loss_bound(lo, hi, y).mean()
        elif ctx.bounds is None:
            raise ValueError(f"the {type(self).__name__} goal needs ctx.bounds (a bound method)")
        else:
            lb, _ = ctx.bounds(lo, hi, margin_spec(y, ctx.num_classes), **self.bound_method())
            loss = margin_loss(lb)
        for weight, deep_loss in ctx.aux_losses():
            loss = (1 - weight) * loss + weight * deep_loss
        return loss

    def bound_method(self) -> dict:
        """Keywords for ``ctx.bounds``: none, the configured method (a named domain of
        ``lirpa_diffai.goals.domain_goals`` gives its own)."""
        return {}

    def fuses(self, ctx) -> bool:
        """Whether the loss is ``ctx.loss_bound``'s fused bound (loss fusion): never for a
        named domain, which bounds in its own (hzono) domain."""
        return False


@dataclass(frozen=True)
class Box(BoxGoal):
    """The box ``<(l + u) / 2, (u - l) / 2, 0>`` as an abstract element, bounded with the
    configured method (:class:`BoxGoal`'s loss). DiffAI's ``w`` (a radius, or a schedule of
    one) replaces the box by ``[c - w, c + w]`` around its center c, clipped to the data
    range. ``fused=True`` (or the trainer's ``loss_fusion``) takes the fused upper bound of
    the cross-entropy instead (``lirpa_diffai.training.loss_fusion``: CROWN-IBP, CROWN-hzono
    and CROWN), whose cost does not grow with the number of classes."""

    w: Radius = None
    fused: bool = False

    def __str__(self) -> str:
        return keyword_notation(self)

    def region(self, ctx, box, y, t):
        return self.resized(ctx, box, self.w, t)

    def fuses(self, ctx) -> bool:
        return self.fused or ctx.loss_fusion


__all__ = ["Box", "BoxGoal", "margin_spec"]
