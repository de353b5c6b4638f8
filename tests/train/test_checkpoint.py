"""Checkpoints: an interrupted-and-resumed run equals an uninterrupted one bit for bit; a crash at any
point of a save leaves a readable checkpoint; corrupted, truncated, mismatched or missing
checkpoints are clear errors that change nothing; loading never unpickles."""

from __future__ import annotations

import json
import os
import pickle
import re
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import mlpkit.train.checkpoint_files as files_module
from mlpkit.errors import CheckpointError, OutputError
from mlpkit.spec import MLPSpec
from mlpkit.torch_engine import build_torch_mlp
from mlpkit.train import EarlyStopping
from mlpkit.train.checkpoint import (
    CHECKPOINT_JSON,
    has_checkpoint,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from mlpkit.train.schedules import make_schedule
from mlpkit.train.torch_trainer import TorchTrainer, build_loss, build_optimizer

pytestmark = pytest.mark.torch  # needs torch (the `torch` extra)

EPOCHS = 6


class Interrupted(Exception):
    """Stands for the process being killed right after a checkpoint was written."""


def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 5)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1)
    return x[:48], y[:48], x[48:], y[48:]


def make_trainer(
    seed: int = 0, hidden: int = 12, optimizer: str = "adamw", schedule: str = "plateau"
) -> TorchTrainer:
    torch.manual_seed(seed)  # dropout masks come from torch's generator
    spec = MLPSpec(5, (hidden, 8), 3, activation=("relu", "tanh"), dropout=(0.2, 0.0), init="xavier_uniform")
    model = build_torch_mlp(spec, rng=np.random.default_rng(seed))
    kwargs = {"epochs": EPOCHS} if schedule == "cosine" else {"factor": 0.5, "patience": 0}
    return TorchTrainer(
        model,
        loss=build_loss("cross_entropy"),
        optimizer=build_optimizer(optimizer, model, lr=0.02, weight_decay=0.01),
        rng=np.random.default_rng(seed + 100),
        batch_size=8,
        early_stopping=EarlyStopping(patience=4, mode="min"),
        schedule=make_schedule(schedule, 0.02, **kwargs),
        grad_clip_norm=1.0,
    )


def without_seconds(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


@pytest.mark.parametrize("k", [1, 4])
def test_interrupted_after_epoch_k_and_resumed_equals_uninterrupted(tmp_path, k):
    x, y, xv, yv = data()
    straight = make_trainer()
    straight.fit(x, y, xv, yv, epochs=EPOCHS)

    first = make_trainer()

    def save_then_die(record):
        save_checkpoint(tmp_path, first, extra={"config": {"epochs": EPOCHS}})
        if record["epoch"] == k:
            raise Interrupted

    first.on_epoch_end = save_then_die
    with pytest.raises(Interrupted):
        first.fit(x, y, xv, yv, epochs=EPOCHS)

    resumed = make_trainer(seed=7)  # other weights, shuffles and dropout draws
    assert load_checkpoint(tmp_path, resumed) == {"config": {"epochs": EPOCHS}}
    assert resumed.epochs_done == k
    resumed.fit(x, y, xv, yv, epochs=resumed.remaining_epochs(EPOCHS))

    assert without_seconds(resumed.history.records) == without_seconds(straight.history.records)
    assert (resumed.history.best_epoch, resumed.history.stop_reason) == (
        straight.history.best_epoch,
        straight.history.stop_reason,
    )
    for name, value in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], value), name
    for (i, a), b in zip(
        straight.optimizer.state_dict()["state"].items(),
        resumed.optimizer.state_dict()["state"].values(),
        strict=True,
    ):
        for key in a:
            assert torch.equal(a[key], b[key]), f"optimizer state {i}.{key}"
    assert straight.schedule.state_dict() == resumed.schedule.state_dict()


def test_a_finished_run_resumes_to_nothing(tmp_path):
    x, y, xv, yv = data()
    trainer = make_trainer(schedule="cosine")
    trainer.on_epoch_end = lambda r: save_checkpoint(tmp_path, trainer)
    trainer.fit(x, y, xv, yv, epochs=2)
    resumed = make_trainer(seed=3, schedule="cosine")
    load_checkpoint(tmp_path, resumed)
    assert resumed.remaining_epochs(2) == 0
    resumed.fit(x, y, xv, yv, epochs=0)  # restores the best weights only
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], value), name


def test_each_save_keeps_exactly_one_tensors_file(tmp_path):
    x, y, xv, yv = data()
    trainer = make_trainer()
    trainer.on_epoch_end = lambda r: save_checkpoint(tmp_path, trainer)
    trainer.fit(x, y, xv, yv, epochs=3)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2 and names[1] == CHECKPOINT_JSON and names[0].startswith("checkpoint-epoch0003-")
    assert read_checkpoint(tmp_path).epoch == 3
    assert has_checkpoint(tmp_path) and not has_checkpoint(tmp_path / "other")


# -- crash safety --------------------------------------------------------------------------------


def _saved_once(tmp_path):
    x, y, xv, yv = data()
    trainer = make_trainer()
    trainer.fit(x, y, xv, yv, epochs=1)
    save_checkpoint(tmp_path, trainer)
    trainer.fit(x, y, xv, yv, epochs=1)
    return trainer


@pytest.mark.parametrize("crash_at", ["tensors", "json", "cleanup"])
def test_a_crash_at_any_step_of_a_save_leaves_a_complete_checkpoint(tmp_path, monkeypatch, crash_at):
    trainer = _saved_once(tmp_path)  # epoch 1 on disk, epoch 2 in memory

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    if crash_at == "tensors":
        monkeypatch.setattr(files_module, "atomic_write_bytes", crash)
    elif crash_at == "json":
        monkeypatch.setattr(files_module, "atomic_write_json", crash)
    else:
        monkeypatch.setattr(Path, "unlink", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, trainer)
    monkeypatch.undo()
    expected = 2 if crash_at == "cleanup" else 1  # the JSON rename is the commit point
    assert read_checkpoint(tmp_path).epoch == expected
    fresh = make_trainer(seed=5)
    load_checkpoint(tmp_path, fresh)
    assert fresh.epochs_done == expected
    save_checkpoint(tmp_path, trainer)  # the next save removes any leftovers
    assert len(list(tmp_path.glob("*.safetensors"))) == 1


def test_a_process_killed_while_saving_leaves_a_readable_checkpoint(tmp_path):
    # A real SIGKILL at an arbitrary moment of a tight save loop.
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import torch
        torch.set_num_threads(1)
        from test_checkpoint import data, make_trainer
        from mlpkit.train.checkpoint import save_checkpoint
        trainer = make_trainer()
        x, y, xv, yv = data()
        for i in range(100000):
            trainer.fit(x[:8], y[:8], epochs=1)
            save_checkpoint({str(tmp_path)!r}, trainer)
            if i == 2:
                print("saved", flush=True)
    """)
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env) as proc:
        try:
            ready, _, _ = select.select([proc.stdout], [], [], 120)     # a hung child fails, not hangs
            assert ready, "the saving process printed nothing within 120 s"
            assert proc.stdout.readline().strip() == "saved"
            time.sleep(0.37)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
    ckpt = read_checkpoint(tmp_path)
    assert ckpt.epoch >= 3
    fresh = make_trainer(seed=9)
    load_checkpoint(tmp_path, fresh)
    assert fresh.epochs_done == ckpt.epoch


def test_an_unwritable_run_dir_is_an_output_error(tmp_path):
    trainer = make_trainer()
    (tmp_path / "file").write_text("x")
    target = tmp_path / "file" / "run"
    with pytest.raises(OutputError, match=rf"cannot write to output directory {re.escape(str(target))}: "):
        save_checkpoint(target, trainer)


# -- bad checkpoints -----------------------------------------------------------------------------


def _snapshot_files(path):
    return {p.name: p.read_bytes() for p in path.iterdir()}


def _params(trainer):
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


def _assert_unchanged(trainer, params):
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(value, params[name]), name


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("truncate", r"checkpoint tensors file .* is truncated or corrupted: \d+ bytes, expected \d+"),
        ("flip", r"checkpoint tensors file .* is corrupted: SHA-256 [0-9a-f]{64}, expected [0-9a-f]{64}"),
        ("delete", r"checkpoint tensors file .* named by .*checkpoint.json is missing"),
        ("json", r"checkpoint.json is corrupted or truncated"),
        ("format", r"checkpoint.json is not an mlpkit torch checkpoint"),
        ("version", r"has checkpoint version 99; this mlpkit reads 1"),
    ],
)
def test_a_damaged_checkpoint_is_a_clear_error_and_nothing_changes(tmp_path, damage, message):
    _saved_once(tmp_path)
    tensors = next(tmp_path.glob("*.safetensors"))
    meta = tmp_path / CHECKPOINT_JSON
    if damage == "truncate":
        tensors.write_bytes(tensors.read_bytes()[:-100])
    elif damage == "flip":
        raw = bytearray(tensors.read_bytes())
        raw[-5] ^= 0xFF
        tensors.write_bytes(bytes(raw))
    elif damage == "delete":
        tensors.unlink()
    elif damage == "json":
        meta.write_text(meta.read_text()[:50])
    else:
        state = json.loads(meta.read_text())
        state["format" if damage == "format" else "version"] = "pickle" if damage == "format" else 99
        meta.write_text(json.dumps(state))
    files = _snapshot_files(tmp_path)
    trainer = make_trainer(seed=4)
    params = _params(trainer)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path, trainer)
    assert _snapshot_files(tmp_path) == files  # nothing overwritten
    _assert_unchanged(trainer, params)
    assert trainer.epochs_done == 0


@pytest.mark.parametrize(
    ("other", "message"),
    [
        (
            {"hidden": 10},
            r"different architecture: tensor '0.weight' has shape \(12, 5\) in the checkpoint "
            r"but \(10, 5\) in the model",
        ),
        ({"optimizer": "sgd"}, r"was written with optimizer AdamW, this run uses SGD"),
        ({"schedule": "cosine"}, r"was written with schedule 'plateau', this run uses 'cosine'"),
    ],
)
def test_a_checkpoint_of_another_setup_names_the_mismatch(tmp_path, other, message):
    _saved_once(tmp_path)
    trainer = make_trainer(seed=4, **other)
    params = _params(trainer)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path, trainer)
    _assert_unchanged(trainer, params)


def test_a_checkpoint_of_another_depth_lists_the_missing_tensors(tmp_path):
    _saved_once(tmp_path)
    model = build_torch_mlp(MLPSpec(5, (12,), 3))
    trainer = TorchTrainer(
        model,
        loss=build_loss("cross_entropy"),
        optimizer=build_optimizer("adamw", model, lr=0.1),
        rng=np.random.default_rng(0),
    )
    with pytest.raises(
        CheckpointError,
        match=r"tensors missing from it \['2.bias', '2.weight'\], "
        r"unexpected in it \['3.bias', '3.weight', '5.bias', '5.weight'\]",
    ):
        load_checkpoint(tmp_path, trainer)


def test_resume_from_a_directory_without_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match=r"cannot resume: no checkpoint in .* \(no checkpoint.json\)"):
        load_checkpoint(tmp_path, make_trainer())
    with pytest.raises(CheckpointError, match=r"cannot resume: run directory .*absent does not exist"):
        load_checkpoint(tmp_path / "absent", make_trainer())


def test_loading_never_unpickles(tmp_path, monkeypatch):
    _saved_once(tmp_path)

    def forbidden(*args, **kwargs):
        raise AssertionError("unpickling attempted")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    trainer = make_trainer(seed=2)
    load_checkpoint(tmp_path, trainer)
    assert trainer.epochs_done == 2 - 1
    raw = (tmp_path / CHECKPOINT_JSON).read_text()
    assert json.loads(raw)["tensors"]["file"].endswith(".safetensors")


def test_on_resume_the_configured_hyper_parameters_win_and_the_saved_state_is_kept(tmp_path):
    # The run's config.json builds the optimizer (here another weight decay); the checkpoint gives
    # its buffers, step count and current lr. The NumPy engine does the same.
    _saved_once(tmp_path)
    saved = read_checkpoint(tmp_path)
    fresh = make_trainer(seed=4)
    for group in fresh.optimizer.param_groups:
        group["weight_decay"] = 0.5                                      # was 0.01 when saved
    load_checkpoint(tmp_path, fresh)
    group = fresh.optimizer.param_groups[0]
    assert group["weight_decay"] == 0.5
    assert group["lr"] == saved.state["optimizer"]["param_groups"][0]["lr"]
    assert int(fresh.optimizer.state[group["params"][0]]["step"]) == int(saved.tensors["optimizer.0.step"])


def test_a_rank_without_a_saved_generator_keeps_its_own(tmp_path):
    # A single-process checkpoint resumed by 2 processes: rank 0 takes the saved generator, rank 1
    # keeps the one the run seeded for it, so that the ranks' dropout masks still differ.
    from mlpkit.train.checkpoint import _load_generators
    from mlpkit.train.distributed import DistributedContext

    torch.manual_seed(1)
    saved = {"rng.torch": torch.get_rng_state()}
    trainer = make_trainer()
    for rank, expect_saved in ((0, True), (1, False)):
        torch.manual_seed(100 + rank)
        own = torch.get_rng_state()
        trainer.distributed = DistributedContext(rank, 2, rank, "gloo", torch.device("cpu"))
        _load_generators(saved, trainer, "checkpoint")
        assert torch.equal(torch.get_rng_state(), saved["rng.torch"] if expect_saved else own), rank
