"""Symbolic derivations (SymPy): Jacobians, Hamiltonian, costates, gradients.

``derive_adjoint(model, cost)`` is the public entry point; ``derive_model`` and
``derive_cost`` produce what code generation consumes.
"""

from .derive import (
    AdjointSystem,
    CostDerivatives,
    ModelDerivatives,
    derive_adjoint,
    derive_cost,
    derive_model,
    sparse_jacobian,
)

__all__ = [
    "AdjointSystem",
    "CostDerivatives",
    "ModelDerivatives",
    "derive_adjoint",
    "derive_cost",
    "derive_model",
    "sparse_jacobian",
]
