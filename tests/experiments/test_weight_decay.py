"""Weight decay: the penalty shrinks the weights and lowers the test loss; SGD's weight_decay is d2l's λ."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mlpkit.engine.gradcheck import numerical_grad
from mlpkit.engine.losses import MSELoss
from mlpkit.engine.network import build_mlp
from mlpkit.engine.optimizers import SGD
from mlpkit.experiments.weight_decay import _summary, plot_weight_decay, weight_decay_study
from mlpkit.spec import MLPSpec


@pytest.fixture(scope="module")
def result():
    """d2l 0.17's setting: d = 200, 20 training points, lr 0.003, batch 5, 100 epochs (well under 1 s)."""
    return weight_decay_study(rng=np.random.default_rng(0), weight_decays=(0.0, 3.0))


def test_weight_decay_shrinks_the_weights_and_lowers_the_test_loss(result):
    free, decayed = result.run(0.0), result.run(3.0)
    assert decayed.weight_norm < 0.1 * free.weight_norm
    assert decayed.test_loss < 0.1 * free.test_loss


def test_without_the_penalty_the_model_interpolates_and_overfits(result):
    free = result.run(0.0)
    assert free.train_loss < 1e-6                                      # 20 equations, 200 unknowns
    assert free.test_loss > 1000 * free.train_loss
    # The 180 directions the data leave free keep their N(0, 1) start: the norm hardly moves.
    assert free.weight_norm > 0.9 * result.initial_weight_norm


def test_the_norm_curve_is_recorded_every_epoch(result):
    norms = result.run(3.0).curves.extra["weight_norm"]
    assert len(norms) == result.epochs
    assert all(b < a for a, b in itertools.pairwise(norms))


def test_sgd_weight_decay_is_the_gradient_of_half_lambda_squared_norm():
    # One SGD step with weight_decay=λ must equal a plain gradient step on MSE + (λ/2)‖w‖²
    # (weights only, not the bias), which is what the study's docstring promises.
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((6, 4)), rng.standard_normal((6, 1))
    lam, lr = 3.0, 0.1
    net = build_mlp(MLPSpec(4, (), 1, init="normal", init_std=1.0), rng=rng, dtype=np.float64)
    weight, bias = net.layers[0].weight.data, net.layers[0].bias.data
    loss = MSELoss()

    def objective() -> float:
        return loss.forward(net.forward(x), y) + lam / 2 * float(np.sum(weight * weight))

    expected_w = weight - lr * numerical_grad(objective, weight)
    expected_b = bias - lr * numerical_grad(lambda: loss.forward(net.forward(x), y), bias)
    loss.forward(net.forward(x), y)
    net.backward(loss.backward())
    SGD(net.parameters().values(), lr=lr, weight_decay=lam).step()
    np.testing.assert_allclose(weight, expected_w, rtol=1e-7)
    np.testing.assert_allclose(bias, expected_b, rtol=1e-7)


def test_rejects_a_negative_penalty():
    with pytest.raises(ValueError, match=r"weight_decay must be a non-negative float, got -1\.0"):
        weight_decay_study(rng=np.random.default_rng(0), weight_decays=(-1.0,))


def _labelled_ticks(ax):
    lo, hi = ax.get_ylim()
    return [(t.get_loc(), t.label1.get_text()) for t in ax.yaxis.get_major_ticks()
            if lo <= t.get_loc() <= hi and t.label1.get_text()]


def test_the_weight_norm_axes_have_several_labelled_ticks():
    # The norms run from 14 (λ = 0) down to ~0.4 (λ = 3) and ~0.01 (λ = 30): one to three decades,
    # where matplotlib's log axis labels only the powers of ten (1 and 10 on the curves panel).
    sweep = weight_decay_study(rng=np.random.default_rng(0), weight_decays=(0.0, 3.0, 30.0))
    figure = plot_weight_decay(sweep)
    figure.canvas.draw()
    ax_norm, ax_sweep_norm = figure.axes[1], figure.axes[3]
    assert ax_norm.get_title() == "weight norm ‖w‖₂" and ax_sweep_norm.get_title().startswith("‖w‖₂ after")
    assert [label for _, label in _labelled_ticks(ax_norm)] == ["0.5", "1", "2", "5", "10"]
    assert [label for _, label in _labelled_ticks(ax_sweep_norm)] == ["0.03", "0.1", "0.3", "1", "3", "10"]
    for ax in (ax_norm, ax_sweep_norm):
        locations, labels = zip(*_labelled_ticks(ax), strict=True)
        np.testing.assert_allclose(locations, [float(label) for label in labels])  # each label is its value


def test_the_summary_counts_with_the_data():
    one = weight_decay_study(rng=np.random.default_rng(0), weight_decays=(0.0,), n_train=5, epochs=1)
    summary = _summary(one)
    assert summary.startswith("# Weight decay: 200 inputs, 5 training points\n")
    assert "SGD, lr 0.003, batch 5, 1 epoch; the penalty" in summary
    assert "the norm of the initial weights after 1 step of decay\nalone;" in summary
    assert "which 5 equations\ncannot constrain in 200 dimensions" in summary
