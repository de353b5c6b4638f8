"""mlpkit._allocator: glibc keeps freed blocks for the next step once the ``mlpkit`` command has asked."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

import mlpkit._allocator as allocator
from mlpkit.cli import main

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt thresholds are glibc's")

# A training step's pattern: a large block allocated, written, freed, again and again. Run in a
# fresh interpreter, as the setting is for the whole process.
_FAULTS = """
import json, resource, sys
import numpy as np
from mlpkit._allocator import keep_freed_memory

def faults_per_block(nbytes, times=10):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(times):
        block = np.ones(nbytes // 8)          # written on allocation: every page is touched
        del block
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / times

size = 40 << 20                               # above glibc's largest dynamic mmap threshold (32 MiB)
default = faults_per_block(size)
kept = keep_freed_memory()
print(json.dumps({"default": default, "kept": kept, "after": faults_per_block(size)}))
"""


@glibc
def test_a_freed_block_is_reused_instead_of_faulted_in_again() -> None:
    out = subprocess.run([sys.executable, "-c", _FAULTS], capture_output=True, text=True, check=True)
    faults = json.loads(out.stdout)
    assert faults["kept"] is True
    # Each default block comes as new pages (4 KiB, or 2 MiB where NumPy asks for huge pages);
    # once kept, the blocks after the first reuse its pages.
    assert faults["after"] * 5 <= faults["default"]


def test_mlpkit_malloc_default_leaves_the_allocator_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLPKIT_MALLOC", "default")
    assert allocator.keep_freed_memory() is False


def test_the_command_sets_it_before_running_a_subcommand(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    calls: list[str] = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append("set") or True)
    assert main(["evaluate", str(tmp_path / "no-such-run")]) != 0        # an error, after the setting
    assert calls == ["set"]
