"""Field and FieldSpec: the boundary between tabular data and models."""

from __future__ import annotations

import re

import pytest

from mlpkit.data.fields import Field, FieldSpec


def test_offsets_and_total_vocab_count_categorical_then_multi_fields() -> None:
    spec = FieldSpec(
        (
            Field("tags", "multi", 7, max_len=3),
            Field("user", "categorical", 5),
            Field("price", "numeric"),
            Field("item", "categorical", 11),
        )
    )
    assert [f.name for f in spec.embedded] == ["user", "item", "tags"]
    assert spec.offsets == (0, 5, 16) and spec.total_vocab == 23
    assert [f.name for f in spec.numeric] == ["price"]
    assert FieldSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: Field("a", "bag"),
            "field 'a': kind must be one of ['categorical', 'numeric', 'multi'], got 'bag'",
        ),
        (lambda: Field("a", "categorical", 0), "field 'a': vocab_size must be a positive int, got 0"),
        (lambda: Field("a", "numeric", 3), "numeric field 'a' has no vocabulary, got vocab_size=3"),
        (lambda: Field("a", "multi", 4), "multi-valued field 'a': max_len must be a positive int, got 0"),
        (lambda: Field("a", "multi", 4, pooling="max", max_len=2), "pooling must be one of ['mean', 'sum']"),
        (
            lambda: FieldSpec((Field("a", "numeric"), Field("a", "numeric"))),
            "field names must be unique, got ['a'] more than once",
        ),
    ],
)
def test_invalid_fields_are_named(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        make()  # type: ignore[operator]
