"""hzono transformers per auto_LiRPA operator (one module per operator family), their registry,
and the Bound classes this package adds to auto_LiRPA."""
from auto_LiRPA import register_custom_op

from .registry import HZONO_TRANSFORMERS, HzonoContext, UnsupportedOperatorError, register, transformer_for
from ..lirpa03.clip import BoundClip
from . import (activation, arithmetic, attention, elementary, linear, pooling, shape,  # noqa: F401
               smooth)  # (fill the registry)
from . import abstract  # noqa: F401  (abstract layers: registers their custom ops)
from . import grafted  # noqa: F401  (linearity grafting's activation: registers its custom op)
from .zono import ZONO_TRANSFORMERS, zono_transformer_for

register_custom_op("onnx::Clip", BoundClip)

__all__ = ["HZONO_TRANSFORMERS", "ZONO_TRANSFORMERS", "zono_transformer_for", "HzonoContext",
           "UnsupportedOperatorError", "register", "transformer_for", "BoundClip"]
