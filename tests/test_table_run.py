"""``mlpkit train --data TABLE --target COLUMN``: a user's table through the one runner, on generated data."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as sk

from fakedata import assert_warns_unfinished_once, run_cli, unfinished_copy
from mlpkit.config import TableConfig
from mlpkit.data.tabular import UNSEEN_ID
from mlpkit.errors import DataFormatError
from mlpkit.run import evaluate_run, resume_run, train_run
from mlpkit.tasks.tabular import load_table_run, read_split_frames

SHORT = ["--epochs", "8", "--batch-size", "64", "--no-progress"]


def customers(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """Numbers with gaps, text, booleans and low-cardinality ints; three targets that depend on them."""
    rng = np.random.default_rng(seed)
    age = rng.normal(40, 10, n).round(1)
    spend = rng.gamma(2.0, 50.0, n).round(2)
    plan = rng.choice(["basic", "plus", "pro"], n)
    member = rng.random(n) < 0.4
    score = 0.08 * (age - 40) + 1.2 * (plan == "pro") - 1.0 * (plan == "basic") + 0.8 * member
    frame = pd.DataFrame(
        {
            "age": age,
            "spend": spend,
            "plan": plan,
            "member": member,
            "region": rng.integers(1, 5, n),
            "churn": np.where(score + rng.normal(0, 0.7, n) > 0, "yes", "no"),
            "tier": np.digitize(score + rng.normal(0, 0.3, n), [-0.7, 0.7]),  # 0, 1, 2
            "value": 3.0 * age + 40.0 * (plan == "pro") + rng.normal(0, 5, n),
        }
    )
    frame.loc[rng.random(n) < 0.1, "age"] = np.nan
    return frame


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("table") / "customers.csv"
    customers().to_csv(path, index=False)
    return path


def train(table: Path, out: Path, target: str, *extra: str) -> dict:
    others = [c for c in ("churn", "tier", "value") if c != target]
    code, _, err = run_cli(
        "train",
        "--data",
        table,
        "--target",
        target,
        "--ignore",
        ",".join(others),
        *SHORT,
        "--out",
        out,
        *extra,
    )
    assert code == 0, err
    return json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def churn_run(table: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "churn"
    train(table, out, "churn")
    return out


def test_test_scores_equal_scikit_learn_on_the_saved_model(churn_run: Path, table: Path) -> None:
    summary = json.loads((churn_run / "summary.json").read_text())
    loaded = load_table_run(churn_run)
    pre = loaded.preprocessor
    assert (summary["task"], pre.classes) == ("classification", ["no", "yes"])
    # The test rows, as the run split them: the rows of the file that are in neither train nor val.
    result = evaluate_run(churn_run)
    frame = customers()
    config = TableConfig.from_dict(json.loads((churn_run / "config.json").read_text()))

    test = read_split_frames(config).frames["test"]
    assert (
        len(test)
        == summary["n_test"]
        == result["n_test"]
        == round(0.15 * (frame.churn == "no").sum()) + round(0.15 * (frame.churn == "yes").sum())
    )
    y = (test.churn == "yes").to_numpy().astype(int)
    logits = loaded.logits(pre.transform(test))
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert summary["test_accuracy"] == pytest.approx(sk.accuracy_score(y, p.argmax(1)), abs=1e-12)
    assert summary["test_balanced_accuracy"] == pytest.approx(
        sk.balanced_accuracy_score(y, p.argmax(1)), abs=1e-12
    )
    assert summary["test_auc"] == pytest.approx(sk.roc_auc_score(y, p[:, 1]), abs=1e-9)
    assert summary["test_logloss"] == pytest.approx(sk.log_loss(y, p), abs=1e-5)
    assert summary["test_confusion_matrix"] == sk.confusion_matrix(y, p.argmax(1)).tolist()
    assert {k: result[k] for k in ("test_accuracy", "test_auc")} == {
        k: summary[k] for k in ("test_accuracy", "test_auc")
    }


def test_the_run_directory_holds_the_preprocessing_and_the_report(churn_run: Path) -> None:
    names = {p.name for p in churn_run.iterdir()}
    assert {
        "config.json",
        "preprocessing.json",
        "model.safetensors",
        "metrics.jsonl",
        "summary.json",
        "report.md",
        "curves.png",
    } <= names
    report = (churn_run / "report.md").read_text()
    assert "**Test accuracy" in report and "| no |" in report
    columns = json.loads((churn_run / "summary.json").read_text())["columns"]
    assert columns == {
        "age": "numeric",
        "spend": "numeric",
        "plan": "categorical",
        "member": "categorical",
        "region": "categorical",
        "tier": "ignore",
        "value": "ignore",
    }


def test_predict_applies_the_saved_preprocessing(churn_run: Path, tmp_path: Path) -> None:
    rows = pd.DataFrame(
        {
            "age": [np.nan, 30.0],
            "spend": [10.0, 200.0],
            "plan": ["enterprise", "pro"],
            "member": [True, False],
            "region": [2, 9],
            "note": ["x", "y"],
        }
    )
    path = tmp_path / "new.csv"
    rows.to_csv(path, index=False)
    code, out, err = run_cli("predict", churn_run, path)
    assert code == 0, err
    predictions = pd.read_csv(io.StringIO(out))
    assert list(predictions.columns) == ["prediction", "p_no", "p_yes"]
    # By hand: the missing age takes the training median (indicator 1), 'enterprise' and region 9 are unseen.
    loaded = load_table_run(churn_run)
    pre = loaded.preprocessor
    arrays = pre.transform(pd.read_csv(path))
    age = pre.numeric[0]
    assert arrays.numeric[0, 0] == pytest.approx((age["median"] - age["mean"]) / age["std"], rel=1e-6)
    assert arrays.numeric[0, -1] == 1.0 and arrays.numeric[1, -1] == 0.0
    assert arrays.categorical[0, 0] == UNSEEN_ID and arrays.categorical[1, 2] == UNSEEN_ID
    logits = loaded.logits(arrays)
    p_yes = 1 / (1 + np.exp(logits[:, 0] - logits[:, 1]))
    np.testing.assert_allclose(predictions.p_yes, p_yes, atol=1e-6)
    assert "note" in err  # the extra column, ignored
    rows.drop(columns=["plan"]).to_csv(path, index=False)
    code, _, err = run_cli("predict", churn_run, path)
    assert code != 0 and "no feature column 'plan'" in err


def test_multiclass_auc_is_one_vs_rest_as_scikit_learn(table: Path, tmp_path: Path) -> None:
    summary = train(table, tmp_path / "tier", "tier")
    assert summary["task"] == "classification" and summary["classes"] == ["0", "1", "2"]
    loaded = load_table_run(tmp_path / "tier")

    test = read_split_frames(loaded.config).frames["test"]
    logits = loaded.logits(loaded.preprocessor.transform(test))
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert summary["test_auc"] == pytest.approx(sk.roc_auc_score(test.tier, p, multi_class="ovr"), abs=1e-9)


def test_a_regression_reports_rmse_mae_r2_in_the_targets_units(table: Path, tmp_path: Path) -> None:
    out = tmp_path / "value"
    summary = train(table, out, "value", "--epochs", "40")
    assert summary["task"] == "regression"
    loaded = load_table_run(out)

    test = read_split_frames(loaded.config).frames["test"]
    predicted = loaded.preprocessor.decode_regression(loaded.logits(loaded.preprocessor.transform(test)))
    # rel 1e-6: the run decodes its float32 targets, the test reads the file's float64 values.
    assert summary["test_rmse"] == pytest.approx(
        np.sqrt(sk.mean_squared_error(test.value, predicted)), rel=1e-6
    )
    assert summary["test_mae"] == pytest.approx(sk.mean_absolute_error(test.value, predicted), rel=1e-6)
    assert summary["test_r2"] == pytest.approx(sk.r2_score(test.value, predicted), rel=1e-6)
    assert summary["test_r2"] > 0.7  # value is linear in age (10% missing) and plan, plus noise
    assert (out / "predicted.png").is_file() and (out / "residuals.png").is_file()
    code, stdout, _ = run_cli("predict", out, table)
    assert code == 0 and stdout.splitlines()[0] == "prediction"


def test_the_torch_engine_embeds_the_categories_and_evaluate_repeats_the_summary(
    table: Path, tmp_path: Path
) -> None:
    out = tmp_path / "torch"
    summary = train(table, out, "churn", "--engine", "torch")
    loaded = load_table_run(out)
    widths = [e.embedding_dim for e in loaded.model.embeddings]
    # fastai's rule on plan (3 categories + missing + unseen = 5 ids), member (2 + 2), region (4 + 2).
    assert widths == [round(1.6 * 5**0.56), round(1.6 * 4**0.56), round(1.6 * 6**0.56)]
    result = evaluate_run(out)
    assert result["test_accuracy"] == summary["test_accuracy"]
    assert result["test_logloss"] == pytest.approx(summary["test_logloss"], abs=1e-6)


def test_a_resumed_table_run_equals_the_straight_run(table: Path, tmp_path: Path) -> None:
    config = TableConfig.from_dict(
        {
            "data": {"path": str(table), "target": "churn", "ignore": ["tier", "value"]},
            "optim": {"epochs": 4, "batch_size": 64},
            "early_stopping": {"patience": None},
        }
    )
    straight = train_run(config.with_overrides({"run": {"out": str(tmp_path / "a")}}))

    def stop_after_2(run_dir: Path, record: dict) -> None:
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(config.with_overrides({"run": {"out": str(tmp_path / "b")}}), on_epoch_end=stop_after_2)
    resumed = resume_run(tmp_path / "b")
    assert resumed.summary["test_logloss"] == straight.summary["test_logloss"]


def test_a_directory_of_train_valid_test_files_is_read_as_given(tmp_path: Path) -> None:
    frame = customers(300)
    data = tmp_path / "data"
    data.mkdir()
    for name, part in (("train", frame[:200]), ("valid", frame[200:250]), ("test", frame[250:])):
        part.to_parquet(data / f"{name}.parquet") if name == "test" else part.to_csv(
            data / f"{name}.csv", index=False
        )
    summary = train(data, tmp_path / "run", "churn")
    assert (summary["n_train"], summary["n_val"], summary["n_test"]) == (200, 50, 50)


# -- bad input -----------------------------------------------------------------------------------


def error_of(*argv: str | Path) -> str:
    code, _, err = run_cli("train", *argv, "--epochs", "1", "--no-progress")
    assert code != 0
    return err


def test_a_target_that_does_not_exist_lists_close_names(table: Path, tmp_path: Path) -> None:
    err = error_of("--data", table, "--target", "chrun", "--out", tmp_path / "x")
    assert "no target column 'chrun' (did you mean 'churn'?)" in err
    assert not (tmp_path / "x").exists()  # nothing half-written


def test_a_target_with_one_class_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "one.csv"
    customers(50).assign(churn="yes").to_csv(path, index=False)
    assert "target 'churn' has one class ('yes')" in error_of("--data", path, "--target", "churn")


def test_a_regression_target_with_text_is_refused(table: Path) -> None:
    err = error_of("--data", table, "--target", "plan", "--task", "regression")
    assert "target 'plan' holds text, e.g." in err


def test_duplicate_column_names_are_named(tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    path.write_text("x,x,y\n1,2,a\n3,4,b\n")
    assert "duplicate column name(s) ['x']" in error_of("--data", path, "--target", "y")


def test_a_missing_table_is_named(tmp_path: Path) -> None:
    assert f"no table at {tmp_path / 'nope.csv'}" in error_of(
        "--data", tmp_path / "nope.csv", "--target", "y"
    )


def test_a_table_without_a_target_says_what_is_missing(table: Path) -> None:
    code, _, err = run_cli("train", "--data", table, "--no-progress")
    assert code != 0 and "needs --target" in err


def test_rows_without_a_target_are_dropped_in_every_split(tmp_path: Path) -> None:
    rows = customers(60)
    rows.loc[[3, 7], "churn"] = None
    data = tmp_path / "d"
    data.mkdir()
    for name in ("train", "valid", "test"):
        rows.to_csv(data / f"{name}.csv", index=False)
    summary = train(data, tmp_path / "r", "churn")
    assert (summary["n_train"], summary["n_val"], summary["n_test"]) == (58, 58, 58)


def test_an_empty_validation_split_trains_on_the_training_loss(table: Path, tmp_path: Path) -> None:
    config = TableConfig.from_dict(
        {
            "data": {"path": str(table), "target": "churn", "ignore": ["tier", "value"], "val_fraction": 0.0},
            "optim": {"epochs": 2},
            "run": {"out": str(tmp_path / "r")},
        }
    )
    result = train_run(config)
    assert (result.summary["n_val"], result.summary["monitor"]) == (0, "train_loss")


def test_errors_name_the_split_file_and_its_row(tmp_path: Path) -> None:
    frame = customers(100)[["age", "plan", "churn"]]
    data = tmp_path / "d"
    data.mkdir()
    frame[:60].to_csv(data / "train.csv", index=False)
    valid = frame[60:80].copy()
    valid.loc[valid.index[4], "churn"] = "maybe"
    valid.to_csv(data / "valid.csv", index=False)
    frame[80:].to_csv(data / "test.csv", index=False)
    with pytest.raises(DataFormatError, match=r"valid\.csv: target class 'maybe' in row 5 is not one"):
        train_run(
            TableConfig.from_dict(
                {"data": {"path": str(data), "target": "churn"}, "run": {"out": str(tmp_path / "r")}}
            )
        )
    # One file: the row of the file, wherever the split put it.
    one = frame.assign(age=frame.age.astype(object))
    one.loc[99, "age"] = "unknown"
    one.to_csv(tmp_path / "one.csv", index=False)
    named = r"column 'age' .*holds text, (e\.g\. )?'unknown' in row 100"   # from the typing or the transform
    for seed in (0, 1):
        with pytest.raises(DataFormatError, match=named):
            train_run(
                TableConfig.from_dict(
                    {
                        "data": {"path": str(tmp_path / "one.csv"), "target": "churn", "numeric": ["age"]},
                        "run": {"seed": seed, "out": str(tmp_path / f"s{seed}")},
                    }
                )
            )


def test_the_task_is_decided_once_for_the_whole_table(tmp_path: Path) -> None:
    # 21 distinct whole numbers: regression, whichever split holds the one 20.
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=120), "y": np.r_[rng.integers(0, 20, 119), 20]})
    frame.to_csv(tmp_path / "t.csv", index=False)
    for seed in range(4):
        config = TableConfig.from_dict(
            {
                "data": {"path": str(tmp_path / "t.csv"), "target": "y"},
                "optim": {"epochs": 1},
                "run": {"seed": seed, "out": str(tmp_path / f"{seed}")},
            }
        )
        assert train_run(config).summary["task"] == "regression"


def test_gradient_clipping_on_the_numpy_engine_is_refused(table: Path) -> None:
    err = error_of("--data", table, "--target", "churn", "--grad-clip", "1")
    assert "grad_clip_norm needs engine 'torch'" in err and "grad_clip_norm=1" in err


def test_monitoring_accuracy_on_a_regression_is_refused_before_anything_is_written(
    table: Path, tmp_path: Path
) -> None:
    err = error_of("--data", table, "--target", "value", "--monitor", "val_accuracy", "--out", tmp_path / "r")
    assert "monitor 'val_accuracy' needs a classification target, but 'value' is a regression target" in err
    assert not (tmp_path / "r").exists()


def test_evaluate_and_predict_say_once_when_the_table_run_did_not_finish(
    churn_run: Path, table: Path, tmp_path: Path
) -> None:
    unfinished = unfinished_copy(churn_run, tmp_path)
    assert_warns_unfinished_once(unfinished, "scoring", "evaluate", unfinished)
    assert_warns_unfinished_once(unfinished, "predicting with", "predict", unfinished, table)
    code, _, err = run_cli("predict", churn_run, table)
    assert code == 0 and "did not finish" not in err
