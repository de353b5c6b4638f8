"""Checkpoints of a :class:`~mlpkit.train.torch_trainer.TorchTrainer` in a run directory, and resume.

A checkpoint is two files, and loading one never unpickles anything:

- ``checkpoint-epoch{k:04d}-{token}.safetensors``: the tensors: model weights (``model.*``),
  optimizer buffers (``optimizer.{param}.{buffer}``), the best epoch's weights (``best.*``) and
  torch's generator state as a uint8 tensor (``rng.torch``, plus ``rng.cuda`` on a GPU);
- ``checkpoint.json``: the trainer state as JSON: epoch, history, early-stopping and best-epoch
  counters, schedule, optimizer hyper-parameters, the NumPy generator state, the names and
  shapes of the model tensors, and the tensors file's name, size and SHA-256.

Crash safety: the tensors go to a *new* file (unique name, temporary file + fsync + rename), and
only then is ``checkpoint.json`` replaced the same way. That rename is the commit point: a
process killed at any moment leaves ``checkpoint.json`` naming a complete tensors file, either the
previous one or the new one, because older tensors files are deleted only after the commit.
Loading checks the digest, the architecture and the optimizer before it changes anything, so a
corrupted or mismatched checkpoint raises :class:`~mlpkit.errors.CheckpointError` and leaves
both the trainer and the files as they were.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mlpkit._io import atomic_write_bytes, atomic_write_json
from mlpkit.errors import CheckpointError
from mlpkit.train.distributed import is_rank_zero

if TYPE_CHECKING:
    from mlpkit.train.torch_trainer import TorchTrainer

__all__ = [
    "CHECKPOINT_JSON",
    "Checkpoint",
    "has_checkpoint",
    "load_checkpoint",
    "read_checkpoint",
    "save_checkpoint",
]

logger = logging.getLogger(__name__)

CHECKPOINT_JSON = "checkpoint.json"
FORMAT = "mlpkit-torch-checkpoint"
VERSION = 1
_TENSORS_GLOB = "checkpoint-epoch*.safetensors"
_TMP_GLOB = ".checkpoint-*.tmp.*"  # left by a process killed inside atomic_path


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint read from disk and verified: its tensors (on the CPU) and its JSON state."""

    tensors: dict[str, torch.Tensor]
    state: dict[str, Any]

    @property
    def epoch(self) -> int:
        """The number of finished epochs it holds."""
        return int(self.state["epoch"])


# -- saving ------------------------------------------------------------------------------------


def _nan_to_none(value: float) -> float | None:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _stopper_state(stopper: Any) -> dict[str, Any] | None:
    if stopper is None:
        return None
    state = dict(stopper.state_dict())
    state["best_score"] = _nan_to_none(float(state["best_score"]))
    return state | {"reason": stopper.reason, "monitor": stopper.monitor, "mode": stopper.mode}


def _trainer_state(trainer: TorchTrainer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split the trainer's whole state into tensors (for safetensors) and JSON."""
    tensors: dict[str, torch.Tensor] = {}
    model_state = trainer.model.state_dict()
    for name, t in model_state.items():
        tensors[f"model.{name}"] = t.detach().cpu().contiguous()
    if trainer.best_state is not None:
        for name, t in trainer.best_state.items():
            tensors[f"best.{name}"] = t.detach().cpu().contiguous()
    opt = trainer.optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for index, buffers in opt["state"].items():
        for key, value in buffers.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = value
    tensors["rng.torch"] = torch.get_rng_state()
    if trainer.device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(trainer.device)
    state: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "epoch": trainer.epochs_done,
        "model": {name: list(t.shape) for name, t in model_state.items()},
        "model_dtype": str(trainer.dtype),
        "optimizer": {
            "class": type(trainer.optimizer).__name__,
            "param_groups": opt["param_groups"],
            "scalars": scalars,
            "tensor_state": {
                str(i): sorted(k for k, v in b.items() if isinstance(v, torch.Tensor))
                for i, b in opt["state"].items()
            },
        },
        "schedule": trainer.schedule.state_dict() if trainer.schedule is not None else None,
        "early_stopping": _stopper_state(trainer.early_stopping),
        "best_tracker": _stopper_state(trainer.best_tracker),
        "stopped_early": trainer.stopped_early,
        "history": trainer.history.to_dict(),
        "has_best_state": trainer.best_state is not None,
        "rng": {"numpy": trainer.rng.bit_generator.state},
        "trainer": {"batch_size": trainer.batch_size, "monitor": trainer.monitor},
    }
    return tensors, state


def save_checkpoint(
    run_dir: str | Path, trainer: TorchTrainer, *, extra: dict[str, Any] | None = None
) -> Path | None:
    """Write the trainer's complete state to ``run_dir`` atomically; return ``checkpoint.json``'s path.

    Call it from ``on_epoch_end``: by then the epoch's early stopping, schedule and best weights
    are up to date, so the checkpoint resumes bit for bit. In a distributed run only rank 0
    writes; other ranks return None.

    Parameters
    ----------
    run_dir : str or Path
        The run directory (created if needed).
    trainer : TorchTrainer
    extra : dict or None
        JSON-ready data stored alongside (e.g. the run config), returned by :func:`load_checkpoint`.

    Raises
    ------
    OutputError
        If the directory cannot be written; the previous checkpoint is untouched.
    """
    if not is_rank_zero():
        return None
    from safetensors.torch import save as safetensors_bytes

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    tensors, state = _trainer_state(trainer)
    name = f"checkpoint-epoch{state['epoch']:04d}-{secrets.token_hex(4)}.safetensors"
    data = safetensors_bytes(tensors, metadata={"format": FORMAT, "epoch": str(state["epoch"])})
    atomic_write_bytes(run_dir / name, data)
    state["tensors"] = {"file": name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    state["extra"] = extra
    path = atomic_write_json(run_dir / CHECKPOINT_JSON, state)  # the commit point
    for old in (*run_dir.glob(_TENSORS_GLOB), *run_dir.glob(_TMP_GLOB)):
        if old.name != name:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()
    logger.info("checkpoint of epoch %d written to %s", state["epoch"], run_dir)
    return path


# -- loading -----------------------------------------------------------------------------------


def has_checkpoint(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a ``checkpoint.json`` (not whether it is intact)."""
    return (Path(run_dir) / CHECKPOINT_JSON).is_file()


def read_checkpoint(run_dir: str | Path) -> Checkpoint:
    """Read and verify the checkpoint in ``run_dir`` without touching any trainer or file.

    Raises
    ------
    CheckpointError
        If there is no checkpoint, its JSON is unreadable or of another format, the tensors file
        is missing, truncated or corrupted (size or SHA-256 differ), or it is not safetensors.
    """
    from safetensors.torch import load as safetensors_load

    run_dir = Path(run_dir)
    json_path = run_dir / CHECKPOINT_JSON
    if not run_dir.is_dir():
        raise CheckpointError(f"cannot resume: run directory {run_dir} does not exist")
    if not json_path.is_file():
        raise CheckpointError(
            f"cannot resume: no checkpoint in {run_dir} (no {CHECKPOINT_JSON}); "
            "was it written by `mlpkit train --engine torch`?"
        )
    try:
        state = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{json_path} is corrupted or truncated: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{json_path} is not an mlpkit torch checkpoint (format {FORMAT!r} expected)")
    if state.get("version") != VERSION:
        raise CheckpointError(
            f"{json_path} has checkpoint version {state.get('version')!r}; this mlpkit reads {VERSION}"
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
    try:
        tensors = safetensors_load(data)
    except Exception as exc:  # SafetensorError derives from Exception only
        raise CheckpointError(
            f"checkpoint tensors file {tensors_path} is not valid safetensors: {exc}"
        ) from exc
    return Checkpoint(tensors=tensors, state=state)


def _check_fits(ckpt: Checkpoint, trainer: TorchTrainer, source: str) -> None:
    """Raise CheckpointError unless every tensor and optimizer buffer fits the trainer."""
    own = trainer.model.state_dict()
    saved = {k[len("model.") :]: t for k, t in ckpt.tensors.items() if k.startswith("model.")}
    missing, unexpected = sorted(set(own) - set(saved)), sorted(set(saved) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{source} was written for a different architecture: tensors missing from it {missing}, "
            f"unexpected in it {unexpected}"
        )
    for name, target in own.items():
        if tuple(saved[name].shape) != tuple(target.shape):
            raise CheckpointError(
                f"{source} was written for a different architecture: tensor {name!r} has shape "
                f"{tuple(saved[name].shape)} in the checkpoint but {tuple(target.shape)} in the model"
            )
        if saved[name].dtype != target.dtype:
            raise CheckpointError(
                f"{source}: tensor {name!r} is {saved[name].dtype} in the checkpoint "
                f"but {target.dtype} in the model"
            )
    opt_state = ckpt.state.get("optimizer", {})
    cls = type(trainer.optimizer).__name__
    if opt_state.get("class") != cls:
        raise CheckpointError(
            f"{source} was written with optimizer {opt_state.get('class')}, this run uses {cls}"
        )
    groups = trainer.optimizer.param_groups
    saved_groups = opt_state.get("param_groups", [])
    if [len(g["params"]) for g in saved_groups] != [len(g["params"]) for g in groups]:
        raise CheckpointError(
            f"{source}: optimizer parameter groups hold {[len(g['params']) for g in saved_groups]} tensors, "
            f"this run's hold {[len(g['params']) for g in groups]}"
        )
    params = [p for g in groups for p in g["params"]]
    for index, keys in opt_state.get("tensor_state", {}).items():
        for key in keys:
            name = f"optimizer.{index}.{key}"
            if name not in ckpt.tensors:
                raise CheckpointError(f"{source}: optimizer buffer {name!r} is missing")
            shape = tuple(ckpt.tensors[name].shape)
            if shape not in ((), tuple(params[int(index)].shape)):
                raise CheckpointError(
                    f"{source}: optimizer buffer {name!r} has shape {shape} but its parameter has "
                    f"{tuple(params[int(index)].shape)}"
                )
    numpy_state = ckpt.state.get("rng", {}).get("numpy", {})
    own_bitgen = trainer.rng.bit_generator.state["bit_generator"]
    if numpy_state.get("bit_generator") != own_bitgen:
        raise CheckpointError(
            f"{source}: its NumPy generator is {numpy_state.get('bit_generator')!r}, "
            f"this run's is {own_bitgen!r}"
        )
    schedule = ckpt.state.get("schedule")
    own_schedule = trainer.schedule.name if trainer.schedule is not None else None
    if (schedule or {}).get("name") != own_schedule:
        raise CheckpointError(
            f"{source} was written with schedule {(schedule or {}).get('name')!r}, "
            f"this run uses {own_schedule!r}"
        )


def _load_stopper(stopper: Any, state: dict[str, Any] | None) -> None:
    if stopper is None or state is None:
        return
    values = dict(state)
    values["best_score"] = math.nan if values["best_score"] is None else values["best_score"]
    stopper.load_state_dict(values)
    stopper.reason = values.get("reason", "")
    stopper.improved = False


def load_checkpoint(run_dir: str | Path, trainer: TorchTrainer) -> dict[str, Any] | None:
    """Restore ``trainer`` from the checkpoint in ``run_dir``, so ``fit`` continues where it stopped.

    Everything is verified before anything changes: on error the trainer and the files are as
    they were. Call it on every rank of a distributed run (reading is safe everywhere).

    Parameters
    ----------
    run_dir : str or Path
    trainer : TorchTrainer
        Built exactly as for the original run (same model, optimizer and schedule types).

    Returns
    -------
    dict or None
        The ``extra`` data given to :func:`save_checkpoint`.

    Raises
    ------
    CheckpointError
        No checkpoint in ``run_dir``; a corrupted or truncated file; or a checkpoint of a
        different architecture (the message names the tensor and both shapes), optimizer or
        schedule.
    """
    ckpt = read_checkpoint(run_dir)
    source = f"checkpoint in {run_dir}"
    _check_fits(ckpt, trainer, source)
    state, tensors = ckpt.state, ckpt.tensors
    saved_batch = state.get("trainer", {}).get("batch_size")
    if saved_batch != trainer.batch_size:
        logger.warning(
            "resuming with batch_size %s; the checkpoint was written with %s", trainer.batch_size, saved_batch
        )
    # Optimizer: rebuild torch's state_dict from the JSON groups and the tensors.
    opt_state: dict[int, dict[str, Any]] = {}
    for index, keys in state["optimizer"]["tensor_state"].items():
        opt_state[int(index)] = {key: tensors[f"optimizer.{index}.{key}"] for key in keys}
    for index, values in state["optimizer"]["scalars"].items():
        opt_state.setdefault(int(index), {}).update(values)
    groups = []
    for group in state["optimizer"]["param_groups"]:
        group = dict(group)
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
        groups.append(group)
    model_state = {k[len("model.") :]: t for k, t in tensors.items() if k.startswith("model.")}
    trainer.model.load_state_dict(model_state)
    trainer.optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
    if state["has_best_state"]:
        trainer.best_state = {
            k[len("best.") :]: t.to(trainer.device) for k, t in tensors.items() if k.startswith("best.")
        }
    else:
        trainer.best_state = None
    history = state["history"]
    trainer.history.records = list(history["records"])
    trainer.history.best_epoch = int(history["best_epoch"])
    trainer.history.stop_reason = str(history["stop_reason"])
    _load_stopper(trainer.early_stopping, state["early_stopping"])
    tracker = state["best_tracker"]
    if tracker is not None and tracker.get("monitor") != trainer.best_tracker.monitor:
        from mlpkit.train.early_stopping import EarlyStopping

        trainer.best_tracker = EarlyStopping(patience=1, mode=tracker["mode"], monitor=tracker["monitor"])
    _load_stopper(trainer.best_tracker, tracker)
    trainer.stopped_early = bool(state["stopped_early"])
    if trainer.schedule is not None:
        trainer.schedule.load_state_dict(state["schedule"])
    trainer.rng.bit_generator.state = state["rng"]["numpy"]
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and trainer.device.type == "cuda":
        torch.cuda.set_rng_state(tensors["rng.cuda"], trainer.device)
    logger.info("resumed from the checkpoint of epoch %d in %s", ckpt.epoch, run_dir)
    return state.get("extra")
