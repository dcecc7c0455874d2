"""The stepping loop of one trajectory, specialised to one model and one tableau.

``build_loop(rhs, N, tab, dtype, jit)`` returns ``integrate``, which advances
one member's state ``z`` (``N`` entries) from ``t0`` to ``t1`` with the
explicit adaptive tableau ``tab`` exactly as ``sciode.cpu.explicit`` does
(Hairer's starting step, stage sums in the CPU loop's order, the RMS error
norm, the PI controller and its constants, the landing on ``t1``), serving
``t_eval`` from the tableau's interpolant and, when ``store`` is set,
recording every accepted step's start ``(t_k, h_k, z_k)`` for a reverse pass.

The model's right-hand side ``rhs``, the size ``N`` and the tableau's
coefficients are constants of the closures built here, so the compiler sees
one model's whole step: the right-hand side is a direct call it may inline,
the loops over ``N`` and the stages have constant bounds, and the
coefficients are literals.  ``jit`` compiles each closure: a CUDA device
function (``sciode.cuda``, one GPU thread per member) or a Numba CPU function
(``sciode.cpu.specialized``: about twice as fast per step as the generic CPU
loop, which calls its kernels through function pointers, at the price of a
compile per model and tableau).  Both follow the same arithmetic in the same
order as ``sciode.cpu.explicit``, so they take the same steps and return
the same numbers (checked member by member in the tests).
"""

from __future__ import annotations

import math
import types

import numpy as np

from . import step_rules
from .cpu.status import MAX_STEPS, NONFINITE, STEP_UNDERFLOW, SUCCESS
from .cpu.stepping import NONFINITE_SHRINK, SMALL


def _own(fn):
    """A copy of the shared rule ``fn`` (``step_rules``) for one loop's ``jit``,
    which may rename what it compiles (``cpu.specialized``)."""
    return types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)


def stage_functions(rhs, N, tab, dtype, jit):
    """``(stages, stage_sum, scaled_sum)`` of ``tab`` over ``N`` entries, compiled by ``jit``.

    The sums follow ``cpu.stepping.scaled_sum``'s order of operations (one dot
    product per entry up to ``SMALL`` entries, row by row of ``K`` above), so
    that the specialised loop and the generic one round alike."""
    S = tab.s
    A = np.ascontiguousarray(tab.A[:S, :S], dtype=dtype)
    c = np.ascontiguousarray(tab.c, dtype=dtype)
    by_rows = N > SMALL

    @jit
    def scaled_sum(h, row, nrow, K, out):
        # out = h sum_{j < nrow} row[j] K[j]
        if by_rows:
            for m in range(N):
                out[m] = 0.0
            for j in range(nrow):
                wj = h * row[j]
                if wj != 0.0:
                    for m in range(N):
                        out[m] += wj * K[j, m]
        else:
            for m in range(N):
                acc = 0.0
                for j in range(nrow):
                    acc += row[j] * K[j, m]
                out[m] = h * acc

    @jit
    def stage_sum(h, row, K, out, z):
        # out = z + h sum_j row[j] K[j]  (scaled_sum, then z)
        scaled_sum(h, row, row.shape[0], K, out)
        for m in range(N):
            out[m] += z[m]

    @jit
    def stages(t, z, h, p, w, K, work):
        for i in range(1, S):
            scaled_sum(h, A[i], i, K, work)
            for m in range(N):
                work[m] += z[m]
            rhs(t + c[i] * h, work, p, w, K[i])

    return stages, stage_sum, scaled_sum


def build_loop(rhs, N, tab, dtype, jit):
    """The ``integrate`` function compiled by ``jit`` (see the module docstring).

    ``integrate(p, w, z, t0, t1, rtol, atol, h_init, hmax, max_steps, t_eval,
    Yrow, Ts, Hs, Zs, store, K, z_new, work, wts, stats) -> (status, t)``;
    ``z`` ends as the final state; ``stats = [nfev, nsteps, naccepted,
    nrejected]``; with ``store``, ``Ts[k], Hs[k], Zs[k]`` for accepted step
    ``k`` (``stats[2]`` of them; more than ``Hs.shape[0]`` stops the member
    with ``MAX_STEPS``).
    """
    S = tab.s
    b = np.ascontiguousarray(tab.b, dtype=dtype)
    e = np.ascontiguousarray(tab.e, dtype=dtype)
    # DOP853: a second (3rd-order) estimator combined with ``e`` (``cpu.explicit.error_norm``)
    two_errors = tab.e3 is not None
    e3 = np.ascontiguousarray(tab.e3 if two_errors else np.zeros(S), dtype=dtype)
    Pd = np.ascontiguousarray(tab.P, dtype=dtype)
    S_tot = Pd.shape[0]  # with the extra stages of the dense output (DOP853)
    n_ext = S_tot - S
    A_ext = np.ascontiguousarray(tab.A_extra if n_ext else np.zeros((1, S_tot)), dtype=dtype)
    c_ext = np.ascontiguousarray(tab.c_extra if n_ext else np.zeros(1), dtype=dtype)
    D = Pd.shape[1]
    fsal = bool(tab.fsal)
    order = int(tab.order)
    q, beta = float(tab.controller_q), float(tab.pi_beta)  # as the CPU loop
    expo = 1.0 / q - 0.75 * beta
    eps = float(np.finfo(np.float64).eps)  # the CPU loop's guards, in float64
    stages, stage_sum, scaled_sum = stage_functions(rhs, N, tab, dtype, jit)
    first_guess, starting_step = jit(_own(step_rules.first_guess)), jit(_own(step_rules.starting_step))
    shrink_factor, grow_factor = jit(_own(step_rules.shrink_factor)), jit(_own(step_rules.grow_factor))
    dop853_error = jit(_own(step_rules.dop853_error))

    @jit
    def finite(v):
        for m in range(N):
            if not math.isfinite(v[m]):
                return False
        return True

    @jit
    def rms(v, z, z2, rtol, atol):
        acc = 0.0
        for m in range(N):
            sc = atol[m] + rtol * max(abs(z[m]), abs(z2[m]))
            acc += (v[m] / sc) ** 2
        return math.sqrt(acc / max(N, 1))

    @jit
    def error_norm(h, K, z, z_new, rtol, atol, work):
        scaled_sum(h, e, S, K, work)
        if not two_errors:
            return rms(work, z, z_new, rtol, atol)
        err5 = 0.0
        for m in range(N):
            sc = atol[m] + rtol * max(abs(z[m]), abs(z_new[m]))
            err5 += (work[m] / sc) ** 2
        scaled_sum(h, e3, S, K, work)
        err3 = 0.0
        for m in range(N):
            sc = atol[m] + rtol * max(abs(z[m]), abs(z_new[m]))
            err3 += (work[m] / sc) ** 2
        return dop853_error(err5, err3, N)

    @jit
    def extra_stages(t, z, h, p, w, K, work):
        # the dense output's extra stages K[S:] (cpu.explicit.extra_stages' order)
        for k in range(n_ext):
            i = S + k
            for m in range(N):
                acc = 0.0
                for j in range(i):
                    acc += A_ext[k, j] * K[j, m]
                work[m] = z[m] + h * acc
            rhs(t + c_ext[k] * h, work, p, w, K[i])

    @jit
    def initial_step(t0, z0, f0, direction, rtol, atol, hmax, span, p, w, work, f1):
        d0 = rms(z0, z0, z0, rtol, atol)
        d1 = rms(f0, z0, z0, rtol, atol)
        h0 = first_guess(d0, d1, hmax, span)
        for m in range(N):
            work[m] = z0[m] + direction * h0 * f0[m]
        rhs(t0 + direction * h0, work, p, w, f1)
        for m in range(N):
            work[m] = f1[m] - f0[m]
        d2 = rms(work, z0, z0, rtol, atol) / h0
        return starting_step(h0, d1, d2, order, hmax, span, t0, direction)

    @jit
    def dense(z, h, K, theta, wts, out):
        for i in range(S_tot):
            acc = 0.0
            pw = theta
            for j in range(D):
                acc += Pd[i, j] * pw
                pw *= theta
            wts[i] = acc
        stage_sum(h, wts, K, out, z)

    @jit
    def integrate(p, w, z, t0, t1, rtol, atol, h_init, hmax, max_steps, t_eval, Yrow, Ts, Hs, Zs,
                  store, K, z_new, work, wts, stats):
        m_eval = t_eval.shape[0]
        direction = 1.0 if t1 >= t0 else -1.0
        span = abs(t1 - t0)
        i_eval = 0
        while i_eval < m_eval and t_eval[i_eval] == t0:
            for m in range(N):
                Yrow[i_eval, m] = z[m]
            i_eval += 1
        nfev, nsteps, nacc, nrej = 0, 0, 0, 0
        t = t0
        st = SUCCESS
        if span > 0.0:
            rhs(t, z, p, w, K[0])
            nfev += 1
            if not finite(K[0]) or not finite(z):
                st = NONFINITE
        if span > 0.0 and st == SUCCESS:
            if h_init > 0.0:
                h = abs(h_init)
            else:
                h = initial_step(t, z, K[0], direction, rtol, atol, hmax, span, p, w, work, K[1])
                nfev += 1
            err_prev = 1e-4
            rejected_last = False
            saw_nonfinite = False
            while (t1 - t) * direction > 0.0:
                if nsteps >= max_steps or (store and nacc >= Hs.shape[0]):
                    st = MAX_STEPS
                    break
                if h < 10.0 * eps * max(abs(t), 1e-300):
                    st = NONFINITE if saw_nonfinite else STEP_UNDERFLOW
                    break
                reach = (t + direction * h - t1) * direction >= -100.0 * eps * max(abs(t1), span)
                hh = (t1 - t) if reach else direction * h
                stages(t, z, hh, p, w, K, work)
                nfev += S - 1
                nsteps += 1
                stage_sum(hh, b, K, z_new, z)
                ok = finite(z_new)
                err = error_norm(hh, K, z, z_new, rtol, atol, work) if ok else math.inf
                if not math.isfinite(err):
                    saw_nonfinite = True
                    nrej += 1
                    h = abs(hh) * NONFINITE_SHRINK
                    rejected_last = True
                    continue
                if err > 1.0:
                    nrej += 1
                    h = abs(hh) * shrink_factor(err, q)
                    rejected_last = True
                    continue
                h_next = min(abs(hh) * grow_factor(err, err_prev, expo, beta, rejected_last), hmax)
                err_prev = max(err, 1e-4)
                t_new = t1 if reach else t + hh
                if n_ext > 0 and i_eval < m_eval and (t_eval[i_eval] - t) * direction <= abs(hh):
                    extra_stages(t, z, hh, p, w, K, work)
                    nfev += n_ext
                while i_eval < m_eval and (t_eval[i_eval] - t_new) * direction <= 0.0:
                    dense(z, hh, K, (t_eval[i_eval] - t) / hh, wts, Yrow[i_eval])
                    i_eval += 1
                if store:
                    Ts[nacc] = t
                    Hs[nacc] = hh
                    for m in range(N):
                        Zs[nacc, m] = z[m]
                nacc += 1
                t = t_new
                for m in range(N):
                    z[m] = z_new[m]
                rejected_last = False
                h = h_next
                if fsal:
                    for m in range(N):
                        K[0, m] = K[S - 1, m]
                else:
                    rhs(t, z, p, w, K[0])
                    nfev += 1
                    if not finite(K[0]):
                        st = NONFINITE
                        break
        stats[0] = nfev
        stats[1] = nsteps
        stats[2] = nacc
        stats[3] = nrej
        return st, t

    return integrate
