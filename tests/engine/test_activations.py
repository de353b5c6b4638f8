"""Activations: gradient checks, hand-derived values, stability at extreme inputs, shapes and errors."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from mlpkit.engine.activations import (
    ACTIVATIONS,
    GELU,
    Identity,
    LeakyReLU,
    ReLU,
    Sigmoid,
    SiLU,
    Softmax,
    Tanh,
    get_activation,
    stable_sigmoid,
)
from mlpkit.engine.gradcheck import check_layer_grad

# Every registered activation with its defaults, plus the non-default variants the spec can reach.
ACTIVATION_FACTORIES = [pytest.param(cls, id=name) for name, cls in ACTIVATIONS.items()] + [
    pytest.param(lambda: GELU(approximate="tanh"), id="gelu_tanh"),
    pytest.param(lambda: LeakyReLU(negative_slope=0.2), id="leaky_relu_0.2"),
]


@pytest.mark.parametrize("batch_size", [1, 5])
@pytest.mark.parametrize("make_act", ACTIVATION_FACTORIES)
def test_backward_matches_central_differences(make_act, batch_size, rng, away_from_zero):
    x = away_from_zero(rng, (batch_size, 4))  # |x| >= 0.1: no ReLU kink within eps
    check_layer_grad(make_act(), x, rng, rtol=1e-5, atol=1e-7)


def test_every_registered_activation_is_gradient_checked():
    # The parametrization above is built from ACTIVATIONS, so a new entry is checked automatically.
    assert set(ACTIVATIONS) == {
        "relu",
        "leaky_relu",
        "sigmoid",
        "tanh",
        "gelu",
        "silu",
        "identity",
        "softmax",
    }


@pytest.mark.parametrize("make_act", ACTIVATION_FACTORIES)
def test_batch_of_one_keeps_its_shape(make_act, rng):
    act = make_act()
    x = rng.standard_normal((1, 3))
    assert act.forward(x).shape == (1, 3)
    assert act.backward(np.ones((1, 3))).shape == (1, 3)


@pytest.mark.parametrize("make_act", ACTIVATION_FACTORIES)
def test_float32_in_float32_out(make_act, rng):
    # The training engine runs in float32; an activation that silently promotes doubles the cost.
    act = make_act()
    x = rng.standard_normal((2, 3)).astype(np.float32)
    assert act.forward(x).dtype == np.float32
    assert act.backward(np.ones((2, 3), dtype=np.float32)).dtype == np.float32


def test_relu_values_and_zero_derivative_at_zero():
    relu = ReLU()
    x = np.array([[-2.0, -0.5, 0.0, 0.5, 3.0]])
    np.testing.assert_array_equal(relu.forward(x), [[0.0, 0.0, 0.0, 0.5, 3.0]])
    # d max(x, 0)/dx = 1 for x > 0, else 0 (0 at x = 0, as torch).
    np.testing.assert_array_equal(relu.backward(np.full((1, 5), 7.0)), [[0.0, 0.0, 0.0, 7.0, 7.0]])


def test_relu_inplace_overwrites_input_and_gradient_with_the_same_values():
    x = np.array([[-1.0, 2.0]])
    grad = np.array([[5.0, 6.0]])
    relu = ReLU(inplace=True)
    out = relu.forward(x)
    assert out is x
    np.testing.assert_array_equal(x, [[0.0, 2.0]])
    back = relu.backward(grad)
    assert back is grad
    np.testing.assert_array_equal(grad, [[0.0, 6.0]])


def test_leaky_relu_uses_its_slope():
    act = LeakyReLU(negative_slope=0.2)
    np.testing.assert_allclose(act.forward(np.array([[-2.0, 3.0]])), [[-0.4, 3.0]], rtol=1e-15)
    np.testing.assert_allclose(act.backward(np.array([[1.0, 1.0]])), [[0.2, 1.0]], rtol=1e-15)


def test_leaky_relu_default_slope_is_torchs():
    assert LeakyReLU().negative_slope == 0.01
    assert get_activation("leaky_relu").negative_slope == 0.01


def test_sigmoid_and_tanh_at_hand_values():
    # σ(ln 3) = 1 / (1 + 1/3) = 3/4; tanh(ln 2) = (2 − 1/2) / (2 + 1/2) = 3/5.
    sig = Sigmoid()
    np.testing.assert_allclose(sig.forward(np.array([[0.0, math.log(3.0)]])), [[0.5, 0.75]], rtol=1e-15)
    # dσ/dx = σ(1 − σ): 1/4 at 0, 3/16 at ln 3.
    np.testing.assert_allclose(sig.backward(np.ones((1, 2))), [[0.25, 0.1875]], rtol=1e-15)
    tanh = Tanh()
    np.testing.assert_allclose(tanh.forward(np.array([[math.log(2.0)]])), [[0.6]], rtol=1e-15)
    # 1 − tanh² = 1 − 0.36 = 0.64.
    np.testing.assert_allclose(tanh.backward(np.ones((1, 1))), [[0.64]], rtol=1e-14)


def test_silu_at_hand_value():
    # x σ(x) at x = ln 3 is (3/4) ln 3; derivative σ + x σ (1 − σ) = 3/4 + ln 3 · 3/16.
    silu = SiLU()
    x = math.log(3.0)
    np.testing.assert_allclose(silu.forward(np.array([[x]])), [[0.75 * x]], rtol=1e-15)
    np.testing.assert_allclose(silu.backward(np.ones((1, 1))), [[0.75 + x * 3 / 16]], rtol=1e-14)


def test_gelu_exact_matches_x_times_normal_cdf():
    xs = [-3.0, -1.0, 0.0, 0.5, 2.0]
    expected = [[x * 0.5 * (1 + math.erf(x / math.sqrt(2))) for x in xs]]  # x Φ(x), Φ via math.erf
    np.testing.assert_allclose(GELU().forward(np.array([xs])), expected, rtol=1e-14, atol=1e-300)


def test_gelu_tanh_matches_the_papers_formula():
    xs = [-3.0, -1.0, 0.0, 0.5, 2.0]
    c = math.sqrt(2 / math.pi)
    expected = [[0.5 * x * (1 + math.tanh(c * (x + 0.044715 * x**3))) for x in xs]]
    np.testing.assert_allclose(GELU(approximate="tanh").forward(np.array([xs])), expected, rtol=1e-14)


def test_gelu_tanh_is_close_to_but_not_the_exact_gelu():
    x = np.linspace(-4, 4, 81)[None, :]
    exact, approx = GELU().forward(x), GELU(approximate="tanh").forward(x)
    assert np.max(np.abs(exact - approx)) < 1e-3  # the approximation error is ~3e-4
    assert np.max(np.abs(exact - approx)) > 1e-6  # but they are different functions


def test_identity_passes_through():
    x = np.array([[1.0, -2.0]])
    act = Identity()
    assert act.forward(x) is x
    np.testing.assert_array_equal(act.backward(x), x)


def test_softmax_at_hand_values():
    # softmax([0, ln 2, ln 3]) = [1, 2, 3] / 6.
    out = Softmax().forward(np.array([[0.0, math.log(2.0), math.log(3.0)]]))
    np.testing.assert_allclose(out, [[1 / 6, 2 / 6, 3 / 6]], rtol=1e-15)


def test_softmax_of_huge_logits_is_finite():
    out = Softmax().forward(np.array([[1e4, 0.0, -1e4], [1e4, 1e4, 1e4]]))
    np.testing.assert_allclose(out, [[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]], rtol=1e-15, atol=0)


def test_softmax_backward_is_orthogonal_to_constant_shifts(rng):
    # softmax is invariant to adding a constant to a row, so its input gradient sums to 0 per row.
    act = Softmax()
    act.forward(rng.standard_normal((4, 5)))
    grad = act.backward(rng.standard_normal((4, 5)))
    np.testing.assert_allclose(grad.sum(axis=-1), np.zeros(4), atol=1e-15)


def test_stable_sigmoid_of_huge_inputs_saturates_without_warnings():
    # filterwarnings=error: an overflow in exp would fail this test.
    out = stable_sigmoid(np.array([1000.0, -1000.0, 0.0]))
    np.testing.assert_array_equal(out, [1.0, 0.0, 0.5])
    out32 = stable_sigmoid(np.array([1000.0, -1000.0], dtype=np.float32))
    assert out32.dtype == np.float32
    np.testing.assert_array_equal(out32, [1.0, 0.0])


def test_sigmoid_layer_of_huge_inputs_has_finite_zero_gradient():
    sig = Sigmoid()
    np.testing.assert_array_equal(sig.forward(np.array([[1000.0, -1000.0]])), [[1.0, 0.0]])
    np.testing.assert_array_equal(sig.backward(np.ones((1, 2))), [[0.0, 0.0]])


def test_silu_and_gelu_of_huge_inputs_are_finite():
    x = np.array([[1000.0, -1000.0]])
    np.testing.assert_array_equal(SiLU().forward(x), [[1000.0, -0.0]])
    np.testing.assert_array_equal(GELU().forward(x), [[1000.0, -0.0]])


def test_get_activation_returns_a_fresh_layer_of_the_named_type():
    for name, cls in ACTIVATIONS.items():
        first, second = get_activation(name), get_activation(name)
        assert type(first) is cls and first is not second


def test_get_activation_unknown_name_lists_the_valid_names():
    valid = sorted(ACTIVATIONS)
    with pytest.raises(ValueError, match=re.escape(f"activation must be one of {valid}, got 'swish'")):
        get_activation("swish")


def test_gelu_unknown_approximation_is_rejected():
    with pytest.raises(
        ValueError, match=re.escape("approximate must be one of ['none', 'tanh'], got 'fast'")
    ):
        GELU(approximate="fast")


def test_leaky_relu_negative_slope_is_rejected():
    with pytest.raises(ValueError, match=re.escape("negative_slope must be a non-negative float, got -0.1")):
        LeakyReLU(negative_slope=-0.1)
