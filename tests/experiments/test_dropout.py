"""Dropout: a controlled comparison of one network with and without it (the real-data run is in test_runs)."""

from __future__ import annotations

import numpy as np
import pytest

from mlpkit.experiments.dropout import dropout_study


@pytest.fixture
def blobs():
    """Three separable clusters in 20 dimensions: 240 training and 120 test points."""
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 3, (3, 20))
    y = rng.integers(0, 3, 360)
    x = centers[y] + rng.normal(size=(360, 20))
    return x[:240], y[:240], x[240:], y[240:]


def test_runs_differ_only_in_dropout(blobs):
    # Every run re-creates its generators from one seed: same initial weights, same minibatches.
    # Two runs without dropout must therefore be identical, number for number.
    result = dropout_study(*blobs, rng=np.random.default_rng(0), dropouts=((0.0, 0.0), (0.0, 0.0)),
                           hidden_features=(32, 32), epochs=3, lr=0.1, batch_size=32)
    first, second = result.runs
    assert first.curves == second.curves


def test_dropout_run_learns_and_records_everything(blobs):
    # d2l's N(0, 0.01²) start sits on a plateau for the first ~100 steps; 160 steps get past it.
    result = dropout_study(*blobs, rng=np.random.default_rng(0), hidden_features=(32, 32), epochs=20,
                           lr=0.5, batch_size=32, n_train_eval=100)
    assert [r.label for r in result.runs] == ["no dropout", "dropout 0.2/0.5"]
    assert [r.dropout for r in result.runs] == [[0.0, 0.0], [0.2, 0.5]]
    assert result.n_train_eval == 100
    # Same initial weights and batches (see above): had the study ignored the dropout setting, the
    # two runs would agree number for number. The masks thin the network from the first batch on,
    # so the loss the optimizer saw differs in epoch 1, and the thinned networks fit worse overall.
    plain, dropped = (r.curves.running_train_loss for r in result.runs)
    assert dropped[0] != plain[0]
    assert sum(dropped) > sum(plain)
    for run in result.runs:
        assert len(run.curves.train_accuracy) == len(run.curves.test_accuracy) == 20
        assert run.test_accuracy > 0.9                                 # separable clusters
        assert run.gap == pytest.approx(run.train_accuracy - run.test_accuracy)
