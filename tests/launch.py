"""Start several ranks of one job the way ``torchrun`` starts them, without torchrun's agent.

Importable from any test as ``from launch import launch_ranks`` (``pythonpath = ["tests"]``).

Why not torchrun itself for every multi-process test: its agent stops the whole group 0.1 s after
the first rank exits with an error (SIGTERM to the others), so what a *failing* run prints, and
which clean-up a rank finishes, depends on how the ranks happen to be scheduled. Here every rank
runs to its own end and its output is kept apart, so a test can assert what each rank did.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

# What torchrun sets for its workers and a launch replaces; nothing of an outer launch may leak in.
_LAUNCH_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                "TORCHELASTIC_USE_AGENT_STORE", "TORCHELASTIC_RUN_ID", "TORCHELASTIC_RESTART_COUNT")


@dataclass(frozen=True)
class RankResult:
    """One rank's exit status and output."""

    rank: int
    returncode: int
    stdout: str
    stderr: str


def launch_ranks(
    argv: list[str], *, cwd: Path, world_size: int = 2, timeout: float = 120.0
) -> list[RankResult]:
    """Run ``python ARGV`` once per rank, as ``torchrun --nproc_per_node=WORLD_SIZE`` would; wait for all.

    Each process gets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT`` and
    one thread. The rendezvous store is hosted by this process on a port the OS assigns at bind
    time, and held until every rank has exited; the ranks join it as clients
    (``TORCHELASTIC_USE_AGENT_STORE``, torchrun's own arrangement). So no port is chosen, freed and
    then bound again, which another process on the machine could take in between.

    Parameters
    ----------
    argv : list of str
        Arguments after ``python``: ``["-m", "mlpkit", ...]`` or ``[script, ...]``.
    cwd : Path
        Working directory of every rank.
    world_size : int
    timeout : float
        Seconds for the whole job; then every rank still running is killed and ``TimeoutError``
        raised with what each rank had printed.

    Returns
    -------
    list of RankResult
        Indexed by rank.
    """
    from torch.distributed import TCPStore

    env = {k: v for k, v in os.environ.items() if k not in _LAUNCH_VARS}
    env |= {
        "WORLD_SIZE": str(world_size),
        "LOCAL_WORLD_SIZE": str(world_size),
        "MASTER_ADDR": "127.0.0.1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "TORCHELASTIC_USE_AGENT_STORE": "True",
    }
    with contextlib.ExitStack() as stack:
        logs = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ranks-")))
        # Files, not pipes: a rank blocked on a full pipe would stall the collective the others wait in.
        outs = [stack.enter_context(open(logs / f"{rank}.out", "w+")) for rank in range(world_size)]
        errs = [stack.enter_context(open(logs / f"{rank}.err", "w+")) for rank in range(world_size)]
        # Bound here (port 0: the OS picks a free one) and kept until every rank has exited.
        store = TCPStore("127.0.0.1", 0, world_size, is_master=True, wait_for_workers=False)
        env["MASTER_PORT"] = str(store.port)
        procs = [
            subprocess.Popen(
                [sys.executable, *argv],
                cwd=cwd,
                env=env | {"RANK": str(rank), "LOCAL_RANK": str(rank)},
                stdout=outs[rank],
                stderr=errs[rank],
                text=True,
            )
            for rank in range(world_size)
        ]
        deadline = time.monotonic() + timeout
        try:
            for proc in procs:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for proc in procs:
                proc.kill()
                proc.wait()
            printed = "\n".join(f"--- rank {r} ---\n{_read(errs[r])}" for r in range(world_size))
            raise TimeoutError(f"the ranks did not finish within {timeout:g} s:\n{printed}") from None
        return [
            RankResult(rank, proc.returncode, _read(outs[rank]), _read(errs[rank]))
            for rank, proc in enumerate(procs)
        ]


def _read(f: IO[str]) -> str:
    f.seek(0)
    return f.read()
