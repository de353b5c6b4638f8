"""Activations: the plotted derivative is the derivative of the plotted function."""

from __future__ import annotations

import numpy as np
import pytest

from mlpkit.experiments.activations import ACTIVATION_NAMES, activation_curves

KINKED = {"relu", "leaky_relu"}                                        # not differentiable at 0


@pytest.fixture(scope="module")
def result():
    return activation_curves()


def test_every_hidden_activation_of_the_engine_is_drawn(result):
    assert [c.name for c in result.curves] == list(ACTIVATION_NAMES)
    assert set(ACTIVATION_NAMES) == {"relu", "leaky_relu", "sigmoid", "tanh", "gelu", "silu"}


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_plotted_derivative_equals_central_difference_of_plotted_function(result, name):
    x = np.asarray(result.x)
    curve = result.curve(name)
    y, dy = np.asarray(curve.y), np.asarray(curve.dy)
    h = x[1] - x[0]
    central = (y[2:] - y[:-2]) / (2 * h)                               # at x[1:-1], error O(h²) = O(1e-4)
    inner = x[1:-1]
    keep = np.abs(inner) > 1.5 * h if name in KINKED else np.ones_like(inner, dtype=bool)
    np.testing.assert_allclose(dy[1:-1][keep], central[keep], atol=5e-5)


@pytest.mark.parametrize(
    ("name", "slope_at_zero"),
    [("relu", 0.0), ("sigmoid", 0.25), ("tanh", 1.0), ("gelu", 0.5), ("silu", 0.5)],
)
def test_slopes_at_zero(result, name, slope_at_zero):
    zero = int(np.argmin(np.abs(np.asarray(result.x))))
    assert result.x[zero] == 0.0
    assert result.curve(name).dy[zero] == pytest.approx(slope_at_zero, abs=1e-12)


def test_sigmoid_slope_never_exceeds_a_quarter(result):
    assert max(result.curve("sigmoid").dy) == pytest.approx(0.25, abs=1e-12)


def test_leaky_relu_uses_the_requested_slope():
    curve = activation_curves(names=("leaky_relu",), negative_slope=0.2, num_points=5).curve("leaky_relu")
    assert curve.dy[:2] == [0.2, 0.2] and curve.dy[-1] == 1.0


def test_rejects_unknown_names():
    with pytest.raises(ValueError, match=r"names must be among \[.*\], got \['swish'\]"):
        activation_curves(names=("swish",))
