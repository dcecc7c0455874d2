"""One entry to the stepping loop: ``integrate(sys, z0, t0, t1, loop, ...)``.

A *method* is a ``NamedTuple`` of coefficient arrays and flags
(``explicit.RKMethod`` for explicit Runge--Kutta tableaus,
``implicit.ImplicitMethod`` for the Rosenbrock, ESDIRK and BDF families),
carried by the ``bundles.Loop`` ``loop``.  There is one stepping loop,
``loop.run_loop``; what differs between families (their attempt-step and
controller) it takes at compile time from the family registered for the
method's class (``loop.register_family``), so drivers and sensitivity sweeps
are written once for every method, explicit or implicit, and compiled once
per (system, method) kind.  ``integrate`` returns a ``bundles.LoopResult``.

Compile time (a fresh install's first gradient) sets how the layers are
built.  Every separately compiled function links in its callees' LLVM IR
and optimises the whole again, so each wrapper layer above a loop costs as
much LLVM time as the loop itself.  Hence ``integrate``'s implementation is
the one compiled layer per (method, system) kind: ``run_loop`` (the
allocations and the storage's regrowth) is inlined into it at Numba's IR
level, and ``integrate`` itself is an ordinary (not inlined) overload, whose
implementation an inlining overload would compile once more only to type it.
Below it, only the stepping core (``loop.steps``), the stiff family's hooks
and small helpers are compiled on their own.
"""

from __future__ import annotations

import numba as nb
from numba.extending import overload

from . import implicit  # noqa: F401  (registers the stiff family)
from .explicit import RKMethod
from .loop import family_of, run_loop


def integrate(sys, z0, t0, t1, loop, t_eval, store_dense):
    """Integrate ``sys`` from ``t0`` to ``t1`` with the ``Loop`` bundle ``loop``
    (method tuple and step control); returns a ``LoopResult`` (compiled code only).

    ``t_eval``: output times (``LoopResult.z_eval``); ``store_dense``: 1 keep the
    accepted steps with their stages (dense output), 0 the steps, -1 only the
    final state (see ``loop.run_loop``)."""
    raise NotImplementedError


@overload(integrate)  # not inline="always": see the module doc
def _integrate(sys, z0, t0, t1, loop, t_eval, store_dense):
    method = loop.types[loop.fields.index("method")]
    if family_of(method) is None:
        raise nb.errors.TypingError(f"no stepping family registered for method type {method}")

    def impl(sys, z0, t0, t1, loop, t_eval, store_dense):
        return run_loop(sys, z0, t0, t1, loop, t_eval, store_dense)

    return impl


__all__ = ["RKMethod", "integrate"]
