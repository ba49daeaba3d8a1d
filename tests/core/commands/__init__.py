"""Tests of the `vsr` extra commands (a package: `test_export.py` exists here and in tests/core)."""
