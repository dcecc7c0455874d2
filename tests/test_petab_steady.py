"""Steady states in PEtab problems: pre-equilibration by Newton's method with a
conservation law, measurements at ``time = inf``, and the fallback to a long
simulation where Newton fails.

Each problem is written here (SBML by libsbml, PEtab tables as TSV) on models
with closed-form steady states:

- ``A <-> B`` (rates ``k1 A``, ``k2 B``; ``A + B = T`` conserved, singular
  Jacobian): ``A_ss = k2 T / (k1 + k2)``;
- ``-> X ->`` (rates ``k``, ``d X``): ``X_ss = k / d``, ``X(t) = k/d + (X0 -
  k/d) exp(-d t)``;
- logistic ``Y' = r Y (1 - Y / K)`` from ``Y0 = 0.01``: Newton from the start
  converges to the unstable root ``Y = 0`` (rejected), the simulation then
  reaches ``Y_ss = K``;
- ``A <-> B`` across two compartments, one of estimated volume: the
  conservation law moves with it, and the sensitivities are integrated.

The negative log-likelihoods are written from these closed forms in complex
arithmetic, and the gradients checked against their complex-step derivatives.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("libsbml")
pytest.importorskip("petab")

import sciode
from references import complex_step_grad  # tests/references.py

TOL = {"rtol": 1e-10, "atol": 1e-14}


def _write_sbml(path, species, params, reactions, compartments=None):
    """SBML L3V2 file: ``species`` {id: initial concentration, or (concentration,
    compartment)}, ``params`` {id: value}, ``reactions`` [(id, reactants,
    products, rate formula)] (amount per time), ``compartments`` {id: size}
    (default one, ``cell``, of size 1)."""
    import libsbml

    doc = libsbml.SBMLDocument(3, 2)
    m = doc.createModel()
    m.setId("model")
    for cid, size in (compartments or {"cell": 1.0}).items():
        c = m.createCompartment()
        c.setId(cid), c.setSize(size), c.setConstant(True), c.setSpatialDimensions(3)
    for sid, value in species.items():
        value, cid = value if isinstance(value, tuple) else (value, "cell")
        s = m.createSpecies()
        s.setId(sid), s.setCompartment(cid), s.setInitialConcentration(value)
        s.setHasOnlySubstanceUnits(False), s.setBoundaryCondition(False), s.setConstant(False)
    for pid, value in params.items():
        p = m.createParameter()
        p.setId(pid), p.setValue(value), p.setConstant(True)
    for rid, reactants, products, formula in reactions:
        r = m.createReaction()
        r.setId(rid), r.setReversible(False)
        for names, create in ((reactants, r.createReactant), (products, r.createProduct)):
            for name in names:
                ref = create()
                ref.setSpecies(name), ref.setStoichiometry(1.0), ref.setConstant(True)
        law = r.createKineticLaw()
        law.setMath(libsbml.parseL3Formula(formula))
    assert libsbml.writeSBMLToFile(doc, str(path)) == 1


def _write_tsv(path, header, rows):
    path.write_text("\n".join("\t".join(str(v) for v in row) for row in [header, *rows]) + "\n")


def _write_problem(folder, sbml, parameters, conditions, observables, measurements):
    """PEtab v1 files in ``folder``; returns the YAML path.  ``conditions``:
    (header, rows); ``parameters``: rows (id, scale, lower, upper, nominal, estimate)."""
    _write_sbml(folder / "model.xml", *sbml)
    _write_tsv(folder / "parameters.tsv",
               ["parameterId", "parameterScale", "lowerBound", "upperBound", "nominalValue", "estimate"],
               parameters)
    _write_tsv(folder / "conditions.tsv", *conditions)
    _write_tsv(folder / "observables.tsv", ["observableId", "observableFormula", "noiseFormula"],
               observables)
    _write_tsv(folder / "measurements.tsv",
               ["observableId", "preequilibrationConditionId", "simulationConditionId", "measurement",
                "time"], measurements)
    yaml = folder / "problem.yaml"
    yaml.write_text("format_version: 1\nparameter_file: parameters.tsv\nproblems:\n"
                    "- condition_files: [conditions.tsv]\n  measurement_files: [measurements.tsv]\n"
                    "  observable_files: [observables.tsv]\n  sbml_files: [model.xml]\n")
    return yaml


def _nllh(rows, value, sigma):
    """Normal noise: sum of 0.5 log(2 pi sigma^2) + 0.5 ((m - h) / sigma)^2."""
    total = 0.0
    for obs, pre, sim, m, t in rows:
        h = value(obs, pre, sim, float(t))
        total += 0.5 * np.log(2 * np.pi * sigma**2) + 0.5 * ((m - h) / sigma) ** 2
    return total


# --- A <-> B and -> X ->: pre-equilibration and time = inf ----------------------------------

CONV = ({"A": 1.0, "B": 0.0, "X": 0.0}, {"k1": 0.7, "k2": 0.4, "k": 1.0, "d": 0.5},
        [("R1", ["A"], ["B"], "k1 * A"), ("R2", ["B"], ["A"], "k2 * B"),
         ("R3", [], ["X"], "k"), ("R4", ["X"], [], "d * X")])
# id, scale, lower, upper, nominal, estimate
CONV_PARAMS = [("k1", "log10", 0.01, 100, 0.7, 1), ("k2", "log", 0.01, 100, 0.4, 1),
               ("k", "lin", 0, 10, 1.0, 1), ("d", "log10", 0.01, 100, 0.5, 1),
               ("k_pre", "lin", 0, 10, 2.0, 1), ("a0", "lin", 0, 10, 1.5, 1),
               ("sigma", "log10", 0.001, 10, 0.1, 1)]
#: pre: A0 = a0, B0 = 0.2, production k_pre; sim: starts where pre ends;
#: free: A0 = 1, B0 = 0.5, X0 = 0.3, no pre-equilibration.
CONV_CONDITIONS = (["conditionId", "k", "A", "B", "X"],
                   [("pre", "k_pre", "a0", 0.2, ""), ("sim", "k", "", "", ""), ("free", "k", 1.0, 0.5, 0.3)])
CONV_OBS = [("obs_A", "A", "sigma"), ("obs_B", "B", "sigma"), ("obs_X", "X", "sigma")]
CONV_MEAS = [("obs_A", "pre", "sim", 1.10, 0), ("obs_X", "pre", "sim", 3.70, 0),
             ("obs_X", "pre", "sim", 2.90, 1.5), ("obs_B", "pre", "sim", 0.62, 2.5),
             ("obs_X", "pre", "sim", 2.10, "inf"), ("obs_A", "pre", "sim", 1.05, "inf"),
             ("obs_A", "", "free", 0.72, 0.5), ("obs_A", "", "free", 0.60, "inf"),
             ("obs_B", "", "free", 0.85, "inf"), ("obs_X", "", "free", 1.95, "inf")]
THETA = np.array([np.log10(0.6), np.log(0.5), 1.2, np.log10(0.55), 1.8, 1.4, np.log10(0.15)])


def conv_nllh(theta):
    """By hand from the closed forms (complex-step safe)."""
    k1, k2, k, d = 10 ** theta[0], np.exp(theta[1]), theta[2], 10 ** theta[3]
    k_pre, a0, sigma = theta[4], theta[5], 10 ** theta[6]

    def conversion(A0, B0, t):
        T = A0 + B0
        A = (k2 * T + (k1 * A0 - k2 * B0) * np.exp(-(k1 + k2) * t)) / (k1 + k2)
        return A, T - A

    def value(obs, pre, sim, t):
        decay = (lambda rate: 0.0) if np.isinf(t) else (lambda rate: np.exp(-rate * t))
        if sim == "sim":                      # from the steady state of `pre` (A, B stay there)
            T = a0 + 0.2
            A = k2 * T / (k1 + k2)
            B, X = T - A, k / d + (k_pre / d - k / d) * decay(d)
        else:                                 # free: A0 = 1, B0 = 0.5, X0 = 0.3
            A = (k2 * 1.5 + (k1 * 1.0 - k2 * 0.5) * decay(k1 + k2)) / (k1 + k2)
            B, X = 1.5 - A, k / d + (0.3 - k / d) * decay(d)
        return {"obs_A": A, "obs_B": B, "obs_X": X}[obs]

    return _nllh(CONV_MEAS, value, sigma)


@pytest.fixture(scope="module")
def conv_yaml(tmp_path_factory):
    folder = tmp_path_factory.mktemp("conv")
    return _write_problem(folder, CONV, CONV_PARAMS, CONV_CONDITIONS, CONV_OBS, CONV_MEAS)


@pytest.fixture(scope="module")
def conv(conv_yaml):
    return sciode.petab.import_problem(conv_yaml, **TOL)


@pytest.mark.parametrize("theta", [None, THETA], ids=["nominal", "perturbed"])
def test_steady_nllh_matches_closed_form(conv, theta):
    th = conv.nominal if theta is None else theta
    before = dict(conv.steady_state_counts)
    np.testing.assert_allclose(conv.nllh(theta), conv_nllh(th).real, rtol=1e-9)
    counts = conv.steady_state_counts
    # one pre-equilibration and two post-equilibrations (pre -> sim and free), all by Newton
    assert counts["newton"] - before.get("newton", 0) == 3
    assert counts["simulation"] == counts["simulation+newton"] == 0


def test_simulate_at_inf(conv):
    h = conv.simulate(THETA)
    k1, k2, k, d = 0.6, 0.5, 1.2, 0.55
    assert CONV_MEAS[4][0] == "obs_X" and CONV_MEAS[7][0] == "obs_A"
    np.testing.assert_allclose(h[4], k / d, rtol=1e-10)
    np.testing.assert_allclose(h[7], k2 * 1.5 / (k1 + k2), rtol=1e-10)
    np.testing.assert_allclose(h[5], k2 * (1.4 + 0.2) / (k1 + k2), rtol=1e-10)


@pytest.mark.parametrize("sensitivity", ["forward", "adjoint"])
def test_steady_gradient_matches_complex_step(conv, sensitivity):
    ref = complex_step_grad(conv_nllh, THETA)
    before = dict(conv.steady_state_counts)
    value, grad = conv.nllh_and_grad(THETA, sensitivity=sensitivity)
    np.testing.assert_allclose(value, conv_nllh(THETA).real, rtol=1e-9)
    assert np.all(np.abs(ref) > 1e-3)  # every parameter matters here
    np.testing.assert_allclose(grad, ref, rtol=1e-7, atol=1e-7 * np.abs(ref).max())
    counts = conv.steady_state_counts
    assert counts["sensitivities: implicit"] - before.get("sensitivities: implicit", 0) == 3
    assert counts["sensitivities: integrated"] == 0


@pytest.mark.parametrize("sensitivity", ["forward", "adjoint"])
def test_simulation_steady_state_agrees(conv_yaml, sensitivity):
    """``steady_state="simulation"``: the long integration with integrated
    sensitivities (the fallback's path) gives the same value and gradient."""
    prob = sciode.petab.import_problem(conv_yaml, steady_state="simulation", **TOL)
    ref = complex_step_grad(conv_nllh, THETA)
    value, grad = prob.nllh_and_grad(THETA, sensitivity=sensitivity)
    np.testing.assert_allclose(value, conv_nllh(THETA).real, rtol=1e-7)
    np.testing.assert_allclose(grad, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    counts = prob.steady_state_counts
    assert counts["simulation"] == 3 and counts["newton"] == 0
    assert counts["sensitivities: integrated"] == 3


# --- logistic growth: Newton fails from the start, simulation then Newton ---------------------

LOGI = ({"Y": 0.01}, {"r": 1.0, "K": 2.0}, [("growth", [], ["Y"], "r * Y * (1 - Y / K)")])
LOGI_PARAMS = [("r", "log10", 0.01, 100, 1.0, 1), ("K", "lin", 0.1, 10, 2.0, 1),
               ("K_pre", "lin", 0.1, 10, 3.0, 1), ("sigma", "lin", 0.01, 10, 0.2, 0)]
LOGI_CONDITIONS = (["conditionId", "K"], [("pre", "K_pre"), ("sim", "K")])
LOGI_OBS = [("obs_Y", "Y", "sigma")]
LOGI_MEAS = [("obs_Y", "pre", "sim", 2.7, 0), ("obs_Y", "", "sim", 2.1, "inf"),
             ("obs_Y", "", "sim", 1.9, "inf")]
LOGI_THETA = np.array([0.1, 1.7, 2.6])


def logi_nllh(theta):
    K, K_pre = theta[1], theta[2]
    values = [K_pre, K, K]
    return sum(0.5 * np.log(2 * np.pi * 0.2**2) + 0.5 * ((row[3] - h) / 0.2) ** 2
               for row, h in zip(LOGI_MEAS, values))


@pytest.fixture(scope="module")
def logi(tmp_path_factory):
    folder = tmp_path_factory.mktemp("logistic")
    return sciode.petab.import_problem(
        _write_problem(folder, LOGI, LOGI_PARAMS, LOGI_CONDITIONS, LOGI_OBS, LOGI_MEAS), **TOL)


@pytest.mark.parametrize("sensitivity", ["forward", "adjoint"])
def test_newton_failure_falls_back_to_simulation(logi, sensitivity):
    """From Y0 = 0.01 Newton converges to the unstable root 0 (rejected); the
    simulation reaches K, Newton polishes it, and the sensitivities are
    implicit: dY_ss/dK = 1, dY_ss/dr = 0."""
    value, grad = logi.nllh_and_grad(LOGI_THETA, sensitivity=sensitivity)
    np.testing.assert_allclose(value, logi_nllh(LOGI_THETA).real, rtol=1e-9)
    ref = complex_step_grad(logi_nllh, LOGI_THETA)
    np.testing.assert_allclose(grad, ref, rtol=1e-7, atol=1e-7 * np.abs(ref).max())
    counts = logi.steady_state_counts
    assert counts["simulation+newton"] >= 2 and counts["newton"] == 0 and counts["simulation"] == 0
    assert counts["sensitivities: integrated"] == 0


def test_steady_state_option_is_checked(tmp_path):
    folder = tmp_path
    yaml = _write_problem(folder, LOGI, LOGI_PARAMS, LOGI_CONDITIONS, LOGI_OBS, LOGI_MEAS)
    with pytest.raises(ValueError, match="steady_state"):
        sciode.petab.import_problem(yaml, steady_state="magic")


# --- a conservation law that moves with an estimated parameter ------------------------------

#: A in c1 (V1 = 2), B in c2 (V2 estimated); rates in amount per time, so
#: V1 A + V2 B is conserved and C depends on V2: the implicit-function
#: sensitivities (C fixed) do not apply, the integrated ones do.
#: A_ss = k2 N / (V1 (k1 + k2)), B_ss = k1 N / (V2 (k1 + k2)), N = V1 A0 + V2 B0.
VOL = ({"A": (1.0, "c1"), "B": (0.5, "c2")}, {"k1": 0.7, "k2": 0.4},
       [("R1", ["A"], ["B"], "k1 * A * c1"), ("R2", ["B"], ["A"], "k2 * B * c2")], {"c1": 2.0, "c2": 3.0})
VOL_PARAMS = [("k1", "log10", 0.01, 100, 0.7, 1), ("k2", "lin", 0.01, 100, 0.4, 1),
              ("c2", "log", 0.1, 10, 3.0, 1), ("sigma", "lin", 0.01, 10, 0.1, 0)]
VOL_CONDITIONS = (["conditionId", "conditionName"], [("c", "c")])
VOL_OBS = [("obs_A", "A", "sigma"), ("obs_B", "B", "sigma")]
VOL_MEAS = [("obs_A", "", "c", 0.5, "inf"), ("obs_B", "", "c", 0.6, "inf")]
VOL_THETA = np.array([np.log10(0.5), 0.6, np.log(2.5)])


def vol_nllh(theta):
    k1, k2, V2 = 10 ** theta[0], theta[1], np.exp(theta[2])
    N = 2.0 * 1.0 + V2 * 0.5
    values = {"obs_A": k2 * N / (2.0 * (k1 + k2)), "obs_B": k1 * N / (V2 * (k1 + k2))}
    return sum(0.5 * np.log(2 * np.pi * 0.1**2) + 0.5 * ((m - values[o]) / 0.1) ** 2
               for o, _, _, m, _ in VOL_MEAS)


@pytest.mark.parametrize("sensitivity", ["forward", "adjoint"])
def test_conservation_law_moving_with_a_parameter_integrates_sensitivities(tmp_path, sensitivity):
    yaml = _write_problem(tmp_path, VOL, VOL_PARAMS, VOL_CONDITIONS, VOL_OBS, VOL_MEAS)
    prob = sciode.petab.import_problem(yaml, **TOL)
    value, grad = prob.nllh_and_grad(VOL_THETA, sensitivity=sensitivity)
    np.testing.assert_allclose(value, vol_nllh(VOL_THETA).real, rtol=1e-9)
    ref = complex_step_grad(vol_nllh, VOL_THETA)
    np.testing.assert_allclose(grad, ref, rtol=1e-6, atol=1e-6 * np.abs(ref).max())
    counts = prob.steady_state_counts
    assert counts["newton"] == 1 and counts["sensitivities: integrated"] == 1
    # with V2 fixed, the law no longer moves with the estimated parameters
    fixed = tmp_path / "fixed"
    fixed.mkdir()
    params = [row if row[0] != "c2" else ("c2", "log", 0.1, 10, 2.5, 0) for row in VOL_PARAMS]
    yaml = _write_problem(fixed, VOL, params, VOL_CONDITIONS, VOL_OBS, VOL_MEAS)
    prob = sciode.petab.import_problem(yaml, **TOL)
    value, grad = prob.nllh_and_grad(VOL_THETA[:2], sensitivity=sensitivity)
    np.testing.assert_allclose(grad, ref[:2], rtol=1e-7, atol=1e-7 * np.abs(ref).max())
    assert prob.steady_state_counts["sensitivities: implicit"] == 1
