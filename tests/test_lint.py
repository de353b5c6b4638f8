"""The code base passes the project's ruff rules (``[tool.ruff]`` in pyproject.toml).

The lint run is part of the suite so that a rule broken in one commit fails CI in that commit,
instead of piling up until someone runs ruff by hand.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_finds_nothing_in_src_tests_and_benchmarks() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise",
         "src", "tests", "benchmarks"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, f"ruff check found problems:\n{result.stdout}{result.stderr}"
