"""mlpkit.data.tabular: typing a user's columns, splitting, and preprocessing fitted on train only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlpkit.data.tabular import (
    MISSING_ID,
    UNSEEN_ID,
    TablePreprocessor,
    embedding_size,
    infer_task,
    plan_columns,
    read_frame,
    split_rows,
)
from mlpkit.errors import DataFormatError


def every_kind(n: int = 200, seed: int = 0) -> pd.DataFrame:
    """A table with one column of every kind a user's file has."""
    rng = np.random.default_rng(seed)
    ages = rng.normal(40, 10, n)
    ages[::7] = np.nan
    return pd.DataFrame(
        {
            "customer_id": rng.permutation(n) + 10_000,  # ints that are ids
            "visits": rng.poisson(40, n),  # ints that are counts
            "rating": rng.integers(1, 6, n),  # ints that are codes
            "age": ages,  # floats with NaN
            "city": rng.choice(["Oslo", "Lima", "Pune"], n),  # strings
            "member": rng.random(n) < 0.5,  # booleans
            "signup": pd.date_range("2024-01-01", periods=n).strftime("%Y-%m-%d"),  # dates as text
            "constant": 3.0,
            "y": rng.choice(["a", "b"], n),
        }
    )


def test_every_kind_of_column_is_typed_with_its_reason() -> None:
    plans = {p.name: p for p in plan_columns(every_kind(), "y")}
    assert {name: p.kind for name, p in plans.items()} == {
        "customer_id": "ignore",
        "visits": "numeric",
        "rating": "categorical",
        "age": "numeric",
        "city": "categorical",
        "member": "categorical",
        "signup": "categorical",
        "constant": "ignore",
    }
    assert "id" in plans["customer_id"].reason
    assert "dates" in plans["signup"].reason and "--ignore" in plans["signup"].reason
    assert "5 distinct" in plans["rating"].reason


def test_overrides_win_and_a_wrong_name_lists_the_closest_column() -> None:
    plans = {
        p.name: p.kind
        for p in plan_columns(every_kind(), "y", categorical=["visits"], numeric=["rating"], ignore=["city"])
    }
    assert (plans["visits"], plans["rating"], plans["city"]) == ("categorical", "numeric", "ignore")
    with pytest.raises(DataFormatError, match=r"no --ignore column 'citty' \(did you mean 'city'\?\)"):
        plan_columns(every_kind(), "y", ignore=["citty"])
    with pytest.raises(
        DataFormatError, match=r"'city' is given as numeric but holds text, e.g. '\w+' in row 1"
    ):
        plan_columns(every_kind(), "y", numeric=["city"])


def test_a_missing_target_lists_close_names() -> None:
    with pytest.raises(DataFormatError, match=r"no target column 'ratting' \(did you mean 'rating'\?\)"):
        plan_columns(every_kind(), "ratting")


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        (["x", "y", "x"], "classification"),
        ([True, False, True], "classification"),
        ([0, 1, 2, 1, 0], "classification"),
        ([1.0, 2.0, 1.0], "classification"),
        (list(np.linspace(0, 1, 50)), "regression"),
        (list(range(100)), "regression"),
    ],
)
def test_the_task_follows_the_target(values: list[object], kind: str) -> None:
    assert infer_task(pd.Series(values), "t")[0] == kind


def test_a_target_with_one_class_or_a_text_regression_target_is_refused() -> None:
    with pytest.raises(DataFormatError, match=r"target 't' has one class \('x'\)"):
        infer_task(pd.Series(["x", "x"]), "t")
    with pytest.raises(DataFormatError, match=r"target 't' holds text, e.g. 'high' in row 2"):
        infer_task(pd.Series(["1.5", "high"]), "t", task="regression")


def test_the_split_is_stratified_disjoint_and_seeded() -> None:
    classes = np.array(["a"] * 80 + ["b"] * 20)
    train, val, test = split_rows(100, np.random.default_rng(3), classes=classes)
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(100))
    assert [int((classes[test] == c).sum()) for c in "ab"] == [12, 3]  # round(0.15 · 80), round(0.15 · 20)
    assert [int((classes[val] == c).sum()) for c in "ab"] == [12, 3]
    again = split_rows(100, np.random.default_rng(3), classes=classes)
    assert all(np.array_equal(x, y) for x, y in zip((train, val, test), again, strict=True))


def fitted(train: pd.DataFrame) -> TablePreprocessor:
    return TablePreprocessor.fit(train, plan_columns(train, "y", categorical=["city"]), "y", "classification")


def test_preprocessing_is_fitted_on_the_training_rows_only() -> None:
    train = pd.DataFrame(
        {"size": [1.5, 2.5, np.nan, 5.5], "city": ["Oslo", "Lima", "Oslo", None], "y": ["a", "b", "a", "b"]}
    )
    test = pd.DataFrame({"size": [1000.0, np.nan], "city": ["Pune", "Lima"], "y": ["a", "b"]})
    pre = fitted(train)
    # By hand: the median of 1.5, 2.5, 5.5 is 2.5; imputed 1.5, 2.5, 2.5, 5.5 have mean 3 and std
    # sqrt((2.25 + 0.25 + 0.25 + 6.25) / 4) = 1.5.
    assert pre.numeric == [{"name": "size", "median": 2.5, "mean": 3.0, "std": 1.5, "indicator": True}]
    # No "Pune": it is not in train.
    assert pre.categorical == [{"name": "city", "categories": ["Lima", "Oslo"], "has_missing": True}]
    arrays = pre.transform(test)
    np.testing.assert_allclose(arrays.numeric, [[(1000 - 3) / 1.5, 0.0], [(2.5 - 3) / 1.5, 1.0]], rtol=1e-6)
    assert arrays.categorical[:, 0].tolist() == [UNSEEN_ID, 2]  # Lima is category 0 -> id 2
    assert pre.transform(train).categorical[:, 0].tolist() == [3, 2, 3, MISSING_ID]


def test_one_hot_puts_each_id_in_its_column_after_the_numbers() -> None:
    train = pd.DataFrame({"size": [1.5, 2.5], "city": ["Oslo", "Lima"], "y": ["a", "b"]})
    pre = fitted(train)
    x = pre.one_hot(pre.transform(pd.DataFrame({"size": [3.0, 2.0, 2.0], "city": ["Rome", "Oslo", None]})))
    # size standardized: (3 - 2) / 0.5 = 2; city: 4 ids (missing, unseen, Lima, Oslo). Rome is unseen
    # and training had no missing city: both ids were never trained, so their blocks stay zero.
    np.testing.assert_array_equal(x, [[2.0, 0, 0, 0, 0], [0.0, 0, 0, 0, 1], [0.0, 0, 0, 0, 0]])
    assert pre.one_hot_width == 5


def test_categories_match_across_int_and_float_files() -> None:
    # A column read as ints from one file and as floats (because of a blank) from another.
    pre = TablePreprocessor.fit(
        pd.DataFrame({"zone": [1, 2, 1], "y": ["a", "b", "a"]}),
        plan_columns(pd.DataFrame({"zone": [1, 2, 1], "y": ["a", "b", "a"]}), "y"),
        "y",
        "classification",
    )
    ids = pre.transform(pd.DataFrame({"zone": [2.0, np.nan, 1.0]})).categorical[:, 0]
    assert ids.tolist() == [3, MISSING_ID, 2]


def test_the_preprocessing_round_trips_through_json() -> None:
    pre = fitted(every_kind().assign(city=lambda f: f.city))
    assert TablePreprocessor.from_dict(pre.to_dict()) == pre


def test_a_missing_feature_column_is_named() -> None:
    pre = fitted(pd.DataFrame({"size": [1.5, 2.5], "city": ["Oslo", "Lima"], "y": ["a", "b"]}))
    with pytest.raises(DataFormatError, match=r"new.csv: no feature column 'city'"):
        pre.transform(pd.DataFrame({"size": [1.0]}), source="new.csv")


def test_duplicate_column_names_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    path.write_text("a,b,a\n1,2,3\n")
    with pytest.raises(DataFormatError, match=r"dup.csv: duplicate column name\(s\) \['a'\]"):
        read_frame(path)


def test_fastai_embedding_rule() -> None:
    # min(600, round(1.6 · n^0.56)): n = 10 -> round(5.81) = 6; n = 2 -> round(2.36) = 2.
    assert [embedding_size(n) for n in (2, 10, 10**6)] == [2, 6, 600]


def test_every_class_keeps_a_training_row() -> None:
    classes = np.array(["a"] * 20 + ["rare"] * 2)
    train, _, _ = split_rows(22, np.random.default_rng(0), classes=classes, val_fraction=0.3,
                                  test_fraction=0.3)
    assert "rare" in set(classes[train])


def test_distinct_whole_numbers_are_amounts_unless_they_count_rows_or_are_named_id() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"sqft": rng.choice(np.arange(500, 5000), 100, replace=False),
                          "row": np.arange(100), "user_id": rng.choice(10**6, 100, replace=False),
                          "y": rng.normal(size=100)})
    kinds = {p.name: p.kind for p in plan_columns(frame, "y")}
    assert kinds == {"sqft": "numeric", "row": "ignore", "user_id": "ignore"}


def test_infinite_numbers_are_imputed_like_missing_ones() -> None:
    train = pd.DataFrame({"v": [1.5, np.inf, 2.5, 4.5], "y": ["a", "b", "a", "b"]})
    pre = TablePreprocessor.fit(train, plan_columns(train, "y"), "y", "classification")
    # The median of 1.5, 2.5, 4.5 is 2.5, standing in for inf; the indicator marks the row.
    assert pre.numeric[0]["median"] == 2.5 and pre.numeric[0]["indicator"]
    assert np.isfinite(pre.transform(pd.DataFrame({"v": [-np.inf]})).numeric).all()
