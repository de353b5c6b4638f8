"""Small generated stand-ins for real data sets, and an in-process CLI runner, shared by the tests.

Importable from any test as ``from fakedata import ...`` (``pythonpath = ["tests"]`` in the pytest
settings), because test modules themselves cannot import each other under importlib mode.
"""

from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from mlpkit.cli import main
from mlpkit.data.idx import write_idx

N_TRAIN, N_TEST = 300, 100


def fake_images(labels: np.ndarray, seed: int) -> np.ndarray:
    """(N, 28, 28) uint8: the pattern of each image's class (fixed by seed 1234) plus noise.

    Each class lights a fixed random 30% of the pixels, so a small MLP separates them in a few
    epochs: tests can assert accuracy far above chance without real data.
    """
    patterns = np.random.default_rng(1234).random((10, 28, 28)) < 0.3  # (10, 28, 28)
    noise = np.random.default_rng(seed).integers(0, 90, size=(len(labels), 28, 28))
    return (patterns[labels] * 160 + noise).astype(np.uint8)


def write_fake_fashion_mnist(directory: Path, *, train_labels: np.ndarray | None = None) -> Path:
    """The four Fashion-MNIST files, train images gzipped and the rest not (both forms are valid)."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    y_train = rng.integers(0, 10, N_TRAIN).astype(np.uint8) if train_labels is None else train_labels
    y_test = rng.integers(0, 10, N_TEST).astype(np.uint8)
    write_idx(directory / "train-images-idx3-ubyte.gz", fake_images(np.minimum(y_train, 9), seed=1))
    write_idx(directory / "train-labels-idx1-ubyte", y_train)
    write_idx(directory / "t10k-images-idx3-ubyte", fake_images(y_test, seed=2))
    write_idx(directory / "t10k-labels-idx1-ubyte", y_test)
    return directory


def run_cli(*argv: str | Path) -> tuple[int, str, str]:
    """Run ``mlpkit ARGV`` in-process; return (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(arg) for arg in argv])
    return code, out.getvalue(), err.getvalue()


def unfinished_copy(run_dir: Path, tmp_path: Path) -> Path:
    """A copy of a finished run without ``summary.json``, as a run killed before its end leaves it."""
    unfinished = tmp_path / "unfinished"
    shutil.copytree(run_dir, unfinished)
    (unfinished / "summary.json").unlink()
    return unfinished


def assert_warns_unfinished_once(run_dir: Path, using: str, *argv: str | Path) -> str:
    """Run ``mlpkit ARGV`` on an unfinished ``run_dir``: it succeeds and says once that the run did not
    finish and what it does with the weights (``using``: "scoring", "predicting with"); its stdout."""
    code, out, err = run_cli(*argv)
    assert code == 0, err
    assert err.count("did not finish") == 1, err
    assert f"{run_dir} has no summary.json: the run did not finish; {using} the weights it saved last" in err
    return out


def interrupt_after(epoch: int) -> Any:
    """An ``on_epoch_end`` hook that stands in for Ctrl-C right after epoch ``epoch`` was written
    (metrics, model, checkpoint): pass it to ``train_run(..., on_epoch_end=...)``."""

    def hook(run_dir: Path, record: Any) -> None:
        if record["epoch"] == epoch:
            raise KeyboardInterrupt

    return hook


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file of ``directory`` by name, with its bytes: equal snapshots mean nothing was changed."""
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


CTR_FIELDS = {"user": 40, "item": 60, "hour": 6}
"""A small CTR table's categorical fields and how many distinct values each has."""


def write_ctr_tables(
    root: Path, *, seed: int = 0, rows: tuple[int, int, int] = (3000, 800, 800), suffix: str = ".csv"
) -> Path:
    """Write ``train``, ``valid`` and ``test`` of a CTR-shaped table under ``root`` and return it.

    Columns ``label,user,item,hour``; the click probability is the sigmoid of a sum of per-value
    effects (a planted signal a model can learn: a trained model's AUC is well above 0.5). ``test``
    holds a few values train never saw, so they go to the out-of-vocabulary id.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    effects = {name: rng.normal(0.0, 1.2, size + 3) for name, size in CTR_FIELDS.items()}
    root.mkdir(parents=True, exist_ok=True)
    for split, n in zip(("train", "valid", "test"), rows, strict=True):
        columns: dict[str, Any] = {}
        logit = np.full(n, -0.5)
        for name, size in CTR_FIELDS.items():
            values = rng.integers(0, size + (3 if split == "test" else 0), n)   # test: 3 unseen values
            logit += effects[name][values]
            columns[name] = [f"{name}{v}" for v in values]
        label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
        table = pa.table({"label": label, **columns})
        path = root / f"{split}{suffix}"
        if suffix == ".parquet":
            pq.write_table(table, path)
        else:
            pacsv.write_csv(table, path)
    return root
