"""The fault matrix (issue 11, item 3): every planted fault is caught where it acts.

Each fault of ``tests/faults.py`` is planted, one at a time, into a small
model's kernels or into a driver; then ``sciode.gradcheck`` and the
validation suite (``validation.runner.run_case``) must both fail for every
sensitivity mode the fault affects and pass for every other mode, and a
direct comparison with the clean results must show that the fault changes
exactly those modes (``test_fault_reaches_exactly_its_modes``: the ground
truth of the table below, so an "unaffected" claim is measured, not assumed).

Which kernels and drivers each mode uses (``sciode/adjoint/``):

- ``adjoint``, ``checkpoint``: one compiled entry each, called with the kernels
  of a *plan* kept across calls: ``rhs`` (forward pass), the fused ``vjp_yp``
  and ``L_grad``, ``vjp_w``/``dLdw`` (controls), ``obs``/``obs_vjp_y``/
  ``obs_vjp_p`` (data), ``Phi``/``dPhidy``/``dPhidp``; the backward stops
  (observation times) from ``common.sweep_stops``; checkpoint times ``tc``
  from ``checkpoint._plan``.  (``jac_y``, ``jac_p``, ``dfdt``: stiff methods only.)
- ``backsolve``: ``rhs`` and the same rate kernels (``common.costate_fns``),
  the jumps from ``common.observation_jumps``, ``common.terminal``,
  ``common.sweep_stops``.
- ``forward``: ``rhs``, ``sens_rhs`` (``(df/dy) S + df/dp``, its own generated
  kernel: no ``vjp_*``, no ``jac_p``), ``L``/``dLdy``/``dLdp``, the data rows
  through ``common.observation_jumps`` (``dJ/dtheta += S(t_i)^T (dh/dy)^T r_i``,
  no costate, no stops), ``common.terminal``.  No control gradient.
- ``discrete``: the quadrature forward solve (``rhs``, ``L``), then its own
  reverse loop with ``vjp_y``, ``vjp_p``, ``dLdy``, ``dLdp`` (not ``vjp_yp``)
  applying the observation jumps itself from ``t_rows`` (no stops);
  ``common.terminal``.  No control gradient.
- ``fd``: values only: the quadrature forward solve, ``obs`` (misfit) and
  ``Phi`` (``common.terminal`` also calls ``dPhidy``/``dPhidp`` and drops them).
- every mode: ``value_and_grad`` adds ``(dx0/dp)^T dJ/dx0`` for a ``y0`` given
  as expressions in the params (``adjoint.initial_state``).

=====================  ===========================================  =====================================
fault (id)             affected modes                               why
=====================  ===========================================  =====================================
1 ``vjp_p_sign``       adjoint, checkpoint, backsolve, discrete     sweeps: ``vjp_yp[n + j]``; discrete:
  ``vjp_p`` and fused                                               ``vjp_p``.  forward has ``sens_rhs``,
  ``vjp_yp``, param k                                               fd no derivatives.  Only ``dJ/dk``.
2 ``dropped_jump``     adjoint, checkpoint, backsolve               the sweeps jump at their stops
  ``common.sweep_stops``                                            (``apply_jumps``); discrete jumps in its
                                                                    own loop, forward has no costate.
                                                                    checkpoint only if the time is inside
                                                                    a segment: one on a boundary is jumped
                                                                    at the segment's end, not at a stop.
3 ``dPhidp_sign``      adjoint, checkpoint, backsolve, forward,     all start from ``dPhi/dp``; fd's
  kernel ``dPhidp``    discrete                                     ``terminal`` call drops it.
4 ``y0_grad_sign``     adjoint, checkpoint, backsolve, discrete     ``dJ/dx0 = lambda(t0)``, whose rate is
  ``vjp_y`` and                                                     ``(df/dy)^T lambda`` (``vjp_yp[:n]``,
  ``vjp_yp[:n]``                                                    discrete ``vjp_y``); ``dJ/dp`` follows.
5 ``vjp_w_sign``       adjoint, checkpoint, backsolve, forward,     every mode's control gradient reads
  kernel ``vjp_w``     discrete (control gradient only)             ``(df/dw)^T``; fd differences values.
6a ``shared_obs``      all six (value and every gradient,           every mode (and gradcheck's finite
  ``obs*`` x 1.05,     consistently)                                differences of sciode's ``J``) reads
  consistently                                                      the same kernels: only a reference
                                                                    outside sciode sees it.
6b ``shared_terminal`` all six, as 6a                               as 6a, for ``Phi``/``dPhidy``/``dPhidp``.
  ``Phi*`` x 1.05
7 ``checkpoint_off_    checkpoint                                   only ``checkpoint._plan`` makes ``tc``.
  by_one`` ``tc[:-1]``
4b ``y0_chain_rule``   all six                                      applied after any mode, by
  ``initial_state``                                                 ``value_and_grad``; only problems with
  ``dx0/dp`` sign                                                   ``y0(p)`` (an addition to issue 11).
=====================  ===========================================  =====================================

``dPhidp_sign`` is judged on the first validation case whose terminal cost
depends on a parameter (``param_terminal``, added to the catalog when this
matrix showed that no case had ``dPhi/dp != 0``); the test fails loudly if
the catalog ever loses every such case.

gradcheck checks ``forward`` always plus the modes in ``GRADCHECKED``;
the validation suite runs the modes of ``validation.cases.ALL_MODES`` (no
``fd``).  Validation runs each case at two tolerances, (1e-8, 1e-10): a mode
passes at the tighter one only if its error came down from the looser one
or is at round-off (``validation.runner``), which one tolerance cannot show.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import faults
import numpy as np
import pytest
import sympy as sp

import sciode
from sciode.cost import as_cost

MODES = ("adjoint", "checkpoint", "backsolve", "forward", "discrete", "fd")
GRADCHECKED = ("adjoint", "checkpoint", "backsolve", "discrete", "fd")  # + forward, always
SWEEPS = ("adjoint", "checkpoint", "backsolve")
VALIDATION_TOLS = (1e-8, 1e-10)
RTOL = 1e-10  # of the direct clean-vs-faulted comparison


@dataclass(frozen=True)
class Fault:
    """A planted fault and where it must show.

    ``problem``: gradcheck problem (fixture ``problems``); ``case``: validation
    case name, or None for the first case whose terminal cost depends on a
    parameter; ``quantity``: a predicate that at least one failing gradcheck
    row of each affected mode satisfies; ``value_only``: gradcheck can see it
    only through its SciPy value rows (quantity ``"J"``).
    """

    plant: Callable
    affected: tuple
    problem: str
    case: str | None
    quantity: Callable[[str], bool]
    value_only: bool = False


FAULTS = {
    "vjp_p_sign": Fault(faults.flip_param_vjp, SWEEPS + ("discrete",), "decay", "exp_decay",
                        lambda q: q == "dJ/dk"),
    # lotka_volterra, not observation_edges: there every interior observation
    # time lies on a checkpoint boundary, where checkpoint mode jumps at the
    # segment's end and not at a stop, so the plant would not reach it
    "dropped_jump": Fault(faults.drop_observation_jump, SWEEPS, "decay", "lotka_volterra",
                          lambda q: q.startswith("dJ/d")),
    "dPhidp_sign": Fault(faults.flip_dPhidp, SWEEPS + ("forward", "discrete"), "decay", None,
                         lambda q: q == "dJ/dc"),
    "y0_grad_sign": Fault(faults.flip_state_vjp, SWEEPS + ("discrete",), "decay", "damped_oscillator",
                          lambda q: q == "dJ/dx(t0)"),
    "vjp_w_sign": Fault(faults.flip_control_vjp, SWEEPS + ("forward", "discrete"), "controlled",
                        "controlled",
                        lambda q: q.startswith("dJ/du[")),
    "shared_obs": Fault(faults.scale_observables, MODES, "decay", "observation_edges",
                        lambda q: q == "J", value_only=True),
    "shared_terminal": Fault(faults.scale_terminal, MODES, "decay", "exp_decay",
                             lambda q: q == "J", value_only=True),
    "checkpoint_off_by_one": Fault(faults.drop_last_checkpoint, ("checkpoint",), "decay", "exp_decay",
                                   lambda q: q.startswith("dJ/d")),
    "y0_chain_rule": Fault(faults.flip_initial_state_derivative, MODES, "y0_of_p", "param_initial_state",
                           lambda q: q == "dJ/dq"),
}


@dataclass(frozen=True)
class GradProblem:
    model: sciode.Model
    cost: object
    y0: list
    t_span: tuple
    params: np.ndarray
    kw: dict

    def grad(self, mode):
        return sciode.value_and_grad(self.model, self.cost, self.y0, self.t_span, self.params,
                                     sensitivity=mode, rtol=RTOL, atol=RTOL * 1e-2, **self.kw)

    def gradcheck(self):
        return sciode.gradcheck(self.model, self.cost, self.y0, self.t_span, self.params,
                                modes=GRADCHECKED, **self.kw)


def _decay():
    """``x' = -k x + c`` with every kind of cost term: ``Phi`` depends on ``c``
    (fault 3), ``L`` on the state, three observations strictly inside the span
    and off the checkpoint grid (multiples of 0.25): fault 2 drops the one at
    0.6, and only it, in every sweep."""
    x, k, c = sp.symbols("x k c")
    model = sciode.Model([x], [-k * x + c], [k, c], name="fault_decay")
    data = sciode.LeastSquares([0.6, 1.1, 1.7], [0.9, 0.7, 0.6], sigma=0.1)
    cost = sciode.Cost(terminal=x**2 / 2 + c * x, running=x**2 / 10) + data
    return GradProblem(model, cost, [1.2], (0.0, 2.0), np.array([0.7, 0.3]), {})


def _controlled():
    """``x' = -a x + b u`` on a 5-point control grid (5 control-gradient rows)."""
    x, u, a, b = sp.symbols("x u a b")
    model = sciode.Model([x], [-a * x + b * u], [a, b], controls=[u], name="fault_controlled")
    grid = np.linspace(0.0, 2.0, 5)
    ctrl = sciode.Controls(grid, np.cos(grid)[:, None])
    cost = sciode.Cost(terminal=x**2, running=x**2 + u**2 / 2)
    return GradProblem(model, cost, [1.0], (0.0, 2.0), np.array([0.8, 1.5]), {"controls": ctrl})


def _y0_of_p():
    """``x' = -k x + q``, ``x(0) = q^2``: ``dJ/dq`` goes through ``dx0/dq``."""
    x, k, q = sp.symbols("x k q")
    model = sciode.Model([x], [-k * x + q], [k, q], name="fault_y0_of_p")
    return GradProblem(model, sciode.Cost(terminal=x**2), [q**2], (0.0, 1.5), np.array([0.4, 1.3]), {})


@pytest.fixture(scope="session")
def problems():
    return {"decay": _decay(), "controlled": _controlled(), "y0_of_p": _y0_of_p()}


@pytest.fixture(scope="session")
def clean_results(problems):
    """Every mode's result on every problem, before any fault (fixtures are set
    up before the test body plants one)."""
    return {name: {m: prob.grad(m) for m in MODES} for name, prob in problems.items()}


def _plant_gradcheck_problem(monkeypatch, fault, problems):
    prob = problems[fault.problem]
    fault.plant(monkeypatch, prob.model, prob.cost)
    return prob


def _terminal_depends_on_params(case) -> bool:
    p = case.problem()
    return bool(as_cost(p.cost).terminal.free_symbols & set(p.model.params))


def _validation_case(name):
    """Case ``name`` at ``VALIDATION_TOLS`` (None: the first case whose
    terminal cost depends on a parameter)."""
    from validation.cases import ALL_MODES, CASES

    if name is None:
        found = [c for c in CASES if _terminal_depends_on_params(c)]
        if not found:
            pytest.fail("no validation case has a terminal cost that depends on a parameter, so no "
                        "case exercises dPhi/dp: a wrong `dPhidp` kernel cannot fail the suite")
        case = found[0]
    else:
        case = next(c for c in CASES if c.name == name)
    return dataclasses.replace(case, tolerances=VALIDATION_TOLS,
                               modes=tuple(m for m in case.modes if m in ALL_MODES))


# -- the clean model -------------------------------------------------------------


@pytest.mark.parametrize("name", ["decay", "controlled", "y0_of_p"])
def test_gradcheck_passes_on_the_clean_model(problems, name):
    report = problems[name].gradcheck()
    assert report.ok, str(report)
    assert {r.mode for r in report.rows if r.checked} >= {"forward", *GRADCHECKED}


@pytest.mark.parametrize("case_name", sorted({f.case for f in FAULTS.values() if f.case}))
def test_validation_passes_on_the_clean_model(case_name):
    from validation.runner import run_case

    case = _validation_case(case_name)
    rows = [r for r in run_case(case) if r.mode in MODES]
    assert {r.mode for r in rows} == set(case.modes)
    assert all(r.passed for r in rows), [(r.mode, r.tol, r.error, r.value_error) for r in rows]


# -- each fault ------------------------------------------------------------------------


@pytest.mark.parametrize("fault_id", FAULTS)
def test_fault_reaches_exactly_its_modes(fault_id, problems, clean_results, monkeypatch):
    """The table's ground truth: under the fault, the affected modes' results
    move, and the other modes' results are bit for bit the clean ones."""
    fault = FAULTS[fault_id]
    prob = _plant_gradcheck_problem(monkeypatch, fault, problems)
    for mode in MODES:
        clean, bad = clean_results[fault.problem][mode], prob.grad(mode)
        fields = [(f, getattr(clean, f), getattr(bad, f))
                  for f in ("value", "grad_params", "grad_y0", "grad_controls")]
        if mode in fault.affected:
            moved = [f for f, a, b in fields if a is not None
                     and np.max(np.abs(np.asarray(b) - a)) > 1e-6 * max(np.max(np.abs(a)), 1.0)]
            assert moved, f"{fault_id} does not reach {mode}"
        else:
            same = [f for f, a, b in fields if (a is None and b is None) or np.array_equal(a, b)]
            assert len(same) == len(fields), f"{fault_id} reaches {mode}, which it should not"


@pytest.mark.parametrize("fault_id", FAULTS)
def test_gradcheck_catches_the_fault(fault_id, problems, monkeypatch):
    fault = FAULTS[fault_id]
    report = _plant_gradcheck_problem(monkeypatch, fault, problems).gradcheck()
    assert not report.ok
    checked = {"forward", *GRADCHECKED}
    for mode in checked:
        bad = [r for r in report.failures if r.mode == mode]
        if mode in fault.affected:
            assert any(fault.quantity(r.quantity) for r in bad), \
                f"gradcheck misses {fault_id} in {mode}:\n{report}"
        else:
            assert not bad, f"gradcheck blames unaffected {mode} for {fault_id}:\n{report}"
    if fault.value_only:
        # every gradient agrees with differences of sciode's own (shifted) J
        assert all(r.quantity == "J" for r in report.failures), str(report)


@pytest.mark.parametrize("fault_id", FAULTS)
def test_validation_catches_the_fault(fault_id, monkeypatch):
    from validation.runner import run_case

    fault = FAULTS[fault_id]
    case = _validation_case(fault.case)
    prob = case.problem()  # a fresh model: it shares the kernel sets of every run_case model
    fault.plant(monkeypatch, prob.model, prob.cost)
    rows = [r for r in run_case(case) if r.mode in MODES]
    for mode in case.modes:
        mine = [r for r in rows if r.mode == mode]
        assert mine, f"validation case {case.name} has no row for {mode}"
        if mode in fault.affected:
            assert any(not r.passed for r in mine), f"validation misses {fault_id} in {mode}: {mine}"
        else:
            assert all(r.passed for r in mine), f"validation blames unaffected {mode} for {fault_id}: {mine}"


def test_planted_kernels_are_undone(problems, clean_results):
    """After the fault tests, the kernel sets hold the generated kernels again
    (monkeypatch restored them) and the plan memo gives the clean results."""
    from sciode.adjoint import checkpoint, common
    from sciode.codegen import cost_kernels, model_kernels

    prob = problems["decay"]
    planted = {id(k) for k in faults._PLANTED.values()}
    for ks in (model_kernels(prob.model), cost_kernels(prob.model, prob.cost)):
        assert not planted & {id(k) for k in ks._compiled.values()}
    assert common.sweep_stops.__module__ == "sciode.adjoint.common"
    assert checkpoint._plan.__module__ == "sciode.adjoint.checkpoint"
    for mode in ("adjoint", "checkpoint"):
        np.testing.assert_array_equal(prob.grad(mode).grad_params, clean_results["decay"][mode].grad_params)
