"""The specialised explicit loop (``sciode.cpu.specialized``): the same steps and
numbers as the generic loop, right against independent references, and the
rule that chooses between them.

The rest of the suite runs with ``SCIODE_SPECIALIZE=never`` (``conftest``), so
that which loop a test runs does not depend on what an earlier test spent;
here each test says which loop it wants.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import sympy as sp
from scipy.integrate import solve_ivp

import sciode
from sciode.codegen import model_kernels
from sciode.cpu import solvers, specialized

METHODS = ("bosh3", "dopri5", "tsit5", "dop853")


def _solve(monkeypatch, which, *args, **kw):
    monkeypatch.setenv(specialized.ENV, which)
    return sciode.solve(*args, **kw)


@pytest.fixture(scope="session")
def blowup_model():
    y = sp.symbols("y")
    return sciode.Model(states=[y], rhs=[y**2], name="spec_blowup")


def _lorenz_rhs(t, u, sigma, rho, beta):
    x, y, z = u
    return [sigma * (y - x), x * (rho - z) - y, x * y - beta * z]


@pytest.mark.parametrize("method", METHODS)
def test_same_steps_and_numbers_as_the_generic_loop(monkeypatch, lorenz, method):
    p, y0, te = [10.0, 28.0, 8.0 / 3.0], [1.0, 1.0, 1.0], np.linspace(0.0, 5.0, 41)
    for rtol, atol in ((1e-4, 1e-7), (1e-8, 1e-10)):
        gen = _solve(monkeypatch, "never", lorenz, y0, (0.0, 5.0), params=p, t_eval=te, method=method,
                     rtol=rtol, atol=atol)
        spe = _solve(monkeypatch, "always", lorenz, y0, (0.0, 5.0), params=p, t_eval=te, method=method,
                     rtol=rtol, atol=atol)
        assert spe.extra["raw"].ts.shape == (2,)  # ran specialised: only the two ends kept
        assert gen.success and spe.success
        assert spe.stats == gen.stats
        np.testing.assert_array_equal(spe.y, gen.y)
        np.testing.assert_array_equal(spe.t, gen.t)
    # and right: against SciPy's DOP853 on a hand-written right-hand side at 1e-13
    ref = solve_ivp(_lorenz_rhs, (0.0, 5.0), y0, t_eval=te, args=tuple(p), method="DOP853", rtol=1e-13,
                    atol=1e-13)
    assert np.abs(spe.y - ref.y.T).max() < 1e-5 * np.abs(ref.y).max()


@pytest.mark.parametrize("room", [None, 8 * 5 * 10])
def test_accepted_steps_without_t_eval(monkeypatch, lorenz, blowup_model, room):
    """Without ``t_eval`` both loops return every accepted step; a solve that
    outgrows the room for its steps (10 here) runs on the generic loop."""
    if room is not None:
        monkeypatch.setattr(specialized, "STEPS_BYTES", room)
    p = [10.0, 28.0, 8.0 / 3.0]
    for method in ("dopri5", "dop853"):
        gen = _solve(monkeypatch, "never", lorenz, [1.0, 1.0, 1.0], (0.0, 2.0), params=p, method=method,
                     rtol=1e-8, atol=1e-8)
        spe = _solve(monkeypatch, "always", lorenz, [1.0, 1.0, 1.0], (0.0, 2.0), params=p, method=method,
                     rtol=1e-8, atol=1e-8)
        assert gen.t.size > 40 and spe.stats == gen.stats
        np.testing.assert_array_equal(spe.t, gen.t)
        np.testing.assert_array_equal(spe.y, gen.y)
    # the step bound still binds, and a failure returns the steps up to it
    for kw in ({"max_steps": 7}, {}):
        gen = _solve(monkeypatch, "never", blowup_model, [1.0], (0.0, 2.0), **kw)
        spe = _solve(monkeypatch, "always", blowup_model, [1.0], (0.0, 2.0), **kw)
        assert not spe.success and (spe.status, spe.message) == (gen.status, gen.message)
        np.testing.assert_array_equal(spe.t, gen.t)
        np.testing.assert_array_equal(spe.y, gen.y)


@pytest.fixture(scope="session")
def chain():
    """A 20-state linear chain ``x_i' = k (x_{i-1} - x_i)`` (above ``SMALL``: the
    stage sums run row by row of ``K``)."""
    xs = sp.symbols("x0:20")
    k = sp.symbols("k")
    return sciode.Model(states=list(xs), rhs=[-k * xs[0]] + [k * (xs[i - 1] - xs[i]) for i in range(1, 20)],
                        params=[k], name="spec_chain")


@pytest.mark.parametrize("method", ["dopri5", "dop853"])
def test_many_states_same_numbers_and_closed_form(monkeypatch, chain, method):
    from scipy.linalg import expm

    n, k = 20, 1.5
    A = k * (np.eye(n, k=-1) - np.eye(n))
    y0 = np.linspace(1.0, 0.0, n)
    te = np.array([0.5, 1.0, 2.0])
    kw = dict(params=[k], t_eval=te, method=method, rtol=1e-10, atol=1e-12)
    gen = _solve(monkeypatch, "never", chain, y0, (0.0, 2.0), **kw)
    spe = _solve(monkeypatch, "always", chain, y0, (0.0, 2.0), **kw)
    assert spe.extra["raw"].ts.shape == (2,) and spe.stats == gen.stats
    np.testing.assert_array_equal(spe.y, gen.y)
    exact = np.array([expm(A * t) @ y0 for t in te])
    np.testing.assert_allclose(spe.y, exact, atol=1e-8)


def test_backward_span_first_step_and_max_step(monkeypatch, oscillator):
    """``x'' = -k x - c v`` integrated backward, with a given first step and a
    step bound: the two loops agree, and both match the closed form."""
    k, c = 4.0, 0.0
    te = np.linspace(3.0, 0.0, 7)
    kw = dict(params=[k, c], t_eval=te, rtol=1e-9, atol=1e-12, first_step=1e-3, max_step=0.05)
    gen = _solve(monkeypatch, "never", oscillator, [1.0, 0.0], (3.0, 0.0), **kw)
    spe = _solve(monkeypatch, "always", oscillator, [1.0, 0.0], (3.0, 0.0), **kw)
    assert spe.stats == gen.stats
    np.testing.assert_array_equal(spe.y, gen.y)
    w = np.sqrt(k)
    s = te - 3.0  # x(3) = 1, v(3) = 0
    np.testing.assert_allclose(spe.y[:, 0], np.cos(w * s), atol=1e-7)
    np.testing.assert_allclose(spe.y[:, 1], -w * np.sin(w * s), atol=1e-7)


@pytest.mark.parametrize("max_steps", [100_000, 40])
def test_failures_are_reported_as_the_generic_loop_reports_them(monkeypatch, blowup_model, max_steps):
    """``y' = y^2`` blows up at t = 1; with 40 steps the solve runs out of steps first."""
    te = np.linspace(0.0, 2.0, 9)
    gen = _solve(monkeypatch, "never", blowup_model, [1.0], (0.0, 2.0), t_eval=te, max_steps=max_steps)
    spe = _solve(monkeypatch, "always", blowup_model, [1.0], (0.0, 2.0), t_eval=te, max_steps=max_steps)
    assert not spe.success and not gen.success
    assert (spe.status, spe.message, spe.t_reached) == (gen.status, gen.message, gen.t_reached)
    assert spe.stats == gen.stats
    np.testing.assert_array_equal(spe.t, gen.t)
    np.testing.assert_array_equal(spe.y, gen.y)
    assert spe.t_reached < 1.0 + 1e-6  # the singularity stops both loops at t = 1
    with pytest.raises(sciode.SolverError):
        _solve(monkeypatch, "always", blowup_model, [1.0], (0.0, 2.0), t_eval=te, max_steps=max_steps,
               raise_on_failure=True)


def test_ensemble_members_equal_the_generic_loop(monkeypatch, lorenz):
    rho = np.linspace(0.0, 28.0, 40)
    P = np.column_stack([np.full_like(rho, 10.0), rho, np.full_like(rho, 8.0 / 3.0)])
    te = np.linspace(0.0, 1.0, 11)
    # with 25 steps the chaotic members run out of steps: they fail alone
    kw = dict(t_eval=te, rtol=1e-6, atol=1e-6, threads=2, max_steps=25)
    monkeypatch.setenv(specialized.ENV, "never")
    gen = sciode.solve_ensemble(lorenz, [1.0, 1.0, 1.0], (0.0, 1.0), P, **kw)
    monkeypatch.setenv(specialized.ENV, "always")
    spe = sciode.solve_ensemble(lorenz, [1.0, 1.0, 1.0], (0.0, 1.0), P, **kw)
    np.testing.assert_array_equal(spe.status, gen.status)
    np.testing.assert_array_equal(spe.y, gen.y)
    for k in gen.stats:
        np.testing.assert_array_equal(spe.stats[k], gen.stats[k])
    assert 0 < spe.failed.size < len(rho) and spe.success[0]
    assert np.isnan(spe.y[spe.failed[-1], -1]).all() and np.isfinite(spe.y[spe.success]).all()


def test_the_rule_rents_then_buys(monkeypatch, lorenz, tmp_path):
    """``use``: the generic loop until the pair has spent the compile estimate
    there, then the specialised one; an earlier process's marker, a generic
    loop that is not compiled yet, or the environment, decide at once."""
    monkeypatch.setenv("SCIODE_CACHE_DIR", str(tmp_path))  # no marker of earlier runs
    monkeypatch.setattr(specialized, "_SPENT", specialized.defaultdict(float))
    monkeypatch.setattr(specialized, "_ENTRIES", {})
    monkeypatch.setattr(specialized, "_LOOKED", {})
    mk, tab = model_kernels(lorenz), solvers.lookup_method("tsit5")
    monkeypatch.setenv(specialized.ENV, "auto")
    assert not specialized.use(mk, tab)
    specialized.spent(mk, tab, 0.6 * specialized.COMPILE_ESTIMATE_S)
    assert not specialized.use(mk, tab)
    specialized.spent(mk, tab, 0.6 * specialized.COMPILE_ESTIMATE_S)
    assert specialized.use(mk, tab)
    # a fresh process with the marker left by one that compiled the pair
    monkeypatch.setattr(specialized, "_SPENT", specialized.defaultdict(float))
    assert not specialized.use(mk, tab)
    specialized._marker(mk, tab).touch()
    monkeypatch.setattr(specialized, "_LOOKED", {})  # (a process looks once)
    assert specialized.use(mk, tab)
    # a fresh installation: the generic loop's entry is not compiled, and
    # compiling it costs an order of magnitude more than the specialised loop
    monkeypatch.setattr(specialized, "_SPENT", specialized.defaultdict(float))
    monkeypatch.setattr(specialized, "_LOOKED", {})
    monkeypatch.setattr(specialized, "_marker", lambda mk, tab: tmp_path / "no-marker")
    monkeypatch.setattr(specialized.drivers, "is_compiled", lambda *a: False)
    assert specialized.use(mk, tab, "forward")
    monkeypatch.setattr(specialized.drivers, "is_compiled", lambda *a: True)
    assert not specialized.use(mk, tab, "forward")
    monkeypatch.setenv(specialized.ENV, "never")
    assert not specialized.use(mk, tab)
    monkeypatch.setenv(specialized.ENV, "always")
    assert specialized.use(mk, tab)
    monkeypatch.setenv(specialized.ENV, "sometimes")
    with pytest.raises(ValueError, match="SCIODE_SPECIALIZE"):
        specialized.use(mk, tab)


def test_auto_switches_after_the_generic_loop_spent_the_estimate(monkeypatch, lorenz, tmp_path):
    monkeypatch.setenv("SCIODE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(specialized, "_SPENT", specialized.defaultdict(float))
    monkeypatch.setattr(specialized, "_ENTRIES", {})
    monkeypatch.setattr(specialized, "_LOOKED", {})
    monkeypatch.setattr(specialized, "COMPILE_ESTIMATE_S", 1e-12)  # any time spent
    kw = dict(params=[10.0, 28.0, 8.0 / 3.0], t_eval=[1.0], method="dopri5")
    monkeypatch.setenv(specialized.ENV, "auto")
    monkeypatch.setattr(specialized.drivers, "is_compiled", lambda *a: True)
    first = sciode.solve(lorenz, [1.0, 1.0, 1.0], (0.0, 1.0), **kw)
    second = sciode.solve(lorenz, [1.0, 1.0, 1.0], (0.0, 1.0), **kw)
    assert first.extra["raw"].ts.shape[0] > 2  # the generic loop kept its steps
    assert second.extra["raw"].ts.shape == (2,)  # specialised
    np.testing.assert_array_equal(first.y, second.y)


def test_out_of_scope_calls_stay_generic(monkeypatch, lorenz, controlled):
    monkeypatch.setenv(specialized.ENV, "always")
    p = [10.0, 28.0, 8.0 / 3.0]
    dense = sciode.solve(lorenz, [1.0, 1.0, 1.0], (0.0, 1.0), params=p, t_eval=[1.0], dense=True)
    ctrl = sciode.Controls([0.0, 1.0], [[0.0], [1.0]])
    with_w = sciode.solve(controlled, [1.0], (0.0, 1.0), params=[-1.0, 1.0], t_eval=[1.0], controls=ctrl)
    for sol in (dense, with_w):
        assert sol.success and sol.extra["raw"].ts.shape[0] > 2


def test_a_second_process_loads_the_specialised_loop_from_the_cache(tmp_path):
    """The closures are keyed by stable names (``_numba_compat.stable_identity``):
    a second process hits Numba's disk cache instead of compiling (and adds no
    entry to it)."""
    script = textwrap.dedent("""
        import json, sys
        import sympy as sp
        import sciode
        from sciode.codegen import model_kernels
        from sciode.cpu import solvers, specialized
        x, v = sp.symbols("x v")
        m = sciode.Model(states=[x, v], rhs=[v, -x], name="spec_cache_probe")
        sol = sciode.solve(m, [1.0, 0.0], (0.0, 1.0), t_eval=[1.0])
        ent = specialized.entries(model_kernels(m), solvers.lookup_method("dopri5"))
        print(json.dumps({"hits": sum(ent.solve.stats.cache_hits.values()),
                          "misses": sum(ent.solve.stats.cache_misses.values()),
                          "x": float(sol.y[-1, 0])}))
    """)
    env = {**__import__("os").environ, "SCIODE_CACHE_DIR": str(tmp_path), "SCIODE_SPECIALIZE": "always"}
    runs = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                             timeout=600)
        assert out.returncode == 0, out.stderr
        runs.append(__import__("json").loads(out.stdout.strip().splitlines()[-1]))
    assert runs[0]["misses"] == 1 and runs[0]["hits"] == 0
    if sciode._numba_compat.CACHE_CLOSURES:
        assert runs[1]["hits"] == 1 and runs[1]["misses"] == 0
    assert abs(runs[1]["x"] - np.cos(1.0)) < 1e-6
    assert len(list(tmp_path.rglob("specialized._build.locals.solve-*.nbc"))) <= 1


_TWO_MODELS = textwrap.dedent("""
    import json, sys
    import numpy as np
    import sympy as sp
    import sciode
    x, v = sp.symbols("x v")
    osc = sciode.Model(states=[x, v], rhs=[v, -4 * x], name="spec_link_osc")
    a, b, c = sp.symbols("a b c")
    decay = sciode.Model(states=[a, b, c], rhs=[-a, -2 * b, -3 * c], name="spec_link_decay")
    te = np.linspace(0.0, 1.0, 5)
    err = {}
    for which in sys.argv[1].split(","):
        if which == "osc":
            y = sciode.solve(osc, [1.0, 0.0], (0.0, 1.0), t_eval=te, rtol=1e-10, atol=1e-12).y
            err[which] = float(np.abs(y[:, 0] - np.cos(2 * te)).max())
        else:
            y = sciode.solve(decay, [1.0, 1.0, 1.0], (0.0, 1.0), t_eval=te, rtol=1e-10, atol=1e-12).y
            err[which] = float(np.abs(y - np.exp(-np.outer(te, [1.0, 2.0, 3.0]))).max())
    print(json.dumps(err))
""")


def test_loops_of_two_models_compiled_apart_link_apart(tmp_path):
    """Two models' specialised loops, each compiled and cached by its own
    process (where Numba's per-process counters name them alike), then loaded
    into one: each still runs its own code."""
    env = {**__import__("os").environ, "SCIODE_CACHE_DIR": str(tmp_path), "SCIODE_SPECIALIZE": "always"}
    for which in ("osc", "decay", "osc,decay", "decay,osc"):
        out = subprocess.run([sys.executable, "-c", _TWO_MODELS, which], env=env, capture_output=True,
                             text=True, timeout=600)
        assert out.returncode == 0, out.stderr
        err = __import__("json").loads(out.stdout.strip().splitlines()[-1])
        assert max(err.values()) < 1e-7, (which, err)


def test_generic_entries_leave_a_ready_marker():
    """``drivers.is_compiled`` knows an entry this process has compiled or
    loaded (``entry`` leaves a marker in the disk cache for later processes)."""
    from sciode.cpu import drivers

    method = solvers.rk_method(solvers.lookup_method("bosh3"))
    drivers.entry("forward", method)
    assert drivers.is_compiled("forward", method)
    key = ("forward", drivers.method_type(method), None)
    assert drivers._ready_marker(key).exists()


@pytest.mark.parametrize("method", ["dopri5", "dop853"])
def test_first_step_floor_is_the_generic_loops(monkeypatch, method):
    """Both loops apply the shared starting-step rule (``step_rules``), with
    its floor at ``100 eps max(|t0|, |t1|)``: the specialised loop used to
    miss it and underflow at t0 = 240 on the model of
    ``test_solve.test_first_step_is_never_below_the_resolution_of_t``."""
    from test_solve import _quadrature_model

    model = _quadrature_model()
    ts = np.array([240.0, 250.0, 300.0])
    kw = dict(t_eval=ts, method=method, rtol=1e-8, atol=1e-12)
    gen = _solve(monkeypatch, "never", model, [1e6, 0.0], (240.0, 300.0), [0.01, 1e6], **kw)
    spe = _solve(monkeypatch, "always", model, [1e6, 0.0], (240.0, 300.0), [0.01, 1e6], **kw)
    assert spe.success and spe.stats == gen.stats
    np.testing.assert_array_equal(spe.y, gen.y)
