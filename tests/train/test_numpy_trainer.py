"""NumpyTrainer: seeded batches, history, best epoch and restore-best, early stopping, schedules,
augmentation, divergence with roll-back, and the error messages."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mlpkit.engine import SGD, MSELoss, SoftmaxCrossEntropyLoss, build_mlp
from mlpkit.errors import TrainingDivergedError
from mlpkit.spec import MLPSpec
from mlpkit.train import EarlyStopping, NumpyTrainer
from mlpkit.train.schedules import make_schedule

RECORD_KEYS = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds"]


def blobs(seed: int, n: int = 90) -> tuple[np.ndarray, np.ndarray]:
    """Three Gaussian blobs in 4-D: learnable in a few epochs."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centers = np.array([[2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 2.0, 0]])
    return centers[y] + rng.standard_normal((n, 4)), y


def make_trainer(lr: float = 0.1, dtype: type = np.float64, **kwargs: Any) -> NumpyTrainer:
    rng = np.random.default_rng(0)
    net = build_mlp(MLPSpec(4, (16,), 3, init="xavier_uniform"), rng=rng, dtype=dtype)
    return NumpyTrainer(
        net,
        loss=kwargs.pop("loss", SoftmaxCrossEntropyLoss()),
        optimizer=SGD(net.parameters().values(), lr=lr),
        rng=np.random.default_rng(1),
        batch_size=kwargs.pop("batch_size", 16),
        **kwargs,
    )


def test_fit_records_every_key_each_epoch_and_learns():
    x, y = blobs(0)
    xv, yv = blobs(1, 30)
    seen: list[dict[str, Any]] = []
    history = make_trainer(on_epoch_end=seen.append).fit(x, y, xv, yv, epochs=8)
    assert [list(r) for r in history.records] == [RECORD_KEYS] * 8
    assert [r["epoch"] for r in history.records] == list(range(1, 9))
    assert seen == history.records
    assert history.records[-1]["val_accuracy"] >= 0.85  # three blobs 2 sd apart: about 0.9 is the ceiling
    assert history.records[-1]["train_loss"] < history.records[0]["train_loss"]
    assert history.stop_reason == "completed 8 epochs"


def test_one_epoch_equals_a_loop_written_out_with_the_same_permutation():
    x, y = blobs(0, 40)
    trainer = make_trainer(batch_size=16, restore_best=False)
    reference = make_trainer(batch_size=16)
    trainer.fit(x, y, epochs=1)
    order = np.random.default_rng(1).permutation(40)  # the trainer's rng, seed 1
    net, loss = reference.network, SoftmaxCrossEntropyLoss()
    opt = SGD(net.parameters().values(), lr=0.1)
    for start in range(0, 40, 16):  # batches of 16, 16, 8
        idx = order[start : start + 16]
        loss.forward(net.forward(x[idx]), y[idx])
        net.backward_params(loss.backward())
        opt.step()
    for name, param in trainer.network.named_parameters().items():
        np.testing.assert_array_equal(param.data, net.named_parameters()[name].data, err_msg=name)


def test_same_seed_same_run():
    x, y = blobs(0)
    a, b = make_trainer(), make_trainer()
    assert a.fit(x, y, epochs=3).column("train_loss") == b.fit(x, y, epochs=3).column("train_loss")


def test_restore_best_puts_back_the_best_validation_epoch():
    x, y = blobs(0)
    xv, yv = blobs(1, 30)
    kept: dict[int, dict[str, np.ndarray]] = {}
    trainer = make_trainer(lr=0.5, on_epoch_end=lambda r: kept.__setitem__(r["epoch"], trainer.weights()))
    history = trainer.fit(x, y, xv, yv, epochs=10)
    best = int(np.argmin(history.column("val_loss"))) + 1
    assert history.best_epoch == best
    for name, value in trainer.weights().items():
        np.testing.assert_array_equal(value, kept[best][name], err_msg=name)
    assert trainer.evaluate(xv, yv)[0] == pytest.approx(min(history.column("val_loss")), rel=1e-12)


def test_early_stopping_stops_after_patience_and_says_why():
    x, y = blobs(0)
    xv, yv = blobs(1, 30)
    stopper = EarlyStopping(patience=2, min_delta=10.0, mode="min")  # no epoch can improve by 10
    history = make_trainer(early_stopping=stopper).fit(x, y, xv, yv, epochs=20)
    assert len(history.records) == 3
    assert history.stop_reason.startswith(
        "early stopping: val_loss did not improve by more than 10 for 2 epochs"
    )


def test_without_validation_the_best_epoch_is_picked_by_training_loss():
    x, y = blobs(0)
    history = make_trainer().fit(x, y, epochs=4)
    assert history.best_epoch == int(np.argmin(history.column("train_loss"))) + 1
    assert history.column("val_loss") == [None] * 4


def test_schedule_sets_the_lr_of_each_epoch():
    x, y = blobs(0)
    trainer = make_trainer(schedule=make_schedule("step", 0.1, step_size=2, gamma=0.5))
    history = trainer.fit(x, y, epochs=5)
    assert history.column("lr") == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])


def test_augment_sees_training_batches_only():
    x, y = blobs(0, 40)
    xv, yv = blobs(1, 10)
    shapes: list[tuple[int, ...]] = []

    def augment(xb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        shapes.append(xb.shape)
        return xb + rng.normal(0, 0.01, xb.shape)

    make_trainer(batch_size=16, augment=augment).fit(x, y, xv, yv, epochs=1)
    assert shapes == [(16, 4), (16, 4), (8, 4)]


def test_batch_of_one_equals_a_per_sample_loop_with_the_same_permutation():
    x, y = blobs(0, 5)
    trainer = make_trainer(batch_size=1, restore_best=False)
    history = trainer.fit(x, y, epochs=1)
    reference = make_trainer(batch_size=1)
    order = np.random.default_rng(1).permutation(5)  # the trainer's rng, seed 1
    net, loss = reference.network, SoftmaxCrossEntropyLoss()
    opt = SGD(net.parameters().values(), lr=0.1)
    losses, hits = [], 0
    for i in order:  # five SGD steps on one sample each, every loss taken before its own step
        logits = net.forward(x[i : i + 1])  # (1, 3)
        losses.append(loss.forward(logits, y[i : i + 1]))
        hits += int(logits.argmax() == y[i])
        net.backward_params(loss.backward())
        opt.step()
    for name, param in trainer.network.named_parameters().items():
        np.testing.assert_array_equal(param.data, net.named_parameters()[name].data, err_msg=name)
    assert len(history.records) == 1
    assert history.records[0]["train_loss"] == pytest.approx(np.mean(losses), rel=1e-12)
    assert history.records[0]["train_accuracy"] == hits / 5


def test_divergence_names_epoch_and_batch_and_rolls_back_to_the_last_good_epoch():
    x, y = blobs(0)
    x = x * 1e3
    kept: list[dict[str, np.ndarray]] = []
    trainer = make_trainer(lr=1e-3, dtype=np.float32, on_epoch_end=lambda r: kept.append(trainer.weights()))
    trainer.fit(x, y, epochs=1)  # a good epoch at a small lr
    trainer.optimizer.lr = 1e30  # then blow up
    with pytest.raises(
        TrainingDivergedError,
        match=r"training diverged: loss is (nan|inf) at epoch 2, batch \d+ \(lr=1e\+30\)",
    ):
        trainer.fit(x, y, epochs=1)
    for name, value in trainer.weights().items():
        np.testing.assert_array_equal(value, kept[-1][name], err_msg=name)
    assert len(trainer.history.records) == 1


def test_accuracy_monitor_needs_a_classification_loss():
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((10, 4)), rng.standard_normal((10, 3))
    trainer = make_trainer(loss=MSELoss(), monitor="val_accuracy")
    with pytest.raises(ValueError, match="monitor 'val_accuracy' needs a classification loss, got MSELoss"):
        trainer.fit(x, t, x, t, epochs=1)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        make_trainer(batch_size=0)
    with pytest.raises(
        ValueError, match=r"monitor must be one of \['train_loss', 'val_accuracy', 'val_loss'\]"
    ):
        make_trainer(monitor="auc")
    x, y = blobs(0, 10)
    with pytest.raises(ValueError, match="y has 9 rows for 10 samples"):
        make_trainer().fit(x, y[:9], epochs=1)


def test_a_validation_metric_is_recorded_from_the_logits_and_monitored() -> None:
    from mlpkit.evaluate.metrics import accuracy

    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((30, 4)), rng.integers(0, 3, 30)
    net = build_mlp(MLPSpec(4, hidden_features=(6,), out_features=3), rng=rng, dtype=np.float64)
    top1 = (lambda t, logits: accuracy(t, logits.argmax(axis=1)), "max")
    trainer = NumpyTrainer(
        net, loss=SoftmaxCrossEntropyLoss(), optimizer=SGD(net.parameters().values(), lr=0.5), rng=rng,
        batch_size=8, metrics={"top1": top1}, monitor="val_top1", restore_best=False,
    )
    history = trainer.fit(x, y, x, y, epochs=3)
    for record in history.records:
        assert record["val_top1"] == record["val_accuracy"]        # the same number, two ways
    assert history.best_epoch == 1 + int(np.argmax([r["val_top1"] for r in history.records]))


def test_with_metrics_the_validation_set_goes_through_the_network_once_per_epoch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((30, 4)), rng.integers(0, 3, 30)
    net = build_mlp(MLPSpec(4, hidden_features=(6,), out_features=3), rng=rng, dtype=np.float64)
    forward, eval_rows = net.forward, []

    def counting(xb: np.ndarray) -> np.ndarray:
        if not net.training:
            eval_rows.append(len(xb))
        return forward(xb)

    monkeypatch.setattr(net, "forward", counting)
    seen: list[np.ndarray] = []

    def keep(y_true: np.ndarray, logits: np.ndarray) -> float:  # a metric that keeps what it is given
        seen.append(logits.copy())
        return 0.0

    trainer = NumpyTrainer(
        net, loss=SoftmaxCrossEntropyLoss(), optimizer=SGD(net.parameters().values(), lr=0.5), rng=rng,
        batch_size=8, metrics={"seen": (keep, "max")}, restore_best=False,
    )
    history = trainer.fit(x, y, x, y, epochs=3)
    assert eval_rows == [30, 30, 30]  # one pass over the 30 validation rows per epoch, not two
    for record, logits in zip(history.records, seen, strict=True):
        # Reference by hand from the logits the metric saw: mean of logsumexp(z) - z_y, and argmax hits.
        shifted = logits - logits.max(axis=1, keepdims=True)  # (N, C)
        nll = np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(30), y]
        assert record["val_loss"] == pytest.approx(nll.mean(), rel=1e-12)
        assert record["val_accuracy"] == np.mean(logits.argmax(axis=1) == y)
