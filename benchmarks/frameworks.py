"""Solvers under comparison, behind one calling convention.

``solve_runner(framework, problem, method)`` returns ``run(rtol, atol) -> dict``
with at least ``y`` (state at ``t1``) and whatever work counters the package
exposes (``nfev``, ``nsteps``, ``njev``, ``nlu``).  ``grad_runner(...)`` returns
``run(rtol, atol) -> (value, grad_params, stats)``.  Expensive set-up (jit
tracing, integrator construction) happens in the factory or on the first call
of a tolerance, so the warm timings exclude it.  A runner raises
``Unavailable`` when its package is missing.
"""

from __future__ import annotations

import numpy as np

from ._util import have
from .problems import JaxB, NumpyB, TorchB


class Unavailable(RuntimeError):
    pass


def _need(mod):
    if not have(mod):
        raise Unavailable(f"`{mod}` is not installed")


# --- sciode --------------------------------------------------------------------------


def sciode_solve(prob, method, t_eval=None):
    import sciode
    model = prob.model

    def run(rtol, atol):
        sol = sciode.solve(model, prob.y0, prob.t_span, params=prob.params, method=method,
                           rtol=rtol, atol=atol, t_eval=t_eval, max_steps=10_000_000)
        st = dict(sol.stats)
        st["success"] = sol.success
        st["y"] = sol.y[-1]
        return st
    return run


def sciode_grad(prob, sensitivity, method="dopri5", **options):
    import sciode
    model, cost = prob.model, prob.sciode_cost()

    def run(rtol, atol):
        res = sciode.value_and_grad(model, cost, prob.y0, prob.t_span, params=prob.params,
                                    sensitivity=sensitivity, method=method, rtol=rtol, atol=atol,
                                    max_steps=10_000_000, **options)
        return res.value, np.asarray(res.grad_params), res.stats
    return run


# --- scipy ---------------------------------------------------------------------------


def scipy_solve(prob, method, use_jac=True, t_eval=None):
    from scipy.integrate import solve_ivp
    f = prob.np_rhs()
    jac = None
    if use_jac and prob.jac is not None and method in ("BDF", "Radau", "LSODA"):
        p = prob.params
        jac = lambda t, y: prob.jac(t, y, p)  # noqa: E731

    def run(rtol, atol):
        kw = {"jac": jac} if jac is not None else {}
        sol = solve_ivp(f, prob.t_span, prob.y0, method=method, rtol=rtol, atol=atol, t_eval=t_eval, **kw)
        return {"y": sol.y[:, -1], "nfev": sol.nfev, "nsteps": (len(sol.t) - 1) if t_eval is None else None,
                "njev": sol.njev, "nlu": sol.nlu, "success": sol.success}
    return run


# --- diffrax -------------------------------------------------------------------------


def _jax():
    _need("jax")
    _need("diffrax")
    import jax
    jax.config.update("jax_enable_x64", True)
    try:
        jax.config.update("jax_platforms", "cpu")
    except Exception:  # noqa: BLE001  (already initialised)
        pass
    return jax


def diffrax_solve(prob, solver_name, max_steps=1_000_000):
    jax = _jax()
    import diffrax
    import jax.numpy as jnp
    B = JaxB()
    term = diffrax.ODETerm(lambda t, y, args: prob.rhs(t, y, args, B))
    solver = getattr(diffrax, solver_name)()
    t0, t1 = prob.t_span

    @jax.jit
    def solve(y0, p, rtol, atol):
        sol = diffrax.diffeqsolve(term, solver, t0, t1, None, y0, args=p,
                                  stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
                                  saveat=diffrax.SaveAt(t1=True), max_steps=max_steps,
                                  throw=False)
        return sol.ys[-1], sol.stats["num_steps"], sol.stats["num_accepted_steps"], sol.result == diffrax.RESULTS.successful

    y0, p = jnp.asarray(prob.y0), jnp.asarray(prob.params)
    stages = {"Dopri5": 6, "Tsit5": 6, "Dopri8": 12}.get(solver_name, 0)

    def run(rtol, atol):
        y, ns, na, ok = solve(y0, p, jnp.float64(rtol), jnp.float64(atol))
        y = np.asarray(jax.block_until_ready(y))
        ns = int(ns)
        return {"y": y, "nsteps": ns, "naccepted": int(na), "nfev": stages * ns + 1 if stages else None,
                "success": bool(ok)}
    return run


def diffrax_grad(prob, adjoint_name, solver_name="Dopri5", max_steps=65536):
    jax = _jax()
    import diffrax
    import jax.numpy as jnp
    B = JaxB()
    term = diffrax.ODETerm(lambda t, y, args: prob.rhs(t, y, args, B))
    solver = getattr(diffrax, solver_name)()
    t0, t1 = prob.t_span
    adjoint = getattr(diffrax, adjoint_name)()
    ls = prob.cost == "ls"
    saveat = diffrax.SaveAt(ts=jnp.asarray(prob.t_obs)) if ls else diffrax.SaveAt(t1=True)
    yobs = jnp.asarray(prob.y_obs) if ls else None
    y0 = jnp.asarray(prob.y0)

    def loss(p, rtol, atol):
        sol = diffrax.diffeqsolve(term, solver, t0, t1, None, y0, args=p,
                                  stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
                                  saveat=saveat, max_steps=max_steps, adjoint=adjoint)
        if ls:
            return 0.5 * jnp.sum((sol.ys - yobs) ** 2)
        return jnp.sum(sol.ys[-1] ** 2)

    vg = jax.jit(jax.value_and_grad(loss))
    p = jnp.asarray(prob.params)

    def run(rtol, atol):
        v, g = vg(p, jnp.float64(rtol), jnp.float64(atol))
        g = np.asarray(jax.block_until_ready(g))
        return float(v), g, {}
    return run


# --- torchdiffeq ---------------------------------------------------------------------


def _torch_func(prob):
    _need("torchdiffeq")
    import torch
    B = TorchB()

    class Func(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.tensor(prob.params, dtype=torch.float64))
            self.nfev = 0

        def forward(self, t, y):
            self.nfev += 1
            return prob.rhs(t, y, self.p, B)

    return torch, Func()


def torchdiffeq_solve(prob, method="dopri5"):
    torch, func = _torch_func(prob)
    from torchdiffeq import odeint
    y0 = torch.tensor(prob.y0, dtype=torch.float64)
    ts = torch.tensor(prob.t_span, dtype=torch.float64)

    def run(rtol, atol):
        func.nfev = 0
        with torch.no_grad():
            ys = odeint(func, y0, ts, rtol=rtol, atol=atol, method=method)
        nfev = func.nfev
        return {"y": ys[-1].numpy().copy(), "nfev": nfev, "nsteps": None, "success": True}
    return run


def torchdiffeq_grad(prob, method="dopri5", adjoint=True):
    torch, func = _torch_func(prob)
    from torchdiffeq import odeint, odeint_adjoint
    y0 = torch.tensor(prob.y0, dtype=torch.float64)
    ls = prob.cost == "ls"
    ts = torch.tensor(prob.t_obs if ls else prob.t_span, dtype=torch.float64)
    yobs = torch.tensor(prob.y_obs, dtype=torch.float64) if ls else None

    def run(rtol, atol):
        func.zero_grad()
        func.nfev = 0
        if adjoint:
            ys = odeint_adjoint(func, y0, ts, rtol=rtol, atol=atol, method=method, adjoint_params=(func.p,))
        else:
            ys = odeint(func, y0, ts, rtol=rtol, atol=atol, method=method)
        loss = 0.5 * ((ys - yobs) ** 2).sum() if ls else (ys[-1] ** 2).sum()
        loss.backward()
        return float(loss.detach()), func.p.grad.numpy().copy(), {"nfev": func.nfev}
    return run


# --- CasADi --------------------------------------------------------------------------


def _casadi_ode(prob):
    _need("casadi")
    import casadi as ca
    import sympy as sp
    m = prob.model
    x = ca.SX.sym("x", m.n_states)
    p = ca.SX.sym("p", m.n_params)
    mods = [{"tanh": ca.tanh, "exp": ca.exp, "sin": ca.sin, "cos": ca.cos, "log": ca.log,
             "sqrt": ca.sqrt}, "math"]
    f = sp.lambdify([*m.states, *m.params], list(m.rhs), modules=mods)
    args = [x[i] for i in range(m.n_states)] + [p[i] for i in range(m.n_params)]
    ode = ca.vertcat(*[ca.SX(e) if not isinstance(e, ca.SX) else e for e in f(*args)])
    return ca, {"x": x, "p": p, "ode": ode}


def casadi_solve(prob, max_num_steps=10_000_000):
    ca, dae = _casadi_ode(prob)
    t0, t1 = prob.t_span
    cache = {}

    def run(rtol, atol):
        key = (rtol, atol)
        if key not in cache:
            cache[key] = ca.integrator("F", "cvodes", dae, t0, t1,
                                       {"reltol": rtol, "abstol": atol, "max_num_steps": max_num_steps})
        F = cache[key]
        r = F(x0=prob.y0, p=prob.params)
        st = F.stats()
        return {"y": np.asarray(r["xf"]).ravel(), "nfev": st.get("nfevals"), "nsteps": st.get("nsteps"),
                "njev": st.get("njevals"), "nlu": st.get("nlinsetups"), "success": st.get("success", True)}
    return run


def casadi_grad(prob, max_num_steps=10_000_000):
    """CVODES with CasADi's reverse mode through the integrator (CVODES adjoint)."""
    ca, dae = _casadi_ode(prob)
    t0, t1 = prob.t_span
    ls = prob.cost == "ls"
    if ls:
        t_obs = np.asarray(prob.t_obs)
        first = t_obs[0] == t0
        grid = t_obs[1:] if first else t_obs
    else:
        grid = np.array([t1])
    cache = {}
    n_p = prob.model.n_params

    def build(rtol, atol):
        F = ca.integrator("F", "cvodes", dae, t0, list(grid),
                          {"reltol": rtol, "abstol": atol, "max_num_steps": max_num_steps})
        p = ca.MX.sym("p", n_p)
        X = F(x0=ca.DM(prob.y0), p=p)["xf"]          # n x len(grid)
        if ls:
            Y = ca.DM(prob.y_obs[1:].T if first else prob.y_obs.T)
            J = 0.5 * ca.sumsqr(X - Y)
            if first:
                J = J + 0.5 * float(np.sum((prob.y0 - prob.y_obs[0]) ** 2))
        else:
            J = ca.sumsqr(X[:, -1])
        return ca.Function("G", [p], [J, ca.gradient(J, p)])

    def run(rtol, atol):
        key = (rtol, atol)
        if key not in cache:
            cache[key] = build(rtol, atol)
        J, g = cache[key](prob.params)
        return float(J), np.asarray(g).ravel(), {}
    return run


NP = NumpyB
