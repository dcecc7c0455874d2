"""CUDA ensembles: one GPU thread integrates one member (``forward``) and
differentiates its steps (``gradient``).

The kernels are built from the same generated scalar model and cost kernels
as the CPU loops (``sciode.codegen``; each plain-Python kernel compiled as a
CUDA device function) and the same tableaus (``sciode.methods``); CI runs
them under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``).  Nothing
here is cached by sciode's CPU kernel cache.
"""

from . import forward, gradient
from .forward import available, solve

__all__ = ["available", "forward", "gradient", "solve"]
