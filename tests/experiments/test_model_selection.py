"""Model selection: the right model recovers the weights, too few features underfit, too many overfit."""

from __future__ import annotations

import numpy as np
import pytest

from mlpkit.data.synthetic import D2L_POLYNOMIAL_WEIGHT
from mlpkit.experiments.model_selection import _summary, model_selection, plot_model_selection


@pytest.fixture(scope="module")
def d2l_result():
    """d2l's setting: 100/100 points, noise 0.1, SGD lr 0.01, batch 10, 400 epochs (about 1 s)."""
    return model_selection(rng=np.random.default_rng(0))


def test_four_features_recover_the_true_weights(d2l_result):
    fit = d2l_result.fit(4)
    assert fit.label == "normal"
    np.testing.assert_allclose(fit.weight, D2L_POLYNOMIAL_WEIGHT, atol=0.1)
    # Both losses reach the noise floor σ² = 0.01 (within sampling error).
    assert fit.curves.train_loss[-1] < 0.02 and fit.curves.test_loss[-1] < 0.02


def test_two_features_underfit(d2l_result):
    fit = d2l_result.fit(2)
    assert fit.label == "underfit"
    assert fit.curves.train_loss[-1] > 100 * 0.01                     # far above the noise, even in training
    assert fit.lstsq_train_loss > 100 * 0.01                           # and no optimizer can fix that


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_twenty_features_fitted_to_convergence_overfit(seed):
    result = model_selection(rng=np.random.default_rng(seed), num_features=(4, 20), epochs=1)
    right, fit = result.fit(4), result.fit(20)
    assert fit.label == "overfit"
    # More capacity fits the training set better (the models are nested) ...
    assert fit.lstsq_train_loss < right.lstsq_train_loss
    # ... by fitting the noise, which costs dearly on new points.
    assert fit.lstsq_test_loss > 10 * fit.lstsq_train_loss
    assert fit.lstsq_test_loss > 10 * right.lstsq_test_loss


def test_sgd_leaves_the_high_order_weights_near_their_start(d2l_result):
    # Why d2l's 20-feature SGD curve barely overfits: the x^i/i! columns for large i are tiny, so
    # are their gradients, and 400 epochs of SGD leave those weights at their N(0, 0.01²) start.
    fit = d2l_result.fit(20)
    assert np.max(np.abs(fit.weight[10:])) < 0.05
    assert fit.curves.test_loss[-1] < fit.lstsq_test_loss


def test_each_fit_is_independent_of_the_others():
    alone = model_selection(rng=np.random.default_rng(0), num_features=(20,), epochs=5)
    together = model_selection(rng=np.random.default_rng(0), num_features=(4, 2, 20), epochs=5)
    assert alone.fit(20).weight == together.fit(20).weight


def test_rejects_more_features_than_columns():
    with pytest.raises(ValueError, match="num_features must be at most max_degree=20, got 21"):
        model_selection(rng=np.random.default_rng(0), num_features=(21,))


def test_text_counts_agree_with_their_nouns():
    result = model_selection(rng=np.random.default_rng(0), num_features=(1, 4), epochs=1)
    summary = _summary(result)
    assert summary.startswith("# Model selection: polynomial regression (1 epoch of SGD)\n")
    assert "1 feature underfit: even the training loss" in summary
    assert "SGD stopped after 1 epoch barely moves" in summary
    figure = plot_model_selection(result)
    assert [ax.get_title() for ax in figure.axes[:2]] == ["1 feature (underfit)", "4 features (normal)"]
    assert figure.get_suptitle() == "Model selection: polynomial regression with 1 and 4 features (d2l 3.6)"
    figure.canvas.draw()
    lo, hi = figure.axes[0].get_xlim()
    assert [t for t in figure.axes[0].get_xticks() if lo <= t <= hi] == [1]   # not 0.96, 0.98, ...
