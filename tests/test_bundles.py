"""Typed bundles of the compiled entry points (issue 14, item 3).

Every entry point takes its kernels in ``abi.ModelFns`` / ``abi.CostFns``,
its inputs in ``bundles.Inputs`` and each stepping loop's settings in a
``bundles.Loop``, and its signature is derived from those types; results come
back as named tuples.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.integrate
from numba import types

import sciode
from sciode import abi
from sciode.adjoint import ensemble as _gradient_entries  # noqa: F401  (registers entries)
from sciode.adjoint import entries as _entries  # noqa: F401
from sciode.codegen import model_kernels
from sciode.codegen.shared import zero_kernel
from sciode.cpu import bundles, drivers, solvers
from sciode.cpu import ensemble as _forward_entries  # noqa: F401
from sciode.methods.tableaus import EXPLICIT_TABLEAUS

#: The most positional arguments an entry point may take (ensemble entries
#: add a member range and four output arrays to a gradient's ten).
MAX_ARGS = 19


def _kernel_types():
    return {abi.VEC, abi.VJP, abi.MAT, abi.SENS}


@pytest.mark.parametrize("name", sorted(drivers._ENTRIES))
def test_entries_take_kernels_only_in_bundles(name):
    """No entry takes a kernel as a loose argument, or a method tuple outside a
    ``Loop``; each fits in ``MAX_ARGS`` arguments (they took 21 to 44)."""
    _, argtypes = drivers._ENTRIES[name]
    assert len(argtypes) <= MAX_ARGS
    loose = [t for t in argtypes if t in _kernel_types()]
    assert not loose, f"{name} takes kernels outside ModelFns/CostFns: {loose}"
    for t in argtypes:
        if isinstance(t, types.BaseTuple):
            assert t in (abi.MODEL_FNS, abi.COST_FNS, bundles.INPUTS, _entries.ROWS, _entries.JUMPS)
        else:
            assert isinstance(t, (types.Array, types.Number, types.Boolean)) or t in (
                drivers.LOOP, drivers.LOOP2)


def test_bundle_fields_are_the_abi_kernels():
    """``ModelFns`` has one field per kernel kind of ``abi.MODEL_KERNELS`` (the two
    Jacobian storages share ``jac``), ``CostFns`` one per ``COST_KERNELS`` and
    ``has_L``; their Numba types follow the ABI signatures."""
    assert set(abi.ModelFns._fields) == ({*abi.MODEL_KERNELS} - {"jac_y", "jac_nz"}) | {"jac"}
    assert set(abi.CostFns._fields) == {*abi.COST_KERNELS, "has_L"}
    for name, t in zip(abi.ModelFns._fields, abi.MODEL_FNS.types):
        assert t == abi.kernel_type(abi.MODEL_KERNELS["jac_y" if name == "jac" else name])
    for name, t in zip(abi.CostFns._fields, abi.COST_FNS.types):
        assert t == (types.boolean if name == "has_L" else abi.kernel_type(abi.COST_KERNELS[name]))


def test_fns_fill_unused_fields_with_the_zero_kernel(lotka_volterra):
    mk = model_kernels(lotka_volterra)
    method = solvers.rk_method(EXPLICIT_TABLEAUS["dopri5"])
    f = mk.fns(method, uses=("rhs", "vjp_yp"))
    assert f.rhs is mk["rhs"] and f.vjp_yp is mk["vjp_yp"]
    assert f.sens_rhs is zero_kernel(abi.SENS_SIG)
    assert f.jac is zero_kernel(abi.MAT_SIG)  # an explicit method never calls the Jacobian
    assert mk.fns(method, uses=("rhs", "vjp_yp")) is f  # memoised
    with pytest.raises(ValueError, match="no model kernel 'L'"):
        mk.fns(method, uses=("L",))


def test_a_bundle_of_the_wrong_layout_is_refused_not_misread(lotka_volterra):
    """The dispatcher types a bundle from its fields: a non-contiguous parameter
    vector does not match the entry's signature (a ``TypeError``), where
    reading it as contiguous would give wrong numbers."""
    mk = model_kernels(lotka_volterra)
    method = solvers.rk_method(EXPLICIT_TABLEAUS["dopri5"])
    fn = drivers.entry("forward", method)
    loop = bundles.make_loop(method, 1e-8, np.full(2, 1e-8))
    p = np.array([1.5, 1.0, 1.0, 3.0])
    tw, W, wbuf = solvers.control_arrays(None, 0)
    y0, t_eval = np.array([1.0, 1.0]), np.array([2.0])
    good = fn(mk.fns(method), bundles.Inputs(p, tw, W, wbuf), y0, 0.0, 2.0, loop, t_eval, 0)
    assert isinstance(good, bundles.LoopResult) and good.status == 0

    def f(t, y):
        a, b, c, d = p
        return [a * y[0] - b * y[0] * y[1], c * y[0] * y[1] - d * y[1]]

    ref = scipy.integrate.solve_ivp(f, (0.0, 2.0), y0, rtol=1e-11, atol=1e-11).y[:, -1]
    np.testing.assert_allclose(good.z_eval[0], ref, rtol=1e-6)
    strided = np.repeat(p, 2)[::2]
    assert not strided.flags.c_contiguous
    with pytest.raises(TypeError):
        fn(mk.fns(method), bundles.Inputs(strided, tw, W, wbuf), y0, 0.0, 2.0, loop, t_eval, 0)


def test_checkpoint_recompute_counts_only_what_an_explicit_loop_counts(lotka_volterra):
    """An explicit loop keeps four counters; the checkpoint entry summed six from
    each re-solve, reading two past the end of the array (``njev``/``nlu`` of
    garbage in ``stats['recompute']``)."""
    x, y = lotka_volterra.states
    cost = sciode.Cost(terminal=x**2 + y)
    res = sciode.value_and_grad(lotka_volterra, cost, [1.0, 1.0], (0.0, 5.0),
                                params=[1.5, 1.0, 1.0, 3.0], sensitivity="checkpoint",
                                checkpoints=4)
    rec = res.stats["recompute"]
    assert set(rec) == {"nfev", "nsteps", "naccepted", "nrejected"}
    assert rec["nsteps"] >= res.stats["forward"]["nsteps"] > 0
