"""The validation suite and gradcheck can pass, and can fail.

The suite's fast subset runs here (CI); the full catalog is the README's main
job.  A kernel that drops a term must make both gradcheck and the suite fail.
"""

import numba as nb
import pytest
import sympy as sp

import sciode
from sciode import abi
from sciode.adjoint import common
from sciode.codegen import Kernel, model_kernels
from validation.__main__ import main as validation_main
from validation.cases import CASES
from validation.runner import run_case


@pytest.fixture(scope="module")
def decay_problem():
    x, k, c = sp.symbols("x k c")
    model = sciode.Model([x], [-k * x + c], [k, c], name="decay_gradcheck")
    return model, sciode.Cost(terminal=x**2, running=x**2 / 10)


def test_gradcheck_passes_on_correct_kernels(decay_problem):
    model, cost = decay_problem
    report = sciode.gradcheck(model, cost, [1.2], (0.0, 2.0), [0.7, 0.3])
    assert report.ok, str(report)
    assert {r.mode for r in report.rows} >= {"forward", "adjoint", "checkpoint", "backsolve", "discrete"}
    assert "all gradients agree" in str(report)


def _drop_first_param_term(monkeypatch, model):
    """Replace ``vjp_p`` and the fused ``vjp_yp`` (``[(df/dy)^T v, (df/dp)^T v]``,
    which the costate sweeps use) by kernels that forget the first parameter's term."""
    mk = model_kernels(model)
    good_p, good_yp = mk["vjp_p"].dispatcher, mk["vjp_yp"].dispatcher
    n = model.n_states

    @nb.njit(abi.VJP_SIG)
    def broken_p(t, y, p, w, v, out):
        good_p(t, y, p, w, v, out)
        out[0] = 0.0

    @nb.njit(abi.VJP_SIG)
    def broken_yp(t, y, p, w, v, out):
        good_yp(t, y, p, w, v, out)
        out[n] = 0.0

    monkeypatch.setitem(mk._compiled, "vjp_p", Kernel(broken_p, abi.VJP_SIG))
    monkeypatch.setitem(mk._compiled, "vjp_yp", Kernel(broken_yp, abi.VJP_SIG))
    # plans kept from earlier calls hold the good kernels (adjoint.common.prepare)
    monkeypatch.setattr(common, "_STATIC", {})


def test_gradcheck_fails_on_a_broken_kernel(decay_problem, monkeypatch):
    model, cost = decay_problem
    _drop_first_param_term(monkeypatch, model)
    report = sciode.gradcheck(model, cost, [1.2], (0.0, 2.0), [0.7, 0.3], modes=("adjoint",))
    assert not report.ok
    bad = {(r.mode, r.quantity) for r in report.failures}
    assert ("adjoint", "dJ/dk") in bad  # names the parameter that disagrees
    assert "FAILED" in str(report)


def test_validation_case_fails_on_a_broken_kernel(monkeypatch):
    case = next(c for c in CASES if c.name == "exp_decay")
    model = case.build().model
    _drop_first_param_term(monkeypatch, model)
    rows = run_case(case)
    assert any(not r.passed and r.mode == "adjoint" for r in rows)


def test_fast_validation_suite_passes(tmp_path, capsys):
    assert validation_main(["--fast", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "0 failed" in out
    report = (tmp_path / "report.md").read_text()
    assert "| lotka_volterra | adjoint |" in report
    assert (tmp_path / "error_vs_tolerance.png").stat().st_size > 1000


def test_catalog_size_and_references():
    assert len(CASES) >= 15
    assert sum(c.reference is not None for c in CASES) >= 7  # closed forms
