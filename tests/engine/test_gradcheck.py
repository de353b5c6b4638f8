"""The gradient checker itself: it must agree with a known derivative and catch a wrong backward."""

from __future__ import annotations

import numpy as np
import pytest

from mlpkit.engine.activations import Tanh
from mlpkit.engine.gradcheck import check_layer_grad, check_loss_grad, numerical_grad
from mlpkit.engine.layers import Linear
from mlpkit.engine.losses import MSELoss


def test_numerical_grad_of_a_cubic_is_three_x_squared(rng):
    x = rng.standard_normal((2, 3))
    grad = numerical_grad(lambda: float(np.sum(x**3)), x)
    np.testing.assert_allclose(grad, 3 * x**2, rtol=1e-8, atol=1e-10)


def test_numerical_grad_restores_the_input(rng):
    x = rng.standard_normal(5)
    before = x.copy()
    numerical_grad(lambda: float(np.sum(np.sin(x))), x)
    np.testing.assert_array_equal(x, before)


class _WrongTanh(Tanh):
    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return 1.01 * super().backward(grad_out)  # off by 1 %


class _WrongWeightGradLinear(Linear):
    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        grad_x = super().backward(grad_out)
        self.weight.grad *= 2  # input grad right, weight grad wrong
        return grad_x


class _WrongMSE(MSELoss):
    def backward(self) -> np.ndarray:
        return self._diff / self._diff.size  # forgot the factor 2


def test_check_layer_grad_catches_a_wrong_input_gradient(rng):
    with pytest.raises(AssertionError, match="dL/dx"):
        check_layer_grad(_WrongTanh(), rng.standard_normal((3, 4)), rng)


def test_check_layer_grad_catches_a_wrong_parameter_gradient(rng):
    layer = _WrongWeightGradLinear(4, 2, weight=rng.standard_normal((4, 2)))
    with pytest.raises(AssertionError, match="dL/dweight"):
        check_layer_grad(layer, rng.standard_normal((3, 4)), rng)


def test_check_loss_grad_catches_a_wrong_loss_gradient(rng):
    with pytest.raises(AssertionError, match="dL/dlogits"):
        check_loss_grad(_WrongMSE(), rng.standard_normal((3, 2)), rng.standard_normal((3, 2)))


def test_check_layer_grad_refuses_float32(rng):
    with pytest.raises(ValueError, match="gradient checks need float64 inputs, got float32"):
        check_layer_grad(Tanh(), np.ones((2, 2), dtype=np.float32), rng)
