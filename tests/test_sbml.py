"""SBML import (`sciode.sbml`): each model against a closed form or SciPy on a
right-hand side written here by hand from the file's description, and every
unsupported construct against a ModelError that names it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

pytest.importorskip("libsbml")

from scipy.integrate import solve_ivp

import sciode
from sciode.errors import ModelError

DATA = Path(__file__).parent / "data" / "petab_small"
TIGHT = {"method": "dopri5", "rtol": 1e-11, "atol": 1e-13}


def _rms_tol_units(y, ref, rtol, atol):
    """RMS of err / (atol + rtol |ref|) (scipy's compute_error)."""
    return float(np.sqrt(np.mean(((y - ref) / (atol + rtol * np.abs(ref))) ** 2)))


def test_conversion_matches_closed_form():
    imp = sciode.sbml.import_sbml(DATA / "conversion.xml")
    model = imp.model
    assert [s.name for s in model.states] == ["A", "B"]
    assert [p.name for p in model.params] == ["cell", "kf", "kr"]
    assert imp.param_values == {"cell": 2.0, "kf": 0.8, "kr": 0.3}
    p = imp.param_vector()
    t = np.linspace(0.0, 5.0, 11)
    sol = sciode.solve(model, imp.y0(), (0.0, 5.0), p, t_eval=t, **TIGHT)
    kf, kr, A0 = 0.8, 0.3, 1.0
    k = kf + kr
    # A' = -kf A + kr (A0 - A):  A(t) = (kr A0 + kf A0 e^{-k t}) / k
    A = (kr * A0 + kf * A0 * np.exp(-k * t)) / k
    ref = np.column_stack([A, A0 - A])
    assert abs(sol.y[-1, 0] - sol.y[0, 0]) > 0.5  # the solution moves
    assert _rms_tol_units(sol.y, ref, 1e-9, 1e-12) < 5


def test_transport_between_compartments_matches_scipy():
    imp = sciode.sbml.import_sbml(DATA / "transport.xml")
    assert [p.name for p in imp.model.params] == ["c1", "c2", "kd", "T_P"]  # local P of reaction T
    assert imp.state_kinds == {"S1": "concentration", "S2": "concentration", "N": "amount"}
    V1, V2, kd, P = 1.0, 3.0, 0.2, 1.5

    def rhs(t, y):  # by hand from the comment in transport.xml
        S1, S2, _ = y
        vT, vD = P * (S1 - S2), kd * S2 * V2
        return [-vT / V1, (vT - vD) / V2, vD]

    y0 = [2.0 / V1, 0.5, 0.0]                      # S1 given as an amount
    np.testing.assert_allclose(imp.y0(), y0, rtol=0, atol=0)
    t = np.linspace(0.0, 4.0, 9)
    ref = solve_ivp(rhs, (0, 4), y0, method="DOP853", t_eval=t, rtol=1e-12, atol=1e-14).y.T
    sol = sciode.solve(imp.model, imp.y0(), (0.0, 4.0), imp.param_vector(), t_eval=t, **TIGHT)
    assert _rms_tol_units(sol.y, ref, 1e-9, 1e-12) < 5
    # amount balance: V1 S1 + V2 S2 + N is conserved
    total = V1 * sol.y[:, 0] + V2 * sol.y[:, 1] + sol.y[:, 2]
    np.testing.assert_allclose(total, total[0], rtol=1e-10)


def test_rules_functions_piecewise_match_scipy():
    imp = sciode.sbml.import_sbml(DATA / "rules.xml")
    model = imp.model
    assert [s.name for s in model.states] == ["X", "Y", "z"]  # z: rate rule; total, u, kdeg: substituted
    X, Y = sp.symbols("X Y")
    assert imp.expressions["total"] == X + Y
    assert imp.state_kinds["z"] == "parameter"
    k0, alpha, vmax, K = 0.5, 0.4, 2.0, 0.7

    def rhs(t, y):
        Xv, _, z = y
        u = 1.0 if t < 2 else 0.0
        prod = vmax * u**2 / (K**2 + u**2)
        dec = k0 * (1 + alpha) * Xv * z
        return [prod - dec, dec, -z]

    y0 = [0.1, 0.0, 1.0]
    t1 = np.array([0.5, 1.0, 1.5, 2.0])
    t2 = np.array([2.5, 3.0, 4.0, 5.0])
    # SciPy in two pieces, restarted exactly at the switch t = 2
    a = solve_ivp(rhs, (0, 2), y0, method="DOP853", t_eval=t1, rtol=1e-12, atol=1e-14)
    b = solve_ivp(rhs, (2, 5), a.y[:, -1], method="DOP853", t_eval=t2, rtol=1e-12, atol=1e-14)
    ref = np.vstack([a.y.T, b.y.T])
    sol = sciode.solve(model, imp.y0(), (0.0, 5.0), imp.param_vector(), t_eval=np.r_[t1, t2],
                       method="dopri5", rtol=1e-10, atol=1e-12)
    # across the switch the step controller meets a kink: judge at 1e-8
    assert _rms_tol_units(sol.y, ref, 1e-8, 1e-10) < 5


def test_initial_assignment_gives_parameter_dependent_state_and_gradient():
    imp = sciode.sbml.import_sbml(DATA / "initial_assignment.xml")
    model = imp.model
    a0, k = sp.symbols("a0 k")
    assert [p.name for p in model.params] == ["a0", "k", "half"]  # x_init and vol are derived
    assert imp.initial_state == (2 * a0,)
    assert model.rhs == (-k * model.states[0],)  # k x vol / vol
    p = imp.param_vector({"a0": 1.2})
    T = 3.0
    sol = sciode.solve(model, imp.y0(p), (0.0, T), p, t_eval=[T], **TIGHT)
    np.testing.assert_allclose(sol.y[-1, 0], 2.4 * np.exp(-0.4 * T), rtol=1e-9)
    # J = x(T)^2 = 4 a0^2 e^{-2kT}: dJ/da0 = 8 a0 e^{-2kT}, dJ/dk = -2 T J
    x = model.states[0]
    res = sciode.value_and_grad(model, sciode.Cost(terminal=x**2), list(imp.initial_state), (0.0, T), p,
                                sensitivity="forward", **TIGHT)
    J = 4 * 1.2**2 * np.exp(-0.8 * T)
    np.testing.assert_allclose(res.value, J, rtol=1e-9)
    np.testing.assert_allclose(res.grad_params, [8 * 1.2 * np.exp(-0.8 * T), -2 * T * J, 0.0],
                               rtol=1e-8, atol=1e-12)


def test_load_returns_the_model():
    model = sciode.sbml.load(DATA / "conversion.xml")
    assert isinstance(model, sciode.Model) and model.name == "conversion"


# --- unsupported SBML: a ModelError naming the element and its id ------------------------

_HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<sbml xmlns="http://www.sbml.org/sbml/level3/version2/core" level="3" version="2">
<model id="m">
<listOfCompartments><compartment id="c" spatialDimensions="3" size="1" constant="true"/></listOfCompartments>
<listOfSpecies><species id="S" compartment="c" initialConcentration="1" hasOnlySubstanceUnits="false"
 boundaryCondition="false" constant="false"/></listOfSpecies>
<listOfParameters><parameter id="k" value="1" constant="true"/>
<parameter id="q" value="1" constant="false"/><parameter id="r" value="1" constant="false"/></listOfParameters>
"""
_MATH = '<math xmlns="http://www.w3.org/1998/Math/MathML">{}</math>'
_DECAY = ('<listOfReactions><reaction id="R1" reversible="false"{fast}><listOfReactants>'
          '<speciesReference species="S" stoichiometry="1" constant="true"/></listOfReactants>'
          '<kineticLaw>' + _MATH + '</kineticLaw></reaction></listOfReactions>')
_TAIL = "</model></sbml>"
_DELAY = ('<apply><times/><ci>k</ci><apply><csymbol encoding="text" '
          'definitionURL="http://www.sbml.org/sbml/symbols/delay">delay</csymbol>'
          '<ci>S</ci><cn>1</cn></apply></apply>')
_EVENT = ('<listOfEvents><event id="ev_pulse" useValuesFromTriggerTime="true"><trigger initialValue="true" '
          'persistent="true">' + _MATH.format('<apply><gt/><csymbol encoding="text" '
          'definitionURL="http://www.sbml.org/sbml/symbols/time">t</csymbol><cn>1</cn></apply>')
          + '</trigger><listOfEventAssignments><eventAssignment variable="k">' + _MATH.format('<cn>2</cn>')
          + '</eventAssignment></listOfEventAssignments></event></listOfEvents>')
_KS = '<apply><times/><ci>k</ci><ci>S</ci></apply>'

UNSUPPORTED = {
    "event": (_DECAY.format(_KS, fast="") + _EVENT, "event `ev_pulse`"),
    "algebraic rule": ('<listOfRules><algebraicRule metaid="alg_1">'
                       + _MATH.format('<apply><minus/><ci>q</ci><ci>k</ci></apply>')
                       + '</algebraicRule></listOfRules>', "algebraic rule `alg_1`"),
    "fast reaction": (_DECAY.format(_KS, fast=' fast="true"'), "fast reaction `R1`"),
    "delay": (_DECAY.format(_DELAY, fast=""), "reaction `R1`: unsupported MathML construct `delay`"),
    "unknown id": (_DECAY.format('<apply><times/><ci>k</ci><ci>nope</ci></apply>', fast=""),
                   "reaction `R1`: unknown identifier `nope`"),
    "rule cycle": ('<listOfRules><assignmentRule variable="q">' + _MATH.format('<ci>r</ci>')
                   + '</assignmentRule><assignmentRule variable="r">' + _MATH.format('<ci>q</ci>')
                   + '</assignmentRule></listOfRules>', "cycle: [qr] -> [qr] -> [qr]"),
}


@pytest.mark.parametrize("case", sorted(UNSUPPORTED))
def test_unsupported_sbml_raises_model_error_naming_it(case, tmp_path):
    body, expected = UNSUPPORTED[case]
    text = _HEAD + body + _TAIL
    if case == "fast reaction":  # fast reactions exist up to SBML L3V1 only
        text = text.replace("level3/version2", "level3/version1").replace('version="2"', 'version="1"')
    path = tmp_path / "m.xml"
    path.write_text(text)
    with pytest.raises(ModelError, match=expected) as info:
        sciode.sbml.load(path)
    assert "SBML" in str(info.value)


def test_invalid_document_and_missing_file(tmp_path):
    bad = tmp_path / "bad.xml"
    bad.write_text("<sbml><model></sbml>")
    with pytest.raises(ModelError, match="error"):
        sciode.sbml.load(bad)
    with pytest.raises(FileNotFoundError):
        sciode.sbml.load(tmp_path / "missing.xml")


def test_mathml_converter_whitelist():
    from sciode.petab._formulas import parse_formula

    x, t = sp.symbols("x t")
    names = {"x": x}
    e = parse_formula("log10(x) + x^2 + ln(x) + log(2, x) + sqrt(x) + piecewise(1, x < 2, 0) + abs(x)",
                      names, t, "test")
    expected = (sp.log(x, 10) + x**2 + sp.log(x) + sp.log(x, 2) + sp.sqrt(x)
                + sp.Piecewise((1, x < 2), (0, True)) + sp.Abs(x))
    assert sp.simplify(e - expected) == 0
    assert parse_formula("x**3", names, t, "test") == x**3
    for bad, msg in [("__import__('os')", "cannot parse|unknown"), ("foo(x)", "unknown function"),
                     ("y + 1", "unknown identifier `y`"), ("x < 1", "condition")]:
        with pytest.raises(ModelError, match=msg):
            parse_formula(bad, names, t, "test")


def test_missing_libsbml_raises_import_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "libsbml", None)
    with pytest.raises(ImportError, match=r"pip install sciode\[sbml\]"):
        sciode.sbml.load(DATA / "conversion.xml")
