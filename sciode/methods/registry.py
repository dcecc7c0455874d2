"""Every method sciode has, in one table: family, order, controller, and
what it supports (sensitivity modes, devices).

This is the list a user reads (``sciode.methods.registry.METHODS``, or
``describe()``) and the one check every entry point asks
(``check(method, sensitivity=..., device=...)``), so that a pair that does
not exist is a ``ValueError`` naming what does, before anything compiles.
The coefficients themselves stay in the tableau modules (data shared by
every backend); the loops that run them register nothing here.
"""

from __future__ import annotations

from dataclasses import dataclass

from .bdf_coefficients import BDF
from .explicit_tableaus import EXPLICIT_TABLEAUS
from .stiff_tableaus import STIFF_TABLEAUS

#: Every sensitivity mode of ``value_and_grad``.
ALL_MODES = ("adjoint", "backsolve", "checkpoint", "forward", "discrete", "fd")


@dataclass(frozen=True)
class MethodInfo:
    """One method: ``family`` (``explicit``, ``rosenbrock``, ``esdirk``, ``bdf``),
    ``order`` (of the solution; ``error_order`` of its embedded estimate, 0
    without), ``controller``, the sensitivity ``modes`` it supports and the
    ``devices`` it runs on (``cpu``: ``solve`` and the CPU ensembles;
    ``torch``: ``sciode.torch.odeint``; ``cuda``: the GPU ensembles)."""

    name: str
    family: str
    order: int
    error_order: int
    adaptive: bool
    controller: str
    modes: tuple
    devices: tuple


def _explicit(tab) -> MethodInfo:
    if not tab.adaptive:
        controller = "fixed step (dt)"
    else:  # the tableau's own controller data, as every backend reads it
        q = f"{tab.controller_q:g}"
        on = " on the combined 5th/3rd-order estimate" if tab.e3 is not None else ""
        controller = (f"PI, exponent 1/{q}, beta {tab.pi_beta:g}{on}" if tab.pi_beta
                      else f"I, exponent 1/{q}{on}")
    cuda = tab.adaptive  # sciode.member_loop: every adaptive tableau, DOP853's extra stages too
    return MethodInfo(tab.name, "explicit", tab.order, tab.error_order, tab.adaptive, controller,
                      ALL_MODES, ("cpu", "torch", "cuda") if cuda else ("cpu", "torch"))


#: The stiff methods' sensitivity modes: a Rosenbrock method loses order with
#: the approximate Jacobian of the forward-sensitivity system; nothing stiff
#: re-integrates backward (backsolve) or is differentiated step by step (discrete).
_STIFF = {
    "rodas4": ("rosenbrock", ("adjoint", "checkpoint", "fd"),
               "Gustafsson's predictive controller, exponent 1/4"),
    # rodas5's costate sweeps land on every forward step (cpu.implicit.ImplicitMethod)
    "rodas5": ("rosenbrock", ("adjoint", "checkpoint", "fd"),
               "Gustafsson's predictive controller, exponent 1/5"),
    "kvaerno5": ("esdirk", ("adjoint", "checkpoint", "forward", "fd"),
                 "PI, exponents 0.7/q and 0.4/q, q = 5"),
    # orders 1-5 (NDFs, Shampine & Reichelt 1997); error_order: the estimate is of
    # the current order's own local error
    "bdf": ("bdf", ("adjoint", "checkpoint", "forward", "fd"),
            ("variable order 1-5 (Shampine-Reichelt): quasi-constant step, exponent 1/(k+1), "
             "order k-1/k/k+1 with the largest step after k+1 equal steps")),
}

#: Why one method lacks a mode that its family has (the error says it); none now.
_WHY_METHOD: dict = {}

#: Why a family lacks a mode (the error says it).
_WHY = {
    ("rosenbrock", "forward"): "the forward-sensitivity system's Jacobian is approximated, which "
                               "a Rosenbrock method cannot use (it would lose order); use "
                               "method='kvaerno5' or 'bdf'",
    ("rosenbrock", "backsolve"): "re-integrating a stiff state backward in time is unstable",
    ("esdirk", "backsolve"): "re-integrating a stiff state backward in time is unstable",
    ("bdf", "backsolve"): "re-integrating a stiff state backward in time is unstable",
    ("bdf", "discrete"): "the discrete adjoint differentiates an explicit Runge-Kutta scheme",
    ("rosenbrock", "discrete"): "the discrete adjoint differentiates an explicit Runge-Kutta scheme",
    ("esdirk", "discrete"): "the discrete adjoint differentiates an explicit Runge-Kutta scheme",
}

METHODS: dict[str, MethodInfo] = {name: _explicit(tab) for name, tab in EXPLICIT_TABLEAUS.items()}
for _name, (_family, _modes, _controller) in _STIFF.items():
    _tab = BDF if _name == "bdf" else STIFF_TABLEAUS[_name]
    METHODS[_name] = MethodInfo(_name, _family, _tab.order, _tab.error_order, True, _controller,
                                _modes, ("cpu",))


def method_info(method: str) -> MethodInfo:
    """The entry for ``method`` (case-insensitive); ``ValueError`` listing the names."""
    if not isinstance(method, str):
        raise TypeError(f"`method` must be a string, got {type(method).__name__}")
    info = METHODS.get(method.lower())
    if info is None:
        valid = ", ".join(repr(m) for m in METHODS)
        raise ValueError(f"`method` must be one of {valid}; got {method!r}.")
    return info


def check(method: str, sensitivity: str | None = None, device: str | None = None) -> MethodInfo:
    """``method_info(method)``, after checking that it supports ``sensitivity``
    and runs on ``device``; the error names the methods that would."""
    info = method_info(method)
    if sensitivity is not None and sensitivity not in info.modes:
        able = [m.name for m in METHODS.values() if sensitivity in m.modes]
        why = _WHY_METHOD.get((info.name, sensitivity)) or _WHY.get((info.family, sensitivity))
        raise ValueError(f"sensitivity={sensitivity!r} does not support method={info.name!r} "
                         f"({info.family}{': ' + why if why else ''}); {info.name!r} supports "
                         f"{list(info.modes)}, and sensitivity={sensitivity!r} supports {able}")
    if device is not None and device not in info.devices:
        able = [m.name for m in METHODS.values() if device in m.devices]
        raise ValueError(f"method={info.name!r} does not run on device={device!r}; methods there: "
                         f"{able}")
    return info


def describe() -> str:
    """The table as text: one row per method."""
    rows = [f"{'method':9s} {'family':10s} {'order':5s} {'modes':46s} devices"]
    for m in METHODS.values():
        order = f"{m.order}({m.error_order})" if m.adaptive else str(m.order)
        rows.append(f"{m.name:9s} {m.family:10s} {order:5s} {','.join(m.modes):46s} "
                    f"{','.join(m.devices)}")
    return "\n".join(rows)


__all__ = ["ALL_MODES", "METHODS", "MethodInfo", "check", "describe", "method_info"]
