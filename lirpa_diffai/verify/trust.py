"""The graphs whose bounds ``verify`` trusts: a "verified" answer rests on CROWN, alpha-CROWN
and beta-CROWN bounds (and CROWN-hzono's), sound only where each operator's relaxation is.

:data:`TRUSTED` lists the operators whose linear bounds hold on every input range (each sign,
each side of every kink, next to a pole): the piecewise-linear operators of ReLU networks
(their relaxations are exact or the triangle), products and quotients (McCormick, and
``1 / y`` relaxed by its convexity on each side of 0, a denominator around 0 refused), and the
abstract layers (identities). A graph with any other operator is refused by node: the
soundness fuzzer (``tests/soundness``) is what admits an operator here.
"""
from __future__ import annotations

from .spec import VerificationError

PIECEWISE_LINEAR = {
    "Input", "Params", "Buffers", "Constant", "PrimConstant", "ConstantOfShape", "Shape", "Cast",
    "Identity", "Dropout", "Linear", "Conv", "ConvTranspose", "MatMul", "Add", "Sub", "Neg",
    "BatchNormalization", "AveragePool", "GlobalAveragePool", "MaxPool", "Pad", "Flatten",
    "Reshape", "Transpose", "Unsqueeze", "Squeeze", "Concat", "Slice", "Gather", "Split",
    "Expand", "ReduceSum", "ReduceMean", "Relu", "LeakyRelu", "GraftedRelu",
}
PRODUCTS = {"Mul", "Div", "Reciprocal"}
ABSTRACT_LAYERS = {"CorrelateAll", "CorrelateFixed", "CorrelateMaxK", "CorrelateMaxPool",
                   "DecorrelateAll", "DecorrelateMin", "CorrRand", "DecorrRand", "ToZono",
                   "ToHZono", "DeepLoss"}
TRUSTED = PIECEWISE_LINEAR | PRODUCTS | ABSTRACT_LAYERS


def operator_of(node) -> str:
    """The operator of a graph node: its Bound class name without ``Bound``."""
    return type(node).__name__.removeprefix("Bound")


def untrusted_nodes(bm) -> list:
    """The graph nodes of ``bm`` whose operator is not in :data:`TRUSTED`, in graph order."""
    return [node for node in bm._modules.values() if operator_of(node) not in TRUSTED]


def require_trusted(bm) -> None:
    """``VerificationError`` naming the first untrusted node and its operator, if any."""
    untrusted = untrusted_nodes(bm)
    if untrusted:
        node = untrusted[0]
        others = sorted({operator_of(n) for n in untrusted[1:]} - {operator_of(node)})
        raise VerificationError(
            f"verify: graph node '{node.name}' (operator {operator_of(node)}, {type(node).__name__}) "
            "is not among the operators whose linear bounds verify trusts on every input range "
            f"(lirpa_diffai.verify.trust.TRUSTED){'; also ' + ', '.join(others) if others else ''}: "
            "a 'verified' answer could rest on an unsound bound; bound it with compute_bounds "
            "(incomplete) instead")
