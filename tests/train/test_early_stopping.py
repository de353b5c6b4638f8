"""EarlyStopping: the framework-free state machine both trainers and the estimators share."""

from __future__ import annotations

import math

import pytest

from mlpkit.train import EarlyStopping


def test_min_mode_counts_epochs_without_an_improvement_larger_than_min_delta():
    stopper = EarlyStopping(patience=2, min_delta=0.1, mode="min", monitor="val_loss")
    # 1.0 best; 0.95 is not better by more than 0.1; 0.85 is (1.0 - 0.1 = 0.9 > 0.85); then two stalls.
    decisions = [stopper.update(s) for s in (1.0, 0.95, 0.85, 0.80, 0.78)]
    assert decisions == [False, False, False, False, True]
    assert (stopper.best_score, stopper.best_epoch, stopper.epoch) == (0.85, 3, 5)
    assert stopper.reason == "val_loss did not improve by more than 0.1 for 2 epochs (best 0.85 at epoch 3)"


def test_max_mode_improves_upwards():
    stopper = EarlyStopping(patience=1, mode="max", monitor="val_accuracy")
    assert [stopper.update(s) for s in (0.5, 0.7, 0.7)] == [False, False, True]
    assert stopper.best_epoch == 2 and stopper.improved is False


def test_nan_never_counts_as_an_improvement():
    stopper = EarlyStopping(patience=2)
    stopper.update(math.nan)
    assert stopper.best_epoch == 0 and math.isnan(stopper.best_score)
    stopper.update(1.0)
    assert stopper.best_epoch == 2
    stopper.update(math.nan)
    assert stopper.bad_epochs == 1


def test_state_dict_round_trip_continues_identically():
    a = EarlyStopping(patience=3)
    for s in (1.0, 0.9, 0.95):
        a.update(s)
    b = EarlyStopping(patience=3)
    b.load_state_dict(a.state_dict())
    assert [a.update(s) for s in (0.97, 0.99)] == [b.update(s) for s in (0.97, 0.99)] == [False, True]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"patience": 0}, "patience must be a positive int, got 0"),
        ({"min_delta": -0.1}, "min_delta must be a non-negative float, got -0.1"),
        ({"mode": "up"}, r"mode must be one of \['max', 'min'\], got 'up'"),
    ],
)
def test_bad_arguments_name_the_parameter_and_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EarlyStopping(**kwargs)
