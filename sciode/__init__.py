"""sciode: differentiable scientific computing with ordinary differential equations.

Declare a model symbolically (``Model``), a cost (``Cost``, ``LeastSquares``),
and get fast solutions (``solve``), gradients (``value_and_grad``), fits
(``fit``) and proof that the gradients are right (``gradcheck``).
"""

__version__ = "0.1.0"

from . import _numba_cache  # noqa: F401  (registers the cache locator before any loop is compiled)

from .errors import ModelError, SciodeError, SolverError
from .model import Model
from .cost import Cost, LeastSquares
from .controls import Controls
from . import symbolic
from .api import solve
from .solution import Solution
from .adjoint import GradResult, value_and_grad
from .gradcheck import GradcheckReport, gradcheck
from .fit import FitResult, fit
from .optimal import OptimalControlResult, optimal_control
from .ensemble import (EnsembleGradResult, EnsembleSolution, solve_ensemble,
                       value_and_grad_ensemble)
from .warmup import precompile
from . import sbml, petab  # need libsbml/petab only when used (`pip install sciode[sbml]`)

__all__ = [
    "__version__",
    "Model",
    "Cost",
    "LeastSquares",
    "Controls",
    "ModelError",
    "SolverError",
    "SciodeError",
    "symbolic",
    "solve",
    "Solution",
    "value_and_grad",
    "GradResult",
    "gradcheck",
    "GradcheckReport",
    "fit",
    "FitResult",
    "optimal_control",
    "OptimalControlResult",
    "solve_ensemble",
    "value_and_grad_ensemble",
    "EnsembleSolution",
    "EnsembleGradResult",
    "precompile",
    "sbml",
    "petab",
]
