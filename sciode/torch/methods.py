"""The torch view of the method tableaus in ``sciode/methods/`` (no coefficient lives here).

A :class:`Method` holds the nonzero coefficients of one ``Tableau`` as Python
floats (stage sums are chains of ``add(..., alpha=c)``, which skip zeros and
need no coefficient tensor) plus the dense-output matrix ``P`` as a tensor per
dtype and device.
"""

from __future__ import annotations

import dataclasses

import torch

from ..methods.tableaus import EXPLICIT_TABLEAUS, Tableau

#: Every method the torch loop runs, by registry name.
TABLEAUS: dict[str, Tableau] = dict(EXPLICIT_TABLEAUS)


def _terms(row) -> tuple:
    return tuple((j, float(a)) for j, a in enumerate(row) if a != 0.0)


@dataclasses.dataclass(frozen=True, eq=False)
class Method:
    """One tableau, ready for the batched loop.

    Attributes
    ----------
    tab : Tableau
    a_rows : tuple of tuple of (int, float)
        Nonzero ``A[i, j]`` of the main stages, then of the extra stages.
    b, e, e3 : tuple of (int, float)
        Nonzero weights of the solution and the error estimators.
    q, beta : float
        The controller's exponent denominator and PI stabilisation: the
        tableau's (``Tableau.controller_q``, ``Tableau.pi_beta``), as every backend reads them.
    """

    tab: Tableau
    a_rows: tuple
    c: tuple
    b: tuple
    e: tuple
    e3: tuple | None

    @property
    def name(self) -> str:
        return self.tab.name

    @property
    def q(self) -> float:
        return float(self.tab.controller_q)

    @property
    def beta(self) -> float:
        return float(self.tab.pi_beta)

    def P(self, like: torch.Tensor) -> torch.Tensor:
        """Dense-output matrix ``(s_total, degree)`` in ``like``'s dtype and device."""
        key = (like.dtype, like.device)
        cache = self.__dict__.setdefault("_P", {})
        if key not in cache:
            cache[key] = torch.tensor(self.tab.P.tolist(), dtype=like.dtype, device=like.device)
        return cache[key]


def _build(tab: Tableau) -> Method:
    rows = [_terms(tab.A[i, :i]) for i in range(tab.s)]
    rows += [_terms(tab.A_extra[m, : tab.s + m]) for m in range(tab.s_extra)]
    return Method(tab=tab, a_rows=tuple(rows), c=tuple(float(x) for x in (*tab.c, *tab.c_extra)),
                  b=_terms(tab.b), e=_terms(tab.e),
                  e3=None if tab.e3 is None else _terms(tab.e3))


METHODS: dict[str, Method] = {name: _build(tab) for name, tab in TABLEAUS.items()}


def get_method(name: str) -> Method:
    """The method called ``name`` (case-insensitive); raises with the valid list."""
    key = str(name).lower()
    if key not in METHODS:
        valid = ", ".join(f"`{n}`" for n in METHODS)
        raise ValueError(f"`method` must be one of {valid}; got `{name}`.")
    return METHODS[key]
