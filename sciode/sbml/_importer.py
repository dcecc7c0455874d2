"""SBML core (Levels 2 and 3) to a `sciode.Model` plus its initial state.

The state vector holds, for each species, the value its identifier has in
SBML math: the concentration ``[S] = n_S / V`` when ``hasOnlySubstanceUnits``
is false (the default), the amount ``n_S`` when it is true.  Reactions give
rates in substance per time, so with stoichiometries ``nu_Sr`` (reactants
negative) and an optional conversion factor ``c_S``

    d[S]/dt = (1 / V) * sum_r c_S nu_Sr v_r     (concentration species)
    d n_S/dt = sum_r c_S nu_Sr v_r               (amount species)

for a constant compartment size ``V``.  Rate rules give ``d x / dt``
directly; parameters and compartments with rate rules become states too.
Assignment rules and reaction identifiers used in math are substituted
symbolically (in dependency order, cycles rejected); function definitions
are inlined.  Constant parameters, compartment sizes and the local
parameters of kinetic laws (renamed ``<reaction>_<parameter>``) are the
model's parameters, with their SBML values in `SBMLModel.param_values`.
Initial assignments define the initial state as expressions of those
parameters (`SBMLModel.initial_state`); a parameter or compartment defined
by an initial assignment (and no rule) is replaced by its expression.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import sympy as sp

from ..errors import ModelError
from ..model import Model
from ._mathml import MathConverter

__all__ = ["SBMLModel", "import_sbml", "load"]


@dataclass(frozen=True)
class SBMLModel:
    """An imported SBML model: the ODE, its initial state and parameter values.

    Attributes
    ----------
    model : sciode.Model
        ``dx/dt = f(t, x, p)``; ``model.params`` are the SBML constants.
    initial_state : tuple of sympy.Expr, length n_states
        ``x(t0) = x0(p)`` as expressions of ``model.params`` (numbers when
        the model has no initial assignments).  Pass it, or `y0`, as ``y0``
        to ``sciode.solve`` / ``value_and_grad``.
    param_values : dict of str to float
        SBML value of each model parameter by name (NaN when the file sets
        none: it must then be supplied by the caller).
    expressions : dict of str to sympy.Expr
        Every SBML identifier usable in formulas (species, compartments,
        parameters, assignment-rule targets, reactions) as an expression in
        states, params and time, e.g. for observables.
    state_kinds : dict of str to str
        For each state name: ``"concentration"``, ``"amount"`` (species), or
        ``"parameter"``/``"compartment"`` (rate-rule targets).
    source : str
        Path (or description) of the SBML document.
    """

    model: Model
    initial_state: tuple
    param_values: dict
    expressions: dict
    state_kinds: dict
    source: str = ""
    _y0_fn: object = field(default=None, repr=False, compare=False)

    def param_vector(self, overrides: Mapping[str, float] | None = None) -> np.ndarray:
        """Parameter values ordered as ``model.params``: the SBML values, with
        `overrides` (name -> value) applied.

        Raises
        ------
        ModelError
            On an unknown name in `overrides` or a parameter left without a
            value (NaN).
        """
        values = dict(self.param_values)
        for name, value in (overrides or {}).items():
            if name not in values:
                raise ModelError(f"`{name}` is not a parameter of SBML model {self.model.name!r}; "
                                 f"parameters: {sorted(values)}")
            values[name] = float(value)
        missing = [k for k, v in values.items() if not math.isfinite(v)]
        if missing:
            raise ModelError(f"SBML parameter(s) {missing} have no value; pass them in `overrides`")
        return np.array([values[p.name] for p in self.model.params], dtype=float)

    def y0(self, params=None) -> np.ndarray:
        """Numeric initial state ``x0(p)`` (default: `param_vector()`)."""
        p = self.param_vector() if params is None else np.asarray(params, dtype=float)
        fn = self._y0_fn
        if fn is None:
            fn = sp.lambdify([list(self.model.params)], list(self.initial_state), "numpy",
                             dummify=True)
            object.__setattr__(self, "_y0_fn", fn)
        return np.array(fn(p), dtype=float).reshape(self.model.n_states)


def load(path) -> Model:
    """Read an SBML file and return its ODE as a `sciode.Model`.

    ``dx/dt = f(t, x, p)`` with one state per species (concentration, or
    amount when ``hasOnlySubstanceUnits``) and per rate-rule parameter or
    compartment; see the module docstring for the equations.  The initial
    state (which may depend on the parameters through initial assignments)
    and the SBML parameter values are on the `SBMLModel` that
    `import_sbml` returns; ``load(path)`` is ``import_sbml(path).model``.

    Raises
    ------
    ModelError
        On an invalid document, or one using what sciode does not simulate:
        events, algebraic rules, fast reactions, ``delay``, required SBML
        packages, variable stoichiometries, concentration species in a
        compartment of varying size.  The message names the element and id.
    ImportError
        When python-libsbml is not installed (``pip install sciode[sbml]``).
    """
    return import_sbml(path).model


def import_sbml(path) -> SBMLModel:
    """Read an SBML file (path, or a ``libsbml.SBMLDocument``) into an `SBMLModel`.

    See `load` for what is supported and raised.
    """
    from . import _require_libsbml

    libsbml = _require_libsbml()
    if isinstance(path, libsbml.SBMLDocument):
        doc, source = path, "<SBMLDocument>"
    else:
        source = os.fspath(path)
        if not os.path.isfile(source):
            raise FileNotFoundError(f"SBML file {source!r} does not exist")
        doc = libsbml.readSBMLFromFile(source)
    return _Importer(doc, source, libsbml).run()


# --- the importer ---------------------------------------------------------------


class _Importer:
    def __init__(self, doc, source: str, libsbml):
        self.L = libsbml
        self.doc = doc
        self.source = source
        self._check_document()
        self.m = doc.getModel()
        self.functions = {fd.getId(): fd.getMath() for fd in self.m.getListOfFunctionDefinitions()}

    # --- checks ------------------------------------------------------------

    def _check_document(self) -> None:
        L, doc = self.L, self.doc
        errors = [doc.getError(i) for i in range(doc.getNumErrors())
                  if doc.getError(i).getSeverity() >= L.LIBSBML_SEV_ERROR]
        if errors:
            lines = "; ".join(f"line {e.getLine()}: {e.getMessage().strip()}" for e in errors[:3])
            raise ModelError(f"SBML document {self.source!r} has {len(errors)} error(s): {lines}")
        if doc.getModel() is None:
            raise ModelError(f"SBML document {self.source!r} contains no model")
        declared = doc.getNamespaces()
        for i in range(doc.getNumPlugins() if doc.getLevel() >= 3 else 0):
            plugin = doc.getPlugin(i)
            # libsbml attaches internal plugins (l3v2extendedmath) to every
            # L3V2 document; only packages the file itself declares count.
            uri = plugin.getURI()
            if uri == doc.getURI() or declared is None or not declared.hasURI(uri):
                continue
            name = plugin.getPackageName()
            if doc.getPackageRequired(name):
                raise ModelError(f"SBML package `{name}` (required by {self.source!r}) is not supported; "
                                 "only SBML core is")

    def _check_unsupported(self) -> None:
        L, m = self.L, self.m
        for ev in m.getListOfEvents():
            raise ModelError(f"SBML event `{ev.getId() or ev.getMetaId() or '?'}` is not supported "
                             "(sciode integrates smooth ODEs; events are not implemented yet)")
        for rule in m.getListOfRules():
            if rule.isAlgebraic():
                raise ModelError(f"SBML algebraic rule `{rule.getId() or rule.getMetaId() or '?'}` "
                                 f"(`0 = {L.formulaToL3String(rule.getMath())}`) is not supported "
                                 "(it makes the model a DAE)")
        for r in m.getListOfReactions():
            if r.isSetFast() and r.getFast():
                raise ModelError(f"SBML fast reaction `{r.getId()}` is not supported "
                                 "(fast reactions need an algebraic equilibrium solve)")
            if not r.isSetKineticLaw() or r.getKineticLaw().getMath() is None:
                raise ModelError(f"SBML reaction `{r.getId()}` has no kinetic law")
            for ref in [*r.getListOfReactants(), *r.getListOfProducts()]:
                if hasattr(ref, "isSetStoichiometryMath") and ref.isSetStoichiometryMath():
                    raise ModelError(f"SBML reaction `{r.getId()}`: species reference to "
                                     f"`{ref.getSpecies()}` has stoichiometryMath, which is not supported")
        for c in m.getListOfConstraints():
            warnings.warn(f"SBML constraint `{c.getMetaId() or '?'}` is ignored (sciode does not "
                          "check constraints during integration)", stacklevel=4)

    # --- main -------------------------------------------------------------

    def run(self) -> SBMLModel:
        self._check_unsupported()
        self._collect_ids()
        self._collect_rules()
        self._convert_math()
        self._resolve()
        states, rhs, kinds = self._states_and_rhs()
        params = self._params()
        initial = self._initial_state(states)
        name = self.m.getId() or os.path.splitext(os.path.basename(self.source))[0] or "sbml"
        model = Model(states=states, rhs=rhs, params=params, t=self.t, name=name)
        for i, e in enumerate(initial):
            extra = e.free_symbols - set(params)
            if extra:
                raise ModelError(f"initial value of `{states[i]}` depends on {sorted(map(str, extra))}, "
                                 "which are not constant parameters")
        expressions = {k: self.dyn.get(v, v) for k, v in self.sym.items()
                       if k not in self.reactions}
        expressions.update({rid: self.dyn[self.sym[rid]] for rid in self.reactions})
        return SBMLModel(model, tuple(initial), dict(self.values), expressions, kinds, self.source)

    # --- identifiers ------------------------------------------------------

    def _collect_ids(self) -> None:
        m = self.m
        self.species = {s.getId(): s for s in m.getListOfSpecies()}
        self.compartments = {c.getId(): c for c in m.getListOfCompartments()}
        self.parameters = {p.getId(): p for p in m.getListOfParameters()}
        self.reactions = {r.getId(): r for r in m.getListOfReactions()}
        self.species_refs = {ref.getId() for r in m.getListOfReactions()
                             for ref in [*r.getListOfReactants(), *r.getListOfProducts()]
                             if ref.isSetId()}
        ids = [*self.species, *self.compartments, *self.parameters, *self.reactions]
        taken = set(ids) | self.species_refs
        name = "t"
        while name in taken:
            name = "time" if name == "t" else name + "_"
        self.t = sp.Symbol(name)
        self.sym = {i: sp.Symbol(i) for i in ids}
        # local parameters become global parameters named <reaction>_<id>
        self.locals: dict[str, dict[str, sp.Symbol]] = {}
        self.local_values: dict[sp.Symbol, float] = {}
        for rid, r in self.reactions.items():
            kl = r.getKineticLaw()
            table = {}
            lps = list(kl.getListOfLocalParameters()) if self.doc.getLevel() >= 3 else []
            lps += [p for p in kl.getListOfParameters() if p.getId() not in {q.getId() for q in lps}]
            for lp in lps:
                new = f"{rid}_{lp.getId()}"
                while new in taken:
                    new += "_"
                taken.add(new)
                s = sp.Symbol(new)
                table[lp.getId()] = s
                self.local_values[s] = lp.getValue() if lp.isSetValue() else math.nan
            self.locals[rid] = table

    def _collect_rules(self) -> None:
        self.rate_rules: dict[str, object] = {}
        self.assignment_rules: dict[str, object] = {}
        for rule in self.m.getListOfRules():
            var = self._rule_target(rule.getVariable(), "rule for")
            (self.rate_rules if rule.isRate() else self.assignment_rules)[var] = rule
        self.initial_assignments = {}
        for ia in self.m.getListOfInitialAssignments():
            self.initial_assignments[self._rule_target(ia.getSymbol(), "initial assignment to")] = ia

    def _rule_target(self, var: str, what: str) -> str:
        """``var`` if a rule or initial assignment may set it (a species, compartment
        or parameter), else a ``ModelError`` naming the SBML element."""
        if var in self.species_refs:
            raise ModelError(f"SBML {what} species reference `{var}` (a variable "
                             "stoichiometry) is not supported")
        if var not in self.sym or var in self.reactions:
            raise ModelError(f"SBML {what} `{var}`: no species, compartment or parameter has that id")
        return var

    # --- math ---------------------------------------------------------------

    def _converter(self, where: str, local: Mapping[str, sp.Symbol] | None = None) -> MathConverter:
        local = local or {}

        def resolve(name: str) -> sp.Expr:
            if name in local:
                return local[name]
            if name in self.sym:
                return self.sym[name]
            if name in self.species_refs:
                raise ModelError(f"{where}: species reference id `{name}` used in math "
                                 "(variable stoichiometry) is not supported")
            if name in self.functions:
                raise ModelError(f"{where}: function `{name}` used without arguments")
            raise ModelError(f"{where}: unknown identifier `{name}`")

        return MathConverter(resolve, self.t, self.functions, where)

    def _math(self, node, where, local=None) -> sp.Expr:
        expr = self._converter(where, local).convert(node)
        if not isinstance(expr, sp.Expr):
            raise ModelError(f"{where}: the math is a condition (`{expr}`), not a number")
        return expr

    def _convert_math(self) -> None:
        self.raw_rules = {v: self._math(r.getMath(), f"SBML {'rate' if r.isRate() else 'assignment'} "
                                                     f"rule for `{v}`")
                          for v, r in [*self.rate_rules.items(), *self.assignment_rules.items()]}
        self.raw_laws = {rid: self._math(r.getKineticLaw().getMath(), f"SBML kinetic law of reaction "
                                                                     f"`{rid}`", self.locals[rid])
                         for rid, r in self.reactions.items()}
        self.raw_ias = {s: self._math(ia.getMath(), f"SBML initial assignment to `{s}`")
                        for s, ia in self.initial_assignments.items()}

    def _resolve(self) -> None:
        """Substitute assignment rules, reaction rates and derived constants."""
        ar = {self.sym[v]: self.raw_rules[v] for v in self.assignment_rules}
        laws = {self.sym[rid]: e for rid, e in self.raw_laws.items()}
        # Constants defined by an initial assignment: their value at t0 (below).
        self.derived = [v for v in self.initial_assignments
                        if v not in self.species and v not in self.rate_rules
                        and v not in self.assignment_rules]
        init_subs = {**ar, **laws, **self._initial_values()}
        init_subs.update({self.sym[v]: self.raw_ias[v] for v in self.initial_assignments})
        self.init = _resolve_all(init_subs, {self.t: sp.Integer(0)}, "initial value")
        dyn_subs = {**ar, **laws}
        fixed = {self.sym[v]: self.init[self.sym[v]] for v in self.derived}
        self.dyn = _resolve_all(dyn_subs, fixed, "assignment rule")
        self.dyn.update(fixed)

    def _initial_values(self) -> dict:
        """Raw initial value of each species, compartment and parameter from its attributes."""
        out = {}
        for sid, s in self.species.items():
            if sid in self.initial_assignments or sid in self.assignment_rules:
                continue
            V = self.sym[s.getCompartment()]
            if s.isSetInitialConcentration():
                c = sp.Float(s.getInitialConcentration())
                out[self.sym[sid]] = c * V if s.getHasOnlySubstanceUnits() else c
            elif s.isSetInitialAmount():
                a = sp.Float(s.getInitialAmount())
                out[self.sym[sid]] = a if s.getHasOnlySubstanceUnits() else a / V
            else:
                raise ModelError(f"SBML species `{sid}` has no initial amount, concentration or "
                                 "initial assignment")
        for cid in self.rate_rules:
            if cid in self.initial_assignments:
                continue
            el = self.compartments.get(cid) or self.parameters.get(cid)
            if el is None:
                continue
            isset = el.isSetSize() if cid in self.compartments else el.isSetValue()
            if not isset:
                raise ModelError(f"SBML rate-rule target `{cid}` has no initial value")
            out[self.sym[cid]] = sp.Float(el.getSize() if cid in self.compartments else el.getValue())
        return out

    # --- states, parameters, initial state ----------------------------------

    def _states_and_rhs(self):
        states, rhs, kinds = [], [], {}
        flux = self._species_flux()
        for sid, s in self.species.items():
            if sid in self.assignment_rules:
                continue
            x = self.sym[sid]
            states.append(x)
            kinds[sid] = "amount" if s.getHasOnlySubstanceUnits() else "concentration"
            if sid in self.rate_rules:
                rhs.append(self._dyn_expr(self.raw_rules[sid]))
            elif s.getBoundaryCondition() or s.getConstant() or sid not in flux:
                rhs.append(sp.Integer(0))
            else:
                rhs.append(self._species_rate(sid, s, flux[sid]))
        for v in self.rate_rules:
            if v in self.species:
                continue
            states.append(self.sym[v])
            kinds[v] = "compartment" if v in self.compartments else "parameter"
            rhs.append(self._dyn_expr(self.raw_rules[v]))
        return states, rhs, kinds

    def _species_flux(self) -> dict:
        """``sum_r c_S nu_Sr v_r`` per species changed by reactions (amount per time)."""
        flux: dict[str, sp.Expr] = {}
        model_cf = self.m.getConversionFactor() if self.m.isSetConversionFactor() else ""
        for rid, r in self.reactions.items():
            v = self.dyn[self.sym[rid]]
            for sign, refs in ((-1, r.getListOfReactants()), (1, r.getListOfProducts())):
                for ref in refs:
                    sid = ref.getSpecies()
                    if sid not in self.species:
                        raise ModelError(f"SBML reaction `{rid}` refers to unknown species `{sid}`")
                    nu = ref.getStoichiometry() if ref.isSetStoichiometry() else 1.0
                    if not math.isfinite(nu):
                        nu = 1.0
                    nu_e = sp.Integer(int(nu)) if float(nu).is_integer() else sp.Float(nu)
                    s = self.species[sid]
                    cf = s.getConversionFactor() if s.isSetConversionFactor() else model_cf
                    term = sign * nu_e * v * (self._dyn_expr(self.sym[cf]) if cf else 1)
                    flux[sid] = flux.get(sid, sp.Integer(0)) + term
        return flux

    def _species_rate(self, sid, s, flux) -> sp.Expr:
        if s.getHasOnlySubstanceUnits():
            return flux
        cid = s.getCompartment()
        if cid in self.rate_rules or cid in self.assignment_rules:
            raise ModelError(f"SBML species `{sid}` is a concentration in compartment `{cid}`, whose "
                             "size varies in time; this is not supported (set "
                             "hasOnlySubstanceUnits=true to make it an amount)")
        return flux / self._dyn_expr(self.sym[cid])

    def _dyn_expr(self, raw: sp.Expr) -> sp.Expr:
        return raw.xreplace(self.dyn)

    def _params(self) -> list:
        params, self.values = [], {}
        skip = set(self.rate_rules) | set(self.assignment_rules) | set(self.derived)
        for cid, c in self.compartments.items():
            if cid not in skip:
                params.append(self.sym[cid])
                self.values[cid] = c.getSize() if c.isSetSize() else math.nan
        for pid, p in self.parameters.items():
            if pid not in skip:
                params.append(self.sym[pid])
                self.values[pid] = p.getValue() if p.isSetValue() else math.nan
        for s, v in self.local_values.items():
            params.append(s)
            self.values[s.name] = v
        return params

    def _initial_state(self, states) -> list:
        return [self.init.get(x, x) for x in states]


def _resolve_all(subs: dict, fixed: dict, what: str) -> dict:
    """Fully substitute ``subs`` into itself (and ``fixed`` into it).

    Returns ``{symbol: expression}`` where no expression contains a key of
    `subs`; raises `ModelError` naming a cycle (``a -> b -> a``).
    """
    done: dict = {}
    for key in subs:
        _visit(key, subs, fixed, done, [], what)
    return done


def _visit(key, subs, fixed, done, stack, what):
    if key in done:
        return done[key]
    if key in stack:
        chain = " -> ".join(str(s) for s in [*stack[stack.index(key):], key])
        raise ModelError(f"SBML {what}s form a cycle: {chain}")
    stack.append(key)
    expr = subs[key]
    repl = dict(fixed)
    for s in expr.free_symbols:
        if s in subs:
            repl[s] = _visit(s, subs, fixed, done, stack, what)
    stack.pop()
    done[key] = expr.xreplace(repl)
    return done[key]
