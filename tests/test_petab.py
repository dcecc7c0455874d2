"""PEtab import (`sciode.petab`).

The small problem (tests/data/petab_small/problem.yaml, on the conversion
reaction A <-> B) is checked against a negative log-likelihood written here
by hand from the closed-form solution, and its gradient against the
complex-step derivative of that hand computation.  The shared benchmark
problems are checked against the reference log-likelihoods of
``shared/petab/reference_llh.json`` and, for one, the gradient against
central differences with an error estimate.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("libsbml")
pytest.importorskip("petab")

import sciode
from references import complex_step_grad  # tests/references.py
from sciode.errors import ModelError

DATA = Path(__file__).parent / "data" / "petab_small"
SHARED = Path(os.environ.get("SCIODE_PETAB_DIR",
                             Path(__file__).resolve().parents[2] / "shared" / "petab"))
TOL = {"rtol": 1e-10, "atol": 1e-14}


# --- the small problem, by hand ---------------------------------------------------------


def _conversion(kf, kr, A0, B0, t):
    """Closed form of A' = -kf A + kr B, B' = -A': (A(t), B(t))."""
    k = kf + kr
    T = A0 + B0
    A = (kr * T + (kf * A0 - kr * B0) * np.exp(-k * t)) / k
    return A, T - A


def _rows():
    with open(DATA / "measurements.tsv") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def hand_nllh(theta):
    """The small problem's nllh from the tables' meaning, in complex arithmetic
    (for the complex-step derivative); theta in PEtab scale, ordered
    kf (log10), kr (lin), a0_c2 (log), sigma_abs (log), scale_b (log10), sigma_b (log10)."""
    kf, kr, a0, sig_abs = 10 ** theta[0], theta[1], np.exp(theta[2]), np.exp(theta[3])
    scale_b, sig_b = 10 ** theta[4], 10 ** theta[5]
    sig_rel, kr_pre = 0.1, 2.0                              # fixed parameters
    A_ss = kr_pre / (kf + kr_pre)                           # steady state of `pre` (A0 + B0 = 1)
    B_ss = 1.0 - A_ss
    sims = {"c1": (kr, 1.0, 0.0), "c2": (0.5, a0, 0.0), "c3": (kr, A_ss, B_ss)}
    total = 0.0
    for r in _rows():
        k_r, A0, B0 = sims[r["simulationConditionId"]]
        A, B = _conversion(kf, k_r, A0, B0, float(r["time"]))
        m = float(r["measurement"])
        if r["observableId"] == "obs_a":       # lin, normal, sigma = sigma_abs + sigma_rel A
            s = sig_abs + sig_rel * A
            total += 0.5 * np.log(2 * np.pi * s**2) + 0.5 * ((A - m) / s) ** 2
        elif r["observableId"] == "obs_b":     # log10, normal
            h = (scale_b if r["observableParameters"] == "scale_b" else float(r["observableParameters"])) * B
            s = sig_b if r["noiseParameters"] == "sigma_b" else float(r["noiseParameters"])
            total += (0.5 * np.log(2 * np.pi * s**2 * m**2 * np.log(10) ** 2)
                      + 0.5 * ((np.log10(h) - np.log10(m)) / s) ** 2)
        else:                                  # obs_c: log, Laplace, sigma = 0.1
            d = (np.log(A / (A + B)) - np.log(m)) / 0.1
            total += np.log(2 * 0.1 * m) + d * np.sign(d.real)   # |d|, complex-step safe
    return total


@pytest.mark.parametrize("distribution", ["normal", "laplace"])
@pytest.mark.parametrize("transformation", ["lin", "log", "log10"])
def test_noise_models_match_petab_reference_and_derivatives(distribution, transformation):
    """Against the petab library's own per-measurement formula, and the
    derivatives against central differences (step 1e-6, smooth away from r = 0)."""
    from petab.v1.calculate import calculate_single_llh

    from sciode.petab._noise import negative_log_likelihood

    rng = np.random.default_rng(3)
    m, h, sigma = rng.uniform(0.5, 2.0, 6), rng.uniform(0.5, 2.0, 6), rng.uniform(0.1, 1.0, 6)
    ell, dh, ds = negative_log_likelihood(m, h, sigma, distribution, transformation)
    ref = [-calculate_single_llh(mi, hi, transformation, distribution, si) for mi, hi, si in zip(m, h, sigma)]
    np.testing.assert_allclose(ell, ref, rtol=1e-13)
    e = 1e-6
    for d, args in ((dh, lambda s: (m, h + s, sigma)), (ds, lambda s: (m, h, sigma + s))):
        fd = (negative_log_likelihood(*args(e), distribution, transformation)[0]
              - negative_log_likelihood(*args(-e), distribution, transformation)[0]) / (2 * e)
        np.testing.assert_allclose(d, fd, rtol=1e-7, atol=1e-8)


@pytest.fixture(scope="module")
def small():
    return sciode.petab.import_problem(DATA / "problem.yaml", **TOL)


THETA = np.array([-0.05, 0.45, 0.5, -2.5, 0.1, -0.6])   # away from the nominal values


def test_small_problem_tables(small):
    assert small.parameter_ids == ("kf", "kr", "a0_c2", "sigma_abs", "scale_b", "sigma_b")
    assert small.scales == ("log10", "lin", "log", "log", "log10", "log10")
    np.testing.assert_allclose(small.nominal, [np.log10(0.8), 0.3, np.log(2.0), np.log(0.05),
                                               np.log10(1.5), np.log10(0.2)], rtol=1e-15)
    assert (small.n_simulations, small.n_measurements) == (3, 14)


@pytest.mark.parametrize("theta", [None, THETA], ids=["nominal", "perturbed"])
def test_small_problem_nllh_matches_hand_computation(small, theta):
    ref = hand_nllh(small.nominal if theta is None else THETA).real
    # integrated at rtol 1e-10; the 14 terms are O(1) and partly cancel, hence atol
    np.testing.assert_allclose(small.nllh(theta), ref, rtol=1e-8, atol=1e-8)


def test_small_problem_nllh_moves_with_parameters(small):
    assert abs(small.nllh(THETA) - small.nllh()) > 1.0


@pytest.mark.parametrize("sensitivity", ["forward", "adjoint"])
def test_small_problem_gradient_matches_complex_step(small, sensitivity):
    ref = complex_step_grad(hand_nllh, THETA)
    value, grad = small.nllh_and_grad(THETA, sensitivity=sensitivity)
    np.testing.assert_allclose(value, hand_nllh(THETA).real, rtol=1e-8, atol=1e-8)
    assert np.all(np.abs(ref) > 1e-3)  # every parameter matters here
    np.testing.assert_allclose(grad, ref, rtol=3e-8, atol=3e-8 * np.abs(ref).max())


def test_simulate_matches_closed_form(small):
    h = small.simulate()
    rows = _rows()
    A, _ = _conversion(0.8, 0.3, 1.0, 0.0, 3.0)
    assert rows[3]["time"] == "3" and rows[3]["observableId"] == "obs_a"
    np.testing.assert_allclose(h[3], A, rtol=1e-9)
    A_ss = 2.0 / 2.8
    assert rows[11]["time"] == "0" and rows[11]["simulationConditionId"] == "c3"
    np.testing.assert_allclose(h[11], A_ss, rtol=1e-9)  # the pre-equilibrated start


def test_infinite_likelihood_gives_nan_gradient(tmp_path):
    """A noise formula that turns negative (sigma_abs - sigma_rel A < 0 while
    A > 0.5): nllh = inf and a NaN gradient, not an exception."""
    yaml = _copy(tmp_path, "observables.tsv", lambda s: s.replace("sigma_abs + sigma_rel", "sigma_abs - sigma_rel"))
    prob = sciode.petab.import_problem(yaml)
    assert prob.nllh() == np.inf
    for sensitivity in ("forward", "adjoint"):
        value, grad = prob.nllh_and_grad(sensitivity=sensitivity)
        assert value == np.inf and np.isnan(grad).all()


def test_bad_theta_raises(small):
    with pytest.raises(ValueError, match="shape"):
        small.nllh(np.zeros(3))
    with pytest.raises(ValueError, match="sensitivity"):
        small.nllh_and_grad(sensitivity="magic")


def _copy(tmp_path, edit_file=None, edit=None):
    for f in DATA.iterdir():
        shutil.copy(f, tmp_path / f.name)
    if edit_file:
        path = tmp_path / edit_file
        path.write_text(edit(path.read_text()))
    return tmp_path / "problem.yaml"


@pytest.mark.parametrize("edit_file, edit, error, match", [
    ("measurements.tsv", lambda s: s.replace("obs_c\t\tc2", "obs_x\t\tc2"), ModelError, "`obs_x`"),
    ("measurements.tsv", lambda s: s.replace("scale_b\tsigma_b\nobs_c", "scale_b;2\tsigma_b\nobs_c", 1),
     ModelError, "observableParameters has 2 entries"),
    ("observables.tsv", lambda s: s.replace("A / (A + B)", "A / (A + C)"), ModelError,
     "unknown identifier `C`"),
    ("conditions.tsv", lambda s: s.replace("\tkr\tA\n", "\tkr\tnope\n"), ModelError, "`nope`"),
    ("measurements.tsv", lambda s: s.replace("\t1.5\tscale_b", "\t-1.5\tscale_b"), ModelError,
     "negative time"),
    ("problem.yaml", lambda s: s.replace("format_version: 1", "format_version: 2.0.0"),
     NotImplementedError, "PEtab v1"),
])
def test_bad_tables_raise_naming_the_culprit(tmp_path, edit_file, edit, error, match):
    with pytest.raises(error, match=match):
        sciode.petab.import_problem(_copy(tmp_path, edit_file, edit))


# --- the shared benchmark problems ---------------------------------------------------------

PROBLEMS = ["Boehm_JProteomeRes2014", "Crauste_CellSystems2017", "Elowitz_Nature2000",
            "Fujita_SciSignal2010", "Zheng_PNAS2012"]
needs_shared = pytest.mark.skipif(not (SHARED / "reference_llh.json").is_file(),
                                  reason=f"shared PEtab problems not found at {SHARED} "
                                         "(set SCIODE_PETAB_DIR)")

#: Crauste_CellSystems2017 sits next to a finite-time blow-up (a 1e-4 change of
#: log10 rho_P makes the pathogen diverge at t = 9.56, SciPy's LSODA agrees), so
#: its likelihood amplifies integration error.  The reference value deviates
#: from the converged one by 6.5e-6 relative: SciPy Radau, LSODA and DOP853 at
#: rtol 1e-12-1e-13 on a hand-written right-hand side all give 190.963977575743
#: (see test_crauste_matches_scipy_reference), which sciode reproduces.
CRAUSTE_REASON = ("reference_llh.json is 6.5e-6 off the converged value (SciPy Radau/LSODA/DOP853 "
                  "at 1e-12 agree with sciode); the model is on the edge of a finite-time blow-up")


@needs_shared
@pytest.mark.parametrize("name", [
    pytest.param(p, marks=pytest.mark.xfail(strict=True, reason=CRAUSTE_REASON))
    if p.startswith("Crauste") else p for p in PROBLEMS])
def test_shared_problem_llh_matches_reference(name):
    ref = json.loads((SHARED / "reference_llh.json").read_text())["models"][name]["llh"]
    prob = sciode.petab.import_problem(SHARED / name / f"{name}.yaml")
    llh = prob.llh()
    assert abs(llh - ref) <= 1e-6 * abs(ref), (llh, ref)


def _crauste_scipy_nllh():
    """Crauste_CellSystems2017 by hand: rhs from the model's 12 reactions, SciPy
    Radau at rtol 1e-12, normal noise with the table's sigmas."""
    from scipy.integrate import solve_ivp

    folder = SHARED / "Crauste_CellSystems2017"
    with open(folder / "parameters_Crauste_CellSystems2017.tsv") as fh:
        q = {r["parameterId"]: float(r["nominalValue"]) for r in csv.DictReader(fh, delimiter="\t")}
    with open(folder / "measurementData_Crauste_CellSystems2017.tsv") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))

    def rhs(t, y):
        N, E, L, _, P = y
        return [-q["mu_N"] * N - q["delta_NE"] * N * P,
                q["delta_NE"] * N * P + q["rho_E"] * E * P - q["mu_EE"] * E**2 - q["delta_EL"] * E,
                q["delta_EL"] * E - q["mu_LL"] * L**2 - q["mu_LE"] * E * L - q["delta_LM"] * L,
                q["delta_LM"] * L,
                q["rho_P"] * P**2 - q["mu_PE"] * E * P - q["mu_PL"] * L * P - q["mu_P"] * P]

    times = np.unique([float(r["time"]) for r in rows])
    sol = solve_ivp(rhs, (0, times[-1]), [8090, 0, 0, 0, 1], method="Radau", t_eval=times,
                    rtol=1e-12, atol=1e-12)
    assert sol.success
    col = {"Naive": 0, "EarlyEffector": 1, "LateEffector": 2, "Memory": 3}
    total = 0.0
    for r in rows:
        h = sol.y[col[r["observableId"].removeprefix("observable_")], np.searchsorted(times, float(r["time"]))]
        s, m = float(r["noiseParameters"]), float(r["measurement"])
        total += 0.5 * np.log(2 * np.pi * s**2) + 0.5 * ((m - h) / s) ** 2
    return total


@needs_shared
def test_crauste_matches_scipy_reference():
    prob = sciode.petab.import_problem(SHARED / "Crauste_CellSystems2017" / "Crauste_CellSystems2017.yaml")
    np.testing.assert_allclose(prob.nllh(), _crauste_scipy_nllh(), rtol=1e-7)


def _boehm_start(prob, point):
    """``near``: the nominal point perturbed; ``start6``: the sixth of the
    uniform random starts in the bounds that ``benchmarks/petab_fit_amici.py``
    draws (seed 0), where the objective is 2e12 and the adjoint used to end in
    a step-size underflow at t = 240 before its first backward step (the
    costate quadratures' starting-step estimate, ``cpu.explicit.initial_step``)."""
    if point == "near":
        return prob.nominal + 0.1 * np.random.default_rng(0).standard_normal(prob.nominal.size)
    rng = np.random.default_rng(0)
    lo, hi = prob.lower, prob.upper
    starts = [lo + (hi - lo) * rng.random(lo.size) for _ in range(6)]
    return starts[5]


@needs_shared
@pytest.mark.parametrize("point", ["near", "start6"])
@pytest.mark.parametrize("sensitivity", ["forward", "adjoint"])
def test_boehm_gradient_matches_central_differences(sensitivity, point):
    """Gradient against central differences of the nllh solved at rtol 1e-12,
    with steps h and 2h: their difference bounds the finite-difference error."""
    yaml = SHARED / "Boehm_JProteomeRes2014" / "Boehm_JProteomeRes2014.yaml"
    prob = sciode.petab.import_problem(yaml)
    tight = sciode.petab.import_problem(yaml, rtol=1e-12, atol=1e-16, max_steps=10**6)
    theta = _boehm_start(prob, point)
    _, g = prob.nllh_and_grad(theta, sensitivity=sensitivity)
    fd = {}
    for h in (1e-4, 2e-4):
        fd[h] = np.array([(tight.nllh(theta + h * e) - tight.nllh(theta - h * e)) / (2 * h)
                          for e in np.eye(theta.size)])
    scale = np.abs(fd[1e-4]).max()
    fd_error = np.abs(fd[1e-4] - fd[2e-4]).max() / scale
    assert fd_error < 1e-5
    assert np.abs(g - fd[1e-4]).max() / scale < max(10 * fd_error, 1e-6)


def test_runner_prints_the_checks_and_fits(capsys):
    """``python -m sciode.petab``: sizes, objective, the gradient's agreement with
    central differences (small on this smooth problem), timings, and a 2-start fit
    that does not end above its start."""
    from sciode.petab.__main__ import main

    path = Path(__file__).resolve().parent / "data" / "petab_small" / "problem.yaml"
    assert main([str(path), "--fit", "--starts", "2", "--rtol", "1e-10", "--atol", "1e-12"]) == 0
    out = capsys.readouterr().out
    assert "nominal: llh = " in out and "warm" in out and "best: nllh = " in out
    rel = float(out.split("max |g - g_fd| / max |g_fd| = ")[1].split()[0])
    assert rel < 1e-4
    start = float(out.split("nominal: llh = ")[1].split(",")[0])
    best = float(out.split("best: nllh = ")[1].split()[0])
    assert best <= -start + 1e-9
