"""Objective functionals: terminal, running and least-squares data terms.

The total cost of a trajectory is

    J = Phi(x(t1), p) + int_{t0}^{t1} L(t, x, p, w) dt + sum_k ell_k

with one ``ell_k`` per `LeastSquares` data term. Costs add with ``+`` (and
``sum``), so a regulariser and a data fit compose without a new class.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, final

import numpy as np
import sympy as sp

from .errors import ModelError
from .model import Model, _as_list, _to_expr, check_expression, check_free_symbols

__all__ = ["Cost", "LeastSquares", "as_cost"]


@final
class LeastSquares:
    """Weighted least-squares misfit between observables and data.

    ``value = 0.5 * sum_i sum_j ((h_j(x(t_i), p) - y_obs[i, j]) / sigma_j)**2``

    Parameters
    ----------
    t_obs : array_like, shape (n_obs,)
        Finite, non-decreasing observation times; repeated times (replicate
        measurements) are allowed.
    y_obs : array_like, shape (n_obs, n_observables) or (n_obs,)
        Data. NaN means "not observed": that entry is skipped in the sum
        (so rows may observe different subsets of the observables). A 1-D
        array is one observable. ``+-inf`` is rejected.
    observables : sequence of sympy.Expr, optional
        ``h_j(x, p)`` in states, params and t (not controls). Numbers are
        accepted. Default: every state, in order.
    sigma : float or array_like, shape (n_observables,), optional
        Positive finite noise scale per observable; default 1.

    Attributes
    ----------
    t_obs : numpy.ndarray, shape (n_obs,)
    y_obs : numpy.ndarray, shape (n_obs, n_observables)
        NaN where not observed.
    observed : numpy.ndarray of bool, shape (n_obs, n_observables)
        ``~isnan(y_obs)``.
    observables : tuple of sympy.Expr or None
        None means "every state"; use `resolved` to get the expressions.
    sigma : numpy.ndarray, shape (n_observables,)
    n_obs, n_observables : int

    All arrays are read-only float64 copies.

    Raises
    ------
    ModelError
        On malformed times, data, observables or sigma.
    """

    __slots__ = ("_t_obs", "_y_obs", "_observed", "_observables", "_sigma")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        raise TypeError("sciode.LeastSquares is final and cannot be subclassed")

    def __init__(
        self,
        t_obs: Any,
        y_obs: Any,
        observables: Sequence[sp.Expr] | None = None,
        sigma: Any = 1.0,
    ) -> None:
        self._t_obs = _t_obs(t_obs)
        self._y_obs = _y_obs(y_obs, len(self._t_obs))
        self._observed = ~np.isnan(self._y_obs)
        self._observed.setflags(write=False)
        self._observables = _observables(observables)
        n = self._y_obs.shape[1]
        if self._observables is not None and len(self._observables) != n:
            raise ModelError(
                f"{len(self._observables)} observables but `y_obs` has {n} columns; "
                "give one column per observable"
            )
        self._sigma = _sigma(sigma, n)

    # --- attributes -------------------------------------------------------

    @property
    def t_obs(self) -> np.ndarray:
        """Observation times, shape ``(n_obs,)``."""
        return self._t_obs

    @property
    def y_obs(self) -> np.ndarray:
        """Data, shape ``(n_obs, n_observables)``, NaN where not observed."""
        return self._y_obs

    @property
    def observed(self) -> np.ndarray:
        """Mask of observed entries, shape ``(n_obs, n_observables)``."""
        return self._observed

    @property
    def observables(self) -> tuple[sp.Expr, ...] | None:
        """Declared observables, or None for "every state"."""
        return self._observables

    @property
    def sigma(self) -> np.ndarray:
        """Noise scale per observable, shape ``(n_observables,)``."""
        return self._sigma

    @property
    def n_obs(self) -> int:
        """Number of observation times (rows of `y_obs`)."""
        return len(self._t_obs)

    @property
    def n_observables(self) -> int:
        """Number of observables (columns of `y_obs`)."""
        return self._y_obs.shape[1]

    # --- model-dependent checks --------------------------------------------

    def resolved(self, model: Model) -> tuple[sp.Expr, ...]:
        """Observable expressions for `model`.

        Parameters
        ----------
        model : Model

        Returns
        -------
        tuple of sympy.Expr, length n_observables
            The declared observables, or ``model.states`` when None.

        Raises
        ------
        ModelError
            If observables are None and `y_obs` does not have one column per
            state.
        """
        if self._observables is not None:
            return self._observables
        if self.n_observables != model.n_states:
            raise ModelError(
                f"`y_obs` has {self.n_observables} columns but model {model.name!r} has "
                f"{model.n_states} states; with `observables=None` every state is "
                "observed, so pass `observables` to observe fewer"
            )
        return tuple(model.states)

    def check(self, model: Model, t_span: Sequence[float] | None = None) -> None:
        """Check this data term against a model and, optionally, a time span.

        Parameters
        ----------
        model : Model
        t_span : (float, float), optional
            ``(t0, t1)``; every ``t_obs`` must lie in ``[min, max]`` of it.

        Raises
        ------
        ModelError
            If an observable uses a symbol outside states, params and t (a
            control included), the observable count does not match `y_obs`,
            or an observation time lies outside `t_span`; the first offender
            is named.
        """
        observables = self.resolved(model)
        if len(observables) != self.n_observables:
            raise ModelError(
                f"{len(observables)} observables but `y_obs` has {self.n_observables} columns"
            )
        allowed = {*model.states, *model.params, model.t}
        forbidden = {
            w: "observables may not depend on controls; observe states and params only"
            for w in model.controls
        }
        declared = {s.name: s for s in model.symbols}
        for j, h in enumerate(observables):
            label = f"observables[{j}]"
            check_expression(h, label)
            check_free_symbols(h, label, allowed, declared, forbidden)
        if t_span is not None:
            self.check_times(t_span)

    def check_times(self, t_span: Sequence[float]) -> None:
        """Raise ``ModelError`` naming the first ``t_obs`` outside ``t_span``."""
        lo, hi = _span(t_span)
        outside = np.flatnonzero((self._t_obs < lo) | (self._t_obs > hi))
        if outside.size:
            i = outside[0]
            raise ModelError(
                f"t_obs[{i}] = {float(self._t_obs[i])!r} lies outside t_span [{lo!r}, {hi!r}]; "
                "observations must fall inside the integration interval"
            )

    # --- numeric evaluation -------------------------------------------------

    def weighted_residuals(self, predictions: Any) -> np.ndarray:
        """``(h - y_obs) / sigma`` with unobserved entries set to 0.

        Parameters
        ----------
        predictions : array_like, shape (n_obs, n_observables)
            ``h_j(x(t_i), p)``.

        Returns
        -------
        numpy.ndarray, shape (n_obs, n_observables)
        """
        h = np.asarray(predictions, dtype=np.float64)
        if h.shape != self._y_obs.shape:
            raise ModelError(
                f"`predictions` has shape {h.shape}, expected {self._y_obs.shape}"
            )
        residuals = (h - np.where(self._observed, self._y_obs, 0.0)) / self._sigma
        return np.where(self._observed, residuals, 0.0)

    def value(self, predictions: Any) -> float:
        """The misfit ``0.5 * sum(weighted_residuals(predictions)**2)``.

        Parameters
        ----------
        predictions : array_like, shape (n_obs, n_observables)

        Returns
        -------
        float
        """
        r = self.weighted_residuals(predictions)
        return 0.5 * float(np.sum(r * r))

    # --- composition and identity ----------------------------------------

    def __add__(self, other: Any) -> Cost:
        return as_cost(self).__add__(other)

    def __radd__(self, other: Any) -> Cost:
        return as_cost(self).__radd__(other)

    def content_key(self) -> str:
        """Deterministic text identifying this data term.

        Returns
        -------
        str
            ``srepr`` of the observables plus a SHA-256 of the arrays' shapes
            and bytes (NaNs canonicalised, since NaN payloads can differ).
        """
        digest = hashlib.sha256()
        y = np.where(self._observed, self._y_obs, np.nan)
        for array in (self._t_obs, y, self._sigma):
            digest.update(repr(array.shape).encode())
            digest.update(np.ascontiguousarray(array, dtype="<f8").tobytes())
        observables = "None" if self._observables is None else sp.srepr(self._observables)
        return f"LeastSquares(observables={observables}, arrays={digest.hexdigest()})"

    def __repr__(self) -> str:
        observables = "states" if self._observables is None else _tuple_str(self._observables)
        return (
            f"LeastSquares(n_obs={self.n_obs}, observables={observables}, "
            f"sigma={self._sigma.tolist()})"
        )


@final
class Cost:
    """``J = Phi(x(t1), p) + int L(t, x, p, w) dt + sum(data)``.

    Parameters
    ----------
    terminal : sympy.Expr or float, optional
        ``Phi(x(t1), p)`` in states, params and t. None means 0.
    running : sympy.Expr or float, optional
        ``L(t, x, p, w)`` in states, params, controls and t. None means 0.
    data : LeastSquares or sequence of LeastSquares, optional
        Data misfit terms.

    Attributes
    ----------
    terminal, running : sympy.Expr
        ``sympy.Integer(0)`` when absent.
    data : tuple of LeastSquares

    Raises
    ------
    ModelError
        On a string or non-expression term, or a non-`LeastSquares` data
        entry. Checks against a model happen in `check`.

    Examples
    --------
    >>> import sympy as sp
    >>> x, v = sp.symbols("x v")
    >>> Cost(terminal=x**2) + Cost(running=v**2 / 10)
    Cost(terminal=x**2, running=v**2/10, data=0 terms)
    """

    __slots__ = ("_terminal", "_running", "_data")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        raise TypeError("sciode.Cost is final and cannot be subclassed")

    def __init__(
        self,
        terminal: sp.Expr | float | None = None,
        running: sp.Expr | float | None = None,
        data: LeastSquares | Sequence[LeastSquares] = (),
    ) -> None:
        self._terminal = _term(terminal, "terminal")
        self._running = _term(running, "running")
        items = [data] if isinstance(data, LeastSquares) else _as_list(data, "data")
        for i, item in enumerate(items):
            if not isinstance(item, LeastSquares):
                raise ModelError(
                    f"`data[{i}]` must be a sciode.LeastSquares, got {type(item).__name__}"
                )
        self._data = tuple(items)

    @property
    def terminal(self) -> sp.Expr:
        """Terminal cost ``Phi(x(t1), p)``."""
        return self._terminal

    @property
    def running(self) -> sp.Expr:
        """Running cost ``L(t, x, p, w)``."""
        return self._running

    @property
    def data(self) -> tuple[LeastSquares, ...]:
        """Least-squares data terms."""
        return self._data

    def check(self, model: Model, t_span: Sequence[float] | None = None) -> None:
        """Check every term against `model` (and `t_span` for data terms).

        Parameters
        ----------
        model : Model
        t_span : (float, float), optional

        Raises
        ------
        ModelError
            If `terminal` uses a symbol outside states, params and t (a
            control included: ``w(t1)`` is not part of the terminal cost),
            `running` one outside states, params, controls and t, either
            contains a non-finite constant, or a data term fails its check.
        """
        key = self.structure(model)
        if key not in _CHECKED:
            self._check_symbols(model)
            _CHECKED.add(key)
        if t_span is not None:
            self._each_term(lambda term: term.check_times(t_span))

    def _each_term(self, check) -> None:
        """``check(term)`` for every data term, its error prefixed with ``data[k]``."""
        for k, term in enumerate(self._data):
            try:
                check(term)
            except ModelError as exc:
                raise ModelError(f"data[{k}]: {exc}") from None

    def structure(self, model: Model) -> tuple:
        """Hashable key of what the symbolic checks and the generated kernels
        depend on: the model and the cost's expressions, not its data values."""
        return (model.content_key(), self._terminal, self._running,
                tuple((term.observables, term.n_observables) for term in self._data))

    def _check_symbols(self, model: Model) -> None:
        declared = {s.name: s for s in model.symbols}
        base = {*model.states, *model.params, model.t}
        forbidden = {
            w: "the terminal cost may not depend on controls; put control "
            "penalties in `running`"
            for w in model.controls
        }
        check_expression(self._terminal, "terminal cost")
        check_free_symbols(self._terminal, "terminal cost", base, declared, forbidden)
        check_expression(self._running, "running cost")
        check_free_symbols(self._running, "running cost", base | set(model.controls), declared)
        self._each_term(lambda term: term.check(model))

    def __add__(self, other: Any) -> Cost:
        if _is_zero_int(other):
            return self
        if isinstance(other, LeastSquares):
            other = as_cost(other)
        if not isinstance(other, Cost):
            return NotImplemented
        return Cost(
            terminal=self._terminal + other._terminal,
            running=self._running + other._running,
            data=self._data + other._data,
        )

    def __radd__(self, other: Any) -> Cost:
        # Only reached for 0 (the start value of `sum`) and LeastSquares on
        # the left, whose own __add__ handles Cost; keep data order left-first.
        if _is_zero_int(other):
            return self
        if isinstance(other, (Cost, LeastSquares)):
            return as_cost(other).__add__(self)
        return NotImplemented

    def content_key(self) -> str:
        """Deterministic text identifying this cost.

        Returns
        -------
        str
            ``srepr`` of `terminal` and `running` plus each data term's
            `LeastSquares.content_key`.
        """
        data = ", ".join(term.content_key() for term in self._data)
        return (
            f"sciode.Cost/1:terminal={sp.srepr(self._terminal)};"
            f"running={sp.srepr(self._running)};data=[{data}]"
        )

    def __repr__(self) -> str:
        return (
            f"Cost(terminal={self._terminal}, running={self._running}, "
            f"data={len(self._data)} terms)"
        )


def as_cost(obj: Cost | LeastSquares) -> Cost:
    """Return `obj` as a `Cost`.

    Parameters
    ----------
    obj : Cost or LeastSquares
        A data term becomes ``Cost(data=(obj,))``.

    Returns
    -------
    Cost

    Raises
    ------
    ModelError
        For any other type.
    """
    if isinstance(obj, Cost):
        return obj
    if isinstance(obj, LeastSquares):
        return Cost(data=(obj,))
    raise ModelError(
        f"expected a sciode.Cost or sciode.LeastSquares, got {type(obj).__name__}"
    )


# --- construction helpers ------------------------------------------------


def _is_zero_int(value: Any) -> bool:
    # Exactly the int 0 (what `sum` starts from); bools and 0.0 are not costs.
    return type(value) is int and value == 0


def _term(value: Any, what: str) -> sp.Expr:
    if value is None:
        return sp.Integer(0)
    return _to_expr(value, f"`{what}`", strings_hint="sympy expressions built from the model's symbols")


def _observables(value: Any) -> tuple[sp.Expr, ...] | None:
    if value is None:
        return None
    # A single expression is one observable; wrapping it is unambiguous.
    items = [value] if isinstance(value, sp.Expr) else _as_list(value, "observables")
    if not items:
        raise ModelError("`observables` is empty; pass None to observe every state")
    return tuple(
        _to_expr(h, f"`observables[{j}]`", strings_hint="sympy expressions")
        for j, h in enumerate(items)
    )


def _float_array(value: Any, what: str) -> np.ndarray:
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"`{what}` is not an array of numbers: {exc}") from None
    if raw.dtype.kind not in "iuf" and raw.dtype != object:
        raise ModelError(f"`{what}` must hold real numbers, got dtype {raw.dtype}")
    try:
        return np.array(raw, dtype=np.float64, order="C")
    except (TypeError, ValueError) as exc:
        raise ModelError(f"`{what}` has a value that is not a real number: {exc}") from None


def _frozen(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def _t_obs(value: Any) -> np.ndarray:
    t = _float_array(value, "t_obs")
    if t.ndim != 1 or t.size == 0:
        raise ModelError(f"`t_obs` must be 1-D and non-empty, got shape {t.shape}")
    bad = np.flatnonzero(~np.isfinite(t))
    if bad.size:
        raise ModelError(f"`t_obs[{bad[0]}]` = {t[bad[0]]} is not finite")
    down = np.flatnonzero(np.diff(t) < 0)
    if down.size:
        i = down[0]
        raise ModelError(
            f"`t_obs` must be non-decreasing: t_obs[{i}] = {float(t[i])!r} > t_obs[{i + 1}] = {float(t[i + 1])!r}"
        )
    return _frozen(t)


def _y_obs(value: Any, n_obs: int) -> np.ndarray:
    y = _float_array(value, "y_obs")
    if y.ndim == 1:
        y = y.reshape(-1, 1)
    if y.ndim != 2 or y.shape[1] == 0:
        raise ModelError(f"`y_obs` must be 2-D (n_obs, n_observables) or 1-D, got shape {y.shape}")
    if y.shape[0] != n_obs:
        raise ModelError(f"`y_obs` has {y.shape[0]} rows but `t_obs` has {n_obs} times")
    bad = np.argwhere(np.isinf(y))
    if bad.size:
        i, j = bad[0]
        raise ModelError(
            f"`y_obs[{i}, {j}]` = {y[i, j]}; infinite data is not allowed (use NaN for "
            "'not observed')"
        )
    return _frozen(y)


def _sigma(value: Any, n: int) -> np.ndarray:
    s = _float_array(value, "sigma")
    if s.ndim == 0:
        s = np.full(n, float(s))
    if s.shape != (n,):
        raise ModelError(f"`sigma` has shape {s.shape}, expected a scalar or ({n},)")
    bad = np.flatnonzero(~(np.isfinite(s) & (s > 0)))
    if bad.size:
        raise ModelError(f"`sigma[{bad[0]}]` = {s[bad[0]]}; sigma must be positive and finite")
    return _frozen(s)


#: Cost structures (``Cost.structure``) whose symbolic checks passed: the SymPy
#: traversal costs ~0.3 ms, and a fit calls ``value_and_grad`` once per iteration.
_CHECKED: set = set()


def _span(t_span: Any) -> tuple[float, float]:
    span = _float_array(t_span, "t_span")
    if span.shape != (2,) or not np.all(np.isfinite(span)):
        raise ModelError(f"`t_span` must be two finite numbers (t0, t1), got {t_span!r}")
    return float(span.min()), float(span.max())


def _tuple_str(exprs: Sequence[sp.Expr]) -> str:
    return "(" + ", ".join(str(e) for e in exprs) + ("," if len(exprs) == 1 else "") + ")"

