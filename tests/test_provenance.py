"""Provenance: the command line as typed, the clock with its offset, versions, and git facts from
real temporary repositories (and their absence outside one, or without git)."""

from __future__ import annotations

import platform
import shlex
import subprocess
import sys
import types
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

import mlpkit
from mlpkit import _provenance
from mlpkit._provenance import provenance

GIT_KEYS = {"git_commit", "git_dirty"}


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` with a fixed identity and no signing; return its stdout."""
    identity = ["-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"]
    return subprocess.run(
        ["git", *identity, *args], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture
def outside_any_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty directory that git cannot see a repository above (its parent is the ceiling)."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    work = tmp_path / "work"
    work.mkdir()
    return work


@pytest.fixture
def repo(outside_any_repo: Path) -> Path:
    """A git work tree with one commit of one tracked file."""
    git(outside_any_repo, "init", "-q")
    (outside_any_repo / "train.toml").write_text("[optim]\nlr = 0.1\n")
    git(outside_any_repo, "add", "train.toml")
    git(outside_any_repo, "commit", "-q", "-m", "first")
    return outside_any_repo


def test_command_is_the_arguments_after_mlpkit_shell_quoted() -> None:
    argv = ["train", "--epochs", "3", "--name", "two words", "--set", "optim.lr=1e-3"]
    command = provenance(argv)["command"]
    assert command == "mlpkit train --epochs 3 --name 'two words' --set optim.lr=1e-3"
    assert shlex.split(command) == ["mlpkit", *argv]  # pasting it into a shell gives back the arguments


@pytest.mark.parametrize(
    ("sys_argv", "command"),
    [
        (["/home/u/.venv/bin/mlpkit", "train", "--lr", "0.1"], "mlpkit train --lr 0.1"),
        (["/site-packages/mlpkit/__main__.py", "evaluate", "runs/a b"], "mlpkit evaluate 'runs/a b'"),
        (["my_study.py", "--seed", "3"], "my_study.py --seed 3"),  # a user's script keeps its name
    ],
)
def test_command_from_sys_argv(sys_argv: list[str], command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", sys_argv)
    assert provenance()["command"] == command


def test_started_at_is_local_iso_8601_with_offset() -> None:
    before = datetime.now().astimezone().replace(microsecond=0)
    started = datetime.fromisoformat(provenance([])["started_at"])
    after = datetime.now().astimezone()
    assert started.tzinfo is not None
    assert started.utcoffset() == before.utcoffset()
    assert before <= started <= after + timedelta(seconds=1)


def test_machine_and_versions() -> None:
    facts = provenance([])
    assert facts["host"] == platform.node()
    assert facts["platform"] == platform.platform()
    assert facts["python_version"] == platform.python_version()
    assert facts["mlpkit_version"] == mlpkit.__version__
    assert facts["numpy_version"] == np.__version__


def test_torch_version_only_when_torch_is_already_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(__version__="9.8.7"))
    assert provenance([])["torch_version"] == "9.8.7"
    monkeypatch.delitem(sys.modules, "torch")
    assert "torch_version" not in provenance([])


def test_provenance_never_imports_torch() -> None:
    code = (
        "import sys; from mlpkit._provenance import provenance; facts = provenance(['train']); "
        "print('torch' in sys.modules, 'torch_version' in facts)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]


def test_git_commit_and_clean_tree(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    head = git(repo, "log", "-1", "--format=%H").strip()
    monkeypatch.chdir(repo)
    facts = provenance([])
    assert facts["git_commit"] == head
    assert len(head) == 40 and int(head, 16) >= 0
    assert facts["git_dirty"] is False


def test_git_from_a_subdirectory(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (repo / "runs" / "a").mkdir(parents=True)
    monkeypatch.chdir(repo / "runs" / "a")
    assert provenance([])["git_commit"] == git(repo, "rev-parse", "HEAD").strip()


def test_git_dirty_means_a_tracked_file_changed(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo)
    (repo / "runs").mkdir()
    (repo / "runs" / "summary.json").write_text("{}")  # untracked output: still clean
    assert provenance([])["git_dirty"] is False
    (repo / "train.toml").write_text("[optim]\nlr = 0.05\n")
    assert provenance([])["git_dirty"] is True
    git(repo, "commit", "-q", "-am", "second")
    facts = provenance([])
    assert facts["git_dirty"] is False
    assert facts["git_commit"] == git(repo, "rev-parse", "HEAD").strip()


def test_no_git_facts_outside_a_repository(outside_any_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(outside_any_repo)
    facts = provenance(["train"])
    assert not GIT_KEYS & set(facts)
    assert facts["command"] == "mlpkit train"


def test_no_git_facts_in_a_repository_without_commits(
    outside_any_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    git(outside_any_repo, "init", "-q")
    monkeypatch.chdir(outside_any_repo)
    assert not GIT_KEYS & set(provenance([]))


def test_no_git_facts_without_git(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.chdir(repo)
    monkeypatch.setenv("PATH", str(empty))
    facts = provenance([])
    assert not GIT_KEYS & set(facts)
    assert facts["mlpkit_version"] == mlpkit.__version__


def test_a_hung_git_is_given_up(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "git").write_text("#!/bin/sh\nexec sleep 30\n")
    (fake / "git").chmod(0o755)
    monkeypatch.chdir(repo)
    monkeypatch.setenv("PATH", f"{fake}:/usr/bin:/bin")
    monkeypatch.setattr(_provenance, "_GIT_TIMEOUT", 0.2)
    started = datetime.now()
    assert not GIT_KEYS & set(provenance([]))
    assert datetime.now() - started < timedelta(seconds=5)  # one timed-out call, not three waits of 30 s
