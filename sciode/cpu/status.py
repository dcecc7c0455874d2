"""Integer status codes returned by the compiled loops, and their messages."""

SUCCESS = 0
STEP_UNDERFLOW = 1
NONFINITE = 2
MAX_STEPS = 3
SINGULAR = 4

_MESSAGES = {
    SUCCESS: "The solver successfully reached the end of the integration interval.",
    STEP_UNDERFLOW: "step size underflow at t={t!r}: the step fell below the floating-point "
                    "resolution of t (the solution may blow up or the problem may be stiff; "
                    "try a stiff `method` such as 'rodas4').",
    NONFINITE: "non-finite state or right-hand side at t={t!r}: the solution left the range "
               "of float64 or the model produced NaN/inf there.",
    MAX_STEPS: "max_steps={max_steps} reached at t={t!r} before the end of the interval; "
               "raise `max_steps` or loosen the tolerances.",
    SINGULAR: "singular iteration matrix at t={t!r}: the LU factorization of I - h*gamma*J failed.",
}


def message(status: int, t: float, max_steps: int = 0) -> str:
    """The human-readable message for a loop status code."""
    return _MESSAGES[status].format(t=float(t), max_steps=max_steps)
