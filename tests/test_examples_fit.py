"""The fitting examples run, in a reduced configuration, and reach what they claim."""

from __future__ import annotations

from examples import fit_lotka_volterra, fit_robertson


def test_fit_lotka_volterra_example(capsys):
    fit = fit_lotka_volterra.main(n_starts=10, profile_points=5)
    for name, true in fit_lotka_volterra.TRUE.items():
        assert abs(fit.params[name] - true) < 3 * fit.stderr[name]
    assert "95% profile interval" in capsys.readouterr().out


def test_fit_robertson_example():
    """From a factor 2.5-3 off in each rate, 9 decades apart: 1% noise leaves each
    rate within 3 standard errors (a few %) of the truth."""
    fit = fit_robertson.main()
    assert fit.success
    for name, true in fit_robertson.TRUE.items():
        assert abs(fit.params[name] - true) < 3 * fit.stderr[name]
        assert fit.stderr[name] / true < 0.05
