"""The torch path: batched, differentiable ODE solves on CPU or CUDA.

``odeint(func, y0, t, ...)`` is a drop-in for ``torchdiffeq.odeint`` that
also takes a ``sciode.Model`` (compiled to batched torch code) and steps each
trajectory of a batch on its own; ``odeint_adjoint`` is ``odeint(...,
adjoint=True)``.  See ``shared/API.md``, "Torch path".
"""

from .odeint import odeint, odeint_adjoint

__all__ = ["odeint", "odeint_adjoint"]
