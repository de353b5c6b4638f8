"""Nim: a hidden layer learns the nim-sum rule on held-out positions, a linear model cannot."""

from __future__ import annotations

import numpy as np
import pytest

from mlpkit.experiments import nim
from mlpkit.experiments.nim import balanced_accuracy, balanced_split, nim_score


@pytest.mark.parametrize(("num_heaps", "bits"), [(2, 3), (2, 4)])
def test_mlp_beats_the_linear_baseline_on_held_out_positions(num_heaps, bits):
    # One seed for both models, so they share the splits; 5 splits, because with 2 heaps of 3 bits
    # only 2 of the 19 held-out positions are losing ones.
    mlp, linear = (
        nim_score(num_heaps, bits, hidden, rng=np.random.default_rng(0), repeats=5, steps=1000)
        for hidden in ((64,), ())
    )
    assert mlp.n_test == linear.n_test and mlp.n_test_losing == linear.n_test_losing
    assert mlp.balanced_accuracy > linear.balanced_accuracy + 0.3
    assert linear.balanced_accuracy < 0.65                             # no hyperplane separates parity
    assert mlp.train_balanced_accuracy == 1.0                          # the MLP fits every training position


def test_models_compared_on_one_game_see_the_same_splits(monkeypatch):
    held_out: list[list[int]] = []

    def recording_split(y, **kwargs):
        train, balanced, test = balanced_split(y, **kwargs)
        held_out.append(sorted(test.tolist()))
        return train, balanced, test

    monkeypatch.setattr(nim, "balanced_split", recording_split)
    for hidden in ((16,), ()):
        nim_score(2, 3, hidden, rng=np.random.default_rng(7), repeats=3, steps=5)
    assert held_out[:3] == held_out[3:]
    assert held_out[0] != held_out[1]                                  # and the repeats differ


def test_plain_accuracy_flatters_the_majority_rule():
    score = nim_score(2, 3, (), rng=np.random.default_rng(0), steps=10)
    assert score.majority_accuracy == pytest.approx(1 - score.n_test_losing / score.n_test)
    assert score.majority_accuracy > 0.85                              # 1 − 2^-3 of positions are won


def test_balanced_split_holds_out_each_class_and_balances_the_rest():
    y = np.array([0] * 8 + [1] * 56)                                   # 2 heaps of 3 bits
    train, balanced, test = balanced_split(y, test_fraction=0.3, rng=np.random.default_rng(0))
    assert not set(train) & set(test)
    assert sorted([*train, *test]) == list(range(64))
    assert np.bincount(y[test]).tolist() == [2, 17]                    # round(0.3 · 8), round(0.3 · 56)
    assert np.bincount(y[balanced]).tolist() == [39, 39]
    assert set(balanced) == set(train)
    counts = np.bincount(balanced[y[balanced] == 0])
    assert counts[counts > 0].max() - counts[counts > 0].min() <= 1    # repeated evenly


def test_balanced_accuracy():
    y = np.array([0, 0, 1, 1, 1, 1])
    assert balanced_accuracy(y, np.array([0, 1, 1, 1, 1, 1])) == pytest.approx(0.75)
    assert balanced_accuracy(y, np.ones(6, dtype=int)) == 0.5
    message = r"y_true and y_pred must be 1-D of one shape, got \(6,\) and \(5,\)"
    with pytest.raises(ValueError, match=message):
        balanced_accuracy(y, np.ones(5, dtype=int))


@pytest.fixture(scope="module")
def small_study():
    """One split, a few steps, 2 heaps of 2 bits: the text is under test, not the scores."""
    return nim.nim_study(rng=np.random.default_rng(0), heaps=(2,), heaps_bits=2, bits=(2,), widths=(0, 4),
                         width_game=(2, 2), hidden_features=4, steps=5, repeats=1)


def test_summary_words_are_separated_and_counts_agree(small_study):
    summary = nim._summary(small_study)
    prose = " ".join(summary.split())                                  # as Markdown renders it
    assert "are held out; models train on the rest, with the rare losing positions" in prose
    assert "Mean of 1 split; momentum SGD, 5 steps." in prose
    assert "split(s)" not in summary and "modelstrain" not in summary


def test_figure_titles_count_with_their_nouns(small_study):
    figure = nim.plot_nim(small_study)
    assert figure.get_suptitle().endswith("(Bouton 1901); mean of 1 split")
    titles = [ax.get_title() for ax in figure.axes]
    assert titles == [
        "held-out positions, 2 bits", "held-out positions, 2 heaps", "hidden width, 2 heaps x 2 bits"
    ]
