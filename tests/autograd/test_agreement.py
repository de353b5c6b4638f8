"""Three levels, one answer: the scalar MLP, the NumPy engine and torch autograd agree to 1e-12 in float64.

Same weights and the same batch give the same logits, loss and gradients. The engine writes each
layer's backward by hand (``Linear.backward``: ``dW = xᵀ δ``, ``δ Wᵀ``); the scalar MLP only knows
each operation's local derivative and the chain rule; torch is the reference implementation.
The cases: MSE and softmax cross-entropy, a batch of one and of five, and networks of depth 2 and
4 with mixed activations. The torch tests skip, saying why, only when torch is not installed.
"""

from __future__ import annotations

import numpy as np
import pytest

from mlpkit.autograd import cross_entropy_loss, mse_loss
from mlpkit.autograd.convert import grad_dict, mlp_from_state_dict
from mlpkit.engine import MSELoss, SoftmaxCrossEntropyLoss, build_mlp
from mlpkit.engine.network import Sequential, to_file_layout
from mlpkit.spec import MLPSpec

TOLERANCE = 1e-12                                                      # float64, relative and absolute

NETWORKS = {
    "2-3-2 tanh": MLPSpec(2, (3,), 2, activation="tanh", init="xavier_normal"),
    # Depth 4 (four Linear layers) with every activation the scalar MLP has.
    "4-5-4-3-3 tanh,relu,sigmoid": MLPSpec(
        4, (5, 4, 3), 3, activation=("tanh", "relu", "sigmoid"), init="xavier_normal"
    ),
    "3-4-4-4-2 sigmoid,identity,relu": MLPSpec(
        3, (4, 4, 4), 2, activation=("sigmoid", "identity", "relu"), init="xavier_normal"
    ),
}
LOSSES = ("mse", "cross_entropy")
BATCH_SIZES = (1, 5)


def make_case(spec: MLPSpec, batch: int, loss: str, seed: int = 0):
    """An engine network in float64 with non-zero biases, a batch and its targets, all seeded.

    Returns
    -------
    network : Sequential
    x : ndarray of shape (B, D)
    target : ndarray of shape (B, C) float (mse) or (B,) int (cross_entropy)
    """
    rng = np.random.default_rng(seed)
    network = build_mlp(spec, rng=rng, dtype=np.float64)
    for name, p in network.named_parameters().items():
        if name.endswith("bias"):
            p.data[...] = rng.normal(0.0, 0.5, p.data.shape)          # zero biases would hide their gradient
    x = rng.normal(size=(batch, spec.in_features))
    if loss == "mse":
        target = rng.normal(size=(batch, spec.out_features))
    else:
        target = rng.integers(0, spec.out_features, batch)
    return network, x, target


def engine_step(network: Sequential, x: np.ndarray, target: np.ndarray, loss: str):
    """Logits (B, C), loss and gradients (torch's layout) from the engine's hand-written backward."""
    fn = MSELoss() if loss == "mse" else SoftmaxCrossEntropyLoss()
    logits = network.forward(x.copy())
    value = fn.forward(logits, target)
    network.backward(fn.backward())
    grads = {name: to_file_layout(p.grad).copy() for name, p in network.named_parameters().items()}
    return logits, value, grads


def scalar_step(spec: MLPSpec, state, x: np.ndarray, target: np.ndarray, loss: str):
    """The same through the scalar MLP and ``backward()``."""
    net = mlp_from_state_dict(spec, state)
    outputs = [net(row) for row in x.tolist()]
    if loss == "mse":
        value = mse_loss(outputs, target.tolist())
    else:
        value = cross_entropy_loss(outputs, target.tolist())
    value.backward()
    logits = np.array([[v.data for v in row] for row in outputs])
    return logits, value.data, grad_dict(net)


def assert_close(actual, expected, what: str) -> None:
    np.testing.assert_allclose(actual, expected, rtol=TOLERANCE, atol=TOLERANCE, err_msg=what)


@pytest.fixture
def torch():
    """torch, or a skip naming what is missing."""
    return pytest.importorskip("torch", reason="torch is not installed (pip install 'mlpkit[torch]')")


CASES = [
    pytest.param(name, loss, batch, id=f"{name}-{loss}-B{batch}")
    for name in NETWORKS
    for loss in LOSSES
    for batch in BATCH_SIZES
]


@pytest.mark.parametrize(("name", "loss", "batch"), CASES)
def test_scalar_mlp_equals_the_engine(name, loss, batch):
    spec = NETWORKS[name]
    network, x, target = make_case(spec, batch, loss)
    state = network.state_dict()
    logits, value, grads = engine_step(network, x, target, loss)
    s_logits, s_value, s_grads = scalar_step(spec, state, x, target, loss)
    assert_close(s_logits, logits, "logits")
    assert_close(s_value, value, "loss")
    assert set(s_grads) == set(grads) == set(spec.linear_shapes())
    for key in grads:
        assert s_grads[key].shape == grads[key].shape, key
        assert_close(s_grads[key], grads[key], f"d loss / d {key}")
        assert np.abs(grads[key]).max() > 1e-6, f"{key}: an all-zero gradient would agree trivially"


@pytest.mark.torch
@pytest.mark.parametrize(("name", "loss", "batch"), CASES)
def test_scalar_mlp_and_engine_equal_torch_autograd(name, loss, batch, torch):
    from mlpkit.torch_engine import build_torch_mlp, load_state_arrays

    spec = NETWORKS[name]
    network, x, target = make_case(spec, batch, loss)
    state = network.state_dict()
    module = build_torch_mlp(spec, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    load_state_arrays(module, state)
    logits_t = module(torch.from_numpy(x))
    if loss == "mse":
        value_t = torch.nn.functional.mse_loss(logits_t, torch.from_numpy(target))
    else:
        value_t = torch.nn.functional.cross_entropy(logits_t, torch.from_numpy(target))
    value_t.backward()
    torch_grads = {key: p.grad.numpy() for key, p in module.named_parameters()}

    s_logits, s_value, s_grads = scalar_step(spec, state, x, target, loss)
    e_logits, e_value, e_grads = engine_step(network, x, target, loss)
    assert_close(s_logits, logits_t.detach().numpy(), "scalar logits")
    assert_close(e_logits, logits_t.detach().numpy(), "engine logits")
    assert_close(s_value, value_t.item(), "scalar loss")
    assert_close(e_value, value_t.item(), "engine loss")
    assert set(torch_grads) == set(s_grads)
    for key, expected in torch_grads.items():
        assert_close(s_grads[key], expected, f"scalar d loss / d {key}")
        assert_close(e_grads[key], expected, f"engine d loss / d {key}")
