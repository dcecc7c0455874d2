"""Four stiff problems of the IVP test set, hand-written in NumPy, with their published solutions.

Nothing here imports ``sciode`` (see ``validation/independent/__init__.py``):
each right-hand side and analytic Jacobian is transcribed by hand from the
published equations, and ``scipy_solution`` integrates it with SciPy's Radau.
``validation/stiff_literature.py`` declares the same equations a second time
as ``sciode.Model``s and checks sciode's stiff methods against ``reference``.

Source of every equation, initial value, end time and reference digit:

    F. Mazzia and C. Magherini, "Test Set for Initial Value Problem Solvers",
    release 2.4, February 2008, Department of Mathematics, University of Bari
    and INdAM, Research Unit of Bari, http://www.dm.uniba.it/~testset
    (problem descriptions ``report/<name>.pdf`` and Fortran sources
    ``src/problems/<name>.f``; the reference digits below are those of the
    Fortran routine that returns the reference solution, revision
    ``<name>.F,v 1.2 2006/10/02`` (``orego.F,v 1.4 2006/10/06``)).

The four problems are among the stiff test problems of E. Hairer and
G. Wanner, "Solving Ordinary Differential Equations II", 2nd ed., Springer
1996, Sec. IV.10 (the test set's HIRES description credits that name to
them); the equations, y0, end times and digits used here are the test set's,
not the book's. The test set computed its reference solutions with RADAU in
extended precision (``uround = 1.01e-19``, ``rtol = atol = h0 = 1.1e-18``;
OREGO with ``atol = 1.1e-40``; HIRES in Cray C90 double precision), so their
errors lie far below anything a float64 solve can reach.

The digits were checked against several independent public copies of the test
set sources (the Fortran files ``rober.f``, ``vdpol.f``, ``hires.f``,
``orego.f`` of the test set, and transcriptions in the R package deTestSet,
ReaK and two Julia ODE packages); all agree digit for digit. The test set's
``vdpolm.f`` (unscaled, mu = 1000, to t = 2000) gives
``(1.706167732170469, -0.8928097010248125e-3)``; under ``t = mu s``,
``y2 = mu x'`` that is the scaled VDPOL value below to 14 digits, a check that
the scaling here is the published one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.integrate import solve_ivp

CITATION = ("F. Mazzia and C. Magherini, Test Set for Initial Value Problem Solvers, release 2.4, "
            "Univ. Bari, 2008 (http://www.dm.uniba.it/~testset); problem from Hairer & Wanner, "
            "Solving ODEs II, 2nd ed., Springer 1996, Sec. IV.10")


@dataclass(frozen=True)
class LiteratureProblem:
    """A published stiff initial value problem ``y' = f(t, y)``, ``y(0) = y0``.

    Attributes
    ----------
    name : str, the test-set name (``"rober"``, ...)
    citation : str, where ``f``, ``y0``, ``t_end`` and ``reference`` come from
    y0 : (n,) initial state at ``t = 0``
    t_end : float, end of the integration interval
    f : ``f(t, y) -> (n,)``, hand-written NumPy right-hand side
    jac : ``jac(t, y) -> (n, n)``, hand-written analytic ``df/dy``
    reference : (n,) published solution at ``t_end``
    description : str
    floor : (n,) absolute scale below which a component counts as zero: the
        accuracy measure is ``|y - ref| / (floor + |ref|)``, and solves use
        ``atol = rtol * floor`` so that the error control asks for exactly
        that accuracy. Each problem says why its floor is what it is.
    """

    name: str
    citation: str
    y0: np.ndarray
    t_end: float
    f: Callable[[float, np.ndarray], np.ndarray]
    jac: Callable[[float, np.ndarray], np.ndarray]
    reference: np.ndarray
    description: str
    floor: np.ndarray

    def mixed_error(self, y) -> np.ndarray:
        """``|y - reference| / (floor + |reference|)`` per component, shape (n,)."""
        return np.abs(np.asarray(y, dtype=float) - self.reference) / (self.floor + np.abs(self.reference))


# --- ROBER ---------------------------------------------------------------------------
# y1' = -0.04 y1 + 1e4 y2 y3, y2' = 0.04 y1 - 1e4 y2 y3 - 3e7 y2^2, y3' = 3e7 y2^2,
# y(0) = (1, 0, 0), t in [0, 1e11] (test set rober.f).


def robertson(k1: float, k2: float, k3: float):
    """``(f, jac)`` of Robertson's kinetics with rate constants ``k1, k2, k3``:
    ``y1' = -k1 y1 + k3 y2 y3``, ``y2' = k1 y1 - k3 y2 y3 - k2 y2^2``, ``y3' = k2 y2^2``."""

    def f(t, y):
        y1, y2, y3 = y
        return np.array([-k1 * y1 + k3 * y2 * y3, k1 * y1 - k3 * y2 * y3 - k2 * y2 * y2, k2 * y2 * y2])

    def jac(t, y):
        _, y2, y3 = y
        return np.array([[-k1, k3 * y3, k3 * y2],
                         [k1, -k3 * y3 - 2.0 * k2 * y2, -k3 * y2],
                         [0.0, 2.0 * k2 * y2, 0.0]])

    return f, jac


rober_f, rober_jac = robertson(0.04, 3e7, 1e4)


ROBER = LiteratureProblem(
    name="rober",
    citation=CITATION + "; reference: rober.f, solut()",
    y0=np.array([1.0, 0.0, 0.0]),
    t_end=1e11,
    f=rober_f,
    jac=rober_jac,
    reference=np.array([0.2083340149701255e-07, 0.8333360770334713e-13, 0.9999999791665050e+00]),
    description="Robertson's autocatalytic reaction, 3 species, to t = 1e11",
    # y1 ~ 2e-8 and y2 ~ 8e-14 at t_end are the components the problem is about
    # (y3 = 1 - y1 - y2 to 1e-8), so each is judged relative to itself: its floor
    # sits far below its final value (y1: 1e-12 vs 2e-8; y2: 1e-18 vs 8e-14, and
    # y2 peaks at 3.6e-5 near t = 4.6e-3, so the floor is ~1e-13 of its range).
    # A floor of 1 on y2 would make any y2 in [0, 1e-8] "exact".
    floor=np.array([1e-12, 1e-18, 1e-12]),
)


# --- VDPOL ---------------------------------------------------------------------------
# The scaled van der Pol equation of the test set (vdpol.f): y1' = y2,
# y2' = ((1 - y1^2) y2 - y1) / eps, eps = 1e-6, y(0) = (2, 0), t in [0, 2].
# (t = s / mu and y2 = mu x' of x'' - mu (1 - x^2) x' + x = 0 with mu = 1e3.)
VDPOL_EPS = 1e-6


def vdpol_f(t, y):
    y1, y2 = y
    return np.array([y2, ((1.0 - y1 * y1) * y2 - y1) / VDPOL_EPS])


def vdpol_jac(t, y):
    y1, y2 = y
    return np.array([[0.0, 1.0],
                     [(-2.0 * y1 * y2 - 1.0) / VDPOL_EPS, (1.0 - y1 * y1) / VDPOL_EPS]])


VDPOL = LiteratureProblem(
    name="vdpol",
    citation=CITATION + "; reference: vdpol.f, solut()",
    y0=np.array([2.0, 0.0]),
    t_end=2.0,
    f=vdpol_f,
    jac=vdpol_jac,
    reference=np.array([0.1706167732170483e+01, -0.8928097010247975e+00]),
    description="stiff van der Pol, eps = 1e-6 (mu = 1000, scaled time), to t = 2: two relaxation jumps",
    # both components are O(1) at t = 2; y2 passes through 0 on each cycle, so a
    # floor of 1e-3 (0.1% of |y2(2)|) only matters if a future end time lands there.
    floor=np.array([1e-3, 1e-3]),
)


# --- HIRES ---------------------------------------------------------------------------
# High Irradiance RESponse of photomorphogenesis (hires.f), 8 species with
# k1..k9 = 1.71, 0.43, 8.32, 0.69, 0.035, 8.32, 280, 0.69, 0.69 and o_ks = 7e-4
# written out as numbers here; y(0) = (1, 0, 0, 0, 0, 0, 0, 0.0057), t in [0, 321.8122].


def hires_f(t, y):
    y1, y2, y3, y4, y5, y6, y7, y8 = y
    r = 280.0 * y6 * y8
    return np.array([
        -1.71 * y1 + 0.43 * y2 + 8.32 * y3 + 0.0007,
        1.71 * y1 - 8.75 * y2,
        -10.03 * y3 + 0.43 * y4 + 0.035 * y5,
        8.32 * y2 + 1.71 * y3 - 1.12 * y4,
        -1.745 * y5 + 0.43 * y6 + 0.43 * y7,
        -r + 0.69 * y4 + 1.71 * y5 - 0.43 * y6 + 0.69 * y7,
        r - 1.81 * y7,
        -r + 1.81 * y7,
    ])


def hires_jac(t, y):
    y6, y8 = y[5], y[7]
    J = np.zeros((8, 8))
    J[0, :3] = [-1.71, 0.43, 8.32]
    J[1, :2] = [1.71, -8.75]
    J[2, 2:5] = [-10.03, 0.43, 0.035]
    J[3, 1:4] = [8.32, 1.71, -1.12]
    J[4, 4:7] = [-1.745, 0.43, 0.43]
    J[5, 3:8] = [0.69, 1.71, -0.43 - 280.0 * y8, 0.69, -280.0 * y6]
    J[6, 5:8] = [280.0 * y8, -1.81, 280.0 * y6]
    J[7, 5:8] = [-280.0 * y8, 1.81, -280.0 * y6]
    return J


HIRES = LiteratureProblem(
    name="hires",
    citation=CITATION + "; reference: hires.f, hiressol()",
    y0=np.array([1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0057]),
    t_end=321.8122,
    f=hires_f,
    jac=hires_jac,
    reference=np.array([0.7371312573325668e-3, 0.1442485726316185e-3, 0.5888729740967575e-4,
                        0.1175651343283149e-2, 0.2386356198831331e-2, 0.6238968252742796e-2,
                        0.2849998395185769e-2, 0.2850001604814231e-2]),
    description="HIRES plant-physiology kinetics, 8 species, to t = 321.8122",
    # all final values are 6e-5..6e-3; a floor of 1e-6 (2% of the smallest, y3)
    # keeps every component judged essentially relatively, while the states
    # that start at 0 are not asked for relative accuracy at t ~ 0.
    floor=np.full(8, 1e-6),
)


# --- OREGO ---------------------------------------------------------------------------
# The Oregonator of Field and Noyes (orego.f): y1' = 77.27 (y2 + y1 (1 - 8.375e-6 y1 - y2)),
# y2' = (y3 - (1 + y1) y2) / 77.27, y3' = 0.161 (y1 - y3), y(0) = (1, 2, 3), t in [0, 360].


def orego_f(t, y):
    y1, y2, y3 = y
    return np.array([77.27 * (y2 + y1 * (1.0 - 8.375e-6 * y1 - y2)),
                     (y3 - (1.0 + y1) * y2) / 77.27,
                     0.161 * (y1 - y3)])


def orego_jac(t, y):
    y1, y2, _ = y
    return np.array([[77.27 * (1.0 - 2.0 * 8.375e-6 * y1 - y2), 77.27 * (1.0 - y1), 0.0],
                     [-y2 / 77.27, -(1.0 + y1) / 77.27, 1.0 / 77.27],
                     [0.161, 0.0, -0.161]])


OREGO = LiteratureProblem(
    name="orego",
    citation=CITATION + "; reference: orego.f, solut()",
    y0=np.array([1.0, 2.0, 3.0]),
    t_end=360.0,
    f=orego_f,
    jac=orego_jac,
    reference=np.array([0.1000814870318523e+01, 0.1228178521549917e+04, 0.1320554942846706e+03]),
    description="Oregonator (Belousov-Zhabotinskii), 3 species, to t = 360: spikes near t = 20 and 323",
    # over [0, 360] the components range over 1..1.2e5 (y1), 3e-3..1.8e3 (y2) and
    # 1..3.1e4 (y3) (measured with Radau); a floor of 1e-4, 3% of y2's minimum,
    # keeps all three controlled relatively all the way through.
    floor=np.full(3, 1e-4),
)


STIFF_SET = [ROBER, VDPOL, HIRES, OREGO]
BY_NAME = {p.name: p for p in STIFF_SET}


def scipy_solution(problem: LiteratureProblem, rtol: float) -> np.ndarray:
    """``y(t_end)`` by SciPy's Radau on the hand-written ``f`` and ``jac``.

    ``atol = rtol * problem.floor``, the same mixed error the literature
    checks use. Raises ``RuntimeError`` if SciPy fails.

    Returns
    -------
    (n,) final state
    """
    sol = solve_ivp(problem.f, (0.0, problem.t_end), problem.y0, method="Radau", jac=problem.jac,
                    rtol=rtol, atol=rtol * problem.floor)
    if sol.status != 0:
        raise RuntimeError(f"SciPy Radau failed on `{problem.name}`: {sol.message}")
    return sol.y[:, -1]
