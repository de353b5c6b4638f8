"""Weights between the scalar MLP and the engine: exact round trips both ways, and the refusals."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest

from mlpkit.autograd import MLP
from mlpkit.autograd.convert import grad_dict, mlp_from_state_dict, state_dict
from mlpkit.engine import build_mlp
from mlpkit.errors import CheckpointError
from mlpkit.spec import MLPSpec

SPEC = MLPSpec(3, (4, 2), 2, activation=("tanh", "relu"))


def test_engine_weights_round_trip_through_the_scalar_mlp_bit_for_bit(rng):
    network = build_mlp(SPEC, rng=rng, dtype=np.float64)
    state = network.state_dict()
    back = state_dict(mlp_from_state_dict(SPEC, state))
    assert list(back) == list(state)
    for name in state:
        assert back[name].dtype == np.float64
        np.testing.assert_array_equal(back[name], state[name], err_msg=name)


def test_scalar_weights_load_into_the_engine_built_from_its_spec(rng):
    # The other direction: build in pure Python, then run the same network vectorized.
    net = MLP(3, (4, 2), 2, activation=("tanh", "relu"), rng=random.Random(0))
    network = build_mlp(net.spec, rng=rng, dtype=np.float64)
    network.load_state_dict(state_dict(net))
    x = rng.normal(size=(6, 3))
    expected = [[v.data for v in net(row)] for row in x.tolist()]
    np.testing.assert_allclose(network.forward(x), expected, rtol=1e-14, atol=1e-15)


def test_weight_layout_is_out_by_in():
    net = MLP(3, (), 2, rng=random.Random(0))
    net.layers[0].neurons[1].weight[2].data = 7.0                      # unit 1 reads input 2
    assert state_dict(net)["0.weight"][1, 2] == 7.0


def test_float32_weights_are_widened_exactly(rng):
    network = build_mlp(SPEC, rng=rng, dtype=np.float32)
    state = network.state_dict()
    back = state_dict(mlp_from_state_dict(SPEC, state))
    for name in state:
        np.testing.assert_array_equal(back[name], state[name].astype(np.float64))


def test_grad_dict_reads_the_gradients_in_the_same_layout():
    net = MLP(2, (), 1, rng=random.Random(0))
    (y,) = net([3.0, -2.0])
    y.backward()                                                       # dy/dw = x, dy/db = 1
    grads = grad_dict(net)
    np.testing.assert_array_equal(grads["0.weight"], [[3.0, -2.0]])
    np.testing.assert_array_equal(grads["0.bias"], [1.0])


def test_missing_and_unexpected_tensors_are_listed(rng):
    state = build_mlp(SPEC, rng=rng, dtype=np.float64).state_dict()
    state["9.weight"] = state.pop("4.weight")
    with pytest.raises(CheckpointError, match=re.escape("missing ['4.weight'], unexpected ['9.weight']")):
        mlp_from_state_dict(SPEC, state)


def test_a_wrong_shape_names_the_tensor_and_both_shapes(rng):
    state = build_mlp(SPEC, rng=rng, dtype=np.float64).state_dict()
    state["2.weight"] = state["2.weight"].T
    message = "tensor '2.weight' has shape (4, 2) in the weights but (2, 4) in the network"
    with pytest.raises(CheckpointError, match=re.escape(message)):
        mlp_from_state_dict(SPEC, state)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (MLPSpec(3, (4,), 2, dropout=0.2), "the scalar MLP has no dropout; spec.dropout must be 0, got 0.2"),
        (MLPSpec(3, (4,), 2, bias=False), "spec.bias must be True, got False"),
        (MLPSpec(3, (4,), 2, activation="gelu"),
         "activation must be one of ['identity', 'relu', 'sigmoid', 'tanh'], got 'gelu'"),
    ],
    ids=["dropout", "no_bias", "gelu"],
)
def test_specs_the_scalar_mlp_cannot_build_are_refused(spec, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        mlp_from_state_dict(spec, {})
