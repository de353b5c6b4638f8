"""Initializers: (fan_out, fan_in) shapes, empirical spread against the formulas, determinism, dtypes."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from mlpkit.engine.init import (
    INITIALIZERS,
    calculate_gain,
    initialize,
    kaiming_normal,
    kaiming_uniform,
    normal,
    xavier_normal,
    xavier_uniform,
)
from mlpkit.engine.network import build_mlp
from mlpkit.spec import INIT_NAMES, MLPSpec

# A large matrix (fan_out, fan_in) = (400, 500): 200 000 draws, so a sample std is within
# about 1 / sqrt(2 n) = 0.16 % of the true one; 2 % is over 10 standard errors.
FAN_OUT, FAN_IN = 400, 500
N = FAN_OUT * FAN_IN


def _std_close(w: np.ndarray, expected_std: float) -> None:
    assert abs(w.std() / expected_std - 1) < 0.02, f"std {w.std():.6g}, expected {expected_std:.6g}"
    # The mean of n draws has sd std / sqrt(n); allow 5 of those.
    assert abs(w.mean()) < 5 * expected_std / math.sqrt(w.size)


@pytest.mark.parametrize("name", sorted(INITIALIZERS))
def test_initialize_returns_fan_out_by_fan_in(name, rng):
    w = initialize(name, (3, 7), rng)
    assert w.shape == (3, 7)
    assert w.dtype == np.float32  # the default dtype


def test_initializer_names_match_the_spec():
    assert set(INITIALIZERS) == set(INIT_NAMES)


def test_normal_has_the_requested_std(rng):
    w = normal((FAN_OUT, FAN_IN), rng, std=0.01)
    _std_close(w, 0.01)


def test_initialize_normal_uses_std(rng):
    _std_close(initialize("normal", (FAN_OUT, FAN_IN), rng, std=0.05, dtype=np.float64), 0.05)


def test_xavier_uniform_bound_and_std(rng):
    w = xavier_uniform((FAN_OUT, FAN_IN), rng)
    a = math.sqrt(6 / (FAN_IN + FAN_OUT))  # Glorot & Bengio 2010, eq. 16
    assert np.abs(w).max() <= a
    assert np.abs(w).max() > 0.999 * a  # the bound is reached, not just respected
    _std_close(w, a / math.sqrt(3))  # U(−a, a) has variance a² / 3


def test_xavier_normal_std(rng):
    _std_close(xavier_normal((FAN_OUT, FAN_IN), rng), math.sqrt(2 / (FAN_IN + FAN_OUT)))


def test_kaiming_uniform_bound_and_std(rng):
    w = kaiming_uniform((FAN_OUT, FAN_IN), rng)  # default gain sqrt(2), for ReLU
    b = math.sqrt(2) * math.sqrt(3 / FAN_IN)  # variance gain² / fan_in = 2 / fan_in
    assert np.abs(w).max() <= b
    assert np.abs(w).max() > 0.999 * b
    _std_close(w, math.sqrt(2 / FAN_IN))


def test_kaiming_normal_std(rng):
    _std_close(kaiming_normal((FAN_OUT, FAN_IN), rng), math.sqrt(2 / FAN_IN))


def test_kaiming_uses_fan_in_not_fan_out(rng):
    # Swapping the fans changes the kaiming std, because only fan_in (the second axis) counts.
    _std_close(kaiming_normal((FAN_IN, FAN_OUT), rng), math.sqrt(2 / FAN_OUT))


@pytest.mark.parametrize(
    ("nonlinearity", "gain"),
    [
        ("relu", math.sqrt(2)),
        ("leaky_relu", math.sqrt(2 / (1 + 0.01**2))),
        ("tanh", 5 / 3),
        ("sigmoid", 1.0),
        ("identity", 1.0),
        ("gelu", 1.0),
    ],
)
def test_calculate_gain(nonlinearity, gain):
    assert calculate_gain(nonlinearity) == pytest.approx(gain, rel=1e-15)


def test_initialize_takes_the_gain_from_the_nonlinearity(rng):
    w = initialize("xavier_normal", (FAN_OUT, FAN_IN), rng, nonlinearity="tanh", dtype=np.float64)
    _std_close(w, 5 / 3 * math.sqrt(2 / (FAN_IN + FAN_OUT)))
    w = initialize("kaiming_normal", (FAN_OUT, FAN_IN), rng, nonlinearity="identity", dtype=np.float64)
    _std_close(w, math.sqrt(1 / FAN_IN))


@pytest.mark.parametrize("name", sorted(INITIALIZERS))
def test_same_seed_same_weights_and_another_seed_others(name):
    a = initialize(name, (5, 4), np.random.default_rng(42))
    b = initialize(name, (5, 4), np.random.default_rng(42))
    c = initialize(name, (5, 4), np.random.default_rng(43))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("name", sorted(INITIALIZERS))
def test_float32_and_float64_draws_from_one_seed_agree(name):
    w32 = initialize(name, (6, 5), np.random.default_rng(0), dtype=np.float32)
    w64 = initialize(name, (6, 5), np.random.default_rng(0), dtype=np.float64)
    assert w32.dtype == np.float32 and w64.dtype == np.float64
    np.testing.assert_array_equal(w32, w64.astype(np.float32))  # drawn in float64, then rounded


def test_float32_and_float64_networks_from_one_seed_agree():
    spec = MLPSpec(6, (8, 5), 3, activation=("tanh", "relu"), dropout=(0.2, 0.0), init="kaiming_uniform")
    net32 = build_mlp(spec, rng=np.random.default_rng(5), dtype=np.float32)
    net64 = build_mlp(spec, rng=np.random.default_rng(5), dtype=np.float64)
    p32, p64 = net32.named_parameters(), net64.named_parameters()
    assert list(p32) == list(p64)
    for name in p32:
        np.testing.assert_array_equal(p32[name].data, p64[name].data.astype(np.float32), err_msg=name)
    # Forward in training mode too: the dropout masks come from the same stream in both.
    x = np.random.default_rng(1).standard_normal((4, 6))
    np.testing.assert_allclose(net32.forward(x.astype(np.float32)), net64.forward(x), rtol=1e-5, atol=1e-6)


def test_build_mlp_biases_start_at_zero():
    net = build_mlp(MLPSpec(4, (3,), 2, init="xavier_uniform"), rng=np.random.default_rng(0))
    for name, p in net.named_parameters().items():
        if name.endswith(".bias"):
            assert not p.data.any(), name


def test_unknown_initializer_lists_the_valid_names(rng):
    msg = f"init must be one of {sorted(INITIALIZERS)}, got 'orthogonal'"
    with pytest.raises(ValueError, match=re.escape(msg)):
        initialize("orthogonal", (2, 2), rng)


def test_normal_std_must_be_positive(rng):
    with pytest.raises(ValueError, match="std must be a positive float, got 0"):
        normal((2, 2), rng, std=0)
