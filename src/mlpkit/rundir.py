"""A run directory's lifecycle and files, the same for every task and engine.

A training run writes one directory::

    config.json        everything needed to repeat the run (without its output directory)
    metrics.jsonl      one JSON object per finished epoch, appended each epoch, fsynced with each checkpoint
    metrics.csv        the same records as a table: a header of their keys, one row per epoch
    summary.json       the final scores, the best epoch, why it stopped, how the run was made
    model.safetensors  the weights to deliver (never pickle), with what rebuilds the model as metadata
    report.md          the run for a person to read
    *.png              the figures of the report
    checkpoint.json    the commit point of the checkpoint of the last finished epoch, naming its
                       checkpoint-epoch*.safetensors (see :mod:`mlpkit.train.checkpoint_files`)
    tensorboard/       TensorBoard's event files, with ``[run] log = ["tensorboard"]`` (:mod:`mlpkit.logs`)

This module owns the names of those files, creating the directory (never over an earlier run by
surprise), appending to and rewriting the metrics log, writing weights, and what is left after an
interrupt. A run is one or more sessions (the first, then each ``--resume``): :class:`Session`
says when and from what command this one started, and adds up the seconds of all of them. Every
file is written atomically (temporary file, fsync, rename).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import re
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from mlpkit._io import atomic_path, atomic_write_json, atomic_write_text, ensure_writable_dir
from mlpkit._provenance import provenance
from mlpkit.errors import CheckpointError, OutputError
from mlpkit.train.checkpoint_files import CHECKPOINT_JSON, TENSORS_GLOB, has_checkpoint

__all__ = [
    "CHECKPOINT_FILE",
    "CONFIG_FILE",
    "METRICS_CSV_FILE",
    "METRICS_FILE",
    "MODEL_FILE",
    "PREDICTED_FILE",
    "PREPROCESSING_FILE",
    "REPORT_FILE",
    "RESIDUALS_FILE",
    "RUN_FILES",
    "SUMMARY_FILE",
    "TABLE_FILE",
    "TENSORBOARD_DIR",
    "MetricsLog",
    "Session",
    "after_interrupt",
    "checkpoint_epoch",
    "default_run_dir",
    "log_interrupt",
    "prepare_run_dir",
    "read_metadata",
    "remove_if_unused",
    "remove_run_files",
    "run_task",
    "save_weights",
    "warn_if_unfinished",
    "write_config",
]

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
METRICS_CSV_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
MODEL_FILE = "model.safetensors"
REPORT_FILE = "report.md"
CURVES_FILE = "curves.png"
PREDICTIONS_FILE = "predictions.png"
TABLE_FILE = "table.json"
"""A CTR run's fitted encoding (vocabularies, numeric transforms): what predict encodes new rows with."""
PREPROCESSING_FILE = "preprocessing.json"
"""A table run's preprocessing fitted on its training rows (medians, scales, categories, classes)."""
PREDICTED_FILE = "predicted.png"
RESIDUALS_FILE = "residuals.png"
RUN_FILES = (
    CONFIG_FILE, METRICS_FILE, METRICS_CSV_FILE, SUMMARY_FILE, MODEL_FILE, REPORT_FILE, CURVES_FILE,
    PREDICTIONS_FILE, TABLE_FILE, PREPROCESSING_FILE, PREDICTED_FILE, RESIDUALS_FILE,
)
"""Every file a run writes; ``overwrite`` removes these, a checkpoint and the TensorBoard events from an
existing directory."""
TENSORBOARD_DIR = "tensorboard"
"""Where ``[run] log = ["tensorboard"]`` writes its event files (:mod:`mlpkit.logs`)."""
TENSORBOARD_EVENTS_GLOB = "events.out.tfevents.*"
"""The names TensorBoard's writer gives its event files."""
CHECKPOINT_FILE, CHECKPOINT_TENSORS_GLOB = CHECKPOINT_JSON, TENSORS_GLOB
"""Either engine's checkpoint (``mlpkit.train.checkpoint_files``): the JSON commit point and its tensors."""


class MetricsLog:
    """``metrics.jsonl`` and ``metrics.csv``: one line per finished epoch in each, written together.

    The JSON lines are the record of the run, flushed as each epoch ends and fsynced by :meth:`sync`,
    which the run calls with each checkpoint: a checkpoint holds the records up to its epoch and
    resume rewrites both files from them, so an fsync per epoch would buy nothing a crash could
    keep (on iris it cost 0.3 ms an epoch, half the epoch's own time). The CSV holds
    the same records as a table (a header of their keys, one row per epoch, each cell the JSON
    scalar of the line, so a float reads back as the same number; an empty cell for None). Every
    path that rewrites the JSON lines (resume, divergence, the end of the run) goes through
    :meth:`rewrite`, which rewrites the CSV from the same records, so the two files always agree.
    """

    def __init__(self, path: Path, csv_path: Path | None = None) -> None:
        self.path = path
        self.csv_path = path.with_suffix(".csv") if csv_path is None else csv_path
        self.lines: list[str] = []
        self.records: list[dict[str, Any]] = []
        self._columns: list[str] | None = None  # the CSV's header as written, None before it is

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, allow_nan=False)
        try:
            with open(self.path, "a", encoding="utf-8") as file:
                file.write(line + "\n")
        except OSError as exc:
            raise OutputError(f"cannot append to {self.path}: {exc.strerror or exc}") from exc
        self.lines.append(line)
        self.records.append(dict(record))
        if self._columns == list(record):
            self._append_row(record)
        else:  # the first row, or keys the header lacks: the whole table again
            self._write_csv()

    def sync(self) -> None:
        """fsync the JSON lines appended so far (a no-op before the first)."""
        if not self.lines:
            return
        try:
            with open(self.path, "rb") as file:
                os.fsync(file.fileno())
        except OSError as exc:
            raise OutputError(f"cannot sync {self.path}: {exc.strerror or exc}") from exc

    def rewrite(self, records: list[dict[str, Any]] | None = None) -> None:
        """Write both files again, atomically, from the records appended so far (or ``records``)."""
        if records is not None:
            self.lines = [json.dumps(record, allow_nan=False) for record in records]
            self.records = [dict(record) for record in records]
        atomic_write_text(self.path, "".join(f"{line}\n" for line in self.lines))
        self._write_csv()

    def _write_csv(self) -> None:
        columns = list(dict.fromkeys(key for record in self.records for key in record))
        buffer = io.StringIO()
        if self.records:
            writer = csv.writer(buffer, lineterminator="\n")
            writer.writerow(columns)
            writer.writerows([_csv_cell(record.get(key)) for key in columns] for record in self.records)
        atomic_write_text(self.csv_path, buffer.getvalue())
        self._columns = columns

    def _append_row(self, record: dict[str, Any]) -> None:
        # Not fsynced: the CSV is a view of the JSON lines, and the paths that could leave it short
        # (a crash) rewrite it from the checkpoint's records on resume.
        try:
            with open(self.csv_path, "a", encoding="utf-8", newline="") as file:
                csv.writer(file, lineterminator="\n").writerow([_csv_cell(v) for v in record.values()])
        except OSError as exc:
            raise OutputError(f"cannot append to {self.csv_path}: {exc.strerror or exc}") from exc


def _csv_cell(value: Any) -> str:
    """A record's value as a CSV cell: empty for None, else its JSON text (``0.1``, ``3``, ``true``)."""
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, allow_nan=False)


def default_run_dir(name: str) -> Path:
    """``runs/<YYYYmmdd-HHMMSS>-<name>`` under the current directory, suffixed -2, -3... if taken."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "run"
    base = Path("runs") / f"{datetime.now():%Y%m%d-%H%M%S}-{safe}"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def prepare_run_dir(out: str | os.PathLike[str] | None, name: str, *, overwrite: bool) -> tuple[Path, bool]:
    """Create or check the run directory before any work; return it and whether it was created.

    ``out`` is the directory asked for; ``None`` makes ``runs/<time>-<name>`` (:func:`default_run_dir`).

    Raises
    ------
    OutputError
        If the directory exists and is not empty (without ``overwrite``), or cannot be written.
    """
    run_dir = Path(out) if out else default_run_dir(name)
    if run_dir.is_dir():
        try:
            existing = sorted(entry.name for entry in run_dir.iterdir())
        except OSError as exc:
            raise OutputError(f"cannot read output directory {run_dir}: {exc.strerror or exc}") from exc
        if existing and not overwrite:
            shown = ", ".join(existing[:4]) + (", ..." if len(existing) > 4 else "")
            raise OutputError(
                f"run directory {run_dir} already exists and is not empty ({shown}); nothing was changed. "
                f"Choose another --out, or pass --overwrite to replace its run files"
            )
    created = not run_dir.exists()
    ensure_writable_dir(run_dir)
    if overwrite:
        # Only the files a run writes: a stale model must not outlive a new run that diverges, and
        # a stale checkpoint must not be resumed under the new run's config.json.
        stale = [run_dir / CHECKPOINT_FILE, *run_dir.glob(CHECKPOINT_TENSORS_GLOB)]
        for path in stale:
            path.unlink(missing_ok=True)
        remove_run_files(run_dir)
    return run_dir, created


def remove_run_files(run_dir: Path) -> None:
    """Remove the files a run writes (:data:`RUN_FILES`) and its TensorBoard events, nothing else.

    An earlier run's events would show in TensorBoard as part of the new run: they go with the
    other run files. The ``tensorboard`` directory itself goes only when nothing else is in it.
    """
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    events = run_dir / TENSORBOARD_DIR
    if events.is_dir():
        for path in events.glob(TENSORBOARD_EVENTS_GLOB):
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            events.rmdir()  # fails, and stays, when the user keeps other files there


def save_weights(path: Path, state: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """Write weights in the shared layout (``"{i}.weight"`` as (out, in)) atomically, for either engine."""
    from safetensors.numpy import save_file

    # safetensors writes an array's memory as it lies: a transposed view would be stored with its
    # new shape but in its old order, silently. C-ordered copies are stored as they read. (Not
    # ascontiguousarray: it turns a 0-d array, such as BatchNorm's num_batches_tracked, into (1,).)
    state = {name: np.require(a, requirements="C") for name, a in state.items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)


class Session:
    """One session of a run (the first, or a resume): when and from what command it started, and the
    seconds the run has taken across sessions (earlier sessions' time plus this one's so far)."""

    def __init__(self, command: Sequence[str] | None) -> None:
        self.before = 0.0
        self.start = time.perf_counter()
        self.facts = provenance(command)

    def seconds(self) -> float:
        return self.before + time.perf_counter() - self.start

    def resume(self, extra: Any, records: list[dict[str, Any]], run_dir: Path) -> None:
        """Take the time spent so far: the finished run's summary when it describes the checkpoint's
        epoch (a run being extended), else the checkpoint's (older checkpoints: the epochs' seconds)."""
        saved = extra.get("wall_seconds") if isinstance(extra, dict) else None
        self.before = float(saved) if isinstance(saved, int | float) else sum(r["seconds"] for r in records)
        with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
            summary = json.loads((run_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
            if summary.get("epochs_run") == len(records):
                self.before = max(self.before, float(summary["wall_seconds"]))


def write_config(run_dir: Path, payload: dict[str, Any]) -> None:
    """Write ``config.json``, or rewrite it on resume when settings changed (``--epochs``, ``--data-dir``)."""
    path = run_dir / CONFIG_FILE
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text(encoding="utf-8")) == payload:
            return
    atomic_write_json(path, payload)


def after_interrupt(run_dir: Path, *, created: bool, new_run: bool) -> None:
    """After Ctrl-C: say how to go on, or, before any checkpoint of a new run, leave nothing behind.

    A new run interrupted before its first checkpoint cannot be resumed; its few files (the config,
    an empty metrics log) would only make the same command refuse the directory next time.
    """
    if new_run and not has_checkpoint(run_dir):
        remove_run_files(run_dir)
        remove_if_unused(run_dir, created)
        logger.warning(
            "interrupted before the first epoch finished; nothing to resume, so %s was %s: "
            "run the same command again to start over",
            run_dir, "removed" if created else "emptied",
        )
        return
    log_interrupt(run_dir)


def log_interrupt(run_dir: Path) -> None:
    """Tell an interrupted run's user whether and how it can go on.

    The checkpoint, not the trainer, says where: an interrupt between an epoch's metrics line and
    its checkpoint leaves the previous epoch's checkpoint (that epoch is then trained again).
    """
    try:
        epoch = json.loads((run_dir / CHECKPOINT_FILE).read_text(encoding="utf-8"))["epoch"]
    except (OSError, ValueError, KeyError, TypeError):
        logger.warning("interrupted before the first checkpoint was written; %s cannot be resumed", run_dir)
        return
    logger.warning(
        "interrupted; the checkpoint holds epoch %s; continue with: mlpkit train --resume %s", epoch, run_dir
    )


def remove_if_unused(run_dir: Path, created: bool) -> None:
    if created and run_dir.is_dir() and not any(run_dir.iterdir()):
        run_dir.rmdir()  # leave no empty run directory behind a run that never started


def checkpoint_epoch(run_dir: Path) -> int:
    """The last epoch the checkpoint holds (checked to exist by :func:`_resume_config`)."""
    try:
        return int(json.loads((run_dir / CHECKPOINT_FILE).read_text(encoding="utf-8"))["epoch"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"cannot resume: {run_dir / CHECKPOINT_FILE} is unreadable ({exc})") from exc


def warn_if_unfinished(run_dir: Path, using: str) -> None:
    """Log a warning when ``run_dir`` has no ``summary.json``: an interrupted run, whose model file
    holds a finished epoch (the best so far, or the last one without restore-best), usable but not
    the result of a finished run. ``using`` says what is done with it ("scoring", "exporting").

    Called once by each command that uses a run's weights, never by the loaders they share, so a
    command warns once however many loaders it goes through.
    """
    if not (run_dir / SUMMARY_FILE).is_file():
        logger.warning("%s has no %s: the run did not finish; %s the weights it saved last",
                       run_dir, SUMMARY_FILE, using)


def read_metadata(path: Path) -> dict[str, str]:
    """The metadata (str -> str) of a safetensors file; CheckpointError naming it if unreadable."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as file:
            return dict(file.metadata() or {})
    except Exception as exc:  # safetensors raises its own SafetensorError for any malformed header
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc


def run_task(run_dir: str | os.PathLike[str]) -> str:
    """The task a run directory's ``config.json`` names (``fashion_mnist`` when it names none).

    Raises
    ------
    CheckpointError
        No such directory, or no readable ``config.json`` in it.
    """
    path = Path(run_dir) / CONFIG_FILE
    if not Path(run_dir).is_dir():
        raise CheckpointError(f"no run directory at {run_dir}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CheckpointError(f"{run_dir} is not a run directory: {CONFIG_FILE} is missing") from exc
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a valid run configuration: {exc}") from exc
    task = raw.get("task", "fashion_mnist") if isinstance(raw, dict) else None
    if not isinstance(task, str):
        raise CheckpointError(f"{path} is not a valid run configuration: expected a table with a task")
    return task
