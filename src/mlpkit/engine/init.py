"""Weight initializers. Shapes are ``(fan_out, fan_in)``, the Linear layer's ``(H, D)``.

Conventions and gains follow ``torch.nn.init`` so the two engines start from the same
distributions.
"""

from __future__ import annotations

import math

import numpy as np

from mlpkit._checks import check_choice, check_positive_float


def calculate_gain(nonlinearity: str, negative_slope: float = 0.01) -> float:
    """The gain that keeps activation variance steady through ``nonlinearity``.

    ReLU: sqrt(2) (He et al., 2015, eq. 10); leaky ReLU: sqrt(2 / (1 + a²)); tanh: 5/3;
    sigmoid, linear and the rest: 1 (the values of ``torch.nn.init.calculate_gain``).
    """
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        return math.sqrt(2.0 / (1 + negative_slope**2))
    if nonlinearity == "tanh":
        return 5.0 / 3.0
    return 1.0


def normal(shape: tuple[int, int], rng: np.random.Generator, *, std: float = 0.01) -> np.ndarray:
    """N(0, std²), the classic recipe's small-weight start."""
    return rng.normal(0.0, check_positive_float("std", std), size=shape)


def xavier_uniform(shape: tuple[int, int], rng: np.random.Generator, *, gain: float = 1.0) -> np.ndarray:
    """U(−a, a), a = gain · sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio, AISTATS 2010, eq. 16)."""
    fan_out, fan_in = shape
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, size=shape)


def xavier_normal(shape: tuple[int, int], rng: np.random.Generator, *, gain: float = 1.0) -> np.ndarray:
    """N(0, σ²), σ = gain · sqrt(2 / (fan_in + fan_out)): Glorot's variance with a normal law."""
    fan_out, fan_in = shape
    return rng.normal(0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), size=shape)


def kaiming_uniform(
    shape: tuple[int, int], rng: np.random.Generator, *, gain: float = math.sqrt(2)
) -> np.ndarray:
    """U(−b, b), b = gain · sqrt(3 / fan_in): variance gain² / fan_in (He et al., ICCV 2015)."""
    _, fan_in = shape
    bound = gain * math.sqrt(3.0 / fan_in)
    return rng.uniform(-bound, bound, size=shape)


def kaiming_normal(
    shape: tuple[int, int], rng: np.random.Generator, *, gain: float = math.sqrt(2)
) -> np.ndarray:
    """N(0, gain² / fan_in) (He et al., ICCV 2015, eq. 10 with fan_in mode)."""
    _, fan_in = shape
    return rng.normal(0.0, gain / math.sqrt(fan_in), size=shape)


INITIALIZERS = {
    "normal": normal,
    "xavier_uniform": xavier_uniform,
    "xavier_normal": xavier_normal,
    "kaiming_uniform": kaiming_uniform,
    "kaiming_normal": kaiming_normal,
}


def initialize(
    name: str,
    shape: tuple[int, int],
    rng: np.random.Generator,
    *,
    std: float = 0.01,
    nonlinearity: str = "relu",
    dtype: np.dtype | type = np.float32,
) -> np.ndarray:
    """Draw a ``(fan_out, fan_in)`` weight matrix with the named initializer.

    ``std`` is used by ``"normal"``; the Xavier and Kaiming variants take their gain from the
    activation that follows the layer (``nonlinearity``), as ``torch.nn.init`` does.
    Draws in float64 and casts, so a float32 and a float64 network from one seed agree.
    """
    check_choice("init", name, INITIALIZERS)
    if name == "normal":
        weight = normal(shape, rng, std=std)
    else:
        weight = INITIALIZERS[name](shape, rng, gain=calculate_gain(nonlinearity))
    return weight.astype(dtype)
