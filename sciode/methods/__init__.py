"""Integration methods as data (Butcher, Rosenbrock and DIRK tableaus).

See :mod:`sciode.methods.tableaus`. This package imports numpy only.
"""

from .tableaus import (
    DIRKTableau,
    EXPLICIT_TABLEAUS,
    STIFF_TABLEAUS,
    RosenbrockTableau,
    Tableau,
    dense_weights,
    get_tableau,
)

__all__ = [
    "Tableau",
    "RosenbrockTableau",
    "DIRKTableau",
    "dense_weights",
    "get_tableau",
    "EXPLICIT_TABLEAUS",
    "STIFF_TABLEAUS",
]
