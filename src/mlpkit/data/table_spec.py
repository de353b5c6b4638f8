"""How each column of a CTR table becomes model input: the field spec read from TOML or a dict.

A spec maps column names to :class:`ColumnConfig`; in TOML, one table per column::

    [I1]
    kind = "numeric"
    transform = "log"

    [C1]
    min_count = 10          # kind = "categorical" is the default

    [tags]
    kind = "multi"
    delimiter = "|"
    max_len = 5

A spec lists the columns the model reads; the data's other columns (but the label) are left out.
With no spec at all, every column but the label is categorical whatever its type: integer ids
are categories, and ``"007"`` and ``"7"`` are two of them. Unknown keys, and keys that only
another kind or transform uses (``delimiter`` on a categorical column, ``bins`` without
``transform = "quantile"``), are errors that list the valid keys.

Examples
--------
>>> spec = TableSpec.from_dict({"price": {"kind": "numeric", "transform": "log"}, "user": {}})
>>> spec.columns["price"].transform, spec.columns["user"].kind
('log', 'categorical')
>>> TableSpec.from_dict(spec.to_dict()) == spec
True
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from mlpkit._checks import check_choice, check_positive_int, config_section, set_frozen
from mlpkit.data.fields import FIELD_KINDS, POOLINGS
from mlpkit.errors import ConfigError

__all__ = ["MAX_HASH_BUCKETS", "TRANSFORMS", "ColumnConfig", "TableSpec", "load_table_spec"]

TRANSFORMS = ("none", "standardize", "log", "quantile")
MAX_HASH_BUCKETS = 2**31 - 1
"""hash_buckets is below this: ids are stored as int32, and a hashed id goes up to hash_buckets."""
"""Numeric transforms: as read, ``(x - mean) / std``, ``log1p(max(x, 0))``, or ``bins`` quantile bins."""




@dataclass(frozen=True)
class ColumnConfig:
    """How one column is encoded; keys a kind does not use stay ``None``.

    Parameters
    ----------
    kind : {"categorical", "numeric", "multi"}
        One category, one number, or a delimited list of tokens (e.g. tags).
    min_count : int
        Categories (or tokens) seen fewer times in the training split map to the OOV id 0.
    hash_buckets : int or None
        Hash categories (tokens) into this many buckets instead of fitting a vocabulary: for ids
        too many to count. Id 0 is then "missing" (padding for ``multi``), ``1 + hash % buckets`` a value.
    delimiter : str or None
        ``multi`` only, default ``"|"``: what separates the tokens of a cell.
    pooling : {"mean", "sum"} or None
        ``multi`` only, default ``"mean"``: how the model pools a cell's token embeddings.
    max_len : int or None
        ``multi`` only: tokens kept per cell (the first ones); default the longest list in training.
    transform : {"none", "standardize", "log", "quantile"} or None
        ``numeric`` only, default ``"none"``; ``"quantile"`` turns the column into a categorical
        field of ``bins + 2`` ids (0 unused, 1 missing, then the bins, lowest first).
    bins : int or None
        With ``transform = "quantile"`` only: the number of bins, cut at training quantiles.
    """

    kind: str = "categorical"
    min_count: int = 1
    hash_buckets: int | None = None
    delimiter: str | None = None
    pooling: str | None = None
    max_len: int | None = None
    transform: str | None = None
    bins: int | None = None

    def __post_init__(self) -> None:
        check_choice("kind", self.kind, FIELD_KINDS)
        check_positive_int("min_count", self.min_count)
        uses = {
            "categorical": {"min_count", "hash_buckets"},
            "multi": {"min_count", "hash_buckets", "delimiter", "pooling", "max_len"},
            "numeric": {"transform", "bins"},
        }[self.kind]
        for key in ("hash_buckets", "delimiter", "pooling", "max_len", "transform", "bins"):
            if key not in uses and getattr(self, key) is not None:
                raise ValueError(f"{key} does not apply to kind {self.kind!r} (got {getattr(self, key)!r})")
        if self.kind != "numeric" and self.min_count != 1 and self.hash_buckets is not None:
            raise ValueError(f"min_count does not apply to a hashed column (got {self.min_count!r})")
        if self.kind == "numeric" and self.min_count != 1:
            raise ValueError(f"min_count does not apply to kind 'numeric' (got {self.min_count!r})")
        if self.hash_buckets is not None:
            check_positive_int("hash_buckets", self.hash_buckets)
            if self.hash_buckets >= MAX_HASH_BUCKETS:                # ids 1..hash_buckets are int32
                raise ValueError(f"hash_buckets must be below {MAX_HASH_BUCKETS}, got {self.hash_buckets}")
        if self.kind == "multi":
            delimiter = "|" if self.delimiter is None else self.delimiter
            if not isinstance(delimiter, str) or not delimiter:
                raise ValueError(f"delimiter must be a non-empty string, got {delimiter!r}")
            set_frozen(self, "delimiter", delimiter)
            pooling = "mean" if self.pooling is None else self.pooling
            set_frozen(self, "pooling", check_choice("pooling", pooling, POOLINGS))
            if self.max_len is not None:
                check_positive_int("max_len", self.max_len)
        if self.kind == "numeric":
            transform = check_choice(
                "transform", "none" if self.transform is None else self.transform, TRANSFORMS
            )
            set_frozen(self, "transform", transform)
            if transform == "quantile":
                if self.bins is None:
                    raise ValueError("transform 'quantile' needs bins, the number of bins (e.g. bins = 10)")
                check_positive_int("bins", self.bins)
            elif self.bins is not None:
                raise ValueError(f"bins needs transform = 'quantile', got transform {transform!r}")

    @classmethod
    def from_dict(cls, raw: object, *, column: str) -> ColumnConfig:
        """Build one column's config from a TOML table, rejecting unknown keys."""
        if not isinstance(raw, Mapping):
            raise ConfigError(f"[{column}] must be a table of keys, got {raw!r}")
        valid = sorted(f.name for f in fields(cls))
        if unknown := sorted(set(raw) - set(valid)):
            raise ConfigError(f"[{column}] unknown key(s) {unknown}; valid keys: {valid}")
        with config_section(column):
            return cls(**raw)

    def to_dict(self) -> dict[str, Any]:
        """The keys that are set (the ``None`` ones left out, as TOML has no null)."""
        return {key: value for key, value in asdict(self).items() if value is not None}


@dataclass(frozen=True)
class TableSpec:
    """The columns a model reads, each with its :class:`ColumnConfig`, in the spec's order.

    Parameters
    ----------
    columns : Mapping of str to ColumnConfig
        Column name -> how it is encoded.
    """

    columns: Mapping[str, ColumnConfig] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.columns, Mapping):
            raise ConfigError(f"a table spec maps column names to settings, got {self.columns!r}")
        for name, config in self.columns.items():
            if not isinstance(name, str) or not name:
                raise ConfigError(f"column names must be non-empty strings, got {name!r}")
            if not isinstance(config, ColumnConfig):
                raise ConfigError(f"[{name}] must be a ColumnConfig, got {config!r}")
        set_frozen(self, "columns", dict(self.columns))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TableSpec:
        """Build a spec from ``{column: {key: value}}`` (a parsed TOML file)."""
        if not isinstance(raw, Mapping):
            raise ConfigError(f"a table spec maps column names to tables of keys, got {raw!r}")
        return cls({name: ColumnConfig.from_dict(values, column=name) for name, values in raw.items()})

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {name: config.to_dict() for name, config in self.columns.items()}


def load_table_spec(path: str | Path) -> TableSpec:
    """Read a table spec from a TOML file with one table per column.

    Parameters
    ----------
    path : str or Path
        The ``.toml`` file.

    Returns
    -------
    TableSpec

    Raises
    ------
    ConfigError
        Naming the file: missing, not valid TOML, an unknown key (with the valid ones) or an invalid value.
    """
    path = Path(path)
    try:
        with open(path, "rb") as file:
            raw = tomllib.load(file)
    except FileNotFoundError as exc:
        raise ConfigError(f"table spec {path} does not exist") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read table spec {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    try:
        return TableSpec.from_dict(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
