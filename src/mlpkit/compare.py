"""Several CTR models trained on one data set under one protocol, side by side (``mlpkit ctr compare``).

Each model is one ordinary run (:func:`mlpkit.run.train_run`) in ``OUT/<model>``; the data is encoded
once and read from the cache by every later run. The comparison is ``compare.json`` (a list of rows),
``compare.md`` and ``compare.png``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlpkit._io import atomic_write_json, atomic_write_text
from mlpkit.config import CTRConfig
from mlpkit.errors import ConfigError, OutputError
from mlpkit.run import train_run

__all__ = ["COMPARE_KEYS", "compare_ctr_models"]

logger = logging.getLogger(__name__)

COMPARE_KEYS = (
    "model", "val_auc", "val_logloss", "test_auc", "test_logloss", "params", "best_epoch",
    "seconds_per_epoch",
)
"""The columns of ``compare.json``'s rows, in order (each row also names its ``run_dir``)."""


def compare_ctr_models(
    config: CTRConfig,
    models: Sequence[str],
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    progress: bool = False,
    command: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Train each of ``models`` with ``config`` into ``out/<model>``; write the comparison.

    Every model trains on the same encoded data (encoded once, then read from the cache) with the
    same protocol and seed; a model setting of ``config`` (``hidden_features``, ``dropout``,
    ``batch_norm``) applies to the models that have it, the others keep theirs. Writes
    ``compare.json`` (one row per model with the keys of :data:`COMPARE_KEYS` and ``run_dir``),
    ``compare.md`` and ``compare.png`` (validation and test AUC per model), and returns the rows.

    Raises
    ------
    ConfigError
        An unknown model name (before anything is trained), or no model.
    OutputError
        ``out`` exists and is not empty (without ``overwrite``).
    """
    from mlpkit.models.ctr import model_arguments  # torch: only once models are trained

    names = list(dict.fromkeys(models))
    if not names:
        raise ConfigError("ctr compare needs at least one model (--models lr,fm,deepfm,...)")
    for name in names:  # every name checked before the first model trains
        config.with_overrides({"model": {"name": name}}, source="--models")
    out = Path(out)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise OutputError(f"{out} already exists and is not empty; nothing was changed. Pass --overwrite")
    tower = ("hidden_features", "dropout", "batch_norm")
    given = {k: v for k, v in config.to_dict()["model"].items() if k in tower}
    rows = []
    for name in names:
        accepted = model_arguments(name)
        model = {"name": name} | {k: v for k, v in given.items() if v is not None and k in accepted}
        model |= {k: None for k in given if k not in accepted}
        run = {"out": str(out / name), "name": name}
        result = train_run(
            config.with_overrides({"model": model, "run": run}), overwrite=overwrite, progress=progress,
            command=command,
        )
        summary = result.summary
        row = {
            "model": name,
            "val_auc": summary["best_val_auc"],
            "val_logloss": summary["best_val_logloss"],
            "test_auc": summary["test_auc"],
            "test_logloss": summary["test_logloss"],
            "params": summary["params"],
            "best_epoch": summary["best_epoch"],
            "seconds_per_epoch": summary["seconds_per_epoch"],
            "run_dir": str(result.run_dir),
        }
        rows.append(row)
        logger.info("%s: val AUC %.4f, test AUC %.4f, %s parameters", name, row["val_auc"], row["test_auc"],
                    f"{row['params']:,}")
    atomic_write_json(out / "compare.json", rows)
    atomic_write_text(out / "compare.md", _compare_markdown(rows, config))
    if importlib.util.find_spec("matplotlib") is not None:
        from mlpkit.evaluate.plots import plot_scores

        plot_scores(
            [r["model"] for r in rows],
            {"validation AUC": [r["val_auc"] for r in rows], "test AUC": [r["test_auc"] for r in rows]},
            out / "compare.png", ylabel="AUC",
            title=f"CTR models on {Path(str(config.data.data_dir)).name}",
        )
    return rows


def _compare_markdown(rows: Sequence[Mapping[str, Any]], config: CTRConfig) -> str:
    from mlpkit.evaluate.report import markdown_table

    header = [
        "model", "val AUC", "val log loss", "test AUC", "test log loss", "params", "best epoch", "s/epoch",
    ]
    table = [
        (r["model"], f"{r['val_auc']:.4f}", f"{r['val_logloss']:.4f}", f"{r['test_auc']:.4f}",
         f"{r['test_logloss']:.4f}", f"{r['params']:,}", r["best_epoch"], f"{r['seconds_per_epoch']:.2f}")
        for r in rows
    ]
    optim = config.optim
    lines = [
        f"# CTR models on `{config.data.data_dir}`",
        "",
        f"Each model trained with {optim.optimizer} (lr {optim.lr:g}, batch {optim.batch_size}), "
        f"embeddings of {config.model.embedding_dim}, early stopping on {config.early_stopping.monitor} "
        f"(patience {config.early_stopping.patience}), seed {config.run.seed}; the scores are the best "
        "epoch's, selected on the validation set. Run directories: `<model>/`.",
        "",
        markdown_table(header, table),
        "",
        "![validation and test AUC](compare.png)",
        "",
    ]
    return "\n".join(lines)
