"""Generated data sets: the regression problems of d2l's generalization chapters, and Nim positions.

* :func:`make_polynomial_regression`: the cubic with features ``x^i / i!`` of Zhang et al.,
  *Dive into Deep Learning* (d2l), the model-selection experiment (sec. 4.4 of the 0.17 edition;
  generalization is sec. 3.6 of the 1.0 edition).
* :func:`make_linear_regression`: the high-dimensional linear problem of d2l sec. 3.7 (weight decay).
* :func:`make_nim_positions`: positions of the game of Nim labelled by Bouton's theorem (1901).

Every generator takes an explicit ``numpy.random.Generator``; nothing here touches global state.
Arrays are float64 for the regressions (the targets carry noise of 0.01, close to float32's
resolution of values near 5) and float32 bits for Nim.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mlpkit._checks import check_nonnegative_float, check_positive_int

__all__ = [
    "NimPositions",
    "RegressionData",
    "make_linear_regression",
    "make_nim_positions",
    "make_polynomial_regression",
    "nim_sum",
    "polynomial_features",
]

D2L_POLYNOMIAL_WEIGHT = (5.0, 1.2, -3.4, 5.6)
"""d2l's true weights of ``1, x, x²/2!, x³/3!``: ``y = 5 + 1.2x − 3.4x²/2! + 5.6x³/3! + ε``."""


@dataclass(frozen=True, eq=False)
class RegressionData:
    """A train/test split of a regression problem with known true parameters.

    Parameters
    ----------
    x_train : ndarray of shape (N, D), float64
    y_train : ndarray of shape (N,), float64
    x_test : ndarray of shape (M, D), float64
    y_test : ndarray of shape (M,), float64
    weight : ndarray of shape (D,), float64
        The true weights; zero for features that do not enter the labels.
    bias : float
        The true intercept (0 when the features carry a constant column).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    weight: np.ndarray
    bias: float


def polynomial_features(x: np.ndarray, max_degree: int) -> np.ndarray:
    """Scaled monomials ``x^i / i!`` for ``i = 0 .. max_degree − 1`` (d2l's ``poly_features``).

    The ``1/i!`` keeps ``x^19`` from dwarfing the other columns. It is built as a running
    product ``f_i = f_{i−1} · x / i``, which never forms ``x^i`` or ``i!`` on their own.

    Parameters
    ----------
    x : ndarray of shape (N,)
    max_degree : int
        Number of columns D; column 0 is the constant 1.

    Returns
    -------
    ndarray of shape (N, D), float64

    Examples
    --------
    >>> polynomial_features(np.array([2.0]), 4)
    array([[1.        , 2.        , 2.        , 1.33333333]])
    """
    check_positive_int("max_degree", max_degree)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"x must be 1-D (N,), got shape {x.shape}")
    steps = x[:, None] / np.arange(1, max_degree)                      # (N, D-1): x / i
    return np.concatenate([np.ones((len(x), 1)), np.cumprod(steps, axis=1)], axis=1)   # (N, D)


def make_polynomial_regression(
    *,
    rng: np.random.Generator,
    n_train: int = 100,
    n_test: int = 100,
    max_degree: int = 20,
    true_weight: Sequence[float] = D2L_POLYNOMIAL_WEIGHT,
    noise: float = 0.1,
) -> RegressionData:
    """d2l's polynomial regression: ``x ~ N(0, 1)``, features ``x^i/i!``, labels from the first few.

    ``y = Σ_i w_i x^i / i! + ε`` with ``ε ~ N(0, noise²)``; with the defaults this is the cubic
    ``5 + 1.2x − 3.4x²/2! + 5.6x³/3! + ε``, ε of standard deviation 0.1, as in d2l. The features
    carry all ``max_degree`` columns, so a model of ``k`` features is fitted on ``x_train[:, :k]``.
    Column 1 is ``x`` itself.

    Parameters
    ----------
    rng : numpy.random.Generator
    n_train, n_test : int
        Sizes of the two splits (drawn together, then split).
    max_degree : int
        Number of feature columns D.
    true_weight : sequence of float
        Weights of the first ``len(true_weight)`` columns; the rest are 0.
    noise : float
        Standard deviation of the label noise.

    Returns
    -------
    RegressionData
        ``x_*`` of shape (N, D), ``y_*`` of shape (N,), ``weight`` of shape (D,), ``bias=0``.

    Examples
    --------
    >>> data = make_polynomial_regression(rng=np.random.default_rng(0))
    >>> data.x_train.shape, data.y_test.shape, data.weight[:5].tolist()
    ((100, 20), (100,), [5.0, 1.2, -3.4, 5.6, 0.0])
    """
    check_positive_int("n_train", n_train)
    check_positive_int("n_test", n_test)
    check_nonnegative_float("noise", noise)
    if len(true_weight) > max_degree:
        raise ValueError(
            f"true_weight must have at most max_degree={max_degree} entries, got {len(true_weight)}"
        )
    weight = np.zeros(max_degree)
    weight[: len(true_weight)] = true_weight
    x = rng.standard_normal(n_train + n_test)                          # (N + M,)
    features = polynomial_features(x, max_degree)                      # (N + M, D)
    y = features @ weight + rng.normal(0.0, noise, size=len(x))        # (N + M,)
    return RegressionData(
        features[:n_train], y[:n_train], features[n_train:], y[n_train:], weight, 0.0
    )


def make_linear_regression(
    *,
    rng: np.random.Generator,
    n_train: int = 20,
    n_test: int = 100,
    in_features: int = 200,
    weight_value: float = 0.01,
    bias: float = 0.05,
    noise: float = 0.01,
) -> RegressionData:
    """d2l sec. 3.7's weight-decay data: ``y = 0.05 + Σ_i 0.01 x_i + ε``, few samples, many features.

    ``x ~ N(0, I_D)`` and ``ε ~ N(0, noise²)``. With 20 training points in 200 dimensions an
    unregularized linear model can fit the training set exactly, and it overfits.

    Parameters
    ----------
    rng : numpy.random.Generator
    n_train, n_test : int
        Sizes of the two splits.
    in_features : int
        Input width D.
    weight_value : float
        Every true weight.
    bias : float
        The true intercept.
    noise : float
        Standard deviation of the label noise.

    Returns
    -------
    RegressionData
        ``x_*`` of shape (N, D), ``y_*`` of shape (N,), ``weight`` of shape (D,).

    Examples
    --------
    >>> data = make_linear_regression(rng=np.random.default_rng(0))
    >>> data.x_train.shape, data.x_test.shape, data.bias
    ((20, 200), (100, 200), 0.05)
    """
    check_positive_int("n_train", n_train)
    check_positive_int("n_test", n_test)
    check_positive_int("in_features", in_features)
    check_nonnegative_float("noise", noise)
    weight = np.full(in_features, float(weight_value))
    x = rng.standard_normal((n_train + n_test, in_features))          # (N + M, D)
    y = x @ weight + bias + rng.normal(0.0, noise, size=len(x))       # (N + M,)
    return RegressionData(x[:n_train], y[:n_train], x[n_train:], y[n_train:], weight, float(bias))


# -- Nim ---------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class NimPositions:
    """Nim positions with heap sizes, their bits, and who wins.

    Parameters
    ----------
    heaps : ndarray of shape (N, K), int64
        Heap sizes in ``[0, 2**bits)``.
    x : ndarray of shape (N, K * bits), float32
        Each heap size in binary, most significant bit first, heaps side by side; one 0/1 per input.
    y : ndarray of shape (N,), int64
        1 if the player to move wins with perfect play (nim-sum ≠ 0), 0 if they lose (nim-sum = 0).
    bits : int
        Bits per heap.
    """

    heaps: np.ndarray
    x: np.ndarray
    y: np.ndarray
    bits: int


# Codes are K * bits binary digits packed into an int64; 62 keeps 2**62 and shifts well inside it.
_MAX_NIM_BITS = 62


def nim_sum(heaps: np.ndarray) -> np.ndarray:
    """XOR of the heap sizes of each position.

    Bouton (1901), "Nim, a game with a complete mathematical theory", Annals of Mathematics
    3(1/4): 35–39: under the normal play convention (whoever takes the last object wins) the
    player to move loses with perfect play iff the nim-sum is 0.

    Parameters
    ----------
    heaps : ndarray of shape (N, K), integer

    Returns
    -------
    ndarray of shape (N,), int64

    Examples
    --------
    >>> nim_sum(np.array([[3, 4, 5], [1, 2, 3]])).tolist()
    [2, 0]
    """
    heaps = np.asarray(heaps, dtype=np.int64)
    if heaps.ndim != 2:
        raise ValueError(f"heaps must be 2-D (positions, heaps), got shape {heaps.shape}")
    result: np.ndarray = np.bitwise_xor.reduce(heaps, axis=1)         # (N,)
    return result


def make_nim_positions(
    num_heaps: int,
    bits: int,
    *,
    max_positions: int = 1 << 16,
    rng: np.random.Generator | None = None,
) -> NimPositions:
    """All Nim positions of ``num_heaps`` heaps of up to ``2**bits − 1`` objects, or a random sample.

    A position is encoded as one ``num_heaps * bits``-digit binary number (heap 1's bits first),
    so enumerating positions is counting, and sampling distinct positions is sampling distinct
    integers. There are ``2**(num_heaps * bits)`` positions, of which a fraction ``2**−bits``
    are losing for the player to move: for any sizes of the first K − 1 heaps exactly one size of
    the last heap makes the nim-sum 0.

    Parameters
    ----------
    num_heaps : int
        K.
    bits : int
        Bits per heap.
    max_positions : int
        Enumerate every position when there are at most this many; otherwise sample this many
        distinct positions uniformly at random (which needs ``rng``).
    rng : numpy.random.Generator, optional
        Used only to sample.

    Returns
    -------
    NimPositions
        Enumerated positions come in counting order; sampled ones in random order.

    Examples
    --------
    >>> pos = make_nim_positions(2, 2)
    >>> pos.x.shape, pos.heaps[:3].tolist(), pos.y[:6].tolist()
    ((16, 4), [[0, 0], [0, 1], [0, 2]], [0, 1, 1, 1, 1, 0])
    """
    check_positive_int("num_heaps", num_heaps)
    check_positive_int("bits", bits)
    check_positive_int("max_positions", max_positions)
    width = num_heaps * bits
    if width > _MAX_NIM_BITS:
        raise ValueError(
            f"num_heaps * bits must be at most {_MAX_NIM_BITS}, got {num_heaps} * {bits} = {width}"
        )
    total = 1 << width
    if total <= max_positions:
        codes = np.arange(total, dtype=np.int64)                       # (N,)
    else:
        if rng is None:
            raise ValueError(
                f"there are {total} positions, more than max_positions={max_positions}: "
                "pass rng to sample them"
            )
        codes = rng.choice(total, size=max_positions, replace=False).astype(np.int64)
    digits = (codes[:, None] >> np.arange(width - 1, -1, -1)) & 1      # (N, K*bits), MSB first
    place = 1 << np.arange(bits - 1, -1, -1)                           # (bits,) weights of one heap's digits
    heaps = digits.reshape(len(codes), num_heaps, bits) @ place        # (N, K)
    return NimPositions(
        heaps=heaps,
        x=digits.astype(np.float32),
        y=(nim_sum(heaps) != 0).astype(np.int64),
        bits=bits,
    )
