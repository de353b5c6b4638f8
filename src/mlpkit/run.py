"""The main job: train a configured MLP on Fashion-MNIST into one run directory, and reuse it.

:func:`train_run` writes a run directory::

    config.json        the RunConfig (without ``out``): ``mlpkit train --config RUN/config.json`` repeats it
    metrics.jsonl      one JSON object per finished epoch, appended and fsynced as each epoch ends
    summary.json       test accuracy and loss of the saved model, best epoch, stop reason, wall time
    model.safetensors  the saved weights (never pickle), with the MLPSpec and class names as metadata
    report.md          configuration, per-epoch table, result, test confusion matrix, links to the PNGs
    curves.png         loss and accuracy per epoch, train and validation
    predictions.png    the first test images titled with predicted and true class

Every file is written atomically (temporary file, fsync, rename). The model is written at the end
of each epoch that becomes the one to keep (the best validation epoch, or every epoch when
``restore_best`` is off), so a crash or a divergence leaves the last good model on disk and never
weights from a diverged step.

The validation set is carved from the training set by the seeded generator; the test set is only
scored at the end and never selects anything. One seed drives independent streams (spawned from
one :class:`numpy.random.SeedSequence`): the validation split, the initial weights (and the NumPy
engine's dropout masks), the minibatch order, and the seed of torch's generator (the torch
engine's dropout masks), so changing ``val_size`` does not change the initial weights.

``config.run.engine`` picks the trainer. The torch engine starts from the same initial weights
and batches and writes the same files. Both write a checkpoint after every epoch
(``checkpoint.json`` and ``checkpoint-epoch*.safetensors``, see :mod:`mlpkit.train.checkpoint_files`)
that :func:`resume_run` continues from. Under ``torchrun`` every rank loads the data and trains, and
rank 0 alone creates and writes the run directory; the ranks agree before training starts, so
an error on one rank stops them all. torch is imported only on that path.

:func:`evaluate_run` and :func:`predict_run` rebuild the network from ``model.safetensors`` and
score the test set, or classify images from an IDX, ``.npy`` or ``.csv`` file.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import importlib.util
import io
import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from mlpkit import __version__
from mlpkit._io import atomic_write_json, atomic_write_text
from mlpkit._optional import require
from mlpkit.config import RunConfig, load_config
from mlpkit.data.fashion_mnist import FASHION_MNIST
from mlpkit.data.images import read_images
from mlpkit.engine import SoftmaxCrossEntropyLoss, build_mlp, load_weights, make_optimizer
from mlpkit.engine.losses import log_softmax
from mlpkit.engine.network import Sequential, to_file_layout
from mlpkit.errors import (
    CheckpointError,
    ConfigError,
    DataFormatError,
    MlpkitError,
    TrainingDivergedError,
)
from mlpkit.evaluate.metrics import accuracy, classification_scores, confusion_matrix, log_loss
from mlpkit.evaluate.report import render_report
from mlpkit.rundir import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    CURVES_FILE,
    METRICS_FILE,
    MODEL_FILE,
    PREDICTIONS_FILE,
    REPORT_FILE,
    RUN_FILES,
    SUMMARY_FILE,
    MetricsLog,
    Session,
    after_interrupt,
    checkpoint_epoch,
    prepare_run_dir,
    remove_if_unused,
    save_weights,
    write_config,
)
from mlpkit.spec import MLPSpec
from mlpkit.tasks.fashion_mnist import (
    PREVIEW_IMAGES,
    ImageSplits,
    load_dataset,
    load_splits,
    make_augment,
    pixels_to_features,
)
from mlpkit.train import EarlyStopping, History, NumpyTrainer, predict_logits
from mlpkit.train.checkpoint_files import has_checkpoint
from mlpkit.train.numpy_trainer import MONITORS as MONITOR_MODES
from mlpkit.train.schedules import Schedule, make_schedule

__all__ = [
    "RUN_FILES",
    "LoadedRun",
    "Predictions",
    "RunResult",
    "evaluate_run",
    "load_run",
    "predict_run",
    "resume_run",
    "train_run",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

# -- data --------------------------------------------------------------------------------------


def _with_data_dir(config: RunConfig, data_dir: str | os.PathLike[str] | None) -> RunConfig:
    """``config`` reading its data from ``data_dir`` (absolute), or from where it was recorded.

    A run records the absolute directory it was given, so evaluating or resuming it works from any
    working directory. When that directory is gone (the run was copied to another machine, the
    data moved) and no ``data_dir`` is given, the usual search takes over: ``$MLPKIT_DATA``, the
    cache, the system copy.
    """
    if data_dir is not None:
        data = dataclasses.replace(config.data, data_dir=_absolute(data_dir))
        return dataclasses.replace(config, data=data)
    recorded = config.data.data_dir
    if recorded is not None and not Path(recorded).is_dir():
        logger.warning(
            "the run's data directory %s does not exist; searching $MLPKIT_DATA, the cache and the system "
            "copy instead (pass --data-dir to choose)", recorded,
        )
        return dataclasses.replace(config, data=dataclasses.replace(config.data, data_dir=None))
    return config


def _absolute(path: str | os.PathLike[str]) -> str:
    return str(Path(path).expanduser().resolve())


# -- one training run --------------------------------------------------------------------------


@dataclass(frozen=True)
class RunResult:
    """What :func:`train_run` returns; everything in it is also on disk in ``run_dir``.

    Parameters
    ----------
    run_dir : Path
        The run directory.
    config : RunConfig
        The configuration the run used.
    history : History
        Per-epoch records, best epoch and stop reason.
    summary : dict
        The contents of ``summary.json``; empty on the ranks other than 0 of a multi-process
        run, which write nothing.
    rank : int
        This process's rank in a multi-process run (0 otherwise).
    """

    run_dir: Path
    config: RunConfig
    history: History
    summary: dict[str, Any]
    rank: int = 0


def _model_metadata(spec: MLPSpec, classes: tuple[str, ...], epoch: int, engine: str) -> dict[str, str]:
    """safetensors metadata (str -> str): enough to rebuild the network without config.json."""
    return {
        "format": "mlpkit.mlp",
        "spec": json.dumps(spec.to_dict()),
        "classes": json.dumps(list(classes)),
        "epoch": str(epoch),
        "engine": engine,
        "mlpkit_version": __version__,
    }


def _score(network: Sequential, x: np.ndarray, y: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
    """Accuracy and mean cross-entropy of ``network`` on (x (N, D), y (N,)); also the predictions (N,)."""
    logits = predict_logits(network, x)                                    # (N, C)
    predicted = logits.argmax(axis=1)                                      # (N,)
    return {"accuracy": accuracy(y, predicted), "loss": log_loss(y, logits=logits)}, predicted


def _seeds(seed: int) -> tuple[np.random.Generator, np.random.Generator, np.random.Generator, int]:
    """The run's independent random streams, all from its one seed.

    Returns the generators of the validation split, the initial weights (and the NumPy engine's
    dropout masks) and the batch order, and a seed for torch's generator (torch dropout masks).
    """
    children = np.random.SeedSequence(seed).spawn(4)  # the first three are spawn(3)'s: old runs repeat
    split_rng, init_rng, train_rng = (np.random.default_rng(child) for child in children[:3])
    return split_rng, init_rng, train_rng, int(children[3].generate_state(1)[0])


# -- what both engines share ---------------------------------------------------------------------


def _monitor(config: RunConfig, has_val: bool) -> str:
    # Without a validation set the best epoch is the one with the lowest training loss.
    return config.early_stopping.monitor if has_val else "train_loss"


def _stopper(config: RunConfig, monitor: str) -> EarlyStopping | None:
    es = config.early_stopping
    if es.patience is None:
        return None
    mode = MONITOR_MODES[monitor]
    return EarlyStopping(patience=es.patience, min_delta=es.min_delta, mode=mode, monitor=monitor)


def _schedule(config: RunConfig, monitor: str) -> Schedule | None:
    """The configured learning-rate schedule; None for ``constant`` (the optimizer's lr throughout)."""
    optim = config.optim
    if optim.schedule == "constant":
        return None
    return make_schedule(optim.schedule, optim.lr, **optim.schedule_kwargs(MONITOR_MODES[monitor]))


def _build_trainer(
    config: RunConfig,
    spec: MLPSpec,
    *,
    has_val: bool,
    init_rng: np.random.Generator,
    train_rng: np.random.Generator,
    progress: bool,
) -> NumpyTrainer:
    network = build_mlp(spec, rng=init_rng, dtype=np.dtype(config.run.dtype))
    optimizer = make_optimizer(
        config.optim.optimizer, network.parameters().values(), **config.optim.optimizer_kwargs()
    )
    monitor = _monitor(config, has_val)
    return NumpyTrainer(
        network,
        loss=SoftmaxCrossEntropyLoss(),
        optimizer=optimizer,
        rng=train_rng,
        batch_size=config.optim.batch_size,
        early_stopping=_stopper(config, monitor),
        monitor=monitor,
        restore_best=False,  # the run scores both the last and the best weights
        schedule=_schedule(config, monitor),
        augment=make_augment(config),
        progress=progress,
    )


def _check_engine(config: RunConfig) -> None:
    """Refuse, before anything is written, what the configured engine cannot do here."""
    world_size = os.environ.get("WORLD_SIZE", "1")
    if config.run.engine == "numpy" and world_size.isdigit() and int(world_size) > 1:
        # Otherwise every process would train the whole job and write the same run directory.
        raise ConfigError(
            f"the NumPy engine trains in one process, but torchrun started {world_size} "
            f"(WORLD_SIZE={world_size}); pass --engine torch to train with several processes, "
            "or run mlpkit without torchrun"
        )
    if config.run.engine == "torch":
        require("torch", feature="the torch engine (--engine torch)")


def _available_memory() -> int | None:
    """Bytes of memory the system can give this process now (Linux ``MemAvailable``), or None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as file:
            for line in file:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


EVAL_BATCH = 8192
"""Rows per forward pass when scoring (``predict_logits``'s default)."""


def training_memory(spec: MLPSpec, config: RunConfig, n_train: int) -> tuple[int, str]:
    """Estimate the bytes training ``spec`` takes beyond the data, and say where they go.

    Parameters: weights, gradients, the optimizer's buffers (momentum 1, Adam 2), and the copies
    the loop keeps (the best epoch's weights; the last good epoch's weights and optimizer state,
    for the roll-back on divergence). Activations: forward output, activation and gradient of each
    layer for one training batch, and two arrays per layer for one scoring batch.
    """
    itemsize = np.dtype(config.run.dtype).itemsize
    optim = config.optim
    buffers = 2 if optim.optimizer in ("adam", "adamw") else int(optim.momentum > 0)
    copies = 1 + 1 + buffers + 1 + (1 + buffers)  # weights, grads, buffers, best, last good (+buffers)
    one_copy = spec.num_parameters * itemsize
    params = one_copy * copies
    widths = sum(spec.hidden_features) + spec.out_features
    batch = min(optim.batch_size, n_train)
    activations = (3 * batch + 2 * EVAL_BATCH) * widths * itemsize
    kept = "weights, gradients, " + ("optimizer state, " if buffers else "") + "best and last-good copies"
    detail = (
        f"{kept}: {copies} x {_bytes(one_copy)} = {_bytes(params)}; activations of a training batch of "
        f"{batch} and a scoring batch of {EVAL_BATCH}: {_bytes(activations)}"
    )
    return params + activations, detail


def _check_memory(spec: MLPSpec, config: RunConfig, n_train: int, *, device: str = "cpu") -> None:
    """Refuse a network that cannot fit in memory, before allocating it (CPU training only)."""
    if not device.startswith("cpu"):
        return  # a GPU's memory is the device's to report, when it allocates
    needed, detail = training_memory(spec, config, n_train)
    available = _available_memory()
    if available is not None and needed > available:
        raise ConfigError(
            f"training this network needs about {_bytes(needed)} of memory ({detail}), but "
            f"{_bytes(available)} are available; use fewer or narrower hidden layers (--hidden) "
            "or a smaller --batch-size"
        )


def _log_model(spec: MLPSpec, config: RunConfig, n_train: int) -> None:
    itemsize = np.dtype(config.run.dtype).itemsize
    logger.info(
        "model: %s, %s parameters (%s as %s)",
        spec.describe(), f"{spec.num_parameters:,}", _bytes(spec.num_parameters * itemsize), config.run.dtype,
    )
    if config.optim.batch_size > n_train:
        logger.warning(
            "batch_size %d is larger than the %d training images: each epoch is one batch of %d",
            config.optim.batch_size, n_train, n_train,
        )


class _EpochWriter:
    """The trainer's ``on_epoch_end``: what a finished epoch leaves on disk.

    It refuses non-finite weights, appends the epoch's line to ``metrics.jsonl`` and saves
    ``model.safetensors`` when this epoch's weights are the ones to keep: the best epoch so far,
    or every epoch when ``keep_every_epoch`` (``restore_best`` off). So the file always holds the
    model the run would deliver if it stopped now, and never weights of a diverged step.
    Last it writes a checkpoint of the whole trainer (:meth:`save_checkpoint`), so a run killed
    at any point resumes from an epoch whose metrics line and model are on disk (or replays that
    epoch, deterministically, and writes them again).
    """

    engine = "numpy"

    def __init__(
        self,
        run_dir: Path,
        trainer: Any,
        *,
        recorded: RunConfig,
        spec: MLPSpec,
        classes: tuple[str, ...],
        epochs: int,
        keep_every_epoch: bool,
        session: Session,
    ) -> None:
        self.run_dir = run_dir
        self.session = session
        self.recorded = recorded
        self.metrics = MetricsLog(run_dir / METRICS_FILE)
        self.model_path = run_dir / MODEL_FILE
        self.trainer = trainer
        self.spec, self.classes, self.epochs = spec, classes, epochs
        self.keep_every_epoch = keep_every_epoch
        self.saved_epoch: int | None = None

    def weights_finite(self) -> bool:
        return all(np.isfinite(p.data).all() for p in self.trainer.network.parameters().values())

    def weights(self) -> dict[str, np.ndarray]:
        """The current weights in the file layout."""
        state: dict[str, np.ndarray] = self.trainer.network.state_dict()
        return state

    def best_weights(self) -> dict[str, np.ndarray]:
        """The best epoch's weights (``trainer.best_state``) in the file layout (views)."""
        return {name: to_file_layout(a) for name, a in self.trainer.best_state.items()}

    def save_checkpoint(self) -> None:
        from mlpkit.train.numpy_checkpoint import save_numpy_checkpoint

        save_numpy_checkpoint(self.run_dir, self.trainer, extra=self.checkpoint_extra())

    def checkpoint_extra(self) -> dict[str, Any]:
        """What a checkpoint keeps besides the trainer: the config it was written with, the time so far."""
        return {"config": self.recorded.to_dict(), "wall_seconds": self.session.seconds()}

    def save_model(self, state: dict[str, np.ndarray], epoch: int) -> None:
        save_weights(self.model_path, state, _model_metadata(self.spec, self.classes, epoch, self.engine))
        self.saved_epoch = epoch

    def __call__(self, record: dict[str, Any]) -> None:
        epoch = record["epoch"]
        # The last step of an epoch may overflow after a finite loss: such weights are never kept.
        if not self.weights_finite():
            raise TrainingDivergedError(
                f"training diverged: the weights hold NaN or inf after epoch {epoch} "
                f"(lr={record['lr']:g}); try a smaller learning rate"
            )
        self.metrics.append(record)
        logger.info(
            "epoch %d/%d  train_loss %.4f  train_accuracy %s  val_loss %s  val_accuracy %s  lr %.3g  "
            "(%.2f s)",
            epoch, self.epochs, record["train_loss"], _fmt(record["train_accuracy"]),
            _fmt(record["val_loss"]), _fmt(record["val_accuracy"]), record["lr"], record["seconds"],
        )
        if self.keep_every_epoch or self.trainer.history.best_epoch == epoch:
            self.save_model(self.weights(), epoch)
        self.save_checkpoint()


def _write_diverged_summary(
    run_dir: Path, exc: TrainingDivergedError, writer: _EpochWriter, *, data: ImageSplits
) -> TrainingDivergedError:
    """Record a diverged run in ``summary.json``; return the error to raise, saying what was kept."""
    writer.metrics.rewrite()
    atomic_write_json(
        run_dir / SUMMARY_FILE,
        {
            "status": "diverged",
            "stop_reason": str(exc),
            "epochs_run": len(writer.metrics.lines),
            "best_epoch": writer.trainer.history.best_epoch if writer.saved_epoch is not None else None,
            "saved_model_epoch": writer.saved_epoch,
            "test_accuracy": None,
            "test_loss": None,
            "wall_seconds": writer.session.seconds(),
            "data_dir": str(data.data_dir),
            **writer.session.facts,
        },
    )
    saved = writer.saved_epoch
    kept = "no model was saved" if saved is None else f"the model of epoch {saved} is kept"
    return TrainingDivergedError(
        f"{exc}. {len(writer.metrics.lines)} finished epoch(s) are in {writer.metrics.path}; {kept}"
    )


def train_run(
    config: RunConfig,
    *,
    progress: bool = False,
    overwrite: bool = False,
    command: Sequence[str] | None = None,
) -> RunResult:
    """Train the configured network on Fashion-MNIST and write one run directory.

    ``config.run.engine`` picks the NumPy engine or PyTorch; both write the same files, including
    a checkpoint after every epoch (see :func:`resume_run`). Under
    ``torchrun`` the torch engine trains on every rank, and only rank 0 writes the directory.

    Parameters
    ----------
    config : RunConfig
        The whole run: model, optimizer, early stopping, data, seed and output directory.
    progress : bool
        Show a progress bar per epoch (the CLI turns it on when stderr is a terminal).
    overwrite : bool
        Allow a non-empty ``config.run.out``; its run files (:data:`RUN_FILES` and a checkpoint)
        are removed first, other files are left alone.
    command : sequence of str, optional
        The command-line arguments that started the run, recorded in ``summary.json`` and the
        report (the CLI passes its own; default: this process's ``sys.argv``).

    Returns
    -------
    RunResult

    Raises
    ------
    OutputError
        Before any training: the run directory exists and is not empty (without ``overwrite``), or
        cannot be written. A directory this call created is removed again if the data fails to load.
    DataNotFoundError, DataFormatError, ChecksumError
        The data cannot be found, or is malformed (the message names the file and the value).
    ConfigError
        ``val_size`` leaves no training data; a device that is not there (e.g. ``cuda`` without
        a GPU), before anything is written.
    TrainingDivergedError
        The loss or the weights became NaN or infinite. ``metrics.jsonl`` keeps the finished epochs,
        ``summary.json`` says why the run stopped, and ``model.safetensors`` holds the last good
        model if one was saved (never diverged weights).
    """
    _check_engine(config)
    run = _torch_run if config.run.engine == "torch" else _numpy_run
    return run(config, progress=progress, overwrite=overwrite, resume_dir=None, command=command)


def _numpy_run(
    config: RunConfig,
    *,
    progress: bool,
    overwrite: bool,
    resume_dir: Path | None,
    command: Sequence[str] | None,
) -> RunResult:
    """:func:`train_run` and :func:`resume_run` on the NumPy engine."""
    from mlpkit.train.numpy_checkpoint import load_numpy_checkpoint

    session = Session(command)
    if resume_dir is None:
        run_dir, created = prepare_run_dir(config.run.out, config.name, overwrite=overwrite)
    else:
        run_dir, created = resume_dir, False
    logger.info("%s: %s", "run directory" if resume_dir is None else "resuming the run in", run_dir)
    split_rng, init_rng, train_rng, _ = _seeds(config.run.seed)
    try:
        data = load_splits(config, split_rng)
        spec = config.model.to_spec(in_features=data.x_train.shape[1], out_features=len(data.classes))
        _log_model(spec, config, len(data.y_train))
        _check_memory(spec, config, len(data.y_train))
    except BaseException:
        remove_if_unused(run_dir, created)
        raise

    has_val = data.x_val is not None
    trainer = _build_trainer(
        config, spec, has_val=has_val, init_rng=init_rng, train_rng=train_rng, progress=progress
    )
    restore_best = config.early_stopping.restore_best
    recorded = _recorded(config)
    if resume_dir is not None:
        extra = load_numpy_checkpoint(run_dir, trainer)
        _warn_if_config_changed(extra, recorded, run_dir)
        session.resume(extra, trainer.history.records, run_dir)
        if (finished := _already_finished(run_dir, config, trainer)) is not None:
            return finished
    writer = _EpochWriter(
        run_dir, trainer, recorded=recorded, spec=spec, classes=data.classes, epochs=config.optim.epochs,
        keep_every_epoch=not restore_best, session=session,
    )
    trainer.on_epoch_end = writer
    write_config(run_dir, recorded.to_dict())
    if resume_dir is not None:
        _restart_files(writer, trainer, restore_best=restore_best)
        _log_nothing_to_train(trainer, config.optim.epochs)
    resumed_at = trainer.epochs_done

    try:
        history = trainer.fit(
            data.x_train, data.y_train, data.x_val, data.y_val,
            epochs=trainer.remaining_epochs(config.optim.epochs),
        )
    except TrainingDivergedError as exc:
        raise _write_diverged_summary(run_dir, exc, writer, data=data) from exc
    except KeyboardInterrupt:
        after_interrupt(run_dir, created=created, new_run=resume_dir is None)
        raise

    writer.metrics.rewrite()
    network = trainer.network
    last_state = network.state_dict()
    best_state = writer.best_weights() if trainer.best_state is not None else last_state
    engine: dict[str, Any] = {"engine": "numpy"}
    if resume_dir is not None:
        engine["resumed_at_epoch"] = resumed_at
    summary = _finish_run(
        run_dir, recorded, network, spec=spec, last_state=last_state, best_state=best_state,
        history=history, monitor=trainer.monitor, data=data, session=session, restore_best=restore_best,
        engine=engine,
    )
    return RunResult(run_dir, config, history, summary)


def _already_finished(run_dir: Path, config: RunConfig, trainer: Any, rank: int = 0) -> RunResult | None:
    """On resume of a finished run with no epoch left to train: the run as it is, untouched."""
    if trainer.remaining_epochs(config.optim.epochs) > 0:
        return None
    try:
        summary = json.loads((run_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # killed after its last epoch, before its summary: finish it
    if not isinstance(summary, dict) or summary.get("epochs_run") != trainer.epochs_done:
        return None
    if rank == 0:
        _log_nothing_to_train(trainer, config.optim.epochs)
        logger.info("%s is unchanged; pass --epochs to train it longer", run_dir)
    return RunResult(run_dir, config, trainer.history, summary if rank == 0 else {}, rank=rank)


def _log_nothing_to_train(trainer: Any, epochs: int) -> None:
    """On resume, say why no epoch will run (a finished or early-stopped run)."""
    if trainer.stopped_early:
        logger.info("nothing to train: the run stopped early after epoch %d", trainer.epochs_done)
    elif trainer.epochs_done >= epochs:
        logger.info("nothing to train: %d of %d epochs are done", trainer.epochs_done, epochs)


def _recorded(config: RunConfig) -> RunConfig:
    """The config as ``config.json`` records it: without the output directory, with an absolute data_dir."""
    data = config.data
    if data.data_dir is not None:
        data = dataclasses.replace(data, data_dir=_absolute(data.data_dir))
    return dataclasses.replace(config, data=data, run=dataclasses.replace(config.run, out=None))


def _finish_run(
    run_dir: Path,
    recorded: RunConfig,
    network: Sequential,
    *,
    spec: MLPSpec,
    last_state: dict[str, np.ndarray],
    best_state: dict[str, np.ndarray],
    history: History,
    monitor: str,
    data: ImageSplits,
    session: Session,
    restore_best: bool,
    engine: dict[str, Any],
) -> dict[str, Any]:
    """Score the last and the best weights on the test set; write the figures, summary and report.

    Both engines score with the NumPy ``network`` (their weights share one layout), so
    ``summary.json`` holds the numbers :func:`evaluate_run` reproduces. ``engine`` adds the
    engine's own fields to the summary.
    """
    network.load_state_dict(last_state)
    final, final_pred = _score(network, data.x_test, data.y_test)
    network.load_state_dict(best_state)
    best, best_pred = _score(network, data.x_test, data.y_test)
    if not restore_best:
        network.load_state_dict(last_state)
    # model.safetensors already holds these weights: _EpochWriter saved them when they were current.
    saved, predicted = (best, best_pred) if restore_best else (final, final_pred)
    best_record = history.records[history.best_epoch - 1]

    figures: dict[str, str] = {}
    if importlib.util.find_spec("matplotlib") is not None:
        from mlpkit.evaluate.plots import plot_curves, plot_predictions

        title = f"{run_dir.name}: test accuracy {saved['accuracy']:.4f} ({spec.describe()})"
        plot_curves(history.records, run_dir / CURVES_FILE, best_epoch=history.best_epoch, title=title)
        shown = slice(0, PREVIEW_IMAGES)
        images, labels = data.test_images[shown], data.y_test[shown]
        plot_predictions(images, labels, predicted[shown], data.classes, run_dir / PREDICTIONS_FILE)
        figures = {"loss and accuracy curves": CURVES_FILE, "test predictions": PREDICTIONS_FILE}
    else:
        logger.warning("matplotlib is not installed: no PNG figures (pip install 'mlpkit[plot]')")

    summary: dict[str, Any] = {
        "status": "completed",
        "test_accuracy": saved["accuracy"],
        "test_loss": saved["loss"],
        "saved_weights": "best_epoch" if restore_best else "last_epoch",
        "final_test_accuracy": final["accuracy"],
        "final_test_loss": final["loss"],
        "best_epoch_test_accuracy": best["accuracy"],
        "best_epoch_test_loss": best["loss"],
        "best_epoch": history.best_epoch,
        "monitor": monitor,
        "best_val_loss": best_record["val_loss"],
        "best_val_accuracy": best_record["val_accuracy"],
        "epochs_run": len(history.records),
        "stop_reason": history.stop_reason,
        "n_train": len(data.y_train),
        "n_val": 0 if data.y_val is None else len(data.y_val),
        "n_test": len(data.y_test),
        "wall_seconds": session.seconds(),
        "data_dir": str(data.data_dir),
        **engine,
        **session.facts,
    }
    atomic_write_json(run_dir / SUMMARY_FILE, summary)
    report = render_report(
        title=run_dir.name,
        config=recorded.to_dict(),
        records=history.records,
        summary=summary,
        confusion=confusion_matrix(data.y_test, predicted, num_classes=len(data.classes)),
        class_names=data.classes,
        figures=figures,
        provenance=session.facts,
        in_features=spec.in_features,
        parameters=spec.num_parameters,
    )
    atomic_write_text(run_dir / REPORT_FILE, report)
    logger.debug("test accuracy %.4f (best epoch %d)", saved["accuracy"], history.best_epoch)
    return summary


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


# -- the torch engine: checkpoints, resume, several processes ----------------------------------
#
# Everything torch is imported inside these functions: `import mlpkit.run` stays torch-free.


class _TorchEpochWriter(_EpochWriter):
    """:class:`_EpochWriter` for a ``TorchTrainer``."""

    engine = "torch"

    def weights_finite(self) -> bool:
        import torch

        return all(bool(torch.isfinite(p).all()) for p in self.trainer.model.parameters())

    def weights(self) -> dict[str, np.ndarray]:
        from mlpkit.torch_engine import state_arrays

        return state_arrays(self.trainer.model)

    def best_weights(self) -> dict[str, np.ndarray]:
        return _torch_state(self.trainer.best_state)

    def save_checkpoint(self) -> None:
        from mlpkit.train.checkpoint import save_checkpoint

        save_checkpoint(self.run_dir, self.trainer, extra=self.checkpoint_extra())


def _torch_state(state: dict[str, Any]) -> dict[str, np.ndarray]:
    return {name: tensor.detach().cpu().numpy() for name, tensor in state.items()}


def _broadcast_json(ctx: Any, payload: dict[str, Any] | None) -> dict[str, Any]:
    """Rank 0's ``payload`` on every rank (as JSON bytes in a tensor: nothing is unpickled)."""
    import torch
    import torch.distributed as dist

    data = json.dumps(payload).encode() if ctx.is_rank_zero else b""
    size = torch.tensor([len(data)], dtype=torch.int64, device=ctx.device)
    dist.broadcast(size, src=0)
    buffer = (
        torch.tensor(list(data), dtype=torch.uint8, device=ctx.device)
        if ctx.is_rank_zero
        else torch.empty(int(size.item()), dtype=torch.uint8, device=ctx.device)
    )
    dist.broadcast(buffer, src=0)
    result: dict[str, Any] = json.loads(bytes(buffer.cpu().tolist()).decode())
    return result


def _count_failures(ctx: Any, failed: bool) -> int:
    """How many ranks failed a step (every rank must call this, whether it failed or not)."""
    import torch
    import torch.distributed as dist

    flag = torch.tensor([int(failed)], dtype=torch.int64, device=ctx.device)
    dist.all_reduce(flag, op=dist.ReduceOp.SUM)
    return int(flag.item())


def _on_every_rank(
    ctx: Any, what: str, action: Callable[[], T], on_failure: Callable[[], None] | None
) -> T:
    """Run ``action`` on every rank; all go on only if it succeeded on all of them.

    A rank that fails tells the others (an all-reduce every rank joins, failed or not) and
    re-raises its error; the others raise one naming how many ranks failed. So no rank waits
    forever in a later collective for a rank that has quit.
    """
    try:
        result = action()
    except BaseException:
        if ctx is not None:
            with contextlib.suppress(Exception):  # keep this rank's own error
                _count_failures(ctx, True)
        if on_failure is not None:
            on_failure()
        raise
    if ctx is not None and (failed := _count_failures(ctx, False)):
        if on_failure is not None:
            on_failure()
        raise MlpkitError(f"rank {ctx.rank} stops: {failed} other rank(s) failed {what} (see their errors)")
    return result


def _run_dir_on_rank_zero(ctx: Any, config: RunConfig, *, overwrite: bool) -> tuple[Path, bool]:
    """Rank 0 checks and creates the run directory; every rank learns the outcome.

    The other ranks never touch the directory: they get its path, or rank 0's error, by
    broadcast, so all ranks go on or all stop (none waits forever for a rank that has quit).
    """
    if ctx is None:
        return prepare_run_dir(config.run.out, config.name, overwrite=overwrite)
    if ctx.is_rank_zero:
        try:
            run_dir, created = prepare_run_dir(config.run.out, config.name, overwrite=overwrite)
        except BaseException as exc:
            _broadcast_json(ctx, {"error": f"{type(exc).__name__}: {exc}"})
            raise
        _broadcast_json(ctx, {"run_dir": str(run_dir)})
        return run_dir, created
    outcome = _broadcast_json(ctx, None)
    if "error" in outcome:
        raise MlpkitError(
            f"rank {ctx.rank} stops: rank 0 could not prepare the run directory ({outcome['error']})"
        )
    return Path(outcome["run_dir"]), False


def _resume_config(run_dir: Path) -> RunConfig:
    """The configuration of the run to resume, checked before anything is loaded or written."""
    if not run_dir.is_dir():
        raise CheckpointError(f"cannot resume: run directory {run_dir} does not exist")
    config_path = run_dir / CONFIG_FILE
    if not config_path.is_file():
        raise CheckpointError(
            f"cannot resume: {run_dir} has no {CONFIG_FILE}, so it is not a run directory of 'mlpkit train'"
        )
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise CheckpointError(
            f"cannot resume: {config_path} is not a valid run configuration: {exc}"
        ) from exc
    if not has_checkpoint(run_dir):
        raise CheckpointError(
            f"cannot resume: no checkpoint in {run_dir} (no {CHECKPOINT_FILE}); the run may have stopped "
            "before its first epoch finished: train it again instead"
        )
    return dataclasses.replace(config, run=dataclasses.replace(config.run, out=str(run_dir)))


def resume_run(
    run_dir: str | os.PathLike[str],
    *,
    epochs: int | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    device: str | None = None,
    progress: bool = False,
    command: Sequence[str] | None = None,
) -> RunResult:
    """Continue an interrupted run from its last checkpoint, in the same directory, on either engine.

    The settings come from ``run_dir/config.json``; the trainer is rebuilt, restored from the
    checkpoint (weights, optimizer, schedule, early stopping, best epoch, the generators),
    ``metrics.jsonl`` is rewritten from the checkpoint's history, and training continues for the
    remaining epochs. On the CPU the result equals the uninterrupted run bit for bit. Under
    ``torchrun`` every rank reads the checkpoint and rank 0 writes. A finished run with no epoch
    left to train is returned as it is, and nothing is written.

    Parameters
    ----------
    run_dir : str or os.PathLike
    epochs : int, optional
        A new total number of epochs (Lightning's ``max_epochs``): more than the run had extends
        it (a run that stopped early stays stopped). Recorded in ``config.json``.
    data_dir : str or os.PathLike, optional
        Where the data is now, if not where the run found it; recorded in ``config.json``.
    device : str, optional
        Where the torch engine trains from now on (``cpu``, ``cuda``, ``cuda:N``, ``auto``).
    progress : bool
    command : sequence of str, optional
        As for :func:`train_run`.

    Raises
    ------
    CheckpointError
        Before anything is written: no such directory, no ``config.json`` or no checkpoint in it,
        a corrupted checkpoint, or one that does not fit the configuration (the message names the
        tensor and both shapes).
    ConfigError
        ``epochs`` fewer than the epochs the checkpoint has trained, or an invalid value.
    """
    config = _resume_config(Path(run_dir))
    overrides: dict[str, dict[str, Any]] = {}
    if epochs is not None:
        done = checkpoint_epoch(Path(run_dir))
        if isinstance(epochs, int) and not isinstance(epochs, bool) and epochs < done:
            raise ConfigError(
                f"--epochs {epochs} is fewer than the {done} epochs {run_dir} has trained; "
                f"pass more than {done} to train it longer"
            )
        overrides["optim"] = {"epochs": epochs}
    if device is not None:
        overrides["run"] = {"device": device}
    if overrides:
        config = config.with_overrides(overrides, source="resume options")
    config = _with_data_dir(config, data_dir)
    _check_engine(config)
    run = _torch_run if config.run.engine == "torch" else _numpy_run
    return run(config, progress=progress, overwrite=False, resume_dir=Path(run_dir), command=command)


def _torch_run(
    config: RunConfig,
    *,
    progress: bool,
    overwrite: bool,
    resume_dir: Path | None,
    command: Sequence[str] | None,
) -> RunResult:
    """:func:`train_run` and :func:`resume_run` on the torch engine."""
    import torch.distributed as dist

    from mlpkit.train.distributed import cleanup_distributed, init_distributed

    session = Session(command)
    owns_group = not (dist.is_available() and dist.is_initialized())
    ctx = init_distributed(config.run.device)  # None unless started by torchrun
    try:
        if ctx is not None and ctx.world_size == 1:
            ctx = None  # torchrun with one process: a plain run
        return _torch_run_in_group(
            config, ctx, progress=progress, overwrite=overwrite, resume_dir=resume_dir, session=session
        )
    finally:
        if owns_group:
            cleanup_distributed()


def _torch_run_in_group(
    config: RunConfig,
    ctx: Any,
    *,
    progress: bool,
    overwrite: bool,
    resume_dir: Path | None,
    session: Session,
) -> RunResult:
    import torch

    from mlpkit.torch_engine import build_torch_mlp
    from mlpkit.train.checkpoint import load_checkpoint
    from mlpkit.train.device import resolve_device
    from mlpkit.train.distributed import local_batch_size
    from mlpkit.train.torch_trainer import TorchTrainer, build_loss, build_optimizer

    rank = 0 if ctx is None else ctx.rank
    rank_zero = rank == 0
    # Before the directory: a device that is not there, or a batch the ranks cannot share, fails
    # with nothing written.
    device = ctx.device if ctx is not None else resolve_device(config.run.device)
    if ctx is not None:
        local_batch_size(config.optim.batch_size, ctx.world_size)
    if resume_dir is None:
        run_dir, created = _run_dir_on_rank_zero(ctx, config, overwrite=overwrite)
    else:
        run_dir, created = resume_dir, False
    if rank_zero:
        logger.info(
            "%s: %s (torch engine on %s%s)",
            "run directory" if resume_dir is None else "resuming the run in",
            run_dir,
            device,
            "" if ctx is None else f", {ctx.world_size} processes",
        )

    def leave_no_empty_directory() -> None:
        if rank_zero:
            remove_if_unused(run_dir, created)

    split_rng, init_rng, train_rng, torch_seed = _seeds(config.run.seed)
    torch.manual_seed(torch_seed + rank)  # dropout masks; the ranks draw different ones
    restore_best = config.early_stopping.restore_best
    recorded = _recorded(config)
    def load_and_check() -> tuple[ImageSplits, MLPSpec]:
        data = load_splits(config, split_rng)
        spec = config.model.to_spec(in_features=data.x_train.shape[1], out_features=len(data.classes))
        if rank_zero:
            _log_model(spec, config, len(data.y_train))
        _check_memory(spec, config, len(data.y_train), device=str(device))
        return data, spec

    data, spec = _on_every_rank(ctx, "to load the data", load_and_check, leave_no_empty_directory)
    monitor = _monitor(config, data.x_val is not None)
    try:
        model = build_torch_mlp(spec, rng=init_rng, dtype=getattr(torch, config.run.dtype))
        # Wraps the model in DDP when there are several ranks: a collective, run by all or none.
        trainer = TorchTrainer(
            model,
            loss=build_loss("cross_entropy"),
            optimizer=build_optimizer(config.optim.optimizer, model, **config.optim.optimizer_kwargs()),
            rng=train_rng,
            batch_size=config.optim.batch_size,
            device=device,
            early_stopping=_stopper(config, monitor),
            monitor=monitor,
            restore_best=False,  # the run scores both the last and the best weights
            schedule=_schedule(config, monitor),
            grad_clip_norm=config.optim.grad_clip_norm,
            augment=make_augment(config),
            progress=progress and rank_zero,
            distributed=ctx,
        )
    except BaseException:
        leave_no_empty_directory()
        raise
    if resume_dir is not None:
        # Every rank reads the checkpoint; it is checked whole before anything changes.
        extra = _on_every_rank(ctx, "to read the checkpoint", lambda: load_checkpoint(run_dir, trainer), None)
        _warn_if_config_changed(extra, recorded, run_dir)
        session.resume(extra, trainer.history.records, run_dir)
        if (finished := _already_finished(run_dir, config, trainer, rank)) is not None:
            return finished

    writer = _TorchEpochWriter(
        run_dir, trainer, recorded=recorded, spec=spec, classes=data.classes, epochs=config.optim.epochs,
        keep_every_epoch=not restore_best, session=session,
    )
    trainer.on_epoch_end = writer  # called on rank 0 only
    if rank_zero:
        write_config(run_dir, recorded.to_dict())
        if resume_dir is not None:
            _restart_files(writer, trainer, restore_best=restore_best)
            _log_nothing_to_train(trainer, config.optim.epochs)
    epochs, resumed_at = trainer.remaining_epochs(config.optim.epochs), trainer.epochs_done
    try:
        history = trainer.fit(data.x_train, data.y_train, data.x_val, data.y_val, epochs=epochs)
    except TrainingDivergedError as exc:
        if not rank_zero:
            raise
        raise _write_diverged_summary(run_dir, exc, writer, data=data) from exc
    except KeyboardInterrupt:
        if rank_zero:
            after_interrupt(run_dir, created=created, new_run=resume_dir is None)
        raise
    if not rank_zero:
        return RunResult(run_dir, config, history, {}, rank=rank)

    writer.metrics.rewrite()
    network = build_mlp(spec, rng=np.random.default_rng(0), dtype=np.dtype(config.run.dtype))
    last_state = writer.weights()
    best_state = _torch_state(trainer.best_state) if trainer.best_state is not None else last_state
    engine: dict[str, Any] = {
        "engine": "torch",
        "device": str(device),
        "world_size": 1 if ctx is None else ctx.world_size,
        "torch_version": torch.__version__,
    }
    if resume_dir is not None:
        engine["resumed_at_epoch"] = resumed_at
    summary = _finish_run(
        run_dir, recorded, network, spec=spec, last_state=last_state, best_state=best_state, history=history,
        monitor=trainer.monitor, data=data, session=session, restore_best=restore_best, engine=engine,
    )
    return RunResult(run_dir, config, history, summary)


def _restart_files(writer: _EpochWriter, trainer: Any, *, restore_best: bool) -> None:
    """On resume, make ``metrics.jsonl`` and ``model.safetensors`` match the checkpoint.

    A run killed between its metrics line and its checkpoint has one epoch more on disk than in
    the checkpoint; that epoch is replayed, so the files are rewritten from the checkpoint first.
    """
    history = trainer.history
    writer.metrics.rewrite(history.records)
    if not history.records:
        return
    if restore_best and trainer.best_state is not None:
        writer.save_model(writer.best_weights(), history.best_epoch)
    else:
        writer.save_model(writer.weights(), len(history.records))


_RESUME_SETTINGS = {("optim", "epochs"), ("data", "data_dir"), ("run", "device")}
"""What :func:`resume_run` may change on purpose; other changes to ``config.json`` get a warning."""


def _warn_if_config_changed(extra: Any, recorded: RunConfig, run_dir: Path) -> None:
    """Log the settings of ``config.json`` that differ from those the checkpoint was written with."""
    saved = extra.get("config") if isinstance(extra, dict) else None
    if not isinstance(saved, dict):
        return
    changed, chosen = [], []
    for section, values in recorded.to_dict().items():
        before = saved.get(section, {})
        for key, value in values.items():
            if isinstance(before, dict) and key in before and before[key] != value:
                line = f"[{section}] {key}: {before[key]!r} -> {value!r}"
                (chosen if (section, key) in _RESUME_SETTINGS else changed).append(line)
    if chosen:
        logger.info("resuming with %s", "; ".join(chosen))
    if changed:
        logger.warning(
            "%s/%s differs from the configuration the checkpoint was written with: %s",
            run_dir, CONFIG_FILE, "; ".join(changed),
        )


# -- reusing a saved run -----------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedRun:
    """A saved run, rebuilt: its configuration and its network with the saved weights.

    Parameters
    ----------
    run_dir : Path
    config : RunConfig
    spec : MLPSpec
        From the weights file's metadata.
    classes : tuple of str
        Class names in label order, from the weights file's metadata.
    network : Sequential
        In evaluation mode.
    """

    run_dir: Path
    config: RunConfig
    spec: MLPSpec
    classes: tuple[str, ...]
    network: Sequential


def _read_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as file:
            return dict(file.metadata() or {})
    except Exception as exc:  # safetensors raises its own SafetensorError for any malformed header
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc


def load_run(run_dir: str | os.PathLike[str]) -> LoadedRun:
    """Rebuild a run's network from ``config.json`` and ``model.safetensors``.

    Raises
    ------
    CheckpointError
        Naming the path: no such directory, a missing or invalid ``config.json``, a missing or
        corrupt ``model.safetensors``, or metadata that does not describe an mlpkit MLP.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"no run directory at {run_dir}")
    config_path, model_path = run_dir / CONFIG_FILE, run_dir / MODEL_FILE
    if not config_path.is_file():
        raise CheckpointError(f"{run_dir} is not a run directory: {CONFIG_FILE} is missing")
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise CheckpointError(f"{config_path} is not a valid run configuration: {exc}") from exc
    if not model_path.is_file():
        raise CheckpointError(
            f"{model_path} is missing: the run may have stopped before its first epoch finished "
            f"(see {run_dir / SUMMARY_FILE})"
        )
    if not (run_dir / SUMMARY_FILE).is_file():
        # An interrupted run: its model file holds a finished epoch (the best so far, or the last
        # one without restore-best), which is usable, but not the result of a finished run.
        logger.warning(
            "%s has no %s: the run did not finish; using the weights it saved last",
            run_dir,
            SUMMARY_FILE,
        )
    metadata = _read_metadata(model_path)
    try:
        spec = MLPSpec.from_dict(json.loads(metadata["spec"]))
        classes = tuple(str(name) for name in json.loads(metadata["classes"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{model_path}: metadata does not describe an mlpkit MLP ({type(exc).__name__}: {exc})"
        ) from exc
    if len(classes) != spec.out_features:
        raise CheckpointError(f"{model_path}: {len(classes)} class names for {spec.out_features} outputs")
    network = build_mlp(spec, rng=np.random.default_rng(0), dtype=np.dtype(config.run.dtype))
    load_weights(network, model_path)
    network.eval()
    return LoadedRun(run_dir, config, spec, classes, network)


def evaluate_run(
    run_dir: str | os.PathLike[str], *, data_dir: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Score a saved run's model on the Fashion-MNIST test set, found as the run found it.

    Returns
    -------
    dict
        JSON-ready: ``test_accuracy``, ``test_loss`` and ``n_test``, the same numbers as the run's
        ``summary.json`` for the same data; ``per_class`` (class name -> ``precision``, ``recall``,
        ``f1``, ``support``), their ``macro`` and ``weighted`` means, ``class_names`` and
        ``confusion_matrix`` (C lists of C counts, rows true class, columns predicted class).

    Raises
    ------
    CheckpointError
        If the run directory is missing or corrupt (see :func:`load_run`).
    DataNotFoundError, DataFormatError
        If the test data cannot be loaded.
    """
    loaded = load_run(run_dir)
    dataset = load_dataset(_with_data_dir(loaded.config, data_dir))
    if tuple(dataset.classes) != loaded.classes:
        raise CheckpointError(
            f"{run_dir}: the model's classes {loaded.classes} differ from the data's {dataset.classes}"
        )
    x_test = pixels_to_features(dataset.x_test, loaded.network.dtype)
    scores, predicted = _score(loaded.network, x_test, dataset.y_test)
    confusion = confusion_matrix(dataset.y_test, predicted, num_classes=len(loaded.classes))  # (C, C)
    per_class = classification_scores(confusion)
    return {
        "test_accuracy": scores["accuracy"],
        "test_loss": scores["loss"],
        "n_test": len(dataset.y_test),
        "per_class": {
            name: {key: per_class[key][k].item() for key in ("precision", "recall", "f1", "support")}
            for k, name in enumerate(loaded.classes)
        },
        "macro": per_class["macro"],
        "weighted": per_class["weighted"],
        "class_names": list(loaded.classes),
        "confusion_matrix": confusion.tolist(),
    }


@dataclass(frozen=True)
class Predictions:
    """Class predictions for N images.

    Parameters
    ----------
    probabilities : ndarray of shape (N, C)
        Softmax of the logits, rows summing to 1.
    class_names : tuple of str
        The C class names.
    names : tuple of str or None
        One name per row: the image's file name, or ``FILE:i`` for the i-th image of an array file.
    true_labels : ndarray of shape (N,) or None
        The labels a CSV carried in a label column.
    notes : tuple of str
        What was done to the input on the way in (resized, converted, a column dropped).
    """

    probabilities: np.ndarray
    class_names: tuple[str, ...]
    names: tuple[str, ...] | None = None
    true_labels: np.ndarray | None = None
    notes: tuple[str, ...] = ()

    @property
    def labels(self) -> np.ndarray:
        """Predicted class index per row, (N,)."""
        labels: np.ndarray = self.probabilities.argmax(axis=1)
        return labels

    def top_k(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most probable classes of each row, most probable first.

        Returns
        -------
        classes : ndarray of shape (N, k) int
        probabilities : ndarray of shape (N, k)
        """
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(self.class_names):
            classes = len(self.class_names)
            raise ConfigError(f"top_k must be an int from 1 to the {classes} classes, got {k!r}")
        # A stable sort of -p keeps the lower class index first among equal probabilities, as argmax.
        classes = np.argsort(-self.probabilities, axis=1, kind="stable")[:, :k]        # (N, k)
        return classes, np.take_along_axis(self.probabilities, classes, axis=1)

    def to_csv(self, *, top_k: int = 1, probabilities: bool = False) -> str:
        """One line per image, with a header.

        Columns: ``row,name``, then ``class,class_name,probability`` (``top_k`` 1) or
        ``class_1,class_name_1,probability_1,...`` up to ``top_k``, then with ``probabilities``
        one column per class, headed by its name, holding its probability.
        """
        classes, probs = self.top_k(top_k)
        suffixes = [""] if top_k == 1 else [f"_{i}" for i in range(1, top_k + 1)]
        header = ["row", "name"]
        for suffix in suffixes:
            header += [f"class{suffix}", f"class_name{suffix}", f"probability{suffix}"]
        if probabilities:
            header += list(self.class_names)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        names = self.names or tuple(str(i) for i in range(len(self.probabilities)))
        for row, name in enumerate(names):
            cells: list[object] = [row, name]
            for label, p in zip(classes[row], probs[row], strict=True):
                cells += [int(label), self.class_names[label], f"{p:.6f}"]
            if probabilities:
                cells += [f"{p:.6f}" for p in self.probabilities[row]]
            writer.writerow(cells)
        return buffer.getvalue()


def predict_run(
    run_dir: str | os.PathLike[str], file: str | os.PathLike[str], *, input_scale: str = "auto"
) -> Predictions:
    """Classify the images in ``file`` with a saved run's model.

    Parameters
    ----------
    run_dir : str or os.PathLike
        A run directory written by :func:`train_run`.
    file : str or os.PathLike
        One image or many: PNG/JPEG files or a folder of them, IDX, ``.npy`` or ``.csv`` (see
        :func:`mlpkit.data.read_images`).
    input_scale : {"auto", "255", "1"}
        How the file's values relate to grey levels; ``"auto"`` refuses values that all lie in
        [0, 1] instead of guessing.

    Returns
    -------
    Predictions

    Raises
    ------
    CheckpointError
        If the run directory is missing or corrupt.
    DataNotFoundError, DataFormatError
        If ``file`` is missing or malformed, or holds images of another size than the model's.
    """
    loaded = load_run(run_dir)
    side = math.isqrt(loaded.spec.in_features)
    shape = FASHION_MNIST.image_shape if side * side != loaded.spec.in_features else (side, side)
    images = read_images(file, image_shape=shape, input_scale=input_scale)
    for note in images.notes:
        logger.info("%s: %s", file, note)
    if images.pixels.shape[1] != loaded.spec.in_features:
        raise DataFormatError(
            f"{file} has {images.pixels.shape[1]} features, but the model expects {loaded.spec.in_features}"
        )
    logits = predict_logits(loaded.network, pixels_to_features(images.pixels, loaded.network.dtype))  # (N, C)
    probabilities = np.exp(log_softmax(logits.astype(np.float64)))                                    # (N, C)
    predictions = Predictions(probabilities, loaded.classes, images.names, images.labels, images.notes)
    if images.labels is not None:
        logger.info(
            "%s: accuracy %.4f against its label column (%d images)",
            file, accuracy(images.labels, predictions.labels), len(images.labels),
        )
    return predictions
