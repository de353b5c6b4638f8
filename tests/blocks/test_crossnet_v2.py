"""DCN-V2's cross networks, full rank and a mixture of low-rank experts, against their formulas."""

from __future__ import annotations

import pytest
import torch

from mlpkit.blocks.interaction import CrossNetMix, CrossNetV2


def reference_mix_layer(net: CrossNetMix, layer: int, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """One mixture layer as the paper writes it: a loop over experts on (D, 1) column vectors, per row."""
    g = net.activation
    rows = []
    for b in range(x0.shape[0]):
        xl, x0b = x[b].unsqueeze(1), x0[b].unsqueeze(1)                                  # (D, 1)
        gate = torch.softmax(torch.stack([(xl.t() @ net.gate[layer][:, i]).squeeze() for i in
                                          range(net.num_experts)]), dim=0)               # (K,)
        out = torch.zeros_like(xl)
        for i in range(net.num_experts):
            U, V, C = (m[i] for m in net.experts(layer))  # (D, r), (D, r), (r, r)
            expert = x0b * (U @ g(C @ g(V.t() @ xl)) + net.bias[layer].unsqueeze(1))     # (D, 1)
            out = out + gate[i] * expert
        rows.append((out + xl).squeeze(1))
    return torch.stack(rows)


@pytest.mark.parametrize("batch", [1, 5])
def test_one_full_rank_layer_is_x0_times_wx_plus_b_plus_x(batch: int) -> None:
    torch.manual_seed(0)
    net = CrossNetV2(in_features=6, num_layers=1).double()
    with torch.no_grad():
        net.bias.normal_()
    x0 = torch.randn(batch, 6, dtype=torch.float64)
    W, b = net.weight[0], net.bias[0]
    expected = torch.stack([x0[i] * (W @ x0[i] + b) + x0[i] for i in range(batch)])
    torch.testing.assert_close(net(x0), expected, rtol=1e-12, atol=1e-12)


def test_two_full_rank_layers_feed_x_l_and_keep_x0() -> None:
    torch.manual_seed(1)
    net = CrossNetV2(in_features=4, num_layers=2).double()
    x0 = torch.randn(3, 4, dtype=torch.float64)
    x1 = x0 * (x0 @ net.weight[0].t() + net.bias[0]) + x0
    x2 = x0 * (x1 @ net.weight[1].t() + net.bias[1]) + x1
    torch.testing.assert_close(net(x0), x2)


@pytest.mark.parametrize("activation", [None, "tanh"])
@pytest.mark.parametrize("batch", [1, 5])
def test_the_packed_mixture_equals_the_per_expert_loop(batch: int, activation: str | None) -> None:
    torch.manual_seed(2)
    net = CrossNetMix(in_features=7, num_layers=2, num_experts=3, low_rank=2, activation=activation).double()
    with torch.no_grad():
        net.bias.normal_()
    x0 = torch.randn(batch, 7, dtype=torch.float64)
    x = x0
    for layer in range(2):
        x = reference_mix_layer(net, layer, x0, x)
    torch.testing.assert_close(net(x0), x, rtol=1e-10, atol=1e-12)


def test_one_expert_is_a_low_rank_cross_layer_with_w_equal_u_c_v_t() -> None:
    torch.manual_seed(3)
    mix = CrossNetMix(in_features=5, num_layers=1, num_experts=1, low_rank=2).double()
    full = CrossNetV2(in_features=5, num_layers=1).double()
    with torch.no_grad():
        mix.bias.normal_()
        mix.C[0, 0] = torch.eye(2)  # g = identity and C = I: the expert is x0 ⊙ (U Vᵀ x + b)
        U, V, _ = mix.experts(0)
        full.weight[0] = U[0] @ V[0].t()
        full.bias[0] = mix.bias[0]
    x0 = torch.randn(4, 5, dtype=torch.float64)
    torch.testing.assert_close(mix(x0), full(x0), rtol=1e-12, atol=1e-12)  # one gate: weight 1
    torch.testing.assert_close(mix.expert_weights(0)[0], full.weight[0])


def test_gate_weights_sum_to_one() -> None:
    torch.manual_seed(4)
    net = CrossNetMix(in_features=6, num_layers=2, num_experts=4, low_rank=3)
    gates = net.gates(torch.randn(8, 6), 1)
    assert gates.shape == (8, 4) and bool((gates > 0).all())
    torch.testing.assert_close(gates.sum(dim=1), torch.ones(8))


def test_mixture_parameter_count_is_the_formula() -> None:
    L, K, D, r = 4, 4, 100, 8
    net = CrossNetMix(D, L, K, r)
    assert sum(p.numel() for p in net.parameters()) == L * (K * (2 * D * r + r * r) + D * K + D) == 28624
    assert sum(p.numel() for p in CrossNetV2(D, L).parameters()) == L * (D * D + D) == 40400


def test_every_parameter_gets_a_finite_gradient() -> None:
    torch.manual_seed(5)
    for net in (CrossNetV2(6, 2), CrossNetMix(6, 2, 3, 2, activation="tanh")):
        net(torch.randn(5, 6)).square().sum().backward()
        for name, p in net.named_parameters():
            assert p.grad is not None and bool(torch.isfinite(p.grad).all()), name


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"low_rank": 9}, "low_rank must be at most in_features=8, got low_rank=9"),
        ({"num_experts": 0}, "num_experts must be a positive int, got 0"),
        ({"num_layers": 0}, "num_layers must be a positive int, got 0"),
    ],
)
def test_bad_sizes_are_named(kwargs: dict[str, int], message: str) -> None:
    args = {"in_features": 8, "num_layers": 2, "num_experts": 2, "low_rank": 2} | kwargs
    with pytest.raises(ValueError, match=message):
        CrossNetMix(**args)


def test_a_wrong_width_is_refused() -> None:
    message = r"CrossNetV2 expects a tensor of shape \(B, 4\), got shape \(2, 5\)"
    with pytest.raises(ValueError, match=message):
        CrossNetV2(4, 1)(torch.randn(2, 5))
