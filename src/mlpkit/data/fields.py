"""The fields of a tabular (CTR) data set: what crosses from the data pipeline to the models.

A table's columns become three kinds of model input, in a named batch::

    {"sparse": (B, F) int64,          one id per categorical field, in FieldSpec.categorical order
     "dense":  (B, N) float32,        one value per numeric field, in FieldSpec.numeric order
     "multi:<name>": (B, L) int64}    one padded id list per multi-valued field (0 = padding)

Ids are *per field*: each categorical field counts from 0 to its own ``vocab_size - 1``, and a
model that keeps one embedding table for all fields adds the field offsets
(:attr:`FieldSpec.offsets`) itself. The id layout of a field, fixed by the data pipeline:

- categorical: ``0`` is out-of-vocabulary (categories not seen in training, or seen fewer than
  ``min_count`` times), ``1`` is "missing" *if* the training split had missing cells in that field
  (otherwise a missing cell maps to ``0`` too), then the categories, most frequent first (ties by
  value, in the byte order of their UTF-8 text);
- multi-valued: ``0`` is padding (never a token), ``1`` OOV, then the tokens as above;
- hashed fields: ``0`` missing (padding for multi-valued ones), then ``1 + hash(value) % buckets``
  with a hash that is the same in every process (:func:`mlpkit.data.table_io.stable_hash`);
- numeric fields cut into quantile bins are categorical to the model, with ``bins + 2`` ids:
  ``0`` unused, ``1`` missing (always reserved), then the bins, lowest values first.

This module imports nothing but the standard library, so data, models and runs share it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["FIELD_KINDS", "POOLINGS", "Field", "FieldSpec"]

FIELD_KINDS = ("categorical", "numeric", "multi")
POOLINGS = ("mean", "sum")


@dataclass(frozen=True)
class Field:
    """One input column as the model sees it.

    Parameters
    ----------
    name : str
        The column name.
    kind : {"categorical", "numeric", "multi"}
        One id, one number, or a list of ids (e.g. tags).
    vocab_size : int
        Rows of the field's embedding table, every reserved id included (0 for numeric fields).
    pooling : {"mean", "sum"}
        How a multi-valued field's embeddings are pooled into one vector.
    max_len : int
        Length L of a multi-valued field's padded id lists (0 for the other kinds).
    """

    name: str
    kind: str
    vocab_size: int = 0
    pooling: str = "mean"
    max_len: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"field name must be a non-empty str, got {self.name!r}")
        if self.kind not in FIELD_KINDS:
            raise ValueError(
                f"field {self.name!r}: kind must be one of {list(FIELD_KINDS)}, got {self.kind!r}"
            )
        if self.kind == "numeric":
            if self.vocab_size != 0:
                raise ValueError(
                    f"numeric field {self.name!r} has no vocabulary, got vocab_size={self.vocab_size}"
                )
        elif isinstance(self.vocab_size, bool) or not isinstance(self.vocab_size, int) or self.vocab_size < 1:
            raise ValueError(
                f"field {self.name!r}: vocab_size must be a positive int, got {self.vocab_size!r}"
            )
        if self.pooling not in POOLINGS:
            raise ValueError(
                f"field {self.name!r}: pooling must be one of {list(POOLINGS)}, got {self.pooling!r}"
            )
        if self.kind == "multi" and (not isinstance(self.max_len, int) or self.max_len < 1):
            raise ValueError(
                f"multi-valued field {self.name!r}: max_len must be a positive int, got {self.max_len!r}"
            )


@dataclass(frozen=True)
class FieldSpec:
    """The fields of a data set, in column order; the one description data and models share.

    Examples
    --------
    >>> spec = FieldSpec((Field("user", "categorical", 958), Field("age", "numeric"),
    ...                   Field("item", "categorical", 4083)))
    >>> [f.name for f in spec.categorical], spec.offsets, spec.total_vocab
    (['user', 'item'], (0, 958), 5041)
    >>> FieldSpec.from_json(spec.to_json()) == spec
    True
    """

    fields: tuple[Field, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple(self.fields))
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            duplicated = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"field names must be unique, got {duplicated} more than once")

    @property
    def categorical(self) -> tuple[Field, ...]:
        """The fields of the ``"sparse"`` columns, in order."""
        return tuple(f for f in self.fields if f.kind == "categorical")

    @property
    def numeric(self) -> tuple[Field, ...]:
        """The fields of the ``"dense"`` columns, in order."""
        return tuple(f for f in self.fields if f.kind == "numeric")

    @property
    def multi(self) -> tuple[Field, ...]:
        """The multi-valued fields, each its own ``"multi:<name>"`` array."""
        return tuple(f for f in self.fields if f.kind == "multi")

    @property
    def embedded(self) -> tuple[Field, ...]:
        """Fields with an embedding table: categorical then multi-valued (the order of a model's F axis)."""
        return self.categorical + self.multi

    @property
    def offsets(self) -> tuple[int, ...]:
        """Start of each embedded field's rows in one shared table: cumulative ``vocab_size``."""
        starts, total = [], 0
        for f in self.embedded:
            starts.append(total)
            total += f.vocab_size
        return tuple(starts)

    @property
    def total_vocab(self) -> int:
        """Rows of one shared embedding table for every embedded field."""
        return sum(f.vocab_size for f in self.embedded)

    def to_dict(self) -> dict[str, Any]:
        return {"fields": [asdict(f) for f in self.fields]}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> FieldSpec:
        return cls(tuple(Field(**f) for f in raw["fields"]))

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> FieldSpec:
        return cls.from_dict(json.loads(text))
