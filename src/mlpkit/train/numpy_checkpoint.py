"""Checkpoints of a :class:`~mlpkit.train.NumpyTrainer` in a run directory, and resume (no torch).

The files and their commit protocol are :mod:`mlpkit.train.checkpoint_files`'s. This module
fills them with a NumPy trainer's state:

- the tensors file holds the weights (``model.*``) and the best epoch's weights (``best.*``),
  both in torch's ``(out, in)`` layout like ``model.safetensors``, and the optimizer's buffers
  (``optimizer.{param}.{buffer}``, e.g. ``optimizer.0.momentum_buffer``);
- ``checkpoint.json`` adds to the loop's state the optimizer's class, learning rate and step
  count, the parameters' dtype, and the state of the generator that draws each dropout layer's
  masks (in :func:`~mlpkit.engine.build_mlp` networks, the generator that drew the weights).

So a resumed run shuffles, drops out and steps exactly as the uninterrupted one did, and ends with
the same weights bit for bit. Everything is checked before anything changes: a mismatched or
damaged checkpoint raises :class:`~mlpkit.errors.CheckpointError` and leaves the trainer as it was.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlpkit.engine.layers import Dropout
from mlpkit.engine.network import to_file_layout
from mlpkit.errors import CheckpointError
from mlpkit.train.checkpoint_files import (
    CHECKPOINT_JSON,
    check_generator,
    check_loop_fits,
    check_tensors,
    commit,
    generator_state,
    has_checkpoint,
    load_loop_state,
    loop_state,
    read_verified,
)

if TYPE_CHECKING:
    from mlpkit.train.numpy_trainer import NumpyTrainer

__all__ = ["CHECKPOINT_JSON", "has_checkpoint", "load_numpy_checkpoint", "save_numpy_checkpoint"]

logger = logging.getLogger(__name__)

FORMAT = "mlpkit-numpy-checkpoint"
VERSION = 1


def _dropout_layers(trainer: NumpyTrainer) -> dict[str, Dropout]:
    return {str(i): layer for i, layer in enumerate(trainer.network.layers) if isinstance(layer, Dropout)}


def _trainer_state(trainer: NumpyTrainer) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Split the trainer's whole state into arrays (for safetensors) and JSON."""
    tensors = {f"model.{name}": a for name, a in trainer.network.state_dict().items()}
    if trainer.best_state is not None:
        tensors |= {f"best.{name}": to_file_layout(a) for name, a in trainer.best_state.items()}
    opt = trainer.optimizer.state_dict()
    tensors |= {f"optimizer.{name}": a for name, a in opt["arrays"].items()}  # type: ignore[union-attr]
    state = {
        "format": FORMAT,
        "version": VERSION,
        **loop_state(trainer),
        "model_dtype": str(trainer.network.dtype),
        "optimizer": {
            "class": type(trainer.optimizer).__name__,
            "lr": opt["lr"],
            "step_count": opt["step_count"],
            "buffers": sorted(opt["arrays"]),  # type: ignore[arg-type]
        },
        "dropout_rng": {i: generator_state(layer.rng) for i, layer in _dropout_layers(trainer).items()},
    }
    return {k: np.ascontiguousarray(v) for k, v in tensors.items()}, state


def save_numpy_checkpoint(
    run_dir: str | Path, trainer: NumpyTrainer, *, extra: dict[str, Any] | None = None
) -> Path:
    """Write the trainer's complete state to ``run_dir`` atomically; return ``checkpoint.json``'s path.

    Call it from ``on_epoch_end``, when the epoch's early stopping, schedule and best weights are
    final, so that the checkpoint resumes bit for bit.

    Parameters
    ----------
    run_dir : str or Path
        The run directory (created if needed).
    trainer : NumpyTrainer
    extra : dict or None
        JSON-ready data stored alongside (e.g. the run config), returned by
        :func:`load_numpy_checkpoint`.

    Raises
    ------
    OutputError
        If the directory cannot be written; the previous checkpoint is untouched.
    """
    from safetensors.numpy import save as safetensors_bytes

    tensors, state = _trainer_state(trainer)
    data = safetensors_bytes(tensors, metadata={"format": FORMAT, "epoch": str(state["epoch"])})
    path = commit(Path(run_dir), data, state, extra=extra)
    logger.debug("checkpoint of epoch %d written to %s", state["epoch"], run_dir)
    return path


def _prefixed(tensors: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def load_numpy_checkpoint(run_dir: str | Path, trainer: NumpyTrainer) -> dict[str, Any] | None:
    """Restore ``trainer`` from the checkpoint in ``run_dir``, so ``fit`` continues where it stopped.

    Parameters
    ----------
    run_dir : str or Path
    trainer : NumpyTrainer
        Built exactly as for the original run (same network, optimizer and schedule types).

    Returns
    -------
    dict or None
        The ``extra`` data given to :func:`save_numpy_checkpoint`.

    Raises
    ------
    CheckpointError
        No checkpoint in ``run_dir``; a damaged file; a torch checkpoint; or one of a different
        architecture (naming the tensor and both shapes), dtype, optimizer, schedule or dropout.
        The trainer is unchanged.
    """
    from safetensors.numpy import load as safetensors_load

    files = read_verified(run_dir, fmt=FORMAT, version=VERSION, kind="NumPy")
    try:
        tensors = safetensors_load(files.tensors_bytes)
    except Exception as exc:  # SafetensorError derives from Exception only
        raise CheckpointError(
            f"checkpoint tensors file {files.tensors_path} is not valid safetensors: {exc}"
        ) from exc
    state, source = files.state, f"checkpoint in {run_dir}"
    dropouts = _dropout_layers(trainer)
    if sorted(state["dropout_rng"]) != sorted(dropouts):  # first: dropout layers shift the names
        raise CheckpointError(
            f"{source} has dropout after layers {sorted(state['dropout_rng'])}, "
            f"this network after {sorted(dropouts)}"
        )
    own_model = trainer.network.state_dict()
    check_tensors(_prefixed(tensors, "model."), own_model, "architecture", source)
    if state["has_best_state"]:
        check_tensors(_prefixed(tensors, "best."), own_model, "architecture", source)
    saved_class, own_class = state["optimizer"]["class"], type(trainer.optimizer).__name__
    if saved_class != own_class:
        raise CheckpointError(f"{source} was written with optimizer {saved_class}, this run uses {own_class}")
    check_tensors(_prefixed(tensors, "optimizer."), trainer.optimizer.state_arrays(), "optimizer", source)
    for index, layer in dropouts.items():
        check_generator(state["dropout_rng"][index], layer.rng, f"dropout generator of layer {index}", source)
    check_loop_fits(state, trainer, source)

    # Checked whole: from here on nothing fails.
    trainer.network.load_state_dict(_prefixed(tensors, "model."))
    trainer.optimizer.load_state_dict(
        {
            "lr": state["optimizer"]["lr"],
            "step_count": state["optimizer"]["step_count"],
            "arrays": _prefixed(tensors, "optimizer."),
        }
    )
    trainer.best_state = (
        {name: np.ascontiguousarray(to_file_layout(a)) for name, a in _prefixed(tensors, "best.").items()}
        if state["has_best_state"]
        else None
    )
    for index, layer in dropouts.items():
        layer.rng.bit_generator.state = state["dropout_rng"][index]
    load_loop_state(trainer, state, logger)
    logger.info("resumed from the checkpoint of epoch %d in %s", state["epoch"], run_dir)
    return state.get("extra")
