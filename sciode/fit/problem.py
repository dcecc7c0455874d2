"""A validated fitting problem: what is free, in which space, and within which bounds.

``FitProblem`` turns the user's arguments of ``sciode.fit`` into one picklable
object (it travels to executor and Dask workers as the model's SymPy
expressions and the data's arrays; each worker rebuilds the kernels from the
on-disk cache).  Every check happens here, before any solve.

The optimizer sees ``theta``, one entry per *free* quantity (a parameter not
in ``fixed``, or a fitted initial state of an experiment), in the optimizer's
space: ``theta = log(v)`` for the entries in ``log_params``, ``theta = v``
otherwise.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import sympy as sp

from ..cost import Cost, LeastSquares, as_cost
from ..errors import ModelError
from ..model import Model

#: Optimizer names: SciPy's ``least_squares`` methods and L-BFGS-B.
LEAST_SQUARES_METHODS = ("trf", "dogbox", "lm")
#: Where a least-squares fit takes its residual Jacobian: forward sensitivities
#: (one augmented solve), or the adjoint row by row (``adjoint_rows``: pays
#: when parameters outnumber residuals).
LS_SENSITIVITIES = ("forward", "adjoint")
SCALAR_METHODS = ("L-BFGS-B",)
_ALIASES = {"lbfgs": "L-BFGS-B", "l-bfgs-b": "L-BFGS-B", "lbfgsb": "L-BFGS-B"}


@dataclass
class Experiment:
    """One data set: its cost, initial state, time span and parameter overrides.

    ``y0_exprs[i]`` is the SymPy expression of ``y0[i]`` in the parameters, or
    None where ``y0_base[i]`` is a number.
    """

    cost: Any
    y0_base: np.ndarray
    y0_exprs: tuple
    t_span: tuple
    overrides: dict  # parameter index -> value used in this experiment
    n_residuals: int
    _y0_fns: Any = field(default=None, repr=False, compare=False)

    @property
    def symbolic(self) -> bool:
        return any(e is not None for e in self.y0_exprs)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_y0_fns"] = None  # lambdified functions do not pickle; rebuilt on demand
        return state

    def initial_state(self, model: Model, p: np.ndarray):
        """``y0`` at parameters ``p`` and ``dy0/dp`` (None when ``y0`` is numeric)."""
        if not self.symbolic:
            return self.y0_base.copy(), None
        if self._y0_fns is None:
            idx = [i for i, e in enumerate(self.y0_exprs) if e is not None]
            exprs = [self.y0_exprs[i] for i in idx]
            jac = sp.Matrix(exprs).jacobian(sp.Matrix(model.params))
            self._y0_fns = (idx, sp.lambdify(model.params, exprs, modules="numpy"),
                            sp.lambdify(model.params, jac, modules="numpy"))
        idx, f, df = self._y0_fns
        y0 = self.y0_base.copy()
        y0[idx] = np.asarray(f(*p), dtype=float)
        D = np.zeros((model.n_states, model.n_params))
        D[idx] = np.asarray(df(*p), dtype=float).reshape(len(idx), model.n_params)
        return y0, D


@dataclass
class FitProblem:
    """Everything a start of ``sciode.fit`` needs (see the module docstring).

    ``kinds[i]`` says what free entry ``i`` is: ``("param", j)`` for
    ``model.params[j]`` or ``("y0", k, s)`` for state ``s`` of experiment ``k``.
    ``lb``, ``ub`` are in natural units; ``is_log`` marks log-space entries.
    """

    model: Model
    experiments: list
    names: list
    kinds: list
    is_log: np.ndarray
    lb: np.ndarray
    ub: np.ndarray
    v0: np.ndarray
    base_params: np.ndarray
    method: str
    sensitivity: str
    least_squares: bool
    solve_options: dict
    optimizer_options: dict
    token: str = ""

    # --- spaces -------------------------------------------------------------

    @property
    def n_free(self) -> int:
        return len(self.names)

    @property
    def n_residuals(self) -> int:
        return sum(e.n_residuals for e in self.experiments)

    def to_theta(self, v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=float)
        with np.errstate(divide="ignore"):
            return np.where(self.is_log, np.log(np.where(self.is_log, v, 1.0)), v)

    def to_natural(self, theta: np.ndarray) -> np.ndarray:
        theta = np.asarray(theta, dtype=float)
        return np.where(self.is_log, np.exp(np.where(self.is_log, theta, 0.0)), theta)

    def dv_dtheta(self, theta: np.ndarray) -> np.ndarray:
        """Chain-rule factor per free entry: ``v`` for log entries, 1 otherwise."""
        return np.where(self.is_log, self.to_natural(theta), 1.0)

    @property
    def theta_bounds(self):
        return self.to_theta(self.lb), self.to_theta(self.ub)

    # --- assembling the model's inputs ----------------------------------------

    def params_full(self, v: np.ndarray) -> np.ndarray:
        p = self.base_params.copy()
        for i, kind in enumerate(self.kinds):
            if kind[0] == "param":
                p[kind[1]] = v[i]
        return p

    def experiment_inputs(self, k: int, v: np.ndarray, p: np.ndarray):
        """``(params, y0, dy0/dp)`` of experiment ``k`` at free values ``v``."""
        exp = self.experiments[k]
        pk = p.copy()
        for j, value in exp.overrides.items():
            pk[j] = value
        y0, D = exp.initial_state(self.model, pk)
        for i, kind in enumerate(self.kinds):
            if kind[0] == "y0" and kind[1] == k:
                y0[kind[2]] = v[i]
        return pk, y0, D

    def param_dict(self, p: np.ndarray) -> dict:
        return {s.name: float(x) for s, x in zip(self.model.params, p)}

    def fixing(self, i: int, value: float) -> FitProblem:
        """This problem with free entry ``i`` held at ``value`` (for profiles)."""
        kind = self.kinds[i]
        base = self.base_params.copy()
        experiments = list(self.experiments)
        if kind[0] == "param":
            base[kind[1]] = value
        else:
            k, s = kind[1], kind[2]
            y0 = experiments[k].y0_base.copy()
            y0[s] = value
            experiments[k] = replace(experiments[k], y0_base=y0, _y0_fns=None)
        keep = [j for j in range(self.n_free) if j != i]
        return replace(self, experiments=experiments, names=[self.names[j] for j in keep],
                       kinds=[self.kinds[j] for j in keep], is_log=self.is_log[keep],
                       lb=self.lb[keep], ub=self.ub[keep], v0=self.v0[keep], base_params=base,
                       token=f"{self.token}|{self.names[i]}={value!r}")


# --- building a FitProblem from the user's arguments ----------------------------------


def build(model, data, params0, y0, fit_y0, bounds, method, sensitivity, log_params, fixed,
          conditions, t_span, solve_options, optimizer_options) -> FitProblem:
    """Validate ``sciode.fit``'s arguments (no solve happens here)."""
    if not isinstance(model, Model):
        raise TypeError(f"`model` must be a sciode.Model, got {type(model).__name__}")
    costs, y0s = _experiments_list(data, y0)
    least_squares = all(_is_sum_of_squares(c) for c in costs)
    method = _method(method, least_squares)
    p0 = model.param_vector(params0)
    names_p = [s.name for s in model.params]
    fixed_idx = _fixed(model, fixed, p0)
    overrides = _conditions(model, conditions, len(costs))
    spans = _spans(t_span, costs)
    experiments = []
    for k, (cost, y0k, span, ov) in enumerate(zip(costs, y0s, spans, overrides)):
        experiments.append(_experiment(model, cost, y0k, span, ov, k, len(costs)))
    names, kinds, v0 = [], [], []
    for j, name in enumerate(names_p):
        if j not in fixed_idx:
            names.append(name)
            kinds.append(("param", j))
            v0.append(p0[j])
    for k, s in _fitted_states(model, fit_y0, experiments):
        names.append(_y0_name(model, k, s, len(experiments)))
        kinds.append(("y0", k, s))
        v0.append(experiments[k].y0_base[s])
    if not names:
        raise ModelError("nothing to fit: every parameter is in `fixed` and `fit_y0` is False")
    v0 = np.asarray(v0, dtype=float)
    is_log = _log_mask(model, log_params, names, fixed_idx)
    lb, ub = _bounds(bounds, names, is_log)
    _check_start(names, v0, lb, ub, is_log)
    if method == "lm" and (np.any(np.isfinite(lb)) or np.any(np.isfinite(ub))):
        raise ValueError("method='lm' does not support bounds; use method='trf'")
    if least_squares and method in LEAST_SQUARES_METHODS and sensitivity not in LS_SENSITIVITIES:
        raise ValueError(f"least-squares fits take the residual Jacobian from forward sensitivities "
                         f"or adjoint rows; pass sensitivity='forward' or 'adjoint' (got "
                         f"{sensitivity!r}), or method='L-BFGS-B' to fit on the gradient of "
                         f"sensitivity={sensitivity!r}")
    from ..adjoint import MODES

    if sensitivity not in MODES:
        raise ValueError(f"`sensitivity` must be one of {list(MODES)}; got {sensitivity!r}")
    base = p0.copy()
    return FitProblem(model, experiments, names, kinds, is_log, lb, ub, v0, base, method,
                      sensitivity, least_squares and method in LEAST_SQUARES_METHODS,
                      dict(solve_options), dict(optimizer_options),
                      token=uuid.uuid4().hex)


def _experiments_list(data, y0):
    if isinstance(data, (LeastSquares, Cost)):
        return [data], [y0]
    if not isinstance(data, Sequence) or isinstance(data, (str, bytes)):
        raise ModelError(f"`data` must be a sciode.LeastSquares, a sciode.Cost or a list of them "
                         f"(one per experiment), got {type(data).__name__}")
    costs = list(data)
    if not costs:
        raise ModelError("`data` is an empty list; give one LeastSquares (or Cost) per experiment")
    for k, c in enumerate(costs):
        if not isinstance(c, (LeastSquares, Cost)):
            raise ModelError(f"`data[{k}]` must be a sciode.LeastSquares or sciode.Cost, "
                             f"got {type(c).__name__}")
    if not isinstance(y0, Sequence) or len(y0) != len(costs) or not all(
            isinstance(v, (Sequence, np.ndarray, Mapping)) for v in y0):
        raise ModelError(f"`data` lists {len(costs)} experiments: pass `y0` as a list of "
                         f"{len(costs)} initial states, one per experiment")
    return costs, list(y0)


def _is_sum_of_squares(cost) -> bool:
    if isinstance(cost, LeastSquares):
        return True
    return cost.terminal == 0 and cost.running == 0 and len(cost.data) > 0


def _method(method, least_squares):
    name = _ALIASES.get(str(method).lower(), method)
    if name not in LEAST_SQUARES_METHODS + SCALAR_METHODS:
        raise ValueError(f"`method` must be one of {list(LEAST_SQUARES_METHODS + SCALAR_METHODS)}; "
                         f"got {method!r}")
    if not least_squares and name in LEAST_SQUARES_METHODS:
        # A general Cost has no residual vector: the scalar optimizer is the only choice.
        return "L-BFGS-B"
    return name


def _param_index(model, name, what):
    names = [s.name for s in model.params]
    key = name.name if isinstance(name, sp.Symbol) else name
    if not isinstance(key, str) or key not in names:
        raise ModelError(f"`{what}` names {name!r}, which is not a parameter of model "
                         f"{model.name!r}; parameters are {names}")
    return names.index(key)


def _fixed(model, fixed, p0) -> set:
    """Indices of fixed parameters; values given in a mapping overwrite ``p0``."""
    if fixed is None:
        return set()
    if isinstance(fixed, (str, sp.Symbol)):
        fixed = [fixed]
    idx = set()
    if isinstance(fixed, Mapping):
        for name, value in fixed.items():
            j = _param_index(model, name, "fixed")
            value = float(value)
            if not math.isfinite(value):
                raise ModelError(f"`fixed[{name!r}]` = {value} is not finite")
            p0[j] = value
            idx.add(j)
    else:
        for name in fixed:
            idx.add(_param_index(model, name, "fixed"))
    return idx


def _conditions(model, conditions, n_exp):
    if conditions is None:
        return [{} for _ in range(n_exp)]
    if not isinstance(conditions, Sequence) or len(conditions) != n_exp:
        raise ModelError(f"`conditions` must be a list of {n_exp} mappings (one per experiment, "
                         "parameter name -> value used in that experiment)")
    out = []
    for k, cond in enumerate(conditions):
        cond = cond or {}
        if not isinstance(cond, Mapping):
            raise ModelError(f"`conditions[{k}]` must be a mapping parameter name -> value")
        out.append({_param_index(model, n, f"conditions[{k}]"): float(v) for n, v in cond.items()})
    return out


def _spans(t_span, costs):
    if t_span is not None:
        spans = t_span if (isinstance(t_span, Sequence) and len(t_span) == len(costs)
                           and len(costs) > 1 and isinstance(t_span[0], (Sequence, np.ndarray))) \
            else [t_span] * len(costs)
        out = []
        for s in spans:
            try:
                t0, t1 = (float(v) for v in s)
            except (TypeError, ValueError):
                raise ValueError(f"`t_span` must be a pair (t0, t1) or one pair per experiment, "
                                 f"got {t_span!r}") from None
            out.append((t0, t1))
        return out
    out = []
    for k, c in enumerate(costs):
        terms = c.data if isinstance(c, Cost) else (c,)
        if not terms:
            raise ModelError(f"experiment {k} has no data; pass `t_span` to fit a cost without data")
        t_max = max(float(np.max(term.t_obs)) for term in terms)
        out.append((0.0, max(t_max, 0.0)))
    return out


def _experiment(model, cost, y0, span, overrides, k, n_exp) -> Experiment:
    where = f"experiment {k}: " if n_exp > 1 else ""
    try:
        as_cost(cost).check(model, span)
    except ModelError as exc:
        raise ModelError(f"{where}{exc}") from None
    terms = cost.data if isinstance(cost, Cost) else (cost,)
    n_res = int(sum(int(np.count_nonzero(term.observed)) for term in terms))
    if terms and n_res == 0:
        raise ModelError(f"{where}every observation in `data` is NaN (not observed); "
                         "there is nothing to fit")
    y0_base, exprs = _initial_state(model, y0, where)
    return Experiment(cost, y0_base, exprs, span, overrides, n_res)


def _initial_state(model, y0, where):
    items = None
    if isinstance(y0, Mapping):
        keys = {s.name: i for i, s in enumerate(model.states)}
        unknown = [n for n in y0 if (n.name if isinstance(n, sp.Symbol) else n) not in keys]
        if unknown or len(y0) != model.n_states:
            return model.state_vector(y0), (None,) * model.n_states  # raises the usual message
        items = [None] * model.n_states
        for n, v in y0.items():
            items[keys[n.name if isinstance(n, sp.Symbol) else n]] = v
    elif y0 is not None and not isinstance(y0, (str, bytes)):
        items = list(np.ravel(np.asarray(y0, dtype=object)))
    if items is None or not any(isinstance(v, sp.Basic) for v in items):
        return np.ascontiguousarray(model.state_vector(y0)), (None,) * model.n_states
    if len(items) != model.n_states:
        raise ModelError(f"{where}`y0` has {len(items)} entries but the model has {model.n_states} states")
    base = np.zeros(model.n_states)
    exprs = []
    for i, e in enumerate(items):
        if isinstance(e, sp.Basic):
            extra = e.free_symbols - set(model.params)
            if extra:
                raise ModelError(f"{where}`y0[{i}]` = {e} uses {sorted(map(str, extra))}, "
                                 "which are not parameters")
            if not e.free_symbols:
                base[i] = float(e)
                exprs.append(None)
            else:
                exprs.append(e)
        else:
            base[i] = float(e)
            if not math.isfinite(base[i]):
                raise ModelError(f"{where}`y0[{i}]` = {base[i]} is not finite")
            exprs.append(None)
    return base, tuple(exprs)


def _fitted_states(model, fit_y0, experiments):
    if fit_y0 is False or fit_y0 is None:
        return []
    states = [s.name for s in model.states]
    if fit_y0 is True:
        wanted = None
    else:
        items = [fit_y0] if isinstance(fit_y0, (str, sp.Symbol)) else list(fit_y0)
        wanted = []
        for n in items:
            key = n.name if isinstance(n, sp.Symbol) else n
            if key not in states:
                raise ModelError(f"`fit_y0` names {n!r}, which is not a state of model "
                                 f"{model.name!r}; states are {states}")
            wanted.append(states.index(key))
    out = []
    for k, exp in enumerate(experiments):
        for s in range(model.n_states):
            if wanted is not None and s not in wanted:
                continue
            if exp.y0_exprs[s] is not None:
                if wanted is not None:
                    raise ModelError(f"`fit_y0` names state {states[s]!r}, but its initial value is "
                                     f"the expression {exp.y0_exprs[s]} of the parameters")
                continue  # fit_y0=True fits the numeric entries; expressions follow their params
            out.append((k, s))
    return out


def _y0_name(model, k, s, n_exp):
    name = f"{model.states[s].name}(t0)"
    return name if n_exp == 1 else f"{name}[{k}]"


def _log_mask(model, log_params, names, fixed_idx):
    if isinstance(log_params, (str, sp.Symbol)):
        log_params = [log_params]
    mask = np.zeros(len(names), dtype=bool)
    for n in log_params or ():
        key = n.name if isinstance(n, sp.Symbol) else n
        if key in names:
            mask[names.index(key)] = True
            continue
        j = _param_index(model, n, "log_params")  # raises for a name that is nothing
        if j in fixed_idx:
            raise ModelError(f"`log_params` names {key!r}, which is also in `fixed`")
    return mask


def _bounds(bounds, names, is_log):
    n = len(names)
    lb, ub = np.full(n, -np.inf), np.full(n, np.inf)
    lb[is_log] = 0.0
    if bounds is None:
        return lb, ub
    if isinstance(bounds, Mapping):
        for key, pair in bounds.items():
            name = key.name if isinstance(key, sp.Symbol) else key
            if name not in names:
                raise ModelError(f"`bounds` names {key!r}, which is not a fitted quantity; "
                                 f"fitted are {names}")
            lo, hi = (float(v) for v in pair)
            i = names.index(name)
            lb[i], ub[i] = lo, hi
    else:
        try:
            lo, hi = bounds
            lb = np.array(np.broadcast_to(np.asarray(lo, dtype=float), (n,)))
            ub = np.array(np.broadcast_to(np.asarray(hi, dtype=float), (n,)))
        except (TypeError, ValueError):
            raise ValueError(f"`bounds` must be a mapping name -> (lo, hi) or a pair (lb, ub) of "
                             f"scalars or arrays of length {n} ordered as {names}") from None
    for i, name in enumerate(names):
        if np.isnan(lb[i]) or np.isnan(ub[i]) or not lb[i] < ub[i]:
            raise ValueError(f"`bounds` of `{name}` are [{lb[i]}, {ub[i]}]; need lo < hi")
        if is_log[i] and lb[i] < 0:
            raise ValueError(f"`{name}` is fitted in log space but its lower bound is {lb[i]} < 0")
    return lb, ub


def _check_start(names, v0, lb, ub, is_log):
    for i, name in enumerate(names):
        if not lb[i] <= v0[i] <= ub[i]:
            raise ValueError(f"the start value of `{name}` = {float(v0[i])!r} lies outside its bounds "
                             f"[{lb[i]}, {ub[i]}]; change `params0` (or `y0`) or `bounds`")
        if is_log[i] and not v0[i] > 0:
            raise ValueError(f"`{name}` is fitted in log space (`log_params`) but its start value "
                             f"is {float(v0[i])!r}; log-space parameters must start positive")
