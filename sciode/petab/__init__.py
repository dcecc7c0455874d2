"""PEtab v1 import: ``sciode.petab.import_problem("problem.yaml")``.

Needs the ``sbml`` extra (python-libsbml and petab: ``pip install
sciode[sbml]``); importing this module does not, so ``import sciode`` works
without them.  See `_problem` for the likelihood and its gradient.
"""

from __future__ import annotations

from ._problem import PetabProblem, import_problem

__all__ = ["PetabProblem", "import_problem"]

_HINT = "PEtab import needs petab and python-libsbml; install them with `pip install sciode[sbml]`"


def _require_petab():
    """The petab module, or an ImportError naming the extra to install."""
    try:
        import petab
        import petab.v1
    except ImportError as exc:
        raise ImportError(_HINT) from exc
    from ..sbml import _require_libsbml

    _require_libsbml()
    return petab
