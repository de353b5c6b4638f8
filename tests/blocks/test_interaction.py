"""Interaction layers against their pairwise double loops, float64 gradient checks, and errors."""

from __future__ import annotations

import re

import pytest
import torch

from mlpkit.blocks.interaction import BiInteraction, CrossNetV1, FFMInteraction, FMInteraction, InnerProduct

pytestmark = pytest.mark.torch  # needs torch (the `torch` extra)


@pytest.mark.parametrize("batch_size", [1, 5])
def test_fm_identity_equals_the_pairwise_double_loop(batch_size):
    torch.manual_seed(0)
    x = torch.randn(batch_size, 7, 4, dtype=torch.float64)
    expected = torch.zeros(batch_size, 1, dtype=torch.float64)
    for i in range(7):
        for j in range(i + 1, 7):
            expected[:, 0] += (x[:, i] * x[:, j]).sum(dim=1)  # <v_i, v_j>
    out = FMInteraction()(x)
    assert out.shape == (batch_size, 1)
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("batch_size", [1, 5])
def test_bi_interaction_equals_the_pairwise_sum_of_elementwise_products(batch_size):
    torch.manual_seed(0)
    x = torch.randn(batch_size, 6, 3, dtype=torch.float64)
    expected = sum(x[:, i] * x[:, j] for i in range(6) for j in range(i + 1, 6))
    out = BiInteraction()(x)
    assert out.shape == (batch_size, 3)
    torch.testing.assert_close(out, expected)
    # Summed over E it is the FM term.
    torch.testing.assert_close(out.sum(dim=1, keepdim=True), FMInteraction()(x))


@pytest.mark.parametrize("batch_size", [1, 5])
def test_inner_products_equal_the_explicit_pairs_in_row_major_order(batch_size):
    torch.manual_seed(0)
    x = torch.randn(batch_size, 5, 3, dtype=torch.float64)
    pairs = [(i, j) for i in range(5) for j in range(i + 1, 5)]  # (0,1), (0,2), ..., (3,4)
    expected = torch.stack([(x[:, i] * x[:, j]).sum(dim=1) for i, j in pairs], dim=1)
    layer = InnerProduct(5)
    out = layer(x)
    assert out.shape == (batch_size, 10) and layer.out_features == 10
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("batch_size", [1, 5])
def test_ffm_equals_its_double_loop_over_field_pairs(batch_size):
    torch.manual_seed(0)
    num_fields, dim = 5, 3
    x = torch.randn(batch_size, num_fields, num_fields - 1, dim, dtype=torch.float64)
    # FuxiCTR's FFM keeps F - 1 tables; table k holds, for every field, its vector for one other
    # field: for the pair (i, j), i < j, field i's vector for j is in table j - 1, j's for i in table i.
    tables = [x[:, :, k] for k in range(num_fields - 1)]  # (F-1) x (B, F, E)
    expected = torch.zeros(batch_size, 1, dtype=torch.float64)
    for i in range(num_fields - 1):
        for j in range(i + 1, num_fields):
            v_ij = tables[j - 1][:, i]
            v_ji = tables[i][:, j]
            expected[:, 0] += (v_ij * v_ji).sum(dim=1)
    out = FFMInteraction(num_fields)(x)
    assert out.shape == (batch_size, 1)
    torch.testing.assert_close(out, expected)


def test_ffm_with_one_shared_vector_per_field_is_fm():
    torch.manual_seed(0)
    v = torch.randn(4, 6, 3, dtype=torch.float64)
    same_for_every_partner = v.unsqueeze(2).expand(4, 6, 5, 3)
    torch.testing.assert_close(FFMInteraction(6)(same_for_every_partner), FMInteraction()(v))


@pytest.mark.parametrize("batch_size", [1, 5])
def test_crossnet_v1_one_layer_matches_the_formula(batch_size):
    torch.manual_seed(0)
    net = CrossNetV1(in_features=4, num_layers=1)
    with torch.no_grad():
        net.bias.normal_()
    x0 = torch.randn(batch_size, 4)
    w, b = net.weight[0], net.bias[0]
    expected = x0 * (x0 @ w).unsqueeze(1) + b + x0  # x_1 = x0 x0ᵀ w + b + x0 (Wang et al. 2017, eq. 3)
    out = net(x0)
    assert out.shape == (batch_size, 4)
    torch.testing.assert_close(out, expected)


def test_crossnet_v1_layers_compose_and_count_two_vectors_each():
    torch.manual_seed(0)
    net = CrossNetV1(in_features=3, num_layers=3)
    with torch.no_grad():
        net.bias.normal_()
    x0 = torch.randn(5, 3)
    x = x0
    for l in range(3):  # noqa: E741
        x = x0 * (x @ net.weight[l]).unsqueeze(1) + net.bias[l] + x
    torch.testing.assert_close(net(x0), x)
    assert sum(p.numel() for p in net.parameters()) == 2 * 3 * 3
    assert torch.all(CrossNetV1(3, 2).bias == 0)


@pytest.mark.parametrize(
    ("layer", "shape"),
    [
        (FMInteraction(), (3, 4, 2)),
        (BiInteraction(), (3, 4, 2)),
        (InnerProduct(4), (3, 4, 2)),
        (FFMInteraction(4), (3, 4, 3, 2)),
        (CrossNetV1(5, 2).double(), (3, 5)),
    ],
    ids=["fm", "bi", "inner", "ffm", "cross"],
)
def test_backward_matches_central_differences(layer, shape):
    torch.manual_seed(0)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,), eps=1e-6, atol=1e-6)


def test_errors_name_the_expected_and_the_given_shape():
    calls = [
        (lambda: FMInteraction()(torch.zeros(3, 4)),
         "FMInteraction expects a tensor of shape (B, F, E), got shape (3, 4)"),
        (lambda: InnerProduct(5)(torch.zeros(2, 4, 3)),
         "InnerProduct expects a tensor of shape (B, F, E) with F = 5, got shape (2, 4, 3)"),
        (lambda: FFMInteraction(4)(torch.zeros(2, 4, 4, 3)),
         "FFMInteraction expects F - 1 = 3 vectors per field, got shape (2, 4, 4, 3)"),
        (lambda: FFMInteraction(1), "num_fields must be at least 2 for field pairs, got 1"),
        (lambda: CrossNetV1(6)(torch.zeros(2, 5)),
         "CrossNetV1 expects a tensor of shape (B, 6), got shape (2, 5)"),
        (lambda: CrossNetV1(6, num_layers=0), "num_layers must be a positive int, got 0"),
    ]
    for call, message in calls:
        with pytest.raises(ValueError, match=re.escape(message)):
            call()
