"""The result of ``sciode.solve``."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Solution:
    """A trajectory, time-major.

    Attributes
    ----------
    t : (n_times,) output times (``t_eval`` if given, else the accepted steps)
    y : (n_times, n_states)
    stats : dict with ``nfev``, ``nsteps``, ``naccepted``, ``nrejected`` (and
        ``njev``, ``nlu`` for implicit methods)
    success : bool; status : int (0 on success); message : str
    dense : ``DenseOutput`` or None (when ``dense=True`` was requested)
    t_reached : float, where the integration stopped
    """

    t: np.ndarray
    y: np.ndarray
    stats: dict
    success: bool
    status: int
    message: str
    t_reached: float
    dense: object = None
    method: str = ""
    extra: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return (f"Solution(success={self.success}, status={self.status}, method={self.method!r}, "
                f"n_times={self.t.size}, message={self.message!r}, stats={self.stats})")
