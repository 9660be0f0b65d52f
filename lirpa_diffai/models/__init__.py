"""The paper's networks (FFNN ... DenseNet-100) and third-party pretrained networks.

``get(name, dataset)`` builds a zoo network, ``names()`` lists them, ``network_size``
counts neurons and parameters as the paper does, ``load_pretrained`` reads a checkpoint.
"""
from .common import NetworkSize, Normalize, ParSum, SkipCat, count_params, network_size, stack
from .pretrained import ARCHITECTURES, PRETRAINED, PretrainedMismatchError, load_pretrained
from .registry import build, canonical_name, check_dataset, get, names

__all__ = ["ARCHITECTURES", "NetworkSize", "Normalize", "PRETRAINED", "ParSum",
           "PretrainedMismatchError", "SkipCat", "build", "canonical_name", "check_dataset",
           "count_params", "get", "load_pretrained", "names", "network_size", "stack"]
