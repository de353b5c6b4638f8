"""One spec, two engines: the NumPy engine and torch agree on weights, logits, loss, gradients and updates.

This is the proof that the engine's hand-written backward passes and optimizers are right, beyond
finite differences: same weights and the same batches through both give the same numbers after
several optimizer steps, to 1e-5 relative in float32 and 1e-10 in float64 (relative to each
tensor's largest entry, so entries that are zero up to rounding do not make the test flaky).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mlpkit.engine import (
    BCEWithLogitsLoss,
    MSELoss,
    SoftmaxCrossEntropyLoss,
    build_mlp,
    load_weights,
    make_optimizer,
    save_weights,
)
from mlpkit.errors import CheckpointError
from mlpkit.spec import ACTIVATION_NAMES, INIT_NAMES, MLPSpec
from mlpkit.torch_engine import (
    build_torch_mlp,
    engine_to_torch,
    load_state_arrays,
    load_torch_weights,
    save_torch_weights,
    state_arrays,
    torch_to_engine,
)
from mlpkit.train.torch_trainer import build_optimizer

pytestmark = pytest.mark.torch  # needs torch (the `torch` extra)

DTYPES = {"float32": (np.float32, torch.float32, 1e-5), "float64": (np.float64, torch.float64, 1e-10)}
OPTIMIZERS = {
    "sgd_momentum": ("sgd", {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-3}),
    "sgd_nesterov": ("sgd", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}),
    "adam": ("adam", {"lr": 1e-2, "weight_decay": 1e-3}),
    "adamw": ("adamw", {"lr": 1e-2, "weight_decay": 0.05}),
}
STEPS = 5


def assert_close(actual, expected, rtol: float, what: str) -> None:
    actual = actual.detach().cpu().numpy() if isinstance(actual, torch.Tensor) else np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = max(float(np.abs(expected).max(initial=0.0)), 1e-30)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=what)


def _pair(spec: MLPSpec, np_dtype, torch_dtype, seed: int = 0):
    net = build_mlp(spec, rng=np.random.default_rng(seed), dtype=np_dtype)
    module = build_torch_mlp(spec, rng=np.random.default_rng(seed), dtype=torch_dtype)
    return net, module


def _run_parity(spec, loss_name, opt_name, opt_kwargs, dtype_name):
    np_dtype, torch_dtype, rtol = DTYPES[dtype_name]
    net, module = _pair(spec, np_dtype, torch_dtype)
    for name, value in state_arrays(module).items():  # same seed -> the same initial weights
        np.testing.assert_array_equal(value, net.state_dict()[name], err_msg=name)
    np_opt = make_optimizer(opt_name, net.parameters().values(), **opt_kwargs)
    t_opt = build_optimizer(opt_name, module, **opt_kwargs)
    np_loss = {
        "cross_entropy": SoftmaxCrossEntropyLoss,
        "mse": MSELoss,
        "bce_with_logits": BCEWithLogitsLoss,
    }[loss_name]()
    data_rng = np.random.default_rng(1)
    for step in range(STEPS):
        xb = data_rng.standard_normal((16, spec.in_features)).astype(np_dtype)
        if loss_name == "cross_entropy":
            yb = data_rng.integers(0, spec.out_features, 16)
            t_loss_fn = F.cross_entropy
        elif loss_name == "mse":
            yb = data_rng.standard_normal((16, spec.out_features)).astype(np_dtype)
            t_loss_fn = F.mse_loss
        else:
            yb = data_rng.integers(0, 2, (16, spec.out_features)).astype(np_dtype)
            t_loss_fn = F.binary_cross_entropy_with_logits
        logits = net.forward(xb)  # (B, C)
        loss = np_loss.forward(logits, yb)
        net.backward_params(np_loss.backward())
        t_logits = module(torch.from_numpy(xb))
        t_loss = t_loss_fn(t_logits, torch.from_numpy(yb))
        t_opt.zero_grad(set_to_none=True)
        t_loss.backward()
        assert_close(t_logits, logits, rtol, f"step {step}: logits")
        assert_close(t_loss, loss, rtol, f"step {step}: loss")
        for name, p in module.named_parameters():
            engine_grad = net.parameters()[name].grad
            assert_close(
                p.grad,
                engine_grad.T if engine_grad.ndim == 2 else engine_grad,
                rtol,
                f"step {step}: grad {name}",
            )
        np_opt.step()
        t_opt.step()
        engine_state = net.state_dict()
        for name, value in state_arrays(module).items():
            assert_close(value, engine_state[name], rtol, f"step {step}: parameter {name} after {opt_name}")


@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("opt_id", list(OPTIMIZERS))
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_engines_agree_step_for_step(activation, opt_id, dtype_name):
    spec = MLPSpec(6, (8, 7), 4, activation=activation, init="xavier_uniform")
    opt_name, kwargs = OPTIMIZERS[opt_id]
    _run_parity(spec, "cross_entropy", opt_name, kwargs, dtype_name)


@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("loss_name", ["mse", "bce_with_logits"])
def test_engines_agree_on_the_other_losses(loss_name, dtype_name):
    out = 1 if loss_name == "bce_with_logits" else 3
    spec = MLPSpec(5, (6,), out, activation="tanh", init="xavier_normal")
    _run_parity(spec, loss_name, "adamw", OPTIMIZERS["adamw"][1], dtype_name)


def test_engines_agree_with_mixed_activations_and_no_bias():
    spec = MLPSpec(
        5, (6, 4, 3), 2, activation=("gelu", "leaky_relu", "sigmoid"), init="kaiming_normal", bias=False
    )
    _run_parity(spec, "cross_entropy", "sgd", OPTIMIZERS["sgd_nesterov"][1], "float64")


def test_weight_decay_skips_biases_in_both_engines():
    # With a zero gradient, only decay moves a parameter: weights shrink, biases stay.
    spec = MLPSpec(3, (4,), 2, init="xavier_uniform")
    net, module = _pair(spec, np.float64, torch.float64)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.5)
    torch_to_engine(module, net)
    before = state_arrays(module)
    t_opt = build_optimizer("adamw", module, lr=0.1, weight_decay=0.5)
    np_opt = make_optimizer("adamw", net.parameters().values(), lr=0.1, weight_decay=0.5)
    for p in module.parameters():
        p.grad = torch.zeros_like(p)
    t_opt.step()
    np_opt.step()
    after_t, after_np = state_arrays(module), net.state_dict()
    for name in before:
        expected = before[name] * (1 - 0.1 * 0.5) if name.endswith("weight") else before[name]
        np.testing.assert_allclose(after_t[name], expected, rtol=1e-12, err_msg=name)
        np.testing.assert_allclose(after_np[name], expected, rtol=1e-12, err_msg=name)


# -- building and converting -------------------------------------------------------------------


@pytest.mark.parametrize("init", INIT_NAMES)
def test_one_seed_builds_the_same_network_in_both_engines(init):
    spec = MLPSpec(7, (5, 4), 3, activation=("tanh", "relu"), dropout=(0.0, 0.2), init=init)
    net, module = _pair(spec, np.float32, torch.float32)
    assert [n for n, _ in module.named_parameters()] == list(net.named_parameters())
    assert {n: tuple(p.shape) for n, p in module.named_parameters()} == spec.linear_shapes()
    for name, value in state_arrays(module).items():
        np.testing.assert_array_equal(value, net.state_dict()[name], err_msg=name)


@pytest.mark.parametrize("dtype_name", list(DTYPES))
def test_conversion_round_trip_is_bit_exact(dtype_name):
    np_dtype, torch_dtype, _ = DTYPES[dtype_name]
    spec = MLPSpec(5, (6,), 3, init="kaiming_uniform")
    net, module = _pair(spec, np_dtype, torch_dtype, seed=3)
    other, _ = _pair(spec, np_dtype, torch_dtype, seed=4)
    with torch.no_grad():
        for p in module.parameters():
            p.mul_(1.7).add_(1e-3)
    torch_to_engine(module, net)
    engine_to_torch(net, module)
    torch_to_engine(module, other)
    for name, value in state_arrays(module).items():
        assert value.dtype == np_dtype
        np.testing.assert_array_equal(other.state_dict()[name], value, err_msg=name)


def test_a_weights_file_moves_between_engines_both_ways(tmp_path):
    spec = MLPSpec(4, (5,), 3, init="xavier_uniform")
    net, module = _pair(spec, np.float32, torch.float32, seed=1)
    fresh_net, fresh_module = _pair(spec, np.float32, torch.float32, seed=2)
    save_weights(net, tmp_path / "engine.safetensors")
    load_torch_weights(fresh_module, tmp_path / "engine.safetensors")
    save_torch_weights(module, tmp_path / "torch.safetensors", metadata={"engine": "torch"})
    assert load_weights(fresh_net, tmp_path / "torch.safetensors") == {"engine": "torch"}
    for name, value in net.state_dict().items():  # bit-exact both ways
        np.testing.assert_array_equal(state_arrays(fresh_module)[name], value, err_msg=name)
        np.testing.assert_array_equal(fresh_net.state_dict()[name], state_arrays(module)[name], err_msg=name)
    x = np.random.default_rng(0).standard_normal((1, 4)).astype(np.float32)  # batch of one
    logits = (
        fresh_module(torch.from_numpy(x)).detach().numpy()
    )  # (1, 3); BLAS kernels differ in rounding only
    np.testing.assert_allclose(logits, net.forward(x), rtol=1e-6)


def test_loading_weights_of_another_architecture_names_the_tensor_and_both_shapes(tmp_path):
    small = build_torch_mlp(MLPSpec(4, (5,), 3))
    big = build_torch_mlp(MLPSpec(4, (6,), 3))
    save_torch_weights(big, tmp_path / "big.safetensors")
    before = state_arrays(small)
    with pytest.raises(
        CheckpointError, match=r"tensor '0.weight' has shape \(6, 4\) in the weights but \(5, 4\)"
    ):
        load_torch_weights(small, tmp_path / "big.safetensors")
    for name, value in state_arrays(small).items():  # all or nothing
        np.testing.assert_array_equal(value, before[name])
    with pytest.raises(CheckpointError, match=r"missing \['4.bias', '4.weight'\], unexpected \[\]"):
        load_state_arrays(build_torch_mlp(MLPSpec(4, (5, 5), 3)), state_arrays(small))


def test_loading_a_truncated_or_missing_weights_file_is_a_clear_error(tmp_path):
    module = build_torch_mlp(MLPSpec(4, (5,), 3))
    path = save_torch_weights(module, tmp_path / "model.safetensors")
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_torch_weights(module, path)
    with pytest.raises(CheckpointError, match="no weights file at"):
        load_torch_weights(module, tmp_path / "absent.safetensors")


def test_build_torch_mlp_rejects_other_dtypes():
    with pytest.raises(
        ValueError, match=r"dtype must be torch\.float32 or torch\.float64, got torch\.float16"
    ):
        build_torch_mlp(MLPSpec(2, (2,), 2), dtype=torch.float16)


# -- the two trainers ----------------------------------------------------------------------------


def test_numpy_and_torch_trainers_give_the_same_history_in_float64():
    from mlpkit.engine import SoftmaxCrossEntropyLoss as NpCE
    from mlpkit.train import NumpyTrainer
    from mlpkit.train.torch_trainer import TorchTrainer, build_loss

    spec = MLPSpec(6, (10,), 3, activation="tanh", init="xavier_uniform")
    data = np.random.default_rng(7)
    x, y = data.standard_normal((50, 6)), data.integers(0, 3, 50)
    xv, yv = data.standard_normal((20, 6)), data.integers(0, 3, 20)
    net, module = _pair(spec, np.float64, torch.float64)
    kwargs = {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3}
    np_hist = NumpyTrainer(
        net,
        loss=NpCE(),
        optimizer=make_optimizer("sgd", net.parameters().values(), **kwargs),
        rng=np.random.default_rng(11),
        batch_size=8,
    ).fit(x, y, xv, yv, epochs=3)
    t_hist = TorchTrainer(
        module,
        loss=build_loss("cross_entropy"),
        optimizer=build_optimizer("sgd", module, **kwargs),
        rng=np.random.default_rng(11),
        batch_size=8,
    ).fit(x, y, xv, yv, epochs=3)
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"):
        np.testing.assert_allclose(t_hist.column(key), np_hist.column(key), rtol=1e-10, err_msg=key)
    assert t_hist.best_epoch == np_hist.best_epoch
    for name, value in state_arrays(module).items():
        assert_close(value, net.state_dict()[name], 1e-10, name)
