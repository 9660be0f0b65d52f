"""Linearity grafting (Chen et al., ICML 2022): replace the unstable, insignificant ReLUs of a
trained network by learnable affine maps, fine-tune, verify."""
from .activation import GraftedReLU, grafted_relu
from .rewrite import GraftingError, graft, relu_sites, site_shapes

__all__ = ["GraftedReLU", "grafted_relu", "GraftingError", "graft", "relu_sites", "site_shapes"]
