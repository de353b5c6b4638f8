"""Fixtures for the engine tests: inputs that keep gradient checks away from kinks."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest


def _away_from_zero(rng: np.random.Generator, shape: tuple[int, ...], low: float = 0.1) -> np.ndarray:
    """float64 values with |x| in [low, 2): never within a central-difference step of a ReLU kink."""
    magnitude = rng.uniform(low, 2.0, size=shape)
    sign = rng.choice(np.array([-1.0, 1.0]), size=shape)
    return magnitude * sign


@pytest.fixture
def away_from_zero() -> Callable[..., np.ndarray]:
    """``away_from_zero(rng, shape)``: float64 inputs with every |x| >= 0.1."""
    return _away_from_zero
