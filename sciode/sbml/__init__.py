"""SBML import: ``sciode.sbml.load("model.xml") -> sciode.Model``.

Needs python-libsbml (``pip install sciode[sbml]``); importing this module
does not, so ``import sciode`` works without it.  See `_importer` for the
equations and `load` for what is supported.
"""

from __future__ import annotations

from ._importer import SBMLModel, import_sbml, load

__all__ = ["SBMLModel", "import_sbml", "load"]

_HINT = "SBML import needs python-libsbml; install it with `pip install sciode[sbml]`"


def _require_libsbml():
    """The libsbml module, or an ImportError naming the extra to install."""
    try:
        import libsbml
    except ImportError as exc:
        raise ImportError(_HINT) from exc
    return libsbml
