"""Test suite, synthetic-data makers and repository checks (not shipped with a model)."""
