"""Tests of :mod:`mlpkit.autograd` (a package, so module names like ``test_nn`` cannot clash)."""
