"""Dropout: a controlled comparison of one network with and without it, and its figure and summary.

The real-data run is in test_runs.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mlpkit.experiments._common import Curves
from mlpkit.experiments.dropout import DropoutResult, DropoutRun, _summary, dropout_study, plot_dropout


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


def _result(train_test_accuracy):
    """Two runs of two epochs, with the given final (train, test) accuracies; the curves are made up."""
    runs = []
    for label, dropout, (train_acc, test_acc) in zip(
        ("no dropout", "dropout 0.2/0.5"), ([0.0, 0.0], [0.2, 0.5]), train_test_accuracy, strict=True
    ):
        curves = Curves(
            train_loss=[1.0, 0.6], test_loss=[1.1, 0.7], train_accuracy=[0.5, train_acc],
            test_accuracy=[0.5, test_acc], running_train_loss=[1.2, 0.8], stop_reason="completed 2 epochs",
        )
        runs.append(DropoutRun(label=label, dropout=dropout, curves=curves, train_accuracy=train_acc,
                               test_accuracy=test_acc, gap=train_acc - test_acc))
    return DropoutResult(runs=runs, hidden_features=[256, 256], epochs=2, lr=0.5, batch_size=256,
                         n_train=1000, n_test=200, n_train_eval=1000)


# Run 1: train and test agree to 2e-4 (its gap would print "-0.000"); run 2 has a visible gap.
NEAR_TIE = ((0.8000, 0.8002), (0.83, 0.80))


@pytest.fixture
def figure():
    fig = plot_dropout(_result(NEAR_TIE))
    fig.canvas.draw()
    return fig


def test_epoch_axes_tick_whole_epochs(figure):
    ax_loss, ax_acc, _ = figure.axes
    for ax in (ax_loss, ax_acc):
        lo, hi = ax.get_xlim()
        assert [t for t in ax.get_xticks() if lo <= t <= hi] == [1, 2]  # not 1.0, 1.2, ..., 2.0


def test_the_legend_covers_no_panel_and_no_label(figure):
    renderer = figure.canvas.get_renderer()
    assert all(ax.get_legend() is None for ax in figure.axes)
    (legend,) = figure.legends
    box = legend.get_window_extent(renderer)
    for ax in figure.axes:                                             # tight: with tick and axis labels
        assert not box.overlaps(ax.get_tightbbox(renderer)), ax.get_title()
    labels = [text.get_text() for text in legend.get_texts()]
    assert labels == [
        "train, no dropout", "train, dropout 0.2/0.5", "test, no dropout", "test, dropout 0.2/0.5",
        "while training, no dropout", "while training, dropout 0.2/0.5",
        "final train accuracy", "final test accuracy",
    ]


def test_train_and_test_markers_are_both_visible_when_the_accuracies_agree(figure):
    ax = figure.axes[2]
    train, test = (line for line in ax.get_lines() if line.get_linestyle() == "None")
    assert (train.get_label(), test.get_label()) == ("final train accuracy", "final test accuracy")
    np.testing.assert_allclose(train.get_ydata(), [0.8000, 0.83])
    np.testing.assert_allclose(test.get_ydata(), [0.8002, 0.80])
    to_pixels = ax.transData.transform
    centers_train = to_pixels(np.column_stack([train.get_xdata(), train.get_ydata()]))
    centers_test = to_pixels(np.column_stack([test.get_xdata(), test.get_ydata()]))
    # Marker sizes are in points; apart by more than the two half-widths, the markers cannot touch.
    half_widths = (train.get_markersize() + test.get_markersize()) / 2 * figure.dpi / 72
    distances = np.linalg.norm(centers_train - centers_test, axis=1)
    assert (distances > half_widths).all(), distances
    assert test.get_zorder() > train.get_zorder() and test.get_markerfacecolor() == "white"


def test_a_gap_that_rounds_to_zero_is_printed_without_a_sign(figure):
    labels = [tick.get_text() for tick in figure.axes[2].get_xticklabels()]
    assert labels == ["no dropout\ngap 0.000", "dropout 0.2/0.5\ngap +0.030"]
    summary = _summary(_result(NEAR_TIE))
    assert "-0.000" not in summary
    assert "| no dropout | 0.6 | 0.7 | 0.8 | 0.8002 | 0.000 |" in summary
    assert "(train − test accuracy: no dropout 0.000, dropout 0.2/0.5 +0.030)" in summary


def test_counts_agree_with_their_nouns():
    one_epoch = dataclasses.replace(_result(NEAR_TIE), epochs=1, n_train=1, n_train_eval=1)
    summary = _summary(one_epoch)
    assert "1 training image and 200 test images; SGD, lr 0.5, batch 256, 1 epoch." in summary
    assert "measured in evaluation mode on 1 training image." in summary
    assert plot_dropout(one_epoch).axes[2].get_title() == "after 1 epoch"
