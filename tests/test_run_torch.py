"""train_run / resume_run on the torch engine, and the training options both engines share.

The same small generated Fashion-MNIST stand-in as tests/test_run.py. What is checked: the torch
engine writes the same run directory as the NumPy engine (plus a checkpoint), the two engines
agree on the same seed to rounding (float64), their weights files are interchangeable, an
interrupted run resumed from its checkpoint equals the uninterrupted run bit for bit, and every
resume or device error names what is wrong and changes nothing.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.numpy import load_file

from fakedata import interrupt_after, snapshot, write_fake_fashion_mnist
from mlpkit.config import DataConfig, EarlyStoppingConfig, ModelConfig, OptimConfig, RunConfig, RunSettings
from mlpkit.errors import CheckpointError, ConfigError
from mlpkit.run import RUN_FILES, evaluate_run, load_run, resume_run, train_run
from mlpkit.rundir import PREDICTED_FILE, PREPROCESSING_FILE, RESIDUALS_FILE, TABLE_FILE
from mlpkit.torch_engine import build_torch_mlp, load_torch_weights
from mlpkit.train import predict_logits
from mlpkit.train.checkpoint import CHECKPOINT_JSON, read_checkpoint

pytestmark = pytest.mark.torch  # needs torch (the `torch` extra)

N_VAL = 60

# table.json is the CTR task's; the preprocessing and the regression plots are the table task's.
IMAGE_RUN_FILES = set(RUN_FILES) - {TABLE_FILE, PREPROCESSING_FILE, PREDICTED_FILE, RESIDUALS_FILE}


def small_config(data_dir: Path, out: Path | None, **sections: dict[str, Any]) -> RunConfig:
    """784-32-10, 4 epochs of batch 32 on 240 images, on the torch engine (CPU)."""
    config = RunConfig(
        model=ModelConfig(hidden_features=(32,)),
        optim=OptimConfig(lr=0.3, batch_size=32, epochs=4),
        early_stopping=EarlyStoppingConfig(),
        data=DataConfig(data_dir=str(data_dir), val_size=N_VAL, download=False, verify=False),
        run=RunSettings(seed=3, out=None if out is None else str(out), engine="torch", device="cpu"),
    )
    return config.with_overrides(sections) if sections else config


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_fashion_mnist(tmp_path_factory.mktemp("fake-fashion-mnist"))


@pytest.fixture(scope="module")
def runs(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The same float64 run on each engine."""
    out = tmp_path_factory.mktemp("runs")
    return {
        engine: train_run(small_config(data_dir, out / engine, run={"engine": engine, "dtype": "float64"}))
        for engine in ("numpy", "torch")
    }


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def without_seconds(run_dir: Path) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in read_metrics(run_dir)]


def assert_same_weights(first: Path, second: Path) -> None:
    a, b = load_file(str(first / "model.safetensors")), load_file(str(second / "model.safetensors"))
    assert a.keys() == b.keys()
    for name, tensor in a.items():
        np.testing.assert_array_equal(b[name], tensor, err_msg=name)


# -- one run on the torch engine -------------------------------------------------------------------


def test_torch_run_writes_the_run_files_and_one_checkpoint(runs: dict[str, Any]) -> None:
    result = runs["torch"]
    names = {p.name for p in result.run_dir.iterdir()}
    tensors = [n for n in names if re.fullmatch(r"checkpoint-epoch0004-[0-9a-f]{8}\.safetensors", n)]
    assert names == {*IMAGE_RUN_FILES, CHECKPOINT_JSON, *tensors} and len(tensors) == 1  # no temporary files
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary == result.summary and summary["status"] == "completed"
    assert summary["engine"] == "torch" and summary["device"] == "cpu" and summary["world_size"] == 1
    assert summary["torch_version"] == torch.__version__ and summary["test_accuracy"] > 0.8
    assert [r["epoch"] for r in read_metrics(result.run_dir)] == [1, 2, 3, 4]
    checkpoint = read_checkpoint(result.run_dir)
    assert checkpoint.epoch == 4
    assert checkpoint.state["extra"]["config"] == json.loads((result.run_dir / "config.json").read_text())


def test_both_engines_train_the_same_network_on_the_same_seed(runs: dict[str, Any]) -> None:
    # Same split, initial weights and batch order: in float64 the engines differ by rounding only.
    numpy_run, torch_run = runs["numpy"], runs["torch"]
    for ours, theirs in zip(
        without_seconds(torch_run.run_dir), without_seconds(numpy_run.run_dir), strict=True
    ):
        assert ours.keys() == theirs.keys()
        for key, value in theirs.items():
            assert ours[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
    a, b = (load_file(str(r.run_dir / "model.safetensors")) for r in (torch_run, numpy_run))
    for name in b:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-9, atol=1e-12, err_msg=name)
    for key in ("test_accuracy", "best_epoch", "stop_reason", "n_train", "n_val"):
        assert torch_run.summary[key] == numpy_run.summary[key], key


def test_a_torch_run_loads_in_the_numpy_engine(runs: dict[str, Any]) -> None:
    result = runs["torch"]
    loaded = load_run(result.run_dir)
    assert loaded.network.dtype == np.float64
    scores = evaluate_run(result.run_dir)
    assert scores["test_accuracy"] == result.summary["test_accuracy"]
    assert scores["test_loss"] == pytest.approx(result.summary["test_loss"], rel=1e-12)
    with safe_open(str(result.run_dir / "model.safetensors"), framework="numpy") as file:
        metadata = file.metadata()
    assert metadata["engine"] == "torch" and int(metadata["epoch"]) == result.summary["best_epoch"]


def test_a_numpy_run_loads_in_the_torch_engine(runs: dict[str, Any], data_dir: Path) -> None:
    loaded = load_run(runs["numpy"].run_dir)
    module = build_torch_mlp(loaded.spec, dtype=torch.float64)
    metadata = load_torch_weights(module, runs["numpy"].run_dir / "model.safetensors")
    assert metadata["engine"] == "numpy"
    x = np.random.default_rng(0).random((16, 784))
    with torch.no_grad():
        logits = module.eval()(torch.from_numpy(x)).numpy()  # (16, 10)
    np.testing.assert_allclose(logits, predict_logits(loaded.network, x), rtol=1e-12, atol=1e-12)


# -- options both engines take ---------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_the_schedule_sets_each_epochs_learning_rate(data_dir: Path, tmp_path: Path, engine: str) -> None:
    config = small_config(
        data_dir,
        tmp_path / "run",
        optim={"schedule": "step", "step_size": 1, "gamma": 0.5},
        run={"engine": engine},
    )
    result = train_run(config)
    assert [r["lr"] for r in result.history.records] == [0.3, 0.15, 0.075, 0.0375]


def test_plateau_follows_the_monitor(data_dir: Path, tmp_path: Path) -> None:
    config = small_config(
        data_dir,
        tmp_path / "run",
        optim={"schedule": "plateau", "factor": 0.5, "schedule_patience": 0, "epochs": 6},
        early_stopping={"monitor": "val_accuracy"},
    )
    records = train_run(config).history.records
    # The rule written out (patience 0, relative threshold 1e-4, mode max): halve after each epoch
    # whose val_accuracy does not beat the best so far.
    lr, best, expected = 0.3, -np.inf, []
    for record in records:
        expected.append(lr)
        if record["val_accuracy"] > best * (1 + 1e-4):
            best = record["val_accuracy"]
        else:
            lr *= 0.5
    assert [r["lr"] for r in records] == expected
    assert expected[-1] < 0.3  # val_accuracy reaches 1.0 and stays: the rate did drop


def test_gradient_clipping_reaches_the_torch_trainer(data_dir: Path, tmp_path: Path) -> None:
    plain = train_run(small_config(data_dir, tmp_path / "plain", optim={"epochs": 1}))
    loose = train_run(small_config(data_dir, tmp_path / "loose", optim={"epochs": 1, "grad_clip_norm": 1e9}))
    tight = train_run(small_config(data_dir, tmp_path / "tight", optim={"epochs": 1, "grad_clip_norm": 1e-3}))
    # A bound never reached scales the gradients by exactly 1: the same run, bit for bit.
    assert without_seconds(loose.run_dir) == without_seconds(plain.run_dir)
    assert_same_weights(loose.run_dir, plain.run_dir)
    assert tight.history.records[0]["train_loss"] != plain.history.records[0]["train_loss"]


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_augmentation_is_seeded_and_changes_the_run(data_dir: Path, tmp_path: Path, engine: str) -> None:
    def run(name: str, **data: Any) -> Any:
        sections = {"run": {"engine": engine}, "optim": {"epochs": 2}}
        return train_run(small_config(data_dir, tmp_path / name, data=data, **sections))

    plain, first, again = run("plain"), run("a", augment="shift_flip"), run("b", augment="shift_flip")
    assert without_seconds(first.run_dir) == without_seconds(again.run_dir)
    assert without_seconds(first.run_dir) != without_seconds(plain.run_dir)
    assert load_run(first.run_dir).config.data.augment == "shift_flip"


def test_both_engines_augment_alike_on_the_same_seed(data_dir: Path, tmp_path: Path) -> None:
    # The crops come from the same NumPy generator in the same order, so in float64 the augmented
    # runs differ by rounding only, as the plain ones do.
    sections = {"data": {"augment": "shift_flip", "max_shift": 2, "flip_p": 0.5}, "optim": {"epochs": 2}}
    numpy_run, torch_run = (
        train_run(small_config(data_dir, tmp_path / e, run={"engine": e, "dtype": "float64"}, **sections))
        for e in ("numpy", "torch")
    )
    records = zip(without_seconds(torch_run.run_dir), without_seconds(numpy_run.run_dir), strict=True)
    for ours, theirs in records:
        for key, value in theirs.items():
            assert ours[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
    a, b = (load_file(str(r.run_dir / "model.safetensors")) for r in (torch_run, numpy_run))
    for name in b:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("b", [1, 5])
def test_the_device_shift_flip_is_the_numpy_one(b: int) -> None:
    from mlpkit.data.augment import ShiftFlip
    from mlpkit.train.torch_trainer import _shift_flip

    augment = ShiftFlip(4, 3, max_shift=2, flip_p=0.5)
    x = np.random.default_rng(0).random((b, 12))
    expected = augment(x, np.random.default_rng(7))
    rows, cols = augment.draw(b, np.random.default_rng(7))             # the same draws
    got = _shift_flip(augment, torch.from_numpy(x), torch.from_numpy(rows), torch.from_numpy(cols))
    assert got.shape == (b, 12)
    np.testing.assert_array_equal(got.numpy(), expected)


def test_torch_dropout_is_seeded_by_the_run_seed(data_dir: Path, tmp_path: Path) -> None:
    def run(name: str, seed: int) -> list[dict[str, Any]]:
        config = small_config(data_dir, tmp_path / name, model={"dropout": 0.3}, optim={"epochs": 1})
        train_run(dataclasses.replace(config, run=dataclasses.replace(config.run, seed=seed)))
        return without_seconds(tmp_path / name)

    torch.manual_seed(123)  # the global generator's state before the run must not matter
    first = run("a", seed=3)
    torch.manual_seed(456)
    assert run("b", seed=3) == first


# -- resume ----------------------------------------------------------------------------------------


RESUMABLE = {
    "model": {"dropout": 0.2},  # torch's generator state is part of the checkpoint
    "optim": {"optimizer": "adam", "lr": 0.01, "schedule": "plateau", "factor": 0.5, "schedule_patience": 0},
    "early_stopping": {"patience": 3, "monitor": "val_accuracy"},
    "run": {"checkpoint_interval": 0},  # a checkpoint after every epoch: the cut falls on one
}


def test_an_interrupted_run_resumed_equals_the_uninterrupted_run(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    whole = train_run(small_config(data_dir, tmp_path / "whole", **RESUMABLE))
    with pytest.raises(KeyboardInterrupt):
        train_run(small_config(data_dir, tmp_path / "cut", **RESUMABLE), on_epoch_end=interrupt_after(2))
    assert [r["epoch"] for r in read_metrics(tmp_path / "cut")] == [1, 2]
    assert not (tmp_path / "cut" / "summary.json").exists()
    assert f"continue with: mlpkit train --resume {tmp_path / 'cut'}" in caplog.text

    resumed = resume_run(tmp_path / "cut")
    assert resumed.run_dir == tmp_path / "cut" and resumed.summary["resumed_at_epoch"] == 2
    assert without_seconds(tmp_path / "cut") == without_seconds(tmp_path / "whole")
    assert_same_weights(tmp_path / "cut", tmp_path / "whole")
    for key in ("test_accuracy", "test_loss", "best_epoch", "stop_reason", "epochs_run"):
        assert resumed.summary[key] == whole.summary[key], key


def test_a_metrics_line_written_after_the_last_checkpoint_is_replayed(
    runs: dict[str, Any], data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Killed after epoch 3's metrics line and model but before its checkpoint.
    config = small_config(data_dir, tmp_path / "cut", run={"dtype": "float64", "checkpoint_interval": 0})
    with monkeypatch.context() as patch:

        def no_checkpoint_after_2(run_dir: Path, trainer: Any, **kwargs: Any) -> None:
            if trainer.epochs_done > 2:
                raise KeyboardInterrupt
            save(run_dir, trainer, **kwargs)

        import mlpkit.train.checkpoint as checkpoint_module

        save = checkpoint_module.save_checkpoint
        patch.setattr(checkpoint_module, "save_checkpoint", no_checkpoint_after_2)
        with pytest.raises(KeyboardInterrupt):
            train_run(config)
    assert len(read_metrics(tmp_path / "cut")) == 3 and read_checkpoint(tmp_path / "cut").epoch == 2
    resume_run(tmp_path / "cut")
    assert without_seconds(tmp_path / "cut") == without_seconds(runs["torch"].run_dir)
    assert_same_weights(tmp_path / "cut", runs["torch"].run_dir)


def test_resuming_a_finished_run_changes_nothing(runs: dict[str, Any], tmp_path: Path) -> None:
    copy = shutil.copytree(runs["torch"].run_dir, tmp_path / "copy")
    before = snapshot(copy)
    result = resume_run(copy)
    assert snapshot(copy) == before
    assert result.summary == runs["torch"].summary


def test_resume_without_a_checkpoint_names_the_directory_and_changes_nothing(
    runs: dict[str, Any], tmp_path: Path
) -> None:
    copy = shutil.copytree(runs["torch"].run_dir, tmp_path / "copy")
    (copy / CHECKPOINT_JSON).unlink()
    before = snapshot(copy)
    with pytest.raises(CheckpointError, match=rf"cannot resume: no checkpoint in {re.escape(str(copy))} "):
        resume_run(copy)
    assert snapshot(copy) == before
    with pytest.raises(CheckpointError, match=r"run directory .*nope does not exist"):
        resume_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"empty has no config.json, so it is not a run directory"):
        resume_run(tmp_path / "empty")


def test_resume_with_another_architecture_names_the_tensor_and_changes_nothing(
    runs: dict[str, Any], tmp_path: Path
) -> None:
    copy = shutil.copytree(runs["torch"].run_dir, tmp_path / "copy")
    config = json.loads((copy / "config.json").read_text())
    config["model"]["hidden_features"] = [16]
    (copy / "config.json").write_text(json.dumps(config))
    before = snapshot(copy)
    with pytest.raises(
        CheckpointError,
        match=r"tensor '0.weight' has shape \(32, 784\) in the checkpoint but \(16, 784\) in the model",
    ):
        resume_run(copy)
    assert snapshot(copy) == before


def test_overwrite_removes_a_stale_checkpoint(runs: dict[str, Any], data_dir: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(runs["torch"].run_dir, tmp_path / "copy")
    (copy / "notes.txt").write_text("mine")
    train_run(small_config(data_dir, copy, run={"engine": "numpy"}, optim={"epochs": 1}), overwrite=True)
    names = {p.name for p in copy.iterdir()}
    tensors = {n for n in names if n.endswith(".safetensors") and n.startswith("checkpoint-")}
    assert names == {*IMAGE_RUN_FILES, "notes.txt", CHECKPOINT_JSON, *tensors} and len(tensors) == 1
    assert next(iter(tensors)).startswith("checkpoint-epoch0001-")    # the new run's, not epoch 4's
    assert json.loads((copy / CHECKPOINT_JSON).read_text())["format"] == "mlpkit-numpy-checkpoint"


# -- devices ---------------------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error of a machine without CUDA")
def test_cuda_on_a_machine_without_it_fails_before_anything_is_written(
    data_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=r"device 'cuda' was requested but CUDA is not available"):
        train_run(small_config(data_dir, tmp_path / "run", run={"device": "cuda"}))
    assert not (tmp_path / "run").exists()


def test_auto_device_trains_on_what_there_is(data_dir: Path, tmp_path: Path) -> None:
    result = train_run(small_config(data_dir, tmp_path / "run", run={"device": "auto"}, optim={"epochs": 1}))
    assert result.summary["device"] == ("cuda:0" if torch.cuda.is_available() else "cpu")
