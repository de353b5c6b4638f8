"""Initialization: which starts make gradients vanish or explode in a 10-layer MLP, and which do not.

Gradients are measured on one batch of 128 "images" (uniform in [0, 1), 64 pixels, 10 classes),
with 9 hidden layers of width 64: the same depth as the study, a smaller width.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mlpkit.experiments._common import to_jsonable
from mlpkit.experiments.initialization import (
    INITIALIZERS,
    _summary,
    build_deep_mlp,
    gradient_norms_at_init,
    initialization_study,
)

DEPTH, WIDTH = 10, 64


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    return rng.random((128, 64)), rng.integers(0, 10, 128)


def probe(batch, activation, init, seed=1):
    x, y = batch
    net = build_deep_mlp(64, 10, activation=activation, init=init, rng=np.random.default_rng(seed),
                         num_layers=DEPTH, hidden_features=WIDTH)
    grads, stds, _ = gradient_norms_at_init(net, x, y)
    return np.array(grads), np.array(stds)


def test_shapes_of_the_probe(batch):
    grads, stds = probe(batch, "relu", "kaiming")
    assert grads.shape == (DEPTH,) and stds.shape == (DEPTH - 1,)


def test_sigmoid_gradients_vanish_towards_the_input_with_small_normal_weights(batch):
    grads, _ = probe(batch, "sigmoid", "normal_0.01")
    assert grads[0] / grads[-1] < 1e-2                                 # measured: ~1e-12


def test_xavier_keeps_tanh_gradients_within_a_factor_10_across_depth(batch):
    grads, stds = probe(batch, "tanh", "xavier")
    assert 0.1 < grads[0] / grads[-1] < 10
    assert grads.max() / grads.min() < 10
    assert stds.max() / stds.min() < 10


def test_xavier_does_not_rescue_deep_sigmoid_networks(batch):
    # Glorot & Bengio's variance assumes f'(0) = 1; the sigmoid's slope is at most 1/4, so under
    # Xavier the gradient still shrinks by about that factor per layer. It is far better than
    # N(0, 0.01²), and still vanishes.
    small, _ = probe(batch, "sigmoid", "normal_0.01")
    grads, _ = probe(batch, "sigmoid", "xavier")
    per_layer = (grads[0] / grads[-1]) ** (1 / (DEPTH - 1))
    assert 0.1 < per_layer < 0.4
    assert grads[0] / grads[-1] > 1e4 * (small[0] / small[-1])


def test_fourfold_xavier_wins_back_most_of_the_sigmoid_gradient_but_not_all(batch):
    # Scaling Glorot's weights by 1/σ'(0) = 4 cancels the slope at 0, but it also spreads the
    # pre-activations to where σ' < 1/4: the first layer keeps about 1e-2 of the last's gradient
    # (measured 1.1e-2 to 2.9e-2 over seeds 1-3), against ~3e-6 with Xavier and ~1e-12 with N(0, 0.01²).
    for seed in (1, 2, 3):
        plain, _ = probe(batch, "sigmoid", "xavier", seed=seed)
        grads, stds = probe(batch, "sigmoid", "xavier_x4", seed=seed)
        ratio = grads[0] / grads[-1]
        assert 1e-3 < ratio < 1e-1, seed
        assert ratio > 1e3 * (plain[0] / plain[-1]), seed
        assert stds.min() > 0.25 and stds.max() < 0.45, seed           # wider than Xavier's ~0.12


def test_kaiming_keeps_relu_gradients_and_activations_of_order_one(batch):
    grads, stds = probe(batch, "relu", "kaiming")
    assert 0.1 < grads[0] / grads[-1] < 10
    assert stds.max() / stds.min() < 10
    assert grads.min() > 0.01 and grads.max() < 100


def test_relu_gradients_vanish_everywhere_with_small_weights_and_explode_with_large(batch):
    kaiming, _ = probe(batch, "relu", "kaiming")
    small, small_stds = probe(batch, "relu", "normal_0.01")
    large, large_stds = probe(batch, "relu", "normal_1")
    # ReLU is positively homogeneous: the forward and backward factors cancel in ∂L/∂W, so every
    # layer is scaled alike, by about (s·√(H/2))^(L−1) for weight scale s.
    assert small.max() < 1e-6 * kaiming.min()
    assert large.min() > 1e6 * kaiming.max()
    assert small_stds[-1] < 1e-5 * small_stds[0] and large_stds[-1] > 1e5 * large_stds[0]


def test_the_initializers_use_the_papers_variances():
    rng = np.random.default_rng(0)
    fan_out, fan_in = 300, 500
    for name, variance in [("normal_0.01", 1e-4), ("normal_1", 1.0), ("xavier", 2 / (fan_in + fan_out)),
                           ("xavier_x4", 32 / (fan_in + fan_out)), ("kaiming", 2 / fan_in)]:
        w = INITIALIZERS[name][1]((fan_out, fan_in), rng)
        assert w.shape == (fan_out, fan_in)
        assert w.var() == pytest.approx(variance, rel=0.02), name


def test_a_diverging_run_is_recorded_not_raised():
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 16)), rng.integers(0, 3, 64)
    result = initialization_study(x, y, x, y, rng=rng, activations=("relu",), initializers=("normal_1",),
                                  hidden_features=32, epochs=3, lr=1.0)
    run = result.run("relu", "normal_1")
    finished = len(run.curves.test_accuracy)                           # curves end at the last finite epoch
    assert finished < 3 and len(run.curves.train_loss) == finished
    # Divergence is what this run is for: the reason says so and gives no advice to lower the rate.
    reason = f"diverged as expected in epoch {finished + 1} (the loss became NaN or infinite)"
    assert run.diverged
    assert run.curves.stop_reason == reason + (f"; the curves end with epoch {finished}" if finished else "")
    if finished:
        assert run.test_accuracy == run.curves.test_accuracy[-1]
    else:
        assert math.isnan(run.test_accuracy)
    json.dumps(to_jsonable(run), allow_nan=False)                      # any NaN becomes null


def test_unknown_initializer_is_rejected():
    valid = r"\['kaiming', 'normal_0\.01', 'normal_1', 'xavier', 'xavier_x4'\]"
    with pytest.raises(ValueError, match=rf"init must be one of {valid}, got 'he'"):
        build_deep_mlp(4, 2, activation="relu", init="he", rng=np.random.default_rng(0))


def test_summary_counts_agree_and_divergence_is_not_treated_as_a_mistake():
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 16)), rng.integers(0, 3, 64)
    result = initialization_study(x, y, x, y, rng=rng, activations=("relu",), initializers=("normal_1",),
                                  hidden_features=32, probe_batch_size=1, epochs=1, lr=1.0)
    summary = _summary(result)
    prose = " ".join(summary.split())
    assert "one batch of 1 training image at initialization; then 1 epoch of SGD" in prose
    assert "*diverged*: the loss became infinite, the exploding start this study is there to show" in prose
    assert "smaller learning rate" not in summary and "try " not in summary
