"""MLP and StackedGatedMLP: shapes (batch of one included), hand-written references, gradients, errors;
the signature family they share with GatedMLP (whose own tests are in test_gated_mlp.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mlpkit.blocks import MLP, GatedMLP, StackedGatedMLP
from mlpkit.spec import MLPSpec

pytestmark = pytest.mark.torch  # needs torch (the `torch` extra)


@pytest.mark.parametrize("batch_size", [1, 5])
def test_mlp_matches_the_formula_written_out(batch_size):
    torch.manual_seed(0)
    net = MLP(4, (6, 5), 3, act_layer=("tanh", "relu"))
    x = torch.randn(batch_size, 4)
    l0, l2, l4 = net[0], net[2], net[4]
    expected = F.linear(
        F.relu(F.linear(torch.tanh(F.linear(x, l0.weight, l0.bias)), l2.weight, l2.bias)), l4.weight, l4.bias
    )
    out = net(x)
    assert out.shape == (batch_size, 3)
    torch.testing.assert_close(out, expected)


def test_mlp_parameter_names_are_the_specs():
    spec = MLPSpec(784, (256, 128), 10, dropout=(0.0, 0.5))
    net = MLP(784, (256, 128), 10, dropout=(0.0, 0.5))
    assert {n: tuple(p.shape) for n, p in net.named_parameters()} == spec.linear_shapes()
    assert [type(m).__name__ for m in net] == ["Linear", "ReLU", "Linear", "ReLU", "Dropout", "Linear"]


def test_mlp_defaults_and_layer_order_with_norm_and_dropout():
    net = MLP(8, (16,), norm_layer=nn.LayerNorm, dropout=0.1)
    assert net.out_features == 8  # None means in_features, as timm's Mlp
    assert [type(m).__name__ for m in net] == ["Linear", "LayerNorm", "ReLU", "Dropout", "Linear"]
    assert MLP(3, (), 2)(torch.zeros(1, 3)).shape == (1, 2)  # no hidden layer: one Linear
    assert MLP(3, (4,), 2, bias=False)[0].bias is None


def test_mlp_dropout_is_off_in_eval_mode():
    torch.manual_seed(0)
    net = MLP(4, (32,), 2, dropout=0.5).eval()
    x = torch.randn(3, 4)
    torch.testing.assert_close(net(x), net(x))


def test_every_mlp_parameter_gets_a_finite_grad():
    torch.manual_seed(0)
    net = MLP(4, (6, 5), 3, act_layer="gelu", norm_layer=nn.BatchNorm1d, dropout=0.2)
    net(torch.randn(5, 4)).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), f"no usable gradient for {name}"


@pytest.mark.parametrize("batch_size", [1, 5])
def test_a_relu_then_dropout_runs_as_one_node_with_the_layers_values_and_gradients(batch_size, monkeypatch):
    import mlpkit.blocks.mlp as mlp_module

    def run(fused: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        torch.manual_seed(0)
        net = MLP(4, (6, 5), 3, norm_layer=nn.LayerNorm, dropout=0.4)   # batch of one: no BatchNorm
        x = torch.randn(batch_size, 4, requires_grad=True)
        with monkeypatch.context() as patch:
            if not fused:
                patch.setattr(mlp_module, "_relu_then_dropout", lambda layers, i: False)
            y = net(x)
        (y * torch.arange(1.0, 4.0)).sum().backward()
        return y, {n: p.grad for n, p in net.named_parameters()}, x.grad

    calls: list[int] = []
    original = mlp_module.relu_dropout_
    monkeypatch.setattr(mlp_module, "relu_dropout_", lambda x, p: calls.append(1) or original(x, p))
    y, grads, x_grad = run(fused=True)
    assert len(calls) == 2                                                  # both hidden layers fused
    y_ref, grads_ref, x_grad_ref = run(fused=False)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=0)                   # the same masks, the same values
    torch.testing.assert_close(x_grad, x_grad_ref)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, grads_ref[name], msg=name)


def test_a_hook_on_the_relu_keeps_the_layers_apart():
    seen: list[torch.Size] = []
    net = MLP(4, (6,), 2, dropout=0.3)
    net[1].register_forward_hook(lambda module, args, out: seen.append(out.shape))
    net(torch.randn(1, 4))
    assert seen == [torch.Size([1, 6])]                                     # the hook saw its ReLU run


def test_mlp_gradient_matches_central_differences():
    torch.manual_seed(0)
    net = MLP(3, (4,), 2, act_layer="silu").double()
    assert torch.autograd.gradcheck(net, (torch.randn(2, 3, dtype=torch.float64, requires_grad=True),))


def test_mlp_init_weights_uses_the_gain_of_the_next_activation():
    torch.manual_seed(0)
    net = MLP(400, (300,), 200, act_layer="relu").init_weights("kaiming_uniform")
    assert net[0].weight.abs().max() <= 2**0.5 * (3 / 400) ** 0.5  # gain sqrt(2) before ReLU
    assert net[0].weight.abs().max() > 0.95 * 2**0.5 * (3 / 400) ** 0.5
    assert net[2].weight.abs().max() <= (3 / 300) ** 0.5  # gain 1 into the loss
    assert torch.count_nonzero(net[0].bias) == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"in_features": 0}, "in_features must be a positive int, got 0"),
        ({"hidden_features": 256}, "hidden_features must be a sequence of positive ints, got 256"),
        ({"hidden_features": (4, 0)}, "hidden_features must be a positive int, got 0"),
        ({"out_features": -1}, "out_features must be a positive int, got -1"),
        ({"dropout": 1.0}, r"dropout must be a float in \[0, 1\), got 1.0"),
        ({"dropout": (0.1, 0.2)}, r"dropout must be one value or one per hidden layer \(1\), got 2"),
        (
            {"act_layer": "swish"},
            r"activation must be one of \['gelu', 'identity', 'leaky_relu', 'relu', 'sigmoid', 'silu', "
            r"'tanh'\], got 'swish'",
        ),
    ],
)
def test_mlp_rejects_bad_arguments_with_a_message(kwargs, message):
    args = {"in_features": 4, "hidden_features": (4,), "out_features": 2} | kwargs
    with pytest.raises(ValueError, match=message):
        MLP(args.pop("in_features"), args.pop("hidden_features"), args.pop("out_features"), **args)


# -- StackedGatedMLP ---------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1, 4])
def test_one_stacked_gated_unit_is_the_llama_feed_forward(batch_size):
    torch.manual_seed(0)
    ffn = StackedGatedMLP(8, (12,), 8)
    x = torch.randn(batch_size, 8)
    w1, w3, w2 = ffn.units[0].gate.weight, ffn.units[0].up.weight, ffn.fc_out.weight
    expected = (F.silu(x @ w1.T) * (x @ w3.T)) @ w2.T  # w2(silu(w1 x) * w3 x), no biases
    out = ffn(x)
    assert out.shape == (batch_size, 8)
    torch.testing.assert_close(out, expected)
    assert all(p.ndim == 2 for p in ffn.parameters())  # bias=False by default, as LLaMA
    # The same function as GatedMLP under other names.
    gated = GatedMLP(8, 12, 8)
    gated.load_state_dict({"gate_proj.weight": w1, "up_proj.weight": w3, "down_proj.weight": w2})
    torch.testing.assert_close(gated(x), out)


def test_stacked_gated_mlp_rounds_widths_up_to_multiple_of():
    # LLaMA: hidden_dim = multiple_of * ((hidden_dim + multiple_of - 1) // multiple_of)
    ffn = StackedGatedMLP(16, (100, 256, 1), multiple_of=64)
    assert ffn.hidden_features == (128, 256, 64)
    assert ffn.units[0].gate.weight.shape == (128, 16)
    assert ffn.units[1].up.weight.shape == (256, 128)
    assert ffn.fc_out.weight.shape == (16, 64)


def test_stacked_gated_units_with_gelu_norm_and_bias():
    torch.manual_seed(0)
    ffn = StackedGatedMLP(5, (6, 7), 3, act_layer="gelu", norm_layer=nn.LayerNorm, bias=True).eval()
    x = torch.randn(2, 5)
    h = x
    for unit in ffn.units:
        h = F.layer_norm(
            F.gelu(unit.gate(h)) * unit.up(h), (unit.up.out_features,), unit.norm.weight, unit.norm.bias
        )
    torch.testing.assert_close(ffn(x), ffn.fc_out(h))


def test_every_stacked_gated_mlp_parameter_gets_a_finite_grad_and_gradcheck_passes():
    torch.manual_seed(0)
    ffn = StackedGatedMLP(4, (6,), 2, dropout=0.1)
    ffn(torch.randn(3, 4)).sum().backward()
    for name, p in ffn.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), f"no usable gradient for {name}"
    ffn = StackedGatedMLP(3, (4,), 2).double()
    assert torch.autograd.gradcheck(ffn, (torch.randn(2, 3, dtype=torch.float64, requires_grad=True),))


def test_the_mlp_blocks_share_one_signature_family():
    import inspect

    mlp = list(inspect.signature(MLP).parameters)
    stacked = list(inspect.signature(StackedGatedMLP).parameters)
    gated = list(inspect.signature(GatedMLP).parameters)
    assert mlp == [name for name in stacked if name != "multiple_of"]
    # GatedMLP has MLP's names, less norm_layer (LLaMA's MLP has none), plus its layout.
    assert [name for name in mlp if name != "norm_layer"] == [name for name in gated if name != "layout"]
    for cls in (MLP, StackedGatedMLP, GatedMLP):  # a consumer can swap the class: one-width tuples go to all
        net = cls(4, (8,), 2, act_layer="relu", dropout=0.0)
        assert net(torch.zeros(1, 4)).shape == (1, 2)
        assert net.hidden_features in ((8,), 8)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"multiple_of": 0}, "multiple_of must be a positive int, got 0"),
        ({"hidden_features": "64"}, "hidden_features must be a sequence of positive ints, got '64'"),
        ({"act_layer": "swiglu"}, "activation must be one of .*, got 'swiglu'"),
        (
            {"act_layer": ("silu", "gelu")},
            r"act_layer must be one value or one per hidden layer \(1\), got 2",
        ),
    ],
)
def test_stacked_gated_mlp_rejects_bad_arguments_with_a_message(kwargs, message):
    args = {"hidden_features": (8,)} | kwargs
    with pytest.raises(ValueError, match=message):
        StackedGatedMLP(4, args.pop("hidden_features"), **args)
