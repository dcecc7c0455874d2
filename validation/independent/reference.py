"""One reference per validation case, from routes that must agree with each other.

Every case has a hand-written system (``problems.SPECS``); its reference
gradient comes from SciPy forward sensitivities of that system, and is
accepted only if the complex-step derivative (which uses the right-hand side
alone, not its hand-written derivatives) agrees with it.  Where a closed form
exists (``closed_forms.CLOSED_FORMS``) it is the reference, and both SciPy
routes must agree with it too.  A disagreement raises ``ReferenceMismatch``:
a reference that disagrees with itself is never used to judge sciode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .closed_forms import CLOSED_FORMS
from .engine import Gradient, Spec, complex_step, forward_sensitivities, rel_error
from .problems import SPECS

__all__ = ["Reference", "ReferenceMismatch", "agreement", "compute"]


class ReferenceMismatch(AssertionError):
    """Two independent routes to a reference disagree beyond their tolerance."""


@dataclass
class Reference:
    """The reference of a case: the gradient used, what it is, how well its routes agree."""

    spec: Spec
    gradient: Gradient
    kind: str
    agreements: dict  # "route a vs route b" -> worst relative disagreement (value and every block)

    @property
    def worst_agreement(self) -> float:
        return max(self.agreements.values())

    def describe(self) -> str:
        checks = ", ".join(f"{k} {v:.0e}" for k, v in self.agreements.items())
        return f"{self.kind} (routes agree: {checks})"


def agreement(a: Gradient, b: Gradient) -> float:
    """Worst relative disagreement over the value and every gradient block."""
    worst = abs(a.value - b.value) / max(abs(b.value), 1e-300)
    for name, block in b.blocks().items():
        worst = max(worst, rel_error(a.blocks()[name], block))
    return float(worst)


def compute(name: str, rtol: float | None = None, agree_tol: float | None = None) -> Reference:
    """Reference of case ``name``.

    Parameters
    ----------
    rtol : SciPy's relative tolerance (default 1e-13 non-stiff, 1e-12 stiff)
    agree_tol : largest accepted disagreement between routes (default 1e-10
        non-stiff, 1e-8 stiff: SciPy's implicit methods at rtol 1e-12 are
        good to about 1e-10 on these problems, and the two stiff routes use
        different integrators, Radau and BDF)
    """
    spec = SPECS[name]()
    if rtol is None:
        rtol = 1e-12 if spec.stiff else 1e-13
    if agree_tol is None:
        agree_tol = 1e-8 if spec.stiff else 1e-10
    fs = forward_sensitivities(spec, rtol)
    cs = complex_step(spec, rtol)
    integrator = f"{fs.info['method']}/{cs.info['method']}"
    agreements = {"fwd-sens vs complex step": agreement(fs, cs)}
    if name in CLOSED_FORMS:
        ref = CLOSED_FORMS[name](spec)
        agreements["closed form vs fwd-sens"] = agreement(fs, ref)
        kind = "closed form"
    else:
        ref = fs
        kind = f"SciPy {integrator} fwd-sens + complex step (hand-written system)"
    bad = {k: v for k, v in agreements.items() if not np.isfinite(v) or v > agree_tol}
    if bad:
        raise ReferenceMismatch(f"{name}: independent routes disagree beyond {agree_tol:g}: {bad}")
    return Reference(spec, ref, kind, agreements)
