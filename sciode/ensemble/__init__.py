"""Ensembles: one model solved for many parameter sets or initial states,
each member with its own steps and gradients (``solve_ensemble``,
``value_and_grad_ensemble``)."""

from .api import (
    EnsembleGradResult,
    EnsembleSolution,
    solve_ensemble,
    value_and_grad_ensemble,
)

__all__ = ["EnsembleGradResult", "EnsembleSolution", "solve_ensemble", "value_and_grad_ensemble"]
