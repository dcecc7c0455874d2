"""A hand-written CUDA Dormand--Prince Lorenz kernel: the limit that
``solve_ensemble(..., device="cuda")`` is measured against (issue 15).

One thread per member, rho per member, sigma = 10, beta = 8/3, coefficients
and right-hand side written out by hand (no tableau arrays, no device-function
calls), Hairer's starting step, the PI controller of ``sciode.cpu`` (so the
step counts are comparable), output at ``t1`` only.  Written for this
benchmark (the C loop in ``c_ref/`` is its CPU twin).
"""

from __future__ import annotations

import math

from numba import cuda

SIGMA, BETA = 10.0, 8.0 / 3.0
A21 = 1 / 5
A31, A32 = 3 / 40, 9 / 40
A41, A42, A43 = 44 / 45, -56 / 15, 32 / 9
A51, A52, A53, A54 = 19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729
A61, A62, A63, A64, A65 = 9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656
B1, B3, B4, B5, B6 = 35 / 384, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84
E1, E3, E4, E5, E6, E7 = 71 / 57600, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40


@cuda.jit(device=True, inline=True)
def _f(x, y, z, r):
    return SIGMA * (y - x), x * (r - z) - y, x * y - BETA * z


@cuda.jit(device=True, inline=True)
def _sc(a, b, rtol, atol):
    return atol + rtol * max(abs(a), abs(b))


@cuda.jit
def lorenz_dopri5(rho, t1, rtol, atol, out, nsteps):
    """``out[m] = y_m(t1)`` from ``y(0) = (1, 1, 1)`` with ``rho[m]``."""
    m = cuda.grid(1)
    if m >= rho.shape[0]:
        return
    r = rho[m]
    x, y, z = 1.0, 1.0, 1.0
    k1x, k1y, k1z = _f(x, y, z, r)
    # Hairer's starting step
    d0 = math.sqrt(((x / _sc(x, x, rtol, atol)) ** 2 + (y / _sc(y, y, rtol, atol)) ** 2
                    + (z / _sc(z, z, rtol, atol)) ** 2) / 3)
    d1 = math.sqrt(((k1x / _sc(x, x, rtol, atol)) ** 2 + (k1y / _sc(y, y, rtol, atol)) ** 2
                    + (k1z / _sc(z, z, rtol, atol)) ** 2) / 3)
    h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
    h0 = min(h0, t1)
    fx, fy, fz = _f(x + h0 * k1x, y + h0 * k1y, z + h0 * k1z, r)
    d2 = math.sqrt((((fx - k1x) / _sc(x, x, rtol, atol)) ** 2 + ((fy - k1y) / _sc(y, y, rtol, atol)) ** 2
                    + ((fz - k1z) / _sc(z, z, rtol, atol)) ** 2) / 3) / h0
    dmax = max(d1, d2)
    h1 = max(1e-6, h0 * 1e-3) if dmax <= 1e-15 else (0.01 / dmax) ** (1.0 / 6.0)
    h = min(100.0 * h0, h1, t1)
    t = 0.0
    err_prev = 1e-4
    rejected = False
    n = 0
    while t < t1 and n < 100000:
        n += 1
        if t + h >= t1:
            h = t1 - t
        k2x, k2y, k2z = _f(x + h * A21 * k1x, y + h * A21 * k1y, z + h * A21 * k1z, r)
        k3x, k3y, k3z = _f(x + h * (A31 * k1x + A32 * k2x), y + h * (A31 * k1y + A32 * k2y),
                           z + h * (A31 * k1z + A32 * k2z), r)
        k4x, k4y, k4z = _f(x + h * (A41 * k1x + A42 * k2x + A43 * k3x),
                           y + h * (A41 * k1y + A42 * k2y + A43 * k3y),
                           z + h * (A41 * k1z + A42 * k2z + A43 * k3z), r)
        k5x, k5y, k5z = _f(x + h * (A51 * k1x + A52 * k2x + A53 * k3x + A54 * k4x),
                           y + h * (A51 * k1y + A52 * k2y + A53 * k3y + A54 * k4y),
                           z + h * (A51 * k1z + A52 * k2z + A53 * k3z + A54 * k4z), r)
        k6x, k6y, k6z = _f(x + h * (A61 * k1x + A62 * k2x + A63 * k3x + A64 * k4x + A65 * k5x),
                           y + h * (A61 * k1y + A62 * k2y + A63 * k3y + A64 * k4y + A65 * k5y),
                           z + h * (A61 * k1z + A62 * k2z + A63 * k3z + A64 * k4z + A65 * k5z), r)
        xn = x + h * (B1 * k1x + B3 * k3x + B4 * k4x + B5 * k5x + B6 * k6x)
        yn = y + h * (B1 * k1y + B3 * k3y + B4 * k4y + B5 * k5y + B6 * k6y)
        zn = z + h * (B1 * k1z + B3 * k3z + B4 * k4z + B5 * k5z + B6 * k6z)
        k7x, k7y, k7z = _f(xn, yn, zn, r)
        ex = h * (E1 * k1x + E3 * k3x + E4 * k4x + E5 * k5x + E6 * k6x + E7 * k7x)
        ey = h * (E1 * k1y + E3 * k3y + E4 * k4y + E5 * k5y + E6 * k6y + E7 * k7y)
        ez = h * (E1 * k1z + E3 * k3z + E4 * k4z + E5 * k5z + E6 * k6z + E7 * k7z)
        err = math.sqrt(((ex / _sc(x, xn, rtol, atol)) ** 2 + (ey / _sc(y, yn, rtol, atol)) ** 2
                         + (ez / _sc(z, zn, rtol, atol)) ** 2) / 3)
        if err > 1.0:
            h *= max(0.2, 0.9 * err ** -0.2)
            rejected = True
            continue
        fac = 10.0 if err == 0.0 else 0.9 * err ** (-0.2 + 0.75 * 0.04) * err_prev ** 0.04
        fac = min(10.0, max(0.2, fac))
        if rejected:
            fac = min(fac, 1.0)
        err_prev = max(err, 1e-4)
        t += h
        x, y, z = xn, yn, zn
        k1x, k1y, k1z = k7x, k7y, k7z
        h *= fac
        rejected = False
    out[m, 0] = x
    out[m, 1] = y
    out[m, 2] = z
    nsteps[m] = n
