"""Declaration of an ODE model ``x' = f(t, x, p, w)`` as SymPy expressions.

`Model` is the entry point of sciode's data flow (``model.py, cost.py ->
symbolic/ -> codegen/ -> ...``): everything downstream may assume a `Model`
is internally consistent, so every check that can be done on the symbols is
done here, once, with a message that names the culprit.
"""

from __future__ import annotations

import keyword
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, final

import numpy as np
import sympy as sp
from sympy.core.function import AppliedUndef

from . import _parse, blocks
from .errors import ModelError

__all__ = ["Model"]

# Objects that have no place in an ODE right-hand side; codegen can't print
# them and the adjoint derivation can't differentiate through them.
_UNEVALUATED_CALCULUS = (sp.Derivative, sp.Integral)


@final
class Model:
    """An ODE system ``dx/dt = f(t, x, p, w)`` declared with SymPy.

    Parameters
    ----------
    states : sequence of sympy.Symbol or sympy.MatrixSymbol
        State variables ``x``.  A ``MatrixSymbol`` declares a block of
        states (see `sciode.blocks`): its entries take consecutive places in
        the state vector, row-major, as scalar symbols ``y[i]``/``y[i, j]``.
    rhs : sequence of sympy.Expr or real number, one per declared state
        ``rhs[i]`` is ``d states[i] / dt``; for a matrix state, a matrix
        expression of its shape (``W2 * (W1 * y + b1).applyfunc(tanh)``).
        Python and NumPy numbers are converted to SymPy; strings are
        rejected (use `Model.from_strings`).
    params : sequence of sympy.Symbol or sympy.MatrixSymbol, optional
        Constant parameters ``p``, in the order `param_vector` expects
        (a matrix's entries row-major).
    t : sympy.Symbol, optional
        Time symbol; default ``sympy.Symbol("t")``.
    controls : sequence of sympy.Symbol, optional
        Time-varying inputs ``w(t)``, supplied at solve time by a
        `sciode.Controls`.
    name : str, optional
        Label used in messages and reprs; not part of `content_key`.

    Raises
    ------
    ModelError
        On an empty or non-Symbol declaration, a length mismatch, a duplicate
        symbol or name, an undeclared free symbol, a non-finite or complex
        constant, an undefined function such as ``u(t)``, or an unevaluated
        ``Derivative``/``Integral``. The message names the culprit.

    Examples
    --------
    >>> import sympy as sp
    >>> x, v, k, c = sp.symbols("x v k c")
    >>> Model(states=[x, v], rhs=[v, -k*x - c*v], params=[k, c], name="oscillator")
    Model(name='oscillator', states=(x, v), params=(k, c), controls=())
    """

    __slots__ = ("_states", "_rhs", "_params", "_controls", "_t", "_name", "_key", "_structure")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Classes are abstract or final (shared/STYLE.md); a subclass could
        # bypass validation that every downstream stage relies on.
        raise TypeError("sciode.Model is final and cannot be subclassed")

    def __init__(
        self,
        states: Sequence[sp.Symbol],
        rhs: Sequence[sp.Expr | float],
        params: Sequence[sp.Symbol] = (),
        t: sp.Symbol | None = None,
        controls: Sequence[sp.Symbol] = (),
        name: str = "model",
    ) -> None:
        if not isinstance(name, str):
            raise ModelError(f"`name` must be a str, got {type(name).__name__} {name!r}")
        self._name = name
        self._structure = None
        if t is None:
            t = sp.Symbol("t")
        if not isinstance(t, sp.Symbol):
            raise ModelError(
                f"`t` must be a sympy.Symbol, got {type(t).__name__} {t!r}"
            )
        self._t = t
        declared = (_as_list(states, "states"), _as_list(params, "params"), _as_list(controls, "controls"))
        if not declared[0]:
            raise ModelError(f"model {name!r} has no states; pass at least one state symbol")
        if blocks.is_structured_declaration(*declared):
            self._init_structured(declared, rhs)
            return
        self._states = _symbol_tuple(states, "states")
        self._params = _symbol_tuple(params, "params")
        self._controls = _symbol_tuple(controls, "controls")
        _check_unique_names(self._states, self._params, self._controls, self._t)
        self._rhs = self._convert_rhs(rhs)
        for i, expr in enumerate(self._rhs):
            self._check_rhs_entry(i, expr)

    def _init_structured(self, declared, rhs) -> None:
        """Declarations with matrix blocks: flatten them, check the matrix rhs."""
        t = self._t
        _check_unique_names(*declared, t)
        (self._states, sb), (self._params, pb), (self._controls, cb) = (
            blocks.flatten_symbols(items, what) for items, what in zip(declared, ("states", "params", "controls")))
        _check_unique_names(self._states, self._params, self._controls, t)
        structured_rhs = blocks.check_rhs_shapes(sb, _as_list(rhs, "rhs"))
        allowed = {*declared[0], *declared[1], *declared[2], t}
        by_name = {s.name: s for s in allowed}
        for k, expr in enumerate(structured_rhs):
            label = f"rhs[{k}] (d {sb[k].symbol}/dt)"
            check_expression(expr, label)
            check_free_symbols(expr, label, allowed, by_name)
        self._structure = blocks.Structure(sb, pb, cb, structured_rhs, blocks.element_map(sb, pb, cb))
        self._rhs = None

    # --- construction helpers --------------------------------------------

    @classmethod
    def from_strings(
        cls,
        states: Sequence[str],
        rhs: Sequence[str | float],
        params: Sequence[str] = (),
        controls: Sequence[str] = (),
        t: str = "t",
        name: str = "model",
    ) -> Model:
        """Build a model from names and right-hand-side strings, without eval.

        Parameters
        ----------
        states, params, controls : sequence of str
            Names; each must be a Python identifier, not a keyword, and not
            start with ``_``. Plain ``sympy.Symbol(name)`` objects are
            created, so they compare equal to ``sympy.symbols(...)`` made by
            the caller.
        rhs : sequence of str or real number, length n_states
            Arithmetic in Python syntax, parsed by a whitelist parser (see
            `sciode._parse.parse_expression` for what is accepted).
        t : str, optional
            Name of the time symbol, default ``"t"``.
        name : str, optional
            Label of the model.

        Returns
        -------
        Model

        Raises
        ------
        ModelError
            On a bad name or an expression the parser refuses; the message
            says which ``rhs`` entry.
        """
        state_syms = _symbols_from_names(states, "states")
        param_syms = _symbols_from_names(params, "params")
        control_syms = _symbols_from_names(controls, "controls")
        (t_sym,) = _symbols_from_names([t], "t")
        # Before parsing: a clash would otherwise surface as a confusing
        # "unknown name" from the parser's collapsed symbol table.
        _check_unique_names(state_syms, param_syms, control_syms, t_sym)
        table = {str(s): s for s in (*state_syms, *param_syms, *control_syms, t_sym)}
        rhs_items = _as_list(rhs, "rhs")
        parsed = []
        for i, entry in enumerate(rhs_items):
            if isinstance(entry, str):
                label = _rhs_label(i, state_syms)
                try:
                    entry = _parse.parse_expression(entry, table)
                except ModelError as exc:
                    raise ModelError(f"{label}: {exc}") from None
            parsed.append(entry)
        return cls(
            states=state_syms,
            rhs=parsed,
            params=param_syms,
            t=t_sym,
            controls=control_syms,
            name=name,
        )

    def _convert_rhs(self, rhs: Any) -> tuple[sp.Expr, ...]:
        items = _as_list(rhs, "rhs")
        if len(items) != len(self._states):
            raise ModelError(
                f"model {self._name!r} has {len(self._states)} states but "
                f"{len(items)} rhs entries; give one rhs expression per state"
            )
        return tuple(
            _to_expr(entry, _rhs_label(i, self._states), strings_hint="Model.from_strings")
            for i, entry in enumerate(items)
        )

    def _check_rhs_entry(self, i: int, expr: sp.Expr) -> None:
        label = _rhs_label(i, self._states)
        check_expression(expr, label)
        allowed = set(self.symbols)
        check_free_symbols(expr, label, allowed, self._declared_by_name())

    def _declared_by_name(self) -> dict[str, sp.Symbol]:
        return {s.name: s for s in self.symbols}

    # --- read-only attributes -------------------------------------------

    @property
    def states(self) -> tuple[sp.Symbol, ...]:
        """State symbols, ``(n_states,)``."""
        return self._states

    @property
    def rhs(self) -> tuple[sp.Expr, ...]:
        """Right-hand side, ``rhs[i] = d states[i] / dt`` (scalar, one per flat state).

        For a model with matrix blocks this is their scalar expansion, built
        on first access; code generation works from `structure` instead.
        """
        if self._rhs is None:
            self._rhs = blocks.expand(self._structure)
        return self._rhs

    @property
    def structure(self) -> blocks.Structure | None:
        """The matrix form (`sciode.blocks.Structure`), or None for a scalar declaration."""
        return self._structure

    def flat(self, expr: Any) -> sp.Expr:
        """``expr`` with matrix entries ``M[i, j]`` replaced by the flat symbols of
        `states`/`params`/`controls` (what costs and observables are written in).

        >>> import sympy as sp
        >>> y = sp.MatrixSymbol("y", 2, 1)
        >>> m = Model(states=[y], rhs=[-y])
        >>> m.flat(y[0, 0] ** 2)
        y[0]**2
        """
        if self._structure is None:
            return sp.sympify(expr)
        return self._structure.flat(expr)

    @property
    def params(self) -> tuple[sp.Symbol, ...]:
        """Parameter symbols, ``(n_params,)``."""
        return self._params

    @property
    def controls(self) -> tuple[sp.Symbol, ...]:
        """Control symbols, ``(n_controls,)``."""
        return self._controls

    @property
    def t(self) -> sp.Symbol:
        """Time symbol."""
        return self._t

    @property
    def name(self) -> str:
        """Label of the model."""
        return self._name

    @property
    def n_states(self) -> int:
        """Number of states."""
        return len(self._states)

    @property
    def n_params(self) -> int:
        """Number of parameters."""
        return len(self._params)

    @property
    def n_controls(self) -> int:
        """Number of controls."""
        return len(self._controls)

    @property
    def symbols(self) -> tuple[sp.Symbol, ...]:
        """Every declared symbol: states, params, controls, then t."""
        return (*self._states, *self._params, *self._controls, self._t)

    # --- identity ---------------------------------------------------------

    def content_key(self) -> str:
        """Deterministic text of everything that determines generated code.

        Returns
        -------
        str
            ``srepr`` of states, params, controls, t and rhs. Stable across
            processes (SymPy orders ``Add``/``Mul`` arguments canonically, not
            by hash), so a hash of it can name an on-disk kernel cache. The
            `name` is left out: renaming a model must not recompile it.
        """
        # Memoised: a model is immutable, and srepr of a large model costs
        # milliseconds on every solve otherwise.
        key = getattr(self, "_key", None)
        if key is None:
            if self._structure is not None:
                st = self._structure
                parts = tuple(tuple(b.symbol for b in g) for g in (st.states, st.params, st.controls))
                key = self._key = "sciode.Model/blocks/1:" + sp.srepr((*parts, self._t, st.rhs))
                return key
            parts = (self._states, self._params, self._controls, self._t, self._rhs)
            key = self._key = "sciode.Model/1:" + sp.srepr(parts)
        return key

    def __repr__(self) -> str:
        if self._structure is not None:
            st = self._structure
            shown = [", ".join(f"{b.symbol}{'' if not b.is_matrix else f' ({b.shape[0]}x{b.shape[1]})'}"
                               for b in g) for g in (st.states, st.params, st.controls)]
            return f"Model(name={self._name!r}, states=({shown[0]}), params=({shown[1]}), controls=({shown[2]}))"
        return (
            f"Model(name={self._name!r}, states={_tuple_str(self._states)}, "
            f"params={_tuple_str(self._params)}, controls={_tuple_str(self._controls)})"
        )

    # --- numeric inputs -------------------------------------------------

    def param_vector(self, params: Any) -> np.ndarray:
        """Validate parameter values and order them as `params`.

        Parameters
        ----------
        params : None, sequence of float, or mapping
            ``None`` only when the model has no parameters; a sequence of
            length n_params ordered as `Model.params`; or a mapping from
            Symbol or name to value covering every parameter exactly once.

        Returns
        -------
        numpy.ndarray
            Fresh float64 array, shape ``(n_params,)``.

        Raises
        ------
        ModelError
            On a wrong length, an unknown, missing or repeated key, or a
            non-real or non-finite value; the message names them.
        """
        if params is None:
            if self._params:
                raise ModelError(
                    f"model {self._name!r} has params {_names(self._params)}; "
                    "pass `params` as a sequence or a mapping"
                )
            return np.zeros(0, dtype=np.float64)
        if self._structure is not None and isinstance(params, Mapping):
            params = _expand_blocks(params, self._structure.params, "params")
        return _numeric_vector(params, self._params, "params")

    def state_vector(self, y0: Any) -> np.ndarray:
        """Validate an initial state and order it as `states`.

        Parameters
        ----------
        y0 : sequence of float or mapping
            Length n_states ordered as `Model.states`, or a mapping from
            Symbol or name to value covering every state exactly once.

        Returns
        -------
        numpy.ndarray
            Fresh float64 array, shape ``(n_states,)``.

        Raises
        ------
        ModelError
            On a wrong length, bad keys, or a non-real or non-finite value.
        """
        if y0 is None:
            raise ModelError(
                f"`y0` is required: one value per state {_names(self._states)}"
            )
        if self._structure is not None and isinstance(y0, Mapping):
            y0 = _expand_blocks(y0, self._structure.states, "y0")
        return _numeric_vector(y0, self._states, "y0")


# --- validation helpers shared with cost.py -----------------------------------


def check_expression(expr: sp.Expr, label: str) -> None:
    """Reject constructs that cannot be turned into finite real kernels.

    Parameters
    ----------
    expr : sympy.Expr
        Expression to check.
    label : str
        Where it came from, e.g. ``"rhs[1] (d v/dt)"``, for the message.

    Raises
    ------
    ModelError
        If `expr` contains a non-finite constant (``zoo``, ``nan``, ``oo``,
        ``-oo``, or a Float that overflows float64), the imaginary unit, an
        undefined applied function such as ``u(t)``, or an unevaluated
        ``Derivative``/``Integral``.
    """
    for atom in expr.atoms(sp.Float):
        # Test via float(): a SymPy Float has an unbounded exponent, so
        # 1e308*1e308 stays "finite" in SymPy but is inf in a kernel. Don't
        # print the atom: str() of a huge-exponent Float can take minutes.
        if not math.isfinite(float(atom)):
            raise ModelError(
                f"{label} contains a float constant that is not finite in float64"
            )
    for bad in (sp.zoo, sp.nan, sp.oo, -sp.oo):
        if expr.has(bad):
            raise ModelError(
                f"{label} contains the non-finite constant `{bad}`: {expr}; "
                "check for a division by zero or log(0)"
            )
    if expr.has(sp.I):
        raise ModelError(
            f"{label} contains the imaginary unit `I`: {expr}; sciode models are real"
        )
    undefined = sorted(expr.atoms(AppliedUndef), key=str)
    if undefined:
        raise ModelError(
            f"{label} uses the undefined function `{undefined[0]}`; time-varying "
            "inputs must be declared as `controls` symbols (e.g. "
            "`w = sympy.Symbol('w')`, `controls=[w]`) and supplied with "
            "`sciode.Controls` at solve time"
        )
    calculus = sorted(expr.atoms(*_UNEVALUATED_CALCULUS), key=str)
    if calculus:
        kind = type(calculus[0]).__name__
        raise ModelError(
            f"{label} contains an unevaluated {kind} `{calculus[0]}`; evaluate it "
            "(`.doit()`) or add a state for it"
        )


def check_free_symbols(
    expr: sp.Expr,
    label: str,
    allowed: set[sp.Symbol],
    declared: Mapping[str, sp.Symbol],
    forbidden: Mapping[sp.Symbol, str] | None = None,
) -> None:
    """Require ``expr.free_symbols`` to be a subset of `allowed`.

    Parameters
    ----------
    expr : sympy.Expr
    label : str
        Where `expr` came from, for the message.
    allowed : set of sympy.Symbol
    declared : mapping of str to sympy.Symbol
        Every declared symbol by name, used to explain a same-name symbol
        with different assumptions.
    forbidden : mapping of sympy.Symbol to str, optional
        Declared symbols not allowed here, with the reason to print.

    Raises
    ------
    ModelError
        Naming the first offending symbol (sorted by name, so the message
        is deterministic).
    """
    forbidden = forbidden or {}
    for symbol in sorted(expr.free_symbols - allowed, key=lambda s: s.name):
        if symbol in forbidden:
            raise ModelError(f"{label} uses `{symbol}`, but {forbidden[symbol]}")
        if isinstance(symbol, sp.MatrixSymbol):
            raise ModelError(
                f"{label} uses the matrix `{symbol}`, which is not declared here: a right-hand "
                "side may use the matrices declared as states, params or controls; costs and "
                f"observables use their flat entries (`model.flat(expr)` replaces `{symbol}[i, j]` by them)"
            )
        twin = declared.get(symbol.name)
        if twin is not None and twin != symbol:
            raise ModelError(
                f"{label} uses symbol `{symbol}` with assumptions "
                f"{symbol.assumptions0} that differ from the declared `{twin}` "
                f"({twin.assumptions0}); build expressions from the declared Symbol objects"
            )
        raise ModelError(
            f"{label} uses undeclared symbol `{symbol}`; declare it as a state, "
            "param or control"
        )


def _to_expr(value: Any, label: str, strings_hint: str) -> sp.Expr:
    """Convert a SymPy expression or real number, never a string."""
    if isinstance(value, str):
        raise ModelError(
            f"{label} is the string {value!r}; strings are not parsed here, "
            f"use `{strings_hint}` to parse them safely"
        )
    if isinstance(value, (bool, np.bool_)):
        raise ModelError(f"{label} is the bool {value!r}; expected an expression or number")
    if isinstance(value, sp.Expr):
        return value
    if isinstance(value, sp.Basic):
        raise ModelError(
            f"{label} is a {type(value).__name__} (`{value}`), not an arithmetic expression"
        )
    if isinstance(value, numbers.Integral):
        return sp.Integer(int(value))
    if isinstance(value, numbers.Real):
        as_float = float(value)
        if not math.isfinite(as_float):
            raise ModelError(f"{label} is the non-finite number {as_float!r}")
        return sp.Float(as_float)
    if isinstance(value, numbers.Complex):
        raise ModelError(f"{label} is the complex number {value!r}; sciode models are real")
    raise ModelError(
        f"{label} is a {type(value).__name__} ({value!r}); expected a SymPy "
        "expression or a real number"
    )


def _as_list(value: Any, what: str) -> list[Any]:
    """Turn a sequence argument into a list, refusing lone strings/symbols."""
    if isinstance(value, (str, bytes)):
        raise ModelError(
            f"`{what}` must be a sequence, got the string {value!r}; wrap it in a list"
        )
    if isinstance(value, sp.Basic) and not isinstance(value, sp.MatrixBase):
        raise ModelError(
            f"`{what}` must be a sequence, got the single {type(value).__name__} "
            f"`{value}`; wrap it in a list"
        )
    if isinstance(value, Mapping) or not isinstance(value, Iterable):
        raise ModelError(
            f"`{what}` must be a sequence, got {type(value).__name__} {value!r}"
        )
    return list(value)


def _symbol_tuple(value: Any, what: str) -> tuple[sp.Symbol, ...]:
    items = _as_list(value, what)
    for i, item in enumerate(items):
        if not isinstance(item, sp.Symbol):
            raise ModelError(
                f"`{what}[{i}]` must be a sympy.Symbol, got {type(item).__name__} "
                f"{item!r}" + ("; use `Model.from_strings` for names" if isinstance(item, str) else "")
            )
    return tuple(items)


def _symbols_from_names(names: Any, what: str) -> tuple[sp.Symbol, ...]:
    items = _as_list(names, what)
    for i, name in enumerate(items):
        where = f"`{what}[{i}]`" if what != "t" else "`t`"
        if not isinstance(name, str):
            raise ModelError(f"{where} must be a name (str), got {type(name).__name__} {name!r}")
        if not name.isidentifier() or keyword.iskeyword(name):
            raise ModelError(
                f"{where} = {name!r} is not a valid name; use a Python identifier "
                "that is not a keyword"
            )
        if name.startswith("_"):
            # Leading underscores are reserved for generated code (CSE
            # temporaries) and exclude dunder tricks in parsed strings.
            raise ModelError(f"{where} = {name!r} must not start with `_`")
    return tuple(sp.Symbol(name) for name in items)


def _check_unique_names(
    states: Sequence[sp.Symbol],
    params: Sequence[sp.Symbol],
    controls: Sequence[sp.Symbol],
    t: sp.Symbol,
) -> None:
    seen: dict[str, str] = {}
    entries = [
        *((s, f"state `states[{i}]`") for i, s in enumerate(states)),
        *((s, f"param `params[{i}]`") for i, s in enumerate(params)),
        *((s, f"control `controls[{i}]`") for i, s in enumerate(controls)),
        (t, "time symbol `t`"),
    ]
    # Compare names, not Symbol objects: Symbol("k") and
    # Symbol("k", positive=True) are unequal to SymPy but would print to
    # the same identifier in generated code and confuse every message.
    for symbol, role in entries:
        key = symbol.name
        if key in seen:
            raise ModelError(
                f"duplicate name `{key}`: used by {seen[key]} and by {role}; "
                "every state, param, control and t needs its own name"
            )
        seen[key] = role


def _rhs_label(i: int, states: Sequence[sp.Symbol]) -> str:
    return f"rhs[{i}] (d {states[i]}/dt)" if i < len(states) else f"rhs[{i}]"


def _names(symbols: Sequence[sp.Symbol]) -> str:
    return "(" + ", ".join(f"`{s}`" for s in symbols) + ")"


def _tuple_str(symbols: Sequence[sp.Symbol]) -> str:
    return "(" + ", ".join(str(s) for s in symbols) + ("," if len(symbols) == 1 else "") + ")"


def _numeric_vector(values: Any, symbols: tuple[sp.Symbol, ...], what: str) -> np.ndarray:
    """Validate numbers given as a sequence or a mapping keyed by symbols."""
    if isinstance(values, Mapping):
        values = _order_mapping(values, symbols, what)
    elif isinstance(values, (str, bytes)):
        raise ModelError(f"`{what}` must be numbers, got the string {values!r}")
    try:
        raw = np.asarray(values)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"`{what}` is not an array of numbers: {exc}") from None
    if raw.dtype.kind == "c":
        raise ModelError(f"`{what}` has complex values; sciode is real-valued")
    if raw.dtype.kind not in "iuf" and raw.dtype != object:
        raise ModelError(f"`{what}` must be real numbers, got dtype {raw.dtype}")
    try:
        array = np.array(raw, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"`{what}` has a value that is not a real number: {exc}") from None
    if array.shape != (len(symbols),):
        raise ModelError(
            f"`{what}` has shape {array.shape}, expected ({len(symbols)},): one "
            f"value per {_names(symbols)}"
        )
    if not np.isfinite(array).all():
        bad = [f"`{s}` = {v}" for s, v in zip(symbols, array) if not math.isfinite(v)]
        raise ModelError(f"`{what}` has non-finite values: {', '.join(bad)}")
    return array


def _expand_blocks(values: Mapping[Any, Any], declared, what: str) -> dict:
    """A mapping keyed by matrix blocks (``{W1: array of W1's shape}``, or by name)
    expanded to one key per flat entry; other keys pass through."""
    by_key = {}
    for b in declared:
        if b.is_matrix:
            by_key[b.symbol] = by_key[b.symbol.name] = b
    out = {}
    for key, value in values.items():
        b = by_key.get(key) if isinstance(key, (str, sp.MatrixSymbol)) else None
        if b is None:
            out[key] = value
            continue
        array = np.asarray(value)
        if array.shape not in (b.shape, (b.size,)):
            raise ModelError(f"`{what}` gives `{b.symbol}` the shape {array.shape}, expected {b.shape}")
        out.update(zip(b.entries, array.reshape(-1)))
    return out


def _order_mapping(values: Mapping[Any, Any], symbols: tuple[sp.Symbol, ...], what: str) -> list[Any]:
    by_name = {s.name: s for s in symbols}
    ordered: dict[sp.Symbol, Any] = {}
    unknown = []
    for key, value in values.items():
        symbol = key if isinstance(key, sp.Symbol) and key in symbols else None
        if symbol is None and isinstance(key, str):
            symbol = by_name.get(key)
        if symbol is None:
            unknown.append(repr(key) if isinstance(key, str) else f"`{key}`")
            continue
        if symbol in ordered:
            raise ModelError(f"`{what}` gives `{symbol}` twice (as a Symbol and as a name)")
        ordered[symbol] = value
    if unknown:
        raise ModelError(
            f"`{what}` has unknown keys {', '.join(unknown)}; expected keys from {_names(symbols)}"
        )
    missing = [s for s in symbols if s not in ordered]
    if missing:
        raise ModelError(f"`{what}` is missing values for {_names(missing)}")
    return [ordered[s] for s in symbols]
