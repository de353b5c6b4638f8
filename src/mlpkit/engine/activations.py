"""Activations: each forward beside its backward.

Where the derivative is a function of the forward output (sigmoid, tanh, softmax) the backward
reuses the stored output instead of recomputing it.
"""

from __future__ import annotations

import math

import numpy as np

from mlpkit._checks import check_choice, check_nonnegative_float
from mlpkit.engine.layers import Layer


def stable_sigmoid(x: np.ndarray) -> np.ndarray:
    """σ(x) = 1 / (1 + e^{-x}) without overflow: exp is only taken of -|x| <= 0."""
    e = np.exp(-np.abs(x))                                   # in (0, 1]
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)


class ReLU(Layer):
    """max(x, 0); the derivative is 1 where x > 0 and 0 elsewhere (0 at x = 0, as torch).

    Parameters
    ----------
    inplace : bool
        Overwrite the input with the output and the incoming gradient with the outgoing one.
        :func:`~mlpkit.engine.build_mlp` sets it, because there the input is a fresh Linear
        output and the gradient a fresh product that nobody else holds; it saves two
        allocations and passes over (B, H) per step.
    """

    def __init__(self, inplace: bool = False) -> None:
        self.inplace = inplace

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._mask = x > 0                                   # (B, H) bool
        return np.maximum(x, 0, out=x if self.inplace else None)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return np.multiply(grad_out, self._mask, out=grad_out if self.inplace else None)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class LeakyReLU(Layer):
    """x for x > 0, ``negative_slope * x`` otherwise (Maas et al., 2013)."""

    def __init__(self, negative_slope: float = 0.01) -> None:
        self.negative_slope = check_nonnegative_float("negative_slope", negative_slope)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._slope = np.where(x > 0, 1.0, self.negative_slope).astype(x.dtype)   # (B, H) = dy/dx
        return x * self._slope

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out * self._slope

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class Sigmoid(Layer):
    """σ(x), computed without overflow."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._y = stable_sigmoid(x)
        return self._y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        y = self._y
        return grad_out * y * (1 - y)                        # dσ/dx = σ(1 − σ): reuse the forward output


class Tanh(Layer):
    """tanh(x)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._y = np.tanh(x)
        return self._y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out * (1 - self._y * self._y)            # d tanh/dx = 1 − tanh²: reuse the output


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


class GELU(Layer):
    """Gaussian error linear unit ``x Φ(x)`` (Hendrycks & Gimpel, 2016, arXiv:1606.08415).

    Parameters
    ----------
    approximate : {"none", "tanh"}
        ``"none"`` is exact, via erf; ``"tanh"`` is the paper's
        ``0.5 x (1 + tanh(sqrt(2/π) (x + 0.044715 x³)))``. Same names as ``torch.nn.GELU``.
    """

    def __init__(self, approximate: str = "none") -> None:
        self.approximate = check_choice("approximate", approximate, ("none", "tanh"))

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._x = x
        if self.approximate == "tanh":
            self._t = np.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x**3))
            return 0.5 * x * (1 + self._t)
        # Imported here: scipy.special takes a tenth of a second to import, which every command
        # would pay whether or not its network has a GELU.
        from scipy.special import erf

        self._cdf = (0.5 * (1 + erf(x * _INV_SQRT_2))).astype(x.dtype, copy=False)  # Φ(x)
        return x * self._cdf

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        x = self._x
        if self.approximate == "tanh":
            t = self._t
            inner = _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x)
            return grad_out * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * inner)
        pdf = _INV_SQRT_2PI * np.exp(-0.5 * x * x)           # φ(x)
        return grad_out * (self._cdf + x * pdf)              # d(xΦ)/dx = Φ + x φ

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class SiLU(Layer):
    """x σ(x), a.k.a. swish (Elfwing et al., 2018; Ramachandran et al., 2017)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._x = x
        self._s = stable_sigmoid(x)
        return x * self._s

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        s = self._s
        return grad_out * (s * (1 + self._x * (1 - s)))      # d(xσ)/dx = σ + xσ(1 − σ)


class Identity(Layer):
    """y = x; lets a spec name "no activation" explicitly."""


class Softmax(Layer):
    """Softmax over the last axis, shifted by the row max so exp never overflows.

    For classification, prefer :class:`~mlpkit.engine.losses.SoftmaxCrossEntropyLoss` on logits:
    it fuses this layer with the log and its gradient is simply ``p - onehot``.
    """

    def forward(self, x: np.ndarray) -> np.ndarray:
        z = np.exp(x - x.max(axis=-1, keepdims=True))        # (B, C), max entry is exp(0) = 1
        self._y = z / z.sum(axis=-1, keepdims=True)
        return self._y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        y = self._y                                          # Jacobian diag(y) − y yᵀ, applied row-wise
        return y * (grad_out - (grad_out * y).sum(axis=-1, keepdims=True))


ACTIVATIONS: dict[str, type[Layer]] = {
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "gelu": GELU,
    "silu": SiLU,
    "identity": Identity,
    "softmax": Softmax,
}


def get_activation(name: str) -> Layer:
    """A new activation layer by name; the error lists the valid names."""
    return ACTIVATIONS[check_choice("activation", name, ACTIVATIONS)]()
