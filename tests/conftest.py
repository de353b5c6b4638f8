"""Shared fixtures: seeded randomness only."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh generator seeded with 0, so every test sees the same numbers."""
    return np.random.default_rng(0)
