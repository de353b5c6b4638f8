"""Central-difference gradient checks for layers and losses (run in float64)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mlpkit.engine.layers import Layer
from mlpkit.engine.losses import Loss


def numerical_grad(f: Callable[[], float], x: np.ndarray, *, eps: float = 1e-6) -> np.ndarray:
    """df/dx by central differences ``(f(x + ε) − f(x − ε)) / 2ε``, perturbing ``x`` in place.

    The truncation error is O(ε²) (against O(ε) for a one-sided difference), so in float64
    ε = 1e-6 leaves an error far below the 1e-5 relative tolerance the tests use.
    """
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        orig = flat[i]
        flat[i] = orig + eps
        f_plus = f()
        flat[i] = orig - eps
        f_minus = f()
        flat[i] = orig
        gflat[i] = (f_plus - f_minus) / (2 * eps)
    return grad


def check_layer_grad(
    layer: Layer, x: np.ndarray, rng: np.random.Generator, *, rtol: float = 1e-5, atol: float = 1e-7
) -> None:
    """Compare a layer's backward (input and parameter grads) with central differences.

    Uses the scalar ``f = sum(forward(x) * r)`` for a fixed random ``r``, whose gradient with
    respect to the output is exactly ``r``. Raises ``AssertionError`` naming the tensor that differs.
    """
    if x.dtype != np.float64:
        raise ValueError(f"gradient checks need float64 inputs, got {x.dtype}")
    r = rng.standard_normal(layer.forward(x.copy()).shape)
    x = x.copy()

    def f() -> float:
        return float(np.sum(layer.forward(x) * r))

    layer.forward(x)
    analytic_x = layer.backward(r.copy())
    analytic_params = {name: p.grad.copy() for name, p in layer.parameters().items()}
    np.testing.assert_allclose(analytic_x, numerical_grad(f, x), rtol=rtol, atol=atol, err_msg="dL/dx")
    for name, p in layer.parameters().items():
        np.testing.assert_allclose(
            analytic_params[name], numerical_grad(f, p.data), rtol=rtol, atol=atol, err_msg=f"dL/d{name}"
        )


def check_loss_grad(
    loss: Loss, logits: np.ndarray, target: np.ndarray, *, rtol: float = 1e-5, atol: float = 1e-7
) -> None:
    """Compare a loss's backward with central differences of its forward."""
    logits = logits.copy()
    loss.forward(logits, target)
    analytic = loss.backward()
    numeric = numerical_grad(lambda: loss.forward(logits, target), logits)
    np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=atol, err_msg="dL/dlogits")
