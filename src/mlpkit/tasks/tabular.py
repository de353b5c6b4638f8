"""The table task: a user's CSV or Parquet file, one target column, classification or regression.

What ``mlpkit train --data FILE_OR_DIR --target COLUMN`` needs that is particular to a user's own
table (:class:`TableTask`): the file read and its columns typed (:mod:`mlpkit.data.tabular`), one
file split by seed into train / validation / test (stratified for classification) or a directory's
``train``, ``valid`` and ``test`` files, the preprocessing fitted on the training rows only and saved
as ``preprocessing.json``, an MLP (one-hot categories on the NumPy engine, embeddings on the torch
engine, :class:`mlpkit.models.tabular.TabularMLP`), cross-entropy or the mean squared error of the
standardized target, and the test scores a practitioner reads: accuracy, balanced accuracy, AUC
(binary, or one-vs-rest averaged over the classes), log loss and the confusion matrix; or RMSE, MAE
and R², with a predicted-against-true and a residual plot.

:func:`load_table_run`, :func:`evaluate_table_run` and :func:`predict_table_run` reuse a run: new
rows are transformed by the saved preprocessing, never refitted.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mlpkit import __version__
from mlpkit._checks import check_choice
from mlpkit._io import atomic_write_json, atomic_write_text
from mlpkit.config import TableConfig
from mlpkit.data.tabular import (
    ColumnPlan,
    TableArrays,
    TablePreprocessor,
    check_columns,
    embedding_size,
    infer_task,
    missing_mask,
    plan_columns,
    read_frame,
    split_rows,
)
from mlpkit.engine.losses import log_softmax
from mlpkit.errors import CheckpointError, ConfigError
from mlpkit.evaluate.metrics import confusion_matrix, log_loss, roc_auc
from mlpkit.rundir import (
    CURVES_FILE,
    PREDICTED_FILE,
    PREPROCESSING_FILE,
    REPORT_FILE,
    RESIDUALS_FILE,
    SUMMARY_FILE,
    warn_if_unfinished,
)
from mlpkit.spec import MLPSpec
from mlpkit.tasks.base import FinishedRun, Splits, Task, absolute, open_saved_run, run_seeds

__all__ = [
    "LoadedTableRun",
    "TableData",
    "TableSplits",
    "TableTask",
    "build_table_model",
    "classification_report",
    "evaluate_table_run",
    "load_table_run",
    "model_inputs",
    "predict_table_run",
    "read_split_frames",
    "regression_report",
]

logger = logging.getLogger(__name__)


# -- scores --------------------------------------------------------------------------------------


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities (N, K) of logits (N, K), by the engine's stable log-softmax."""
    return np.exp(log_softmax(np.asarray(logits, np.float64)))


def classification_report(y: np.ndarray, logits: np.ndarray) -> dict[str, Any]:
    """Test scores of K-class logits (N, K) against class indices (N,).

    ``auc`` is the ROC AUC of the positive class for K = 2, else the mean over the classes present
    (with both positives and negatives) of each class's one-vs-rest AUC (scikit-learn's
    ``roc_auc_score(multi_class="ovr", average="macro")``); ``balanced_accuracy`` is the mean recall
    over the classes that occur.
    """
    y = np.asarray(y, np.int64)
    logits = np.asarray(logits, np.float64)
    k = logits.shape[1]
    predicted = logits.argmax(axis=1)
    confusion = confusion_matrix(y, predicted, num_classes=k)
    recalls = np.diag(confusion) / np.maximum(confusion.sum(axis=1), 1)
    present = confusion.sum(axis=1) > 0
    if k == 2:
        auc: float | None = roc_auc(y, logits[:, 1] - logits[:, 0]) if present.all() else None
    else:
        p = _softmax(logits)
        aucs = [roc_auc((y == c).astype(np.int64), p[:, c]) for c in range(k) if 0 < (y == c).sum() < len(y)]
        auc = float(np.mean(aucs)) if aucs else None
    return {
        "accuracy": float(np.mean(predicted == y)),
        "balanced_accuracy": float(recalls[present].mean()),
        "auc": auc,
        "logloss": log_loss(y, logits=logits),
        "confusion_matrix": confusion.tolist(),
    }


def regression_report(y: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """RMSE, MAE and R² = 1 - Σ(y - ŷ)² / Σ(y - ȳ)² of predictions (N,) in the target's units."""
    y, predicted = np.asarray(y, np.float64), np.asarray(predicted, np.float64)
    error = predicted - y
    total = float(np.sum((y - y.mean()) ** 2))
    return {
        "rmse": float(np.sqrt(np.mean(error**2))),
        "mae": float(np.mean(np.abs(error))),
        "r2": 1.0 - float(np.sum(error**2)) / total if total > 0 else float("nan"),
    }


# -- the data of a run ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TableData:
    """What a table run keeps beside its arrays: the fitted preprocessing, the column plan, the file
    of each split, and why the task is what it is."""

    preprocessor: TablePreprocessor
    plans: tuple[ColumnPlan, ...]
    sources: dict[str, str]
    task_reason: str


@dataclass(frozen=True)
class TableSplits:
    """The rows of a table run before preprocessing.

    Parameters
    ----------
    frames : dict of str to DataFrame
        ``"train"``, ``"val"``, ``"test"``; each keeps the row labels of its file (0 for the first
        data row), so a message names the row of the file, not of the split.
    sources : dict of str to str
        The file each split was read from (one file for all three when split by seed).
    kind, reason : str
        The task (``classification`` or ``regression``) and why, decided once for the whole table.
    """

    frames: dict[str, Any]
    sources: dict[str, str]
    kind: str
    reason: str


def _without_missing_targets(frame: Any, target: str, source: str) -> Any:
    """Rows with a target value; the others are dropped with a note (they can neither train nor score)."""
    missing = missing_mask(frame[target])
    if missing.any():
        logger.info("data: %s: %d row(s) with no %r value dropped", source, int(missing.sum()), target)
        return frame[~missing]
    return frame


def _read_splits(config: TableConfig, rng: np.random.Generator) -> TableSplits:
    """The train / val / test rows of the configured file (split by ``rng``) or directory."""
    from mlpkit.data.table_io import find_split_files

    data = config.data
    if data.path is None or data.target is None:
        missing = [
            flag for flag, value in (("--data", data.path), ("--target", data.target)) if value is None
        ]
        raise ConfigError(f"a table run needs {' and '.join(missing)}: the table and the column to predict")
    target = data.target
    task = None if data.task == "auto" else data.task
    path = Path(data.path).expanduser()
    if path.is_dir():
        files = find_split_files(path)
        names = {"train": "train", "val": "valid", "test": "test"}
        sources = {split: str(files[name]) for split, name in names.items()}
        frames = {}
        for split, source in sources.items():
            frame = read_frame(source)
            check_columns(frame, [target], what="target", source=source)
            frames[split] = _without_missing_targets(frame, target, source)
        kind, reason = infer_task(
            frames["train"][target], target, task=task, max_categories=data.max_categories
        )
        return TableSplits(frames, sources, kind, reason)
    frame = read_frame(path)
    check_columns(frame, [target], what="target", source=str(path))
    frame = _without_missing_targets(frame, target, str(path))
    # The task is decided on the whole table, before the split: it decides whether the split is
    # stratified, and a class that falls only in validation must not turn the training rows'
    # target into another task.
    kind, reason = infer_task(frame[target], target, task=task, max_categories=data.max_categories)
    classes = frame[target].astype(str).to_numpy() if kind == "classification" else None
    train, val, test = split_rows(
        len(frame), rng, classes=classes, val_fraction=data.val_fraction, test_fraction=data.test_fraction
    )
    frames = {name: frame.iloc[rows] for name, rows in (("train", train), ("val", val), ("test", test))}
    return TableSplits(frames, dict.fromkeys(frames, str(path)), kind, reason)


def read_split_frames(config: TableConfig) -> TableSplits:
    """The train / val / test rows of a table run as its seed splits them: what
    :func:`evaluate_table_run` scores."""
    return _read_splits(config, run_seeds(config.run.seed)[0])


class TableTask(Task):
    """A user's table: an MLP, cross-entropy or MSE, and the scores of the task's kind."""

    name = "table"
    numpy_engine = True
    monitor_modes: ClassVar[Mapping[str, str]] = {
        "val_loss": "min",
        "val_accuracy": "max",
        "train_loss": "min",
    }
    test_scores: ClassVar[tuple[str, ...]] = ("accuracy", "loss")

    config: TableConfig

    def recorded(self) -> TableConfig:
        config = super().recorded()
        if config.data.path is None:
            return config
        return dataclasses.replace(
            config, data=dataclasses.replace(config.data, path=absolute(config.data.path))
        )

    def with_data_dir(self, data_dir: str | os.PathLike[str] | None) -> TableTask:
        if data_dir is None:
            return self
        data = dataclasses.replace(self.config.data, path=absolute(data_dir))
        return type(self)(dataclasses.replace(self.config, data=data))

    @property
    def torch_inputs(self) -> bool:
        """Named ids and numbers for the torch model (else one-hot rows for the NumPy engine)."""
        return self.config.run.engine == "torch"

    def load(self, split_rng: np.random.Generator, *, log: bool = True) -> Splits:
        """Read, type and split the table; fit the preprocessing on the training rows; transform all three."""
        data = self.config.data
        table = _read_splits(self.config, split_rng)
        frames, sources, kind = table.frames, table.sources, table.kind
        target = str(data.target)
        train = frames["train"]
        plans = plan_columns(
            train,
            target,
            categorical=data.categorical,
            numeric=data.numeric,
            ignore=data.ignore,
            max_categories=data.max_categories,
            source=sources["train"],
        )
        pre = TablePreprocessor.fit(train, plans, target, kind)
        self.kind = kind
        if log:
            logger.info("data: %s, %s (%s)", str(data.path), kind, table.reason)
            for plan in plans:
                logger.info("  column %-24s %-11s %s", repr(plan.name), plan.kind, plan.reason)
            logger.info(
                "data: %d train, %d validation, %d test rows; %d numeric and %d categorical columns%s",
                len(frames["train"]),
                len(frames["val"]),
                len(frames["test"]),
                len(pre.numeric),
                len(pre.categorical),
                f", {len(pre.classes)} classes" if kind == "classification" else "",
            )
        arrays = {split: self._inputs(pre, frame, sources[split]) for split, frame in frames.items()}
        targets = {split: self._targets(pre, frame, sources[split]) for split, frame in frames.items()}
        has_val = len(frames["val"]) > 0
        return Splits(
            x_train=arrays["train"],
            y_train=targets["train"],
            x_val=arrays["val"] if has_val else None,
            y_val=targets["val"] if has_val else None,
            x_test=arrays["test"],
            y_test=targets["test"],
            source=str(Path(str(data.path)).expanduser().resolve()),
            extra=TableData(pre, tuple(plans), sources, table.reason),
        )

    def _inputs(self, pre: TablePreprocessor, frame: Any, source: str) -> Any:
        return model_inputs(pre, pre.transform(frame, source=source), torch_inputs=self.torch_inputs)

    def _targets(self, pre: TablePreprocessor, frame: Any, source: str) -> np.ndarray:
        y = pre.encode_target(frame[pre.target], source=source)
        if pre.task == "regression" and not self.torch_inputs:
            return y.reshape(-1, 1)  # the engine's MSELoss compares (N, 1) with (N, 1)
        return y

    # -- model --------------------------------------------------------------------------------------

    def spec(self, data: Splits) -> MLPSpec:
        """The NumPy engine's MLP: one-hot width in, one logit per class (or one value) out."""
        pre = data.extra.preprocessor
        return self.config.model.to_spec(pre.one_hot_width, pre.num_outputs)

    def numpy_loss(self, data: Splits) -> Any:
        from mlpkit.engine.losses import MSELoss, SoftmaxCrossEntropyLoss

        return MSELoss() if data.extra.preprocessor.task == "regression" else SoftmaxCrossEntropyLoss()

    kind: str | None = None
    """``classification`` or ``regression``, once :meth:`load` has read the target."""

    def check_resources(self, data: Splits, *, device: str) -> None:
        # Before anything is written: a regression has no accuracy to pick an epoch by.
        regression = data.extra.preprocessor.task == "regression"
        if self.config.early_stopping.monitor == "val_accuracy" and regression:
            raise ConfigError(
                f"[early_stopping] monitor 'val_accuracy' needs a classification target, but "
                f"{self.config.data.target!r} is a regression target; use val_loss"
            )

    def build_model(self, data: Splits, init_rng: np.random.Generator) -> Any:
        return build_table_model(self.config, data.extra.preprocessor, init_rng)

    def trainer_options(self, model: Any) -> dict[str, Any]:
        from mlpkit.train.torch_trainer import build_loss

        return {"loss": build_loss("mse" if self.kind == "regression" else "cross_entropy")}

    def run_files(self, data: Splits) -> dict[str, Any]:
        return {PREPROCESSING_FILE: data.extra.preprocessor.to_dict()}

    def model_metadata(self, data: Splits, epoch: int, engine: str) -> dict[str, str]:
        return {
            "format": "mlpkit.table",
            "task": data.extra.preprocessor.task,
            "epoch": str(epoch),
            "engine": engine,
            "mlpkit_version": __version__,
        }

    # -- results ------------------------------------------------------------------------------------

    def finish(self, run: FinishedRun) -> dict[str, Any]:
        """Score the saved weights on the test rows; write the curves, plots, summary and report."""
        data, history, trainer = run.data, run.history, run.trainer
        pre: TablePreprocessor = data.extra.preprocessor
        _load_state(trainer, run.best_state if run.restore_best else run.last_state)
        logits = _trainer_logits(trainer, data.x_test)
        scores = _scores(pre, data.y_test, logits)
        best_record = history.records[history.best_epoch - 1]
        figures = self._figures(run, pre, data.y_test, logits, scores)
        facts = dict(run.facts)
        summary: dict[str, Any] = {
            "status": facts.pop("status"),
            "task": pre.task,
            **{f"test_{k}": v for k, v in scores.items()},
            "test_loss": _loss(pre, data.y_test, logits),
            "best_val_loss": best_record.get("val_loss"),
            "best_val_accuracy": best_record.get("val_accuracy"),
            "params": _parameters(trainer),
            **data.sizes,
            "data": data.source,
            "columns": {p.name: p.kind for p in data.extra.plans},
            "classes": pre.classes,
            **facts,
        }
        summary.setdefault("test_accuracy", None)
        atomic_write_json(run.run_dir / SUMMARY_FILE, summary)
        from mlpkit.evaluate.report import render_table_report

        report = render_table_report(
            title=run.run_dir.name,
            config=self.recorded().to_dict(),
            records=history.records,
            summary=summary,
            figures=figures,
            provenance=run.provenance,
        )
        atomic_write_text(run.run_dir / REPORT_FILE, report)
        return summary

    def _figures(
        self,
        run: FinishedRun,
        pre: TablePreprocessor,
        y: np.ndarray,
        logits: np.ndarray,
        scores: Mapping[str, Any],
    ) -> dict[str, str]:
        if importlib.util.find_spec("matplotlib") is None:
            return {}
        from mlpkit.evaluate.plots import plot_curves, plot_regression

        regression = pre.task == "regression"
        headline = (
            f"test RMSE {scores['rmse']:.4g}" if regression else f"test accuracy {scores['accuracy']:.4f}"
        )
        plot_curves(
            run.history.records,
            run.run_dir / CURVES_FILE,
            best_epoch=run.history.best_epoch,
            title=f"{run.run_dir.name}: {headline}",
            metrics=("loss",) if regression else ("loss", "accuracy"),
        )
        figures = {"loss per epoch": CURVES_FILE}
        if regression:
            true = pre.decode_regression(np.ravel(y))
            predicted = pre.decode_regression(np.ravel(logits))
            plot_regression(
                true,
                predicted,
                predicted_path=run.run_dir / PREDICTED_FILE,
                residuals_path=run.run_dir / RESIDUALS_FILE,
                target=pre.target,
            )
            figures |= {"predicted against true (test)": PREDICTED_FILE, "residuals (test)": RESIDUALS_FILE}
        return figures


def model_inputs(pre: TablePreprocessor, arrays: TableArrays, *, torch_inputs: bool) -> Any:
    """The trainer's input of transformed rows: one-hot (N, D) for the NumPy engine, or the torch
    model's named batch ``{"numeric": (N, D_num) float32, "categorical": (N, C) int64}``."""
    if not torch_inputs:
        return pre.one_hot(arrays)
    return {"numeric": arrays.numeric, "categorical": arrays.categorical}


def build_table_model(config: TableConfig, pre: TablePreprocessor, init_rng: np.random.Generator) -> Any:
    """The torch engine's :class:`~mlpkit.models.tabular.TabularMLP`, initial weights drawn from a
    torch generator seeded by ``init_rng`` (the Linear weights by ``[model] init``, the embedding
    rows N(0, 0.01²) as fastai's)."""
    import torch

    from mlpkit.models.tabular import TabularMLP

    model_config = config.model
    dims = [
        model_config.embedding_dims.get(c["name"], embedding_size(n))
        for c, n in zip(pre.categorical, pre.cardinalities, strict=True)
    ]
    generator = torch.Generator().manual_seed(int(init_rng.integers(2**62)))
    model = TabularMLP(
        pre.numeric_width,
        pre.cardinalities,
        dims,
        model_config.hidden_features,
        pre.num_outputs,
        activation=model_config.activation,
        dropout=model_config.dropout,
        squeeze=pre.task == "regression",
    )
    model.mlp.init_weights(model_config.init, std=model_config.init_std, generator=generator)
    with torch.no_grad():
        for table in model.embeddings:
            table.weight.normal_(0.0, 0.01, generator=generator)
    model = model.to(getattr(torch, config.run.dtype))
    logger.info(
        "model: MLP %s on %d numbers and %d embedded columns (widths %s), %s parameters",
        "-".join(map(str, model_config.hidden_features)),
        pre.numeric_width,
        len(dims),
        dims,
        f"{sum(p.numel() for p in model.parameters()):,}",
    )
    return model


def _load_state(trainer: Any, state: Mapping[str, np.ndarray]) -> None:
    """Weights in the file layout (torch's names and shapes) into the trainer's model."""
    if hasattr(trainer, "network"):
        trainer.network.load_state_dict(dict(state))
        return
    from mlpkit.torch_engine import load_state_arrays

    load_state_arrays(trainer.model, state)


def _trainer_logits(trainer: Any, x: Any) -> np.ndarray:
    """Logits of the trainer's current weights: (N, K), or (N,) for the torch regression model."""
    if hasattr(trainer, "predict_logits"):
        return np.asarray(trainer.predict_logits(x))
    from mlpkit.train.numpy_trainer import predict_logits

    return predict_logits(trainer.network, x)


def _parameters(trainer: Any) -> int:
    if hasattr(trainer, "network"):
        return int(sum(p.data.size for p in trainer.network.parameters().values()))
    return int(sum(p.numel() for p in trainer.model.parameters()))


def _scores(pre: TablePreprocessor, y: np.ndarray, logits: np.ndarray) -> dict[str, Any]:
    if pre.task == "regression":
        return regression_report(pre.decode_regression(np.ravel(y)), pre.decode_regression(np.ravel(logits)))
    return classification_report(y, logits)


def _loss(pre: TablePreprocessor, y: np.ndarray, logits: np.ndarray) -> float:
    """The training objective on the test rows: cross-entropy, or the MSE of the standardized target."""
    if pre.task == "regression":
        return float(np.mean((np.ravel(logits).astype(np.float64) - np.ravel(y)) ** 2))
    return log_loss(y, logits=logits)


# -- reusing a saved table run -------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedTableRun:
    """A saved table run, rebuilt: its config, the fitted preprocessing and the model with its weights."""

    run_dir: Path
    config: TableConfig
    preprocessor: TablePreprocessor
    model: Any

    @property
    def engine(self) -> str:
        return self.config.run.engine

    def logits(self, arrays: TableArrays, *, batch_size: int = 8192) -> np.ndarray:
        """Logits of transformed rows: (N, K) for classification, (N,) standardized for regression."""
        pre = self.preprocessor
        if self.engine == "numpy":
            from mlpkit.train.numpy_trainer import predict_logits

            out = predict_logits(self.model, pre.one_hot(arrays), batch_size=batch_size)
            return out[:, 0] if pre.task == "regression" else out
        import torch

        dtype = next(self.model.parameters()).dtype
        parts = []
        with torch.no_grad():
            for start in range(0, len(arrays), batch_size):
                piece = slice(start, start + batch_size)
                batch = {
                    "numeric": torch.as_tensor(arrays.numeric[piece]).to(dtype),
                    "categorical": torch.as_tensor(arrays.categorical[piece]),
                }
                parts.append(self.model(batch).to(torch.float64).numpy())
        return np.concatenate(parts)


def load_table_run(run_dir: str | os.PathLike[str]) -> LoadedTableRun:
    """Rebuild a table run's model from ``config.json``, ``preprocessing.json`` and ``model.safetensors``.

    Raises
    ------
    CheckpointError
        Naming the path: no such directory, a missing or invalid file, weights that do not fit.
    """
    saved = open_saved_run(
        run_dir, task="table", kind="a table run", fitted_file=PREPROCESSING_FILE,
        parse=TablePreprocessor.from_dict, needed_for="to transform rows as the training rows were",
    )
    run_dir, config, pre, model_path = saved.run_dir, saved.config, saved.fitted, saved.model_path
    try:
        if config.run.engine == "numpy":
            from mlpkit.engine.network import build_mlp, load_weights

            model = build_mlp(
                config.model.to_spec(pre.one_hot_width, pre.num_outputs),
                rng=np.random.default_rng(0),
                dtype=np.dtype(config.run.dtype),
            )
            load_weights(model, model_path)
        else:
            from mlpkit.torch_engine import load_torch_weights

            model = build_table_model(config, pre, np.random.default_rng(0))
            load_torch_weights(model, model_path)
    except CheckpointError:
        raise
    except Exception as exc:  # safetensors' own error for a malformed file, ours for a misfit
        raise CheckpointError(f"{model_path}: cannot load the weights ({exc})") from exc
    model.eval()
    return LoadedTableRun(run_dir, config, pre, model)


def evaluate_table_run(
    run_dir: str | os.PathLike[str], *, data_dir: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Score a saved table run on its test rows (the same split, by the run's seed), transformed by
    the saved preprocessing; ``data_dir`` replaces the recorded table (file or directory).

    Returns
    -------
    dict
        ``task``, ``n_test`` and the ``test_*`` scores of ``summary.json``.
    """
    loaded = load_table_run(run_dir)
    warn_if_unfinished(loaded.run_dir, "scoring")
    config = loaded.config
    if data_dir is not None:
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, path=absolute(data_dir)))
    table = read_split_frames(config)
    pre = loaded.preprocessor
    source, test = table.sources["test"], table.frames["test"]
    y = pre.encode_target(test[pre.target], source=source)
    logits = loaded.logits(pre.transform(test, source=source))
    scores = _scores(pre, y, logits)
    return {
        "task": pre.task,
        "n_test": len(test),
        **{f"test_{k}": v for k, v in scores.items()},
        "class_names": pre.classes,
    }


def predict_table_run(
    run_dir: str | os.PathLike[str], file: str | os.PathLike[str], *, runtime: str = "native"
) -> tuple[str, dict[str, Any]]:
    """Predictions for every row of ``file`` as CSV text, and facts for the log.

    The CSV has ``prediction`` (the class, or the value in the target's units) and, for
    classification, ``p_<class>`` per class. The file needs the columns the model reads; the target
    and other columns are ignored (with a note); a missing column is an error naming it.
    ``runtime="onnx"`` scores with the run's ONNX export (``mlpkit export``) under onnxruntime.
    """
    import pandas as pd

    from mlpkit.runtime import RUNTIMES, OnnxModel

    loaded = load_table_run(run_dir)
    warn_if_unfinished(loaded.run_dir, "predicting with")
    logits_of = loaded.logits
    if check_choice("runtime", runtime, RUNTIMES) == "onnx":
        exported = OnnxModel.for_run(loaded.run_dir)

        def logits_of(arrays: TableArrays) -> np.ndarray:
            return exported.run({"numeric": arrays.numeric, "categorical": arrays.categorical})

    pre = loaded.preprocessor
    frame = read_frame(file)
    extra = [c for c in map(str, frame.columns) if c not in pre.columns]
    if extra:
        logger.info("note: %d column(s) the model does not read are ignored: %s", len(extra), _few(extra))
    logits = logits_of(pre.transform(frame, source=str(file)))
    if pre.task == "regression":
        out = pd.DataFrame({"prediction": pre.decode_regression(logits)})
    else:
        p = _softmax(logits)  # (N, K)
        out = pd.DataFrame({"prediction": np.asarray(pre.classes, dtype=object)[p.argmax(axis=1)]})
        for k, name in enumerate(pre.classes):
            out[f"p_{name}"] = p[:, k]
    return out.to_csv(index=False, float_format="%.6g"), {"rows": len(frame), "ignored": extra}


def _few(names: Sequence[str], limit: int = 8) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")
