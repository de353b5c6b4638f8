"""train_run / evaluate_run / predict_run on small generated Fashion-MNIST-shaped IDX files.

The generated data has learnable structure (each class is a fixed random pattern of lit pixels
plus noise), so a few epochs reach an accuracy far above the 10% of chance.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file

import mlpkit.train.numpy_checkpoint as numpy_checkpoint
from fakedata import N_TEST, N_TRAIN, interrupt_after, snapshot, write_fake_fashion_mnist
from mlpkit.config import DataConfig, EarlyStoppingConfig, ModelConfig, OptimConfig, RunConfig, RunSettings
from mlpkit.data.fashion_mnist import FASHION_MNIST_CLASSES
from mlpkit.data.idx import write_idx
from mlpkit.errors import (
    CheckpointError,
    ConfigError,
    DataNotFoundError,
    OutputError,
    TrainingDivergedError,
)
from mlpkit.run import (
    RUN_FILES,
    EpochWriter,
    Predictions,
    evaluate_run,
    load_run,
    predict_run,
    resume_run,
    train_run,
)
from mlpkit.rundir import PREDICTED_FILE, PREPROCESSING_FILE, RESIDUALS_FILE, TABLE_FILE
from mlpkit.tasks.fashion_mnist import pixels_to_features, split_validation
from mlpkit.train import NumpyTrainer

# table.json is the CTR task's; the preprocessing and the regression plots are the table task's.
IMAGE_RUN_FILES = set(RUN_FILES) - {TABLE_FILE, PREPROCESSING_FILE, PREDICTED_FILE, RESIDUALS_FILE}

N_VAL = 60
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def small_config(data_dir: Path, out: Path | None, **sections: dict[str, Any]) -> RunConfig:
    """A run that takes about a second: 784-32-10, 4 epochs of batch 32 on 240 images."""
    config = RunConfig(
        model=ModelConfig(hidden_features=(32,)),
        optim=OptimConfig(lr=0.3, batch_size=32, epochs=4),
        early_stopping=EarlyStoppingConfig(),
        data=DataConfig(data_dir=str(data_dir), val_size=N_VAL, download=False, verify=False),
        run=RunSettings(seed=3, out=None if out is None else str(out)),
    )
    return config.with_overrides(sections) if sections else config


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_fashion_mnist(tmp_path_factory.mktemp("fake-fashion-mnist"))


@pytest.fixture(scope="module")
def trained(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return train_run(small_config(data_dir, tmp_path_factory.mktemp("runs") / "run"))


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def model_tensors(path: Path) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    with safe_open(str(path), framework="numpy") as file:
        return {name: tuple(file.get_tensor(name).shape) for name in file.keys()}, file.metadata()  # noqa: SIM118


# -- data preparation ------------------------------------------------------------------------------


def test_pixels_to_features_flattens_and_scales_to_unit_interval() -> None:
    images = np.arange(2 * 28 * 28).reshape(2, 28, 28) % 256
    x = pixels_to_features(images.astype(np.uint8), np.float64)
    assert x.shape == (2, 784) and x.dtype == np.float64
    np.testing.assert_array_equal(x, images.reshape(2, 784) / 255.0)
    assert x.min() == 0.0 and x.max() == 1.0


def test_split_validation_is_a_seeded_partition() -> None:
    train, val = split_validation(100, 20, np.random.default_rng(0))
    assert len(val) == 20 and len(train) == 80
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(100))
    again, _ = split_validation(100, 20, np.random.default_rng(0))
    np.testing.assert_array_equal(train, again)


def test_split_validation_rejects_a_validation_set_as_large_as_the_data() -> None:
    with pytest.raises(
        ConfigError, match=r"val_size must be smaller than the training set \(100 images\), got 100"
    ):
        split_validation(100, 100, np.random.default_rng(0))


# -- one run ---------------------------------------------------------------------------------------


def test_run_writes_every_file_and_learns(trained: Any) -> None:
    run_dir = trained.run_dir
    names = {p.name for p in run_dir.iterdir()}
    tensors = {n for n in names if n.startswith("checkpoint-epoch0004-") and n.endswith(".safetensors")}
    assert names == {*IMAGE_RUN_FILES, "checkpoint.json", *tensors} and len(tensors) == 1  # no temp files
    for png in ("curves.png", "predictions.png"):
        assert (run_dir / png).read_bytes()[:8] == PNG_MAGIC
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary == trained.summary
    assert summary["status"] == "completed"
    assert summary["test_accuracy"] > 0.8  # chance is 0.1
    assert summary["n_train"] == N_TRAIN - N_VAL and summary["n_val"] == N_VAL and summary["n_test"] == N_TEST


def test_metrics_jsonl_has_one_record_per_epoch(trained: Any) -> None:
    records = read_metrics(trained.run_dir)
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    assert records == trained.history.records
    for record in records:
        assert set(record) >= {
            "epoch",
            "train_loss",
            "train_accuracy",
            "val_loss",
            "val_accuracy",
            "lr",
            "seconds",
        }


def test_summary_names_the_best_validation_epoch_and_its_weights(trained: Any) -> None:
    summary, records = trained.summary, read_metrics(trained.run_dir)
    best = min(records, key=lambda r: r["val_loss"])
    assert summary["best_epoch"] == best["epoch"]
    assert summary["best_val_loss"] == best["val_loss"]
    assert summary["saved_weights"] == "best_epoch"
    assert summary["test_accuracy"] == summary["best_epoch_test_accuracy"]
    assert summary["stop_reason"] == "completed 4 epochs" and summary["epochs_run"] == 4
    assert summary["wall_seconds"] > 0
    assert summary["mlpkit_version"] and summary["numpy_version"] == np.__version__


def test_model_file_has_the_spec_tensors_and_metadata(trained: Any) -> None:
    shapes, metadata = model_tensors(trained.run_dir / "model.safetensors")
    spec = trained.config.model.to_spec(784, 10)
    assert (
        shapes
        == spec.linear_shapes()
        == {"0.weight": (32, 784), "0.bias": (32,), "2.weight": (10, 32), "2.bias": (10,)}
    )
    assert json.loads(metadata["spec"]) == spec.to_dict()
    assert json.loads(metadata["classes"]) == list(FASHION_MNIST_CLASSES)
    assert int(metadata["epoch"]) == trained.summary["best_epoch"]


def test_config_json_is_the_config_without_the_output_directory(trained: Any) -> None:
    recorded = json.loads((trained.run_dir / "config.json").read_text())
    assert recorded["run"]["out"] is None
    assert RunConfig.from_dict(recorded) == dataclasses.replace(
        trained.config, run=dataclasses.replace(trained.config.run, out=None)
    )


def test_report_links_the_figures_and_tabulates_every_epoch(trained: Any) -> None:
    report = (trained.run_dir / "report.md").read_text()
    assert "](curves.png)" in report and "](predictions.png)" in report
    assert "## Test confusion matrix" in report and "| Ankle boot |" in report
    assert f"**{trained.summary['best_epoch']}** (best)" in report
    assert len(re.findall(r"^\| (\*\*)?\d+(\*\*)? ", report, flags=re.MULTILINE)) >= 4


def test_evaluate_run_reproduces_the_summary(trained: Any) -> None:
    scores = evaluate_run(trained.run_dir)
    assert scores["test_accuracy"] == trained.summary["test_accuracy"]
    assert scores["test_loss"] == pytest.approx(trained.summary["test_loss"], rel=1e-12)
    assert scores["n_test"] == N_TEST


def test_no_validation_set_keeps_the_last_epoch_in_float64(data_dir: Path, tmp_path: Path) -> None:
    config = small_config(
        data_dir,
        tmp_path / "run",
        data={"val_size": 0},
        early_stopping={"restore_best": False},
        run={"dtype": "float64"},
    )
    summary = train_run(config).summary
    assert summary["monitor"] == "train_loss" and summary["n_val"] == 0
    assert summary["best_val_loss"] is None
    assert summary["saved_weights"] == "last_epoch"
    assert summary["test_accuracy"] == summary["final_test_accuracy"]
    assert all(r["val_loss"] is None for r in read_metrics(tmp_path / "run"))
    _, metadata = model_tensors(tmp_path / "run" / "model.safetensors")
    assert int(metadata["epoch"]) == summary["epochs_run"]
    assert load_run(tmp_path / "run").network.dtype == np.float64


def test_early_stopping_stops_and_says_why(data_dir: Path, tmp_path: Path) -> None:
    # min_delta = 10 makes every epoch after the first a non-improvement.
    config = small_config(
        data_dir, tmp_path / "run", early_stopping={"patience": 1, "min_delta": 10.0}, optim={"epochs": 9}
    )
    summary = train_run(config).summary
    assert summary["epochs_run"] == 2
    assert summary["stop_reason"].startswith("early stopping: val_loss did not improve by more than 10")


# -- failures --------------------------------------------------------------------------------------


def _diverge_on_call(monkeypatch: pytest.MonkeyPatch, call: int, *, poison_weights: bool = False) -> None:
    """Make NumpyTrainer.train_epoch fail on its ``call``-th call: raise, or leave NaN weights."""
    original = NumpyTrainer.train_epoch
    calls = 0

    def train_epoch(self: NumpyTrainer, x: np.ndarray, y: np.ndarray) -> tuple[float, float | None]:
        nonlocal calls
        calls += 1
        result = original(self, x, y)
        if calls == call:
            if not poison_weights:
                raise TrainingDivergedError(f"training diverged: loss is nan at epoch {call}, batch 1")
            next(iter(self.network.parameters().values())).data[0, 0] = np.nan
        return result

    monkeypatch.setattr(NumpyTrainer, "train_epoch", train_epoch)


def test_divergence_keeps_finished_epochs_and_the_last_good_model(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _diverge_on_call(monkeypatch, 3)
    run_dir = tmp_path / "run"
    with pytest.raises(
        TrainingDivergedError, match=r"diverged.*2 finished epoch\(s\) are in .*metrics.jsonl"
    ):
        train_run(small_config(data_dir, run_dir, early_stopping={"restore_best": False}))
    assert [r["epoch"] for r in read_metrics(run_dir)] == [1, 2]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "diverged" and "loss is nan at epoch 3" in summary["stop_reason"]
    assert summary["epochs_run"] == 2 and summary["saved_model_epoch"] == 2
    _, metadata = model_tensors(run_dir / "model.safetensors")
    assert metadata["epoch"] == "2"
    assert not (run_dir / "report.md").exists()


def test_weights_that_overflow_after_a_finite_loss_are_never_saved(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _diverge_on_call(monkeypatch, 2, poison_weights=True)
    run_dir = tmp_path / "run"
    with pytest.raises(TrainingDivergedError, match="weights hold NaN or inf after epoch 2"):
        train_run(small_config(data_dir, run_dir, early_stopping={"restore_best": False}))
    assert [r["epoch"] for r in read_metrics(run_dir)] == [1]
    _, metadata = model_tensors(run_dir / "model.safetensors")
    assert metadata["epoch"] == "1"
    assert np.isfinite(load_run(run_dir).network.parameters()["0.weight"].data).all()


def test_unwritable_output_fails_before_the_data_is_read(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file")
    # The data directory does not exist either: the output check must come first.
    with pytest.raises(OutputError, match=re.escape(str(blocker / "run"))):
        train_run(small_config(tmp_path / "no-data", blocker / "run"))


def test_existing_run_directory_is_left_untouched(data_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "model.safetensors").write_bytes(b"precious")
    with pytest.raises(
        OutputError, match=rf"run directory {re.escape(str(run_dir))} already exists and is not empty"
    ):
        train_run(small_config(data_dir, run_dir))
    assert [p.name for p in run_dir.iterdir()] == ["model.safetensors"]
    assert (run_dir / "model.safetensors").read_bytes() == b"precious"


def test_overwrite_replaces_only_the_run_files(data_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "model.safetensors").write_bytes(b"stale")
    (run_dir / "notes.txt").write_text("mine")
    train_run(small_config(data_dir, run_dir, optim={"epochs": 1}), overwrite=True)
    assert (run_dir / "notes.txt").read_text() == "mine"
    assert load_run(run_dir).spec.hidden_features == (32,)


def test_a_run_that_cannot_load_its_data_leaves_no_directory(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="not found in data_dir"):
        train_run(small_config(tmp_path / "no-data", tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_default_run_directory_is_timestamped_under_runs(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = train_run(small_config(data_dir, None, optim={"epochs": 1}, run={"name": "tiny run"}))
    assert result.run_dir.parent == Path("runs")
    assert re.fullmatch(r"\d{8}-\d{6}-tiny-run", result.run_dir.name)
    assert (tmp_path / result.run_dir / "summary.json").is_file()


# -- resume ----------------------------------------------------------------------------------------


RESUMABLE = {
    "model": {"dropout": 0.2},                    # the dropout generator is part of the checkpoint
    "optim": {"optimizer": "sgd", "momentum": 0.9, "lr": 0.05, "schedule": "plateau", "factor": 0.5,
              "schedule_patience": 0},
    "early_stopping": {"patience": 3, "monitor": "val_accuracy"},
    "data": {"augment": "shift_flip"},            # so is the training generator that shifts and flips
    "run": {"checkpoint_interval": 0},            # a checkpoint after every epoch: the cut falls on one
}


def without_seconds(run_dir: Path) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in read_metrics(run_dir)]


def assert_same_weights(first: Path, second: Path) -> None:
    a, b = load_file(str(first / "model.safetensors")), load_file(str(second / "model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_an_interrupted_numpy_run_resumed_equals_the_uninterrupted_run_bit_for_bit(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    whole = train_run(small_config(data_dir, tmp_path / "whole", **RESUMABLE))
    with pytest.raises(KeyboardInterrupt):
        train_run(small_config(data_dir, tmp_path / "cut", **RESUMABLE), on_epoch_end=interrupt_after(2))
    assert [r["epoch"] for r in read_metrics(tmp_path / "cut")] == [1, 2]
    assert not (tmp_path / "cut" / "summary.json").exists()
    assert f"continue with: mlpkit train --resume {tmp_path / 'cut'}" in caplog.text

    resumed = resume_run(tmp_path / "cut")
    assert resumed.summary["engine"] == "numpy" and resumed.summary["resumed_at_epoch"] == 2
    assert without_seconds(tmp_path / "cut") == without_seconds(tmp_path / "whole")
    assert_same_weights(tmp_path / "cut", tmp_path / "whole")
    for key in ("test_accuracy", "test_loss", "best_epoch", "stop_reason", "epochs_run"):
        assert resumed.summary[key] == whole.summary[key], key


def test_a_metrics_line_written_after_the_last_numpy_checkpoint_is_replayed(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    whole = train_run(small_config(data_dir, tmp_path / "whole", **RESUMABLE))
    save = numpy_checkpoint.save_numpy_checkpoint

    def no_checkpoint_after_2(run_dir: Path, trainer: Any, **kwargs: Any) -> None:
        if trainer.epochs_done > 2:
            raise KeyboardInterrupt                # killed after epoch 3's metrics line and model
        save(run_dir, trainer, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(numpy_checkpoint, "save_numpy_checkpoint", no_checkpoint_after_2)
        with pytest.raises(KeyboardInterrupt):
            train_run(small_config(data_dir, tmp_path / "cut", **RESUMABLE))
    assert len(read_metrics(tmp_path / "cut")) == 3
    assert json.loads((tmp_path / "cut" / "checkpoint.json").read_text())["epoch"] == 2
    assert "interrupted; the checkpoint holds epoch 2; continue with" in caplog.text  # not epoch 3
    resume_run(tmp_path / "cut")
    assert without_seconds(tmp_path / "cut") == without_seconds(whole.run_dir)
    assert_same_weights(tmp_path / "cut", whole.run_dir)


@pytest.mark.parametrize(("interval", "checkpointed"), [(0.0, [1, 2, 3, 4]), (10.0, [1, 3, 4])])
def test_checkpoints_follow_the_interval_and_always_the_first_and_last_epoch(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, interval: float, checkpointed: list[int]
) -> None:
    # A clock that advances 6 s an epoch: 0, 6, 12, 18 at the ends of epochs 1 to 4.
    now = [0.0]
    monkeypatch.setattr(EpochWriter, "clock", staticmethod(lambda: now[0]))
    saved: list[int] = []
    save = numpy_checkpoint.save_numpy_checkpoint

    def recording(run_dir: Path, trainer: Any, **kwargs: Any) -> None:
        saved.append(trainer.epochs_done)
        save(run_dir, trainer, **kwargs)

    def tick(run_dir: Path, record: Any) -> None:
        now[0] += 6.0

    monkeypatch.setattr(numpy_checkpoint, "save_numpy_checkpoint", recording)
    config = small_config(data_dir, tmp_path / "run", run={"checkpoint_interval": interval})
    train_run(config, on_epoch_end=tick)
    assert saved == checkpointed  # 10 s: epoch 3 is the first end 10 s or more after epoch 1's


def test_metrics_lines_are_fsynced_with_each_checkpoint_before_it_not_every_epoch(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Epochs 1 and 4 are checkpointed (a clock that stands still, the default 10 s interval).
    monkeypatch.setattr(EpochWriter, "clock", staticmethod(lambda: 0.0))
    events: list[str] = []
    fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        name = Path(os.readlink(f"/proc/self/fd/{fd}")).name
        if name == "metrics.jsonl":
            events.append(f"sync {len(read_metrics(tmp_path / 'run'))}")
        fsync(fd)

    save = numpy_checkpoint.save_numpy_checkpoint

    def recording_save(run_dir: Path, trainer: Any, **kwargs: Any) -> None:
        events.append(f"checkpoint {trainer.epochs_done}")
        save(run_dir, trainer, **kwargs)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(numpy_checkpoint, "save_numpy_checkpoint", recording_save)
    train_run(small_config(data_dir, tmp_path / "run"))
    before_finish = events[: events.index("checkpoint 4") + 1]
    assert before_finish == ["sync 1", "checkpoint 1", "sync 4", "checkpoint 4"]


def test_a_run_killed_between_checkpoints_replays_the_epochs_since_to_the_same_result(
    data_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The default interval (10 s) on a clock that stands still: epoch 1 is checkpointed, and the
    # last epoch of a whole run; Ctrl-C arrives while epoch 4 trains.
    monkeypatch.setattr(EpochWriter, "clock", staticmethod(lambda: 0.0))
    sections = {k: v for k, v in RESUMABLE.items() if k != "run"}
    whole = train_run(small_config(data_dir, tmp_path / "whole", **sections))
    assert json.loads((whole.run_dir / "checkpoint.json").read_text())["epoch"] == whole.summary["epochs_run"]
    original = NumpyTrainer.train_epoch

    def train_epoch(self: NumpyTrainer, x: np.ndarray, y: np.ndarray) -> tuple[float, float | None]:
        if self.epochs_done == 3:
            raise KeyboardInterrupt
        return original(self, x, y)

    with monkeypatch.context() as patch:
        patch.setattr(NumpyTrainer, "train_epoch", train_epoch)
        with pytest.raises(KeyboardInterrupt):
            train_run(small_config(data_dir, tmp_path / "cut", **sections))
    assert [r["epoch"] for r in read_metrics(tmp_path / "cut")] == [1, 2, 3]
    assert json.loads((tmp_path / "cut" / "checkpoint.json").read_text())["epoch"] == 1
    # The model file goes with the checkpoint: epoch 1's weights, though epochs 2 and 3 were better.
    with safe_open(tmp_path / "cut" / "model.safetensors", "np") as f:
        assert f.metadata()["epoch"] == "1"
    assert "interrupted; the checkpoint holds epoch 1; continue with" in caplog.text
    resumed = resume_run(tmp_path / "cut")
    assert resumed.summary["resumed_at_epoch"] == 1
    assert without_seconds(tmp_path / "cut") == without_seconds(whole.run_dir)
    assert_same_weights(tmp_path / "cut", whole.run_dir)


def test_resume_takes_a_new_checkpoint_interval_and_records_it(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(EpochWriter, "clock", staticmethod(lambda: 0.0))   # 10 s never pass
    with pytest.raises(KeyboardInterrupt):
        train_run(small_config(data_dir, tmp_path / "cut", optim={"epochs": 6}),
                  on_epoch_end=interrupt_after(2))
    saved: list[int] = []
    save = numpy_checkpoint.save_numpy_checkpoint

    def recording(run_dir: Path, trainer: Any, **kwargs: Any) -> None:
        saved.append(trainer.epochs_done)
        save(run_dir, trainer, **kwargs)

    monkeypatch.setattr(numpy_checkpoint, "save_numpy_checkpoint", recording)
    with caplog.at_level("INFO"):
        resume_run(tmp_path / "cut", checkpoint_interval=0)
    assert saved == [3, 4, 5, 6]  # every epoch now; the default interval would have saved 3 and 6
    assert json.loads((tmp_path / "cut" / "config.json").read_text())["run"]["checkpoint_interval"] == 0
    assert "resuming with [run] checkpoint_interval: 10.0 -> 0" in caplog.text
    assert "differs from the configuration" not in caplog.text


def test_a_hook_that_stops_the_run_leaves_its_epoch_checkpointed(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a pruned trial of `mlpkit tune` relies on: --resume goes on from the epoch it stopped at.
    monkeypatch.setattr(EpochWriter, "clock", staticmethod(lambda: 0.0))
    with pytest.raises(KeyboardInterrupt):
        train_run(small_config(data_dir, tmp_path / "cut"), on_epoch_end=interrupt_after(2))
    assert json.loads((tmp_path / "cut" / "checkpoint.json").read_text())["epoch"] == 2


def test_resuming_a_finished_numpy_run_changes_nothing(
    trained: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    copy = shutil.copytree(trained.run_dir, tmp_path / "copy")
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(copy.iterdir())}
    with caplog.at_level("INFO"):
        result = resume_run(copy)
    assert "nothing to train: 4 of 4 epochs are done" in caplog.text
    # Not one byte rewritten: summary.json keeps the wall time of the run that trained.
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(copy.iterdir())} == before
    assert result.summary == trained.summary


def test_resume_with_more_epochs_extends_the_run_and_counts_all_of_its_time(
    trained: Any, tmp_path: Path
) -> None:
    copy = shutil.copytree(trained.run_dir, tmp_path / "copy")
    result = resume_run(copy, epochs=6)
    assert result.summary["epochs_run"] == 6 and result.summary["resumed_at_epoch"] == 4
    assert json.loads((copy / "config.json").read_text())["optim"]["epochs"] == 6
    records = [json.loads(line) for line in (copy / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3, 4, 5, 6]
    # Cumulative: the first four epochs' wall time is part of the total, not forgotten.
    assert result.summary["wall_seconds"] > trained.summary["wall_seconds"]
    assert result.summary["wall_seconds"] >= sum(r["seconds"] for r in records)


def test_resume_with_fewer_epochs_than_trained_is_refused(trained: Any, tmp_path: Path) -> None:
    copy = shutil.copytree(trained.run_dir, tmp_path / "copy")
    before = snapshot(copy)
    with pytest.raises(ConfigError, match=r"--epochs 2 is fewer than the 4 epochs .* has trained; pass more"):
        resume_run(copy, epochs=2)
    assert snapshot(copy) == before


def test_numpy_resume_with_another_architecture_names_the_tensor_and_changes_nothing(
    trained: Any, tmp_path: Path
) -> None:
    copy = shutil.copytree(trained.run_dir, tmp_path / "copy")
    config = json.loads((copy / "config.json").read_text())
    config["model"]["hidden_features"] = [16]
    (copy / "config.json").write_text(json.dumps(config))
    before = {p.name: p.read_bytes() for p in sorted(copy.iterdir())}
    with pytest.raises(
        CheckpointError,
        match=r"different architecture: tensor '0.weight' has shape \(32, 784\) in the checkpoint "
        r"but \(16, 784\) in the model",
    ):
        resume_run(copy)
    assert {p.name: p.read_bytes() for p in sorted(copy.iterdir())} == before


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"optim": {"optimizer": "adam"}}, r"was written with optimizer SGD, this run uses Adam"),
        ({"model": {"dropout": 0.5}}, r"has dropout after layers \[\], this network after \['2'\]"),
        ({"optim": {"schedule": "cosine"}}, r"was written with schedule None, this run uses 'cosine'"),
        ({"run": {"dtype": "float64"}}, r"tensor '0.weight' is float32 in the checkpoint but float64"),
        # The best-epoch tracker and early stopping hold best *losses*: no accuracy could beat them.
        ({"early_stopping": {"monitor": "val_accuracy"}},
         r"was written with monitor 'val_loss', this run uses 'val_accuracy'"),
    ],
)
def test_numpy_resume_under_another_setup_names_the_mismatch(
    trained: Any, tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    copy = shutil.copytree(trained.run_dir, tmp_path / "copy")
    config = json.loads((copy / "config.json").read_text())
    for section, values in change.items():
        config[section].update(values)
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=message):
        resume_run(copy)


def test_numpy_checkpoints_keep_any_bit_generator_and_refuse_another_one(tmp_path: Path) -> None:
    from mlpkit.engine import SGD, SoftmaxCrossEntropyLoss, build_mlp
    from mlpkit.spec import MLPSpec
    from mlpkit.train import NumpyTrainer
    from mlpkit.train.numpy_checkpoint import load_numpy_checkpoint, save_numpy_checkpoint

    def trainer(bit_generator: type) -> NumpyTrainer:
        rng = np.random.Generator(bit_generator(0))                     # weights, dropout, batches
        net = build_mlp(MLPSpec(4, (6,), 3, dropout=0.5), rng=rng)
        return NumpyTrainer(net, loss=SoftmaxCrossEntropyLoss(), optimizer=SGD(net.parameters().values()),
                            rng=rng, batch_size=4)

    x, y = np.random.default_rng(0).random((8, 4)), np.arange(8) % 3
    mt = trainer(np.random.MT19937)                                   # its state holds an array
    mt.fit(x, y, epochs=1)
    save_numpy_checkpoint(tmp_path, mt)
    again = trainer(np.random.MT19937)
    load_numpy_checkpoint(tmp_path, again)
    assert again.rng.random() == mt.rng.random()                        # the generator came back exactly
    philox = trainer(np.random.Philox)
    before = {k: p.data.copy() for k, p in philox.network.named_parameters().items()}
    message = r"dropout generator of layer 2 is 'MT19937', this run's is 'Philox'"
    with pytest.raises(CheckpointError, match=message):
        load_numpy_checkpoint(tmp_path, philox)
    for name, param in philox.network.named_parameters().items():          # refused before any change
        np.testing.assert_array_equal(param.data, before[name])
    assert philox.optimizer.step_count == 0


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("truncate", r"checkpoint tensors file .* is truncated or corrupted: \d+ bytes, expected \d+"),
        ("format", r"checkpoint.json is not an mlpkit NumPy checkpoint "
                   r"\(format 'mlpkit-numpy-checkpoint' expected, found 'mlpkit-torch-checkpoint'\)"),
    ],
)
def test_a_damaged_or_foreign_numpy_checkpoint_is_a_clear_error(
    trained: Any, tmp_path: Path, damage: str, message: str
) -> None:
    copy = shutil.copytree(trained.run_dir, tmp_path / "copy")
    if damage == "truncate":
        tensors = next(copy.glob("checkpoint-epoch*.safetensors"))
        tensors.write_bytes(tensors.read_bytes()[:-100])
    else:
        state = json.loads((copy / "checkpoint.json").read_text())
        state["format"] = "mlpkit-torch-checkpoint"
        (copy / "checkpoint.json").write_text(json.dumps(state))
    before = {p.name: p.read_bytes() for p in sorted(copy.iterdir())}
    with pytest.raises(CheckpointError, match=message):
        resume_run(copy)
    assert {p.name: p.read_bytes() for p in sorted(copy.iterdir())} == before


# -- reusing a run ---------------------------------------------------------------------------------


def test_load_run_errors_name_the_path(trained: Any, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=f"no run directory at {re.escape(str(tmp_path / 'nope'))}$"):
        load_run(tmp_path / "nope")
    with pytest.raises(CheckpointError, match=r"is not a run directory: config\.json is missing"):
        load_run(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_bytes((trained.run_dir / "config.json").read_bytes())
    with pytest.raises(CheckpointError, match=r"model.safetensors is missing"):
        load_run(broken)
    (broken / "model.safetensors").write_bytes((trained.run_dir / "model.safetensors").read_bytes()[:1000])
    with pytest.raises(
        CheckpointError, match=rf"{re.escape(str(broken / 'model.safetensors'))}: not a readable"
    ):
        load_run(broken)
    (broken / "config.json").write_text("{not json")
    with pytest.raises(
        CheckpointError, match=r"config.json is not a valid run configuration: .*invalid JSON"
    ):
        load_run(broken)


def test_predictions_agree_with_the_summary_and_across_formats(
    trained: Any, data_dir: Path, tmp_path: Path
) -> None:
    from mlpkit.data.idx import read_idx

    images = read_idx(data_dir / "t10k-images-idx3-ubyte")  # (100, 28, 28) uint8
    labels = read_idx(data_dir / "t10k-labels-idx1-ubyte")
    write_idx(tmp_path / "images.gz", images)
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "flat.npy", images.reshape(len(images), -1).astype(np.float32))
    np.savetxt(tmp_path / "images.csv", images.reshape(len(images), -1), fmt="%d", delimiter=",")
    results = [
        predict_run(trained.run_dir, data_dir / "t10k-images-idx3-ubyte"),
        *(
            predict_run(trained.run_dir, tmp_path / name)
            for name in ("images.gz", "images.npy", "flat.npy", "images.csv")
        ),
    ]
    first = results[0]
    assert first.probabilities.shape == (N_TEST, 10)
    np.testing.assert_allclose(first.probabilities.sum(axis=1), 1.0, rtol=1e-12)
    assert np.mean(first.labels == labels) == trained.summary["test_accuracy"]
    for other in results[1:]:
        np.testing.assert_allclose(other.probabilities, first.probabilities, rtol=1e-6)


def test_predictions_csv() -> None:
    predictions = Predictions(np.array([[0.1, 0.9], [0.7, 0.3]]), ("no, never", "yes"), ("a.png", "b.png"))
    assert (
        predictions.to_csv()
        == 'row,name,class,class_name,probability\n0,a.png,1,yes,0.900000\n1,b.png,0,"no, never",0.700000\n'
    )


def test_predictions_csv_top_k_and_every_probability() -> None:
    probabilities = np.array([[0.2, 0.5, 0.3], [0.4, 0.2, 0.4]])   # row 1: a tie, lower index first
    predictions = Predictions(probabilities, ("a", "b", "c"))
    assert predictions.to_csv(top_k=2, probabilities=True).splitlines() == [
        "row,name,class_1,class_name_1,probability_1,class_2,class_name_2,probability_2,a,b,c",
        "0,0,1,b,0.500000,2,c,0.300000,0.200000,0.500000,0.300000",
        "1,1,0,a,0.400000,2,c,0.400000,0.400000,0.200000,0.400000",
    ]
    with pytest.raises(ConfigError, match=r"top_k must be an int from 1 to the 3 classes, got 4"):
        predictions.to_csv(top_k=4)


