"""Helpers shared by the benchmark scripts: timing statistics, tables, JSON, BLAS environment.

Benchmarks are not tests: they print a table and write JSON, and compare competitors inside one
process so that the shared, noisy machine affects all of them alike.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"

# Some machines set these so that old OpenBLAS builds pick a safe kernel; a current numpy then
# runs an older, slower kernel. Benchmarks report both settings; tests and CI leave them alone.
BLAS_ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def blas_info() -> dict[str, Any]:
    """Which BLAS numpy uses, its kernel and thread count, and the BLAS environment variables."""
    info: dict[str, Any] = {name: os.environ.get(name) for name in BLAS_ENV_VARS}
    try:
        from threadpoolctl import threadpool_info

        info["threadpools"] = [
            {k: pool.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
            for pool in threadpool_info()
        ]
    except ImportError:
        info["threadpools"] = "threadpoolctl not installed"
    return info


def machine_info() -> dict[str, Any]:
    """Enough to tell two result files' machines apart."""
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "blas": blas_info(),
    }


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def mean_sd(values: Sequence[float]) -> dict[str, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return {
        "mean": float(statistics.fmean(values)),
        "sd": float(statistics.stdev(values)) if len(values) > 1 else 0.0,
    }


def measure_gemm_peak(*, n: int = 2048, repeats: int = 7, dtype: type = np.float32) -> float:
    """Best float32 GEMM throughput numpy reaches here, in GFLOP/s (an n x n x n product, 2n³ flops)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=dtype)
    b = rng.standard_normal((n, n), dtype=dtype)
    a @ b                                                    # warm up threads and caches
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


SETTLE_SECONDS = 0.5


def settle(seconds: float = SETTLE_SECONDS) -> None:
    """Pause between two implementations so that the first one's idle threads stop spinning.

    After a burst of work, NumPy's OpenBLAS threads and torch's OpenMP threads keep spinning on
    their cores for up to about 0.1 s before they sleep. On a 2-core machine, whichever
    implementation runs next in the same process competes with them: a torch epoch started right
    after a NumPy epoch measured 0.37 s instead of 0.28 s, and a 0.1 s pause removed the
    difference. Timing starts after the pause.
    """
    time.sleep(seconds)


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def print_table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> None:
    """A plain aligned table on stdout."""
    cells = [[str(c) for c in header], *[[_fmt(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for k, row in enumerate(cells):
        print("  ".join(c.rjust(w) if k else c.ljust(w) for c, w in zip(row, widths, strict=True)))
        if k == 0:
            print("  ".join("-" * w for w in widths))


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def results_path(name: str) -> Path:
    """``benchmarks/results/NAME.json``: where :func:`write_json` writes, and where a later run
    reads what it keeps of an earlier one."""
    return RESULTS / f"{name}.json"


def write_json(name: str, payload: dict[str, Any]) -> Path:
    """Write ``benchmarks/results/NAME.json`` (atomically) and return its path."""
    from mlpkit._io import atomic_write_json

    return atomic_write_json(results_path(name), payload)


def rerun_without_blas_env(script: str, args: Sequence[str]) -> dict[str, Any] | None:
    """Run ``script`` again in a child process with the BLAS variables removed; return its JSON.

    Only that command sees the changed environment. Returns None when neither variable is set
    (the current run already is the unset one).
    """
    if not any(name in os.environ for name in BLAS_ENV_VARS):
        return None
    env = {k: v for k, v in os.environ.items() if k not in BLAS_ENV_VARS}
    out = subprocess.run(
        [sys.executable, script, *args, "--child-json"], env=env, check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def offline_requests_stub() -> None:
    """Install a stand-in for ``requests`` before importing deepctr_torch.

    Importing deepctr_torch starts a thread that asks PyPI for a newer version through ``requests``
    (which the package does not declare). A stub whose answer is "not found" keeps the benchmarks
    off the network and their output clean.
    """
    import types

    stub = types.ModuleType("requests")
    stub.get = lambda *args, **kwargs: types.SimpleNamespace(status_code=0, text="")  # type: ignore[attr-defined]
    stub.codes = types.SimpleNamespace(ok=200)  # type: ignore[attr-defined]
    sys.modules["requests"] = stub
