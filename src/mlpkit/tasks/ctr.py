"""The CTR task: rows of categorical (and numeric) fields in, one click logit per row out.

What ``mlpkit ctr train`` needs that is particular to click-through-rate data
(:class:`CTRTask`): the train / valid / test tables encoded into per-field ids
(:func:`mlpkit.data.load_table_dataset`, cached and memory-mapped), a model of the CTR zoo
(:func:`mlpkit.models.ctr.build_ctr_model`), the mean binary cross-entropy on logits plus BARS's L2
penalty on the embeddings, and the whole-set validation metrics AUC and log loss (AUC needs every
score, gathered across ranks). The protocol's defaults are BARS's (:class:`~mlpkit.config.CTRConfig`).

The run directory is the one every run writes (:mod:`mlpkit.run`), plus ``table.json``: the
encoding fitted on the training file, with which :func:`predict_ctr_run` and
:func:`evaluate_ctr_run` encode new rows exactly as the model saw its training rows (unseen
categories become the out-of-vocabulary id). Torch is imported only where a model is built.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mlpkit import __version__
from mlpkit._checks import check_choice
from mlpkit._io import atomic_path, atomic_write_json, atomic_write_text
from mlpkit.config import CTRConfig
from mlpkit.data.table_fit import FittedTable
from mlpkit.engine.activations import stable_sigmoid
from mlpkit.errors import CheckpointError, ConfigError, DataFormatError
from mlpkit.evaluate.metrics import log_loss, roc_auc
from mlpkit.evaluate.report import render_ctr_report
from mlpkit.rundir import CURVES_FILE, REPORT_FILE, SUMMARY_FILE, TABLE_FILE, warn_if_unfinished
from mlpkit.tasks.base import FinishedRun, Splits, Task, absolute, open_saved_run

__all__ = [
    "CTRTask",
    "LoadedCTRRun",
    "evaluate_ctr_run",
    "load_ctr_run",
    "predict_ctr_run",
]

logger = logging.getLogger(__name__)


def _logloss(y: np.ndarray, logits: np.ndarray) -> float:
    return log_loss(y, logits=logits)


METRICS = {"auc": (roc_auc, "max"), "logloss": (_logloss, "min")}
"""The validation scores of every CTR epoch: ``val_auc`` and ``val_logloss``, from the whole set."""


def named_inputs(split: Any) -> dict[str, np.ndarray]:
    """A :class:`~mlpkit.data.tables.TableSplit` as the models' named batch, without copying the file.

    ``{"sparse": (N, F) int32, "dense": (N, D) float32, "multi:<name>": (N, L) int32}``: memory maps
    that the trainer reads batch by batch, ids as int64 (each process of a torchrun group converting
    its own rows).
    """
    inputs = {"sparse": split.sparse, "dense": split.dense}
    inputs.update({f"multi:{name}": array for name, array in split.multi.items()})
    return inputs


def model_kwargs(config: CTRConfig) -> dict[str, Any]:
    """The keyword arguments the config's model is built with. ``embedding_dim`` always has a value in
    the config but LR has no embedding to size: it is passed only to the models that take it."""
    from mlpkit.models.ctr import model_arguments

    kwargs = config.model.model_kwargs()
    if "embedding_dim" not in model_arguments(config.model.name):
        del kwargs["embedding_dim"]
    return kwargs


def _parameters(model: Any) -> int:
    return int(sum(p.numel() for p in model.parameters()))


class CTRTask(Task):
    """Click-through-rate prediction on a table: a CTR-zoo model, BCE on logits, AUC and log loss."""

    name = "ctr"
    monitor_modes: ClassVar[Mapping[str, str]] = {
        "val_auc": "max", "val_logloss": "min", "val_loss": "min", "train_loss": "min",
    }
    test_scores: ClassVar[tuple[str, ...]] = ("auc", "logloss")

    config: CTRConfig

    def recorded(self) -> CTRConfig:
        config = super().recorded()
        paths = {
            key: absolute(value)
            for key in ("data_dir", "spec", "cache_dir")
            if (value := getattr(config.data, key)) is not None
        }
        return dataclasses.replace(config, data=dataclasses.replace(config.data, **paths))

    def schedule_options(self) -> dict[str, Any]:
        # FuxiCTR's lr_decay: a better AUC by more than min_delta (absolute) resets the plateau.
        return {"threshold": self.config.early_stopping.min_delta, "threshold_mode": "abs"}

    def load(self, split_rng: np.random.Generator, *, log: bool = True) -> Splits:
        """The three splits, encoded (or read from the cache); ``split_rng`` is unused (the files split)."""
        from mlpkit.data.tables import load_table_dataset

        data = self.config.data
        if data.data_dir is None:
            raise ConfigError(
                "[data] data_dir is not set: a CTR run needs a directory of train, valid and test files "
                "(--data DIR)"
            )
        dataset = load_table_dataset(data.data_dir, data.spec, label=data.label, cache_dir=data.cache_dir)
        train, valid, test = (dataset.splits[s] for s in ("train", "valid", "test"))
        if log:
            logger.info(
                "data: %d train, %d validation, %d test rows from %s; %d fields, %d ids",
                len(train), len(valid), len(test), data.data_dir, len(dataset.fields.fields),
                sum(f.vocab_size for f in dataset.fields.categorical),
            )
        return Splits(
            # Labels are copied (4 bytes a row): the trainer makes tensors of them, which must be writable.
            x_train=named_inputs(train), y_train=np.array(train.label),
            x_val=named_inputs(valid), y_val=np.array(valid.label),
            x_test=named_inputs(test), y_test=np.array(test.label),
            source=str(Path(data.data_dir).resolve()), extra=dataset,
        )

    def build_model(self, data: Splits, init_rng: np.random.Generator) -> Any:
        # The CTR models draw their initial weights from torch's generator, seeded by the runner.
        import torch

        from mlpkit.models.ctr import build_ctr_model

        model = build_ctr_model(self.config.model.name, data.extra.fields, **model_kwargs(self.config))
        model = model.to(getattr(torch, self.config.run.dtype))
        logger.info("model: %s, %s parameters", self.config.model.name, f"{_parameters(model):,}")
        return model

    def regularizers(self) -> tuple[float, float]:
        """λ of the embedding and of the other weights: the config's, else the model's BARS run's."""
        from mlpkit.models.ctr import BARS_FRAPPE_X1

        name = self.config.model.name
        # Models without a BARS Frappe run take their family's: DCN-V2's for the DCN-V2/DCN-Mix forms.
        bars = BARS_FRAPPE_X1.get(name) or BARS_FRAPPE_X1["dcnv2" if name.startswith("dcn") else "deepfm"]
        model = self.config.model
        embedding, net = model.embedding_regularizer, model.net_regularizer
        return (
            bars.embedding_regularizer if embedding is None else embedding,
            bars.net_regularizer if net is None else net,
        )

    def trainer_options(self, model: Any) -> dict[str, Any]:
        from mlpkit.train.torch_trainer import build_loss

        return {
            "loss": build_loss("bce_with_logits"),
            "metrics": METRICS,
            "regularizer": l2_penalty(model, *self.regularizers()),
        }

    def run_files(self, data: Splits) -> dict[str, Any]:
        return {TABLE_FILE: data.extra.fitted.to_dict()}

    def model_metadata(self, data: Splits, epoch: int, engine: str) -> dict[str, str]:
        return {
            "format": "mlpkit.ctr",
            "model": self.config.model.name,
            "model_kwargs": json.dumps(model_kwargs(self.config)),
            "epoch": str(epoch),
            "engine": engine,
            "mlpkit_version": __version__,
        }

    def describe_epoch(self, record: Mapping[str, Any]) -> str:
        return (
            f"train_loss {record['train_loss']:.4f}  val_auc {_fmt(record.get('val_auc'))}  "
            f"val_logloss {_fmt(record.get('val_logloss'))}  lr {record['lr']:.3g}  "
            f"({record['seconds']:.2f} s)"
        )

    def finish(self, run: FinishedRun) -> dict[str, Any]:
        """Score the last and the best weights on the test set with the trained model; write the
        curves, ``summary.json`` and ``report.md``."""
        from mlpkit.torch_engine import load_state_arrays

        data, history, trainer = run.data, run.history, run.trainer
        model = trainer.model
        load_state_arrays(model, run.last_state)
        final = _scores(data.y_test, trainer.predict_logits(data.x_test))
        load_state_arrays(model, run.best_state)
        best = _scores(data.y_test, trainer.predict_logits(data.x_test))
        saved = best if run.restore_best else final
        if not run.restore_best:
            load_state_arrays(model, run.last_state)
        best_record = history.records[history.best_epoch - 1]

        figures: dict[str, str] = {}
        if importlib.util.find_spec("matplotlib") is not None:
            from mlpkit.evaluate.plots import plot_curves

            title = f"{run.run_dir.name}: {self.config.model.name}, test AUC {saved['auc']:.4f}"
            plot_curves(
                history.records, run.run_dir / CURVES_FILE, best_epoch=history.best_epoch, title=title,
                metrics=("loss", "auc"),
            )
            figures = {"loss and validation AUC": CURVES_FILE}
        facts = dict(run.facts)
        summary: dict[str, Any] = {
            "status": facts.pop("status"),
            "model": self.config.model.name,
            "test_auc": saved["auc"],
            "test_logloss": saved["logloss"],
            "final_test_auc": final["auc"],
            "final_test_logloss": final["logloss"],
            "best_epoch_test_auc": best["auc"],
            "best_epoch_test_logloss": best["logloss"],
            "best_val_auc": best_record.get("val_auc"),
            "best_val_logloss": best_record.get("val_logloss"),
            "params": _parameters(model),
            "seconds_per_epoch": float(np.median([r["seconds"] for r in history.records])),
            **data.sizes,
            "data_dir": data.source,
            "regularizers": dict(zip(("embedding", "net"), self.regularizers(), strict=True)),
            **facts,
        }
        atomic_write_json(run.run_dir / SUMMARY_FILE, summary)
        report = render_ctr_report(
            title=run.run_dir.name, config=self.recorded().to_dict(), records=history.records,
            summary=summary, figures=figures, provenance=run.provenance,
        )
        atomic_write_text(run.run_dir / REPORT_FILE, report)
        return summary


def l2_penalty(model: Any, embedding_lambda: float, net_lambda: float) -> Any:
    """FuxiCTR's ``add_regularization`` for p = 2: ``(λ_emb / 2) Σ w²`` over every embedding
    parameter (the first-order weights included) plus ``(λ_net / 2) Σ w²`` over the others; None
    when both λ are 0."""
    embedding = list(model.embedding_parameters()) if embedding_lambda > 0 else []
    dense = list(model.dense_parameters()) if net_lambda > 0 else []
    if not embedding and not dense:
        return None

    def penalty() -> Any:
        total = sum((embedding_lambda / 2) * p.square().sum() for p in embedding)
        return total + sum((net_lambda / 2) * p.square().sum() for p in dense)

    return penalty


def _scores(y: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    return {"auc": roc_auc(y, logits), "logloss": log_loss(y, logits=logits)}


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


# -- reusing a saved CTR run ---------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedCTRRun:
    """A saved CTR run, rebuilt: its config, the fitted encoding and the model with its saved weights.

    Parameters
    ----------
    run_dir : Path
    config : CTRConfig
    fitted : FittedTable
        From ``table.json``: encodes new files as the training file was.
    model : torch.nn.Module
        In evaluation mode, on the CPU.
    """

    run_dir: Path
    config: CTRConfig
    fitted: FittedTable
    model: Any

    def predict_logits(self, split: Any, *, batch_size: int = 8192) -> np.ndarray:
        """Logits (N,) of an encoded split, in batches, without gradients."""
        import torch

        from mlpkit.train.mapped import MappedRows

        dtype = next(self.model.parameters()).dtype
        cpu = torch.device("cpu")
        inputs = {  # read a batch at a time from the file, never mapped whole
            name: MappedRows(array, device=cpu, dtype=dtype if array.dtype.kind == "f" else torch.int64)
            for name, array in named_inputs(split).items()
        }
        parts = []
        with torch.no_grad():
            for start in range(0, len(split), batch_size):
                batch = {name: rows[start : start + batch_size] for name, rows in inputs.items()}
                parts.append(self.model(batch).numpy())
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def load_ctr_run(run_dir: str | os.PathLike[str]) -> LoadedCTRRun:
    """Rebuild a CTR run's model from ``config.json``, ``table.json`` and ``model.safetensors``.

    Raises
    ------
    CheckpointError
        Naming the path: no such directory, a missing or invalid file, weights that do not fit.
    """
    import torch

    from mlpkit.models.ctr import build_ctr_model
    from mlpkit.torch_engine import load_state_arrays

    saved = open_saved_run(
        run_dir, task="ctr", kind="a CTR run", fitted_file=TABLE_FILE, parse=FittedTable.from_dict,
        needed_for="to encode rows with the run's fitted vocabularies",
    )
    run_dir, config, fitted, model_path = saved.run_dir, saved.config, saved.fitted, saved.model_path
    from safetensors.numpy import load_file

    model = build_ctr_model(config.model.name, fitted.fields, **model_kwargs(config))
    model = model.to(getattr(torch, config.run.dtype))
    try:
        load_state_arrays(model, load_file(str(model_path)))
    except Exception as exc:  # safetensors' own error for a malformed file, ours for a misfit
        raise CheckpointError(
            f"{model_path}: cannot load the weights into {config.model.name} ({exc})"
        ) from exc
    model.eval()
    return LoadedCTRRun(run_dir, config, fitted, model)


def evaluate_ctr_run(
    run_dir: str | os.PathLike[str], *, data_dir: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Score a saved CTR run on its test file, encoded with the run's own vocabularies.

    Returns
    -------
    dict
        ``test_auc``, ``test_logloss`` and ``n_test``: those of ``summary.json`` for the same data.
    """
    from mlpkit.data.table_io import find_split_files
    from mlpkit.data.tables import encode_file

    loaded = load_ctr_run(run_dir)
    warn_if_unfinished(loaded.run_dir, "scoring")
    directory = Path(data_dir) if data_dir is not None else Path(str(loaded.config.data.data_dir))
    test_file = find_split_files(directory, ("test",))["test"]
    split = encode_file(test_file, loaded.fitted)
    if split.label is None:
        raise DataFormatError(f"{test_file} has no label column {loaded.fitted.label!r} to score against")
    scores = _scores(np.asarray(split.label), loaded.predict_logits(split))
    return {"test_auc": scores["auc"], "test_logloss": scores["logloss"], "n_test": len(split)}


def predict_ctr_run(
    run_dir: str | os.PathLike[str], file: str | os.PathLike[str], out: str | os.PathLike[str],
    *, runtime: str = "native",
) -> dict[str, Any]:
    """Write the click probability of every row of ``file`` (CSV or Parquet) to ``out`` (CSV or Parquet).

    ``out`` holds one column ``probability`` per input row, in order, plus ``label`` when the file
    has the label column. Columns the model does not read are ignored; a missing one is an error.
``runtime="onnx"`` scores with the run's ONNX export (``mlpkit export``) under onnxruntime.

    Returns
    -------
    dict
        ``rows``, ``out`` and, when the file has labels, ``auc`` and ``logloss``.

    Raises
    ------
    CheckpointError
        The run cannot be loaded.
    DataNotFoundError, DataFormatError
        ``file`` is missing, lacks a column the model reads, or holds a bad value (named by column and row).
    OutputError
        ``out`` cannot be written, or is neither ``.csv`` nor ``.parquet``.
    """
    from mlpkit.data.tables import encode_file
    from mlpkit.errors import OutputError

    out = Path(out)
    kind = _table_kind(out)
    if kind is None:
        suffix = out.suffix or "no suffix"
        raise OutputError(f"{out}: write predictions to a .csv or .parquet file, got {suffix!r}")
    from mlpkit.runtime import RUNTIMES, OnnxModel

    onnx = check_choice("runtime", runtime, RUNTIMES) == "onnx"
    loaded = load_ctr_run(run_dir)
    warn_if_unfinished(loaded.run_dir, "predicting with")
    exported = OnnxModel.for_run(loaded.run_dir) if onnx else None
    split = encode_file(file, loaded.fitted)
    if exported is not None:
        logits = exported.run(named_inputs(split)).astype(np.float64)        # (N,)
    else:
        logits = loaded.predict_logits(split).astype(np.float64)             # (N,)
    probability = stable_sigmoid(logits)                                      # (N,), no overflow
    columns: dict[str, np.ndarray] = {"probability": probability}
    result: dict[str, Any] = {"rows": len(split), "out": str(out)}
    if split.label is not None:
        labels = np.asarray(split.label)
        columns["label"] = labels
        result |= {"auc": roc_auc(labels, logits), "logloss": log_loss(labels, logits=logits)}
    _write_table(out, columns, kind)
    return result


def _table_kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith((".csv", ".csv.gz")):
        return "csv"
    if name.endswith(".parquet"):
        return "parquet"
    return None


def _write_table(path: Path, columns: Mapping[str, np.ndarray], kind: str) -> None:
    """Columns of equal length to a CSV (``.csv.gz`` compressed) or Parquet file, atomically, by pyarrow."""
    from mlpkit._optional import require

    pa = require("pyarrow", feature="writing CTR predictions")
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    table = pa.table({name: pa.array(values) for name, values in columns.items()})
    with atomic_path(path) as tmp:
        if kind == "parquet":
            pq.write_table(table, str(tmp))
        elif path.name.lower().endswith(".gz"):
            with pa.CompressedOutputStream(str(tmp), "gzip") as stream:
                pacsv.write_csv(table, stream)
        else:
            pacsv.write_csv(table, str(tmp))
