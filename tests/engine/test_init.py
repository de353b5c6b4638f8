"""Initializers: (fan_out, fan_in) shapes, empirical spread against the formulas, determinism, dtypes,
memory order and memory use."""

from __future__ import annotations

import math
import re
import tracemalloc

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
from mlpkit.engine.layers import Linear
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


# The laws by hand: (std, bound of a uniform law or None) for (fan_out, fan_in) = (400, 500) with
# the initializer's default gain (ReLU's sqrt(2) for Kaiming, 1 for Xavier) and std 0.01 for "normal".
LAWS = {
    "normal": (0.01, None),
    "xavier_uniform": (math.sqrt(2 / (FAN_IN + FAN_OUT)), math.sqrt(6 / (FAN_IN + FAN_OUT))),
    "xavier_normal": (math.sqrt(2 / (FAN_IN + FAN_OUT)), None),
    "kaiming_uniform": (math.sqrt(2 / FAN_IN), math.sqrt(2) * math.sqrt(3 / FAN_IN)),
    "kaiming_normal": (math.sqrt(2 / FAN_IN), None),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(INITIALIZERS))
def test_each_law_draws_in_the_requested_dtype_with_the_formulas_spread(name, dtype, rng):
    w = INITIALIZERS[name]((FAN_OUT, FAN_IN), rng, dtype=dtype)
    assert w.dtype == dtype and w.shape == (FAN_OUT, FAN_IN) and w.flags.c_contiguous
    std, bound = LAWS[name]
    _std_close(w, std)
    if bound is not None:
        assert np.abs(w).max() <= np.asarray(bound, dtype=dtype)   # the bound, rounded to the dtype
        assert np.abs(w).max() > 0.999 * bound


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_draws_are_numpys_samplers_in_that_dtype(dtype):
    # Reference: NumPy's own samplers in the dtype, scaled as the formulas say. float64 draws are
    # bit for bit those of rng.normal / rng.uniform; float32 ones come from NumPy's float32 samplers.
    a = math.sqrt(6 / (5 + 6))
    w = initialize("xavier_uniform", (5, 6), np.random.default_rng(0), nonlinearity="identity", dtype=dtype)
    u = np.random.default_rng(0).random((5, 6), dtype=dtype)
    np.testing.assert_array_equal(w, u * dtype(2 * a) - dtype(a))
    w = initialize("normal", (5, 6), np.random.default_rng(0), std=0.3, dtype=dtype)
    z = np.random.default_rng(0).standard_normal((5, 6), dtype=dtype)
    np.testing.assert_array_equal(w, z * dtype(0.3))
    if dtype == np.float64:
        np.testing.assert_array_equal(w, np.random.default_rng(0).normal(0.0, 0.3, size=(5, 6)))
        w = xavier_uniform((5, 6), np.random.default_rng(0))
        np.testing.assert_array_equal(w, np.random.default_rng(0).uniform(-a, a, size=(5, 6)))


@pytest.mark.parametrize("name", sorted(INITIALIZERS))
def test_column_major_draw_is_the_transposed_row_major_one(name):
    c = initialize(name, (5, 4), np.random.default_rng(0))
    f = initialize(name, (5, 4), np.random.default_rng(0), order="F")
    assert f.shape == (5, 4) and f.flags.f_contiguous and f.T.flags.c_contiguous
    # Values fill memory in order: the F draw of (H, D) holds the C draw's numbers laid out as (D, H).
    np.testing.assert_array_equal(f, c.reshape(4, 5).T)


def test_a_float32_draw_allocates_only_its_result():
    # float64 draws cast to float32 used to peak at three times the result (8 + 4 bytes a weight).
    shape = (1000, 1500)
    result_bytes = 4 * shape[0] * shape[1]
    tracemalloc.start()
    try:
        w = initialize("kaiming_normal", shape, np.random.default_rng(0), dtype=np.float32)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert w.dtype == np.float32
    assert peak < 1.05 * result_bytes, f"peak {peak} bytes for a {result_bytes}-byte result"


def test_build_mlp_draws_each_layer_column_major_in_its_dtype():
    spec = MLPSpec(6, (8, 5), 3, activation=("tanh", "relu"), dropout=(0.2, 0.0), init="kaiming_uniform")
    for dtype in (np.float32, np.float64):
        net = build_mlp(spec, rng=np.random.default_rng(5), dtype=dtype)
        rng = np.random.default_rng(5)
        linears = [layer for layer in net.layers if isinstance(layer, Linear)]
        for layer, act in zip(linears, ("tanh", "relu", "identity"), strict=True):
            expected = initialize(
                "kaiming_uniform", (layer.out_features, layer.in_features), rng, nonlinearity=act,
                dtype=dtype, order="F",
            )
            w = layer.weight.data                                    # (D, H), the engine's layout
            assert w.dtype == dtype and w.flags.c_contiguous
            np.testing.assert_array_equal(w, expected.T)


def test_a_wide_float32_network_holds_no_float64_copy():
    # 784-20000-10 in float32: 63.5 MB of weights, and as much again for their gradient buffers
    # (Parameter.grad). The peak is those two plus small change: no float64 draw (twice the
    # weights), no cast, no transposed copy.
    spec = MLPSpec(784, (20_000,), 10)
    weight_bytes = 4 * (784 * 20_000 + 20_000 * 10)
    tracemalloc.start()
    try:
        net = build_mlp(spec, rng=np.random.default_rng(0))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert net.dtype == np.float32
    assert peak < 2.02 * weight_bytes, f"peak {peak} bytes for {weight_bytes} bytes of weights"


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
