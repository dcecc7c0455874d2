"""A PEtab v1 problem: its negative log-likelihood and gradient.

Notation.  ``phi`` (length P) holds every parameter of the parameter table
in linear scale; the estimated ones are ``phi_k = s_k^{-1}(theta_k)`` with
``s = lin | log | log10``, the others their ``nominalValue``.  A simulation
(one ``(preequilibrationConditionId, simulationConditionId)`` pair of the
measurement table) maps ``phi`` to the model's parameters ``p = A phi + b``
(each entry is one ``phi_k`` or a number, from the condition table, the
parameter table or the SBML file) and to the initial state ``x0`` (SBML
initial values and assignments ``x0(p)``, or the pre-equilibration steady
state, with species overridden by the condition table).  Measurement ``i``
of observable ``j`` at time ``t_i`` has

    h_i = h_j(x(t_i), p, phi, o_i),  sigma_i = sigma_j(x(t_i), p, phi, n_i)

(``o_i``, ``n_i``: the observable and noise parameters of its row), and

    nllh(theta) = sum_i ell(m_i, h_i, sigma_i)

with ``ell`` the PEtab noise model (`_noise`).  Its gradient is the chain
rule

    d nllh/d theta = sum_i (dell/dh_i dh_i/dphi + dell/dsigma_i dsigma_i/dphi) dphi/dtheta,
    dh_i/dphi = dh/dx S_phi(t_i) + dh/dp A + dh/dphi + dh/do do_i/dphi,
    S_phi(t) = dx(t)/dp A + dx(t)/dx0 dx0/dphi,

where ``dx(t)/d[p, x0]`` are the forward sensitivities of the states
(``sciode.value_and_grad(..., sensitivity="forward")``, ``extra["S_rows"]``),
the partial derivatives of the formulas are derived with SymPy, and
``dphi_k/dtheta_k = 1, phi_k, phi_k ln 10``.  With ``sensitivity="adjoint"``
the state part is summed first, ``G(t_i) = sum dell/dx(t_i)``, and
``sum_i G(t_i) . dx(t_i)/d[p, x0]`` comes from one adjoint solve per
simulation (`PetabProblem._vjp_run`).

Steady states (`_steady`): pre-equilibration replaces ``x0`` by the steady
state ``x_ss`` reached from the pre-equilibration condition's initial state,
and a measurement at ``time = inf`` observes the steady state reached from
the simulation condition's initial state.  Both are found by Newton's method
on ``f(x, p) = 0`` with the conservation laws ``C x = C x0`` (a long
simulation where Newton fails), and differentiated by the implicit function
theorem, ``dx_ss/d[p, x0] = [J; C]^+ [[-df/dp, 0], [0, C]]`` forward, or
the steady-state adjoint ``J^T mu + C^T nu = g`` (gradient ``-mu^T df/dp``,
``nu^T C``); where that does not apply (no Newton root, an ill-conditioned
``[J; C]``), by the sensitivities of the long integration.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections import Counter
from dataclasses import dataclass

import numpy as np
import sympy as sp

from ..errors import ModelError, SolverError
from ._formulas import parse_formula
from ._noise import DISTRIBUTIONS, TRANSFORMATIONS, negative_log_likelihood

__all__ = ["PetabProblem", "import_problem"]

SCALES = ("lin", "log", "log10")
SENSITIVITIES = ("forward", "adjoint", "fd")
STEADY_STATES = ("newton", "simulation")
#: Noise scale of the least-squares term that carries a vector-Jacobian
#: product through the adjoint (`PetabProblem._vjp_run`).
_VJP_SIGMA = 1e3


def import_problem(yaml_path, method: str = "kvaerno5", rtol: float = 1e-8, atol: float = 1e-12,
                   max_steps: int = 200_000, sens_error_control: bool = False,
                   steady_state: str = "newton") -> PetabProblem:
    """Read a PEtab v1 problem (YAML file) into a `PetabProblem`.

    Parameters
    ----------
    yaml_path : str or path
    method : str
        Integration method (any of ``sciode.solve``'s; the gradient's forward
        sensitivities need an explicit method or ``"kvaerno5"``).
    rtol, atol : float
        Integration tolerances.
    max_steps : int
    sens_error_control : bool
        Whether the forward sensitivities take part in the step-size control
        (``value_and_grad``'s option).  Off by default, as CVODES' ``errconS``:
        with it on, ``kvaerno5`` rejects most steps on stiff problems such as
        Boehm_JProteomeRes2014 (10-200x slower); the states
        stay error-controlled, and the gradient is checked against finite
        differences in ``tests/test_petab.py`` and ``benchmarks/suite_petab.py``.
    steady_state : {"newton", "simulation"}
        How pre-equilibration and ``time = inf`` measurements reach their
        steady state: ``"newton"`` (default) Newton's method first, a long
        simulation where it fails, with implicit-function sensitivities
        (AMICI's default); ``"simulation"`` only the long simulation, with
        integrated sensitivities.  `PetabProblem.steady_state_counts` tallies
        which was used.

    Raises
    ------
    ModelError
        On unsupported SBML, bad formulas, ids that mean nothing, or
        inconsistent tables; the message names the table, row and id.
    NotImplementedError
        For PEtab features not implemented yet (PEtab v2, non-SBML models,
        several models).
    ImportError
        Without the ``sbml`` extra (``pip install sciode[sbml]``).
    """
    from . import _require_petab

    petab = _require_petab()
    path = os.fspath(yaml_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"PEtab problem file {path!r} does not exist")
    _check_format(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        problem = petab.v1.Problem.from_yaml(path)
    return PetabProblem(problem, path, method=method, rtol=rtol, atol=atol, max_steps=max_steps,
                        sens_error_control=sens_error_control, steady_state=steady_state)


def _check_format(path: str) -> None:
    import yaml

    with open(path) as fh:
        spec = yaml.safe_load(fh)
    version = str((spec or {}).get("format_version", "1"))
    if not version.startswith("1"):
        raise NotImplementedError(f"{path!r} is PEtab format_version {version}; only PEtab v1 is "
                                  "supported")
    problems = (spec or {}).get("problems", [])
    if len(problems) != 1 or len(problems[0].get("sbml_files") or []) != 1:
        raise NotImplementedError(f"{path!r}: only one problem with exactly one SBML model "
                                  "(`sbml_files`) is supported")


# --- small records ------------------------------------------------------------------


@dataclass
class _Mapping:
    """Values ``v = where(idx >= 0, phi[idx], const)`` of a vector of symbols."""

    idx: np.ndarray
    const: np.ndarray

    def values(self, phi: np.ndarray) -> np.ndarray:
        return np.where(self.idx >= 0, phi[np.maximum(self.idx, 0)], self.const)

    def jacobian(self, P: int) -> np.ndarray:
        """``dv/dphi``, shape ``(len(v), P)``."""
        J = np.zeros((self.idx.size, P))
        rows = np.nonzero(self.idx >= 0)[0]
        J[rows, self.idx[rows]] = 1.0
        return J


@dataclass
class _Condition:
    """A row of the condition table, resolved against the model."""

    id: str
    params: _Mapping          # every model parameter
    states: _Mapping          # initial-state overrides (idx -1 and NaN const: none)

    def overridden(self) -> np.ndarray:
        return (self.states.idx >= 0) | np.isfinite(self.states.const)


@dataclass
class _Simulation:
    sim: _Condition
    preeq: _Condition | None
    times: np.ndarray         # unique sorted finite measurement times
    cost: object              # LeastSquares with rows at `times` (for S_rows); None without times
    steady: bool = False      # measurements at time = inf (row `times.size` of the run)

    @property
    def n_rows(self) -> int:
        return self.times.size + int(self.steady)


@dataclass
class _Run:
    """One simulated (pre-equilibration, simulation) pair."""

    X: np.ndarray             # (n_rows, n) states at the simulation's times (then at inf)
    p: np.ndarray             # (n_p,) model parameters
    x0: np.ndarray            # (n,) initial state
    dX: np.ndarray | None     # (n_rows, n, P) dx/dphi (forward mode)
    pre: object               # SteadyState of the pre-equilibration, or None
    post: object = None       # SteadyState of the time = inf measurements, or None


@dataclass
class _ObservableGroup:
    """The measurements of one observable, and its compiled formulas."""

    id: str
    rows: np.ndarray          # measurement indices
    sim: np.ndarray           # simulation index per row
    tidx: np.ndarray          # time index in that simulation per row
    t: np.ndarray
    m: np.ndarray
    placeholders: _Mapping    # flattened (rows, K): observable then noise parameters
    n_placeholders: int
    distribution: str
    transformation: str
    fn: object                # lambdified: args -> [h, sigma, dh/d(args), dsigma/d(args)]
    arg_kinds: list           # per derivative argument: ("x", i) | ("p", i) | ("phi", k) | ("o", k)


class PetabProblem:
    """A PEtab v1 parameter-estimation problem on an SBML model (final).

    Attributes
    ----------
    sbml : sciode.sbml.SBMLModel
    model : sciode.Model
    parameter_ids : tuple of str
        The estimated parameters, in the order of `nominal`.
    nominal : numpy.ndarray
        Their nominal values in PEtab scale (``parameterScale``).
    lower, upper : numpy.ndarray
        Bounds in PEtab scale.
    scales : tuple of str
    n_simulations, n_measurements : int
    steady_state_counts : collections.Counter
        How the steady states were found since import (``"newton"``,
        ``"simulation+newton"``: Newton failed from the start and polished a
        long simulation, ``"simulation"``) and how they were differentiated
        (``"sensitivities: implicit"``, ``"sensitivities: integrated"``).
    """

    def __init_subclass__(cls, **kwargs):
        raise TypeError("PetabProblem is final and cannot be subclassed")

    def __init__(self, problem, path: str, method="kvaerno5", rtol=1e-8, atol=1e-12,
                 max_steps=200_000, sens_error_control=False, steady_state="newton"):
        from ..sbml import import_sbml

        if steady_state not in STEADY_STATES:
            raise ValueError(f"`steady_state` must be one of {list(STEADY_STATES)}; got {steady_state!r}")
        self.path = path
        self.method, self.rtol, self.atol, self.max_steps = method, float(rtol), float(atol), max_steps
        self.sens_error_control = bool(sens_error_control)
        if not hasattr(problem.model, "sbml_document"):
            raise NotImplementedError(f"{path!r}: only SBML models are supported")
        self.sbml = import_sbml(problem.model.sbml_document)
        self.model = self.sbml.model
        self._read_parameters(problem.parameter_df)
        self._names = self._formula_names()
        self._conditions = self._read_conditions(problem.condition_df)
        self._read_observables(problem.observable_df)
        self._read_measurements(problem.measurement_df)
        self._compile_model_functions()
        self._steady = None
        self._steady_mode = steady_state

    @property
    def steady_state_counts(self):
        return self._steady.counts if self._steady is not None else Counter()

    def _steady_solver(self):
        from ._steady import SteadyStateSolver

        if self._steady is None:
            species = np.array([self.sbml.state_kinds.get(s.name) in ("concentration", "amount")
                                for s in self.model.states], dtype=bool)
            self._steady = SteadyStateSolver(self.model, self.rtol, self.atol, self._solve_kw,
                                             nonneg=species, newton=self._steady_mode == "newton")
        return self._steady

    # --- tables -------------------------------------------------------------

    def _read_parameters(self, df) -> None:
        df = df.reset_index() if "parameterId" not in df.columns else df
        ids = [str(i) for i in df["parameterId"]]
        self._phi_ids = ids
        self._phi_index = {k: i for i, k in enumerate(ids)}
        scale = [str(s) if isinstance(s, str) else "lin" for s in df.get("parameterScale", ["lin"] * len(ids))]
        for pid, s in zip(ids, scale):
            if s not in SCALES:
                raise ModelError(f"parameter table: `{pid}` has parameterScale {s!r}; expected one of {SCALES}")
        est = np.asarray(df["estimate"], dtype=float).astype(int) == 1 if "estimate" in df else np.ones(len(ids), bool)
        nominal = np.asarray(df["nominalValue"], dtype=float)
        if np.any(~est & ~np.isfinite(nominal)):
            bad = [pid for pid, e, v in zip(ids, est, nominal) if not e and not np.isfinite(v)]
            raise ModelError(f"parameter table: fixed parameter(s) {bad} have no nominalValue")
        self._phi_nominal = nominal
        self._phi_scale = np.array(scale)
        self._est = np.nonzero(est)[0]
        self.parameter_ids = tuple(ids[i] for i in self._est)
        self.scales = tuple(scale[i] for i in self._est)
        self.nominal = _to_scale(nominal[self._est], self._phi_scale[self._est])
        self.lower = _to_scale(np.asarray(df["lowerBound"], float)[self._est], self._phi_scale[self._est])
        self.upper = _to_scale(np.asarray(df["upperBound"], float)[self._est], self._phi_scale[self._est])
        prior_cols = [c for c in ("objectivePriorType", "objectivePriorParameters") if c in df.columns]
        self.has_priors = any(df[c].notna().any() for c in prior_cols)
        if self.has_priors:
            warnings.warn(f"{self.path!r}: objective priors are not included: `nllh` is the negative "
                          "log-likelihood of the data only", stacklevel=3)
        states = {s.name for s in self.model.states}
        for pid in ids:
            if pid in states:
                raise ModelError(f"parameter table: `{pid}` is a state of the model, not a parameter")
            expr = self.sbml.expressions.get(pid)
            if expr is not None and not (isinstance(expr, sp.Symbol) and expr in self.model.params):
                raise ModelError(f"parameter table: `{pid}` is defined by the SBML model (a rule, "
                                 "an initial assignment or a reaction) and cannot be a parameter")

    def _formula_names(self) -> dict:
        names = dict(self.sbml.expressions)
        self._phi_symbols = {}
        for pid in self._phi_ids:
            if pid not in names:
                names[pid] = self._phi_symbols[pid] = sp.Symbol(pid)
            else:
                self._phi_symbols[pid] = names[pid]
        return names

    def _value_or_phi(self, value, where: str):
        """``(phi index, constant)`` of a table entry: a number or a parameter id."""
        if isinstance(value, str):
            v = value.strip()
            try:
                return -1, float(v)
            except ValueError:
                pass
            if v in self._phi_index:
                return self._phi_index[v], math.nan
            raise ModelError(f"{where}: `{v}` is neither a number nor an id of the parameter table")
        if value is None:
            return -1, math.nan
        return -1, float(value)

    def _read_conditions(self, df) -> dict:
        df = df.reset_index() if "conditionId" not in df.columns else df
        params = {p.name: i for i, p in enumerate(self.model.params)}
        states = {s.name: i for i, s in enumerate(self.model.states)}
        n_p, n = len(params), len(states)
        base_idx = np.full(n_p, -1)
        base_const = np.empty(n_p)
        for name, i in params.items():
            if name in self._phi_index:
                base_idx[i] = self._phi_index[name]
            else:
                base_const[i] = self.sbml.param_values[name]
        out = {}
        for _, row in df.iterrows():
            cid = str(row["conditionId"])
            p_idx, p_const = base_idx.copy(), base_const.copy()
            s_idx, s_const = np.full(n, -1), np.full(n, math.nan)
            for col in df.columns:
                if col in ("conditionId", "conditionName"):
                    continue
                where = f"condition table, condition `{cid}`, column `{col}`"
                k, c = self._value_or_phi(row[col], where)
                if col in params:
                    if k < 0 and not math.isfinite(c):
                        continue  # NaN: keep the default
                    p_idx[params[col]], p_const[params[col]] = k, c
                elif col in states:
                    s_idx[states[col]], s_const[states[col]] = k, c
                else:
                    raise ModelError(f"{where}: `{col}` is not a parameter, compartment or species "
                                     "of the model (or is defined by a rule)")
            missing = [self.model.params[i].name for i in range(n_p)
                       if p_idx[i] < 0 and not math.isfinite(p_const[i])]
            if missing:
                raise ModelError(f"condition `{cid}`: model parameter(s) {missing} have no value "
                                 "(not in the SBML file, the parameter table or the condition table)")
            out[cid] = _Condition(cid, _Mapping(p_idx, p_const), _Mapping(s_idx, s_const))
        return out

    def _read_observables(self, df) -> None:
        df = df.reset_index() if "observableId" not in df.columns else df
        self._observables = {}
        for _, row in df.iterrows():
            oid = str(row["observableId"])
            ph = {}
            for kind in ("observableParameter", "noiseParameter"):
                for col in ("observableFormula", "noiseFormula"):
                    text = row.get(col)
                    if isinstance(text, str):
                        for k in re.findall(rf"\b{kind}(\d+)_{re.escape(oid)}\b", text):
                            ph[f"{kind}{k}_{oid}"] = sp.Symbol(f"{kind}{k}_{oid}")
            clash = set(ph) & set(self._names)
            if clash:
                raise ModelError(f"observable table: placeholder(s) {sorted(clash)} of `{oid}` "
                                 "clash with model or parameter ids")
            names = {**self._names, **ph}
            h = parse_formula(row["observableFormula"], names, self.model.t, f"observableFormula of `{oid}`")
            noise = row.get("noiseFormula")
            if noise is None or (isinstance(noise, float) and math.isnan(noise)):
                raise ModelError(f"observable table: `{oid}` has no noiseFormula")
            sigma = parse_formula(noise, names, self.model.t, f"noiseFormula of `{oid}`")
            trans = _text(row.get("observableTransformation"), "lin")
            dist = _text(row.get("noiseDistribution"), "normal")
            if trans not in TRANSFORMATIONS:
                raise ModelError(f"observable `{oid}`: observableTransformation {trans!r} is not one of "
                                 f"{TRANSFORMATIONS}")
            if dist not in DISTRIBUTIONS:
                raise ModelError(f"observable `{oid}`: noiseDistribution {dist!r} is not one of "
                                 f"{DISTRIBUTIONS}")
            n_obs = _count(ph, "observableParameter", oid)
            n_noise = _count(ph, "noiseParameter", oid)
            self._observables[oid] = (h, sigma, trans, dist, n_obs, n_noise)

    def _read_measurements(self, df) -> None:
        if "preequilibrationConditionId" not in df.columns:
            df = df.assign(preequilibrationConditionId=np.nan)
        times = np.asarray(df["time"], dtype=float)
        if np.isnan(times).any():
            raise ModelError("measurement table: time NaN")
        if (times < 0).any():
            raise ModelError("measurement table: negative time")
        meas = np.asarray(df["measurement"], dtype=float)
        if not np.isfinite(meas).all():
            raise ModelError("measurement table: non-finite measurement value")
        keys, sim_of_row = {}, np.empty(len(df), int)
        for r, (pre, sim) in enumerate(zip(df["preequilibrationConditionId"], df["simulationConditionId"])):
            pre = str(pre) if isinstance(pre, str) and pre.strip() else None
            for c in (pre, str(sim)):
                if c is not None and c not in self._conditions:
                    raise ModelError(f"measurement table row {r}: condition `{c}` is not in the "
                                     "condition table")
            sim_of_row[r] = keys.setdefault((pre, str(sim)), len(keys))
        self._build_simulations(keys, sim_of_row, times)
        self._build_groups(df, sim_of_row, times, meas)
        self.n_measurements = len(df)

    def _build_simulations(self, keys, sim_of_row, times) -> None:
        from ..cost import LeastSquares

        self._sims = []
        self._tidx = np.empty(times.size, int)
        for (pre, sim), s in keys.items():
            rows = np.nonzero(sim_of_row == s)[0]
            ts, inv = np.unique(times[rows], return_inverse=True)  # inf sorts last
            self._tidx[rows] = inv
            steady = bool(ts.size and np.isinf(ts[-1]))
            ts = ts[:-1] if steady else ts
            # Every state observed: the forward run then reports the states
            # (``H_rows``) with their sensitivities (``S_rows``) at `ts`.
            cost = LeastSquares(ts, np.zeros((ts.size, self.model.n_states))) if ts.size else None
            self._sims.append(_Simulation(self._conditions[sim], self._conditions.get(pre) if pre else None,
                                          ts, cost, steady))
        self.n_simulations = len(self._sims)
        self._row_offsets = np.concatenate([[0], np.cumsum([sim.n_rows for sim in self._sims])])

    def _build_groups(self, df, sim_of_row, times, meas) -> None:
        self._groups = []
        obs_ids = [str(o) for o in df["observableId"]]
        for oid in dict.fromkeys(obs_ids):
            if oid not in self._observables:
                raise ModelError(f"measurement table: observable `{oid}` is not in the observable table")
            h, sigma, trans, dist, n_obs, n_noise = self._observables[oid]
            rows = np.nonzero(np.array(obs_ids) == oid)[0]
            if trans != "lin" and (meas[rows] <= 0).any():
                raise ModelError(f"measurement table: observable `{oid}` has {trans} transformation "
                                 "but a measurement <= 0")
            K = n_obs + n_noise
            idx, const = np.full((rows.size, K), -1), np.full((rows.size, K), math.nan)
            for a, r in enumerate(rows):
                for col, count, off in (("observableParameters", n_obs, 0), ("noiseParameters", n_noise, n_obs)):
                    entries = _split(df[col].iloc[r] if col in df.columns else None)
                    if len(entries) != count:
                        raise ModelError(f"measurement table row {r} (observable `{oid}`): {col} has "
                                         f"{len(entries)} entries, the formula needs {count}")
                    for k, e in enumerate(entries):
                        idx[a, off + k], const[a, off + k] = self._value_or_phi(
                            e, f"measurement table row {r}, {col}")
            ph = [sp.Symbol(f"observableParameter{k + 1}_{oid}") for k in range(n_obs)]
            ph += [sp.Symbol(f"noiseParameter{k + 1}_{oid}") for k in range(n_noise)]
            fn, kinds = self._compile_observable(h, sigma, ph)
            self._groups.append(_ObservableGroup(
                oid, rows, sim_of_row[rows], self._tidx[rows], times[rows], meas[rows],
                _Mapping(idx.ravel(), const.ravel()), K, dist, trans, fn, kinds))

    # --- symbolic pieces ------------------------------------------------------

    def _compile_observable(self, h, sigma, placeholders):
        """Lambdify ``[h, sigma, dh/da, dsigma/da]`` over the arguments ``a`` it uses."""
        model = self.model
        cands = [*(("x", i, s) for i, s in enumerate(model.states)),
                 *(("p", i, s) for i, s in enumerate(model.params)),
                 *(("phi", self._phi_index[k], s) for k, s in self._phi_symbols.items()
                   if s not in model.params),
                 *(("o", k, s) for k, s in enumerate(placeholders))]
        free = h.free_symbols | sigma.free_symbols
        used = [c for c in cands if c[2] in free]
        unknown = free - {c[2] for c in used} - {model.t}
        if unknown:
            raise ModelError(f"observable formulas use {sorted(map(str, unknown))}, which are not "
                             "model entities, parameters or placeholders")
        syms = [c[2] for c in used]
        outs = [h, sigma, *(sp.diff(h, s) for s in syms), *(sp.diff(sigma, s) for s in syms)]
        fn = sp.lambdify([*syms, model.t], outs, "numpy", dummify=True)
        return fn, [(c[0], c[1]) for c in used]

    def _compile_model_functions(self) -> None:
        model = self.model
        p = list(model.params)
        x0 = sp.Matrix(self.sbml.initial_state)
        self._x0 = sp.lambdify([p], list(x0), "numpy", dummify=True)
        self._dx0dp = sp.lambdify([p], x0.jacobian(p), "numpy", dummify=True)

    # --- parameters -----------------------------------------------------------

    def _phi(self, theta) -> tuple[np.ndarray, np.ndarray]:
        """``phi`` (linear scale, all P) and ``dphi/dtheta`` of the estimated entries."""
        theta = self.nominal if theta is None else np.asarray(theta, dtype=float)
        if theta.shape != self.nominal.shape:
            raise ValueError(f"`theta` has shape {theta.shape}; expected {self.nominal.shape} "
                             f"(one value per estimated parameter {list(self.parameter_ids)})")
        if not np.isfinite(theta).all():
            raise ValueError("`theta` has non-finite values")
        phi = self._phi_nominal.copy()
        scales = self._phi_scale[self._est]
        phi[self._est] = _from_scale(theta, scales)
        dphi = np.where(scales == "lin", 1.0,
                        np.where(scales == "log", phi[self._est], phi[self._est] * np.log(10.0)))
        return phi, dphi

    # --- simulation -----------------------------------------------------------

    def _initial(self, cond: _Condition, phi, base=None):
        """Model parameters and initial state of a condition (``base``: a steady
        state replacing the SBML initial values)."""
        p = cond.params.values(phi)
        x0 = base.copy() if base is not None else np.array(self._x0(p), dtype=float).reshape(-1)
        over = cond.overridden()
        if over.any():
            x0[over] = cond.states.values(phi)[over]
        return p, x0

    def _initial_jacobian(self, cond: _Condition, p, P, dbase=None) -> np.ndarray:
        """``dx0/dphi`` ``(n, P)`` of `_initial` (``dbase``: ``d base/dphi``)."""
        if dbase is None:
            dbase = np.array(self._dx0dp(p), dtype=float).reshape(-1, p.size) @ cond.params.jacobian(P)
        J = dbase.copy()
        over = cond.overridden()
        if over.any():
            J[over] = cond.states.jacobian(P)[over]
        return J

    def _solve_kw(self):
        return {"method": self.method, "rtol": self.rtol, "atol": self.atol, "max_steps": self.max_steps}

    def _forward_kw(self):
        """Options of the forward-sensitivity runs (with ``sens_error_control=False``
        the forward mode keeps the states' own error test at ``rtol, atol``)."""
        kw = self._solve_kw()
        kw["sens_error_control"] = self.sens_error_control
        return kw

    def _varying(self, cond: _Condition) -> np.ndarray:
        """Mask of the model parameters that an estimated parameter sets."""
        est = np.zeros(len(self._phi_ids), bool)
        est[self._est] = True
        idx = cond.params.idx
        return (idx >= 0) & est[np.maximum(idx, 0)]

    def _steady_state(self, cond: _Condition, p, x0, start, mode):
        """The steady state reached from ``x0`` under ``cond`` (`_steady`)."""
        return self._steady_solver().solve(p, x0, start, sensitivities=mode is not None,
                                           varying=self._varying(cond))

    def _ss_jacobian(self, ss) -> np.ndarray:
        """``dx_ss/d[p, x0]`` ``(n, n_p + n)``: implicit-function, else forward
        sensitivities of the integration over ``[0, T]``."""
        from ..adjoint import value_and_grad
        from ..cost import LeastSquares

        if ss.ift is not None:
            return ss.jacobian()
        cost = LeastSquares([ss.T], np.zeros((1, self.model.n_states)))
        res = value_and_grad(self.model, cost, ss.x0, (0.0, ss.T), ss.p, sensitivity="forward",
                             **self._forward_kw())
        return res.extra["S_rows"][-1]

    def _ss_vjp(self, ss, g) -> tuple[np.ndarray, np.ndarray]:
        """``(g . dx_ss/dp, g . dx_ss/dx0)``: steady-state adjoint, else the adjoint
        of the integration over ``[0, T]``."""
        if ss.ift is not None:
            return ss.vjp(g)
        return self._vjp_run(ss.x0, ss.p, np.array([ss.T]), ss.x[None], g[None])

    def _simulate(self, sim: _Simulation, phi, mode: str | None) -> _Run:
        """Simulate one (pre-equilibration, simulation) pair; with ``mode ==
        "forward"`` also ``dx/dphi`` at its times (and at ``inf``)."""
        from ..adjoint import value_and_grad
        from ..api import solve

        P, n_p, n = phi.size, self.model.n_params, self.model.n_states
        forward = mode == "forward"
        base = dbase = pre = post = None
        if sim.preeq is not None:
            pp, xp = self._initial(sim.preeq, phi)
            pre = self._steady_state(sim.preeq, pp, xp, None, mode)
            base = pre.x
            if forward:
                S_ss = self._ss_jacobian(pre)
                dbase = (S_ss[:, :n_p] @ sim.preeq.params.jacobian(P)
                         + S_ss[:, n_p:] @ self._initial_jacobian(sim.preeq, pp, P))
        p, x0 = self._initial(sim.sim, phi, base)
        nt = sim.times.size
        T1 = float(sim.times[-1]) if nt else 0.0
        dx0 = self._initial_jacobian(sim.sim, p, P, dbase) if forward else None
        dX = None
        if T1 <= 0.0:  # every finite measurement at t = 0
            X = np.repeat(x0[None], nt, axis=0)
            if forward:
                dX = np.repeat(dx0[None], nt, axis=0)
        elif forward:
            res = value_and_grad(self.model, sim.cost, x0, (0.0, T1), p, sensitivity="forward",
                                 **self._forward_kw())
            S = res.extra["S_rows"]                   # (T, n, n_p + n)
            X = res.extra["H_rows"]                   # the cost observes every state
            dX = (np.einsum("tij,jk->tik", S[:, :, :n_p], sim.sim.params.jacobian(P))
                  + np.einsum("tij,jk->tik", S[:, :, n_p:], dx0))
        else:
            sol = solve(self.model, x0, (0.0, T1), p, t_eval=sim.times, **self._solve_kw())
            if not sol.success:
                raise SolverError(f"simulation of condition `{sim.sim.id}` failed: {sol.message}")
            X = sol.y
        X = np.asarray(X, dtype=float).reshape(nt, n)
        if sim.steady:
            post = self._steady_state(sim.sim, p, x0, X[-1] if nt else None, mode)
            X = np.vstack([X, post.x[None]])
            if forward:
                S_ss = self._ss_jacobian(post)
                d_inf = S_ss[:, :n_p] @ sim.sim.params.jacobian(P) + S_ss[:, n_p:] @ dx0
                dX = np.concatenate([np.asarray(dX).reshape(nt, n, P), d_inf[None]])
        return _Run(X, p, x0, dX, pre, post)

    # --- adjoint (vector-Jacobian products) ------------------------------------

    def _vjp_run(self, x0, p, times, X, G):
        """``sum_t G[t] . dx(t)/dp`` and ``sum_t G[t] . dx(t)/dx0`` by one adjoint solve.

        The adjoint of ``value_and_grad`` differentiates least-squares data;
        with targets ``y_t = x(t) - s^2 G[t]`` and noise ``s`` the data term
        ``0.5 sum_t |(x(t) - y_t) / s|^2`` has the costate jumps ``(x(t) -
        y_t) / s^2 = G[t]``, so its gradient is the wanted product.  Any
        difference between `X` and the adjoint's own forward solution enters
        divided by ``s^2`` (``s = 1e3``); rounding of the targets costs a
        relative ``1e-16`` of ``G`` whatever ``s``.
        """
        from ..adjoint import value_and_grad
        from ..cost import LeastSquares

        if float(times[-1]) <= 0.0:
            return np.zeros(p.size), G.sum(axis=0)
        s = _VJP_SIGMA
        data = LeastSquares(times, X - G * s**2, sigma=s)
        # quad_error_control: with the quadratures dJ/dp outside the backward
        # error test (value_and_grad's default) the gradient of
        # Fujita_SciSignal2010 is off by orders of magnitude; with them in it
        # agrees with forward sensitivities to ~1e-8 at no measurable cost.
        res = value_and_grad(self.model, data, x0, (0.0, float(times[-1])), p, sensitivity="adjoint",
                             quad_error_control=True, **self._solve_kw())
        return res.grad_params, res.grad_y0

    def _vjp(self, sim: _Simulation, run: _Run, Gx, phi) -> np.ndarray:
        """``sum_t Gx[t] . dx(t)/dphi`` for one simulation, ``(P,)``."""
        P, nt = phi.size, sim.times.size
        if nt:
            gp, gy0 = self._vjp_run(run.x0, run.p, sim.times, run.X[:nt], Gx[:nt])
        else:
            gp, gy0 = np.zeros(run.p.size), np.zeros(run.x0.size)
        if sim.steady and Gx[nt].any():
            gp_ss, gy0_ss = self._ss_vjp(run.post, Gx[nt])
            gp, gy0 = gp + gp_ss, gy0 + gy0_ss
        g = gp @ sim.sim.params.jacobian(P)
        if sim.preeq is None:
            return g + gy0 @ self._initial_jacobian(sim.sim, run.p, P)
        over = sim.sim.overridden()
        if over.any():
            g += gy0[over] @ sim.sim.states.jacobian(P)[over]
        v = np.where(over, 0.0, gy0)
        pre = run.pre
        gpp, gyp = self._ss_vjp(pre, v)
        return g + gpp @ sim.preeq.params.jacobian(P) + gyp @ self._initial_jacobian(sim.preeq, pre.p, P)

    # --- objective ------------------------------------------------------------

    def _group_args(self, grp, runs, phi):
        """Arguments of a group's formulas, one array per argument (rows)."""
        X = np.stack([runs[s].X[k] for s, k in zip(grp.sim, grp.tidx)])
        Pv = np.stack([runs[s].p for s in grp.sim])
        O = grp.placeholders.values(phi).reshape(grp.rows.size, grp.n_placeholders)
        return [X[:, i] if kind == "x" else Pv[:, i] if kind == "p" else
                np.full(grp.rows.size, phi[i]) if kind == "phi" else O[:, i]
                for kind, i in grp.arg_kinds]

    def _formulas(self, grp, args):
        return [np.broadcast_to(np.asarray(v, dtype=float), grp.t.shape) for v in grp.fn(*args, grp.t)]

    def _evaluate(self, theta, mode: str | None):
        """``nllh`` and (``mode`` "forward" or "adjoint") its gradient in ``theta``."""
        phi, dphi = self._phi(theta)
        P, n, n_p = phi.size, self.model.n_states, self.model.n_params
        runs = [self._simulate(s, phi, mode) for s in self._sims]
        total = 0.0
        g = np.zeros(P)
        Gx = np.zeros((self._row_offsets[-1], n))          # dnllh/dx at every simulation time
        Gp = np.zeros((len(self._sims), n_p))               # direct dnllh/dp per simulation
        for grp in self._groups:
            out = self._formulas(grp, self._group_args(grp, runs, phi))
            ell, dl_dh, dl_ds = negative_log_likelihood(grp.m, out[0], out[1], grp.distribution,
                                                        grp.transformation)
            total += float(np.sum(ell))
            if mode is None:
                continue
            na = len(grp.arg_kinds)
            idx = grp.placeholders.idx.reshape(grp.rows.size, grp.n_placeholders)
            for a, (kind, i) in enumerate(grp.arg_kinds):
                c = dl_dh * out[2 + a] + dl_ds * out[2 + na + a]
                if kind == "x":
                    np.add.at(Gx, (self._row_offsets[grp.sim] + grp.tidx, i), c)
                elif kind == "p":
                    np.add.at(Gp, (grp.sim, i), c)
                elif kind == "phi":
                    g[i] += c.sum()
                else:
                    sel = idx[:, i] >= 0
                    np.add.at(g, idx[sel, i], c[sel])
        if mode is None:
            return total, None
        if not math.isfinite(total):  # sigma <= 0 or log of h <= 0 somewhere
            return total, np.full(self._est.size, np.nan)
        for c, (sim, run) in enumerate(zip(self._sims, runs)):
            G = Gx[self._row_offsets[c]:self._row_offsets[c + 1]]
            g += Gp[c] @ sim.sim.params.jacobian(P)
            if mode == "forward":
                g += np.einsum("ti,tik->k", G, run.dX)
            elif G.any():
                g += self._vjp(sim, run, G, phi)
        return total, g[self._est] * dphi

    # --- public ---------------------------------------------------------------

    def nllh(self, theta=None) -> float:
        """Negative log-likelihood ``sum_i ell(m_i, h_i, sigma_i)`` at ``theta``
        (estimated parameters, PEtab scale; default `nominal`).  ``inf`` where
        a noise parameter is not positive or a log-scale observable is not
        positive.

        Raises
        ------
        ValueError
            On a ``theta`` of the wrong shape or with non-finite values.
        SolverError
            When a simulation fails.
        """
        return self._evaluate(theta, None)[0]

    def llh(self, theta=None) -> float:
        """Log-likelihood, ``-nllh(theta)``."""
        return -self.nllh(theta)

    def nllh_and_grad(self, theta=None, sensitivity: str = "adjoint", fd_step: float = 1e-5):
        """Negative log-likelihood and its gradient ``d nllh / d theta`` (PEtab
        scale), shape ``(len(nominal),)``; a NaN gradient where the value is
        ``inf``.

        ``sensitivity``:

        - ``"forward"``: forward sensitivities ``dx/d[p, x0]`` at the
          measurement times, then the chain rule of the module docstring.
          Cost grows with ``n_states * (n_params + n_states)``.
        - ``"adjoint"`` (default): the same chain rule as vector-Jacobian
          products, one adjoint solve per simulation (and pre-equilibration);
          5-75x faster than forward on the shared benchmark problems, as
          accurate (see `_vjp_run`).
        - ``"fd"``: central differences ``(nllh(theta + h e_k) - nllh(theta -
          h e_k)) / 2h`` with ``h = fd_step`` (a reference only).
        """
        if sensitivity not in SENSITIVITIES:
            raise ValueError(f"`sensitivity` must be one of {list(SENSITIVITIES)}; got {sensitivity!r}")
        if sensitivity == "fd":
            theta0 = self.nominal if theta is None else np.asarray(theta, float)
            g = np.empty(theta0.size)
            for k in range(theta0.size):
                e = np.zeros_like(theta0)
                e[k] = fd_step
                g[k] = (self.nllh(theta0 + e) - self.nllh(theta0 - e)) / (2 * fd_step)
            return self.nllh(theta0), g
        return self._evaluate(theta, sensitivity)

    def simulate(self, theta=None) -> np.ndarray:
        """Simulated observables ``h_i``, shape ``(n_measurements,)``, in
        measurement-table order."""
        phi, _ = self._phi(theta)
        runs = [self._simulate(s, phi, None) for s in self._sims]
        out = np.empty(self.n_measurements)
        for grp in self._groups:
            out[grp.rows] = self._formulas(grp, self._group_args(grp, runs, phi))[0]
        return out

    def __repr__(self) -> str:
        return (f"PetabProblem({os.path.basename(self.path)!r}, states={self.model.n_states}, "
                f"estimated={len(self.parameter_ids)}, simulations={self.n_simulations}, "
                f"measurements={self.n_measurements})")


# --- helpers --------------------------------------------------------------------------


def _to_scale(x, scales):
    x = np.asarray(x, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(scales == "lin", x, np.where(scales == "log", np.log(x), np.log10(x)))


def _from_scale(x, scales):
    return np.where(scales == "lin", x, np.where(scales == "log", np.exp(x), 10.0 ** x))


def _text(value, default: str) -> str:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return default


def _count(placeholders, kind, oid) -> int:
    ks = sorted(int(name[len(kind):-len(oid) - 1]) for name in placeholders if name.startswith(kind))
    if ks and ks != list(range(1, len(ks) + 1)):
        raise ModelError(f"observable `{oid}`: {kind} placeholders must be numbered 1..K, got {ks}")
    return len(ks)


def _split(value) -> list:
    """Entries of an observableParameters / noiseParameters cell."""
    if value is None:
        return []
    if isinstance(value, float):
        return [] if math.isnan(value) else [value]
    if isinstance(value, (int, np.integer, np.floating)):
        return [float(value)]
    text = str(value).strip()
    return [e.strip() for e in text.split(";")] if text else []
