"""The ``mlpkit`` command line: the only module that prints or exits.

::

    mlpkit train [--config FILE] [options]     train into a new run directory (no options: the classic recipe)
    mlpkit train --resume RUN_DIR              continue an interrupted run from its checkpoint
    mlpkit evaluate RUN_DIR                    score a saved run on the test set
    mlpkit predict RUN_DIR FILE [--out CSV] [--runtime onnx]
                                               predict a table's rows or classify images (PNG/JPEG files
                                               or folders, IDX, .npy, .csv), by the run's model or its export
    mlpkit export RUN_DIR [--format onnx] [--out FILE] [--opset N]
                                               the run's model as an ONNX file, checked, with a dynamic batch
    mlpkit experiment [NAME] [--out DIR] [--quick] [--seed N] [--overwrite]
                                               run a classic study (list them without NAME)
    mlpkit ctr train --data DIR --model NAME   train a CTR model on train/valid/test tables
    mlpkit ctr compare --data DIR --models A,B --out DIR   train several, compare them
    mlpkit ctr predict RUN_DIR FILE --out FILE [--runtime onnx]   click probability of each row
    mlpkit ctr spectrum RUN_DIR                            singular values of DCN-V2's cross weights
    mlpkit tune --config FILE [--trials N] [--timeout S] [--storage URL]
                                               search hyperparameters (Optuna), each trial a run directory

Settings are taken from the defaults (the classic recipe), then ``--config FILE`` (.toml, or a
run's ``config.json`` to repeat it), then the options given. Library code logs; this module shows
``mlpkit`` log records on stderr (``-q`` keeps warnings only; under ``torchrun`` only rank 0 logs
below warnings and prints results) and turns every
:class:`~mlpkit.errors.MlpkitError` into one ``mlpkit: error: ...`` line and an exit status:

====  ======================================================================
0     success
1     training diverged (the finished epochs are kept in the run directory)
2     bad usage, configuration, data, checkpoint or output location
130   interrupted (Ctrl-C)
====  ======================================================================

New subcommands are one entry in :data:`SUBCOMMANDS`: a function adding the arguments and a
handler returning the exit status.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import inspect
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

from tqdm.auto import tqdm

from mlpkit import __version__, _allocator
from mlpkit._optional import EXTRAS
from mlpkit.config import (
    AUGMENTS,
    AUTOCASTS,
    CTR_MODEL_NAMES,
    CTR_MONITORS,
    DEVICES,
    DTYPES,
    ENGINES,
    LOGS,
    MODEL_NAMES,
    MONITORS,
    OPTIMIZERS,
    SCHEDULES,
    CTRConfig,
    RunConfig,
    TableConfig,
    load_config,
)
from mlpkit.data.images import INPUT_SCALES
from mlpkit.errors import ConfigError, MlpkitError, OutputError, TrainingDivergedError
from mlpkit.export import DEFAULT_OPSET, FORMATS, MIN_OPSET
from mlpkit.runtime import ONNX_FILE, RUNTIMES
from mlpkit.spec import ACTIVATION_NAMES, INIT_NAMES

__all__ = ["SUBCOMMANDS", "build_parser", "main"]

PROG = "mlpkit"
EXIT_OK, EXIT_DIVERGED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


# -- argument types ------------------------------------------------------------------------------


def _split(text: str) -> list[str]:
    return [item.strip() for item in text.split(",")] if text.strip() else []


def _int_list(text: str) -> list[int]:
    """``"512,256"`` -> [512, 256]; ``""`` -> [] (no hidden layer)."""
    try:
        return [int(item) for item in _split(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _one_or_list(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """``"x"`` -> x; ``"x,y"`` -> [x, y]: one value for every hidden layer, or one each."""

    def parse(text: str) -> Any:
        try:
            items = [convert(item) for item in _split(text)]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a value or a comma-separated list, got {text!r}"
            ) from None
        if not items:
            raise argparse.ArgumentTypeError("expected a value or a comma-separated list, got ''")
        return items[0] if len(items) == 1 else items

    parse.__name__ = convert.__name__  # argparse names the type in "invalid ... value" messages
    return parse


@dataclass(frozen=True)
class _Option:
    """A ``train`` flag that overrides one config key; ``None`` (the default) means "not given"."""

    flag: str
    section: str
    key: str
    help: str
    kwargs: dict[str, Any]

    @property
    def dest(self) -> str:
        return f"override.{self.section}.{self.key}"


def _option(flag: str, target: str, help: str, **kwargs: Any) -> _Option:
    section, key = target.split(".")
    if "action" not in kwargs:
        kwargs.setdefault("metavar", key.upper())  # not argparse's default, the long dest
    return _Option(flag, section, key, help, kwargs)


_BOOL = {"action": argparse.BooleanOptionalAction}  # --x / --no-x

# The logs of a run, the same for every task; metrics.jsonl and metrics.csv are always written.
_LOG_OPTIONS = (
    _option("--log", "run.log", f"logs besides metrics.jsonl and metrics.csv: {', '.join(LOGS)} (scalars and "
            "histograms in RUN_DIR/tensorboard) [none]", type=_split, metavar="NAME[,NAME...]"),
    _option("--histogram-every", "run.histogram_every", "with --log tensorboard: histograms of the weights "
            "and gradients every N epochs and at the last; 0 = none [5]", type=int, metavar="N"),
)

_CHECKPOINT_OPTION = _option(
    "--checkpoint-interval", "run.checkpoint_interval", "seconds between checkpoints (and always after the "
    "first and last epoch); a killed run resumes from the last, replaying the epochs since; 0 = every "
    "epoch [10]", type=float, metavar="SECONDS")

_AUTOCAST_OPTION = _option(
    "--autocast", "run.autocast", f"torch engine: {', '.join(AUTOCASTS)}; bf16 runs the training forward "
    "passes in bfloat16 (faster on CPUs with AMX and on recent GPUs, slower elsewhere) [none]",
    metavar="MODE")

# Every config key a flag can set; [default] in the help is the classic recipe.
_TRAIN_OPTIONS = (
    _option("--model", "model.name", f"the network: {', '.join(MODEL_NAMES)}; vit trains with the torch "
            "engine (the default engine with --model vit) [mlp]", metavar="NAME"),
    _option("--hidden", "model.hidden_features", "hidden widths, e.g. 512,256 ('' for none) [256]",
            type=_int_list, metavar="H[,H...]"),
    _option("--activation", "model.activation", f"one for all hidden layers, or one each: "
            f"{', '.join(ACTIVATION_NAMES)} [relu]", type=_one_or_list(str), metavar="NAME[,NAME...]"),
    _option("--dropout", "model.dropout", "dropout after each hidden activation, one or one each [0]",
            type=_one_or_list(float), metavar="P[,P...]"),
    _option("--init", "model.init", f"weight init: {', '.join(INIT_NAMES)} [normal]", metavar="NAME"),
    _option("--init-std", "model.init_std", "std of --init normal [0.01]", type=float, metavar="STD"),
    _option("--patch-size", "model.patch_size", "ViT: side P of the square patches [7]", type=int,
            metavar="P"),
    _option("--dim", "model.dim", "ViT: token width [64]", type=int, metavar="D"),
    _option("--depth", "model.depth", "ViT: encoder blocks [6]", type=int, metavar="L"),
    _option("--heads", "model.heads", "ViT: attention heads [4]", type=int, metavar="N"),
    _option("--mlp-dim", "model.mlp_dim", "ViT: hidden width of each block's MLP [128]", type=int,
            metavar="H"),
    _option("--dim-head", "model.dim_head", "ViT: width of each attention head [dim / heads]", type=int,
            metavar="D"),
    _option("--emb-dropout", "model.emb_dropout", "ViT: dropout on the embedded tokens [0]", type=float,
            metavar="P"),
    _option("--pool", "model.pool", "ViT: what the head reads: cls, mean [cls]", metavar="NAME"),
    _option("--pos-embedding", "model.pos_embedding", "ViT: position embedding: learned, sincos [learned]",
            metavar="NAME"),
    _option("--patch-norm", "model.patch_norm", "ViT: LayerNorm before and after the patch embedding [off]",
            **_BOOL),
    _option("--optimizer", "optim.optimizer", f"{', '.join(OPTIMIZERS)} [sgd]", metavar="NAME"),
    _option("--lr", "optim.lr", "learning rate [0.1]", type=float),
    _option("--momentum", "optim.momentum", "SGD momentum [0]", type=float),
    _option("--nesterov", "optim.nesterov", "Nesterov momentum (SGD) [off]", **_BOOL),
    _option("--weight-decay", "optim.weight_decay", "L2 (sgd, adam) or decoupled (adamw) decay of the "
            "weights [0]", type=float, metavar="WD"),
    _option("--epochs", "optim.epochs", "maximum epochs [10]", type=int),
    _option("--batch-size", "optim.batch_size", "minibatch size; the global batch under torchrun [256]",
            type=int, metavar="B"),
    _option("--schedule", "optim.schedule", f"learning rate per epoch: {', '.join(SCHEDULES)} [constant]",
            metavar="NAME"),
    _option("--min-lr", "optim.min_lr", "floor of the cosine and plateau schedules [0]", type=float,
            metavar="LR"),
    _option("--gamma", "optim.gamma", "decay factor of the step [0.1] and exponential [0.95] schedules",
            type=float),
    _option("--step-size", "optim.step_size", "epochs between decays of the step schedule [10]", type=int,
            metavar="N"),
    _option("--factor", "optim.factor", "decay factor of the plateau schedule [0.1]", type=float),
    _option("--schedule-patience", "optim.schedule_patience", "epochs without improvement before the "
            "plateau schedule decays [10]", type=int, metavar="N"),
    _option("--grad-clip", "optim.grad_clip_norm", "clip the gradients' global L2 norm to this (torch "
            "engine) [off]", type=float, metavar="NORM"),
    _option("--patience", "early_stopping.patience", "stop after N epochs without improvement; 0 = off "
            "[off]", type=int, metavar="N"),
    _option("--min-delta", "early_stopping.min_delta", "least improvement that counts [0]", type=float),
    _option("--monitor", "early_stopping.monitor", f"score that picks the best epoch: {', '.join(MONITORS)} "
            "[val_loss]", metavar="NAME"),
    _option("--restore-best", "early_stopping.restore_best", "save the best epoch's weights, not the "
            "last [on]", **_BOOL),
    _option("--data-dir", "data.data_dir", "directory of the Fashion-MNIST IDX files [search "
            "$MLPKIT_DATA, the cache, /usr/share/datasets]", metavar="DIR"),
    _option("--val-size", "data.val_size", "training images held out for validation [5000]", type=int,
            metavar="N"),
    _option("--download", "data.download", "download the data once if no copy is found [on]", **_BOOL),
    _option("--verify", "data.verify", "check the files' SHA-256 against the official data [on]", **_BOOL),
    _option("--augment", "data.augment", f"augment training batches: {', '.join(AUGMENTS)} [none]",
            metavar="NAME"),
    _option("--max-shift", "data.max_shift", "largest shift in pixels of shift_flip [2]", type=int,
            metavar="PIXELS"),
    _option("--flip-p", "data.flip_p", "probability of a horizontal flip in shift_flip [0.5]", type=float,
            metavar="P"),
    _option("--data", "data.path", "your own data: a CSV or Parquet table (one file, split by seed into "
            "train, validation and test, or a directory of train/valid/test files) with --target; or, "
            "without --target, a folder of images with one subfolder per class (or train/val/test "
            "subfolders of that layout)", metavar="FILE_OR_DIR"),
    _option("--target", "data.target", "table: the column to predict", metavar="COLUMN"),
    _option("--task", "data.task", "table: classification, regression, or auto (from the target) [auto]",
            metavar="KIND"),
    _option("--categorical", "data.categorical", "table: columns read as categories, whatever their values",
            type=_split, metavar="COL[,COL...]"),
    _option("--numeric", "data.numeric", "table: columns read as numbers", type=_split,
            metavar="COL[,COL...]"),
    _option("--ignore", "data.ignore", "table: columns not read", type=_split, metavar="COL[,COL...]"),
    _option("--image-size", "data.image_size", "image folder: resize every image to S x S [28]", type=int,
            metavar="S"),
    _option("--color", "data.color", "image folder: auto, grayscale, rgb [auto: rgb when any image has "
            "color]", metavar="MODE"),
    _option("--strict", "data.strict", "image folder: refuse unreadable or non-image files instead of "
            "skipping them with a warning [off]", **_BOOL),
    _option("--seed", "run.seed", "seed of the split, init, dropout and batch order [0]", type=int),
    _option("--out", "run.out", "run directory [runs/<timestamp>-<name>]", metavar="DIR"),
    _option("--name", "run.name", "name in the default run directory [config stem, or from the model]"),
    _option("--dtype", "run.dtype", f"{', '.join(DTYPES)} [float32]", metavar="DTYPE"),
    _option("--engine", "run.engine", f"{', '.join(ENGINES)} [numpy]", metavar="NAME"),
    _option("--device", "run.device", f"{', '.join(DEVICES)} or cuda:N; cuda needs --engine torch [cpu]"),
    _AUTOCAST_OPTION,
    _CHECKPOINT_OPTION,
    *_LOG_OPTIONS,
)


def _overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The config keys given on the command line, by section."""
    overrides: dict[str, dict[str, Any]] = {}
    for option in _TRAIN_OPTIONS:
        value = getattr(args, option.dest)
        if value is not None:
            overrides.setdefault(option.section, {})[option.key] = value
    return overrides


# -- output --------------------------------------------------------------------------------------


def _print_table(rows: Sequence[tuple[str, object]]) -> None:
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def _print_grid(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Columns aligned: the first to the left, the others (numbers) to the right, floats to 4 decimals."""
    cells = [list(header), *([_fmt(v) if isinstance(v, float) else str(v) for v in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        first, *rest = row
        numbers = (c.rjust(w) for c, w in zip(rest, widths[1:], strict=True))
        print("  ".join([first.ljust(widths[0]), *numbers]))


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


# -- subcommands ---------------------------------------------------------------------------------


def _add_train(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Each setting comes from the defaults (the classic recipe: 784-256-10, ReLU, N(0, 0.01) weights, "
        "SGD lr 0.1, batch 256, 10 epochs), then --config, then these options. "
        "'mlpkit train --config RUN_DIR/config.json' repeats a run into a new directory. "
        "Several processes: 'torchrun --nproc_per_node=2 -m mlpkit train --engine torch ...'."
    )
    parser.add_argument(
        "--config", metavar="FILE", help="a .toml config, or a run's config.json to repeat it"
    )
    parser.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue an interrupted run (either engine) from its last checkpoint, with the settings in "
        f"RUN_DIR/config.json; only {', '.join(_RESUME_OPTIONS)} may be given with it "
        "(--epochs N extends a finished run to N epochs)",
    )
    for option in _TRAIN_OPTIONS:
        parser.add_argument(option.flag, dest=option.dest, default=None, help=option.help, **option.kwargs)
    parser.add_argument("--overwrite", action="store_true", help="replace the run files of a non-empty --out")
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar (shown only on a terminal)"
    )


_RESUME_OPTIONS = ("--epochs", "--data-dir", "--device", "--checkpoint-interval")
"""What ``--resume`` takes: how long to train, where the data is now, where to train, how often to save;
never the model or optimizer, which the checkpoint fixes."""


def _resume_conflicts(args: argparse.Namespace) -> list[str]:
    """The options given with ``--resume`` that would change the run it continues."""
    given = [
        option.flag
        for option in _TRAIN_OPTIONS
        if getattr(args, option.dest) is not None and option.flag not in _RESUME_OPTIONS
    ]
    if args.config:
        given.insert(0, "--config")
    if args.overwrite:
        given.append("--overwrite")
    return given


def _run_train(args: argparse.Namespace) -> int:
    from mlpkit.run import resume_run, train_run

    progress = not args.no_progress and sys.stderr.isatty()
    if args.resume:
        if conflicts := _resume_conflicts(args):
            raise ConfigError(
                f"--resume continues {args.resume} with the settings in its config.json; it cannot be "
                f"combined with {', '.join(conflicts)} (it takes {', '.join(_RESUME_OPTIONS)})"
            )
        given = {option.key: getattr(args, option.dest) for option in _TRAIN_OPTIONS}
        result = resume_run(
            args.resume,
            epochs=given["epochs"],
            data_dir=given["data_dir"],
            device=given["device"],
            checkpoint_interval=given["checkpoint_interval"],
            progress=progress,
            command=args.argv,
        )
    else:
        overrides = _overrides(args)
        data = overrides.get("data", {})
        if "path" in data and "target" not in data and _is_image_folder(data["path"]):
            data["images"] = data.pop("path")       # a folder of class folders: the image task
        table = {"path", "target"} & set(data)
        if args.config:
            config = load_config(args.config, task="table" if table else None)
        else:
            config = TableConfig() if table else RunConfig()
        if overrides.get("model", {}).get("name") == "vit" and "engine" not in overrides.get("run", {}):
            # The NumPy engine builds MLPs only: --model vit alone means the torch engine.
            overrides.setdefault("run", {})["engine"] = "torch"
        if overrides:
            config = config.with_overrides(overrides)
        result = train_run(config, progress=progress, overwrite=args.overwrite, command=args.argv)
    if result.rank != 0:
        return EXIT_OK  # rank 0 reports for every process of a torchrun job
    s = result.summary
    if s.get("task") in ("classification", "regression"):  # a table run
        _print_table([*_table_scores(s), ("stopped", s["stop_reason"]),
                      ("wall time", f"{s['wall_seconds']:.1f} s"), ("run directory", str(result.run_dir))])
        return EXIT_OK
    _print_table(
        [
            (
                "test accuracy",
                f"{_fmt(s['test_accuracy'])}  (test loss {_fmt(s['test_loss'])}, {s['n_test']} images)",
            ),
            (
                "best epoch",
                f"{s['best_epoch']} of {s['epochs_run']}  (val_loss {_fmt(s['best_val_loss'])}, "
                f"val_accuracy {_fmt(s['best_val_accuracy'])})",
            ),
            ("stopped", s["stop_reason"]),
            ("wall time", f"{s['wall_seconds']:.1f} s"),
            ("run directory", str(result.run_dir)),
        ]
    )
    return EXIT_OK


def _is_image_folder(path: str) -> bool:
    from mlpkit.data.image_folder import is_image_folder

    return is_image_folder(path)


def _table_scores(s: Mapping[str, Any]) -> list[tuple[str, object]]:
    """The test scores of a table run (``summary.json`` or ``evaluate``), as rows to print."""
    if s["task"] == "regression":
        return [("test RMSE", f"{s['test_rmse']:.5g}  (MAE {s['test_mae']:.5g}, R² {_fmt(s['test_r2'])}, "
                 f"{s['n_test']} rows)")]
    auc = s.get("test_auc")
    return [
        ("test accuracy", f"{_fmt(s['test_accuracy'])}  (balanced {_fmt(s['test_balanced_accuracy'])}, "
         f"{s['n_test']} rows)"),
        ("test AUC", _fmt(auc) if auc is not None else "-"),
        ("test log loss", _fmt(s["test_logloss"])),
    ]


def _add_evaluate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dir", metavar="RUN_DIR", help="a directory written by 'mlpkit train' or 'mlpkit ctr train'"
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="directory of the data: the Fashion-MNIST IDX files [where the run found them; if gone, search "
        "$MLPKIT_DATA, the cache, /usr/share/datasets], or a CTR run's tables [where the run found them]",
    )
    parser.add_argument("--json", action="store_true", help="print every number as one JSON object")


def _run_evaluate(args: argparse.Namespace) -> int:
    from mlpkit.run import evaluate_run

    scores = evaluate_run(args.run_dir, data_dir=args.data_dir)
    if args.json:
        print(json.dumps({"run_dir": str(args.run_dir), **scores}, indent=2))
        return EXIT_OK
    if scores.get("task") in ("classification", "regression"):  # a table run
        _print_table([*_table_scores(scores), ("run directory", args.run_dir)])
        if scores["task"] == "classification":
            print()
            print("confusion matrix (rows: true class, columns: predicted class)")
            names, matrix = scores["class_names"], scores["test_confusion_matrix"]
            _print_grid(["", *names], [[name, *row] for name, row in zip(names, matrix, strict=True)])
        return EXIT_OK
    if "test_auc" in scores:  # a CTR run
        _print_table(
            [
                ("test AUC", _fmt(float(scores["test_auc"]))),
                ("test log loss", _fmt(float(scores["test_logloss"]))),
                ("test rows", scores["n_test"]),
                ("run directory", args.run_dir),
            ]
        )
        return EXIT_OK
    _print_table(
        [
            ("test accuracy", _fmt(float(scores["test_accuracy"]))),
            ("test loss", _fmt(float(scores["test_loss"]))),
            ("test images", scores["n_test"]),
            ("run directory", args.run_dir),
        ]
    )
    print()
    rows = [(name, *(v[key] for key in ("precision", "recall", "f1", "support")))
            for name, v in scores["per_class"].items()]
    rows += [(f"{mean} mean", *(scores[mean][key] for key in ("precision", "recall", "f1")), scores["n_test"])
             for mean in ("macro", "weighted")]
    _print_grid(["class", "precision", "recall", "f1", "support"], rows)
    print()
    print("confusion matrix (rows: true class, columns: predicted class)")
    names = scores["class_names"]
    width = max(len(str(n)) for row in scores["confusion_matrix"] for n in row)
    header = [f"{k:>{width}}" for k in range(len(names))]
    print(f"{'':<{max(map(len, names)) + 5}}" + " ".join(header))
    for k, (name, row) in enumerate(zip(names, scores["confusion_matrix"], strict=True)):
        print(f"{k:>2} {name:<{max(map(len, names))}}  " + " ".join(f"{n:>{width}}" for n in row))
    return EXIT_OK


def _add_predict(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by 'mlpkit train'")
    parser.add_argument(
        "file",
        metavar="FILE",
        help="for a table run, a CSV or Parquet file with the columns the model reads (others ignored; "
        "writes the predicted class and each class's probability, or the predicted value). For an image "
        "run, one image or many: a PNG/JPEG file or a folder of them (made grayscale and 28x28, with a "
        "note), or grey levels as IDX, .npy ((28,28), (784,), (N,784), (N,28,28), (N,28,28,1)) or .csv "
        "(N rows of 784, an optional header and label column)",
    )
    parser.add_argument(
        "--input-scale",
        choices=INPUT_SCALES,
        default="auto",
        help="'255': grey levels 0..255; '1': values in [0, 1], multiplied by 255; 'auto' refuses values "
        "that all lie in [0, 1] rather than guess [auto]",
    )
    parser.add_argument(
        "--top-k", type=int, default=1, metavar="K", help="the K most probable classes of each image [1]"
    )
    parser.add_argument(
        "--probabilities", action="store_true", help="add one column per class with its probability"
    )
    parser.add_argument("--out", metavar="CSV", help="write the predictions here instead of stdout")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.add_argument(
        "--runtime", choices=RUNTIMES, default="native",
        help="'native': the run's own engine; 'onnx': its export (mlpkit export) under onnxruntime [native]",
    )


def _run_predict(args: argparse.Namespace) -> int:
    from mlpkit._io import atomic_write_text
    from mlpkit.run import predict_run, run_task

    if args.out and Path(args.out).exists() and not args.overwrite:
        raise OutputError(f"{args.out} already exists; nothing was changed. Pass --overwrite to replace it")
    if run_task(args.run_dir) == "table":
        from mlpkit.tasks.tabular import predict_table_run

        text, facts = predict_table_run(args.run_dir, args.file, runtime=args.runtime)
        if args.out:
            atomic_write_text(args.out, text)
            print(f"wrote {facts['rows']} predictions to {args.out}")
        else:
            sys.stdout.write(text)
        return EXIT_OK
    predictions = predict_run(args.run_dir, args.file, input_scale=args.input_scale, runtime=args.runtime)
    text = predictions.to_csv(top_k=args.top_k, probabilities=args.probabilities)
    if args.out:
        atomic_write_text(args.out, text)
        print(f"wrote {len(predictions.probabilities)} predictions to {args.out}")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _add_experiment(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", nargs="?", help="the experiment; omit to list them")
    parser.add_argument("--out", metavar="DIR", help="output directory [runs/<timestamp>-experiment-NAME]")
    parser.add_argument("--quick", action="store_true", help="a small, fast version (for smoke tests)")
    parser.add_argument("--seed", type=int, default=0, help="seed [0]")
    parser.add_argument(
        "--run", metavar="RUN_DIR", help="the trained run a study reads (vit-mlp: a run of 'mlpkit train "
        "--model vit')"
    )
    parser.add_argument("--data-dir", metavar="DIR", help="where Fashion-MNIST is [the usual search]")
    parser.add_argument(
        "--overwrite", action="store_true", help="write into an existing, non-empty --out directory"
    )


def _first_line(doc: str | None) -> str:
    lines = (doc or "").strip().splitlines()
    return lines[0] if lines else ""


def _run_experiment(args: argparse.Namespace) -> int:
    # Imported here: the studies pull in more than the other subcommands need.
    try:
        module = importlib.import_module("mlpkit.experiments")
    except ModuleNotFoundError as exc:
        if exc.name != "mlpkit.experiments":
            raise  # a dependency of the studies is missing: show it as it is
        module = None
    registry: Mapping[str, Callable[..., Path]] | None = getattr(module, "EXPERIMENTS", None)
    if registry is None:
        raise ConfigError("experiments are not available in this version of mlpkit")
    if args.name is None:
        _print_table([(name, _first_line(fn.__doc__)) for name, fn in sorted(registry.items())])
        return EXIT_OK
    if args.name not in registry:
        raise ConfigError(f"unknown experiment {args.name!r}; available: {sorted(registry)}")
    out = (
        Path(args.out)
        if args.out
        else Path("runs") / f"{datetime.now():%Y%m%d-%H%M%S}-experiment-{args.name}"
    )
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        # As for training runs: an earlier run (or any other file) is never replaced by surprise.
        raise OutputError(
            f"{out} already exists and is not empty; nothing was changed. Pass --overwrite to write into it"
        )
    study = registry[args.name]
    kwargs: dict[str, Any] = {"quick": args.quick, "seed": args.seed}
    if args.data_dir is not None:
        kwargs["data_dir"] = Path(args.data_dir)
    if args.run is not None:
        if "run_dir" not in inspect.signature(study).parameters:
            raise ConfigError(
                f"--run applies to studies that read a trained run; {args.name!r} trains its own"
            )
        kwargs["run_dir"] = Path(args.run)
    result = study(out, **kwargs)
    _print_table([("experiment", args.name), ("written to", str(result))])
    return EXIT_OK


# -- CTR -----------------------------------------------------------------------------------------

# Every CTR config key a flag can set; [default] in the help is BARS's protocol.
_CTR_OPTIONS = (
    _option("--data", "data.data_dir", "directory holding train, valid and test (.csv, .csv.gz or "
            ".parquet)", metavar="DIR"),
    _option("--label", "data.label", "the 0/1 label column [label]", metavar="COLUMN"),
    _option("--spec", "data.spec", "TOML file of column settings (kinds, min_count, hash buckets, numeric "
            "transforms) [every column categorical]", metavar="FILE"),
    _option("--cache-dir", "data.cache_dir", "where the encoded arrays are cached [DIR/.mlpkit-cache]",
            metavar="DIR"),
    _option("--model", "model.name", f"{', '.join(CTR_MODEL_NAMES)} [deepfm]", metavar="NAME"),
    _option("--embedding-dim", "model.embedding_dim", "width of every field embedding [10]", type=int,
            metavar="E"),
    _option("--hidden", "model.hidden_features", "DNN tower widths, e.g. 400,400,400 [the model's]",
            type=_int_list, metavar="H[,H...]"),
    _option("--dropout", "model.dropout", "dropout in the tower [the model's]", type=float, metavar="P"),
    _option("--batch-norm", "model.batch_norm", "BatchNorm in the tower [the model's]", **_BOOL),
    _option("--embedding-regularizer", "model.embedding_regularizer", "λ of (λ/2)·Σw² over the embeddings "
            "[the model's BARS value]", type=float, metavar="L"),
    _option("--net-regularizer", "model.net_regularizer", "λ of (λ/2)·Σw² over the other weights [the "
            "model's BARS value]", type=float, metavar="L"),
    _option("--optimizer", "optim.optimizer", f"{', '.join(OPTIMIZERS)} [adam]", metavar="NAME"),
    _option("--lr", "optim.lr", "learning rate [0.001]", type=float),
    _option("--batch-size", "optim.batch_size", "minibatch size; the global batch under torchrun [4096]",
            type=int, metavar="B"),
    _option("--epochs", "optim.epochs", "maximum epochs [100]", type=int),
    _option("--grad-clip", "optim.grad_clip_norm", "clip the gradients' global L2 norm [10]", type=float,
            metavar="NORM"),
    _option("--patience", "early_stopping.patience", "stop after N epochs without a better validation "
            "score; 0 = off [2]", type=int, metavar="N"),
    _option("--monitor", "early_stopping.monitor", "score that picks the best epoch: "
            f"{', '.join(CTR_MONITORS)} [val_auc]", metavar="NAME"),
    _option("--seed", "run.seed", "seed of the initial weights, dropout and batch order [0]", type=int),
    _option("--out", "run.out", "run directory [runs/<timestamp>-ctr-<model>]", metavar="DIR"),
    _option("--name", "run.name", "name in the default run directory [ctr-<model>]"),
    _option("--device", "run.device", f"{', '.join(DEVICES)} or cuda:N [auto]"),
    _AUTOCAST_OPTION,
    _CHECKPOINT_OPTION,
    *_LOG_OPTIONS,
)

_CTR_RESUME_OPTIONS = ("--epochs", "--data", "--device", "--checkpoint-interval")


def _ctr_config(args: argparse.Namespace, *, skip: Sequence[str] = ()) -> CTRConfig:
    """Defaults (BARS's protocol), then --config, then the flags given."""
    config = load_config(args.config, task="ctr") if args.config else CTRConfig()
    overrides: dict[str, dict[str, Any]] = {}
    for option in _CTR_OPTIONS:
        value = getattr(args, option.dest, None)  # None: not given, or not an option of this action
        if value is not None and option.flag not in skip:
            overrides.setdefault(option.section, {})[option.key] = value
    return config.with_overrides(overrides) if overrides else config


def _add_ctr_settings(parser: argparse.ArgumentParser, *, skip: Sequence[str] = ()) -> None:
    parser.add_argument("--config", metavar="FILE", help="a .toml CTR config, or a CTR run's config.json")
    for option in _CTR_OPTIONS:
        if option.flag not in skip:
            parser.add_argument(
                option.flag, dest=option.dest, default=None, help=option.help, **option.kwargs
            )
    parser.add_argument("--overwrite", action="store_true", help="replace the run files of a non-empty --out")
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar (shown only on a terminal)"
    )


def _add_ctr(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Defaults follow the BARS benchmark (FuxiCTR): Adam lr 1e-3, batch 4096, embeddings of 10, the lr "
        "x0.1 after each epoch without a better validation AUC (floor 1e-6), early stopping after 2, "
        "gradient norm clipped at 10, the model's L2 on the embeddings."
    )
    actions = parser.add_subparsers(
        dest="ctr_command", metavar="ACTION", parser_class=_Parser, required=True
    )
    train = actions.add_parser("train", help="train one CTR model into a run directory",
                               description="train one CTR model into a run directory")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted CTR run from its "
                       f"checkpoint; only {', '.join(_CTR_RESUME_OPTIONS)} may be given with it")
    _add_ctr_settings(train)
    train.set_defaults(ctr_handler=_run_ctr_train, ctr_parser=train)
    _add_quiet(train)

    about = "train several CTR models on the same data and compare them"
    compare = actions.add_parser("compare", help=about, description=about)
    compare.add_argument("--models", required=True, metavar="A,B,...", type=_split,
                         help=f"the models, comma-separated: {', '.join(CTR_MODEL_NAMES)}")
    _add_ctr_settings(compare, skip=("--model", "--name"))
    compare.set_defaults(ctr_handler=_run_ctr_compare, ctr_parser=compare)
    _add_quiet(compare)

    about = "write the click probability of every row of a table"
    predict = actions.add_parser("predict", help=about, description=about)
    predict.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by 'mlpkit ctr train'")
    predict.add_argument(
        "file", metavar="FILE", help="a .csv, .csv.gz or .parquet table with the run's columns"
    )
    predict.add_argument("--out", metavar="FILE", help="where to write the probabilities, .csv or .parquet "
                         "[FILE's stem + '.predictions' and its format, in the current directory]")
    predict.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    predict.add_argument(
        "--runtime", choices=RUNTIMES, default="native",
        help="'native': the run's own engine; 'onnx': its export (mlpkit export) under onnxruntime [native]",
    )
    predict.set_defaults(ctr_handler=_run_ctr_predict, ctr_parser=predict)
    _add_quiet(predict)

    about = "singular values of a DCN-V2 / DCN-Mix run's cross weights, at initialization and trained"
    spectrum = actions.add_parser("spectrum", help=about, description=about)
    spectrum.add_argument("run_dir", metavar="RUN_DIR", help="a 'mlpkit ctr train' run of dcnv2 or dcnmix")
    spectrum.add_argument("--out", metavar="DIR", help="where spectrum.json and spectrum.png go [RUN_DIR]")
    spectrum.set_defaults(ctr_handler=_run_ctr_spectrum, ctr_parser=spectrum)
    _add_quiet(spectrum)


def _run_ctr(args: argparse.Namespace) -> int:
    args.parser = args.ctr_parser  # usage errors name the action's own options
    return int(args.ctr_handler(args))


def _run_ctr_train(args: argparse.Namespace) -> int:
    from mlpkit.run import resume_run, train_run

    progress = not args.no_progress and sys.stderr.isatty()
    if args.resume:
        given = [
            o.flag for o in _CTR_OPTIONS
            if getattr(args, o.dest) is not None and o.flag not in _CTR_RESUME_OPTIONS
        ]
        given += ["--config"] if args.config else []
        if given:
            raise ConfigError(
                f"--resume continues {args.resume} with the settings in its config.json; it cannot be "
                f"combined with {', '.join(given)} (it takes {', '.join(_CTR_RESUME_OPTIONS)})"
            )
        result = resume_run(
            args.resume,
            epochs=getattr(args, "override.optim.epochs"),
            data_dir=getattr(args, "override.data.data_dir"),
            device=getattr(args, "override.run.device"),
            checkpoint_interval=getattr(args, "override.run.checkpoint_interval"),
            progress=progress,
            command=args.argv,
        )
    else:
        result = train_run(_ctr_config(args), progress=progress, overwrite=args.overwrite, command=args.argv)
    if result.rank != 0:
        return EXIT_OK
    s = result.summary
    _print_table(
        [
            ("model", f"{s['model']}  ({s['params']:,} parameters)"),
            ("test AUC",
             f"{_fmt(s['test_auc'])}  (log loss {_fmt(s['test_logloss'])}, {s['n_test']:,} rows)"),
            ("best epoch", f"{s['best_epoch']} of {s['epochs_run']}  (val AUC {_fmt(s['best_val_auc'])}, "
                           f"val log loss {_fmt(s['best_val_logloss'])})"),
            ("stopped", s["stop_reason"]),
            ("wall time", f"{s['wall_seconds']:.1f} s  ({s['seconds_per_epoch']:.2f} s per epoch)"),
            ("run directory", str(result.run_dir)),
        ]
    )
    return EXIT_OK


def _run_ctr_compare(args: argparse.Namespace) -> int:
    from mlpkit.compare import compare_ctr_models

    config = _ctr_config(args, skip=("--model", "--name"))
    out = getattr(args, "override.run.out") or f"runs/{datetime.now():%Y%m%d-%H%M%S}-ctr-compare"
    progress = not args.no_progress and sys.stderr.isatty()
    rows = compare_ctr_models(config, args.models, out, overwrite=args.overwrite, progress=progress,
                              command=args.argv)
    _print_grid(
        ["model", "val AUC", "val logloss", "test AUC", "test logloss", "params", "best epoch", "s/epoch"],
        [(r["model"], r["val_auc"], r["val_logloss"], r["test_auc"], r["test_logloss"], f"{r['params']:,}",
          r["best_epoch"], f"{r['seconds_per_epoch']:.2f}") for r in rows],
    )
    print(f"\nwritten to {out} (compare.json, compare.md, compare.png)")
    return EXIT_OK


def _run_ctr_spectrum(args: argparse.Namespace) -> int:
    from mlpkit.spectrum import cross_spectrum

    result = cross_spectrum(args.run_dir, args.out)
    sides = ("initial", "trained", "update")
    rows = [
        (name, *(layer[side][rank] for side in sides for rank in ("rank_90", "rank_99")))
        for name, layer in result["layers"].items()
    ]
    print(f"{result['model']}: effective rank of each {result['shape'][0]}x{result['shape'][1]} cross matrix")
    _print_grid(["matrix", "init r90", "init r99", "trained r90", "trained r99", "update r90", "update r99"],
                rows)
    print(f"\nwritten to {args.out or args.run_dir} (spectrum.json, spectrum.png)")
    return EXIT_OK


def _run_ctr_predict(args: argparse.Namespace) -> int:
    from mlpkit.tasks.ctr import predict_ctr_run

    source = Path(args.file)
    if args.out:
        out = Path(args.out)
    else:
        stem, _, suffix = source.name.partition(".")
        out = Path(f"{stem}.predictions.{suffix or 'csv'}")
    if out.exists() and not args.overwrite:
        raise OutputError(f"{out} already exists; nothing was changed. Pass --overwrite to replace it")
    result = predict_ctr_run(args.run_dir, source, out, runtime=args.runtime)
    line = f"wrote {result['rows']:,} probabilities to {out}"
    if "auc" in result:
        line += f" (against the file's labels: AUC {_fmt(result['auc'])}, log loss {_fmt(result['logloss'])})"
    print(line)
    return EXIT_OK


def _add_export(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dir", metavar="RUN_DIR", help="a directory written by 'mlpkit train' or 'mlpkit ctr train'"
    )
    parser.add_argument("--format", choices=FORMATS, default="onnx", help="the file format [onnx]")
    parser.add_argument("--out", metavar="FILE", help=f"where to write the model [RUN_DIR/{ONNX_FILE}, where "
                        "'predict --runtime onnx' looks]")
    parser.add_argument("--opset", type=int, metavar="N",
                        help=f"ONNX opset, {MIN_OPSET} or later [{DEFAULT_OPSET}]")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")


def _run_export(args: argparse.Namespace) -> int:
    from mlpkit.export import export_run

    exported = export_run(args.run_dir, format=args.format, out=args.out, opset=args.opset,
                          overwrite=args.overwrite)
    _print_table(
        [
            ("wrote", f"{exported.path}  (ONNX, opset {exported.opset}, checked by onnx.checker)"),
            *((f"input {name}", doc) for name, doc in exported.inputs.items()),
            *((f"output {name}", doc) for name, doc in exported.outputs.items()),
        ]
    )
    return EXIT_OK


def _add_tune(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "FILE is a run config (as 'mlpkit train --config' reads it; a CTR config says task = \"ctr\" at its "
        "top) plus a [tune] table and its [tune.space]: see configs/tune_fashion_mnist.toml. Every trial is "
        "a run directory OUT/trial-NNNN, and trials are compared on the validation split only. The same "
        "command again continues the study."
    )
    parser.add_argument("--config", metavar="FILE", required=True, help="a .toml run config with [tune]")
    parser.add_argument("--trials", type=int, metavar="N", help="the trials the study should hold in all, "
                        "those of earlier commands included [[tune] trials]")
    parser.add_argument("--timeout", type=float, metavar="S", help="start no trial after S seconds of this "
                        "command [[tune] timeout]")
    parser.add_argument("--storage", metavar="URL", help="the study's database, e.g. sqlite:///study.db "
                        "[sqlite:///OUT/study.db]")
    parser.add_argument("--study-name", metavar="NAME", help="the study's name in the storage [[tune] "
                        "study_name, or FILE's stem]")
    parser.add_argument("--out", metavar="DIR", help="the tune directory: trials, best.toml, trials.csv, "
                        "plots [runs/tune-<study name>]")
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar (shown only on a terminal)"
    )


def _run_tune(args: argparse.Namespace) -> int:
    from mlpkit.tune import load_tune_config, tune

    config, settings = load_tune_config(args.config)
    settings = settings.with_options(trials=args.trials, timeout=args.timeout, study_name=args.study_name)
    progress = not args.no_progress and sys.stderr.isatty()
    result = tune(config, settings, out=args.out, storage=args.storage, progress=progress, command=args.argv)
    counts, best = result.counts, result.best
    rows: list[tuple[str, object]] = [
        ("study", f"{result.study_name}  ({result.storage}; {result.direction} {result.metric})"),
        ("trials", f"{counts['total']}: {counts['complete']} complete, {counts['pruned']} pruned, "
                   f"{counts['failed']} failed  ({result.ran} run by this command)"),
    ]
    if best is None:
        rows.append(("best trial", "none has completed yet"))
    else:
        rows.append(("best trial", f"{best['number']}: {result.metric} {_fmt(best['value'])}  (epoch "
                                   f"{best['best_epoch']} of {best['epochs_run']})"))
        rows += [(f"  {name}", f"{value:.4g}" if isinstance(value, float) else json.dumps(value))
                 for name, value in best["params"].items()]
        tests = [f"{key} {_fmt(value)}" for key, value in best.items() if key.startswith("test_")]
        rows.append(("test scores", f"{'  '.join(tests) or '-'}  (reported, never used to select)"))
        rows.append(("run directory", best["run_dir"]))
    rows.append(("written", f"{result.out}  ({', '.join(result.files)})"))
    _print_table(rows)
    return EXIT_OK


SUBCOMMANDS: dict[
    str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
] = {
    "train": ("train an MLP on Fashion-MNIST into a new run directory", _add_train, _run_train),
    "evaluate": ("score a saved run's model on the test set", _add_evaluate, _run_evaluate),
    "predict": ("classify images with a saved run's model (CSV out)", _add_predict, _run_predict),
    "experiment": ("run one of the classic studies", _add_experiment, _run_experiment),
    "export": ("write a run's model as an ONNX file with a dynamic batch axis", _add_export, _run_export),
    "ctr": ("click-through-rate models on tables: train, compare, predict, spectrum", _add_ctr, _run_ctr),
    "tune": ("search hyperparameters with Optuna, each trial a run directory", _add_tune, _run_tune),
}
"""name -> (one-line help, add_arguments(parser), handler(args) -> exit status)."""


# -- entry point ---------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse with the error first and a suggestion, no abbreviations and no wall of usage.

    ``--engin`` is not taken for ``--engine`` (an abbreviation today may be ambiguous once an
    option is added tomorrow), ``--engien`` gets "did you mean --engine?", and the error is one
    line with a pointer to ``--help`` instead of the usage of every option first.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {_suggest(self, message)}\n"
                              f"Run '{self.prog} --help' for the options.\n")


def _closest(word: str, candidates: Sequence[str]) -> str | None:
    matches = difflib.get_close_matches(word, candidates, n=1, cutoff=0.7)
    return matches[0] if matches else None


def _suggest(parser: argparse.ArgumentParser, message: str) -> str:
    """``message`` plus "did you mean ...?" for an unknown option or an invalid choice."""
    if message.startswith("unrecognized arguments: "):
        options = [flag for flag in parser._option_string_actions if flag.startswith("--")]
        hints = [
            f"{word} -> {match}"
            for word in message.removeprefix("unrecognized arguments: ").split()
            if word.startswith("-") and (match := _closest(word.split("=")[0], options))
        ]
        if len(hints) == 1:
            return f"{message} (did you mean {hints[0].split(' -> ')[1]}?)"
        if hints:
            return f"{message} (did you mean: {', '.join(hints)}?)"
    elif match := re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)$", message):
        choices = re.findall(r"'([^']*)'", match.group(2))
        if close := _closest(match.group(1), choices):
            return f"{message}; did you mean {close!r}?"
    return message


def _add_quiet(parser: argparse.ArgumentParser) -> None:
    """-q after a (sub)command too; SUPPRESS keeps a subcommand's default from resetting the top level's."""
    parser.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="log warnings and errors only"
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``mlpkit`` argument parser with every subcommand of :data:`SUBCOMMANDS`."""
    parser = _Parser(
        prog=PROG,
        description="Multilayer perceptrons on Fashion-MNIST: train, evaluate, predict.",
        epilog="Run 'mlpkit COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    common = _Parser(add_help=False)
    _add_quiet(common)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (summary, add_arguments, handler) in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=summary, description=summary, parents=[common])
        add_arguments(sub)
        sub.set_defaults(handler=handler, parser=sub)
    return parser


class _BarSafeHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Log lines written above a progress bar instead of through it (``tqdm.write``)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # as logging.StreamHandler: a failing handler must not end the run
            self.handleError(record)


class _LogFormatter(logging.Formatter):
    """Info as plain lines; warnings and errors prefixed like the CLI's own errors."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        if record.levelno >= logging.WARNING:
            return f"{PROG}: {record.levelname.lower()}: {message}"
        return message


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``mlpkit`` command with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args, unknown = parser.parse_known_args(argv)
        args.argv = argv  # recorded with a run: the command line as typed
        if args.command is None:  # bare `mlpkit`: what it can do, not a complaint
            parser.print_help()
            return EXIT_OK
        if unknown:  # reported by the subcommand, which knows the options that were meant
            args.parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    except SystemExit as exc:  # argparse has printed the usage error or the help
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE

    _allocator.keep_freed_memory()  # the application's choice: mlpkit._allocator says why
    package_logger = logging.getLogger("mlpkit")
    handler = _BarSafeHandler(sys.stderr)
    handler.setFormatter(_LogFormatter("%(message)s"))
    previous_level = package_logger.level
    package_logger.addHandler(handler)
    # Under torchrun every rank runs main(); only rank 0 tells the story.
    other_rank = os.environ.get("RANK", "0") != "0"
    package_logger.setLevel(logging.WARNING if args.quiet or other_rank else logging.INFO)
    try:
        code = _handle(args)
    finally:
        package_logger.removeHandler(handler)
        package_logger.setLevel(previous_level)
    if code != EXIT_OK and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        # A torchrun worker: the agent kills every rank as soon as one exits with an error, which
        # could cut off another rank's error line or its clean-up. Leave only when all are done.
        from mlpkit.train.distributed import wait_for_every_rank  # here: mlpkit.cli stays torch-free

        wait_for_every_rank()
    return code


def _handle(args: argparse.Namespace) -> int:
    """Run the subcommand; turn every error mlpkit raises on purpose into one line and a status."""
    try:
        return int(args.handler(args))
    except TrainingDivergedError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_DIVERGED
    except MlpkitError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ModuleNotFoundError as exc:
        # A missing optional package that no require() caught first: still one line, with the fix.
        top = (exc.name or "").partition(".")[0]
        if top not in EXTRAS:
            raise
        fix = f"pip install 'mlpkit[{EXTRAS[top]}]'"
        print(f"{PROG}: error: {exc.name} is not installed: {fix}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
