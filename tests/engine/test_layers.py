"""Linear and Dropout: gradient checks, the affine map by hand, inverted-dropout statistics, errors."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from mlpkit.engine.gradcheck import check_layer_grad
from mlpkit.engine.layers import Dropout, Layer, Linear, Parameter


def _linear(rng: np.random.Generator, d: int, h: int, *, bias: bool = True) -> Linear:
    layer = Linear(d, h, weight=rng.standard_normal((d, h)), bias=bias)
    if bias:
        layer.bias.data[...] = rng.standard_normal(h)  # a non-zero bias, so its grad matters
    return layer


# --- Linear -------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1, 5])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
def test_linear_backward_matches_central_differences(bias, batch_size, rng):
    layer = _linear(rng, 4, 3, bias=bias)
    check_layer_grad(layer, rng.standard_normal((batch_size, 4)), rng, rtol=1e-5, atol=1e-7)


def test_linear_forward_is_x_times_w_plus_b_by_hand():
    weight = np.array([[1.0, 0.0, -1.0], [2.0, 1.0, 0.0]])  # (D, H) = (2, 3)
    layer = Linear(2, 3, weight=weight)
    layer.bias.data[...] = [0.5, -1.0, 2.0]
    x = np.array([[1.0, 2.0], [0.0, -1.0]])
    # Row 1: [1·1 + 2·2, 1·0 + 2·1, 1·(−1) + 2·0] + b = [5, 2, −1] + b = [5.5, 1, 1].
    # Row 2: [0·1 − 1·2, 0·0 − 1·1, 0·(−1) − 1·0] + b = [−2, −1, 0] + b = [−1.5, −2, 2].
    np.testing.assert_array_equal(layer.forward(x), [[5.5, 1.0, 1.0], [-1.5, -2.0, 2.0]])


def test_linear_backward_by_hand():
    weight = np.array([[1.0, 0.0, -1.0], [2.0, 1.0, 0.0]])
    layer = Linear(2, 3, weight=weight)
    x = np.array([[1.0, 2.0]])
    layer.forward(x)
    grad_x = layer.backward(np.array([[1.0, 0.0, 2.0]]))
    # dL/dx = g Wᵀ = [1·1 + 0·0 + 2·(−1), 1·2 + 0·1 + 2·0] = [−1, 2]
    np.testing.assert_array_equal(grad_x, [[-1.0, 2.0]])
    # dL/dW = xᵀ g, the outer product [1, 2]ᵀ [1, 0, 2]; dL/db = g summed over the batch.
    np.testing.assert_array_equal(layer.weight.grad, [[1.0, 0.0, 2.0], [2.0, 0.0, 4.0]])
    np.testing.assert_array_equal(layer.bias.grad, [1.0, 0.0, 2.0])


def test_linear_backward_overwrites_grads_instead_of_accumulating(rng):
    layer = _linear(rng, 3, 2)
    x, g = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    layer.forward(x)
    layer.backward(g)
    once_w, once_b = layer.weight.grad.copy(), layer.bias.grad.copy()
    layer.backward(g)
    np.testing.assert_array_equal(layer.weight.grad, once_w)
    np.testing.assert_array_equal(layer.bias.grad, once_b)


def test_linear_backward_params_fills_the_same_grads_as_backward(rng):
    a = _linear(rng, 3, 2)
    b = Linear(3, 2, weight=a.weight.data.copy())
    b.bias.data[...] = a.bias.data
    x, g = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    a.forward(x)
    a.backward(g)
    b.forward(x)
    assert b.backward_params(g) is None
    np.testing.assert_array_equal(b.weight.grad, a.weight.grad)
    np.testing.assert_array_equal(b.bias.grad, a.bias.grad)


def test_linear_batch_of_one_keeps_the_batch_axis(rng):
    layer = _linear(rng, 4, 3)
    out = layer.forward(rng.standard_normal((1, 4)))
    assert out.shape == (1, 3)
    assert layer.backward(np.ones((1, 3))).shape == (1, 4)
    assert layer.weight.grad.shape == (4, 3)
    assert layer.bias.grad.shape == (3,)


def test_linear_parameters_weights_decay_and_biases_do_not(rng):
    layer = _linear(rng, 4, 3)
    params = layer.parameters()
    assert list(params) == ["weight", "bias"]
    assert params["weight"].decay is True
    assert params["bias"].decay is False
    assert list(_linear(rng, 4, 3, bias=False).parameters()) == ["weight"]


def test_linear_bias_starts_at_zero_in_the_weights_dtype():
    layer = Linear(2, 3, weight=np.ones((2, 3), dtype=np.float32))
    assert layer.bias.data.dtype == np.float32
    np.testing.assert_array_equal(layer.bias.data, np.zeros(3))


def test_linear_float32_forward_stays_float32(rng):
    layer = Linear(2, 3, weight=rng.standard_normal((2, 3)).astype(np.float32))
    assert layer.forward(rng.standard_normal((4, 2)).astype(np.float32)).dtype == np.float32


def test_linear_wrong_weight_shape_is_rejected():
    msg = "weight must have shape (in_features, out_features) = (2, 3), got (3, 2)"
    with pytest.raises(ValueError, match=re.escape(msg)):
        Linear(2, 3, weight=np.zeros((3, 2)))


def test_linear_zero_width_is_rejected():
    with pytest.raises(ValueError, match="in_features must be a positive int, got 0"):
        Linear(0, 3, weight=np.zeros((0, 3)))
    with pytest.raises(ValueError, match="out_features must be a positive int, got 0"):
        Linear(3, 0, weight=np.zeros((3, 0)))


def test_linear_backward_before_forward_is_an_error(rng):
    with pytest.raises(RuntimeError, match=re.escape("Linear.backward called before forward")):
        _linear(rng, 2, 2).backward(np.ones((1, 2)))


def test_parameter_starts_with_a_zero_grad_of_its_shape():
    p = Parameter(np.ones((2, 3), dtype=np.float32), decay=False)
    assert p.grad.shape == (2, 3) and p.grad.dtype == np.float32
    assert not p.grad.any()
    assert repr(p) == "Parameter(shape=(2, 3), dtype=float32, decay=False)"


def test_base_layer_is_the_identity_with_no_parameters():
    layer = Layer()
    x = np.ones((1, 2))
    assert layer.forward(x) is x and layer.backward(x) is x
    assert layer.parameters() == {}


# --- Dropout ------------------------------------------------------------------------------------


class _FixedMaskDropout(Dropout):
    """Dropout whose generator is reseeded before every forward, so every call draws the same mask.

    The gradient check calls forward many times; with a fixed mask the layer is a fixed linear map
    and central differences are exact, so this checks that backward applies the forward's mask.
    """

    def __init__(self, p: float, seed: int) -> None:
        super().__init__(p, rng=np.random.default_rng(seed))
        self.seed = seed

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.rng = np.random.default_rng(self.seed)
        return super().forward(x)


@pytest.mark.parametrize("batch_size", [1, 5])
def test_dropout_training_backward_matches_central_differences(batch_size, rng):
    check_layer_grad(_FixedMaskDropout(0.4, seed=3), rng.standard_normal((batch_size, 6)), rng)


def test_dropout_backward_uses_the_forward_mask(rng):
    drop = Dropout(0.5, rng=np.random.default_rng(1))
    x = rng.uniform(1.0, 2.0, size=(4, 50))  # never 0, so out / x recovers the mask
    out = drop.forward(x)
    mask = out / x
    assert set(np.unique(mask)) == {0.0, 2.0}
    g = rng.standard_normal((4, 50))
    # A second forward would draw a new mask; backward must use the one of the last forward.
    np.testing.assert_array_equal(drop.backward(g), g * mask)


def test_dropout_eval_mode_is_the_identity(rng):
    drop = Dropout(0.5, rng=rng)
    drop.train(False)
    x = rng.standard_normal((3, 4))
    assert drop.forward(x) is x
    g = rng.standard_normal((3, 4))
    assert drop.backward(g) is g


def test_dropout_zero_probability_is_the_identity_in_training(rng):
    drop = Dropout(0.0, rng=rng)
    assert drop.training
    x = rng.standard_normal((3, 4))
    assert drop.forward(x) is x
    g = rng.standard_normal((3, 4))
    assert drop.backward(g) is g


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_drops_about_p_and_scales_survivors_by_inverse_keep(p):
    n = 200_000
    drop = Dropout(p, rng=np.random.default_rng(0))
    out = drop.forward(np.ones((n // 100, 100)))
    dropped = np.count_nonzero(out == 0)
    # The number dropped is Binomial(n, p): allow 5 standard deviations.
    assert abs(dropped - n * p) < 5 * math.sqrt(n * p * (1 - p))
    # Every survivor is scaled by exactly 1 / (1 − p).
    np.testing.assert_allclose(out[out != 0], 1.0 / (1.0 - p), rtol=1e-15)
    # So the mean is preserved: mean = (kept / n) / (1 − p), with sd sqrt(p (1 − p) / n) / (1 − p).
    sd_mean = math.sqrt(p * (1 - p) / n) / (1 - p)
    assert abs(out.mean() - 1.0) < 5 * sd_mean


def test_dropout_same_seed_same_mask():
    x = np.ones((4, 8))
    a = Dropout(0.5, rng=np.random.default_rng(7)).forward(x)
    b = Dropout(0.5, rng=np.random.default_rng(7)).forward(x)
    np.testing.assert_array_equal(a, b)


def test_dropout_keeps_dtype_and_a_batch_of_one(rng):
    drop = Dropout(0.3, rng=rng)
    out = drop.forward(np.ones((1, 5), dtype=np.float32))
    assert out.shape == (1, 5) and out.dtype == np.float32
    assert drop.backward(np.ones((1, 5), dtype=np.float32)).dtype == np.float32


@pytest.mark.parametrize("p", [1.0, -0.1, 1.5])
def test_dropout_probability_outside_zero_one_is_rejected(p, rng):
    with pytest.raises(ValueError, match=re.escape(f"dropout must be a float in [0, 1), got {p!r}")):
        Dropout(p, rng=rng)
