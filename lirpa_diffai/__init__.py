"""lirpa-diffai: DiffAI's HybridZonotope domain, abstract layers and training goals for auto_LiRPA.

``import lirpa_diffai`` patches auto_LiRPA 0.3 (see :mod:`lirpa_diffai.lirpa03`) and registers
this package's Bound classes with auto_LiRPA.
"""
from . import lirpa03  # noqa: F401  (bound here too when the start-up hook loaded it without this package)
from .lirpa03.hook import install_import_hook

install_import_hook()

from .hybrid_zono import HybridZonotope  # noqa: E402
from .domain.perturbation import PerturbationHybridZonotope  # noqa: E402
from .errors import BoundMemoryError, UnsupportedOperatorError  # noqa: E402
from .bounded_module import BoundedModule  # noqa: E402
from .domain.methods import DOMAINS  # noqa: E402
from .domain.abstract_layers import (Concretize, CorrelateAll, CorrelateFixed, CorrelateMaxK,  # noqa: E402
                                     CorrelateMaxPool, CorrRand, DecorrelateAll, DecorrelateMin,
                                     DecorrRand, DeepLoss, ToHZono, ToZono, set_epoch)

__all__ = ["BoundedModule", "HybridZonotope", "PerturbationHybridZonotope",
           "UnsupportedOperatorError", "BoundMemoryError", "DOMAINS"]
__all__ += ["Concretize", "CorrelateAll", "CorrelateFixed", "CorrelateMaxK", "CorrelateMaxPool",
            "DecorrelateAll", "DecorrelateMin", "CorrRand", "DecorrRand", "ToZono", "ToHZono",
            "DeepLoss", "set_epoch"]
__version__ = "0.1.0"
