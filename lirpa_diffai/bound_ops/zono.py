"""The pure zonotope domain (``lirpa_diffai.domain.zonotope``) as one table: auto_LiRPA Bound class ->
transformer, keyed by exact class as the hzono registry is.

An affine operator (its rows map exactly, no box part is created from rows) takes hzono's
transformer as it is; a non-linear one takes hzono's transformer followed by
:func:`~lirpa_diffai.domain.zonotope.box_to_rows` (DiffAI's ``applySuper``). A class in neither list
has no pure-zonotope transformer and is refused, naming the node, even where hzono has one
for it or for a base class: a new transformer must be classified here first.
"""
from __future__ import annotations

from typing import Callable

from auto_LiRPA.operators import (BoundAdd, BoundAtan, BoundAveragePool, BoundBatchNormalization,
                                  BoundConcat, BoundConv, BoundConvTranspose, BoundDiv,
                                  BoundDropout, BoundExpand, BoundFlatten, BoundGather,
                                  BoundGlobalAveragePool, BoundIdentity,
                                  BoundLeakyRelu, BoundLinear, BoundMatMul, BoundMaxPool, BoundMul,
                                  BoundNeg, BoundPad, BoundReduceMax, BoundReduceMean, BoundReduceSum, BoundRelu,
                                  BoundReshape, BoundShape, BoundSigmoid, BoundSlice,
                                  BoundSplit, BoundSqueeze, BoundSub, BoundTanh, BoundTranspose,
                                  BoundUnsqueeze)

from ..domain import zonotope
from ..errors import operator_name
from .abstract import ABSTRACT_OPS
from ..lirpa03.adaptive_pool import BoundAdaptiveAvgPool2d
from ..lirpa03.attention_ops import BoundSoftmaxWhole
from ..lirpa03.clip import BoundClip
from .grafted import BoundGraftedRelu
from .elementary import ELEMENTARY
from .smooth import SMOOTH_ACTIVATIONS
from .registry import HZONO_TRANSFORMERS, UnsupportedOperatorError

# rows map exactly: (a sample-mixing reshape or reduction, or a batch-axis concatenation,
# moves rows into the box part, which the next non-linearity turns into rows again)
AFFINE = (BoundLinear, BoundConv, BoundConvTranspose, BoundBatchNormalization,
          BoundAdd, BoundSub, BoundNeg, BoundDropout, BoundAveragePool,
          BoundGlobalAveragePool, BoundAdaptiveAvgPool2d, BoundReduceMean, BoundReduceSum, BoundReshape,
          BoundFlatten, BoundSqueeze, BoundUnsqueeze, BoundTranspose, BoundSlice, BoundSplit, BoundGather,
          BoundExpand, BoundIdentity, BoundConcat, BoundPad, BoundShape, *dict.fromkeys(ABSTRACT_OPS.values()))

# (Mul, Div, MatMul: a product of two perturbed values has a box part, hybrid_zono.product; by
# a constant there is none, and box_to_rows adds no row)
NONLINEAR = (BoundMul, BoundDiv, BoundMatMul, BoundSoftmaxWhole, BoundReduceMax, BoundRelu, BoundLeakyRelu,
             BoundSigmoid, BoundTanh, BoundAtan, BoundClip, BoundMaxPool, BoundGraftedRelu,
             *SMOOTH_ACTIVATIONS, *ELEMENTARY)


def then_box_to_rows(transformer: Callable) -> Callable:
    """``transformer`` followed by ``box_to_rows``; on a lazy concatenation once per part
    (memoized per part, as the elementwise transformers are, so a part reused by several
    concatenations keeps one set of fresh rows)."""
    def pure(ctx, node, *inputs):
        return ctx.elementwise("box_to_rows", zonotope.box_to_rows, transformer(ctx, node, *inputs))
    pure.reads_parts = transformer.reads_parts
    pure.__doc__ = f"{transformer.__name__}, then the box part into fresh rows"
    return pure


ZONO_TRANSFORMERS: dict[type, Callable] = {
    **{cls: HZONO_TRANSFORMERS[cls] for cls in AFFINE},
    **{cls: then_box_to_rows(HZONO_TRANSFORMERS[cls]) for cls in NONLINEAR},
}


def zono_transformer_for(node) -> Callable:
    """The pure-zonotope transformer of the node's exact Bound class; any other class is
    refused with an error naming the node and its operator."""
    transformer = ZONO_TRANSFORMERS.get(type(node))
    if transformer is not None:
        return transformer
    onnx_op = operator_name(node)
    raise UnsupportedOperatorError(
        f"the pure zonotope domain (ZBox/ZSwitch/ZSmooth/ZNIPS, ToZono) has no transformer for "
        f"graph node '{node.name}' (operator {onnx_op}, bound class {type(node).__name__}); "
        "supported: " + ", ".join(sorted(c.__name__ for c in ZONO_TRANSFORMERS)))
