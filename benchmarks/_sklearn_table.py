"""The scikit-learn side of ``benchmarks/tabular.py``: the pipelines, and the script a user would write.

:func:`pipelines` builds the two models ``tabular.py`` compares in its own process. Run as a
script, this file is what a scikit-learn user writes for ``mlpkit train --data DIR --target COLUMN``,
so that ``tabular.py`` can time both as commands, each in a fresh interpreter (imports, reading the
CSV files, fitting, scoring the test rows and writing their predictions)::

    python benchmarks/_sklearn_table.py DIR TARGET TASK SEED COLUMNS_JSON PREDICTIONS_CSV

It imports nothing of mlpkit (that would charge mlpkit's imports to scikit-learn's time): the
column types come in ``COLUMNS_JSON`` (``{"numeric": [...], "categorical": [...]}``, as mlpkit
typed them), so both read the same features. It prints the test score as one JSON line.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def pipelines(task: str, numeric: list[str], categorical: list[str], seed: int) -> dict[str, Any]:
    """``{"sklearn MLP": ..., "HistGradientBoosting": ...}``, unfitted, with default settings.

    The MLP reads the numbers median-imputed with missing indicators and standardized, the
    categories one-hot; gradient boosting reads the numbers as they are and the categories
    ordinal-encoded and declared categorical (missing and unseen ones -1).
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    one_hot = ColumnTransformer(
        [
            (
                "numeric",
                make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()),
                numeric,
            ),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), categorical),
        ]
    )
    ordinal = ColumnTransformer(
        [
            ("numeric", "passthrough", numeric),
            (
                "categorical",
                OrdinalEncoder(
                    handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1
                ),
                categorical,
            ),
        ]
    )
    mask = [False] * len(numeric) + [True] * len(categorical)
    if task == "classification":
        mlp: Any = MLPClassifier(random_state=seed)
        hgb: Any = HistGradientBoostingClassifier(random_state=seed, categorical_features=mask)
    else:
        mlp = MLPRegressor(random_state=seed)
        hgb = HistGradientBoostingRegressor(random_state=seed, categorical_features=mask)
    return {"sklearn MLP": make_pipeline(one_hot, mlp), "HistGradientBoosting": make_pipeline(ordinal, hgb)}


def as_categories(frame: pd.DataFrame, categorical: list[str]) -> None:
    """One type per categorical column, as OneHotEncoder wants: strings, missing cells ``"missing"``."""
    for column in categorical:
        frame[column] = frame[column].astype(str).where(frame[column].notna(), "missing")


def prepare(
    splits: dict[str, pd.DataFrame], target: str, task: str, columns: list[str], categorical: list[str]
) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame, np.ndarray]:
    """``(x_fit, y_fit, x_test, y_test)`` from the ``train``/``valid``/``test`` frames: scikit-learn
    fits on train + validation (it selects nothing on them); class labels as strings."""
    fit_rows = pd.concat([splits["train"], splits["valid"]], ignore_index=True)
    test = splits["test"].copy()
    for part in (fit_rows, test):
        as_categories(part, categorical)
    y_fit, y_test = fit_rows[target].to_numpy(), test[target].to_numpy()
    if task == "classification":
        y_fit, y_test = y_fit.astype(str), y_test.astype(str)
    return fit_rows[columns], y_fit, test[columns], y_test


def fit(model: Any, x: pd.DataFrame, y: np.ndarray) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the MLP warns when its 200 epochs did not converge
        return model.fit(x, y)


def scores(task: str, y: np.ndarray, predicted: Any, proba: np.ndarray | None) -> dict[str, float | None]:
    """RMSE for regression; accuracy and AUC (binary, or one-vs-rest macro) for classification."""
    from sklearn import metrics

    if task == "regression":
        return {"rmse": float(np.sqrt(metrics.mean_squared_error(y, predicted)))}
    auc = None
    if proba is not None:
        auc = float(
            metrics.roc_auc_score(y, proba[:, 1])
            if proba.shape[1] == 2
            else metrics.roc_auc_score(y, proba, multi_class="ovr")
        )
    return {"accuracy": float(metrics.accuracy_score(y, predicted)), "auc": auc}


def main(argv: list[str]) -> None:
    data, target, task, seed, columns, out = Path(argv[0]), argv[1], argv[2], int(argv[3]), argv[4], argv[5]
    kinds = json.loads(columns)
    numeric, categorical = kinds["numeric"], kinds["categorical"]
    splits = {split: pd.read_csv(data / f"{split}.csv") for split in ("train", "valid", "test")}
    x_fit, y_fit, x_test, y_test = prepare(splits, target, task, numeric + categorical, categorical)
    model = fit(pipelines(task, numeric, categorical, seed)["sklearn MLP"], x_fit, y_fit)
    predicted = model.predict(x_test)
    columns_out: dict[str, Any] = {"prediction": predicted}
    proba = None
    if task == "classification":
        proba = model.predict_proba(x_test)
        columns_out |= {f"p_{name}": proba[:, i] for i, name in enumerate(model.classes_)}
    pd.DataFrame(columns_out).to_csv(out, index=False)
    print(json.dumps(scores(task, y_test, predicted, proba)))


if __name__ == "__main__":
    main(sys.argv[1:])
