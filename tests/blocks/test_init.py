"""Initializers: the engine's laws and gains, zero biases, determinism, and the error message."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from mlpkit.blocks.init import INIT_NAMES, calculate_gain, init_linear_, init_weight_
from mlpkit.engine.init import calculate_gain as engine_gain
from mlpkit.engine.init import initialize
from mlpkit.errors import ConfigError
from mlpkit.spec import ACTIVATION_NAMES
from mlpkit.spec import INIT_NAMES as SPEC_INIT_NAMES

pytestmark = pytest.mark.torch  # needs torch (the `torch` extra)


def test_names_and_gains_equal_the_engines():
    assert INIT_NAMES == SPEC_INIT_NAMES
    for name in ACTIVATION_NAMES:
        assert calculate_gain(name) == engine_gain(name), name
    assert calculate_gain("tanh") == torch.nn.init.calculate_gain("tanh")
    assert calculate_gain("leaky_relu") == pytest.approx(torch.nn.init.calculate_gain("leaky_relu", 0.01))


@pytest.mark.parametrize("nonlinearity", ["relu", "tanh", "identity"])
@pytest.mark.parametrize("init", INIT_NAMES)
def test_each_initializer_draws_the_engines_law(init, nonlinearity):
    # Reference: the engine's draw of the same shape; a 200x300 sample pins std and range to ~1%.
    shape = (200, 300)
    gen = torch.Generator().manual_seed(0)
    w = init_weight_(
        torch.empty(shape, dtype=torch.float64), init, std=0.05, nonlinearity=nonlinearity, generator=gen
    )
    ref = initialize(
        init, shape, np.random.default_rng(0), std=0.05, nonlinearity=nonlinearity, dtype=np.float64
    )
    assert w.shape == shape
    assert w.std().item() == pytest.approx(ref.std(), rel=0.03)
    assert abs(w.mean().item()) < 0.05 * ref.std()
    if init.endswith("uniform"):
        fan_out, fan_in = shape
        gain = calculate_gain(nonlinearity)
        bound = (
            gain * math.sqrt(6 / (fan_in + fan_out))
            if init.startswith("xavier")
            else gain * math.sqrt(3 / fan_in)
        )
        assert w.abs().max().item() <= bound
        assert ref.max() <= bound


def test_the_same_generator_seed_gives_the_same_weights():
    def draw():
        return init_weight_(torch.empty(3, 4), "xavier_normal", generator=torch.Generator().manual_seed(5))

    torch.testing.assert_close(draw(), draw(), rtol=0, atol=0)


def test_init_linear_zeroes_the_bias_and_keeps_shapes():
    linear = init_linear_(nn.Linear(4, 1), "normal", std=0.01)  # fan_out of one
    assert linear.weight.shape == (1, 4)
    assert torch.count_nonzero(linear.bias) == 0
    assert init_linear_(nn.Linear(2, 3, bias=False), "kaiming_normal").bias is None


def test_initialized_weights_train():
    linear = init_linear_(nn.Linear(3, 2), "xavier_uniform")
    linear(torch.ones(1, 3)).sum().backward()
    assert torch.isfinite(linear.weight.grad).all()
    torch.testing.assert_close(linear.weight.grad, torch.ones(2, 3))  # d(sum(Wx + b))/dW = 1 xᵀ


def test_bad_arguments_are_named():
    with pytest.raises(
        ConfigError,
        match=r"init must be one of \['kaiming_normal', 'kaiming_uniform', 'normal', 'xavier_normal', "
        r"'xavier_uniform'\], got 'he'",
    ):
        init_weight_(torch.empty(2, 2), "he")
    with pytest.raises(ValueError, match="std must be a positive float, got 0"):
        init_weight_(torch.empty(2, 2), "normal", std=0)
    with pytest.raises(ValueError, match=r"weight must be 2-D \(fan_out, fan_in\), got shape \(3,\)"):
        init_weight_(torch.empty(3), "normal")
