"""Exception hierarchy of sciode.

Every error that sciode raises on purpose derives from `SciodeError`, so a
caller can catch the library's errors without catching unrelated ones. The
concrete classes also derive from the builtin that describes the failure
(`ValueError` for a bad declaration, `RuntimeError` for a failed solve), so
code written against the builtins keeps working.
"""

from __future__ import annotations

__all__ = ["SciodeError", "ModelError", "SolverError"]


class SciodeError(Exception):
    """Base class of every error raised on purpose by sciode."""


class ModelError(SciodeError, ValueError):
    """A model, cost, control or data declaration is invalid.

    The message names the culprit (symbol, expression entry or argument) and,
    where there is one, the fix.
    """


class SolverError(SciodeError, RuntimeError):
    """An integration failed and the caller asked for an exception.

    Raised by ``solve(..., raise_on_failure=True)`` or when a gradient is
    requested from a failed solve; the message says where and why.
    """
