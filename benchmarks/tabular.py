"""A user's own table: ``mlpkit train --data ... --target ...`` beside scikit-learn, dataset by dataset.

Every table a user can get offline here: scikit-learn's bundled data sets (iris, wine, breast
cancer, digits: classification; diabetes: regression) and, as a smoke case with missing numbers
and hashed categories, the 200-row Criteo sample of DeepCTR (research use only: read from the
shared datasets directory given by ``--criteo``, never copied). For each data set and seed the rows
are split once, stratified for classification (:func:`mlpkit.data.tabular.split_rows`: 70% train,
15% validation, 15% test) and written as ``train``/``valid``/``test`` CSV files; then, in one
process, on the same rows:

- **mlpkit**: :func:`mlpkit.run.train_run` on that directory with the defaults of
  ``mlpkit train --data DIR --target COLUMN`` (NumPy engine; one hidden layer of 100 with Glorot's
  weights, Adam 1e-3, batch 32, up to 200 epochs, the best epoch by validation loss, early stopping
  after 10 without improvement). It uses the validation file to pick its epoch.
- **sklearn MLP**: ``Pipeline(ColumnTransformer(numeric: median imputer with missing indicators +
  StandardScaler; categorical: OneHotEncoder), MLPClassifier | MLPRegressor)`` with default settings,
  fitted on train + validation (it selects nothing on them). The columns are typed as mlpkit typed
  them, so both read the same features.
- **HistGradientBoosting** (context): the same columns, categories ordinal-encoded and declared
  categorical, default settings, on train + validation.

Scores on the test rows: accuracy and AUC (binary, or one-vs-rest macro) for classification, RMSE
for regression. Times: mlpkit's whole run (reading the CSV files, typing and preprocessing, training,
and writing the run directory with its checkpoints, plots and report), beside its training loop
alone (the sum of its epochs' seconds); the scikit-learn pipelines' ``fit`` on in-memory frames.
And as commands, each in a fresh interpreter, for the first ``--command-seeds`` seeds (3): what a
user waits for, ``mlpkit train --data DIR --target COLUMN`` (the run directory with its plots and
report) against the script a scikit-learn user writes for the same job
(``benchmarks/_sklearn_table.py``: imports, reading the CSV files, fitting, predicting the test rows
into a CSV); each command must score what its in-process call scored. The check per data set:
mlpkit's mean score within 0.005 (accuracy, AUC) or 2% (RMSE) of the scikit-learn MLP pipeline's,
or better, in less time (judged three ways: whole run against ``fit``, training loop against
``fit``, command against command).

Usage::

    python benchmarks/tabular.py [--seeds 10] [--command-seeds 3] [--criteo DIR] [--blas-env-unset]
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BLAS_ENV_VARS, machine_info, mean_sd, print_table, rerun_without_blas_env, write_json
from _sklearn_table import fit, pipelines, prepare, scores

from mlpkit.config import TableConfig
from mlpkit.data.tabular import plan_columns, split_rows
from mlpkit.run import train_run

ACCURACY_MARGIN, RMSE_MARGIN = 0.005, 0.02
OVERRIDES: dict[str, dict[str, Any]] = {}
"""``--set section.key=value`` settings applied over mlpkit's defaults (to compare them; none by default)."""


def datasets(criteo: Path | None) -> dict[str, tuple[pd.DataFrame, str, str]]:
    """name -> (frame, target column, task)."""
    from sklearn import datasets as sk

    out: dict[str, tuple[pd.DataFrame, str, str]] = {}
    for name, loader in (
        ("iris", sk.load_iris),
        ("wine", sk.load_wine),
        ("breast_cancer", sk.load_breast_cancer),
        ("digits", sk.load_digits),
    ):
        bunch = loader(as_frame=True)
        frame = bunch.frame.rename(columns={"target": "label"})
        frame["label"] = (
            np.asarray(bunch.target_names)[frame["label"]] if name != "digits" else frame["label"]
        )
        out[name] = (frame, "label", "classification")
    diabetes = sk.load_diabetes(as_frame=True, scaled=False).frame
    out["diabetes"] = (diabetes, "target", "regression")
    if criteo is not None:
        out["criteo_sample"] = (pd.read_csv(criteo / "criteo_sample.txt"), "label", "classification")
    return out


def one_seed(
    name: str, frame: pd.DataFrame, target: str, task: str, seed: int, work: Path, *, commands: bool
) -> dict[str, Any]:
    from mlpkit.run import run_seeds

    rng = run_seeds(seed)[0]
    classes = frame[target].astype(str).to_numpy() if task == "classification" else None
    train, val, test = split_rows(len(frame), rng, classes=classes)
    data = work / f"{name}-{seed}"
    data.mkdir()
    parts = {"train": frame.iloc[train], "valid": frame.iloc[val], "test": frame.iloc[test]}
    for split, part in parts.items():
        part.to_csv(data / f"{split}.csv", index=False)
    # The CSV round trip, as mlpkit reads it, for every library.
    read = {split: pd.read_csv(data / f"{split}.csv") for split in parts}
    plans = plan_columns(read["train"], target)
    numeric = [p.name for p in plans if p.kind == "numeric"]
    categorical = [p.name for p in plans if p.kind == "categorical"]
    x_fit, y_fit, x_test, y_test = prepare(read, target, task, numeric + categorical, categorical)

    results: dict[str, Any] = {}
    config = TableConfig.from_dict(
        {
            "data": {"path": str(data), "target": target, "task": task},
            "run": {"seed": seed, "out": str(work / f"run-{name}-{seed}")},
        }
    ).with_overrides(OVERRIDES)
    start = time.perf_counter()
    run = train_run(config)
    seconds = time.perf_counter() - start
    s = run.summary
    score = (
        {"rmse": s["test_rmse"]}
        if task == "regression"
        else {"accuracy": s["test_accuracy"], "auc": s["test_auc"]}
    )
    loop = sum(r["seconds"] for r in run.history.records)
    results["mlpkit"] = {**score, "seconds": seconds, "loop_seconds": loop, "epochs": s["epochs_run"]}

    for label, model in pipelines(task, numeric, categorical, seed).items():
        start = time.perf_counter()
        fit(model, x_fit, y_fit)
        seconds = time.perf_counter() - start
        proba = model.predict_proba(x_test) if task == "classification" else None
        results[label] = {
            **scores(task, y_test, model.predict(x_test), proba),
            "seconds": seconds,
            "epochs": getattr(model[-1], "n_iter_", None),
        }
    if commands:
        columns = json.dumps({"numeric": numeric, "categorical": categorical})
        seconds, summary = _mlpkit_command(data, target, task, seed, work / f"cmd-{name}-{seed}")
        results["mlpkit"]["command_seconds"] = seconds
        seconds, printed = _timed(
            [sys.executable, str(SKLEARN_SCRIPT), str(data), target, task, str(seed), columns,
             str(work / f"sklearn-{name}-{seed}.csv")]
        )
        results["sklearn MLP"]["command_seconds"] = seconds
        # Each command is the same model as the call above: the same score, or the timing is of another thing.
        metric = "rmse" if task == "regression" else "accuracy"
        scored = {"mlpkit": summary[f"test_{metric}"], "sklearn MLP": json.loads(printed)[metric]}
        for who, score in scored.items():
            if not np.isclose(score, results[who][metric], rtol=1e-9):
                raise RuntimeError(f"{name} seed {seed}: {who}'s command scored {score}, "
                                   f"its call {results[who][metric]}")
    return results


SKLEARN_SCRIPT = Path(__file__).resolve().parent / "_sklearn_table.py"


def _timed(command: list[str]) -> tuple[float, str]:
    """Wall time of ``command`` in a fresh process, and what it printed."""
    start = time.perf_counter()
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return time.perf_counter() - start, done.stdout


def _mlpkit_command(data: Path, target: str, task: str, seed: int, out: Path) -> tuple[float, dict[str, Any]]:
    """``mlpkit train --data DIR --target COLUMN`` as a user types it; its seconds and summary."""
    seconds, _ = _timed(
        [sys.executable, "-m", "mlpkit", "train", "--data", str(data), "--target", target, "--task", task,
         "--seed", str(seed), "--out", str(out), "--quiet"]
    )
    return seconds, json.loads((out / "summary.json").read_text())


def run(
    seeds: int, criteo: Path | None, only: list[str] | None = None, command_seeds: int = 3
) -> dict[str, Any]:
    logging.disable(logging.INFO)  # the runs' per-epoch log lines
    if OVERRIDES:
        command_seeds = 0  # the command line has no --set; the commands run the defaults only
    out: dict[str, Any] = {"machine": machine_info(), "seeds": seeds, "command_seeds": command_seeds,
                           "datasets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (frame, target, task) in datasets(criteo).items():
            if only and name not in only:
                continue
            per_seed = [
                one_seed(name, frame, target, task, seed, Path(tmp), commands=seed < command_seeds)
                for seed in range(seeds)
            ]
            libraries = per_seed[0].keys()
            summary: dict[str, Any] = {"task": task, "rows": len(frame), "columns": frame.shape[1] - 1}
            for library in libraries:
                keys = [k for k in per_seed[0][library] if per_seed[0][library][k] is not None]
                summary[library] = {
                    k: mean_sd([r[library][k] for r in per_seed if k in r[library]]) for k in keys
                }
            summary["per_seed"] = per_seed
            summary["check"] = _check(task, summary)
            out["datasets"][name] = summary
    return out


def _check(task: str, summary: dict[str, Any]) -> dict[str, Any]:
    ours, theirs = summary["mlpkit"], summary["sklearn MLP"]
    if task == "regression":
        score_ok = ours["rmse"]["mean"] <= theirs["rmse"]["mean"] * (1 + RMSE_MARGIN)
    else:
        score_ok = all(
            ours[k]["mean"] >= theirs[k]["mean"] - ACCURACY_MARGIN
            for k in ("accuracy", "auc")
            if k in ours and k in theirs
        )
    check = {
        "score": bool(score_ok),
        "time_run": bool(ours["seconds"]["mean"] < theirs["seconds"]["mean"]),
        "time_loop": bool(ours["loop_seconds"]["mean"] < theirs["seconds"]["mean"]),
    }
    if "command_seconds" in ours:
        check["time_command"] = bool(ours["command_seconds"]["mean"] < theirs["command_seconds"]["mean"])
    return check


def report(result: dict[str, Any]) -> None:
    rows = []
    for name, d in result["datasets"].items():
        for library in ("mlpkit", "sklearn MLP", "HistGradientBoosting"):
            r = d[library]
            score = (
                f"RMSE {r['rmse']['mean']:.2f} ± {r['rmse']['sd']:.2f}"
                if d["task"] == "regression"
                else f"acc {r['accuracy']['mean']:.4f} ± {r['accuracy']['sd']:.4f}"
            )
            auc = f"{r['auc']['mean']:.4f}" if "auc" in r else "-"
            loop = f"{r['loop_seconds']['mean']:.2f}" if "loop_seconds" in r else "-"
            epochs = f"{r['epochs']['mean']:.0f}" if "epochs" in r else "-"
            command = f"{r['command_seconds']['mean']:.2f}" if "command_seconds" in r else "-"
            rows.append(
                [
                    name if library == "mlpkit" else "",
                    library,
                    score,
                    auc,
                    f"{r['seconds']['mean']:.2f}",
                    loop,
                    command,
                    epochs,
                ]
            )
        c = d["check"]
        rows.append(
            [
                "",
                "check",
                f"score {'ok' if c['score'] else 'NOT met'}",
                "",
                f"run {'faster' if c['time_run'] else 'SLOWER'}",
                f"loop {'faster' if c['time_loop'] else 'SLOWER'}",
                "" if "time_command" not in c else f"command {'faster' if c['time_command'] else 'SLOWER'}",
                "",
            ]
        )
    header = ["dataset", "library", "test score (mean ± sd)", "AUC", "seconds", "loop s", "command s",
              "epochs"]
    print_table(rows, header)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # Ten seeds, not three: iris's and wine's test sets are 24 and 27 rows, one row 0.04 of accuracy,
    # and three seeds cannot resolve the 0.005 the check asks for.
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--command-seeds", type=int, default=3,
                        help="of those, how many also run as commands in fresh processes [3]")
    parser.add_argument(
        "--criteo", type=Path, help="the directory holding criteo_sample.txt (DeepCTR's sample)"
    )
    parser.add_argument(
        "--blas-env-unset",
        action="store_true",
        help=f"also re-run in a child process with {', '.join(BLAS_ENV_VARS)} unset",
    )
    parser.add_argument("--datasets", type=lambda s: s.split(","), help="only these, comma-separated")
    parser.add_argument("--child-json", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="a setting over mlpkit's defaults, as in a TOML file (e.g. optim.batch_size=32)")
    args = parser.parse_args()
    for item in args.set:
        key, _, value = item.partition("=")
        section, _, name = key.partition(".")
        OVERRIDES.setdefault(section, {})[name] = tomllib.loads(f"v = {value}")["v"]
    result = run(args.seeds, args.criteo, args.datasets, args.command_seeds)
    if args.child_json:
        print(json.dumps(result))
        return
    report(result)
    if args.blas_env_unset:
        extra = ["--seeds", str(args.seeds), "--command-seeds", str(args.command_seeds)]
        extra += ["--criteo", str(args.criteo)] if args.criteo else []
        extra += ["--datasets", ",".join(args.datasets)] if args.datasets else []
        extra += [f"--set={item}" for item in args.set]
        unset = rerun_without_blas_env(__file__, extra)
        if unset is not None:
            print("\nwith the BLAS variables unset:")
            report(unset)
            result["blas_env_unset"] = unset
    print(f"wrote {write_json('tabular', result)}")


if __name__ == "__main__":
    main()
