"""Data parallelism over ``torch.distributed``, launched by the standard ``torchrun``.

``torchrun --nproc_per_node=2 -m mlpkit train --engine torch ...`` starts one process per rank
with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set;
:func:`init_distributed` reads them and joins the process group (gloo on CPU, nccl on GPU).

Why 2-process training equals 1-process training with the same global batch: every rank draws
the same seeded permutation of the training set, and :func:`shard_batch` gives rank ``r`` the
``r``-th of ``WORLD_SIZE`` contiguous pieces of each global batch of size B. DDP averages the
ranks' gradients, so with equal pieces of B/W samples the update is the gradient of the mean
loss over the whole global batch, as in one process. Only float summation order differs.
A last, smaller batch is split as evenly as possible and each rank's loss is weighted by its
share (see :func:`shard_weight`), so it is exact too.

Only rank 0 writes the run directory (:func:`is_rank_zero`); metrics are sums reduced over the
ranks (:func:`all_reduce_sum`). Dropout masks come from each rank's own torch generator, so with
dropout on the ranks do not reproduce a single process mask for mask; a checkpoint keeps every
rank's generator (:func:`gather_generator_states`), so a resumed run draws the masks it would have.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from mlpkit.errors import ConfigError, MlpkitError
from mlpkit.train.device import resolve_device

__all__ = [
    "DistributedContext",
    "all_reduce_sum",
    "broadcast_json",
    "cleanup_distributed",
    "count_failures",
    "gather_generator_states",
    "gather_rows",
    "init_distributed",
    "is_distributed",
    "is_rank_zero",
    "local_batch_size",
    "on_every_rank",
    "shard_batch",
    "shard_bounds",
    "shard_weight",
    "wait_for_every_rank",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in the process group.

    Attributes
    ----------
    rank, world_size, local_rank : int
    backend : str
        ``"gloo"`` or ``"nccl"``.
    device : torch.device
        ``cuda:{local_rank}`` for nccl, else ``cpu``.
    """

    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: torch.device

    @property
    def is_rank_zero(self) -> bool:
        """Whether this process writes the run directory."""
        return self.rank == 0


def _env_int(env: Mapping[str, str], name: str) -> int:
    raw = env.get(name)
    try:
        return int(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"torchrun environment variable {name} must be an int, got {raw!r}") from None


def init_distributed(
    device: str = "auto",
    *,
    backend: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout_seconds: float = 300.0,
) -> DistributedContext | None:
    """Join the process group described by torchrun's environment variables.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda"}
        ``"auto"`` and ``"cuda"`` use ``cuda:{LOCAL_RANK}`` with nccl when CUDA is available;
        ``"cpu"`` uses gloo.
    backend : {"gloo", "nccl"} or None
        Override the backend chosen from the device.
    env : mapping or None
        The environment to read (``os.environ`` when None).
    timeout_seconds : float
        How long collectives wait for a missing rank before failing.

    Returns
    -------
    DistributedContext or None
        None when ``WORLD_SIZE`` is unset (a plain single-process run): nothing is initialized.

    Raises
    ------
    ConfigError
        If a torchrun variable is missing or malformed, or ``device``/``backend`` is unknown or
        unavailable.
    """
    env = os.environ if env is None else env
    if "WORLD_SIZE" not in env:
        return None
    missing = [name for name in ENV_VARS if name not in env]
    if missing:
        raise ConfigError(
            f"torchrun environment is incomplete: missing {missing}; launch with "
            "`torchrun --nproc_per_node=N -m mlpkit train ...`"
        )
    rank, world_size, local_rank = (_env_int(env, n) for n in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    if not 0 <= rank < world_size:
        raise ConfigError(f"RANK must lie in [0, WORLD_SIZE={world_size}), got {rank}")
    resolved = resolve_device(device)
    if resolved.type == "cuda":
        resolved = torch.device("cuda", local_rank)
        torch.cuda.set_device(resolved)
    chosen = backend or ("nccl" if resolved.type == "cuda" else "gloo")
    if chosen not in ("gloo", "nccl"):
        raise ConfigError(f"backend must be one of ['gloo', 'nccl'], got {chosen!r}")
    if chosen == "nccl" and resolved.type != "cuda":
        raise ConfigError("backend 'nccl' needs CUDA devices; use backend 'gloo' on CPU")
    if not dist.is_initialized():
        # env:// reads MASTER_ADDR/MASTER_PORT (and RANK/WORLD_SIZE) from os.environ.
        os.environ.update({name: str(env[name]) for name in ENV_VARS})
        dist.init_process_group(
            backend=chosen,
            init_method="env://",
            rank=rank,
            world_size=world_size,
            timeout=timedelta(seconds=timeout_seconds),
        )
    logger.info("rank %d of %d joined the %s process group on %s", rank, world_size, chosen, resolved)
    return DistributedContext(rank, world_size, local_rank, chosen, resolved)


def cleanup_distributed() -> None:
    """Leave the process group if one was joined (safe to call always).

    Whatever still holds the group (a DDP wrapper left in a reference cycle, say) is collected
    first, so that gloo is torn down here. Left to interpreter exit, its teardown sometimes
    aborts a process whose run succeeded (SIGABRT, "terminate called without an active
    exception"): about one torchrun launch in four on a 2-core machine, none in 42 with this.
    """
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def wait_for_every_rank(timeout_seconds: float = 30.0, *, env: Mapping[str, str] | None = None) -> bool:
    """Under torchrun, wait until every rank has called this too, or ``timeout_seconds`` have passed.

    torchrun's agent stops all ranks (SIGTERM) as soon as one exits with an error, so a rank that
    exits first can cut off what the others were about to print or clean up. A rank calls this
    last, after it has reported its outcome, so that none exits before all are done. It counts on
    the launcher's store at ``MASTER_ADDR:MASTER_PORT`` (``TORCHELASTIC_USE_AGENT_STORE=True``:
    the agent hosts it), which outlives the process group, so it also works after
    :func:`cleanup_distributed` and after a failure that left the group unusable.

    Parameters
    ----------
    timeout_seconds : float
        The longest wait, for a rank that died without calling this.
    env : mapping or None
        The environment to read (``os.environ`` when None).

    Returns
    -------
    bool
        True when every rank arrived (at once outside a multi-rank torchrun job); False on timeout.
    """
    env = os.environ if env is None else env
    if env.get("TORCHELASTIC_USE_AGENT_STORE") != "True" or "WORLD_SIZE" not in env:
        return True                                        # no launcher store: nobody stops the others
    world_size = _env_int(env, "WORLD_SIZE")
    if world_size <= 1:
        return True
    store = dist.TCPStore(
        env["MASTER_ADDR"],
        _env_int(env, "MASTER_PORT"),
        world_size,
        is_master=False,
        timeout=timedelta(seconds=timeout_seconds),
    )
    # One counter per job and restart, so a restarted group does not count the last one's arrivals.
    key = f"mlpkit/done/{env.get('TORCHELASTIC_RUN_ID', '')}/{env.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    deadline = time.monotonic() + timeout_seconds
    arrived = store.add(key, 1)
    while arrived < world_size:
        if time.monotonic() >= deadline:
            logger.warning(
                "%d of %d ranks finished within %g s; exiting without the others",
                arrived, world_size, timeout_seconds,
            )
            return False
        time.sleep(0.05)
        arrived = store.add(key, 0)
    return True


def is_distributed() -> bool:
    """Whether a process group with more than one rank is active."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_rank_zero() -> bool:
    """True in rank 0 and in any single-process run: the process that writes files.

    Examples
    --------
    >>> is_rank_zero()
    True
    """
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over every rank, in place, and return it; the identity in a single process.

    Reduce *sums* (loss × samples, correct counts, sample counts), never means, so uneven
    shards weigh right.

    Examples
    --------
    >>> all_reduce_sum(torch.tensor([3.0, 1.0])).shape
    torch.Size([2])
    """
    if is_distributed():
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def gather_generator_states(ctx: DistributedContext) -> list[dict[str, torch.Tensor]]:
    """Every rank's torch generator states, on every rank (a collective: all ranks call it).

    Returns
    -------
    list of dict
        Index r holds rank r's ``{"torch": CPU state}``, plus ``"cuda"`` (its device's state) on a
        GPU; uint8 tensors on the CPU.
    """
    local = {"torch": torch.get_rng_state()}
    if ctx.device.type == "cuda":
        local["cuda"] = torch.cuda.get_rng_state(ctx.device)
    gathered: list[dict[str, torch.Tensor]] = [{} for _ in range(ctx.world_size)]
    for key, state in local.items():  # the same generator type on every rank: equal sizes
        parts = [torch.empty_like(state, device=ctx.device) for _ in range(ctx.world_size)]
        dist.all_gather(parts, state.to(ctx.device))
        for rank, part in enumerate(parts):
            gathered[rank][key] = part.cpu()
    return gathered


def local_batch_size(batch_size: int, world_size: int) -> int:
    """The per-rank batch B / W; the global batch must split evenly.

    Raises
    ------
    ConfigError
        ``batch_size 250 is not divisible by the world size 3: ...``.

    Examples
    --------
    >>> local_batch_size(256, 2)
    128
    """
    if batch_size % world_size:
        raise ConfigError(
            f"batch_size {batch_size} is not divisible by the world size {world_size}: each rank takes "
            f"an equal share of every global batch; use a multiple of {world_size}"
        )
    return batch_size // world_size


def shard_bounds(size: int, rank: int, world_size: int) -> tuple[int, int]:
    """``(start, stop)`` of piece ``rank`` of ``size`` items cut into ``world_size`` contiguous,
    near-equal pieces: the first ``size % world_size`` pieces have one item more.

    Examples
    --------
    >>> [shard_bounds(5, rank, 2) for rank in range(2)]
    [(0, 3), (3, 5)]
    """
    base, extra = divmod(size, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


def shard_batch(batch: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """This rank's contiguous piece of one global batch of indices.

    Pieces have ``len(batch) // world_size`` items, the first ``len(batch) % world_size`` one more.

    Parameters
    ----------
    batch : Tensor of shape (B,)
        Indices of a global batch, a slice of the shared seeded permutation.

    Returns
    -------
    Tensor of shape (B / W,)

    Examples
    --------
    >>> shard_batch(torch.arange(6), rank=1, world_size=2)
    tensor([3, 4, 5])
    """
    start, stop = shard_bounds(len(batch), rank, world_size)
    return batch[start:stop]


def shard_weight(global_size: int, rank: int, world_size: int) -> float:
    """Factor on this rank's mean loss so that DDP's gradient average is the global-batch mean.

    With ``n_r`` samples on rank ``r`` of a global batch of ``n``, DDP computes
    ``(1/W) Σ_r ∇(w_r · mean_r)``; ``w_r = W n_r / n`` makes that ``∇ (1/n) Σ loss``. It is
    exactly 1.0 when the batch splits evenly.

    Examples
    --------
    >>> shard_weight(256, 0, 2), shard_weight(5, 0, 2)
    (1.0, 1.2)
    """
    start, stop = shard_bounds(global_size, rank, world_size)
    return world_size * (stop - start) / global_size


def gather_rows(mine: torch.Tensor, n: int, ctx: DistributedContext) -> torch.Tensor:
    """Every rank's contiguous piece of ``n`` rows (as :func:`shard_batch` cut them), in rank order.

    ``all_gather`` needs equal shapes: the pieces differ by at most one row, so each is padded to
    the longest and the padding dropped after. A collective: every rank calls it.
    """
    longest = -(-n // ctx.world_size)
    padded = mine.new_zeros((longest, *mine.shape[1:]))
    padded[: mine.shape[0]] = mine
    pieces = [torch.empty_like(padded) for _ in range(ctx.world_size)]
    dist.all_gather(pieces, padded)
    bounds = [shard_bounds(n, rank, ctx.world_size) for rank in range(ctx.world_size)]
    sizes = [stop - start for start, stop in bounds]
    return torch.cat([piece[:size] for piece, size in zip(pieces, sizes, strict=True)])


# -- agreeing across ranks --------------------------------------------------------------------


def broadcast_json(ctx: DistributedContext, payload: dict[str, Any] | None) -> dict[str, Any]:
    """Rank 0's ``payload`` on every rank (as JSON bytes in a tensor: nothing is unpickled)."""
    data = json.dumps(payload).encode() if ctx.is_rank_zero else b""
    size = torch.tensor([len(data)], dtype=torch.int64, device=ctx.device)
    dist.broadcast(size, src=0)
    buffer = (
        torch.tensor(list(data), dtype=torch.uint8, device=ctx.device)
        if ctx.is_rank_zero
        else torch.empty(int(size.item()), dtype=torch.uint8, device=ctx.device)
    )
    dist.broadcast(buffer, src=0)
    result: dict[str, Any] = json.loads(bytes(buffer.cpu().tolist()).decode())
    return result


def count_failures(ctx: DistributedContext, failed: bool) -> int:
    """How many ranks failed a step (every rank must call this, whether it failed or not)."""
    flag = torch.tensor([int(failed)], dtype=torch.int64, device=ctx.device)
    dist.all_reduce(flag, op=dist.ReduceOp.SUM)
    return int(flag.item())


def on_every_rank(
    ctx: DistributedContext | None, what: str, action: Callable[[], T], on_failure: Callable[[], None] | None
) -> T:
    """Run ``action`` on every rank; all go on only if it succeeded on all of them.

    A rank that fails tells the others (an all-reduce every rank joins, failed or not) and
    re-raises its error; the others raise one naming how many ranks failed. So no rank waits
    forever in a later collective for a rank that has quit.
    """
    try:
        result = action()
    except BaseException:
        if ctx is not None:
            with contextlib.suppress(Exception):  # keep this rank's own error
                count_failures(ctx, True)
        if on_failure is not None:
            on_failure()
        raise
    if ctx is not None and (failed := count_failures(ctx, False)):
        if on_failure is not None:
            on_failure()
        raise MlpkitError(f"rank {ctx.rank} stops: {failed} other rank(s) failed {what} (see their errors)")
    return result
