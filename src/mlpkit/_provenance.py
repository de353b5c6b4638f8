"""Where and how a run was made: time, command line, machine, versions and the git commit.

:func:`provenance` gathers these facts once, when a run starts, as a JSON-ready dict for the run's
summary and report. It never imports torch (a torch version is recorded only when the process
has already imported it) and never fails: a fact that cannot be had (no git, not a repository,
git too slow) is left out.
"""

from __future__ import annotations

import logging
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from mlpkit import __version__

__all__ = ["provenance"]

logger = logging.getLogger(__name__)

# Seconds each git command may take; a hung network file system must not hold up a run.
_GIT_TIMEOUT = 5.0


def _program() -> list[str]:
    """``sys.argv`` as typed: ``mlpkit`` for the entry point and ``python -m mlpkit``."""
    path = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path()
    if path.name == "mlpkit" or (path.name == "__main__.py" and path.parent.name == "mlpkit"):
        return ["mlpkit", *sys.argv[1:]]
    return list(sys.argv)


def _git(*args: str) -> str | None:
    """Stdout of ``git args`` in the current directory, or None if git is missing or fails."""
    try:
        result = subprocess.run(
            ["git", *args],
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT,
            check=False,
            # Read-only: git status would otherwise refresh (and lock) the index of the user's repository.
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        logger.debug("git %s: %s", " ".join(args), exc)
        return None
    if result.returncode != 0:
        logger.debug("git %s exited with %d: %s", " ".join(args), result.returncode, result.stderr.strip())
        return None
    return result.stdout


def provenance(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The facts that say where, when and from what a run was made.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name, as given to :func:`mlpkit.cli.main`; the command is
        then ``mlpkit`` followed by them. ``None`` takes :data:`sys.argv`, showing the program as
        ``mlpkit`` when it is the ``mlpkit`` entry point or ``python -m mlpkit`` (any other
        program, e.g. a user's script, keeps its own name).

    Returns
    -------
    dict
        ``started_at`` (ISO 8601 local time with its UTC offset, to the second), ``command`` (a
        shell-quoted command line, e.g. ``mlpkit train --epochs 3``), ``host``, ``platform``,
        ``python_version``, ``mlpkit_version``, ``numpy_version``; ``torch_version`` only when
        torch is already imported; ``git_commit`` (the full hash of ``HEAD``) and ``git_dirty``
        (whether tracked files differ from it; untracked files, such as run directories, do not
        count) only when the current directory is inside a git work tree with a commit.

    Examples
    --------
    >>> facts = provenance(["train", "--epochs", "3", "--name", "a b"])
    >>> facts["command"]
    "mlpkit train --epochs 3 --name 'a b'"
    """
    command = _program() if argv is None else ["mlpkit", *argv]
    facts: dict[str, Any] = {
        "started_at": datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": shlex.join(command),
        "host": platform.node(),
        "platform": platform.platform(),
        "python_version": platform.python_version(),
        "mlpkit_version": __version__,
        "numpy_version": np.__version__,
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        facts["torch_version"] = str(getattr(torch, "__version__", "unknown"))

    if (_git("rev-parse", "--is-inside-work-tree") or "").strip() == "true":
        commit = _git("rev-parse", "--verify", "HEAD")
        status = _git("status", "--porcelain", "--untracked-files=no")
        if commit is not None and status is not None:
            facts["git_commit"] = commit.strip()
            facts["git_dirty"] = bool(status.strip())
    return facts
