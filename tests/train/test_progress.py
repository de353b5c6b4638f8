"""RunProgress: one bar for the whole fit, the running numbers read only when due, and the trainers'
running numbers equal to the epoch's own record."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest

import mlpkit.train.progress as progress_module
from mlpkit.engine import SGD, SoftmaxCrossEntropyLoss, build_mlp
from mlpkit.spec import MLPSpec
from mlpkit.train import NumpyTrainer
from mlpkit.train.progress import RunProgress


def test_the_bar_counts_every_batch_of_the_run_and_shows_the_epoch_and_running_numbers() -> None:
    out = io.StringIO()
    bar = RunProgress(epochs=2, batches=3, enabled=True, first_epoch=4, total_epochs=5, refresh=0.0, file=out)
    assert bar.total == 6
    for epoch in (4, 5):
        bar.start_epoch(epoch)
        for i in range(3):
            bar.step(lambda i=i: (1.0 / (i + 1), 0.25 * i))
    text = out.getvalue()
    assert "epoch 5/5" in text and "loss 0.3333, acc 0.5000" in text
    assert "6/6" in text                           # the whole run's count, so its ETA is the run's
    bar.close()


def test_the_running_numbers_are_read_only_when_the_bar_redraws() -> None:
    calls = []
    bar = RunProgress(epochs=1, batches=100, enabled=True, refresh=3600.0, file=io.StringIO())
    bar.start_epoch(1)
    for _ in range(100):
        bar.step(lambda: calls.append(1) or (0.0, None))
    bar.close()
    assert len(calls) == 1                          # the first batch of the epoch only


def test_a_disabled_bar_never_reads_the_numbers() -> None:
    bar = RunProgress(epochs=3, batches=4, enabled=False)
    bar.start_epoch(1)
    bar.step(lambda: pytest.fail("read by a disabled bar"))
    bar.close()


def record_progress(monkeypatch: pytest.MonkeyPatch) -> list[list[tuple[float, float | None]]]:
    """Stand in for the bar: per epoch, the running numbers it was shown after each batch."""
    shown: list[list[tuple[float, float | None]]] = []

    class Recording(RunProgress):
        def start_epoch(self, epoch: int) -> None:
            shown.append([])

        def step(self, stats: Any) -> None:
            shown[-1].append(stats())

    monkeypatch.setattr("mlpkit.train.loop.RunProgress", Recording)
    return shown


@pytest.mark.parametrize("batch_size", [1, 7])
def test_the_numpy_trainer_shows_the_running_mean_that_becomes_the_epoch_record(
    batch_size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    shown = record_progress(monkeypatch)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((20, 4)), rng.integers(0, 3, 20)
    net = build_mlp(MLPSpec(4, hidden_features=(5,), out_features=3), rng=rng, dtype=np.float64)
    trainer = NumpyTrainer(
        net, loss=SoftmaxCrossEntropyLoss(), optimizer=SGD(net.parameters().values(), lr=0.1), rng=rng,
        batch_size=batch_size, progress=True,
    )
    history = trainer.fit(x, y, epochs=2)
    assert [len(epoch) for epoch in shown] == [-(-20 // batch_size)] * 2      # one step per batch
    for epoch, record in zip(shown, history.records, strict=True):
        loss, acc = epoch[-1]
        assert loss == pytest.approx(record["train_loss"], rel=1e-12)
        assert acc == pytest.approx(record["train_accuracy"], rel=1e-12)
    assert progress_module.RunProgress is RunProgress                  # the module itself is untouched


def test_the_torch_trainer_shows_the_running_mean_that_becomes_the_epoch_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    from mlpkit.torch_engine import build_torch_mlp
    from mlpkit.train.torch_trainer import TorchTrainer, build_loss, build_optimizer

    shown = record_progress(monkeypatch)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((20, 4)), rng.integers(0, 3, 20)
    model = build_torch_mlp(MLPSpec(4, hidden_features=(5,), out_features=3), rng=rng, dtype=torch.float64)
    trainer = TorchTrainer(
        model, loss=build_loss("cross_entropy"), optimizer=build_optimizer("sgd", model, lr=0.1), rng=rng,
        batch_size=7, device="cpu", progress=True,
    )
    history = trainer.fit(x, y, epochs=2)
    assert [len(epoch) for epoch in shown] == [3, 3]
    for epoch, record in zip(shown, history.records, strict=True):
        loss, acc = epoch[-1]
        assert loss == pytest.approx(record["train_loss"], rel=1e-12)
        assert acc == pytest.approx(record["train_accuracy"], rel=1e-12)
