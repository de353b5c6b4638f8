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


def main(argv: list[str]) -> None:
    data, target, task, seed, columns, out = Path(argv[0]), argv[1], argv[2], int(argv[3]), argv[4], argv[5]
    kinds = json.loads(columns)
    numeric, categorical = kinds["numeric"], kinds["categorical"]
    train, valid, test = (pd.read_csv(data / f"{split}.csv") for split in ("train", "valid", "test"))
    fit_rows = pd.concat([train, valid], ignore_index=True)
    for part in (fit_rows, test):
        as_categories(part, categorical)
    y = fit_rows[target].to_numpy()
    if task == "classification":
        y = y.astype(str)
    model = pipelines(task, numeric, categorical, seed)["sklearn MLP"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the MLP warns when its 200 epochs did not converge
        model.fit(fit_rows[numeric + categorical], y)
    x_test = test[numeric + categorical]
    predicted = model.predict(x_test)
    columns_out: dict[str, Any] = {"prediction": predicted}
    if task == "classification":
        proba = model.predict_proba(x_test)
        columns_out |= {f"p_{name}": proba[:, i] for i, name in enumerate(model.classes_)}
        truth = test[target].to_numpy().astype(str)
        score = {"accuracy": float(np.mean(predicted == truth))}
    else:
        truth = test[target].to_numpy(dtype=float)
        score = {"rmse": float(np.sqrt(np.mean((predicted - truth) ** 2)))}
    pd.DataFrame(columns_out).to_csv(out, index=False)
    print(json.dumps(score))


if __name__ == "__main__":
    main(sys.argv[1:])
