"""Steady states of PEtab simulations: Newton's method on the compiled Jacobian,
conservation laws, and sensitivities by the implicit function theorem.

A steady state of ``x' = f(x, p)`` started at ``x0`` solves

    f(x, p) = 0,    C x = C x0,

where the rows of ``C`` (``m x n``, orthonormal) span the conservation laws
``c^T f(x, p) = 0`` for every ``x``: the left null space of ``df/dx``, found
from the Jacobian at ``x0`` and at three random points around it
(`SteadyStateSolver.conservation_laws`).  The stacked system ``K = [J; C]``
(``(n + m) x n``) has full column rank at a regular steady state, so Newton's
method takes the least-squares step ``K dx = -[f; C x - C x0]`` (damped by
halving until the residual decreases) and stops when the weighted RMS of
``f``, ``sqrt(mean((f_i / (atol + rtol |x_i|))^2))``, is below 1 (AMICI's
and PEtab's criterion), then takes one more step when it lowers the residual.
A root is accepted only if it is finite, keeps the species that start
nonnegative nonnegative, and is stable (every eigenvalue of ``J`` but the
``m`` of the conservation laws has a negative real part): the state a
simulation would reach.  As AMICI: Newton from the start, else a long
simulation (`SteadyStateSolver.simulate`) polished by Newton.

Sensitivities.  Differentiating ``f(x_ss, p) = 0`` and ``C x_ss = C x0``
(``C`` independent of ``p``: checked along the parameters that vary):

    K dx_ss/d[p, x0] = R,    R = [[-df/dp, 0], [0, C]],

consistent, so ``dx_ss/d[p, x0] = K^+ R``; and for a cotangent ``g`` any
``w = (mu, nu)`` with ``K^T w = g`` (``J^T mu + C^T nu = g``) gives
``g^T dx_ss/dp = -mu^T df/dp`` and ``g^T dx_ss/dx0 = nu^T C``, the
steady-state adjoint.  Both use one SVD of ``K D`` (``D``: the state scales).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from ..errors import SolverError

#: Singular values of the sampled Jacobians below this (relative) span the
#: conservation laws.
_LAW_TOL = 1e-10
#: Largest condition number of ``K D`` at which the implicit-function
#: sensitivities are used (else: integrated sensitivities).
_MAX_COND = 1e12


@dataclass
class SteadyState:
    """A steady state ``x`` of ``x' = f(x, p)`` reached from ``x0`` at ``t = 0``."""

    x: np.ndarray
    p: np.ndarray
    x0: np.ndarray
    how: str                  # "newton" | "simulation+newton" | "simulation"
    T: float | None           # integration time of the simulation (None: not simulated)
    ift: tuple | None = None  # (U, s, Vt, D, C, fp): implicit-function sensitivities

    def jacobian(self) -> np.ndarray:
        """``dx/d[p, x0]`` ``(n, n_p + n)`` by the implicit function theorem."""
        U, s, Vt, D, C, fp = self.ift
        n, n_p, m = self.x.size, self.p.size, C.shape[0]
        R = np.zeros((n + m, n_p + n))
        R[:n, :n_p] = -fp
        R[n:, n_p:] = C
        return D[:, None] * (Vt.T @ ((U.T @ R) / s[:, None]))

    def vjp(self, g) -> tuple[np.ndarray, np.ndarray]:
        """``(g . dx/dp, g . dx/dx0)`` by the steady-state adjoint."""
        U, s, Vt, D, C, fp = self.ift
        n = self.x.size
        w = U @ ((Vt @ (D * g)) / s)
        return -w[:n] @ fp, w[n:] @ C


class SteadyStateSolver:
    """Newton's method with a simulation fallback, on a model's compiled kernels.

    ``counts`` tallies how each steady state was found (``"newton"``,
    ``"simulation+newton"``, ``"simulation"``) and how its sensitivities were
    computed (``"sensitivities: implicit"``, ``"sensitivities: integrated"``).
    """

    def __init__(self, model, rtol: float, atol: float, solve_kw, nonneg=None, newton: bool = True,
                 max_iter: int = 50):
        from ..codegen import model_kernels

        self._mk = mk = model_kernels(model)  # jac_p compiled on first use (gradients only)
        self._rhs, self._jy = mk["rhs"], mk["jac_y"]
        self.model = model
        self.n, self.n_p = model.n_states, model.n_params
        self.rtol, self.atol = float(rtol), float(atol)
        self._solve_kw = solve_kw
        self._w = np.zeros(model.n_controls)
        self.nonneg = np.zeros(self.n, bool) if nonneg is None else np.asarray(nonneg, bool)
        # a time-dependent right-hand side has no steady state in f(x, p) = 0
        self.autonomous = not any(model.t in e.free_symbols for e in model.rhs)
        self.use_newton = bool(newton) and self.autonomous
        self.max_iter = max_iter
        self.counts = Counter()

    # --- kernels ------------------------------------------------------------

    def f(self, x, p, t=0.0) -> np.ndarray:
        out = np.empty(self.n)
        self._rhs(float(t), np.ascontiguousarray(x, dtype=float), p, self._w, out)
        return out

    def jac(self, x, p) -> np.ndarray:
        out = np.empty((self.n, self.n))
        self._jy(0.0, np.ascontiguousarray(x, dtype=float), p, self._w, out)
        return out

    def jac_p(self, x, p) -> np.ndarray:
        out = np.empty((self.n, self.n_p))
        self._mk["jac_p"](0.0, np.ascontiguousarray(x, dtype=float), p, self._w, out)
        return out

    def wrms(self, f, x) -> float:
        """Weighted RMS ``sqrt(mean((f_i / (atol + rtol |x_i|))^2))``."""
        if f.size == 0:
            return 0.0
        return float(np.sqrt(np.mean((f / (self.atol + self.rtol * np.abs(x))) ** 2)))

    # --- conservation laws ------------------------------------------------------

    def conservation_laws(self, x0, p) -> np.ndarray:
        """Orthonormal rows ``C`` ``(m, n)`` with ``C df/dx = 0``: the common left
        null space of the Jacobian at ``x0`` and at three random points with
        the magnitudes of ``x0`` (columns scaled by them)."""
        n = self.n
        mag = np.abs(np.asarray(x0, dtype=float))
        nz = mag[mag > 0]
        ref = float(np.median(nz)) if nz.size else 1.0
        mag = np.where(mag > 0, mag, ref)
        rng = np.random.default_rng(12345)
        points = [np.asarray(x0, dtype=float)] + [mag * np.exp(0.5 * rng.standard_normal(n)) for _ in range(3)]
        blocks = []
        for x in points:
            J = self.jac(x, p)
            if np.isfinite(J).all():
                blocks.append(J * mag)
        if not blocks:
            return np.zeros((0, n))
        U, s, _ = np.linalg.svd(np.hstack(blocks), full_matrices=True)
        if s.size == 0 or s[0] == 0.0:
            return np.eye(n)
        rank = int(np.sum(s > _LAW_TOL * s[0]))
        return U[:, rank:].T.copy()

    # --- Newton -------------------------------------------------------------------

    def _residual(self, x, p, C, total, wf, wc):
        f = self.f(x, p)
        F = np.concatenate([f * wf, (C @ x - total) * wc])
        return (F, f) if np.isfinite(F).all() else (None, None)

    def newton(self, x, p, C, total, x0):
        """Newton's method from ``x`` on ``f = 0, C x = total``; the accepted root
        or None."""
        x = np.array(x, dtype=float)
        wf = 1.0 / (self.atol + self.rtol * np.maximum(np.abs(x), np.abs(x0)))
        scale = max(float(np.abs(x0).max(initial=0.0)), float(np.abs(total).max(initial=0.0)))
        wc = 1.0 / (self.atol + self.rtol * scale)
        F, f = self._residual(x, p, C, total, wf, wc)
        if F is None:
            return None
        for _ in range(self.max_iter):
            converged = (self.wrms(f, x) < 1.0
                         and np.all(np.abs(C @ x - total) <= self.atol + self.rtol * scale))
            step = self._step(x, p, C, wf, wc, F)
            if converged:  # one more full step where it lowers the residual
                if step is not None:
                    Fn, fn = self._residual(x + step, p, C, total, wf, wc)
                    if Fn is not None and Fn @ Fn < F @ F:
                        x = x + step
                return self._accept(x, p, C, x0)
            if step is None:
                return None
            lam = 1.0
            while True:
                Fn, fn = self._residual(x + lam * step, p, C, total, wf, wc)
                if Fn is not None and Fn @ Fn < F @ F:
                    break
                lam *= 0.5
                if lam < 1e-10:
                    return None
            x, F, f = x + lam * step, Fn, fn
        return None

    def _step(self, x, p, C, wf, wc, F):
        """The Newton step ``[J; C] dx = -F`` (rows weighted), None where singular."""
        J = self.jac(x, p)
        if not np.isfinite(J).all():
            return None
        K = np.vstack([J * wf[:, None], C * wc])
        dx, _, rank, _ = np.linalg.lstsq(K, -F, rcond=None)
        return dx if rank == self.n else None

    def _accept(self, x, p, C, x0):
        """``x`` if it is the state a simulation reaches: finite, species that
        start nonnegative stay so, stable off the conservation laws."""
        if not np.isfinite(x).all():
            return None
        tol = self.atol + self.rtol * float(np.abs(x).max(initial=0.0))
        if np.any(x[self.nonneg & (x0 >= 0)] < -tol):
            return None
        J = self.jac(x, p)
        if not np.isfinite(J).all():
            return None
        eig = np.linalg.eigvals(J)
        eig = eig[np.argsort(np.abs(eig))][C.shape[0]:]
        if eig.size and eig.real.max() > 1e-9 * np.abs(eig).max():
            return None
        return x

    # --- simulation ---------------------------------------------------------------

    def simulate(self, p, x0) -> tuple[np.ndarray, float]:
        """Long integration from ``x0`` at ``t = 0``: ``(x(T), T)`` at the first
        ``T = 10^k`` (``k = 0..9``) where the weighted RMS of ``f`` is below 1."""
        from ..api import solve

        t_prev, y = 0.0, np.asarray(x0, dtype=float)
        for t in 10.0 ** np.arange(0, 10):
            sol = solve(self.model, y, (t_prev, t), p, t_eval=[t], **self._solve_kw())
            if not sol.success:
                raise SolverError(f"steady state: simulation failed before t = {t:g}: {sol.message}")
            y, t_prev = sol.y[-1], t
            if self.wrms(self.f(y, p, t), y) < 1.0:
                return y, float(t)
        raise SolverError(f"steady state: none by t = {t_prev:g} (weighted RMS of dx/dt > 1)")

    # --- the steady state -----------------------------------------------------------

    def solve(self, p, x0, start=None, sensitivities: bool = False, varying=None) -> SteadyState:
        """Steady state reached from ``x0`` (Newton from ``start``, default
        ``x0``); with `sensitivities` the implicit-function factors where they
        apply (``varying``: mask of the parameters whose derivatives are
        wanted, for the check that ``C`` does not depend on them)."""
        p = np.ascontiguousarray(p, dtype=float)
        x0 = np.asarray(x0, dtype=float)
        C = T = None
        x = None
        if self.use_newton:
            C = self.conservation_laws(x0, p)
            total = C @ x0
            x = self.newton_safe(x0 if start is None else start, p, C, total, x0)
            how = "newton"
            if x is None:
                xs, T = self.simulate(p, x0)
                x = self.newton_safe(xs, p, C, total, x0)
                how = "simulation+newton"
                if x is None:
                    x, how = xs, "simulation"
        else:
            x, T = self.simulate(p, x0)
            how = "simulation"
        self.counts[how] += 1
        ss = SteadyState(x, p, x0.copy(), how, T)
        if sensitivities:
            if how != "simulation":
                ss.ift = self._ift(x, p, C, varying)
            if ss.ift is None and ss.T is None:
                _, ss.T = self.simulate(p, x0)
            self.counts["sensitivities: " + ("implicit" if ss.ift is not None else "integrated")] += 1
        return ss

    def newton_safe(self, x, p, C, total, x0):
        with np.errstate(all="ignore"):
            try:
                return self.newton(x, p, C, total, x0)
            except np.linalg.LinAlgError:
                return None

    def _ift(self, x, p, C, varying):
        """``(U, s, Vt, D, C, fp)`` with ``K D = U diag(s) Vt``, or None where
        ``K`` is ill-conditioned or ``C`` moves with the varying parameters."""
        if varying is not None and C.shape[0] and np.any(varying):
            z = np.random.default_rng(7).standard_normal(p.size)
            p2 = p + np.where(varying, 0.05 * z * np.where(p != 0, np.abs(p), 1.0), 0.0)
            C2 = self.conservation_laws(x, p2)
            if C2.shape != C.shape or np.abs(C2 - (C2 @ C.T) @ C).max() > 1e-8:
                return None
        J, fp = self.jac(x, p), self.jac_p(x, p)
        if not (np.isfinite(J).all() and np.isfinite(fp).all()):
            return None
        D = np.abs(x) + max(float(np.abs(x).max(initial=0.0)) * 1e-8, self.atol)
        try:
            U, s, Vt = np.linalg.svd(np.vstack([J, C]) * D, full_matrices=False)
        except np.linalg.LinAlgError:
            return None
        if s.size and (s[-1] <= 0.0 or s[0] / s[-1] > _MAX_COND):
            return None
        return U, s, Vt, D, C, fp
