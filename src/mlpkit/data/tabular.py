"""A user's own table, made ready for an MLP: read, typed, split, and preprocessed on the train split only.

What ``mlpkit train --data FILE --target COLUMN`` needs between a CSV or Parquet file and the
arrays a trainer takes:

- :func:`read_frame` reads one file with pyarrow (duplicate column names refused, naming them);
- :func:`plan_columns` types every column but the target: numbers are numeric, strings, booleans
  and integers with few distinct values categorical (fastai's ``cont_cat_split`` rule, 20 values),
  an integer column whose every value is distinct is a row id and is ignored; each choice carries
  its reason, for the log; ``categorical``, ``numeric`` and ``ignore`` override;
- :func:`infer_task` calls the target classification or regression, with the reason;
- :func:`split_rows` splits one file into train / validation / test by seed, stratified for
  classification;
- :class:`TablePreprocessor` is fitted on the training rows only and applies to any rows after:
  numeric columns get the training median where a value is missing (plus a 0/1 indicator column
  when the training rows had missing values) and are standardized; categorical columns become ids
  (0 missing, 1 a category the training rows did not have, 2.. the training categories), one-hot
  for the NumPy engine or embedded by the torch model. It saves itself as JSON in the run directory,
  so ``evaluate`` and ``predict`` transform new rows exactly as the training rows were.

pandas and pyarrow (the ``tables`` extra) are imported when a table is read; no torch here.
"""

from __future__ import annotations

import difflib
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlpkit._optional import require
from mlpkit.errors import DataFormatError, DataNotFoundError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "MAX_CATEGORIES",
    "TASK_KINDS",
    "ColumnPlan",
    "TableArrays",
    "TablePreprocessor",
    "embedding_size",
    "infer_task",
    "missing_mask",
    "plan_columns",
    "read_frame",
    "split_rows",
]

logger = logging.getLogger(__name__)

TASK_KINDS = ("classification", "regression")

MAX_CATEGORIES = 20
"""An integer column (or target) with at most this many distinct values is categorical: fastai's
``cont_cat_split(max_card=20)``, so codes such as a rating or a region id are not read as amounts."""

MISSING_ID, UNSEEN_ID = 0, 1
"""The ids every categorical column reserves: a missing value, and a category unseen in training."""

TABLE_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".parquet")


def embedding_size(cardinality: int) -> int:
    """fastai's rule of thumb for an embedding's width: ``min(600, round(1.6 · n^0.56))`` for a
    column of ``n`` ids (Howard & Gugger, "fastai", Information 2020; ``emb_sz_rule``)."""
    return int(min(600, round(1.6 * cardinality**0.56)))


# -- reading -------------------------------------------------------------------------------------


def read_frame(path: str | Path) -> pd.DataFrame:
    """One CSV (``.csv``, ``.csv.gz``, ``.tsv``) or Parquet file as a DataFrame, read by pyarrow.

    Raises
    ------
    DataNotFoundError
        No such file.
    DataFormatError
        An unsupported suffix, a file pyarrow cannot parse, duplicate column names (named), no rows.
    """
    pa = require("pyarrow", feature="reading tables")
    require("pandas", feature="reading tables")
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"no table at {path}" + (" (it is a directory)" if path.is_dir() else ""))
    name = path.name.lower()
    try:
        if name.endswith(".parquet"):
            table = pq.read_table(str(path))
        elif name.endswith((".csv", ".csv.gz", ".tsv")):
            delimiter = "\t" if name.endswith(".tsv") else ","
            table = pacsv.read_csv(str(path), parse_options=pacsv.ParseOptions(delimiter=delimiter))
        else:
            raise DataFormatError(
                f"{path}: unsupported table type {path.suffix or 'with no suffix'!r}; use "
                f"{', '.join(TABLE_SUFFIXES)}"
            )
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataFormatError(f"{path}: cannot read the table ({exc})") from exc
    names = table.column_names
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataFormatError(
            f"{path}: duplicate column name(s) {duplicates}; every column needs its own name"
        )
    if table.num_rows == 0:
        raise DataFormatError(f"{path}: the table has a header but no rows")
    return table.to_pandas()


def _closest(name: str, names: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(names), n=3, cutoff=0.5)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


def check_columns(frame: pd.DataFrame, names: Sequence[str], *, what: str, source: str) -> None:
    """Raise DataFormatError naming each of ``names`` that ``frame`` lacks, with the closest names."""
    columns = [str(c) for c in frame.columns]
    for name in names:
        if name not in columns:
            shown = columns if len(columns) <= 12 else [*columns[:12], "..."]
            raise DataFormatError(
                f"{source}: no {what} column {name!r}{_closest(name, columns)}; the columns are {shown}"
            )


# -- typing the columns --------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnPlan:
    """What becomes of one column: ``kind`` is ``numeric``, ``categorical`` or ``ignore``; ``reason``
    says why, for the log (``"given"`` when an override chose it)."""

    name: str
    kind: str
    reason: str


def _whole(x: np.ndarray) -> np.ndarray:
    """(N,) bool: which values are finite whole numbers."""
    finite = np.isfinite(x)
    return finite & (np.floor(np.where(finite, x, 0.0)) == np.where(finite, x, 0.0))


def _looks_like_dates(values: pd.Series) -> bool:
    """True when most of a text column's first 100 distinct values parse as ISO dates."""
    import pandas as pd

    sample = values.dropna().astype(str).unique()[:100]
    if len(sample) == 0:
        return False
    parsed = pd.to_datetime(pd.Series(sample), errors="coerce", format="ISO8601")
    return bool(parsed.notna().mean() >= 0.9)


def _looks_like_id(name: str, present: pd.Series) -> bool:
    """A column of distinct integers is a row id when they run consecutively (a row number) or its
    name says id; other distinct integers (a floor area, a price) are amounts."""
    x = present.to_numpy(dtype=np.float64)
    consecutive = x.max() - x.min() + 1 == len(x)
    lowered = name.lower()
    return bool(consecutive or lowered in ("id", "index", "key") or lowered.endswith(("_id", " id", "-id")))


def _plan_one(name: str, values: pd.Series, max_categories: int) -> ColumnPlan:
    import pandas as pd

    present = values.dropna()
    distinct = present.nunique()
    if distinct == 0:
        return ColumnPlan(name, "ignore", "every value is missing")
    if distinct == 1 and len(present) == len(values):
        return ColumnPlan(name, "ignore", f"one value ({present.iloc[0]!r}) in every row")
    if pd.api.types.is_bool_dtype(values):
        return ColumnPlan(name, "categorical", "booleans")
    if pd.api.types.is_datetime64_any_dtype(values):
        return ColumnPlan(
            name,
            "categorical",
            "dates, taken as categories: derive numbers (year, "
            "day of week) from them, or pass --ignore, for a model that can use them",
        )
    if pd.api.types.is_numeric_dtype(values):
        integral = pd.api.types.is_integer_dtype(values) or bool(
            _whole(present.to_numpy(dtype=np.float64)).all()
        )
        all_distinct = distinct == len(values) and len(values) > max_categories
        if integral and all_distinct and _looks_like_id(name, present):
            return ColumnPlan(name, "ignore", "an integer id: every row has its own value")
        if integral and distinct <= max_categories:
            return ColumnPlan(
                name, "categorical", f"integers with {distinct} distinct values (at most {max_categories})"
            )
        return ColumnPlan(name, "numeric", "numbers")
    if _looks_like_dates(values):
        return ColumnPlan(
            name,
            "categorical",
            "dates as text, taken as categories: derive numbers "
            "(year, day of week) from them, or pass --ignore, for a model that can use them",
        )
    return ColumnPlan(name, "categorical", f"text with {distinct} distinct values")


def plan_columns(
    frame: pd.DataFrame,
    target: str,
    *,
    categorical: Sequence[str] = (),
    numeric: Sequence[str] = (),
    ignore: Sequence[str] = (),
    max_categories: int = MAX_CATEGORIES,
    source: str = "table",
) -> list[ColumnPlan]:
    """How each column but ``target`` is read, in the table's order.

    Raises
    ------
    DataFormatError
        An override names a column the table lacks (with the closest names), a column given two
        kinds, a ``numeric`` column holding text (with the first such value), no feature left.
    """
    import pandas as pd

    check_columns(frame, [target], what="target", source=source)
    given: dict[str, str] = {}
    for kind, names in (("categorical", categorical), ("numeric", numeric), ("ignore", ignore)):
        check_columns(frame, names, what=f"--{kind}", source=source)
        for name in names:
            if name == target:
                raise DataFormatError(f"{source}: {name!r} is the target; it cannot also be --{kind}")
            if name in given and given[name] != kind:
                raise DataFormatError(f"{source}: column {name!r} is given as both {given[name]} and {kind}")
            given[name] = kind
    plans = []
    for column in frame.columns:
        name = str(column)
        if name == target:
            continue
        if name in given:
            kind = given[name]
            values = frame[column]
            if kind == "numeric" and not pd.api.types.is_numeric_dtype(values):
                as_numbers = pd.to_numeric(values, errors="coerce")
                bad = values[as_numbers.isna().to_numpy() & ~missing_mask(values)]
                if len(bad):
                    raise DataFormatError(
                        f"{source}: column {name!r} is given as numeric but holds text, e.g. "
                        f"{bad.iloc[0]!r} in row {int(bad.index[0]) + 1}"
                    )
            plans.append(ColumnPlan(name, kind, "given"))
        else:
            plans.append(_plan_one(name, frame[column], max_categories))
    if not any(p.kind != "ignore" for p in plans):
        raise DataFormatError(f"{source}: no feature column is left besides the target {target!r}")
    return plans


def infer_task(
    values: pd.Series, target: str, *, task: str | None = None, max_categories: int = MAX_CATEGORIES
) -> tuple[str, str]:
    """(``"classification"`` or ``"regression"``, the reason) for a target column; ``task`` overrides.

    Text and booleans are classes; integers (or whole floats) with at most ``max_categories``
    distinct values are classes; other numbers are a regression target.

    Raises
    ------
    DataFormatError
        A regression target holding text (with the first such value), a target with one class.
    """
    import pandas as pd

    present = values.dropna()
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if task is None:
        if not numeric:
            task, reason = "classification", "the target holds text or booleans"
        else:
            floats = present.to_numpy(dtype=np.float64)
            distinct = present.nunique()
            if _whole(floats).all() and distinct <= max_categories:
                task, reason = "classification", f"the target holds {distinct} distinct whole numbers"
            else:
                task, reason = "regression", f"the target holds numbers with {distinct} distinct values"
    else:
        reason = "given"
    if task == "regression" and not numeric:
        as_numbers = pd.to_numeric(present, errors="coerce")
        bad = present[as_numbers.isna()]
        if len(bad):
            raise DataFormatError(
                f"target {target!r} holds text, e.g. {bad.iloc[0]!r} in row {int(bad.index[0]) + 1}; a "
                "regression target must be numbers (or use --task classification)"
            )
    if task == "classification" and present.nunique() < 2:
        only = present.iloc[0] if len(present) else None
        raise DataFormatError(
            f"target {target!r} has one class ({only!r}) in every row; a classifier needs at least two"
        )
    return task, reason


# -- splitting -----------------------------------------------------------------------------------


def split_rows(
    n: int,
    rng: np.random.Generator,
    *,
    classes: np.ndarray | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices of train, validation and test, drawn by ``rng``; stratified by ``classes`` (N,).

    Each class (or the whole table) gives ``round(fraction · count)`` rows to validation and to
    test, at least one each when it has three or more rows, and always keeps one for training.

    Returns
    -------
    train, val, test : ndarray of int64, each sorted
    """
    groups = [np.arange(n)] if classes is None else [np.flatnonzero(classes == c) for c in np.unique(classes)]
    parts: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
    for rows in groups:
        rows = rng.permutation(rows)
        k = len(rows)
        n_test = max(round(test_fraction * k), 1 if k >= 3 and test_fraction > 0 else 0)
        n_val = max(round(val_fraction * k), 1 if k >= 3 and val_fraction > 0 else 0)
        # Every class keeps a training row: a class the model never saw cannot be scored.
        n_test = min(n_test, k - 1)
        n_val = min(n_val, k - 1 - n_test)
        parts[2].append(rows[:n_test])
        parts[1].append(rows[n_test : n_test + n_val])
        parts[0].append(rows[n_test + n_val :])
    train, val, test = (np.sort(np.concatenate(p)).astype(np.int64) for p in parts)
    if len(train) == 0 or (len(test) == 0 and test_fraction > 0):
        raise DataFormatError(f"the table's {n} rows are too few to split into train, validation and test")
    return train, val, test


# -- preprocessing -------------------------------------------------------------------------------


def _category_keys(values: pd.Series) -> np.ndarray:
    """Each value as the text that names its category, or None when missing (object array (N,)).

    Whole floats print as integers, so a column read as ints in one file and as floats (because of
    a missing value) in another names the same categories.
    """
    import pandas as pd

    out = np.empty(len(values), dtype=object)
    missing = values.isna().to_numpy()
    present = values[~missing]
    if pd.api.types.is_float_dtype(values):
        floats = present.to_numpy(dtype=np.float64)
        whole = _whole(floats)
        text = np.where(
            whole, np.char.mod("%d", np.where(whole, floats, 0).astype(np.int64)), floats.astype(str)
        )
    else:
        text = present.astype(str).to_numpy()
    out[~missing] = text
    out[missing] = None
    empty = np.array([v is not None and v.strip() == "" for v in out], dtype=bool)   # (N,), also for N = 0
    out[empty] = None  # an empty cell of a text column is a missing value
    return out


def _file_row(values: pd.Series, position: int) -> int:
    """The data row of the file (from 1) of the value at ``position``: a split keeps the file's row
    labels (:func:`split_rows` selects, it does not renumber)."""
    return int(values.index[position]) + 1


def missing_mask(values: pd.Series) -> np.ndarray:
    """(N,) bool: the cells that are missing, NaN or None or an empty (or blank) text cell."""
    return np.array([k is None for k in _category_keys(values)], dtype=bool)


def _numbers(values: pd.Series) -> np.ndarray:
    """A numeric column as float64 (N,), NaN where a value is missing, infinite or not a number."""
    import pandas as pd

    x = np.array(pd.to_numeric(values, errors="coerce"), dtype=np.float64)   # a writable copy
    x[np.isinf(x)] = np.nan      # an overflowed or "inf" cell carries no usable amount: impute it
    return x


@dataclass(frozen=True)
class TableArrays:
    """Rows transformed for a model.

    Parameters
    ----------
    numeric : ndarray of shape (N, D_num), float32
        Standardized numbers, then the 0/1 missing indicators.
    categorical : ndarray of shape (N, C), int64
        One id per categorical column (``0`` missing, ``1`` unseen, ``2 +`` the category's index).
    """

    numeric: np.ndarray
    categorical: np.ndarray

    def __len__(self) -> int:
        return len(self.numeric)


@dataclass
class TablePreprocessor:
    """The preprocessing fitted on the training rows; JSON-ready via :meth:`to_dict`.

    Parameters
    ----------
    target : str
    task : {"classification", "regression"}
    numeric : list of dict
        Per numeric column: ``name``, ``median``, ``mean``, ``std`` (of the imputed training values)
        and ``indicator`` (whether a 0/1 missing column follows).
    categorical : list of dict
        Per categorical column: ``name``, ``categories`` (the training values, sorted; id ``2 + i``)
        and ``has_missing`` (whether a training row lacked a value).
    classes : list of str
        Classification: the class names, sorted; class ``k`` is the model's output ``k``.
    target_mean, target_std : float
        Regression: the model learns ``(y - mean) / std``.
    ignored : list of str
        Columns read but not used.
    """

    target: str
    task: str
    numeric: list[dict[str, Any]] = field(default_factory=list)
    categorical: list[dict[str, Any]] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    target_mean: float = 0.0
    target_std: float = 1.0
    ignored: list[str] = field(default_factory=list)

    # -- fitting ---------------------------------------------------------------------------------

    @classmethod
    def fit(
        cls, train: pd.DataFrame, plans: Sequence[ColumnPlan], target: str, task: str
    ) -> TablePreprocessor:
        """Fit on the training rows only: medians, means, stds, vocabularies, classes."""
        import pandas as pd

        pre = cls(target=target, task=task, ignored=[p.name for p in plans if p.kind == "ignore"])
        for plan in plans:
            values = train[plan.name]
            if plan.kind == "numeric":
                x = _numbers(values)
                missing = np.isnan(x)
                median = float(np.median(x[~missing])) if (~missing).any() else 0.0
                filled = np.where(missing, median, x)
                std = float(filled.std())
                pre.numeric.append(
                    {
                        "name": plan.name,
                        "median": median,
                        "mean": float(filled.mean()),
                        "std": std if std > 0 else 1.0,
                        "indicator": bool(missing.any()),
                    }
                )
            elif plan.kind == "categorical":
                keys = _category_keys(values)
                pre.categorical.append({
                    "name": plan.name, "categories": sorted({k for k in keys if k is not None}),
                    "has_missing": any(k is None for k in keys),
                })
        y = train[target]
        if task == "classification":
            pre.classes = sorted({k for k in _category_keys(y) if k is not None})
        else:
            t = pd.to_numeric(y, errors="coerce").to_numpy(dtype=np.float64)
            t = t[~np.isnan(t)]
            pre.target_mean = float(t.mean())
            pre.target_std = float(t.std()) or 1.0
        return pre

    # -- shapes ----------------------------------------------------------------------------------

    @property
    def columns(self) -> list[str]:
        """The columns a model reads, in order: numeric, then categorical."""
        return [c["name"] for c in self.numeric] + [c["name"] for c in self.categorical]

    @property
    def numeric_width(self) -> int:
        """D_num: one column per numeric column plus one per missing indicator."""
        return len(self.numeric) + sum(c["indicator"] for c in self.numeric)

    @property
    def cardinalities(self) -> list[int]:
        """Ids of each categorical column: its training categories, plus missing and unseen."""
        return [len(c["categories"]) + 2 for c in self.categorical]

    @property
    def one_hot_width(self) -> int:
        """Input width of the NumPy engine's MLP: D_num plus one column per id of every categorical."""
        return self.numeric_width + sum(self.cardinalities)

    @property
    def num_outputs(self) -> int:
        """Logits per row: the classes (one logit for regression)."""
        return len(self.classes) if self.task == "classification" else 1

    # -- applying --------------------------------------------------------------------------------

    def transform(self, frame: pd.DataFrame, *, source: str = "table") -> TableArrays:
        """The model's inputs for any rows with the training columns; other columns are ignored.

        Raises
        ------
        DataFormatError
            A column the model reads is missing (named), a numeric column holds text (with the value).
        """
        import pandas as pd

        check_columns(frame, self.columns, what="feature", source=source)
        n = len(frame)
        numbers, indicators = [], []
        for c in self.numeric:
            values = frame[c["name"]]
            parsed = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)   # (N,), parsed once
            unparsed = np.isnan(parsed)
            # Only a cell that did not parse can be text; the per-cell check runs on those columns only.
            text = unparsed & ~missing_mask(values) if unparsed.any() else unparsed
            x = np.where(np.isinf(parsed), np.nan, parsed)        # inf is imputed like a missing value
            missing = np.isnan(x)
            if text.any():
                row = int(np.flatnonzero(text)[0])
                raise DataFormatError(
                    f"{source}: numeric column {c['name']!r} holds text, {values.iloc[row]!r} "
                    f"in row {_file_row(values, row)}"
                )
            numbers.append((np.where(missing, c["median"], x) - c["mean"]) / c["std"])
            if c["indicator"]:
                indicators.append(missing.astype(np.float64))
        numeric = np.stack(numbers + indicators, axis=1) if numbers else np.zeros((n, 0))
        ids = []
        for c in self.categorical:
            keys = _category_keys(frame[c["name"]])
            codes = pd.Index(c["categories"]).get_indexer(keys).astype(np.int64)  # -1: not a category
            column = np.where(codes >= 0, codes + 2, UNSEEN_ID)
            column[np.array([k is None for k in keys], dtype=bool)] = MISSING_ID
            ids.append(column)
        categorical = np.stack(ids, axis=1) if ids else np.zeros((n, 0), np.int64)
        return TableArrays(numeric.astype(np.float32), categorical.astype(np.int64))

    def one_hot(self, arrays: TableArrays) -> np.ndarray:
        """The NumPy engine's input (N, :attr:`one_hot_width`) float32: the numbers, then each
        categorical column's ids one-hot.

        An id no training row had (the unseen id always; the missing id when the training rows had
        no missing value) is a block of zeros, not a one in its column: that column's weights were
        never trained, so a one there would shift the logits by whatever the initial weights were,
        while zeros leave the column out and the prediction rests on the others.
        """
        out = np.zeros((len(arrays), self.one_hot_width), np.float32)
        out[:, : self.numeric_width] = arrays.numeric
        offset = self.numeric_width
        for j, (column, width) in enumerate(zip(self.categorical, self.cardinalities, strict=True)):
            ids = arrays.categorical[:, j]                                   # (N,)
            trained = (ids >= 2) | ((ids == MISSING_ID) & bool(column.get("has_missing", True)))
            rows = np.flatnonzero(trained)
            out[rows, offset + ids[rows]] = 1.0
            offset += width
        return out

    def encode_target(self, values: pd.Series, *, source: str = "table") -> np.ndarray:
        """Class indices (N,) int64, or the standardized regression target (N,) float32.

        Raises
        ------
        DataFormatError
            A missing target, a class the training rows did not have, text in a regression target.
        """
        import pandas as pd

        missing = missing_mask(values)
        if missing.any():
            row = int(np.flatnonzero(missing)[0])
            raise DataFormatError(
                f"{source}: the target {self.target!r} is missing in row {_file_row(values, row)}"
            )
        if self.task == "classification":
            keys = _category_keys(values)
            codes = pd.Index(self.classes).get_indexer(keys).astype(np.int64)
            if (codes < 0).any():
                row = int(np.flatnonzero(codes < 0)[0])
                raise DataFormatError(
                    f"{source}: target class {keys[row]!r} in row {_file_row(values, row)} is not one of the "
                    f"training classes {self.classes}"
                )
            return codes
        y = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
        if np.isnan(y).any():
            row = int(np.flatnonzero(np.isnan(y))[0])
            raise DataFormatError(
                f"{source}: the regression target {self.target!r} holds text, {values.iloc[row]!r} "
                f"in row {_file_row(values, row)}"
            )
        return ((y - self.target_mean) / self.target_std).astype(np.float32)

    def decode_regression(self, standardized: np.ndarray) -> np.ndarray:
        """Model outputs (N,) back in the target's own units."""
        return np.asarray(standardized, np.float64) * self.target_std + self.target_mean

    # -- files -----------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "mlpkit.table-preprocessing",
            "version": 1,
            "target": self.target,
            "task": self.task,
            "numeric": self.numeric,
            "categorical": self.categorical,
            "classes": self.classes,
            "target_mean": self.target_mean,
            "target_std": self.target_std,
            "ignored": self.ignored,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TablePreprocessor:
        """Raises KeyError or ValueError for anything but :meth:`to_dict`'s output."""
        if raw.get("format") != "mlpkit.table-preprocessing":
            raise ValueError(f"not a table preprocessing (format {raw.get('format')!r})")
        pre = cls(
            target=str(raw["target"]),
            task=str(raw["task"]),
            numeric=list(raw["numeric"]),
            categorical=list(raw["categorical"]),
            classes=[str(c) for c in raw["classes"]],
            target_mean=float(raw["target_mean"]),
            target_std=float(raw["target_std"]),
            ignored=list(raw["ignored"]),
        )
        if pre.task not in TASK_KINDS or not all(math.isfinite(c["std"]) for c in pre.numeric):
            raise ValueError("a table preprocessing with an unknown task or a non-finite std")
        return pre
