"""What the studies share: counted nouns, signed numbers, epoch and log ticks, stop reasons, quick notes."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from mlpkit.engine.losses import SoftmaxCrossEntropyLoss
from mlpkit.engine.network import build_mlp
from mlpkit.engine.optimizers import SGD
from mlpkit.experiments._common import (
    QUICK_NOTE,
    count,
    format_signed,
    mark_quick,
    new_figure,
    readable_log_ticks,
    style_axes,
    train_with_curves,
)
from mlpkit.spec import MLPSpec


@pytest.mark.parametrize(
    ("n", "noun", "plural", "expected"),
    [
        (1, "epoch", None, "1 epoch"),
        (2, "epoch", None, "2 epochs"),
        (0, "epoch", None, "0 epochs"),
        (1, "training image", None, "1 training image"),
        (10000, "training image", None, "10000 training images"),
        (1, "batch", "batches", "1 batch"),
        (3, "batch", "batches", "3 batches"),
    ],
)
def test_count_agrees_with_the_number(n, noun, plural, expected):
    assert count(n, noun, plural) == expected


@pytest.mark.parametrize(
    ("value", "digits", "expected"),
    [
        (0.0187, 3, "+0.019"),
        (-0.0187, 3, "-0.019"),
        (-0.0006, 3, "-0.001"),
        (-0.0004, 3, "0.000"),                                         # f"{-0.0004:+.3f}" is "-0.000"
        (-0.0, 3, "0.000"),
        (0.0004, 3, "0.000"),
        (-0.00004, 4, "0.0000"),
        (0.25, 2, "+0.25"),
    ],
)
def test_format_signed_never_prints_a_negative_zero(value, digits, expected):
    assert format_signed(value, digits) == expected


def visible_ticks(ax, axis="x"):
    """(location, label) of the major ticks inside the view limits, after a draw."""
    ax.figure.canvas.draw()
    lo, hi = sorted(ax.get_xlim() if axis == "x" else ax.get_ylim())
    ticks = (ax.xaxis if axis == "x" else ax.yaxis).get_major_ticks()
    return [(t.get_loc(), t.label1.get_text()) for t in ticks if lo <= t.get_loc() <= hi]


@pytest.mark.parametrize("epochs", [1, 2, 3, 7])
def test_epoch_axes_tick_whole_epochs_only(epochs):
    _, axes = new_figure(1, 1, width=4.0, height=3.0)
    ax = axes[0][0]
    ax.plot(np.arange(1, epochs + 1), np.linspace(1.0, 0.5, epochs))
    style_axes(ax, title="t", xlabel="epoch", ylabel="loss", integer_x=True)
    locations = [loc for loc, _ in visible_ticks(ax)]
    assert locations and all(float(loc).is_integer() for loc in locations), locations
    assert 1 in locations


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (0.4, 15.0, [0.5, 1, 2, 5, 10]),                               # the weight-decay norm: 1.6 decades
        (5.0, 15.0, [5, 7, 10, 15]),
        (0.015, 15.0, [0.03, 0.1, 0.3, 1, 3, 10]),
    ],
)
def test_log_axes_of_a_few_decades_get_labelled_ticks_between_the_powers_of_ten(low, high, expected):
    _, axes = new_figure(1, 1, width=4.0, height=3.0)
    ax = axes[0][0]
    ax.plot([0, 1], [low, high])
    ax.set_yscale("log")
    ax.set_ylim(low * 0.9, high * 1.1)
    readable_log_ticks(ax)
    ticks = visible_ticks(ax, "y")
    np.testing.assert_allclose([loc for loc, _ in ticks], expected)
    assert [label for _, label in ticks] == [f"{v:g}" for v in expected]


def test_log_axes_over_many_decades_keep_the_decade_ticks():
    _, axes = new_figure(1, 1, width=4.0, height=3.0)
    ax = axes[0][0]
    ax.plot([0, 1], [1e-8, 1e2])
    ax.set_yscale("log")
    locator = ax.yaxis.get_major_locator()
    readable_log_ticks(ax)
    assert ax.yaxis.get_major_locator() is locator


def _train(epochs, lr, allow_divergence=False):
    rng = np.random.default_rng(0)
    x, y = rng.random((40, 6)), rng.integers(0, 3, 40)
    net = build_mlp(MLPSpec(6, (8,), 3, init="normal", init_std=1.0), rng=rng, dtype=np.float64)
    return train_with_curves(
        net, loss=SoftmaxCrossEntropyLoss(), optimizer=SGD(net.parameters().values(), lr=lr),
        rng=rng, batch_size=10, train=(x, y), test=(x, y), epochs=epochs, allow_divergence=allow_divergence,
    )


@pytest.mark.parametrize(("epochs", "reason"), [(1, "completed 1 epoch"), (2, "completed 2 epochs")])
def test_stop_reason_counts_the_epochs(epochs, reason):
    assert _train(epochs, lr=0.1).stop_reason == reason


def test_expected_divergence_is_reported_without_advice():
    # After one step at lr 1e200 the two layers' product overflows float64 (> 1e308): the loss of the
    # second batch is not finite, so epoch 1 diverges and no epoch finishes.
    curves = _train(3, lr=1e200, allow_divergence=True)
    assert curves.diverged and curves.test_loss == []
    assert curves.stop_reason == "diverged as expected in epoch 1 (the loss became NaN or infinite)"


def test_mark_quick_puts_the_note_first_in_the_title_and_under_the_heading():
    fig, _ = new_figure(1, 1, width=4.0, height=3.0)
    fig.suptitle("Dropout on Fashion-MNIST")
    summary = mark_quick(fig, "# Dropout\n\n![figure](dropout.png)\n\ntext")
    assert fig.get_suptitle() == "QUICK RUN: SMOKE TEST, NOT A RESULT\nDropout on Fashion-MNIST"
    lines = summary.splitlines()
    assert lines[0] == "# Dropout" and lines[1] == ""
    assert lines[2].startswith(f"> **{QUICK_NOTE.capitalize()}.** ")
    assert lines[3:] == ["", "![figure](dropout.png)", "", "text"]
