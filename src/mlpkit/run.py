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
scored at the end and never selects anything. One seed drives three independent streams (spawned
from one :class:`numpy.random.SeedSequence`): the validation split, the initial weights and dropout
masks, and the minibatch order, so changing ``val_size`` does not change the initial weights.

:func:`evaluate_run` and :func:`predict_run` rebuild the network from ``model.safetensors`` and
score the test set, or classify images from an IDX, ``.npy`` or ``.csv`` file.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import io
import json
import logging
import os
import platform
import re
import time
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from mlpkit import __version__
from mlpkit._checks import check_features
from mlpkit._io import atomic_write_json, atomic_write_text, ensure_writable_dir
from mlpkit.config import RunConfig, load_config
from mlpkit.data.fashion_mnist import FASHION_MNIST, FashionMNIST, load_fashion_mnist
from mlpkit.data.idx import read_idx
from mlpkit.engine import SoftmaxCrossEntropyLoss, build_mlp, load_weights, make_optimizer, save_weights
from mlpkit.engine.losses import log_softmax
from mlpkit.engine.network import Sequential
from mlpkit.errors import (
    CheckpointError,
    ConfigError,
    DataFormatError,
    DataNotFoundError,
    OutputError,
    TrainingDivergedError,
)
from mlpkit.evaluate.metrics import accuracy, confusion_matrix, log_loss
from mlpkit.evaluate.report import render_report
from mlpkit.spec import MLPSpec
from mlpkit.train import EarlyStopping, History, NumpyTrainer, predict_logits
from mlpkit.train.numpy_trainer import MONITORS as MONITOR_MODES

__all__ = [
    "RUN_FILES",
    "LoadedRun",
    "Predictions",
    "RunResult",
    "evaluate_run",
    "load_run",
    "pixels_to_features",
    "predict_run",
    "read_images",
    "train_run",
]

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
MODEL_FILE = "model.safetensors"
REPORT_FILE = "report.md"
CURVES_FILE = "curves.png"
PREDICTIONS_FILE = "predictions.png"
RUN_FILES = (CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, MODEL_FILE, REPORT_FILE, CURVES_FILE, PREDICTIONS_FILE)
"""Every file a run writes; ``overwrite`` removes exactly these from an existing directory."""

PREVIEW_IMAGES = 25
"""Test images shown in ``predictions.png`` (the first ones, so every run of a data set shows the same)."""

MAX_PIXEL = 255
"""Grey levels are 0..255 in the IDX files; features are pixel / 255, in [0, 1]."""


# -- data --------------------------------------------------------------------------------------


def pixels_to_features(images: np.ndarray, dtype: np.dtype | type = np.float32) -> np.ndarray:
    """Grey levels to network inputs: flatten each image and scale 0..255 to [0, 1].

    The one place this scaling lives: training, evaluation and prediction all call it.

    Parameters
    ----------
    images : ndarray of shape (N, 28, 28) or (N, 784)
        Grey levels 0..255 (uint8, or any real dtype).
    dtype : float32 or float64

    Returns
    -------
    ndarray of shape (N, 784)
        A new array of ``dtype`` with values in [0, 1].

    Examples
    --------
    >>> pixels_to_features(np.array([[[0, 255], [51, 102]]], dtype=np.uint8))
    array([[0. , 1. , 0.2, 0.4]], dtype=float32)
    """
    x = np.asarray(images).reshape(len(images), -1).astype(dtype)  # (N, H*W), a copy
    x /= MAX_PIXEL
    return x


def split_validation(n: int, val_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a random train/validation split of ``n`` samples.

    Returns
    -------
    train_idx : ndarray of shape (n - val_size,)
    val_idx : ndarray of shape (val_size,)

    Raises
    ------
    ConfigError
        If ``val_size`` leaves no training sample.
    """
    if val_size >= n:
        raise ConfigError(
            f"[data] val_size must be smaller than the training set ({n} images), got {val_size}"
        )
    order = rng.permutation(n)
    return order[val_size:], order[:val_size]


def _load_dataset(config: RunConfig) -> FashionMNIST:
    data = config.data
    return load_fashion_mnist(data.data_dir, download=data.download, verify=data.verify)


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
        The contents of ``summary.json``.
    """

    run_dir: Path
    config: RunConfig
    history: History
    summary: dict[str, Any]


class _MetricsLog:
    """``metrics.jsonl``: one line per finished epoch, appended, flushed and fsynced at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[str] = []

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, allow_nan=False)
        try:
            with open(self.path, "a", encoding="utf-8") as file:
                file.write(line + "\n")
                file.flush()
                os.fsync(file.fileno())
        except OSError as exc:
            raise OutputError(f"cannot append to {self.path}: {exc.strerror or exc}") from exc
        self.lines.append(line)

    def rewrite(self) -> None:
        """Write the whole file again, atomically, from the lines appended so far."""
        atomic_write_text(self.path, "".join(f"{line}\n" for line in self.lines))


def _default_run_dir(name: str) -> Path:
    """``runs/<YYYYmmdd-HHMMSS>-<name>`` under the current directory, suffixed -2, -3... if taken."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "run"
    base = Path("runs") / f"{datetime.now():%Y%m%d-%H%M%S}-{safe}"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def _prepare_run_dir(config: RunConfig, *, overwrite: bool) -> tuple[Path, bool]:
    """Create or check the run directory before any work; return it and whether it was created.

    Raises
    ------
    OutputError
        If the directory exists and is not empty (without ``overwrite``), or cannot be written.
    """
    run_dir = Path(config.run.out) if config.run.out else _default_run_dir(config.name)
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
        # Only the files a run writes: a stale model must not outlive a new run that diverges.
        for name in RUN_FILES:
            (run_dir / name).unlink(missing_ok=True)
    return run_dir, created


def _model_metadata(spec: MLPSpec, classes: tuple[str, ...], epoch: int) -> dict[str, str]:
    """safetensors metadata (str -> str): enough to rebuild the network without config.json."""
    return {
        "format": "mlpkit.mlp",
        "spec": json.dumps(spec.to_dict()),
        "classes": json.dumps(list(classes)),
        "epoch": str(epoch),
        "mlpkit_version": __version__,
    }


def _score(network: Sequential, x: np.ndarray, y: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
    """Accuracy and mean cross-entropy of ``network`` on (x (N, D), y (N,)); also the predictions (N,)."""
    logits = predict_logits(network, x)                                    # (N, C)
    predicted = logits.argmax(axis=1)                                      # (N,)
    return {"accuracy": accuracy(y, predicted), "loss": log_loss(y, logits=logits)}, predicted


def _versions() -> dict[str, str]:
    return {
        "mlpkit_version": __version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
    }


@dataclass(frozen=True, eq=False)
class _Splits:
    """The data of one run: features scaled to [0, 1] in the run's dtype, labels as int64."""

    x_train: np.ndarray                  # (N_train, 784)
    y_train: np.ndarray                  # (N_train,)
    x_val: np.ndarray | None             # (N_val, 784), None when val_size = 0
    y_val: np.ndarray | None             # (N_val,)
    x_test: np.ndarray                   # (N_test, 784)
    y_test: np.ndarray                   # (N_test,)
    test_images: np.ndarray              # (N_test, 784) uint8, for the prediction grid
    classes: tuple[str, ...]
    data_dir: Path


def _prepare_data(config: RunConfig, rng: np.random.Generator) -> _Splits:
    """Load Fashion-MNIST, carve the validation set out of the training set, scale each split once."""
    dtype = np.dtype(config.run.dtype)
    dataset = _load_dataset(config)
    train_idx, val_idx = split_validation(len(dataset.x_train), config.data.val_size, rng)
    # Select on the uint8 images, then scale: no float copy of all 60000 images.
    x_val, y_val = None, None
    if len(val_idx):
        x_val, y_val = pixels_to_features(dataset.x_train[val_idx], dtype), dataset.y_train[val_idx]
    splits = _Splits(
        x_train=pixels_to_features(dataset.x_train[train_idx], dtype),
        y_train=dataset.y_train[train_idx],
        x_val=x_val,
        y_val=y_val,
        x_test=pixels_to_features(dataset.x_test, dtype),
        y_test=dataset.y_test,
        test_images=dataset.x_test,
        classes=tuple(dataset.classes),
        data_dir=Path(dataset.data_dir),
    )
    logger.info(
        "data: %d train, %d validation, %d test images from %s",
        len(train_idx), len(val_idx), len(splits.y_test), splits.data_dir,
    )
    return splits


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
    es = config.early_stopping
    # Without a validation set the best epoch is the one with the lowest training loss.
    monitor = es.monitor if has_val else "train_loss"
    stopper = None
    if es.patience is not None:
        stopper = EarlyStopping(
            patience=es.patience, min_delta=es.min_delta, mode=MONITOR_MODES[monitor], monitor=monitor
        )
    return NumpyTrainer(
        network,
        loss=SoftmaxCrossEntropyLoss(),
        optimizer=optimizer,
        rng=train_rng,
        batch_size=config.optim.batch_size,
        early_stopping=stopper,
        monitor=monitor,
        restore_best=False,  # train_run scores both the last and the best weights
        progress=progress,
    )


class _EpochWriter:
    """The trainer's ``on_epoch_end``: what a finished epoch leaves on disk.

    It refuses non-finite weights, appends the epoch's line to ``metrics.jsonl`` and saves
    ``model.safetensors`` when this epoch's weights are the ones to keep: the best epoch so far,
    or every epoch when ``keep_every_epoch`` (``restore_best`` off). So the file always holds the
    model the run would deliver if it stopped now, and never weights of a diverged step.
    """

    def __init__(
        self,
        run_dir: Path,
        trainer: NumpyTrainer,
        *,
        spec: MLPSpec,
        classes: tuple[str, ...],
        epochs: int,
        keep_every_epoch: bool,
    ) -> None:
        self.metrics = _MetricsLog(run_dir / METRICS_FILE)
        self.model_path = run_dir / MODEL_FILE
        self.trainer = trainer
        self.spec, self.classes, self.epochs = spec, classes, epochs
        self.keep_every_epoch = keep_every_epoch
        self.saved_epoch: int | None = None

    def __call__(self, record: dict[str, Any]) -> None:
        epoch, network = record["epoch"], self.trainer.network
        # The last step of an epoch may overflow after a finite loss: such weights are never kept.
        if not all(np.isfinite(p.data).all() for p in network.parameters().values()):
            raise TrainingDivergedError(
                f"training diverged: the weights hold NaN or inf after epoch {epoch} "
                f"(lr={self.trainer.optimizer.lr:g}); try a smaller learning rate"
            )
        self.metrics.append(record)
        logger.info(
            "epoch %d/%d  train_loss %.4f  val_loss %s  val_accuracy %s  (%.2f s)",
            epoch, self.epochs, record["train_loss"],
            _fmt(record["val_loss"]), _fmt(record["val_accuracy"]), record["seconds"],
        )
        if self.keep_every_epoch or self.trainer.history.best_epoch == epoch:
            save_weights(network, self.model_path, metadata=_model_metadata(self.spec, self.classes, epoch))
            self.saved_epoch = epoch


def train_run(config: RunConfig, *, progress: bool = False, overwrite: bool = False) -> RunResult:
    """Train the configured network on Fashion-MNIST and write one run directory.

    Parameters
    ----------
    config : RunConfig
        The whole run: model, optimizer, early stopping, data, seed and output directory.
    progress : bool
        Show a progress bar per epoch (the CLI turns it on when stderr is a terminal).
    overwrite : bool
        Allow a non-empty ``config.run.out``; its run files (:data:`RUN_FILES`) are removed first,
        other files are left alone.

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
        ``val_size`` leaves no training data.
    TrainingDivergedError
        The loss or the weights became NaN or infinite. ``metrics.jsonl`` keeps the finished epochs,
        ``summary.json`` says why the run stopped, and ``model.safetensors`` holds the last good
        model if one was saved (never diverged weights).
    """
    started = time.perf_counter()
    run_dir, created = _prepare_run_dir(config, overwrite=overwrite)
    logger.info("run directory: %s", run_dir)
    split_rng, init_rng, train_rng = (
        np.random.default_rng(seed) for seed in np.random.SeedSequence(config.run.seed).spawn(3)
    )
    try:
        data = _prepare_data(config, split_rng)
    except BaseException:
        if created and not any(run_dir.iterdir()):
            run_dir.rmdir()  # leave no empty run directory behind a run that never started
        raise

    spec = config.model.to_spec(in_features=data.x_train.shape[1], out_features=len(data.classes))
    has_val = data.x_val is not None
    trainer = _build_trainer(
        config, spec, has_val=has_val, init_rng=init_rng, train_rng=train_rng, progress=progress
    )
    restore_best = config.early_stopping.restore_best
    writer = _EpochWriter(
        run_dir, trainer, spec=spec, classes=data.classes, epochs=config.optim.epochs,
        keep_every_epoch=not restore_best,
    )
    trainer.on_epoch_end = writer
    recorded = dataclasses.replace(config, run=dataclasses.replace(config.run, out=None))
    atomic_write_json(run_dir / CONFIG_FILE, recorded.to_dict())

    try:
        history = trainer.fit(data.x_train, data.y_train, data.x_val, data.y_val, epochs=config.optim.epochs)
    except TrainingDivergedError as exc:
        writer.metrics.rewrite()
        atomic_write_json(
            run_dir / SUMMARY_FILE,
            {
                "status": "diverged",
                "stop_reason": str(exc),
                "epochs_run": len(writer.metrics.lines),
                "best_epoch": trainer.history.best_epoch if writer.saved_epoch is not None else None,
                "saved_model_epoch": writer.saved_epoch,
                "test_accuracy": None,
                "test_loss": None,
                "wall_seconds": time.perf_counter() - started,
                "data_dir": str(data.data_dir),
                **_versions(),
            },
        )
        saved = writer.saved_epoch
        kept = "no model was saved" if saved is None else f"the model of epoch {saved} is kept"
        raise TrainingDivergedError(
            f"{exc}. {len(writer.metrics.lines)} finished epoch(s) are in {writer.metrics.path}; {kept}"
        ) from exc

    writer.metrics.rewrite()
    summary = _finish_run(run_dir, recorded, trainer, data, started=started, restore_best=restore_best)
    return RunResult(run_dir, config, history, summary)


def _finish_run(
    run_dir: Path,
    recorded: RunConfig,
    trainer: NumpyTrainer,
    data: _Splits,
    *,
    started: float,
    restore_best: bool,
) -> dict[str, Any]:
    """Score the last and the best weights on the test set; write the figures, summary and report."""
    network, history = trainer.network, trainer.history
    last_state = {name: p.data.copy() for name, p in network.named_parameters().items()}
    final, final_pred = _score(network, data.x_test, data.y_test)
    trainer.restore_best_weights()
    best, best_pred = _score(network, data.x_test, data.y_test)
    if not restore_best:
        for name, p in network.named_parameters().items():
            p.data[...] = last_state[name]
    # model.safetensors already holds these weights: _EpochWriter saved them when they were current.
    saved, predicted = (best, best_pred) if restore_best else (final, final_pred)
    best_record = history.records[history.best_epoch - 1]

    figures: dict[str, str] = {}
    if importlib.util.find_spec("matplotlib") is not None:
        from mlpkit.evaluate.plots import plot_curves, plot_predictions

        plot_curves(history.records, run_dir / CURVES_FILE, best_epoch=history.best_epoch)
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
        "monitor": trainer.monitor,
        "best_val_loss": best_record["val_loss"],
        "best_val_accuracy": best_record["val_accuracy"],
        "epochs_run": len(history.records),
        "stop_reason": history.stop_reason,
        "n_train": len(data.y_train),
        "n_val": 0 if data.y_val is None else len(data.y_val),
        "n_test": len(data.y_test),
        "wall_seconds": time.perf_counter() - started,
        "data_dir": str(data.data_dir),
        **_versions(),
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
    )
    atomic_write_text(run_dir / REPORT_FILE, report)
    logger.info("test accuracy %.4f (best epoch %d)", saved["accuracy"], history.best_epoch)
    return summary


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


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


def evaluate_run(run_dir: str | os.PathLike[str]) -> dict[str, float | int]:
    """Score a saved run's model on the Fashion-MNIST test set, found as the run found it.

    Returns
    -------
    dict
        ``test_accuracy``, ``test_loss`` and ``n_test``; the same numbers as the run's
        ``summary.json`` for the same data.

    Raises
    ------
    CheckpointError
        If the run directory is missing or corrupt (see :func:`load_run`).
    DataNotFoundError, DataFormatError
        If the test data cannot be loaded.
    """
    loaded = load_run(run_dir)
    dataset = _load_dataset(loaded.config)
    if tuple(dataset.classes) != loaded.classes:
        raise CheckpointError(
            f"{run_dir}: the model's classes {loaded.classes} differ from the data's {dataset.classes}"
        )
    x_test = pixels_to_features(dataset.x_test, loaded.network.dtype)
    scores, _ = _score(loaded.network, x_test, dataset.y_test)
    return {"test_accuracy": scores["accuracy"], "test_loss": scores["loss"], "n_test": len(dataset.y_test)}


def read_images(path: str | os.PathLike[str], *, n_features: int = 784) -> np.ndarray:
    """Read grey-level images to classify, checked, as (N, D) raw pixel values.

    Formats, chosen by suffix:

    - ``.npy``: an array (N, D) or (N, 28, 28), loaded with ``allow_pickle=False``;
    - ``.csv``: N rows of D comma-separated numbers, no header;
    - anything else: an IDX image file (N, 28, 28), gzipped or not (the data set's own format).

    Values are grey levels on the data set's 0..255 scale, whatever the dtype: mlpkit scales them
    exactly as it scaled the training images.

    Parameters
    ----------
    path : str or os.PathLike
    n_features : int
        D, the model's input width.

    Returns
    -------
    ndarray of shape (N, D)

    Raises
    ------
    DataNotFoundError
        If ``path`` does not exist.
    DataFormatError
        Naming the file and the problem: unreadable or malformed content, no rows, the wrong
        number of features (both counts), NaN or inf (the first position), or a value outside 0..255.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{path}: no such input file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise DataFormatError(f"{path}: not a readable .npy array ({exc})") from exc
    elif suffix == ".csv":
        try:
            with warnings.catch_warnings():
                # "input contained no data" is reported below as a DataFormatError naming the file.
                warnings.simplefilter("ignore", UserWarning)
                array = np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64)
        except ValueError as exc:
            raise DataFormatError(
                f"{path}: expected rows of comma-separated numbers without a header ({exc})"
            ) from exc
    else:
        array = read_idx(path)
        if array.ndim != 3:
            raise DataFormatError(
                f"{path}: expected an IDX image file of shape (N, 28, 28), got shape {array.shape}"
            )
    if array.ndim == 3:
        if array.shape[1:] != FASHION_MNIST.image_shape:
            raise DataFormatError(f"{path}: expected images of shape (N, 28, 28), got shape {array.shape}")
        array = array.reshape(len(array), -1)                              # (N, 28, 28) -> (N, 784)
    if array.size == 0:
        raise DataFormatError(f"{path}: no images to classify (shape {array.shape})")
    features = check_features(str(path), array, n_features=n_features)
    outside = (features < 0) | (features > MAX_PIXEL)
    if outside.any():
        row, col = np.argwhere(outside)[0]
        raise DataFormatError(
            f"{path}: pixel values must be grey levels in [0, {MAX_PIXEL}], "
            f"got {features[row, col].item()!r} at row {row}, column {col}"
        )
    if features.dtype.kind == "f" and features.max() <= 1.0 and features.any():
        logger.warning(
            "%s: every value is <= 1; inputs are grey levels 0..255, not already scaled to [0, 1]", path
        )
    return features


@dataclass(frozen=True)
class Predictions:
    """Class predictions for N images.

    Parameters
    ----------
    probabilities : ndarray of shape (N, C)
        Softmax of the logits, rows summing to 1.
    class_names : tuple of str
        The C class names.
    """

    probabilities: np.ndarray
    class_names: tuple[str, ...]

    @property
    def labels(self) -> np.ndarray:
        """Predicted class index per row, (N,)."""
        labels: np.ndarray = self.probabilities.argmax(axis=1)
        return labels

    def to_csv(self) -> str:
        """``row,class,class_name,probability``, one line per image, with a header."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["row", "class", "class_name", "probability"])
        labels = self.labels
        for row, (label, probs) in enumerate(zip(labels, self.probabilities, strict=True)):
            writer.writerow([row, int(label), self.class_names[label], f"{probs[label]:.6f}"])
        return buffer.getvalue()


def predict_run(run_dir: str | os.PathLike[str], file: str | os.PathLike[str]) -> Predictions:
    """Classify the images in ``file`` with a saved run's model.

    Parameters
    ----------
    run_dir : str or os.PathLike
        A run directory written by :func:`train_run`.
    file : str or os.PathLike
        Images as IDX, ``.npy`` or ``.csv`` (see :func:`read_images`).

    Returns
    -------
    Predictions

    Raises
    ------
    CheckpointError
        If the run directory is missing or corrupt.
    DataNotFoundError, DataFormatError
        If ``file`` is missing or malformed (see :func:`read_images`).
    """
    loaded = load_run(run_dir)
    pixels = read_images(file, n_features=loaded.spec.in_features)
    logits = predict_logits(loaded.network, pixels_to_features(pixels, loaded.network.dtype))  # (N, C)
    probabilities = np.exp(log_softmax(logits.astype(np.float64)))                              # (N, C)
    return Predictions(probabilities, loaded.classes)
