"""Maximum Margin Regularization (Croce, Andriushchenko, Hein, AISTATS 2019): exact distances
of a point to its linear region's boundaries and to the decision boundaries, and the
regularizer built on them."""
from .loss import mmr_loss, mmr_terms
from .regions import RegionError, ReluLayer, check_piecewise_linear, region_distances, relu_layers

__all__ = ["mmr_loss", "mmr_terms", "region_distances", "relu_layers", "ReluLayer",
           "RegionError", "check_piecewise_linear"]
