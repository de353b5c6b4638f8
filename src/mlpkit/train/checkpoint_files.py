"""What both engines' checkpoints share: the two-file commit protocol and the training loop's state.

A checkpoint in a run directory is two files, and loading one never unpickles anything:

- ``checkpoint-epoch{k:04d}-{token}.safetensors``: the engine's tensors (weights, optimizer
  buffers, best weights), written by :mod:`mlpkit.train.checkpoint` (torch) or
  :mod:`mlpkit.train.numpy_checkpoint` (NumPy);
- ``checkpoint.json``: the format and version, the loop's state (epoch, history, early-stopping
  and best-epoch counters, schedule, the NumPy generator), the engine's own JSON fields, and the
  tensors file's name, size and SHA-256.

Crash safety: the tensors go to a *new* file (unique name, temporary file + fsync + rename), and
only then is ``checkpoint.json`` replaced the same way. That rename is the commit point: a
process killed at any moment leaves ``checkpoint.json`` naming a complete tensors file, either the
previous one or the new one, because older tensors files are deleted only after the commit.
Reading checks the format, the version, the size and the digest before anything is decoded.

This module imports neither torch nor the engines: it sees a trainer only through the attributes
of :class:`~mlpkit.train.loop.EpochTrainer`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlpkit._io import atomic_write_bytes, atomic_write_json, ensure_writable_dir
from mlpkit.errors import CheckpointError
from mlpkit.train.early_stopping import EarlyStopping
from mlpkit.train.loop import EpochTrainer

__all__ = ["CHECKPOINT_JSON", "CheckpointFiles", "commit", "has_checkpoint", "read_verified"]

CHECKPOINT_JSON = "checkpoint.json"
TENSORS_GLOB = "checkpoint-epoch*.safetensors"
_TMP_GLOB = ".checkpoint-*.tmp.*"  # left by a process killed inside atomic_path


@dataclass(frozen=True)
class CheckpointFiles:
    """A checkpoint's JSON state and the verified bytes of its tensors file, not yet decoded."""

    state: dict[str, Any]
    tensors_bytes: bytes
    tensors_path: Path


def has_checkpoint(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a ``checkpoint.json`` (not whether it is intact)."""
    return (Path(run_dir) / CHECKPOINT_JSON).is_file()


# -- the loop's state --------------------------------------------------------------------------


def _nan_to_none(value: float) -> float | None:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _stopper_state(stopper: EarlyStopping | None) -> dict[str, Any] | None:
    if stopper is None:
        return None
    state = dict(stopper.state_dict())
    state["best_score"] = _nan_to_none(float(state["best_score"]))
    return state | {"reason": stopper.reason, "monitor": stopper.monitor, "mode": stopper.mode}


def _load_stopper(stopper: EarlyStopping | None, state: dict[str, Any] | None) -> None:
    if stopper is None or state is None:
        return
    values = dict(state)
    values["best_score"] = math.nan if values["best_score"] is None else values["best_score"]
    stopper.load_state_dict(values)
    stopper.reason = values.get("reason", "")
    stopper.improved = False


def generator_state(rng: np.random.Generator) -> dict[str, Any]:
    """A NumPy generator's state as plain JSON (arrays, as MT19937 and Philox hold, become lists).

    Setting ``rng.bit_generator.state`` to it restores the generator exactly.
    """

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: plain(item) for key, item in value.items()}
        return value.tolist() if isinstance(value, np.ndarray) else value

    state: dict[str, Any] = plain(rng.bit_generator.state)
    return state


def check_generator(saved: Any, rng: np.random.Generator, what: str, source: str) -> None:
    """Raise CheckpointError unless ``saved`` is a state of the same bit generator as ``rng``'s."""
    saved_kind = saved.get("bit_generator") if isinstance(saved, dict) else None
    own_kind = rng.bit_generator.state["bit_generator"]
    if saved_kind != own_kind:
        raise CheckpointError(f"{source}: its {what} is {saved_kind!r}, this run's is {own_kind!r}")


def loop_state(trainer: EpochTrainer) -> dict[str, Any]:
    """The JSON part every checkpoint holds: where the loop is, and the NumPy generator."""
    return {
        "epoch": trainer.epochs_done,
        "schedule": trainer.schedule.state_dict() if trainer.schedule is not None else None,
        "early_stopping": _stopper_state(trainer.early_stopping),
        "best_tracker": _stopper_state(trainer.best_tracker),
        "stopped_early": trainer.stopped_early,
        "history": trainer.history.to_dict(),
        "has_best_state": trainer.best_state is not None,
        "rng": {"numpy": generator_state(trainer.rng)},
        "trainer": {"batch_size": trainer.batch_size, "monitor": trainer.monitor},
    }


def check_tensors(saved: Mapping[str, Any], own: Mapping[str, Any], what: str, source: str) -> None:
    """Raise CheckpointError unless ``saved`` has ``own``'s names, shapes and dtypes.

    Parameters
    ----------
    saved, own : mapping of name -> array or tensor
        The checkpoint's and the trainer's (NumPy arrays or torch tensors, one kind on both sides).
    what : str
        What a mismatch means, e.g. ``"architecture"`` (it ends "written for a different ...").
    source : str
        Names the checkpoint in the message.
    """
    missing, unexpected = sorted(set(own) - set(saved)), sorted(set(saved) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{source} was written for a different {what}: tensors missing from it {missing}, "
            f"unexpected in it {unexpected}"
        )
    for name, target in own.items():
        if tuple(saved[name].shape) != tuple(target.shape):
            raise CheckpointError(
                f"{source} was written for a different {what}: tensor {name!r} has shape "
                f"{tuple(saved[name].shape)} in the checkpoint but {tuple(target.shape)} in the model"
            )
        if saved[name].dtype != target.dtype:
            raise CheckpointError(
                f"{source}: tensor {name!r} is {saved[name].dtype} in the checkpoint "
                f"but {target.dtype} in the model"
            )


def check_loop_fits(state: dict[str, Any], trainer: EpochTrainer, source: str) -> None:
    """Raise CheckpointError unless the loop state can be restored into ``trainer``.

    The monitored score must be the same: the best-epoch tracker, early stopping and the plateau
    schedule hold best scores of it, which mean nothing for another score.
    """
    check_generator(state.get("rng", {}).get("numpy"), trainer.rng, "NumPy generator", source)
    stopper = trainer.early_stopping
    for what, saved, own in (
        ("monitor", (state.get("trainer") or {}).get("monitor"), trainer.monitor),
        ("early stopping monitor", (state.get("early_stopping") or {}).get("monitor"),
         stopper.monitor if stopper is not None else None),
    ):
        if saved is not None and own is not None and saved != own:
            raise CheckpointError(f"{source} was written with {what} {saved!r}, this run uses {own!r}")
    schedule = state.get("schedule")
    own_schedule = trainer.schedule.name if trainer.schedule is not None else None
    if (schedule or {}).get("name") != own_schedule:
        raise CheckpointError(
            f"{source} was written with schedule {(schedule or {}).get('name')!r}, "
            f"this run uses {own_schedule!r}"
        )


def load_loop_state(trainer: EpochTrainer, state: dict[str, Any], logger: Any) -> None:
    """Restore what :func:`loop_state` saved (after :func:`check_loop_fits` passed)."""
    saved_batch = state.get("trainer", {}).get("batch_size")
    if saved_batch != trainer.batch_size:
        logger.warning(
            "resuming with batch_size %s; the checkpoint was written with %s", trainer.batch_size, saved_batch
        )
    history = state["history"]
    trainer.history.records = list(history["records"])
    trainer.history.best_epoch = int(history["best_epoch"])
    trainer.history.stop_reason = str(history["stop_reason"])
    _load_stopper(trainer.early_stopping, state["early_stopping"])
    tracker = state["best_tracker"]
    if tracker is not None and tracker.get("monitor") != trainer.best_tracker.monitor:
        trainer.best_tracker = EarlyStopping(patience=1, mode=tracker["mode"], monitor=tracker["monitor"])
    _load_stopper(trainer.best_tracker, tracker)
    trainer.stopped_early = bool(state["stopped_early"])
    if trainer.schedule is not None:
        trainer.schedule.load_state_dict(state["schedule"])
    trainer.rng.bit_generator.state = state["rng"]["numpy"]


# -- the files ---------------------------------------------------------------------------------


def commit(
    run_dir: Path, tensors_bytes: bytes, state: dict[str, Any], *, extra: dict[str, Any] | None
) -> Path:
    """Write a new tensors file, then ``checkpoint.json`` naming it (the commit), then drop older ones.

    Parameters
    ----------
    run_dir : Path
        Created if needed.
    tensors_bytes : bytes
        A serialised safetensors file.
    state : dict
        JSON-ready; ``tensors`` and ``extra`` entries are added here.
    extra : dict or None
        Stored as ``state["extra"]`` for the caller (e.g. the run config).

    Returns
    -------
    Path
        ``checkpoint.json``.

    Raises
    ------
    OutputError
        The directory cannot be created or written; the previous checkpoint is untouched.
    """
    if not run_dir.is_dir():
        ensure_writable_dir(run_dir)                         # an OutputError naming the path
    name = f"checkpoint-epoch{state['epoch']:04d}-{secrets.token_hex(4)}.safetensors"
    state = dict(state)
    state["tensors"] = {
        "file": name, "bytes": len(tensors_bytes), "sha256": hashlib.sha256(tensors_bytes).hexdigest()
    }
    state["extra"] = extra
    json.dumps(state, allow_nan=False)                       # what cannot be JSON fails before any write
    atomic_write_bytes(run_dir / name, tensors_bytes)
    # The commit point. Compact: it is rewritten every epoch with the whole history, which indented
    # JSON (encoded in Python, not C) made the larger part of an epoch's time on small tables.
    path = atomic_write_json(run_dir / CHECKPOINT_JSON, state, indent=None)
    for old in (*run_dir.glob(TENSORS_GLOB), *run_dir.glob(_TMP_GLOB)):
        if old.name != name:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()
    return path


def read_verified(run_dir: str | Path, *, fmt: str, version: int, kind: str) -> CheckpointFiles:
    """Read ``checkpoint.json`` and its tensors file, checking format, version, size and SHA-256.

    Parameters
    ----------
    run_dir : str or Path
    fmt, version
        The format name and version the caller reads.
    kind : str
        How to name the format in errors, e.g. ``"torch"`` or ``"NumPy"``.

    Raises
    ------
    CheckpointError
        No directory or no checkpoint; unreadable JSON; another format or version; the tensors
        file missing, truncated or corrupted.
    """
    run_dir = Path(run_dir)
    json_path = run_dir / CHECKPOINT_JSON
    if not run_dir.is_dir():
        raise CheckpointError(f"cannot resume: run directory {run_dir} does not exist")
    if not json_path.is_file():
        raise CheckpointError(
            f"cannot resume: no checkpoint in {run_dir} (no {CHECKPOINT_JSON}); "
            "was it written by `mlpkit train`?"
        )
    try:
        state = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{json_path} is corrupted or truncated: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != fmt:
        found = state.get("format") if isinstance(state, dict) else None
        raise CheckpointError(
            f"{json_path} is not an mlpkit {kind} checkpoint (format {fmt!r} expected, found {found!r})"
        )
    if state.get("version") != version:
        raise CheckpointError(
            f"{json_path} has checkpoint version {state.get('version')!r}; this mlpkit reads {version}"
        )
    try:
        info = state["tensors"]
        tensors_path = run_dir / Path(info["file"]).name
        expected_size, expected_digest = int(info["bytes"]), str(info["sha256"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{json_path} is corrupted: no valid 'tensors' entry ({exc!r})") from exc
    try:
        data = tensors_path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(
            f"checkpoint tensors file {tensors_path} named by {json_path} is missing"
        ) from None
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint tensors file {tensors_path}: {exc}") from exc
    if len(data) != expected_size:
        raise CheckpointError(
            f"checkpoint tensors file {tensors_path} is truncated or corrupted: "
            f"{len(data)} bytes, expected {expected_size}"
        )
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected_digest:
        raise CheckpointError(
            f"checkpoint tensors file {tensors_path} is corrupted: "
            f"SHA-256 {digest}, expected {expected_digest}"
        )
    return CheckpointFiles(state=state, tensors_bytes=data, tensors_path=tensors_path)
