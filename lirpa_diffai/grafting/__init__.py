"""Linearity grafting (Chen et al., ICML 2022): replace the unstable, insignificant ReLUs of a
trained network by learnable affine maps, fine-tune, verify.

``choose_masks`` scores the neurons (``instability``, ``significance``, ``selection``),
``graft`` rewrites the network (``rewrite``), ``GraftedReLU`` is the activation
(``activation``)."""
from .activation import GraftedReLU, grafted_relu
from .instability import unstable_counts, unstable_ratio
from .rewrite import GraftingError, graft, grafted_modules, masks_of, relu_sites, site_shapes
from .selection import choose_masks, normalized_rank, select
from .significance import gradient_significance, weight_significance

__all__ = ["GraftedReLU", "grafted_relu", "GraftingError", "graft", "grafted_modules", "masks_of",
           "relu_sites", "site_shapes", "unstable_counts", "unstable_ratio", "choose_masks",
           "normalized_rank", "select", "gradient_significance", "weight_significance"]
