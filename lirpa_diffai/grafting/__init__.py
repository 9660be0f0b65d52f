"""Linearity grafting (Chen et al., ICML 2022): replace the unstable, insignificant ReLUs of a
trained network by learnable affine maps, fine-tune, verify."""
from .activation import GraftedReLU, grafted_relu

__all__ = ["GraftedReLU", "grafted_relu"]
