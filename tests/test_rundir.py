"""The run directory's files: creation, the metrics log, weights on disk, sessions, interrupts."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from mlpkit.errors import OutputError
from mlpkit.rundir import (
    CONFIG_FILE,
    MetricsLog,
    Session,
    after_interrupt,
    default_run_dir,
    prepare_run_dir,
    save_weights,
    write_config,
)


def test_weights_given_as_transposed_views_are_stored_in_their_logical_order(tmp_path: Path) -> None:
    # safetensors itself stores a view's memory, not its values: [[0, 3], [1, 4], [2, 5]] would
    # come back as [[0, 1], [2, 3], [4, 5]].
    weight = np.arange(6, dtype=np.float32).reshape(2, 3)
    save_weights(tmp_path / "w.safetensors", {"0.weight": weight.T}, {})
    np.testing.assert_array_equal(load_file(str(tmp_path / "w.safetensors"))["0.weight"], weight.T)


def test_a_default_run_directory_never_reuses_a_taken_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Frozen(datetime):
        @classmethod
        def now(cls, tz: object = None) -> Frozen:  # type: ignore[override]
            return cls(2026, 1, 2, 3, 4, 5)

    monkeypatch.setattr("mlpkit.rundir.datetime", Frozen)
    monkeypatch.chdir(tmp_path)
    first = default_run_dir("my run!")
    assert first == Path("runs/20260102-030405-my-run")
    first.mkdir(parents=True)
    assert default_run_dir("my run!") == Path("runs/20260102-030405-my-run-2")


def test_a_non_empty_directory_is_refused_and_overwrite_removes_only_run_files(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("mine")
    (run_dir / "summary.json").write_text("{}")
    with pytest.raises(OutputError, match=r"already exists and is not empty \(notes.txt, summary.json\)"):
        prepare_run_dir(run_dir, "x", overwrite=False)
    assert prepare_run_dir(run_dir, "x", overwrite=True) == (run_dir, False)
    assert sorted(p.name for p in run_dir.iterdir()) == ["notes.txt"]
    assert prepare_run_dir(tmp_path / "new", "x", overwrite=False) == (tmp_path / "new", True)


def test_the_metrics_log_appends_lines_and_rewrites_from_records(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.append({"epoch": 1, "loss": 0.5})
    log.append({"epoch": 2, "loss": 0.25})
    assert [json.loads(line) for line in log.path.read_text().splitlines()] == [
        {"epoch": 1, "loss": 0.5},
        {"epoch": 2, "loss": 0.25},
    ]
    log.rewrite([{"epoch": 1, "loss": 0.5}])
    assert log.path.read_text() == '{"epoch": 1, "loss": 0.5}\n'
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        log.append({"loss": float("nan")})  # never a line that is not JSON


def test_a_session_adds_the_seconds_of_earlier_sessions(tmp_path: Path) -> None:
    session = Session(["train"])
    assert session.facts["command"] == "mlpkit train"
    records = [{"seconds": 1.5}, {"seconds": 2.0}]
    session.resume({}, records, tmp_path)                      # an old checkpoint: the epochs' seconds
    assert 3.5 <= session.seconds() < 4.5
    session.resume({"wall_seconds": 10.0}, records, tmp_path)  # the checkpoint's own count
    assert 10.0 <= session.seconds() < 11.0
    (tmp_path / "summary.json").write_text(json.dumps({"epochs_run": 2, "wall_seconds": 12.0}))
    session.resume({"wall_seconds": 10.0}, records, tmp_path)  # a finished run: its summary's total
    assert 12.0 <= session.seconds() < 13.0


def test_config_json_is_rewritten_only_when_it_changed(tmp_path: Path) -> None:
    write_config(tmp_path, {"optim": {"epochs": 3}})
    before = os.stat(tmp_path / CONFIG_FILE).st_mtime_ns
    write_config(tmp_path, {"optim": {"epochs": 3}})
    assert os.stat(tmp_path / CONFIG_FILE).st_mtime_ns == before
    write_config(tmp_path, {"optim": {"epochs": 5}})
    assert json.loads((tmp_path / CONFIG_FILE).read_text()) == {"optim": {"epochs": 5}}


def test_an_interrupt_before_the_first_checkpoint_leaves_nothing(tmp_path: Path) -> None:
    created = tmp_path / "created"
    created.mkdir()
    (created / CONFIG_FILE).write_text("{}")
    (created / "metrics.jsonl").write_text("")
    after_interrupt(created, created=True, new_run=True)
    assert not created.exists()
    given = tmp_path / "given"                                # a directory the user made stays, emptied
    given.mkdir()
    (given / CONFIG_FILE).write_text("{}")
    after_interrupt(given, created=False, new_run=True)
    assert given.is_dir() and not any(given.iterdir())
