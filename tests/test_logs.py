"""A run's logs: ``metrics.csv`` (every run) and TensorBoard events (``--log tensorboard``).

Every check reads the files back the way their users do: the CSV with the csv module, the events
with TensorBoard's own ``EventAccumulator``, and compares them with ``metrics.jsonl`` and the
weights saved in ``model.safetensors`` at the end of each epoch.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load_file

import mlpkit._optional as optional
from fakedata import interrupt_after, run_cli, write_ctr_tables, write_fake_fashion_mnist
from launch import launch_ranks
from mlpkit.config import CTRConfig, RunConfig
from mlpkit.engine import build_mlp
from mlpkit.errors import ConfigError, MissingDependencyError
from mlpkit.logs import HISTOGRAM_BUCKETS, histogram, scalar_tags
from mlpkit.run import resume_run, train_run
from mlpkit.rundir import MetricsLog, after_interrupt, prepare_run_dir
from mlpkit.tasks import task_for
from mlpkit.tasks.base import run_seeds

N_VAL = 60
N_TRAIN_ROWS = 240  # fakedata's 300 training images less the validation set
TENSORBOARD = {"log": ["tensorboard"]}


def small_config(data_dir: Path, out: Path, **sections: dict[str, Any]) -> RunConfig:
    """784-32-10, 4 epochs of batch 32 on 240 images, TensorBoard on."""
    config = RunConfig.from_dict(
        {
            "model": {"hidden_features": [32]},
            "optim": {"lr": 0.3, "batch_size": 32, "epochs": 4},
            "data": {"data_dir": str(data_dir), "val_size": N_VAL, "download": False, "verify": False},
            "run": {"seed": 3, "out": str(out), **TENSORBOARD},
        }
    )
    return config.with_overrides(sections) if sections else config


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_fashion_mnist(tmp_path_factory.mktemp("fake-fashion-mnist"))


def read_jsonl(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def read_csv(run_dir: Path) -> list[dict[str, Any]]:
    """metrics.csv as records: each cell parsed as the JSON it holds, an empty cell as None."""
    with open(run_dir / "metrics.csv", newline="", encoding="utf-8") as file:
        return [
            {k: None if v == "" else json.loads(v) for k, v in row.items()} for row in csv.DictReader(file)
        ]


def assert_csv_is_the_jsonl(run_dir: Path) -> None:
    header = (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    records = read_jsonl(run_dir)
    assert records and header == list(records[0])
    assert read_csv(run_dir) == records  # row for row, every value the same number


def events(run_dir: Path) -> Any:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(
        str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "histograms": 0}
    )
    return accumulator.Reload()


def assert_scalars_are_the_jsonl(acc: Any, records: list[dict[str, Any]]) -> None:
    """Each scalar tag holds each epoch once, with the record's value (TensorBoard keeps float32)."""
    expected_tags = set(scalar_tags(records[0]))
    assert set(acc.Tags()["scalars"]) == expected_tags
    for tag in expected_tags:
        steps = [(e.step, e.value) for e in acc.Scalars(tag)]
        values = [(r["epoch"], float(np.float32(scalar_tags(r)[tag]))) for r in records]
        assert steps == values, tag


class WeightsEachEpoch:
    """An ``on_epoch_end`` hook keeping model.safetensors as each epoch left it (keep-every-epoch runs
    with ``checkpoint_interval = 0``, which write the file after every epoch)."""

    def __init__(self) -> None:
        self.saved: dict[int, dict[str, np.ndarray]] = {}

    def __call__(self, run_dir: Path, record: Any) -> None:
        self.saved[record["epoch"]] = load_file(str(run_dir / "model.safetensors"))


def assert_weight_histograms(acc: Any, saved: dict[int, dict[str, np.ndarray]], steps: list[int]) -> None:
    """Histograms at ``steps`` only, of every parameter: count, min and max those of the saved weights."""
    names = {tag.removeprefix("weights/") for tag in acc.Tags()["histograms"] if tag.startswith("weights/")}
    assert names and names <= set(saved[steps[-1]])
    for name in names:
        weights, grads = acc.Histograms(f"weights/{name}"), acc.Histograms(f"gradients/{name}")
        assert [e.step for e in weights] == [e.step for e in grads] == steps, name
        for event, grad in zip(weights, grads, strict=True):
            array = saved[event.step][name]
            h = event.histogram_value
            assert (h.num, h.min, h.max) == (array.size, float(array.min()), float(array.max())), name
            assert sum(h.bucket) == h.num and grad.histogram_value.num == array.size
            assert np.isclose(h.sum, array.astype(np.float64).sum(), rtol=1e-9, atol=1e-12)


# -- the pieces ------------------------------------------------------------------------------------


def test_histogram_matches_numpy_and_keeps_min_and_max_exactly(rng: np.random.Generator) -> None:
    values = rng.standard_normal((7, 5)).astype(np.float32)
    h = histogram(values)
    assert h is not None and len(h["bucket"]) == len(h["bucket_limit"]) == HISTOGRAM_BUCKETS
    reference, edges = np.histogram(values.astype(np.float64), bins=HISTOGRAM_BUCKETS)
    assert h["bucket"] == reference.tolist() and h["bucket_limit"] == edges[1:].tolist()
    assert (h["min"], h["max"], h["num"]) == (float(values.min()), float(values.max()), 35.0)
    assert h["sum_squares"] == pytest.approx(float((values.astype(np.float64) ** 2).sum()), rel=1e-12)


def test_histogram_of_equal_values_is_one_bucket_and_nan_gives_none() -> None:
    h = histogram(np.zeros(4))
    assert h is not None and (h["bucket_limit"], h["bucket"], h["min"], h["max"]) == ([0.0], [4.0], 0.0, 0.0)
    assert histogram(np.array([1.0, np.nan])) is None and histogram(np.zeros(0)) is None


def test_scalar_tags_group_by_quantity_then_split() -> None:
    record = {
        "epoch": 2,
        "train_loss": 0.6,
        "train_accuracy": None,
        "val_loss": 0.5,
        "val_accuracy": None,
        "lr": 0.001,
        "val_auc": 0.7,
        "val_logloss": 0.45,
        "seconds": 1.25,
    }
    assert scalar_tags(record) == {
        "loss/train": 0.6,
        "loss/val": 0.5,
        "lr": 0.001,
        "auc/val": 0.7,
        "logloss/val": 0.45,
        "time/epoch_seconds": 1.25,
    }


def test_the_metrics_csv_follows_every_append_and_rewrite(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.append({"epoch": 1, "loss": 0.1, "acc": None})
    log.append({"epoch": 2, "loss": 1 / 3, "acc": 0.5})
    assert (tmp_path / "metrics.csv").read_text() == "epoch,loss,acc\n1,0.1,\n2,0.3333333333333333,0.5\n"
    assert read_csv(tmp_path) == read_jsonl(tmp_path)
    log.append({"epoch": 3, "loss": 0.25, "acc": 0.75, "auc": 0.5})  # a new key: the header grows
    assert read_csv(tmp_path) == [{**r, "auc": r.get("auc")} for r in read_jsonl(tmp_path)]
    log.rewrite([{"epoch": 1, "loss": 0.1, "acc": None}])  # as on resume
    assert read_csv(tmp_path) == read_jsonl(tmp_path) == [{"epoch": 1, "loss": 0.1, "acc": None}]
    log.rewrite([])  # as after a first epoch that diverged
    assert (tmp_path / "metrics.csv").read_text() == (tmp_path / "metrics.jsonl").read_text() == ""


# -- runs ----------------------------------------------------------------------------------------


def test_a_numpy_run_logs_its_epochs_and_last_batch_gradients(data_dir: Path, tmp_path: Path) -> None:
    # One batch per epoch (float64), so the gradient the trainer holds after epoch e is the whole
    # training set's gradient at the weights epoch e - 1 left, which the engine recomputes here.
    config = small_config(
        data_dir,
        tmp_path / "run",
        optim={"batch_size": N_TRAIN_ROWS, "epochs": 3},
        early_stopping={"restore_best": False},
        run={"histogram_every": 1, "dtype": "float64", "checkpoint_interval": 0},
    )
    saved = WeightsEachEpoch()
    train_run(config, on_epoch_end=saved)
    run_dir = tmp_path / "run"
    assert_csv_is_the_jsonl(run_dir)
    acc = events(run_dir)
    assert_scalars_are_the_jsonl(acc, read_jsonl(run_dir))
    assert_weight_histograms(acc, saved.saved, [1, 2, 3])

    task = task_for(config)
    data = task.load(run_seeds(config.run.seed)[0], log=False)
    network = build_mlp(task.spec(data), rng=np.random.default_rng(0), dtype=np.dtype("float64"))
    for epoch in (2, 3):
        network.load_state_dict(saved.saved[epoch - 1])
        network.train()
        loss = task.numpy_loss(data)
        loss.forward(network.forward(data.x_train), data.y_train)
        network.backward_params(loss.backward())
        for name, p in network.named_parameters().items():
            h = next(e for e in acc.Histograms(f"gradients/{name}") if e.step == epoch).histogram_value
            np.testing.assert_allclose([h.min, h.max], [p.grad.min(), p.grad.max()], rtol=1e-9, err_msg=name)
            np.testing.assert_allclose(h.sum, p.grad.sum(), rtol=1e-9, atol=1e-15, err_msg=name)


@pytest.mark.torch
def test_a_torch_run_logs_histograms_every_n_epochs_and_at_the_last(data_dir: Path, tmp_path: Path) -> None:
    config = small_config(
        data_dir,
        tmp_path / "run",
        optim={"epochs": 5},
        early_stopping={"restore_best": False},
        run={"engine": "torch", "histogram_every": 2, "checkpoint_interval": 0},
    )
    saved = WeightsEachEpoch()
    train_run(config, on_epoch_end=saved)
    assert_csv_is_the_jsonl(tmp_path / "run")
    acc = events(tmp_path / "run")
    assert_scalars_are_the_jsonl(acc, read_jsonl(tmp_path / "run"))
    assert_weight_histograms(acc, saved.saved, [2, 4, 5])


@pytest.mark.torch
def test_a_ctr_run_logs_its_auc_and_every_parameter(tmp_path: Path) -> None:
    tables = write_ctr_tables(tmp_path / "data", rows=(1200, 400, 400))
    config = CTRConfig.from_dict(
        {
            "model": {"name": "deepfm", "hidden_features": [16]},
            "optim": {"batch_size": 512, "epochs": 2, "lr": 0.01},
            "early_stopping": {"patience": None, "restore_best": False},
            "data": {"data_dir": str(tables)},
            "run": {
                "out": str(tmp_path / "run"), "device": "cpu", "histogram_every": 1, "checkpoint_interval": 0,
                **TENSORBOARD,
            },
        }
    )
    saved = WeightsEachEpoch()
    train_run(config, on_epoch_end=saved)
    records = read_jsonl(tmp_path / "run")
    assert_csv_is_the_jsonl(tmp_path / "run")
    acc = events(tmp_path / "run")
    assert {"auc/val", "logloss/val", "loss/val", "loss/train", "lr"} <= set(acc.Tags()["scalars"])
    assert_scalars_are_the_jsonl(acc, records)
    assert_weight_histograms(acc, saved.saved, [1, 2])
    assert any("embedding" in tag for tag in acc.Tags()["histograms"])


@pytest.mark.parametrize("engine", ["numpy", pytest.param("torch", marks=pytest.mark.torch)])
def test_a_resumed_run_logs_each_epoch_once(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: str
) -> None:
    # Killed after epoch 3 was logged (metrics, events) but before its checkpoint: epoch 3 is
    # trained again on resume, and TensorBoard must show it once, with the second session's values.
    if engine == "numpy":
        import mlpkit.train.numpy_checkpoint as module

        name = "save_numpy_checkpoint"
    else:
        import mlpkit.train.checkpoint as module

        name = "save_checkpoint"
    save = getattr(module, name)

    def no_checkpoint_after_2(run_dir: Path, trainer: Any, **kwargs: Any) -> None:
        if trainer.epochs_done > 2:
            raise KeyboardInterrupt
        save(run_dir, trainer, **kwargs)

    config = small_config(
        data_dir, tmp_path / "cut", run={"engine": engine, "histogram_every": 1, "checkpoint_interval": 0}
    )
    with monkeypatch.context() as patch:
        patch.setattr(module, name, no_checkpoint_after_2)
        with pytest.raises(KeyboardInterrupt):
            train_run(config)
    assert [r["epoch"] for r in read_jsonl(tmp_path / "cut")] == [1, 2, 3]
    assert_csv_is_the_jsonl(tmp_path / "cut")
    assert [e.step for e in events(tmp_path / "cut").Scalars("loss/train")] == [1, 2, 3]

    resume_run(tmp_path / "cut")
    assert len(list((tmp_path / "cut" / "tensorboard").iterdir())) == 2  # one event file per session
    records = read_jsonl(tmp_path / "cut")
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    assert_csv_is_the_jsonl(tmp_path / "cut")
    acc = events(tmp_path / "cut")
    assert_scalars_are_the_jsonl(acc, records)  # seconds differ between the sessions: the second's
    for tag in acc.Tags()["histograms"]:
        assert [e.step for e in acc.Histograms(tag)] == [1, 2, 3, 4], tag


def tiny_train_argv(data_dir: Path, out: Path, *extra: str) -> list[str]:
    """``mlpkit train`` of a 784-8-10 MLP for 2 epochs with TensorBoard logs, as a subprocess runs it."""
    flags = f"--no-verify --no-download --hidden 8 --epochs 2 --batch-size 32 --val-size {N_VAL}"
    return ["train", "--data-dir", str(data_dir), *flags.split(), "--out", str(out), "--log", "tensorboard",
            *extra, "--no-progress"]


@pytest.mark.torch
def test_only_rank_zero_of_a_torchrun_job_writes_events(data_dir: Path, tmp_path: Path) -> None:
    argv = ["-m", "mlpkit", *tiny_train_argv(data_dir, tmp_path / "run", "--engine", "torch"), "-q"]
    ranks = launch_ranks(argv, cwd=tmp_path, timeout=180)
    assert [r.returncode for r in ranks] == [0, 0], [r.stderr for r in ranks]
    assert len(list((tmp_path / "run" / "tensorboard").iterdir())) == 1
    assert_scalars_are_the_jsonl(events(tmp_path / "run"), read_jsonl(tmp_path / "run"))


def test_a_run_interrupted_after_a_checkpoint_goes_on_logging(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        train_run(small_config(data_dir, tmp_path / "run"), on_epoch_end=interrupt_after(2))
    resume_run(tmp_path / "run")
    records = read_jsonl(tmp_path / "run")
    assert_csv_is_the_jsonl(tmp_path / "run")
    acc = events(tmp_path / "run")
    assert_scalars_are_the_jsonl(acc, records)
    assert [e.step for e in acc.Histograms("weights/0.weight")] == [4]  # every 5 epochs, and the last


def test_a_numpy_run_with_tensorboard_never_imports_torch(data_dir: Path, tmp_path: Path) -> None:
    argv = tiny_train_argv(data_dir, tmp_path / "run", "--histogram-every", "1")
    code = (
        "import sys\nfrom mlpkit.cli import main\n"
        f"code = main({argv!r})\n"
        "print(code, 'torch' in sys.modules, 'tensorboard' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].split() == ["0", "False", "True"], result.stderr  # after the table
    assert len(list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))) == 1


def test_overwrite_and_an_early_interrupt_remove_the_events_and_the_csv(
    data_dir: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    train_run(small_config(data_dir, run_dir, optim={"epochs": 1}))
    (run_dir / "tensorboard" / "notes.txt").write_text("mine")
    prepare_run_dir(run_dir, "x", overwrite=True)
    assert sorted(p.name for p in run_dir.rglob("*")) == ["notes.txt", "tensorboard"]

    (run_dir / "tensorboard" / "notes.txt").unlink()
    (run_dir / "tensorboard" / "events.out.tfevents.1.host.1.0").write_bytes(b"")
    (run_dir / "metrics.csv").write_text("epoch\n1\n")
    after_interrupt(run_dir, created=True, new_run=True)  # before the first checkpoint
    assert not run_dir.exists()


# -- bad input -------------------------------------------------------------------------------------


def test_a_misspelt_log_is_refused_with_the_closest_name(data_dir: Path, tmp_path: Path) -> None:
    code, _, err = run_cli("train", "--data-dir", data_dir, "--out", tmp_path / "run", "--log", "tensorbord")
    assert code != 0 and not (tmp_path / "run").exists()
    assert "[run] log must be one of ['tensorboard'], got 'tensorbord' (did you mean 'tensorboard'?)" in err
    code, _, err = run_cli("ctr", "train", "--data", tmp_path, "--log", "tensorbord")
    assert code != 0 and "did you mean 'tensorboard'?" in err


def test_histogram_every_must_be_a_non_negative_int_and_needs_tensorboard(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[run\] histogram_every must be a non-negative int, got -1"):
        RunConfig().with_overrides({"run": {"log": ["tensorboard"], "histogram_every": -1}})
    config = tmp_path / "c.toml"
    config.write_text('[run]\nlog = ["tensorboard"]\nhistogram_every = 2.5\n')
    code, _, err = run_cli("train", "--config", config)
    assert code != 0 and "histogram_every must be a non-negative int, got 2.5" in err
    with pytest.raises(
        ConfigError,
        match=r"histogram_every applies to log 'tensorboard' only, got histogram_every"
        r"=0 with log \[\]",
    ):
        RunConfig().with_overrides({"run": {"histogram_every": 0}})


def test_the_log_setting_round_trips_and_resume_takes_it_from_config_json(tmp_path: Path) -> None:
    config = RunConfig().with_overrides({"run": {"log": "tensorboard", "histogram_every": 0}})
    assert config.run.log == ("tensorboard",) and config.to_dict()["run"]["log"] == ["tensorboard"]
    assert RunConfig.from_dict(config.to_dict()) == config
    code, _, err = run_cli("train", "--resume", tmp_path, "--log", "tensorboard")
    assert code != 0 and "cannot be combined with --log" in err


def test_a_missing_tensorboard_names_the_extra_before_anything_is_written(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(optional, "is_installed", lambda module: module != "tensorboard")
    message = r"--log tensorboard needs tensorboard, which is not installed: pip install 'mlpkit\[log\]'"
    with pytest.raises(MissingDependencyError, match=message):
        train_run(small_config(data_dir, tmp_path / "run"))
    assert not (tmp_path / "run").exists()
