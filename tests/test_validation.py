"""The validation suite and gradcheck can pass, and can fail.

The suite's fast subset runs here (CI); the full catalog is the README's main
job.  A kernel that drops a term must make both gradcheck and the suite fail
(every planted fault: ``tests/test_fault_matrix.py``).  The references never
lean on sciode: ``validation/independent`` imports nothing from it.
"""

import ast
import subprocess
import sys
from pathlib import Path

import numba as nb
import pytest
import sympy as sp

import sciode
from sciode import abi
from sciode.adjoint import common
from sciode.codegen import Kernel, model_kernels
from validation.__main__ import main as validation_main
from validation.cases import ALL_MODES, CASES
from validation.independent.problems import SPECS
from validation.runner import run_case

INDEPENDENT = Path(__file__).resolve().parent.parent / "validation" / "independent"


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
    model = case.problem().model
    _drop_first_param_term(monkeypatch, model)
    rows = run_case(case)
    assert any(not r.passed and r.mode == "adjoint" for r in rows)


def test_fast_validation_suite_passes(tmp_path, capsys):
    assert validation_main(["--fast", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "0 failed" in out
    report = (tmp_path / "report.md").read_text()
    assert "| lotka_volterra | adjoint |" in report
    assert "## Worst error per mode" in report
    refs = report.split("## References")[1].split("## Worst")[0]
    assert "| lotka_volterra | SciPy" in refs and "| exp_decay | closed form" in refs
    assert "sciode" not in refs.lower()  # no reference is sciode's own
    assert (tmp_path / "error_vs_tolerance.png").stat().st_size > 1000


def test_fast_subset_covers_every_mode_stiff_controls_and_symbolic():
    fast = [c for c in CASES if c.fast]
    problems = {c.name: c.problem() for c in fast}
    assert set(ALL_MODES) <= {m for c in fast for m in c.modes}
    stiff = [c for c in fast if problems[c.name].method in ("rodas4", "kvaerno5", "bdf")]
    assert {"adjoint", "checkpoint", "forward"} <= {m for c in stiff for m in c.modes}
    assert any("controls" in problems[c.name].solve_kw for c in fast)
    assert any(c.symbolic_check is not None for c in fast)


def test_catalog_references_are_independent_of_sciode():
    """No file of ``validation/independent`` imports sciode (read from the source), and
    computing every fast case's reference and a test-set solution in a fresh process
    never loads it."""
    for path in INDEPENDENT.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] == "sciode" for n in names), f"{path.name} imports {names}"
    keys = sorted({c.reference for c in CASES if c.fast})
    code = ("import sys; from validation.independent.reference import compute\n"
            "from validation.independent import stiff_set\n"
            f"for k in {keys!r}: compute(k)\n"
            "stiff_set.scipy_solution(stiff_set.HIRES, 1e-4)\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('sciode', 'numba')]\n"
            "assert not bad, bad\n")
    root = INDEPENDENT.parent.parent
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def test_catalog_size_and_references():
    assert len(CASES) >= 15
    assert all(c.reference in SPECS for c in CASES)
    from validation.independent.closed_forms import CLOSED_FORMS
    assert sum(c.reference in CLOSED_FORMS for c in CASES) >= 7


def test_report_names_no_sciode_reference_and_runs_without_matplotlib(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ModuleNotFoundError
    assert validation_main(["--case", "exp_decay", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "sciode[plot]" in out
    report = (tmp_path / "report.md").read_text()
    assert "sciode[plot]" in report and not (tmp_path / "error_vs_tolerance.png").exists()
    assert "closed form" in report
