"""The scalar rules every explicit adaptive loop applies, written once.

Plain Python functions of floats, which each loop compiles with its own jit:
the generic CPU loop (``cpu.explicit``, Numba, inlined) and the per-model
loop of ``member_loop`` (CUDA device functions, or Numba CPU functions in
``cpu.specialized``).  Written once, the loops cannot drift apart: the
per-model loop once missed the lower bound on the first step that the
generic loop had gained, and underflowed where the generic loop solved.

Constants: Hairer, Norsett & Wanner, *Solving ODEs I*, Sec. II.4 and the
defaults of ``dopri5.f`` (``SAFETY``, ``FAC_MIN``, ``FAC_MAX``).
"""

from __future__ import annotations

import math
import sys

SAFETY = 0.9
FAC_MIN = 0.2
FAC_MAX = 10.0
EPS = sys.float_info.epsilon


def first_guess(d0, d1, hmax, span):
    """Hairer's first trial step ``0.01 d0 / d1`` (``hinit`` in ``dopri5.f``),
    from the scaled norms of the state ``d0`` and of its derivative ``d1``.
    ``d1 = inf`` (the square of ``|f| / scale`` overflows while ``f`` is
    finite) would give 0 and a division by it: the small step instead."""
    h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5 or not math.isfinite(d1)) else 0.01 * d0 / d1
    return min(h0, hmax, span)


def starting_step(h0, d1, d2, order, hmax, span, t0, direction):
    """Hairer's starting step from the trial ``h0`` and the scaled second
    derivative ``d2``, floored at CVODES's ``100 eps max(|t0|, |t1|)``
    (``cvHin``): a component at zero with a huge rate (a costate sweep's
    gradient quadrature) makes ``0.01 d0 / d1`` fall below the resolution of
    ``t``, which would end the solve as an underflow before any trial, while
    the error test shortens a floor that is too long."""
    dmax = max(d1, d2)
    if not math.isfinite(dmax):
        h = h0 * 1e-3
    else:
        h1 = max(1e-6, h0 * 1e-3) if dmax <= 1e-15 else (0.01 / dmax) ** (1.0 / (order + 1))
        h = min(100.0 * h0, h1, hmax, span)
    floor = 100.0 * EPS * max(abs(t0), abs(t0 + direction * span))
    return max(h, min(floor, span))


def shrink_factor(err, q):
    """``h_new / h`` after a rejected step with a finite error norm ``err > 1``."""
    return max(FAC_MIN, SAFETY * err ** (-1.0 / q))


def grow_factor(err, err_prev, expo, beta, rejected_last):
    """``h_new / h`` after an accepted step: the PI controller ``SAFETY
    err^(-expo) err_prev^beta`` within ``[FAC_MIN, FAC_MAX]``, not above 1
    right after a rejection."""
    fac = FAC_MAX if err == 0.0 else SAFETY * err ** (-expo) * err_prev ** beta
    fac = min(FAC_MAX, max(FAC_MIN, fac))
    if rejected_last:
        fac = min(fac, 1.0)
    return fac


def dop853_error(err5, err3, n):
    """DOP853's error norm from the sums of squares of its 5th- and
    3rd-order estimates (each already scaled by ``h``): ``dop853.f``'s
    ``|h| err5 / sqrt(n (err5 + 0.01 err3))`` with unscaled sums."""
    deno = err5 + 0.01 * err3
    if deno <= 0.0:
        return 0.0
    return err5 / math.sqrt(n * deno)
