"""Tests of :mod:`mlpkit.engine` (a package, so module names like ``test_layers`` cannot clash)."""
