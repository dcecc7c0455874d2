"""Method coefficients as data: the one place both stepping loops read.

Explicit Runge--Kutta tableaus live in :mod:`.explicit_tableaus`, stiff
methods (Rosenbrock, ESDIRK) in :mod:`.stiff_tableaus`; this module re-exports
both so callers import from one place::

    from sciode.methods.tableaus import EXPLICIT_TABLEAUS, STIFF_TABLEAUS

Look a method up with :func:`get_tableau`, which raises with the valid names.
"""

from __future__ import annotations

from .explicit_tableaus import (
    BOSH3,
    DOP853,
    DOPRI5,
    EULER,
    EXPLICIT_TABLEAUS,
    MIDPOINT,
    RK4,
    TSIT5,
    Tableau,
    dense_weights,
)
from .stiff_tableaus import (
    KVAERNO5,
    RODAS4,
    RODAS5,
    STIFF_TABLEAUS,
    DIRKTableau,
    RosenbrockTableau,
)

__all__ = [
    "Tableau",
    "RosenbrockTableau",
    "DIRKTableau",
    "dense_weights",
    "get_tableau",
    "EULER",
    "MIDPOINT",
    "RK4",
    "BOSH3",
    "DOPRI5",
    "TSIT5",
    "DOP853",
    "RODAS4",
    "RODAS5",
    "KVAERNO5",
    "EXPLICIT_TABLEAUS",
    "STIFF_TABLEAUS",
]


def get_tableau(method: str) -> Tableau | RosenbrockTableau | DIRKTableau:
    """Return the coefficients of ``method`` (case-insensitive).

    Parameters
    ----------
    method : str
        A name from ``EXPLICIT_TABLEAUS`` or ``STIFF_TABLEAUS``.

    Raises
    ------
    ValueError
        If ``method`` is unknown; the message lists the valid names.
    """
    key = method.lower()
    if key in EXPLICIT_TABLEAUS:
        return EXPLICIT_TABLEAUS[key]
    if key in STIFF_TABLEAUS:
        return STIFF_TABLEAUS[key]
    valid = ", ".join(f"`{name}`" for name in (*EXPLICIT_TABLEAUS, *STIFF_TABLEAUS))
    raise ValueError(f"`method` must be one of {valid}; got `{method}`.")
