"""The torch path: batched, differentiable ODE solves on CPU or CUDA.

``odeint(func, y0, t, ...)`` is a drop-in for ``torchdiffeq.odeint`` that
also takes a ``sciode.Model`` (compiled to batched torch code) and steps each
trajectory of a batch on its own; ``odeint_adjoint`` is ``odeint(...,
adjoint=True)``.  ``cost_functions(model, cost)`` gives a cost's running
cost, terminal cost and observables as batched torch functions.  See
``shared/API.md``, "Torch path".
"""

from .cost import CostFunctions, cost_functions
from .odeint import odeint, odeint_adjoint

__all__ = ["odeint", "odeint_adjoint", "cost_functions", "CostFunctions"]
