"""FieldEmbedding and LinearEmbedding: field order, lookups by hand, pooling, layouts, init, errors."""

from __future__ import annotations

import math
import re

import pytest
import torch

from mlpkit.blocks.embedding import FieldEmbedding, LinearEmbedding
from mlpkit.data.fields import Field, FieldSpec
from mlpkit.errors import DataFormatError

pytestmark = pytest.mark.torch  # needs torch (the `torch` extra)

LAYOUTS = ["shared", "per_field"]

SPEC = FieldSpec(
    (
        Field("user", "categorical", 6),
        Field("price", "numeric"),
        Field("tags", "multi", 5, pooling="mean", max_len=3),
        Field("item", "categorical", 4),
        Field("words", "multi", 7, pooling="sum", max_len=2),
        Field("age", "numeric"),
    )
)


def make_batch(batch_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "sparse": torch.stack([torch.randint(0, v, (batch_size,), generator=gen) for v in (6, 4)], dim=1),
        "dense": torch.randn(batch_size, 2, generator=gen),
        "multi:tags": torch.randint(0, 5, (batch_size, 3), generator=gen),
        "multi:words": torch.randint(0, 7, (batch_size, 2), generator=gen),
    }


def pooled(table: torch.Tensor, ids: torch.Tensor, pooling: str) -> torch.Tensor:
    """The pooling written out row by row: mean or sum of the non-padding ids' rows, 0 for none."""
    rows = []
    for row in ids.tolist():
        kept = [table[i] for i in row if i != 0]
        if not kept:
            rows.append(torch.zeros(table.shape[1]))
        else:
            total = torch.stack(kept).sum(dim=0)
            rows.append(total / len(kept) if pooling == "mean" else total)
    return torch.stack(rows)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("batch_size", [1, 5])
def test_every_field_matches_its_lookup_written_out(layout, batch_size):
    torch.manual_seed(0)
    emb = FieldEmbedding(SPEC, 3, layout=layout)
    batch = make_batch(batch_size)
    out = emb(batch)
    assert emb.field_names == ("user", "item", "tags", "words", "price", "age")  # categorical, multi, numeric
    assert out.shape == (batch_size, 6, 3)
    with torch.no_grad():
        expected = torch.stack(
            [
                emb.field_table("user")[batch["sparse"][:, 0]],
                emb.field_table("item")[batch["sparse"][:, 1]],
                pooled(emb.field_table("tags"), batch["multi:tags"], "mean"),
                pooled(emb.field_table("words"), batch["multi:words"], "sum"),
                batch["dense"][:, :1] * emb.field_table("price"),
                batch["dense"][:, 1:] * emb.field_table("age"),
            ],
            dim=1,
        )
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_multi_valued_pooling_skips_padding_and_an_empty_row_gives_zeros(layout):
    spec = FieldSpec((Field("tags", "multi", 4, pooling="mean", max_len=3),
                      Field("words", "multi", 4, pooling="sum", max_len=3)))
    emb = FieldEmbedding(spec, 2, layout=layout)
    with torch.no_grad():
        for name in ("tags", "words"):
            emb.field_table(name).copy_(torch.tensor([[100.0, 100.0], [1.0, 2.0], [3.0, 4.0], [5.0, 7.0]]))
    ids = torch.tensor([[1, 2, 0], [0, 0, 0], [3, 0, 3]])
    out = emb({"multi:tags": ids, "multi:words": ids})
    # Row 0 = padding (100, 100) is never read; by hand: mean (1,2),(3,4) = (2,3); sum = (4,6).
    expected_mean = torch.tensor([[2.0, 3.0], [0.0, 0.0], [5.0, 7.0]])
    expected_sum = torch.tensor([[4.0, 6.0], [0.0, 0.0], [10.0, 14.0]])
    torch.testing.assert_close(out[:, 0], expected_mean)
    torch.testing.assert_close(out[:, 1], expected_sum)
    out.sum().backward()
    for i in range(2):  # the padding row of each field gets no gradient
        if layout == "shared":
            assert emb.table is not None and emb.table.weight.grad is not None
            padding_grad = emb.table.weight.grad[spec.offsets[i]]
        else:
            padding_grad = emb.tables[i].weight.grad[0]
        assert torch.all(padding_grad == 0)


@pytest.mark.parametrize("batch_size", [1, 5])
def test_both_layouts_give_identical_outputs_and_gradients_for_identical_tables(batch_size):
    torch.manual_seed(0)
    shared = FieldEmbedding(SPEC, 4, layout="shared")
    per_field = FieldEmbedding(SPEC, 4, layout="per_field")
    with torch.no_grad():
        for name in shared.field_names:
            per_field.field_table(name).copy_(shared.field_table(name))
    batch = make_batch(batch_size, seed=1)
    out_shared, out_per_field = shared(batch), per_field(batch)
    assert torch.equal(out_shared, out_per_field)
    g = torch.randn_like(out_shared)
    (out_shared * g).sum().backward()
    (out_per_field * g).sum().backward()
    assert shared.table is not None and shared.table.weight.grad is not None
    for i, field in enumerate(SPEC.embedded):
        start = SPEC.offsets[i]
        shared_grad = shared.table.weight.grad[start : start + field.vocab_size]
        torch.testing.assert_close(per_field.tables[i].weight.grad, shared_grad)
    torch.testing.assert_close(per_field.numeric_weight.grad, shared.numeric_weight.grad)


def test_shared_table_rows_follow_the_spec_offsets():
    emb = FieldEmbedding(SPEC, 2, layout="shared")
    assert emb.table is not None
    assert emb.table.weight.shape == (SPEC.total_vocab, 2) == (6 + 4 + 5 + 7, 2)
    with torch.no_grad():
        emb.table.weight.copy_(torch.arange(44.0).reshape(22, 2))
    # Categorical offsets (0, 6): "item" id 3 is shared row 9.
    out = emb({"sparse": torch.tensor([[2, 3]]), "dense": torch.zeros(1, 2),
               "multi:tags": torch.tensor([[0, 0, 0]]), "multi:words": torch.tensor([[0, 0]])})
    torch.testing.assert_close(out[0, 0], torch.tensor([4.0, 5.0]))
    torch.testing.assert_close(out[0, 1], torch.tensor([18.0, 19.0]))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_parameter_count_is_one_row_per_id_and_one_vector_per_numeric_field(layout):
    emb = FieldEmbedding(SPEC, 10, layout=layout)
    assert sum(p.numel() for p in emb.parameters()) == (6 + 4 + 5 + 7) * 10 + 2 * 10
    assert "cat_offsets" not in emb.state_dict()  # derived from the spec, not saved


def test_initialization_is_normal_with_std_1e_4_and_xavier_for_numeric_vectors():
    torch.manual_seed(0)
    emb = FieldEmbedding(FieldSpec((Field("a", "categorical", 50_000), Field("x", "numeric"))), 10)
    weights = emb.field_table("a").detach()
    assert abs(weights.mean().item()) < 1e-6
    assert weights.std().item() == pytest.approx(1e-4, rel=0.02)  # 500,000 draws: sd of the sd ~ 0.1%
    assert emb.numeric_weight is not None
    assert emb.numeric_weight.shape == (1, 10)
    emb2 = FieldEmbedding(FieldSpec(tuple(Field(f"x{i}", "numeric") for i in range(20_000))), 10)
    assert emb2.numeric_weight is not None
    assert emb2.numeric_weight.std().item() == pytest.approx(math.sqrt(2 / 11), rel=0.02)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("batch_size", [1, 5])
def test_linear_embedding_is_bias_plus_the_sum_of_first_order_weights(layout, batch_size):
    torch.manual_seed(0)
    lr = LinearEmbedding(SPEC, layout=layout)
    assert lr.bias is not None
    with torch.no_grad():
        lr.bias.fill_(0.5)
    batch = make_batch(batch_size)
    w = lr.weights
    with torch.no_grad():
        expected = (
            0.5
            + w.field_table("user")[batch["sparse"][:, 0], 0]
            + w.field_table("item")[batch["sparse"][:, 1], 0]
            + pooled(w.field_table("tags"), batch["multi:tags"], "mean")[:, 0]
            + pooled(w.field_table("words"), batch["multi:words"], "sum")[:, 0]
            + batch["dense"][:, 0] * w.field_table("price")[0, 0]
            + batch["dense"][:, 1] * w.field_table("age")[0, 0]
        ).unsqueeze(1)
    out = lr(batch)
    assert out.shape == (batch_size, 1)
    torch.testing.assert_close(out, expected)
    assert sum(p.numel() for p in lr.parameters()) == 22 + 2 + 1
    assert sum(p.numel() for p in LinearEmbedding(SPEC, bias=False).parameters()) == 22 + 2


def test_errors_name_the_array_the_field_and_the_value():
    emb = FieldEmbedding(SPEC, 2)
    batch = make_batch(3)
    cases = [
        ({"sparse": torch.tensor([[0, 0], [5, 4], [0, 0]])},
         "batch['sparse'] has id 4 for field 'item' at row 1, column 1, outside its vocabulary [0, 4)"),
        ({"multi:tags": torch.tensor([[1, 0, 0], [0, 0, 0], [-1, 2, 0]])},
         "batch['multi:tags'] has id -1 for field 'tags' at row 2, position 0, "
         "outside its vocabulary [0, 5)"),
        ({"dense": None},
         "batch has no 'dense' array, which the fields ['price', 'age'] need; "
         "it has ['multi:tags', 'multi:words', 'sparse']"),
        ({"sparse": batch["sparse"].float()},
         "batch['sparse'] must be an int64 (B, 2) tensor of ids, got torch.float32 of shape (3, 2)"),
        ({"sparse": torch.zeros(3, 3, dtype=torch.int64)},
         "batch['sparse'] must be an int64 (B, 2) tensor of ids, got torch.int64 of shape (3, 3)"),
        ({"dense": torch.zeros(4, 2)}, "batch['dense'] has 4 rows, but the other arrays have 3"),
        ({"dense": torch.zeros(3, 1)},
         "batch['dense'] must be a float (B, 2) tensor for the numeric fields ['price', 'age'], "
         "got torch.float32 of shape (3, 1)"),
    ]
    for change, message in cases:
        bad = {k: v for k, v in {**batch, **change}.items() if v is not None}
        with pytest.raises(DataFormatError, match=re.escape(message)):
            emb(bad)


def test_constructor_errors():
    with pytest.raises(ValueError, match=r"layout must be one of \['per_field', 'shared'\], got 'shard' "
                       r"\(did you mean 'shared'\?\)"):
        FieldEmbedding(SPEC, 4, layout="shard")
    with pytest.raises(ValueError, match="embedding_dim must be a positive int, got 0"):
        FieldEmbedding(SPEC, 0)
    with pytest.raises(ValueError, match="spec must have at least one field, got none"):
        FieldEmbedding(FieldSpec(()), 4)
    with pytest.raises(ValueError, match=r"no field named 'nope'; the fields are \['user', 'item'"):
        FieldEmbedding(SPEC, 4).field_table("nope")
