"""Weight initializers. Shapes are ``(fan_out, fan_in)``, the Linear layer's ``(H, D)``.

Conventions and gains follow ``torch.nn.init`` so the two engines start from the same
distributions. Every initializer draws directly in the requested dtype (default float64 for the
single laws, float32 for :func:`initialize`) and scales in place: no temporary of another dtype
or shape is ever made, which matters for a wide first layer.
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


def _standard_normal(
    shape: tuple[int, int], rng: np.random.Generator, dtype: np.dtype | type, order: str
) -> np.ndarray:
    """N(0, 1) draws of ``shape`` in ``dtype``, filled in memory ``order``; no other array is made."""
    out = np.empty(shape, dtype=_check_dtype(dtype), order=_check_order(order))
    rng.standard_normal(dtype=out.dtype, out=out)
    return out


def _uniform(
    shape: tuple[int, int], rng: np.random.Generator, bound: float, dtype: np.dtype | type, order: str
) -> np.ndarray:
    """U(−bound, bound) draws of ``shape`` in ``dtype`` as ``2 bound u − bound``, u ~ U[0, 1), in place."""
    out = np.empty(shape, dtype=_check_dtype(dtype), order=_check_order(order))
    rng.random(dtype=out.dtype, out=out)                     # U[0, 1)
    out *= out.dtype.type(2.0 * bound)
    out -= out.dtype.type(bound)                             # numpy's uniform(-b, b) does the same sum
    return out


def _check_dtype(dtype: np.dtype | type) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


def _check_order(order: str) -> str:
    return check_choice("order", order, ("C", "F"))


def normal(
    shape: tuple[int, int],
    rng: np.random.Generator,
    *,
    std: float = 0.01,
    dtype: np.dtype | type = np.float64,
    order: str = "C",
) -> np.ndarray:
    """N(0, std²), the classic recipe's small-weight start."""
    std = check_positive_float("std", std)
    out = _standard_normal(shape, rng, dtype, order)
    out *= out.dtype.type(std)
    return out


def xavier_uniform(
    shape: tuple[int, int],
    rng: np.random.Generator,
    *,
    gain: float = 1.0,
    dtype: np.dtype | type = np.float64,
    order: str = "C",
) -> np.ndarray:
    """U(−a, a), a = gain · sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio, AISTATS 2010, eq. 16)."""
    fan_out, fan_in = shape
    return _uniform(shape, rng, gain * math.sqrt(6.0 / (fan_in + fan_out)), dtype, order)


def xavier_normal(
    shape: tuple[int, int],
    rng: np.random.Generator,
    *,
    gain: float = 1.0,
    dtype: np.dtype | type = np.float64,
    order: str = "C",
) -> np.ndarray:
    """N(0, σ²), σ = gain · sqrt(2 / (fan_in + fan_out)): Glorot's variance with a normal law."""
    fan_out, fan_in = shape
    out = _standard_normal(shape, rng, dtype, order)
    out *= out.dtype.type(gain * math.sqrt(2.0 / (fan_in + fan_out)))
    return out


def kaiming_uniform(
    shape: tuple[int, int],
    rng: np.random.Generator,
    *,
    gain: float = math.sqrt(2),
    dtype: np.dtype | type = np.float64,
    order: str = "C",
) -> np.ndarray:
    """U(−b, b), b = gain · sqrt(3 / fan_in): variance gain² / fan_in (He et al., ICCV 2015)."""
    _, fan_in = shape
    return _uniform(shape, rng, gain * math.sqrt(3.0 / fan_in), dtype, order)


def kaiming_normal(
    shape: tuple[int, int],
    rng: np.random.Generator,
    *,
    gain: float = math.sqrt(2),
    dtype: np.dtype | type = np.float64,
    order: str = "C",
) -> np.ndarray:
    """N(0, gain² / fan_in) (He et al., ICCV 2015, eq. 10 with fan_in mode)."""
    _, fan_in = shape
    out = _standard_normal(shape, rng, dtype, order)
    out *= out.dtype.type(gain / math.sqrt(fan_in))
    return out


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
    order: str = "C",
) -> np.ndarray:
    """Draw a ``(fan_out, fan_in)`` weight matrix with the named initializer.

    Parameters
    ----------
    name : {"normal", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal"}
    shape : tuple of int
        ``(fan_out, fan_in)``, the layer's (H, D).
    rng : numpy.random.Generator
    std : float
        The standard deviation of ``"normal"``.
    nonlinearity : str
        The activation that follows the layer; it sets the gain of the Xavier and Kaiming
        variants, as ``torch.nn.init`` does.
    dtype : float32 or float64
        The draws are made in this dtype (NumPy's float32 samplers for float32), so a float32
        network never holds a float64 copy of its weights. The two dtypes draw different
        numbers from one seed.
    order : {"C", "F"}
        Memory order of the result. Values are drawn in memory order, so an ``"F"`` draw of
        (H, D) is the transpose of a ``"C"`` draw of (D, H): its ``.T`` is a C-contiguous
        (D, H) matrix, the NumPy engine's layout, with no copy.

    Returns
    -------
    ndarray of shape (H, D)

    Examples
    --------
    >>> w = initialize("xavier_uniform", (3, 4), np.random.default_rng(0))
    >>> w.shape, w.dtype
    ((3, 4), dtype('float32'))
    """
    check_choice("init", name, INITIALIZERS)
    if name == "normal":
        return normal(shape, rng, std=std, dtype=dtype, order=order)
    return INITIALIZERS[name](shape, rng, gain=calculate_gain(nonlinearity), dtype=dtype, order=order)
