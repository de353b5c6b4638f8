"""Activation lookup: the same names and values as the NumPy engine, gradients, and the error message."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mlpkit.blocks.activations import ACT_LAYERS, get_act_layer, make_activation
from mlpkit.engine.activations import get_activation as engine_activation
from mlpkit.errors import ConfigError
from mlpkit.spec import ACTIVATION_NAMES

pytestmark = pytest.mark.torch  # needs torch (the `torch` extra)


def test_the_registry_has_exactly_the_spec_names():
    assert set(ACT_LAYERS) == set(ACTIVATION_NAMES)


@pytest.mark.parametrize("batch_size", [1, 4])
@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_each_activation_equals_the_engines(name, batch_size):
    # The engine's values are the reference: each of its activations is gradient-checked.
    x = np.random.default_rng(0).standard_normal((batch_size, 5)) * 3
    out = make_activation(name)(torch.from_numpy(x))
    assert out.shape == (batch_size, 5)
    np.testing.assert_allclose(out.numpy(), engine_activation(name).forward(x.copy()), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_each_activation_passes_gradcheck(name):
    x = torch.tensor([[-1.3, -0.4, 0.3, 2.1]], dtype=torch.float64, requires_grad=True)  # away from 0
    assert torch.autograd.gradcheck(make_activation(name), (x,))


def test_a_class_passes_through():
    assert get_act_layer(nn.Hardswish) is nn.Hardswish
    assert isinstance(make_activation(nn.ELU), nn.ELU)


def test_an_unknown_name_lists_the_valid_ones():
    message = (
        r"activation must be one of \['gelu', 'identity', 'leaky_relu', 'relu', 'sigmoid', 'silu', 'tanh'\], "
        r"got 'swish'"
    )
    with pytest.raises(ConfigError, match=message):
        get_act_layer("swish")
    with pytest.raises(ValueError, match=r"or an nn\.Module class, got 3"):  # ConfigError is a ValueError
        get_act_layer(3)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="got <class 'int'>"):
        get_act_layer(int)  # type: ignore[arg-type]
