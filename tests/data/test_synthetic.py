"""Generated data: d2l's polynomial and linear regressions, and Nim positions against a game-tree solver."""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import pytest

from mlpkit.data.synthetic import (
    D2L_POLYNOMIAL_WEIGHT,
    make_linear_regression,
    make_nim_positions,
    make_polynomial_regression,
    nim_sum,
    polynomial_features,
)

# -- polynomial regression -------------------------------------------------------------------


def test_polynomial_features_are_powers_over_factorials(rng):
    x = rng.standard_normal(7)
    expected = np.stack([x**i / math.factorial(i) for i in range(20)], axis=1)   # written out by hand
    np.testing.assert_allclose(polynomial_features(x, 20), expected, rtol=1e-12, atol=0)


def test_polynomial_regression_labels_are_the_cubic_plus_noise_of_std_0_1():
    data = make_polynomial_regression(rng=np.random.default_rng(0), n_train=3000, n_test=1000)
    assert data.x_train.shape == (3000, 20) and data.x_test.shape == (1000, 20)
    assert data.y_train.shape == (3000,) and data.y_test.shape == (1000,)
    np.testing.assert_array_equal(data.weight[:4], D2L_POLYNOMIAL_WEIGHT)
    assert not data.weight[4:].any() and data.bias == 0.0
    x = data.x_train[:, 1]                                             # column 1 is x itself
    cubic = 5 + 1.2 * x - 3.4 * x**2 / 2 + 5.6 * x**3 / 6
    residual = data.y_train - cubic
    assert abs(residual.std() - 0.1) < 0.005 and abs(residual.mean()) < 0.01
    assert abs(x.mean()) < 0.1 and abs(x.std() - 1) < 0.05            # x ~ N(0, 1)


def test_polynomial_regression_is_reproducible_from_the_generator():
    a = make_polynomial_regression(rng=np.random.default_rng(3))
    b = make_polynomial_regression(rng=np.random.default_rng(3))
    np.testing.assert_array_equal(a.x_test, b.x_test)
    np.testing.assert_array_equal(a.y_train, b.y_train)


def test_polynomial_regression_rejects_more_weights_than_features():
    with pytest.raises(ValueError, match="true_weight must have at most max_degree=3 entries, got 4"):
        make_polynomial_regression(rng=np.random.default_rng(0), max_degree=3)


def test_polynomial_features_rejects_a_matrix():
    with pytest.raises(ValueError, match=r"x must be 1-D \(N,\), got shape \(2, 2\)"):
        polynomial_features(np.zeros((2, 2)), 3)


# -- linear regression (weight decay) ----------------------------------------------------------


def test_linear_regression_matches_d2l_weight_decay_data():
    data = make_linear_regression(rng=np.random.default_rng(0), n_train=2000)
    assert data.x_train.shape == (2000, 200) and data.x_test.shape == (100, 200)
    np.testing.assert_array_equal(data.weight, np.full(200, 0.01))
    residual = data.y_train - (data.x_train @ data.weight + 0.05)
    assert abs(residual.std() - 0.01) < 0.001                          # ε ~ N(0, 0.01²)


def test_linear_regression_checks_sizes():
    with pytest.raises(ValueError, match="n_train must be a positive int, got 0"):
        make_linear_regression(rng=np.random.default_rng(0), n_train=0)


# -- Nim ---------------------------------------------------------------------------------------


@functools.cache
def _loses(position: tuple[int, ...]) -> bool:
    """Game-tree search: the player to move loses iff every move leads to a position the opponent wins.

    The empty position has no moves, so the player to move has lost (normal play: whoever takes
    the last object wins). Heaps are sorted, since their order does not matter.
    """
    for i, heap in enumerate(position):
        for take in range(1, heap + 1):
            child = tuple(sorted((*position[:i], heap - take, *position[i + 1 :])))
            if _loses(child):
                return False                                           # a move to a lost position wins
    return True


@pytest.mark.parametrize(
    ("num_heaps", "bits"), [(1, 1), (1, 3), (2, 1), (2, 2), (2, 3), (3, 2), (4, 1), (4, 2)]
)
def test_nim_labels_match_a_brute_force_game_tree(num_heaps, bits):
    positions = make_nim_positions(num_heaps, bits)
    solved = np.array([0 if _loses(tuple(sorted(h))) else 1 for h in positions.heaps.tolist()])
    np.testing.assert_array_equal(positions.y, solved)


@pytest.mark.parametrize(("num_heaps", "bits"), [(2, 3), (3, 2), (3, 3)])
def test_nim_enumerates_every_position_once_with_a_2_to_minus_bits_share_of_losses(num_heaps, bits):
    positions = make_nim_positions(num_heaps, bits)
    expected = sorted(itertools.product(range(2**bits), repeat=num_heaps))
    assert sorted(map(tuple, positions.heaps.tolist())) == expected
    # For any first K-1 heaps exactly one last heap makes the XOR 0.
    assert np.count_nonzero(positions.y == 0) == 2 ** (bits * (num_heaps - 1))


def test_nim_bits_encode_the_heaps_most_significant_first():
    positions = make_nim_positions(2, 3)
    row = int(np.flatnonzero((positions.heaps == [5, 6]).all(axis=1))[0])
    np.testing.assert_array_equal(positions.x[row], [1, 0, 1, 1, 1, 0])
    assert positions.x.dtype == np.float32 and positions.x.shape == (64, 6)


def test_nim_samples_distinct_positions_when_there_are_too_many():
    positions = make_nim_positions(3, 8, max_positions=500, rng=np.random.default_rng(0))
    assert positions.heaps.shape == (500, 3)
    assert len({tuple(h) for h in positions.heaps.tolist()}) == 500
    assert positions.heaps.max() < 256
    np.testing.assert_array_equal(positions.y, nim_sum(positions.heaps) != 0)


def test_nim_sampling_needs_a_generator():
    with pytest.raises(ValueError, match="there are 16777216 positions, more than max_positions=500: "):
        make_nim_positions(3, 8, max_positions=500)


def test_nim_rejects_codes_wider_than_int64():
    with pytest.raises(ValueError, match=r"num_heaps \* bits must be at most 62, got 4 \* 16 = 64"):
        make_nim_positions(4, 16, rng=np.random.default_rng(0))
