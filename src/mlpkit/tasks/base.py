"""The shape of a task: what the one runner (:mod:`mlpkit.run`) asks of each kind of data.

A run is *data + model + objective + metrics* given to a task-independent runner. The runner owns
everything every run needs (the run directory, ``metrics.jsonl``, checkpoints, ``--resume``,
``torchrun`` ranks, divergence and interrupts); a :class:`Task` owns what is particular to one
kind of data::

    load         the train / validation / test inputs and targets, as the trainer takes them
    build_model  the torch module (and, for MLPSpec tasks, the spec the NumPy engine builds from)
    trainer_options  the loss, the whole-set metrics, augmentation, a regularizer
    model_metadata   what ``model.safetensors`` says about itself, to be rebuilt without config.json
    finish       test scores, figures, ``summary.json`` and ``report.md`` of a finished run

The image classification task (:mod:`mlpkit.tasks.fashion_mnist`) and the CTR task
(:mod:`mlpkit.tasks.ctr`) are the two plug-ins; :func:`mlpkit.tasks.task_for` picks one by the
config's class.
"""

from __future__ import annotations

import dataclasses
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlpkit.config import load_config
from mlpkit.errors import CheckpointError, ConfigError
from mlpkit.rundir import CONFIG_FILE, MODEL_FILE
from mlpkit.train.history import History

__all__ = [
    "FinishedRun", "SavedRun", "Splits", "Task", "absolute", "open_saved_run", "run_facts", "run_seeds",
]


def absolute(path: str | os.PathLike[str]) -> str:
    """``path`` made absolute, ``~`` expanded: what a run records, so it works from any directory."""
    return str(Path(path).expanduser().resolve())


def run_seeds(seed: int) -> tuple[np.random.Generator, np.random.Generator, np.random.Generator, int]:
    """The run's independent random streams, all from its one seed.

    Returns the generators of the validation split, the initial weights (and the NumPy engine's
    dropout masks) and the batch order, and a seed for torch's generator (torch dropout masks).
    """
    children = np.random.SeedSequence(seed).spawn(4)  # the first three are spawn(3)'s: old runs repeat
    split_rng, init_rng, train_rng = (np.random.default_rng(child) for child in children[:3])
    return split_rng, init_rng, train_rng, int(children[3].generate_state(1)[0])


@dataclass(frozen=True)
class Splits:
    """The data of one run, as the trainer takes it.

    Parameters
    ----------
    x_train, x_val, x_test : ndarray of shape (N, D), or dict of str to ndarray with N rows each
        Inputs (``x_val`` None without a validation set).
    y_train, y_val, y_test : ndarray of shape (N,)
        Targets: class indices, or 0/1 labels.
    source : str
        Where the data was read from (recorded in ``summary.json``).
    extra : Any
        Whatever else the task keeps for its report (test images, the fitted vocabularies, ...).
    """

    x_train: Any
    y_train: np.ndarray
    x_val: Any
    y_val: np.ndarray | None
    x_test: Any
    y_test: np.ndarray
    source: str
    extra: Any = None

    @property
    def sizes(self) -> dict[str, int]:
        """``n_train``, ``n_val`` and ``n_test``, as ``summary.json`` records them."""
        return {
            "n_train": len(self.y_train),
            "n_val": 0 if self.y_val is None else len(self.y_val),
            "n_test": len(self.y_test),
        }


@dataclass(frozen=True)
class FinishedRun:
    """What the runner hands a task at the end of training (rank 0 only).

    Parameters
    ----------
    run_dir : Path
    data : Splits
    history : History
    monitor : str
        The score that picked the best epoch.
    restore_best : bool
        Whether ``model.safetensors`` holds the best epoch's weights (else the last epoch's).
    last_state, best_state : dict of str to ndarray
        The last and the best epoch's weights in the file layout.
    trainer : Any
        The trainer, for tasks that score with it (its model holds the last weights).
    facts : dict
        The summary fields every run has (:func:`run_facts`): status, best epoch, stop reason, wall
        time, engine, provenance.
    provenance : dict
        When, from which command, on which host and versions the run was made (for the report).
    """

    run_dir: Path
    data: Splits
    history: History
    monitor: str
    restore_best: bool
    last_state: dict[str, np.ndarray]
    best_state: dict[str, np.ndarray]
    trainer: Any
    facts: dict[str, Any]
    provenance: dict[str, Any]


def run_facts(
    history: History, *, monitor: str, restore_best: bool, wall_seconds: float,
    engine: Mapping[str, Any], provenance: Mapping[str, Any],
) -> dict[str, Any]:
    """The task-independent part of ``summary.json``."""
    return {
        "status": "completed",
        "saved_weights": "best_epoch" if restore_best else "last_epoch",
        "best_epoch": history.best_epoch,
        "monitor": monitor,
        "epochs_run": len(history.records),
        "stop_reason": history.stop_reason,
        "wall_seconds": wall_seconds,
        **engine,
        **provenance,
    }


class Task(ABC):
    """One kind of data and objective, given to the runner with its config.

    Subclasses set :attr:`name` (the config's ``task``), :attr:`monitor_modes` (every score the
    config may monitor, with ``"min"`` or ``"max"``) and :attr:`test_scores` (the names of the
    ``test_<name>`` entries of ``summary.json``).
    """

    name: str
    monitor_modes: Mapping[str, str]
    test_scores: tuple[str, ...]
    numpy_engine: bool = False
    """Whether the task's model is an MLPSpec the NumPy engine can train (:meth:`spec`)."""

    def __init__(self, config: Any) -> None:
        self.config = config

    # -- configuration --------------------------------------------------------------------------

    def recorded(self) -> Any:
        """The config as ``config.json`` records it: no output directory, data paths absolute."""
        config = self.config
        return dataclasses.replace(config, run=dataclasses.replace(config.run, out=None))

    def with_data_dir(self, data_dir: str | os.PathLike[str] | None) -> Task:
        """This task reading its data from ``data_dir`` (on resume or evaluate), or as recorded."""
        if data_dir is None:
            return self
        data = dataclasses.replace(self.config.data, data_dir=absolute(data_dir))
        return type(self)(dataclasses.replace(self.config, data=data))

    def monitor(self, has_val: bool) -> str:
        """The score that picks the best epoch: the configured one; without validation, the training loss."""
        return self.config.early_stopping.monitor if has_val else "train_loss"

    def schedule_options(self) -> dict[str, Any]:
        """Extra keyword arguments of the learning-rate schedule (e.g. the plateau's threshold)."""
        return {}

    # -- data and model -------------------------------------------------------------------------

    @abstractmethod
    def load(self, split_rng: np.random.Generator, *, log: bool) -> Splits:
        """Read the data; ``log`` is True on the rank that logs (rank 0)."""

    @abstractmethod
    def build_model(self, data: Splits, init_rng: np.random.Generator) -> Any:
        """The torch module to train, initial weights from ``init_rng`` (or torch's seeded generator)."""

    def spec(self, data: Splits) -> Any:
        """The :class:`~mlpkit.spec.MLPSpec` the NumPy engine builds (tasks with :attr:`numpy_engine`)."""
        raise NotImplementedError(f"task {self.name!r} has no NumPy-engine model")

    def numpy_loss(self, data: Splits) -> Any:
        """The NumPy engine's loss: softmax cross-entropy on class indices, unless the task says otherwise."""
        from mlpkit.engine.losses import SoftmaxCrossEntropyLoss

        return SoftmaxCrossEntropyLoss()

    def numpy_augment(self) -> Any:
        """The NumPy engine's training-batch augmentation, or None (the default)."""
        return None

    @abstractmethod
    def trainer_options(self, model: Any) -> dict[str, Any]:
        """Keyword arguments of :class:`~mlpkit.train.torch_trainer.TorchTrainer` particular to the
        task: ``loss``, and where they apply ``metrics``, ``augment``, ``regularizer``."""

    def check_resources(self, data: Splits, *, device: str) -> None:  # noqa: B027 - optional hook
        """Refuse, before training, what cannot fit (the default checks nothing)."""

    # -- results --------------------------------------------------------------------------------

    def run_files(self, data: Splits) -> dict[str, Any]:
        """JSON files the run directory holds besides the config (file name -> content), written
        with ``config.json`` before the first epoch, e.g. the fitted vocabularies predict needs."""
        return {}

    @abstractmethod
    def model_metadata(self, data: Splits, epoch: int, engine: str) -> dict[str, str]:
        """safetensors metadata (str -> str) of ``model.safetensors``."""

    def describe_epoch(self, record: Mapping[str, Any]) -> str:
        """The log line of a finished epoch (after ``epoch i/n``)."""
        keys = [k for k in record if k not in ("epoch", "lr", "seconds") and record[k] is not None]
        numbers = "  ".join(f"{k} {record[k]:.4f}" for k in keys)
        return f"{numbers}  lr {record['lr']:.3g}  ({record['seconds']:.2f} s)"

    @abstractmethod
    def finish(self, run: FinishedRun) -> dict[str, Any]:
        """Score the test set, write figures, ``summary.json`` and ``report.md``; return the summary."""


@dataclass(frozen=True)
class SavedRun:
    """A run directory's parts that a saved run of a table task is rebuilt from.

    Parameters
    ----------
    run_dir : Path
    config : Any
        From ``config.json``.
    fitted : Any
        The task's fitted encoding, parsed from its JSON file.
    model_path : Path
        ``model.safetensors``, which exists.
    """

    run_dir: Path
    config: Any
    fitted: Any
    model_path: Path


def open_saved_run(
    run_dir: str | os.PathLike[str], *, task: str, kind: str, fitted_file: str, parse: Callable[[Any], Any],
    needed_for: str,
) -> SavedRun:
    """Read a finished run's config, its fitted encoding (``fitted_file``, parsed by ``parse``) and
    find its weights, refusing each missing or invalid part by path.

    Raises
    ------
    CheckpointError
        No such directory; ``config.json`` not one of ``task`` (``kind`` names it: "a CTR run");
        ``fitted_file`` missing (it is ``needed_for`` ...) or not parsed; no ``model.safetensors``.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"no run directory at {run_dir}")
    config_path, fitted_path, model_path = run_dir / CONFIG_FILE, run_dir / fitted_file, run_dir / MODEL_FILE
    try:
        config = load_config(config_path, task=task)
    except ConfigError as exc:
        raise CheckpointError(f"{config_path} is not the configuration of {kind}: {exc}") from exc
    try:
        fitted = parse(json.loads(fitted_path.read_text(encoding="utf-8")))
    except FileNotFoundError as exc:
        raise CheckpointError(f"{fitted_path} is missing: it is needed {needed_for}") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{fitted_path} is not valid ({type(exc).__name__}: {exc})") from exc
    if not model_path.is_file():
        raise CheckpointError(
            f"{model_path} is missing: the run may have stopped before its first epoch finished"
        )
    return SavedRun(run_dir, config, fitted, model_path)
