"""Atomic writes: content, no leftovers on failure, and OutputError messages naming the path."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from mlpkit._io import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    ensure_writable_dir,
)
from mlpkit.errors import OutputError


def names(directory: Path) -> list[str]:
    """Every entry in ``directory``, hidden temporary files included."""
    return sorted(p.name for p in directory.iterdir())


@dataclass
class Unwritable:
    path: Path  # a "directory" in which no file can be created
    reason: str  # the OS reason the error message must give
    is_dir: bool


@pytest.fixture
def unwritable(tmp_path: Path) -> Iterator[Unwritable]:
    """A directory with mode 0o500, or, where that does not stop writes (root), a regular file."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        (locked / "probe").touch()
    except PermissionError:
        try:
            yield Unwritable(locked, "Permission denied", is_dir=True)
        finally:
            locked.chmod(0o700)
        return
    locked.chmod(0o700)  # root with CAP_DAC_OVERRIDE ignores the mode
    blocker = tmp_path / "blocker"
    blocker.write_bytes(b"a regular file, not a directory")
    yield Unwritable(blocker, "is not a directory", is_dir=False)


def test_atomic_write_bytes_writes_content_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "weights.bin"
    assert atomic_write_bytes(target, b"\x00\x01\x02") == target
    assert target.read_bytes() == b"\x00\x01\x02"
    assert names(tmp_path) == ["weights.bin"]


def test_atomic_write_replaces_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "report.md"
    target.write_text("old and longer content\n")
    atomic_write_text(target, "new\n")
    assert target.read_text() == "new\n"
    assert names(tmp_path) == ["report.md"]


def test_new_file_gets_umask_mode_not_mkstemp_0600(tmp_path: Path) -> None:
    mask = os.umask(0o022)
    os.umask(mask)
    target = atomic_write_bytes(tmp_path / "config.json", b"{}")
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask


def test_atomic_write_text_keeps_newlines_and_encodes_utf8(tmp_path: Path) -> None:
    target = atomic_write_text(tmp_path / "notes.txt", "a\r\nb\nΣ")
    assert target.read_bytes() == b"a\r\nb\n\xce\xa3"


def test_atomic_write_json_keeps_insertion_order_indent_2_and_trailing_newline(tmp_path: Path) -> None:
    target = atomic_write_json(tmp_path / "config.json", {"seed": 0, "lr": 0.001, "hidden": [256, 128]})
    expected = '{\n  "seed": 0,\n  "lr": 0.001,\n  "hidden": [\n    256,\n    128\n  ]\n}\n'
    assert target.read_text() == expected
    assert json.loads(expected) == {"seed": 0, "lr": 0.001, "hidden": [256, 128]}


def test_atomic_write_json_without_indent_writes_one_compact_line(tmp_path: Path) -> None:
    target = atomic_write_json(tmp_path / "checkpoint.json", {"epoch": 3, "lr": [0.1, 0.01]}, indent=None)
    assert target.read_text() == '{"epoch": 3, "lr": [0.1, 0.01]}\n'


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_atomic_write_json_rejects_nan_and_writes_nothing(tmp_path: Path, bad: float) -> None:
    target = tmp_path / "metrics.json"
    with pytest.raises(ValueError, match=re.escape(f"cannot write {target} as JSON")):
        atomic_write_json(target, {"loss": bad})
    assert names(tmp_path) == []


def test_atomic_write_json_rejects_unserialisable_value(tmp_path: Path) -> None:
    target = tmp_path / "config.json"
    with pytest.raises(TypeError, match=re.escape(f"cannot write {target} as JSON") + ".*ndarray"):
        atomic_write_json(target, {"weights": np.zeros(2)})
    assert names(tmp_path) == []


def test_atomic_path_keeps_suffix_so_format_sniffing_writers_work(tmp_path: Path) -> None:
    target = tmp_path / "curve.png"
    with atomic_path(target) as part:
        assert part.parent == tmp_path
        assert part.name.startswith(".") and part.suffix == ".png"
        assert not target.exists()  # nothing visible until the body succeeds
        part.write_bytes(b"PNG")
    assert target.read_bytes() == b"PNG"
    assert names(tmp_path) == ["curve.png"]


def test_atomic_path_failure_keeps_old_target_and_removes_temp(tmp_path: Path) -> None:
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"previous complete model")
    with pytest.raises(RuntimeError, match="writer crashed"), atomic_path(target) as part:
        part.write_bytes(b"half a mod")
        raise RuntimeError("writer crashed")
    assert target.read_bytes() == b"previous complete model"
    assert names(tmp_path) == ["model.safetensors"]


def test_atomic_path_with_safetensors_writer(tmp_path: Path) -> None:
    st = pytest.importorskip("safetensors.numpy")
    weights = {"fc1.weight": np.arange(6, dtype=np.float32).reshape(2, 3)}
    target = tmp_path / "model.safetensors"
    with atomic_path(target) as part:
        st.save_file(weights, str(part))
    np.testing.assert_array_equal(st.load_file(str(target))["fc1.weight"], weights["fc1.weight"])
    assert names(tmp_path) == ["model.safetensors"]


def test_unwritable_directory_raises_output_error_naming_path(unwritable: Unwritable) -> None:
    target = unwritable.path / "model.safetensors"
    with pytest.raises(OutputError, match=re.escape(f"cannot write {target}: ") + f".*{unwritable.reason}"):
        atomic_write_bytes(target, b"data")
    if unwritable.is_dir:
        assert names(unwritable.path) == []


def test_missing_parent_raises_output_error(tmp_path: Path) -> None:
    target = tmp_path / "no-such-dir" / "config.json"
    message = f"cannot write {target}: parent directory {target.parent} does not exist"
    with pytest.raises(OutputError, match=re.escape(message)):
        atomic_write_json(target, {"a": 1})
    assert names(tmp_path) == []


def test_failed_rename_removes_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()  # os.replace cannot put a file over a directory
    with pytest.raises(OutputError, match=re.escape(f"cannot write {target}: Is a directory")):
        atomic_write_bytes(target, b"data")
    assert names(tmp_path) == ["out"]
    assert names(target) == []


def test_output_error_is_an_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        atomic_write_bytes(tmp_path / "missing" / "x", b"")


def test_ensure_writable_dir_creates_parents_and_leaves_no_probe(tmp_path: Path) -> None:
    out = tmp_path / "runs" / "2024" / "mlp"
    assert ensure_writable_dir(out) == out
    assert out.is_dir()
    assert names(out) == []
    assert ensure_writable_dir(out) == out  # existing directory is fine


def test_ensure_writable_dir_rejects_unwritable_dir(unwritable: Unwritable) -> None:
    out = unwritable.path if unwritable.is_dir else unwritable.path / "run"
    message = f"cannot write to output directory {out}: "
    reason = "Permission denied" if unwritable.is_dir else "a parent path exists and is not a directory"
    with pytest.raises(OutputError, match=re.escape(message + reason)):
        ensure_writable_dir(out)


def test_ensure_writable_dir_rejects_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "run"
    path.write_text("")
    message = f"cannot write to output directory {path}: it exists and is not a directory"
    with pytest.raises(OutputError, match=re.escape(message)):
        ensure_writable_dir(path)
