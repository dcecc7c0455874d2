"""sciode's validation suite: ``python -m validation`` (or ``sciode validate``)."""
