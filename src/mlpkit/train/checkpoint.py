"""Checkpoints of a :class:`~mlpkit.train.torch_trainer.TorchTrainer` in a run directory, and resume.

The files and their commit protocol are :mod:`mlpkit.train.checkpoint_files`'s. This module
fills them with a torch trainer's state:

- the tensors file holds the model weights (``model.*``), the optimizer buffers
  (``optimizer.{param}.{buffer}``), the best epoch's weights (``best.*``) and torch's generator
  state as a uint8 tensor (``rng.torch``, plus ``rng.cuda`` on a GPU; under DDP one per rank,
  ``rng.torch.{rank}``, so that each rank resumes its own dropout masks);
- ``checkpoint.json`` adds to the loop's state the optimizer's class, parameter groups and scalar
  state, and the names and shapes of the model tensors.

Loading checks the digest, the architecture and the optimizer before it changes anything, so a
corrupted or mismatched checkpoint raises :class:`~mlpkit.errors.CheckpointError` and leaves
both the trainer and the files as they were.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mlpkit.errors import CheckpointError
from mlpkit.train.checkpoint_files import (
    CHECKPOINT_JSON,
    check_loop_fits,
    check_tensors,
    commit,
    has_checkpoint,
    load_loop_state,
    loop_state,
    read_verified,
)
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

FORMAT = "mlpkit-torch-checkpoint"
VERSION = 1


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
    if trainer.rank_generator_states is not None:
        for rank, states in enumerate(trainer.rank_generator_states):
            tensors |= {f"rng.{key}.{rank}": state for key, state in states.items()}
    else:
        tensors["rng.torch"] = torch.get_rng_state()
        if trainer.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(trainer.device)
    state: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        **loop_state(trainer),
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

    tensors, state = _trainer_state(trainer)
    data = safetensors_bytes(tensors, metadata={"format": FORMAT, "epoch": str(state["epoch"])})
    path = commit(Path(run_dir), data, state, extra=extra)
    logger.debug("checkpoint of epoch %d written to %s", state["epoch"], run_dir)
    return path


# -- loading -----------------------------------------------------------------------------------


def read_checkpoint(run_dir: str | Path) -> Checkpoint:
    """Read and verify the checkpoint in ``run_dir`` without touching any trainer or file.

    Raises
    ------
    CheckpointError
        If there is no checkpoint, its JSON is unreadable or of another format, the tensors file
        is missing, truncated or corrupted (size or SHA-256 differ), or it is not safetensors.
    """
    from safetensors.torch import load as safetensors_load

    files = read_verified(run_dir, fmt=FORMAT, version=VERSION, kind="torch")
    try:
        tensors = safetensors_load(files.tensors_bytes)
    except Exception as exc:  # SafetensorError derives from Exception only
        raise CheckpointError(
            f"checkpoint tensors file {files.tensors_path} is not valid safetensors: {exc}"
        ) from exc
    return Checkpoint(tensors=tensors, state=files.state)


def _check_fits(ckpt: Checkpoint, trainer: TorchTrainer, source: str) -> None:
    """Raise CheckpointError unless every tensor and optimizer buffer fits the trainer."""
    saved = {k[len("model.") :]: t for k, t in ckpt.tensors.items() if k.startswith("model.")}
    check_tensors(saved, trainer.model.state_dict(), "architecture", source)
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
    check_loop_fits(ckpt.state, trainer, source)


def _load_generators(tensors: dict[str, torch.Tensor], trainer: TorchTrainer, source: str) -> None:
    """Put back this process's torch generators: its own rank's under DDP, else the one saved.

    A rank the checkpoint has no state for (it was written by fewer processes, or by one) keeps
    the generator the run seeded for it, so that the ranks' dropout masks still differ; only rank
    0 takes a single-process checkpoint's state.
    """
    rank = trainer.distributed.rank if trainer.distributed is not None else 0
    per_rank = any(name.startswith("rng.torch.") for name in tensors)
    suffix = f".{rank}" if per_rank else ""
    if f"rng.torch{suffix}" not in tensors or (not per_rank and rank != 0):
        logger.warning(
            "%s holds no generator state for rank %d; its dropout masks start afresh", source, rank
        )
        return
    torch.set_rng_state(tensors[f"rng.torch{suffix}"])
    if f"rng.cuda{suffix}" in tensors and trainer.device.type == "cuda":
        torch.cuda.set_rng_state(tensors[f"rng.cuda{suffix}"], trainer.device)


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
    # The run's configuration sets the optimizer's hyper-parameters (momentum, betas, weight decay,
    # ...), as on the NumPy engine; the checkpoint gives its buffers, step counts and current lr.
    configured = [dict(group) for group in trainer.optimizer.param_groups]
    trainer.model.load_state_dict(model_state)
    trainer.optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
    for group, own in zip(trainer.optimizer.param_groups, configured, strict=True):
        group.update({k: v for k, v in own.items() if k not in ("params", "lr", "initial_lr")})
    if state["has_best_state"]:
        trainer.best_state = {
            k[len("best.") :]: t.to(trainer.device) for k, t in tensors.items() if k.startswith("best.")
        }
    else:
        trainer.best_state = None
    load_loop_state(trainer, state, logger)
    _load_generators(tensors, trainer, source)
    logger.info("resumed from the checkpoint of epoch %d in %s", ckpt.epoch, run_dir)
    return state.get("extra")
