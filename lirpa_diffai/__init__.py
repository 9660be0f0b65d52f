"""lirpa-diffai: DiffAI's HybridZonotope domain, abstract layers and training goals for auto_LiRPA."""
from . import _compat

_compat.install_import_hook()
