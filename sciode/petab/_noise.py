"""PEtab v1 noise models: negative log-likelihood of one measurement and its
derivatives with respect to the simulated value ``h`` and the noise ``sigma``.

With the observable transformation ``T`` (``lin``: ``T(x) = x``, ``log``:
``ln x``, ``log10``: ``log10 x``) and ``r = (T(h) - T(m)) / sigma``:

    normal:   ell = 0.5 ln(2 pi sigma^2) + 0.5 r^2 + J(m)
    laplace:  ell = ln(2 sigma) + |r| + J(m)

where ``J(m) = 0`` (lin), ``ln m`` (log), ``ln(m ln 10)`` (log10) is the
log-Jacobian of the transformation, which makes ``exp(-ell)`` a density of
the untransformed measurement ``m`` (PEtab v1 specification, "noise
distributions").  Derivatives:

    d ell/dh     = (r / sigma) T'(h)            (normal)
                 = (sign(r) / sigma) T'(h)      (laplace; 0 at r = 0)
    d ell/dsigma = (1 - r^2) / sigma            (normal)
                 = (1 - |r|) / sigma            (laplace)

with ``T'(h) = 1, 1/h, 1/(h ln 10)``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DISTRIBUTIONS", "TRANSFORMATIONS", "negative_log_likelihood"]

DISTRIBUTIONS = ("normal", "laplace")
TRANSFORMATIONS = ("lin", "log", "log10")
_LN10 = np.log(10.0)


def _transform(x, transformation):
    if transformation == "lin":
        return x, np.ones_like(x), np.zeros_like(x)
    with np.errstate(divide="ignore", invalid="ignore"):
        if transformation == "log":
            return np.log(x), 1.0 / x, np.log(x)
        return np.log10(x), 1.0 / (x * _LN10), np.log(x * _LN10)


def negative_log_likelihood(m, h, sigma, distribution: str, transformation: str):
    """``ell``, ``d ell/dh`` and ``d ell/dsigma`` per measurement (see module doc).

    Parameters
    ----------
    m, h, sigma : numpy.ndarray, shape (k,)
        Measurements, simulated observables and noise parameters.
    distribution : "normal" or "laplace"
    transformation : "lin", "log" or "log10"

    Returns
    -------
    ell, dell_dh, dell_dsigma : numpy.ndarray, shape (k,)
        ``inf``/``nan`` where ``sigma <= 0`` or, for log scales, ``h <= 0``.
    """
    Th, dTh, _ = _transform(np.asarray(h, float), transformation)
    Tm, _, J = _transform(np.asarray(m, float), transformation)
    sigma = np.asarray(sigma, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (Th - Tm) / sigma
        if distribution == "normal":
            ell = 0.5 * np.log(2 * np.pi * sigma**2) + 0.5 * r**2 + J
            dh = r / sigma * dTh
            ds = (1.0 - r**2) / sigma
        else:
            ell = np.log(2 * sigma) + np.abs(r) + J
            dh = np.sign(r) / sigma * dTh
            ds = (1.0 - np.abs(r)) / sigma
    bad = ~(sigma > 0) | ~np.isfinite(Th)
    if bad.any():
        ell = np.where(bad, np.inf, ell)
    return ell, dh, ds
