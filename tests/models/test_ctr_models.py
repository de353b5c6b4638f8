"""The CTR models: BARS's parameter counts, shapes at B = 1 and 5, gradients, references, the registry."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterable

import pytest
import torch
from torch import nn

from mlpkit.blocks.embedding import FieldEmbedding
from mlpkit.data.fields import Field, FieldSpec
from mlpkit.errors import ConfigError
from mlpkit.models.ctr import (
    BARS_FRAPPE_X1,
    CTR_MODELS,
    DCN,
    FFM,
    FM,
    LR,
    DeepFM,
    TransformerDeep,
    build_ctr_model,
)

pytestmark = pytest.mark.torch  # needs torch (the `torch` extra)

# Frappe_x1's fields as BARS encodes them: the training split's categories plus one OOV id each,
# 5,389 rows in all (the vocabulary BARS's FM count implies: 5,389 × 11 + 1 = 59,280).
FRAPPE_VOCAB = {"user": 955, "item": 4083, "daytime": 8, "weekday": 8, "isweekend": 3, "homework": 4,
                "cost": 3, "weather": 10, "country": 81, "city": 234}
FRAPPE = FieldSpec(tuple(Field(name, "categorical", size) for name, size in FRAPPE_VOCAB.items()))

# Every kind of field, so every model is exercised on categorical, multi-valued and numeric input.
MIXED = FieldSpec(
    (
        Field("user", "categorical", 7),
        Field("item", "categorical", 11),
        Field("price", "numeric"),
        Field("tags", "multi", 6, pooling="mean", max_len=4),
        Field("hour", "categorical", 24),
        Field("words", "multi", 9, pooling="sum", max_len=3),
        Field("age", "numeric"),
    )
)
SMALL = {"embedding_dim": 4}
TOWER = {"hidden_features": (16, 8)}
SMALL_KWARGS = {
    "lr": {},
    "fm": SMALL,
    "ffm": SMALL,
    "dnn": SMALL | TOWER,
    "ipnn": SMALL | TOWER,
    "nfm": SMALL | TOWER,
    "deepfm": SMALL | TOWER,
    "dcn": SMALL | TOWER | {"num_layers": 2},
    "dcnv2": SMALL | TOWER | {"num_layers": 2},
    "dcnv2-stacked": SMALL | TOWER | {"num_layers": 2},
    "dcnmix": SMALL | TOWER | {"num_layers": 2, "num_experts": 3, "low_rank": 2},
    "dcnmix-stacked": SMALL | TOWER | {"num_layers": 2, "num_experts": 3, "low_rank": 2},
    "transformer-deep": SMALL | TOWER | {"transformer_fields": ("user", "tags", "price")},
}


def random_ids(sizes: Iterable[int], batch_size: int, gen: torch.Generator) -> torch.Tensor:
    return torch.stack([torch.randint(0, v, (batch_size,), generator=gen) for v in sizes], dim=1)


def mixed_batch(batch_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "sparse": random_ids((7, 11, 24), batch_size, gen),
        "dense": torch.randn(batch_size, 2, generator=gen),
        "multi:tags": torch.randint(0, 6, (batch_size, 4), generator=gen),
        "multi:words": torch.randint(0, 9, (batch_size, 3), generator=gen),
    }


def frappe_batch(batch_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {"sparse": random_ids(FRAPPE_VOCAB.values(), batch_size, gen)}


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry_holds_the_thirteen_models():
    assert list(CTR_MODELS) == [
        "lr", "fm", "ffm", "dnn", "ipnn", "nfm", "deepfm", "dcn", "dcnv2", "dcnv2-stacked", "dcnmix",
        "dcnmix-stacked", "transformer-deep",
    ]


def test_fm_on_frappe_has_bars_parameter_count():
    assert sum(FRAPPE_VOCAB.values()) == 5389
    assert count(FM(FRAPPE, embedding_dim=10)) == 59280 == 5389 * 11 + 1


# "Total number of parameters" in the logs of BARS's Frappe_x1 runs (reczoo/BARS, ranking/ctr/<model>/
# <model>_frappe_x1/README.md), every model at its BARS defaults: E = 10, towers (400, 400, 400).
@pytest.mark.parametrize(
    ("name", "kwargs", "published"),
    [
        ("lr", {}, 5390),  # 5,389 weights + bias
        ("fm", {}, 59280),
        ("ffm", {}, 490400),  # 9 vectors of 10 per id + LR: 5,389 × 91 + 1
        ("ipnn", {}, 433491),  # tower input 10·10 + 45 products, no batch norm
        ("nfm", {}, 384880),  # LR without bias (the tower's output bias is w_0)
        ("deepfm", {}, 423280),  # LR without bias
        ("dcn", {}, 418591),  # 3 cross layers of 2 × 100, tower with batch norm, Linear(500, 1)
        ("dcn", {"num_layers": 6, "hidden_features": ()}, 55191),  # BARS's CrossNet run
        # 4 full-rank cross layers of 100 x 100 + 100, the 400-400-400 tower with batch norm, Linear(500, 1)
        ("dcnv2", {}, 458391),
    ],
)
def test_parameter_counts_equal_bars_logs(name, kwargs, published):
    assert count(build_ctr_model(name, FRAPPE, **kwargs)) == published


def test_dnn_count_is_bars_log_minus_its_double_counted_tower():
    # BARS's DNN log says 781,892 = 53,890 embeddings + 2 × 364,001: the tower (100 -> 400 -> 400 ->
    # 400 -> 1 with batch norm) counted twice. DeepFM's and DCN's counts, which hold the same tower,
    # match single counting, so the model is right and the log's figure is not: 53,890 + 364,001.
    tower = (100 * 400 + 400) + 2 * (400 * 400 + 400) + 3 * 800 + 401
    assert tower == 364001
    assert count(build_ctr_model("dnn", FRAPPE)) == 5389 * 10 + tower == 781892 - tower
    assert BARS_FRAPPE_X1["dnn"].num_parameters == 781892


def test_defaults_are_the_bars_frappe_runs():
    deepfm = DeepFM(FRAPPE)
    linears = [m for m in deepfm.mlp if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == [400, 400, 400, 1]
    assert [type(m).__name__ for m in deepfm.mlp][:4] == ["Linear", "BatchNorm1d", "ReLU", "Dropout"]
    assert [m.p for m in deepfm.mlp if isinstance(m, nn.Dropout)] == [0.2, 0.2, 0.2]
    assert deepfm.embedding.embedding_dim == 10
    assert BARS_FRAPPE_X1["deepfm"].embedding_regularizer == 0.05
    assert BARS_FRAPPE_X1["deepfm"].config.endswith("DeepFM_frappe_x1_tuner_config_02/model_config.yaml")
    ipnn = build_ctr_model("ipnn", FRAPPE)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in ipnn.modules())
    assert [m.p for m in ipnn.modules() if isinstance(m, nn.Dropout)] == [0.3, 0.3, 0.3]


@pytest.mark.parametrize("name", list(CTR_MODELS))
@pytest.mark.parametrize("batch_size", [1, 5])
def test_every_model_returns_one_logit_per_example(name, batch_size):
    torch.manual_seed(0)
    model = build_ctr_model(name, MIXED, **SMALL_KWARGS[name])
    if batch_size == 1:
        model.eval()  # batch norm needs two examples to train; inference on one must keep its batch axis
    out = model(mixed_batch(batch_size))
    assert out.shape == (batch_size,)
    assert out.dtype == torch.float32


@pytest.mark.parametrize("name", list(CTR_MODELS))
def test_every_parameter_gets_a_finite_gradient_from_bce(name):
    torch.manual_seed(0)
    model = build_ctr_model(name, MIXED, **SMALL_KWARGS[name])
    batch = mixed_batch(5)
    labels = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0])
    nn.functional.binary_cross_entropy_with_logits(model(batch), labels).backward()
    for param_name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), f"no usable gradient for {param_name}"
        assert p.grad.abs().sum() > 0, f"zero gradient for {param_name}"


@pytest.mark.parametrize("name", list(CTR_MODELS))
def test_embedding_and_dense_parameters_split_every_parameter_once(name):
    model = build_ctr_model(name, MIXED, **SMALL_KWARGS[name])
    embedding = {n for n, _ in model.named_embedding_parameters()}
    tables = {
        f"{prefix}.{n}" for prefix, m in model.named_modules() if isinstance(m, FieldEmbedding)
        for n, _ in m.named_parameters()
    }
    assert embedding == tables and embedding
    ids_embedding = {id(p) for p in model.embedding_parameters()}
    ids_dense = {id(p) for p in model.dense_parameters()}
    assert not ids_embedding & ids_dense
    assert ids_embedding | ids_dense == {id(p) for p in model.parameters()}


def test_deepfm_embedding_parameters_are_its_tables_and_numeric_vectors():
    shared = DeepFM(MIXED, **SMALL, **TOWER, embedding_layout="shared")
    names = {n for n, _ in shared.named_embedding_parameters()}
    assert names == {
        "embedding.table.weight",
        "embedding.numeric_weight",
        "linear.weights.table.weight",
        "linear.weights.numeric_weight",
    }
    per_field = {n for n, _ in DeepFM(MIXED, **SMALL, **TOWER).named_embedding_parameters()}
    tables = {f"{prefix}.tables.{i}.weight" for prefix in ("embedding", "linear.weights") for i in range(5)}
    assert per_field == tables | {"embedding.numeric_weight", "linear.weights.numeric_weight"}


@pytest.mark.parametrize("batch_size", [1, 5])
def test_lr_logit_is_bias_plus_weights_not_a_probability(batch_size):
    torch.manual_seed(0)
    spec = FieldSpec((Field("a", "categorical", 3), Field("b", "categorical", 4)))
    model = LR(spec)
    with torch.no_grad():
        model.linear.weights.field_table("a").copy_(torch.tensor([[1.0], [2.0], [3.0]]))
        model.linear.weights.field_table("b").copy_(torch.tensor([[10.0], [20.0], [30.0], [40.0]]))
        model.linear.bias.fill_(-0.5)
    ids = torch.tensor([[2, 3], [0, 0], [1, 2], [2, 0], [0, 1]])[:batch_size]
    expected = torch.tensor([42.5, 10.5, 31.5, 12.5, 20.5])[:batch_size]
    torch.testing.assert_close(model({"sparse": ids}), expected)


@pytest.mark.parametrize("batch_size", [1, 5])
def test_fm_equals_bias_weights_and_the_pairwise_double_loop(batch_size):
    torch.manual_seed(0)
    model = FM(FRAPPE, embedding_dim=3)
    with torch.no_grad():
        for p in model.embedding.parameters():
            p.normal_()  # unit scale, so the pairwise term matters
        model.linear.bias.fill_(0.25)
    batch = frappe_batch(batch_size)
    ids = batch["sparse"]
    names = list(FRAPPE_VOCAB)
    v = torch.stack([model.embedding.field_table(f)[ids[:, k]] for k, f in enumerate(names)], dim=1)
    w = torch.stack([model.linear.weights.field_table(f)[ids[:, k], 0] for k, f in enumerate(names)])
    pairwise = sum((v[:, i] * v[:, j]).sum(dim=1) for i in range(10) for j in range(i + 1, 10))
    expected = 0.25 + w.sum(dim=0) + pairwise
    torch.testing.assert_close(model(batch), expected.detach())


def test_ffm_uses_field_i_vector_for_j_times_field_j_vector_for_i():
    torch.manual_seed(0)
    spec = FieldSpec(tuple(Field(f"f{i}", "categorical", 5) for i in range(4)))
    model = FFM(spec, embedding_dim=2)
    with torch.no_grad():
        for p in model.embedding.parameters():
            p.normal_()
    ids = torch.tensor([[1, 4, 0, 2], [3, 3, 3, 3]])
    table = model.embedding.field_table
    rows = [[table(f"f{i}")[ids[b, i]].reshape(3, 2) for i in range(4)] for b in range(2)]
    expected = []
    for b in range(2):
        total = model.linear({"sparse": ids[b : b + 1]})[0, 0]
        for i in range(4):
            for j in range(i + 1, 4):
                # field i's slot for j > i is j - 1; field j's slot for i < j is i
                total = total + rows[b][i][j - 1] @ rows[b][j][i]
        expected.append(total)
    torch.testing.assert_close(model({"sparse": ids}), torch.stack(expected).detach())


def test_dcn_combines_cross_and_deep_outputs_with_one_linear():
    torch.manual_seed(0)
    model = DCN(MIXED, **SMALL, **TOWER, num_layers=2).eval()
    batch = mixed_batch(5)
    x0 = model.embedding(batch).flatten(start_dim=1)
    expected = model.fc(torch.cat([model.cross(x0), model.deep(x0)], dim=1)).squeeze(1)
    torch.testing.assert_close(model(batch), expected)
    assert [type(m).__name__ for m in model.deep][-4:] == ["Linear", "BatchNorm1d", "ReLU", "Dropout"]


def test_deepfm_sums_the_fm_and_the_tower_logits():
    torch.manual_seed(0)
    model = DeepFM(MIXED, **SMALL, **TOWER).eval()
    batch = mixed_batch(5)
    v = model.embedding(batch)
    expected = (model.linear(batch) + model.fm(v) + model.mlp(v.flatten(start_dim=1))).squeeze(1)
    torch.testing.assert_close(model(batch), expected)


def test_transformer_deep_attends_over_the_selected_fields_only():
    torch.manual_seed(0)
    model = TransformerDeep(MIXED, **SMALL, **TOWER, transformer_fields=("tags", "user")).eval()
    assert model.transformer_fields == ("tags", "user")
    batch = mixed_batch(5)
    v = model.embedding(batch)  # fields: user, item, hour, tags, words, price, age
    attended = model.encoder(v[:, [3, 0]])
    expected = model.mlp(torch.cat([attended.flatten(start_dim=1), v.flatten(start_dim=1)], dim=1)).squeeze(1)
    torch.testing.assert_close(model(batch), expected)
    assert model.mlp[0].in_features == (2 + 7) * 4  # the 2 attended fields, then all 7 fields


@pytest.mark.parametrize("name", ["fm", "ffm", "deepfm", "transformer-deep"])
def test_layouts_give_the_same_logits_for_the_same_tables(name):
    torch.manual_seed(0)
    shared = build_ctr_model(name, MIXED, **SMALL_KWARGS[name]).eval()
    per_field = build_ctr_model(name, MIXED, **SMALL_KWARGS[name], embedding_layout="per_field").eval()
    embedding_names = {n for n, _ in shared.named_embedding_parameters()}
    dense = {n: p for n, p in shared.state_dict().items() if n not in embedding_names}
    missing, unexpected = per_field.load_state_dict(dense, strict=False)
    assert not unexpected and all(n.startswith(("embedding.", "linear.weights.")) for n in missing)
    modules = dict(per_field.named_modules())
    with torch.no_grad():
        for prefix, emb in shared.named_modules():
            if isinstance(emb, FieldEmbedding):
                for field in emb.field_names:
                    modules[prefix].field_table(field).copy_(emb.field_table(field))
    batch = mixed_batch(5)
    torch.testing.assert_close(per_field(batch), shared(batch), rtol=0, atol=0)


def test_registry_errors_name_the_closest_choice():
    with pytest.raises(ConfigError, match=re.escape(
        "unknown CTR model 'deepfn' (did you mean 'deepfm'?); the models are ['dcn', 'dcnmix', "
        "'dcnmix-stacked', 'dcnv2', 'dcnv2-stacked', 'deepfm', 'dnn', 'ffm', 'fm', 'ipnn', 'lr', 'nfm', "
        "'transformer-deep']"
    )):
        build_ctr_model("deepfn", FRAPPE)
    with pytest.raises(ConfigError, match=re.escape(
        "CTR model 'deepfm' takes no argument 'hiden_features' (did you mean 'hidden_features'?); it takes "
        "['act_layer', 'batch_norm', 'dropout', 'embedding_dim', 'embedding_layout', 'hidden_features']"
    )):
        build_ctr_model("deepfm", FRAPPE, hiden_features=(3,))
    with pytest.raises(ConfigError, match=re.escape(
        "CTR model 'lr' takes no argument 'embedding_dim' (other CTR models do); "
        "it takes ['embedding_layout']"
    )):
        build_ctr_model("lr", FRAPPE, embedding_dim=10)


def test_model_argument_errors():
    calls = [
        (lambda: FFM(FieldSpec((Field("a", "categorical", 3),))),
         "FFM needs at least 2 fields to pair, got 1"),
        (lambda: TransformerDeep(MIXED, transformer_fields=("user", "zip")),
         "transformer_fields has unknown field(s) ['zip']; the fields are ['user', 'item', 'hour', 'tags', "
         "'words', 'price', 'age']"),
        (lambda: TransformerDeep(MIXED, transformer_fields=()),
         "transformer_fields must be a non-empty sequence of field names, got ()"),
        (lambda: TransformerDeep(MIXED, embedding_dim=10, num_heads=3),
         "embedding_dim must be a multiple of num_heads, got embedding_dim=10, num_heads=3"),
        (lambda: DeepFM(MIXED, batch_norm="yes"), "batch_norm must be a bool, got 'yes'"),
        (lambda: DeepFM(MIXED, dropout=1.5), "dropout must be a float in [0, 1), got 1.5"),
    ]
    for call, message in calls:
        with pytest.raises(ValueError, match=re.escape(message)):
            call()


def test_importing_mlpkit_and_the_models_package_leaves_torch_out():
    code = "import sys, mlpkit, mlpkit.models; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         timeout=120)
    assert out.stdout.strip() == "False"


def test_dcnmix_has_fewer_cross_parameters_than_dcnv2_at_the_same_depth():
    full, mix = build_ctr_model("dcnv2", FRAPPE), build_ctr_model("dcnmix", FRAPPE)
    assert mix.cross.num_layers == full.cross.num_layers == 4
    assert count(mix.cross) == 28624 < count(full.cross) == 40400
    assert count(mix) - count(mix.cross) == count(full) - count(full.cross)  # the same embeddings and tower


def test_the_stacked_forms_put_the_tower_after_the_cross_network():
    stacked = build_ctr_model("dcnv2-stacked", FRAPPE)
    linears = [m for m in stacked.deep.modules() if isinstance(m, nn.Linear)]
    shapes = [(m.in_features, m.out_features) for m in linears]
    assert shapes == [(100, 500), (500, 500), (500, 500), (500, 1)]
    assert build_ctr_model("dcnmix-stacked", FRAPPE).structure == "stacked"
    with pytest.raises(ConfigError, match="takes no argument 'structure'"):
        build_ctr_model("dcnv2-stacked", FRAPPE, structure="parallel")


@pytest.mark.parametrize("name", ["dcnv2", "dcnmix"])
def test_dcnv2_parallel_combines_cross_and_deep_and_stacked_feeds_the_tower(name):
    torch.manual_seed(0)
    kwargs = SMALL_KWARGS[name]
    parallel = build_ctr_model(name, MIXED, **kwargs).eval()
    batch = mixed_batch(5)
    x0 = parallel.embedding(batch).flatten(start_dim=1)
    expected = parallel.fc(torch.cat([parallel.cross(x0), parallel.deep(x0)], dim=1)).squeeze(1)
    torch.testing.assert_close(parallel(batch), expected)
    stacked = build_ctr_model(f"{name}-stacked", MIXED, **kwargs).eval()
    x0 = stacked.embedding(batch).flatten(start_dim=1)
    torch.testing.assert_close(stacked(batch), stacked.deep(stacked.cross(x0)).squeeze(1))


def test_the_parallel_tower_trains_its_last_relu_and_dropout_as_the_layers_one_by_one(monkeypatch):
    # The tower that ends after its last hidden block runs as MLP runs (a ReLU and its Dropout as
    # one node on the CPU): the same output and gradients as calling each layer in turn.
    import mlpkit.blocks.mlp as mlp_module

    fused: list[int] = []
    original = mlp_module.relu_dropout_
    monkeypatch.setattr(mlp_module, "relu_dropout_", lambda h, p: fused.append(1) or original(h, p))
    torch.manual_seed(0)
    deep = build_ctr_model("dcnv2", FRAPPE).deep.train()
    assert [type(m).__name__ for m in deep][-3:] == ["BatchNorm1d", "ReLU", "Dropout"]
    x = torch.randn(5, 100)
    results = []
    for run in (deep, lambda h: [h := layer(h) for layer in deep][-1]):
        torch.manual_seed(1)
        inputs = x.clone().requires_grad_()
        out = run(inputs)
        out.square().sum().backward()
        results.append((out.detach(), inputs.grad))
    assert len(fused) == 3                                                 # every hidden block, the last too
    torch.testing.assert_close(results[0], results[1], rtol=0, atol=0)


def test_dcnv2_without_a_tower_is_bars_crossnetv2_count():
    # BARS's CrossNetv2 Frappe_x1 log: 94,391 = 53,890 embeddings + 4 x 10,100 cross + Linear(100, 1).
    assert count(build_ctr_model("dcnv2", FRAPPE, hidden_features=())) == 94391
