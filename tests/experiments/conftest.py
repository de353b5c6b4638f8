"""Fixtures for the studies' tests: where the real Fashion-MNIST lives, and skipping without it."""

from __future__ import annotations

from pathlib import Path

import pytest

REAL_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture
def real_data_dir() -> Path:
    """The system copy of Fashion-MNIST; skips the test (with the reason) when it is absent."""
    if not REAL_DIR.is_dir():
        pytest.skip(f"{REAL_DIR} does not exist (apt-get install dataset-fashion-mnist)")
    return REAL_DIR
