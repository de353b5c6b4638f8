"""Sequential and build_mlp: layer order, names, whole-network gradients, weights in and out, torch parity."""

from __future__ import annotations

import re

import numpy as np
import pytest

from mlpkit.engine.activations import GELU, ReLU, Sigmoid, Tanh
from mlpkit.engine.gradcheck import numerical_grad
from mlpkit.engine.layers import Dropout, Linear
from mlpkit.engine.losses import SoftmaxCrossEntropyLoss
from mlpkit.engine.network import Sequential, build_mlp, load_weights, save_weights
from mlpkit.errors import CheckpointError, MlpkitError
from mlpkit.spec import MLPSpec

# Per-layer activations and dropout: Linear ReLU Dropout Linear Tanh Linear GELU Dropout Linear.
SPEC = MLPSpec(
    4, (8, 6, 5), 3, activation=("relu", "tanh", "gelu"), dropout=(0.1, 0.0, 0.2), init="xavier_normal"
)


def _net(spec: MLPSpec = SPEC, seed: int = 0, dtype: type = np.float64) -> Sequential:
    return build_mlp(spec, rng=np.random.default_rng(seed), dtype=dtype)


# --- structure ----------------------------------------------------------------------------------


def test_build_mlp_layer_sequence_follows_the_spec():
    net = _net()
    types = [type(layer) for layer in net.layers]
    assert types == [Linear, ReLU, Dropout, Linear, Tanh, Linear, GELU, Dropout, Linear]
    assert [type(layer).__name__.lower() for layer in net.layers] == [
        "linear",
        "relu",
        "dropout",
        "linear",
        "tanh",
        "linear",
        "gelu",
        "dropout",
        "linear",
    ]
    assert len(SPEC.layer_names()) == len(net.layers)
    linears = [layer for layer in net.layers if isinstance(layer, Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(4, 8), (8, 6), (6, 5), (5, 3)]
    assert [layer.p for layer in net.layers if isinstance(layer, Dropout)] == [0.1, 0.2]


def test_build_mlp_with_no_hidden_layer_is_one_linear():
    net = _net(MLPSpec(4, (), 3))
    assert [type(layer) for layer in net.layers] == [Linear]
    assert list(net.named_parameters()) == ["0.weight", "0.bias"]


def test_named_parameters_use_the_layer_index():
    names = list(_net().named_parameters())
    assert names == ["0.weight", "0.bias", "3.weight", "3.bias", "5.weight", "5.bias", "8.weight", "8.bias"]
    assert _net().parameters().keys() == _net().named_parameters().keys()


def test_named_parameters_without_bias():
    spec = MLPSpec(4, (8,), 3, bias=False)
    assert list(_net(spec).named_parameters()) == ["0.weight", "2.weight"]


def test_state_dict_is_in_torch_layout_and_matches_the_spec_shapes():
    net = _net()
    state = net.state_dict()
    assert {name: array.shape for name, array in state.items()} == SPEC.linear_shapes()
    assert state["0.weight"].shape == (8, 4)  # (out, in), as torch
    np.testing.assert_array_equal(state["0.weight"], net.layers[0].weight.data.T)
    assert all(array.flags.c_contiguous for array in state.values())  # safetensors needs contiguous


def test_state_dict_returns_copies():
    net = _net()
    state = net.state_dict()
    state["0.weight"][...] = 0.0
    state["0.bias"][...] = 5.0
    assert net.layers[0].weight.data.any()
    assert not net.layers[0].bias.data.any()


def test_load_state_dict_round_trips(rng):
    source, target = _net(seed=1), _net(seed=2)
    source.layers[0].bias.data[...] = rng.standard_normal(8)
    target.load_state_dict(source.state_dict())
    for name, p in target.named_parameters().items():
        np.testing.assert_array_equal(p.data, source.named_parameters()[name].data, err_msg=name)
    source.eval()
    target.eval()
    x = rng.standard_normal((5, 4))
    np.testing.assert_array_equal(target.forward(x), source.forward(x))


def test_load_state_dict_wrong_shape_names_the_tensor_and_both_shapes_and_changes_nothing():
    net = _net()
    before = net.state_dict()
    state = _net(seed=9).state_dict()  # every tensor differs from net's
    state["3.weight"] = np.zeros((6, 9))  # the network has (6, 8)
    msg = "tensor '3.weight' has shape (6, 9) in the weights but (6, 8) in the network"
    with pytest.raises(CheckpointError, match=re.escape(msg)):
        net.load_state_dict(state)
    # All or nothing: not even '0.weight', which comes before the bad tensor, was copied.
    for name, array in net.state_dict().items():
        np.testing.assert_array_equal(array, before[name], err_msg=name)


def test_load_state_dict_missing_key_is_named_and_changes_nothing():
    net = _net()
    before = net.state_dict()
    state = _net(seed=9).state_dict()
    del state["5.bias"]
    msg = "weights do not fit this network: missing ['5.bias'], unexpected []"
    with pytest.raises(CheckpointError, match=re.escape(msg)):
        net.load_state_dict(state)
    for name, array in net.state_dict().items():
        np.testing.assert_array_equal(array, before[name], err_msg=name)


def test_load_state_dict_unexpected_key_is_named():
    net = _net()
    state = net.state_dict()
    state["9.weight"] = np.zeros((2, 3))
    msg = "weights do not fit this network: missing [], unexpected ['9.weight']"
    with pytest.raises(CheckpointError, match=re.escape(msg)):
        net.load_state_dict(state)


def test_checkpoint_error_is_a_value_error_and_an_mlpkit_error():
    assert issubclass(CheckpointError, ValueError) and issubclass(CheckpointError, MlpkitError)


# --- files --------------------------------------------------------------------------------------


def test_save_and_load_weights_round_trip(tmp_path):
    path = tmp_path / "model.safetensors"
    source, target = _net(seed=1, dtype=np.float32), _net(seed=2, dtype=np.float32)
    save_weights(source, path, metadata={"spec": "test"})
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]  # no temporary file left
    metadata = load_weights(target, path)
    assert metadata == {"spec": "test"}
    for name, p in target.named_parameters().items():
        assert p.data.dtype == np.float32
        np.testing.assert_array_equal(p.data, source.named_parameters()[name].data, err_msg=name)


def test_save_weights_overwrites_an_existing_file(tmp_path):
    path = tmp_path / "model.safetensors"
    save_weights(_net(seed=1), path)
    save_weights(_net(seed=2), path)
    target = _net(seed=3)
    load_weights(target, path)
    np.testing.assert_array_equal(target.layers[0].weight.data, _net(seed=2).layers[0].weight.data)


def test_load_weights_truncated_file_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "model.safetensors"
    save_weights(_net(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    net = _net(seed=5)
    before = net.state_dict()
    with pytest.raises(CheckpointError, match=re.escape(f"{path}: not a readable safetensors file")):
        load_weights(net, path)
    for name, array in net.state_dict().items():
        np.testing.assert_array_equal(array, before[name], err_msg=name)


@pytest.mark.parametrize("content", [b"", b"not a safetensors file at all", b"\xff" * 64])
def test_load_weights_garbage_is_a_checkpoint_error(tmp_path, content):
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=re.escape(f"{path}: not a readable safetensors file")):
        load_weights(_net(), path)


def test_load_weights_missing_file_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "absent.safetensors"
    with pytest.raises(CheckpointError, match=re.escape(f"no weights file at {path}")):
        load_weights(_net(), path)


def test_load_weights_of_another_architecture_names_the_tensor(tmp_path):
    path = tmp_path / "model.safetensors"
    save_weights(
        _net(MLPSpec(4, (7, 6, 5), 3, activation=("relu", "tanh", "gelu"), dropout=(0.1, 0.0, 0.2))), path
    )
    msg = "tensor '0.weight' has shape (7, 4) in the weights but (8, 4) in the network"
    with pytest.raises(CheckpointError, match=re.escape(msg)):
        load_weights(_net(), path)


# --- modes, shapes, dtypes ----------------------------------------------------------------------


def test_eval_disables_dropout_and_train_enables_it(rng):
    net = _net(MLPSpec(4, (64,), 3, dropout=0.5))  # Linear ReLU Dropout Linear
    first, last = net.layers[0], net.layers[3]
    x = rng.standard_normal((3, 4))
    # Without dropout the network is relu(x W0 + b0) W1 + b1.
    expected = np.maximum(x @ first.weight.data + first.bias.data, 0) @ last.weight.data + last.bias.data
    net.eval()
    assert not net.training and not any(layer.training for layer in net.layers)
    np.testing.assert_allclose(net.forward(x), expected, rtol=1e-13)
    np.testing.assert_array_equal(net.forward(x), net.forward(x))
    net.train()
    assert all(layer.training for layer in net.layers)
    assert not np.allclose(net.forward(x), expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_of_one_gives_one_row_of_logits(dtype):
    net = _net(dtype=dtype)
    logits = net.forward(np.ones((1, 4), dtype=dtype))
    assert logits.shape == (1, 3) and logits.dtype == dtype
    assert net.backward(np.ones((1, 3), dtype=dtype)).shape == (1, 4)
    for name, p in net.named_parameters().items():
        assert p.grad.shape == p.data.shape, name


def test_forward_and_backward_leave_the_input_untouched(rng):
    # The built ReLUs work in place on the Linear outputs; the caller's batch must not be touched.
    net = _net(MLPSpec(4, (8, 8), 3, activation="relu"))
    x = rng.standard_normal((5, 4))
    x_before = x.copy()
    net.backward(net.forward(x))
    np.testing.assert_array_equal(x, x_before)


def test_dtype_property_and_invalid_dtype():
    assert _net(dtype=np.float32).dtype == np.float32
    assert _net(dtype=np.float64).dtype == np.float64
    with pytest.raises(ValueError, match="dtype must be float32 or float64, got float16"):
        build_mlp(SPEC, rng=np.random.default_rng(0), dtype=np.float16)


def test_build_mlp_is_deterministic_for_a_seed():
    a, b, c = _net(seed=4).state_dict(), _net(seed=4).state_dict(), _net(seed=5).state_dict()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert not np.array_equal(a["0.weight"], c["0.weight"])


# --- whole-network gradients --------------------------------------------------------------------

GRAD_SPECS = [
    pytest.param(
        MLPSpec(5, (6, 5, 4, 4), 3, activation=("relu", "gelu", "tanh", "silu"), init="xavier_normal"),
        id="relu-gelu-tanh-silu",
    ),
    pytest.param(
        MLPSpec(
            5,
            (6, 4, 4),
            3,
            activation=("leaky_relu", "sigmoid", "identity"),
            init="kaiming_normal",
            bias=False,
        ),
        id="leaky-sigmoid-identity-nobias",
    ),
    pytest.param(
        MLPSpec(5, (7, 6), 3, activation=("relu", "tanh"), dropout=(0.3, 0.5), init="xavier_uniform"),
        id="relu-tanh-dropout-training",
    ),
]


@pytest.mark.parametrize("batch_size", [1, 5])
@pytest.mark.parametrize("spec", GRAD_SPECS)
def test_network_gradients_match_central_differences_of_the_loss(spec, batch_size, rng):
    net = _net(spec)
    for layer in net.layers:  # non-zero biases, so their grads matter
        if isinstance(layer, Linear) and layer.bias is not None:
            layer.bias.data[...] = 0.1 * rng.standard_normal(layer.out_features)
    dropouts = [layer for layer in net.layers if isinstance(layer, Dropout)]
    x = rng.standard_normal((batch_size, 5))
    y = rng.integers(0, 3, size=batch_size)
    loss = SoftmaxCrossEntropyLoss()

    def forward() -> np.ndarray:
        for d in dropouts:  # the same masks at every call
            d.rng = np.random.default_rng(11)
        return net.forward(x)

    def f() -> float:
        return loss.forward(forward(), y)

    loss.forward(forward(), y)
    grad_x = net.backward(loss.backward())
    analytic = {name: p.grad.copy() for name, p in net.named_parameters().items()}
    for name, p in net.named_parameters().items():
        assert np.isfinite(analytic[name]).all() and analytic[name].any(), f"no usable gradient for {name}"
        np.testing.assert_allclose(
            analytic[name], numerical_grad(f, p.data), rtol=1e-5, atol=1e-8, err_msg=name
        )
    np.testing.assert_allclose(grad_x, numerical_grad(f, x), rtol=1e-5, atol=1e-8, err_msg="dL/dx")


def test_backward_params_fills_the_same_grads_as_backward(rng):
    spec = MLPSpec(5, (6, 4), 3, activation=("relu", "silu"))
    full, params_only = _net(spec), _net(spec)
    x, g = rng.standard_normal((4, 5)), rng.standard_normal((4, 3))
    full.forward(x)
    full.backward(g.copy())
    params_only.forward(x)
    params_only.backward_params(g.copy())
    for name, p in params_only.named_parameters().items():
        np.testing.assert_allclose(p.grad, full.named_parameters()[name].grad, rtol=1e-14, err_msg=name)


def test_sequential_of_plain_layers_chains_forward_and_backward(rng):
    # Sigmoid(Linear(x)) by hand: backward is Wᵀ applied to g σ(1 − σ).
    lin = Linear(3, 2, weight=rng.standard_normal((3, 2)))
    net = Sequential(lin, Sigmoid())
    x, g = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    s = 1 / (1 + np.exp(-(x @ lin.weight.data)))
    np.testing.assert_allclose(net.forward(x), s, rtol=1e-14)
    np.testing.assert_allclose(net.backward(g), (g * s * (1 - s)) @ lin.weight.data.T, rtol=1e-13)


# --- torch parity -------------------------------------------------------------------------------


def _torch_sequential(torch, spec: MLPSpec):
    """The torch.nn.Sequential with the same layer order as build_mlp(spec), in float64."""
    nn = torch.nn
    shapes = spec.linear_shapes()
    drops = iter(p for p in spec.dropouts if p > 0)
    make = {
        "relu": nn.ReLU,
        "leaky_relu": nn.LeakyReLU,
        "sigmoid": nn.Sigmoid,
        "tanh": nn.Tanh,
        "gelu": nn.GELU,
        "silu": nn.SiLU,
        "identity": nn.Identity,
    }
    layers = []
    for index, name in enumerate(spec.layer_names()):
        if name == "linear":
            out_features, in_features = shapes[f"{index}.weight"]
            layers.append(nn.Linear(in_features, out_features, bias=spec.bias, dtype=torch.float64))
        elif name == "dropout":
            layers.append(nn.Dropout(next(drops)))
        else:
            layers.append(make[name]())
    return nn.Sequential(*layers)


TORCH_SPECS = [
    pytest.param(SPEC, id="relu-tanh-gelu-dropout"),
    pytest.param(
        MLPSpec(4, (6, 5, 5), 3, activation=("leaky_relu", "silu", "sigmoid"), init="kaiming_uniform"),
        id="leaky-silu-sigmoid",
    ),
]


@pytest.mark.torch
@pytest.mark.parametrize("batch_size", [1, 5])
@pytest.mark.parametrize("spec", TORCH_SPECS)
def test_logits_and_gradients_match_torch(spec, batch_size, rng):
    torch = pytest.importorskip("torch")
    net = _net(spec)
    for layer in net.layers:
        if isinstance(layer, Linear):
            layer.bias.data[...] = 0.1 * rng.standard_normal(layer.out_features)
    model = _torch_sequential(torch, spec)
    model.load_state_dict({name: torch.from_numpy(array) for name, array in net.state_dict().items()})
    net.eval()
    model.eval()  # dropout off in both

    x = rng.standard_normal((batch_size, spec.in_features))
    y = rng.integers(0, spec.out_features, size=batch_size)
    logits = net.forward(x)
    loss = SoftmaxCrossEntropyLoss()
    value = loss.forward(logits, y)
    net.backward(loss.backward())

    torch_logits = model(torch.from_numpy(x))
    torch_loss = torch.nn.functional.cross_entropy(torch_logits, torch.from_numpy(y))
    torch_loss.backward()

    np.testing.assert_allclose(logits, torch_logits.detach().numpy(), rtol=1e-10, atol=1e-12)
    assert value == pytest.approx(torch_loss.item(), rel=1e-10)
    torch_params = dict(model.named_parameters())
    assert set(torch_params) == set(net.named_parameters())
    for name, p in net.named_parameters().items():
        ours = p.grad.T if p.grad.ndim == 2 else p.grad  # (in, out) -> torch's (out, in)
        np.testing.assert_allclose(
            ours, torch_params[name].grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name
        )


@pytest.mark.torch
def test_weights_file_loads_into_torch(tmp_path, rng):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    path = tmp_path / "model.safetensors"
    net = _net(SPEC)
    save_weights(net, path)
    model = _torch_sequential(torch, SPEC)
    model.load_state_dict(load_file(str(path)))  # strict: same names and shapes
    net.eval()
    model.eval()
    x = rng.standard_normal((2, 4))
    np.testing.assert_allclose(
        net.forward(x), model(torch.from_numpy(x)).detach().numpy(), rtol=1e-12, atol=1e-14
    )
