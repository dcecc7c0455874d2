"""One entry to every stepping loop: ``integrate(method, sys, ...)``.

A *method* is a ``NamedTuple`` of coefficient arrays and flags (``RKMethod``
for explicit Runge--Kutta tableaus, ``implicit.ImplicitMethod`` for the
Rosenbrock, ESDIRK and BDF families, which share one loop).
``integrate`` dispatches at compile time on the method's class, so drivers
and sensitivity sweeps are written once for every method, explicit or
implicit, and compiled once per (system, method) kind.

Every loop returns ``(status, t_reached, n_stored, ts, zs, hs, Ks, z_eval,
stats)``, which ``integrate`` hands on as a ``bundles.LoopResult``; ``stats``
starts with ``nfev, nsteps, naccepted, nrejected``.

Compile time (a fresh install's first gradient) sets how the layers are
built.  Every separately compiled function links in its callees' LLVM IR
and optimises the whole again, so each wrapper layer above a loop costs as
much LLVM time as the loop itself.  Hence ``integrate``'s implementation is
the one compiled layer per (method, system) kind: ``rk_integrate`` is
inlined into it at Numba's IR level, and ``integrate`` itself is an
ordinary (not inlined) overload, whose implementation an inlining overload
would compile once more only to type it.  Below it, only the stepping cores
(``rk_steps``; ``implicit_integrate``, which is faster to compile on its
own: inlined, it cost 9 s more on a cold Kvaerno5 gradient) and small
helpers are compiled on their own.
Measured on the Lotka-Volterra adjoint gradient with empty caches: 78 s of
CPU before, 50 s after (with slice copies replaced by
``stepping.copy_flat``), warm speed unchanged.
"""

from __future__ import annotations

from collections import namedtuple

import numba as nb
from numba.extending import overload

from .bundles import LoopResult
from .explicit import rk_integrate

#: ``q``, ``beta``: the step controller's exponent denominator and PI stabilisation
#: (``Tableau.controller_q``, ``Tableau.pi_beta``).
RKMethod = namedtuple("RKMethod", ["A", "b", "c", "e", "e3", "P", "A_ext", "c_ext",
                                   "fsal", "adaptive", "order", "q", "beta"])

_LOOPS: dict = {}


def register_method(cls, loop) -> None:
    """Register ``loop(sys, z0, t0, t1, loop, t_eval, store_dense)`` for the
    method class ``cls`` (of a ``bundles.Loop``'s ``method``)."""
    _LOOPS[cls] = loop


def integrate(sys, z0, t0, t1, loop, t_eval, store_dense):
    """Integrate ``sys`` from ``t0`` to ``t1`` with the ``Loop`` bundle ``loop``
    (method tuple and step control); returns a ``LoopResult`` (compiled code only).

    ``t_eval``: output times (``LoopResult.z_eval``); ``store_dense``: 1 keep the
    accepted steps with their stages (dense output), 0 the steps, -1 only the
    final state (see ``rk_integrate``)."""
    raise NotImplementedError


@overload(integrate)  # not inline="always": see the module doc
def _integrate(sys, z0, t0, t1, loop, t_eval, store_dense):
    method = loop.types[loop.fields.index("method")]
    run = _LOOPS.get(getattr(method, "instance_class", None))
    if run is None:
        raise nb.errors.TypingError(f"no stepping loop registered for method type {method}")

    def impl(sys, z0, t0, t1, loop, t_eval, store_dense):
        status, t_reached, n_stored, ts, zs, hs, Ks, z_eval, stats = run(sys, z0, t0, t1, loop,
                                                                         t_eval, store_dense)
        return LoopResult(status, t_reached, n_stored, ts, zs, hs, Ks, z_eval, stats)

    return impl


register_method(RKMethod, rk_integrate)
