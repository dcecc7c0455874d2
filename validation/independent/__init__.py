"""Independent references for the validation catalog.

Nothing in this package imports ``sciode``: every right-hand side, Jacobian
and cost here is written by hand in NumPy, and every integration is SciPy's.
A fault anywhere in sciode (its symbolic layer, generated kernels, integrators
or sensitivity drivers) therefore cannot move these references.
``tests/test_validation.py`` checks that importing and running them leaves
``sciode`` out of ``sys.modules``.
"""
