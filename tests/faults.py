"""Faults planted into sciode, one at a time, for ``test_fault_matrix.py`` (issue 11).

Each planter has the signature ``plant(monkeypatch, model, cost)`` and plants
its fault where a real bug would live: a generated kernel or a driver
function, never an edited source file.  ``monkeypatch`` undoes everything at
the end of the test.  Driver faults ignore ``model`` and ``cost`` (a driver
serves every model); kernel faults must be planted once per model they should
reach (the gradcheck problem *and* the validation case's model).

How a planted kernel reaches every call path
--------------------------------------------
- ``model_kernels(model)`` and ``cost_kernels(model, cost)`` return one
  ``KernelSet`` per *content* (``codegen._SETS``, keyed by the hash of the
  expressions, not by the object and not by the model's name).  Replacing an
  entry of its ``_compiled`` dict therefore reaches every model with the same
  equations, including the fresh ``Model`` that ``validation``'s
  ``case.build()`` makes on each call.
- The drivers ``backsolve``, ``forward``, ``discrete`` and ``fd`` take their
  kernels from the set on every call (``prob.mk[name]``, or the bundles of
  ``KernelSet.fns``, which the set memoises in ``_fns``: the planter empties
  that memo), so they see the plant at once.
- ``adjoint`` and ``checkpoint`` keep a *plan* (compiled entry, kernel bundles,
  loops with their stops, checkpoint times) in ``Problem.plan``, and ``adjoint.common.prepare``
  keeps each static problem, plan included, in the module memo
  ``common._STATIC``.  A plan built before the plant holds the good kernels
  (and the good stops), so every planter swaps ``_STATIC`` for an empty dict
  (``_forget_plans``); the old memo, with good plans only, comes back when the
  test ends.
- The other memos hold no kernels: ``cpu.drivers._COMPILED``/``_BY_IDENTITY``
  hold entry points, which take kernels as *arguments* (``abi.KernelType``:
  the type is the signature, so a planted kernel needs no recompiled entry);
  ``cpu.solvers._METHODS`` holds tableaus, ``cpu.stiff._MODES`` sparsity.
- Code compiled *into* an entry (``systems.apply_jumps``, ``entries._obs_rows``,
  ``discrete._discrete_reverse``'s jump loop) cannot be replaced without
  recompiling the entry, which Numba would write to the shared disk cache;
  the planters reach those pieces through the Python inputs they are given
  instead (stops, checkpoint times).

Planted kernels are compiled in-process (no disk cache) and memoised here by
the kernel set's digest, so a fault planted in several tests compiles once.
"""

from __future__ import annotations

import importlib

import numba as nb
import numpy as np

import sciode.adjoint as adjoint_pkg
from sciode import abi
from sciode.adjoint import checkpoint, common
from sciode.codegen import Kernel, cost_kernels, model_kernels

#: (kernel set digest, kernel name, fault tag) -> planted ``Kernel``
_PLANTED: dict = {}

#: Factor of the shared-piece faults: large enough for any reference to see.
SHARED_FACTOR = 1.05


def _forget_plans(monkeypatch) -> None:
    """Let no plan built before the plant serve a call (see the module docstring)."""
    monkeypatch.setattr(common, "_STATIC", {})


def _negate_at(i: int):
    @nb.njit
    def post(out):
        out[i] = -out[i]
    return post


@nb.njit
def _negate_all(out):
    for i in range(out.shape[0]):
        out[i] = -out[i]


def _scale_all(f: float):
    @nb.njit
    def post(out):
        for i in range(out.shape[0]):
            out[i] *= f
    return post


def _wrapped(ks, name: str, tag: str, post) -> Kernel:
    """``ks[name]`` followed by ``post(out)``, with the kernel's own ABI signature."""
    key = (ks.digest, name, tag)
    hit = _PLANTED.get(key)
    if hit is not None:
        return hit
    good = ks[name].dispatcher
    sig = ks[name].signature()
    if sig == abi.VJP_SIG:
        def broken(t, y, p, w, v, out):
            good(t, y, p, w, v, out)
            post(out)
    elif sig == abi.VEC_SIG:
        def broken(t, y, p, w, out):
            good(t, y, p, w, out)
            post(out)
    else:
        raise TypeError(f"no planter for kernel `{name}` with signature {sig}")
    kernel = _PLANTED[key] = Kernel(nb.njit(sig)(broken), sig)
    return kernel


def _plant(monkeypatch, ks, name: str, tag: str, post) -> None:
    monkeypatch.setitem(ks._compiled, name, _wrapped(ks, name, tag, post))
    monkeypatch.setattr(ks, "_fns", {})  # bundles built before the plant hold the good kernel


# -- kernel faults -------------------------------------------------------------

def flip_param_vjp(monkeypatch, model, cost, j: int = 0) -> None:
    """Fault 1: the sign of parameter ``j``'s term of ``(df/dp)^T v`` flipped, in
    ``vjp_p`` (the discrete adjoint's) and in the fused ``vjp_yp`` (entry
    ``n + j``; the costate sweeps')."""
    mk = model_kernels(model)
    _plant(monkeypatch, mk, "vjp_p", f"flip{j}", _negate_at(j))
    _plant(monkeypatch, mk, "vjp_yp", f"flip{model.n_states + j}", _negate_at(model.n_states + j))
    _forget_plans(monkeypatch)


def flip_state_vjp(monkeypatch, model, cost, i: int = 0) -> None:
    """Fault 4, a wrong ``y0`` gradient: the sign of state ``i``'s entry of
    ``(df/dy)^T v`` flipped, in ``vjp_y`` (the discrete adjoint's) and in the
    first ``n`` entries of ``vjp_yp`` (the costate sweeps').

    ``dJ/dy0`` is the costate at ``t0``, so it goes wrong; ``dJ/dp`` too, as
    ``mu' = -(df/dp)^T lambda`` integrates the wrong costate.
    """
    mk = model_kernels(model)
    _plant(monkeypatch, mk, "vjp_y", f"flip{i}", _negate_at(i))
    _plant(monkeypatch, mk, "vjp_yp", f"flip{i}", _negate_at(i))
    _forget_plans(monkeypatch)


def flip_dPhidp(monkeypatch, model, cost) -> None:
    """Fault 3: ``dPhi/dp`` of the terminal cost with the wrong sign (kernel
    ``dPhidp``).  A no-op where ``Phi`` does not depend on the parameters."""
    _plant(monkeypatch, cost_kernels(model, cost), "dPhidp", "negate", _negate_all)
    _forget_plans(monkeypatch)


def flip_control_vjp(monkeypatch, model, cost) -> None:
    """Fault 5: ``(df/dw)^T v`` (kernel ``vjp_w``) with the wrong sign: the
    control gradients ``G_k' = -phi_k dH/dw`` of the costate sweeps, the
    discrete adjoint's stage terms and the forward sensitivities' forcing."""
    _plant(monkeypatch, model_kernels(model), "vjp_w", "negate", _negate_all)
    _forget_plans(monkeypatch)


def scale_observables(monkeypatch, model, cost, factor: float = SHARED_FACTOR) -> None:
    """Fault 6a, a shared piece: every observable ``h`` of the data terms
    computed as ``factor * h``, consistently in ``obs``, ``obs_vjp_y`` and
    ``obs_vjp_p`` (as a wrong coefficient from the symbolic layer would be).

    Every mode then returns the exact value and gradient of a *different*
    cost: they all agree with each other and with finite differences of
    sciode's own values; only a reference outside sciode can tell.
    """
    ck = cost_kernels(model, cost)
    post = _scale_all(factor)
    for name in ("obs", "obs_vjp_y", "obs_vjp_p"):
        _plant(monkeypatch, ck, name, f"scale{factor!r}", post)
    _forget_plans(monkeypatch)


def scale_terminal(monkeypatch, model, cost, factor: float = SHARED_FACTOR) -> None:
    """Fault 6b, a shared piece: the terminal cost computed as ``factor * Phi``,
    consistently in ``Phi``, ``dPhidy`` and ``dPhidp`` (see ``scale_observables``)."""
    ck = cost_kernels(model, cost)
    post = _scale_all(factor)
    for name in ("Phi", "dPhidy", "dPhidp"):
        _plant(monkeypatch, ck, name, f"scale{factor!r}", post)
    _forget_plans(monkeypatch)


# -- driver faults -------------------------------------------------------------

def drop_observation_jump(monkeypatch, model=None, cost=None) -> None:
    """Fault 2: a backward sweep that drops an observation's costate jump.

    The sweeps apply the jump ``lambda += (dh/dy)^T r_i`` of a row when the
    loop lands on a stop at its time (``systems.apply_jumps``, compiled into
    the entries); the stops come from ``common.sweep_stops``.  Planted there:
    the interior observation time closest to the sweep's end (``t0``) is left
    out of the stops, so its jump is never applied.  (``apply_jumps`` walks the
    rows in order, so rows at ``t0`` itself, after the dropped one, are
    dropped too; with none at ``t0`` exactly one jump is lost.)

    Reaches the sweeps of ``adjoint``, ``checkpoint`` (through their plans)
    and ``backsolve``; checkpoint only where the dropped time lies inside a
    segment (a row on a checkpoint boundary is jumped at the segment's end,
    after its last step, not at a stop).  ``discrete`` applies its jumps in its own compiled
    reverse loop, from ``t_rows`` (no stops), and ``forward`` sums
    ``S(t_i)^T (dh/dy)^T r_i`` without a costate: neither is reached.
    """
    good = common.sweep_stops

    def sweep_stops(prob, t_start, t_stop, jump_t):
        stops = good(prob, t_start, t_stop, jump_t)
        lo, hi = min(t_start, t_stop), max(t_start, t_stop)
        inside = jump_t[(jump_t > lo) & (jump_t < hi)]
        if inside.size:
            t_drop = inside[np.argmin(np.abs(inside - t_stop))]
            stops = np.ascontiguousarray(stops[stops != t_drop])
        return stops

    monkeypatch.setattr(common, "sweep_stops", sweep_stops)
    _forget_plans(monkeypatch)


def drop_last_checkpoint(monkeypatch, model=None, cost=None) -> None:
    """Fault 7: an off-by-one in the checkpoint segment boundaries.

    ``checkpoint.run`` makes ``checkpoints + 1`` boundaries ``tc``
    (``np.linspace(t0, t1, n_ck + 1)``); planted: one too few (``tc[:-1]``, as
    ``np.linspace(t0, t1, n_ck + 1)[:-1]`` or a ``range`` one short would give).
    The last segment is neither re-solved nor swept: the terminal costate
    ``dPhi/dy(y(t1))`` starts the sweep at ``tc[-2] < t1``.
    """
    good = checkpoint._plan

    def _plan(prob, tc):
        plan, tc = good(prob, tc)
        return plan, np.ascontiguousarray(tc[:-1])

    monkeypatch.setattr(checkpoint, "_plan", _plan)
    _forget_plans(monkeypatch)


def flip_initial_state_derivative(monkeypatch, model=None, cost=None) -> None:
    """Fault 4b (an addition to issue 11's list), a shared piece: ``dx0/dp``
    with the wrong sign where ``y0`` holds expressions in the parameters.

    ``value_and_grad`` adds ``(dx0/dp)^T dJ/dx0`` to ``dJ/dp`` after any mode
    ran (``sciode.adjoint.initial_state``), so every mode, ``fd`` included,
    is wrong alike.
    """
    good = adjoint_pkg.initial_state

    def initial_state(model, y0, params):
        y, D = good(model, y0, params)
        return y, (None if D is None else -D)

    monkeypatch.setattr(adjoint_pkg, "initial_state", initial_state)
    # gradcheck imported the name too (it uses only the value, y0(p), which is
    # right); planted there as well, as a bug in the one function would be
    monkeypatch.setattr(importlib.import_module("sciode.gradcheck"), "initial_state", initial_state,
                        raising=False)
