"""Data parallelism: two gloo processes on this CPU train to the same weights as one process with the
same global batch and seed; only rank 0 writes; metrics are reduced over ranks; helpers and errors.

The two processes are started the way ``torchrun`` starts them (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT in the environment; :func:`launch.launch_ranks`, whose rendezvous port is
bound before the ranks start, so no other process can take it), each with one thread: this
machine's two cores are shared, and more threads per process slow BLAS down several times.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mlpkit.data.augment import ShiftFlip
from mlpkit.errors import ConfigError
from mlpkit.spec import MLPSpec
from mlpkit.torch_engine import build_torch_mlp, state_arrays
from mlpkit.train.distributed import (
    DistributedContext,
    all_reduce_sum,
    init_distributed,
    is_distributed,
    is_rank_zero,
    local_batch_size,
    shard_batch,
    shard_weight,
    wait_for_every_rank,
)
from mlpkit.train.torch_trainer import TorchTrainer, build_loss, build_optimizer

pytestmark = pytest.mark.torch  # needs torch (the `torch` extra)

EPOCHS, BATCH = 3, 8


def data():
    # 61 samples: the last global batch has 5, split 3 + 2 across the ranks (the weighted case).
    rng = np.random.default_rng(0)
    x = rng.standard_normal((76, 6))
    y = (x[:, :3].sum(axis=1) > 0).astype(np.int64) + (x[:, 3] > 1)
    return x[:61], y[:61], x[61:], y[61:]


def make_trainer(ctx: DistributedContext | None, *, with_metric: bool = True) -> TorchTrainer:
    model = build_torch_mlp(
        MLPSpec(6, (10,), 3, activation="tanh", init="xavier_uniform"),
        rng=np.random.default_rng(1),
        dtype=torch.float64,
    )
    return TorchTrainer(
        model,
        loss=build_loss("cross_entropy"),
        optimizer=build_optimizer("sgd", model, lr=0.1, momentum=0.9, weight_decay=1e-3),
        rng=np.random.default_rng(2),
        batch_size=BATCH,
        distributed=ctx,
        grad_clip_norm=5.0,
        # Rows of 6 as 2x3 images: every rank draws the crops of the whole global batch and keeps
        # its share, so the augmented ranks still add up to the one augmented process.
        augment=ShiftFlip(2, 3, max_shift=1, flip_p=0.5),
        # A whole-set metric: its scores are gathered from both ranks' uneven pieces (8 + 7 rows), from
        # the same forward pass that sums the validation loss and accuracy.
        metrics={"top1": (lambda y, logits: float(np.mean(logits.argmax(axis=1) == y)), "max")}
        if with_metric
        else None,
    )


def _worker(out: Path) -> None:
    """One rank: train, let rank 0 checkpoint, dump this rank's result for the test to compare."""
    from mlpkit.train.checkpoint import save_checkpoint
    from mlpkit.train.distributed import cleanup_distributed

    torch.set_num_threads(1)
    ctx = init_distributed("cpu")
    try:
        trainer = make_trainer(ctx)
        calls: list[int] = []
        eval_forwards: list[int] = []  # forward calls in evaluation mode: the validation passes

        def count_eval(module, args):
            if not module.training:
                eval_forwards.append(1)

        trainer.model.register_forward_pre_hook(count_eval)

        def on_epoch_end(record):
            calls.append(record["epoch"])
            save_checkpoint(out / "run", trainer)

        trainer.on_epoch_end = on_epoch_end
        x, y, xv, yv = data()
        history = trainer.fit(x, y, xv, yv, epochs=EPOCHS)
        direct = save_checkpoint(out / f"direct{ctx.rank}", trainer)
        np.savez(out / f"rank{ctx.rank}.npz", **state_arrays(trainer.model))
        (out / f"rank{ctx.rank}.json").write_text(
            json.dumps(
                {
                    "records": history.records,
                    "calls": calls,
                    "eval_forwards": len(eval_forwards),
                    "rank_zero": is_rank_zero(),
                    "direct": direct is not None,
                    "backend": ctx.backend,
                    "world_size": ctx.world_size,
                }
            )
        )
    finally:
        cleanup_distributed()


def test_two_gloo_processes_equal_one_process_with_the_same_global_batch(tmp_path):
    from launch import launch_ranks  # here: the ranks run this file as a script, outside pytest's path

    ranks = launch_ranks([__file__, str(tmp_path)], cwd=tmp_path, timeout=100)
    for rank in ranks:
        assert rank.returncode == 0, f"rank {rank.rank} failed:\n{rank.stderr}"

    # The single-process reference, same seed, same global batch.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = make_trainer(None)
        single.fit(*data(), epochs=EPOCHS)
    finally:
        torch.set_num_threads(threads)
    expected = state_arrays(single.model)
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    weights = [dict(np.load(tmp_path / f"rank{r}.npz")) for r in range(2)]
    for name, value in expected.items():
        np.testing.assert_array_equal(weights[0][name], weights[1][name], err_msg=f"ranks disagree on {name}")
        np.testing.assert_allclose(weights[0][name], value, rtol=1e-9, atol=1e-12, err_msg=name)
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_top1"):  # over both ranks
        for rank in range(2):
            np.testing.assert_allclose(
                [r[key] for r in results[rank]["records"]],
                single.history.column(key),
                rtol=1e-9,
                err_msg=f"rank {rank}: {key}",
            )
    assert single.history.column("val_top1") == single.history.column("val_accuracy")
    # Without metrics the validation pass keeps no logits and gathers nothing, only two sums: the
    # one pass with metrics records the same loss and accuracy.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        plain = make_trainer(None, with_metric=False)
        plain.fit(*data(), epochs=EPOCHS)
    finally:
        torch.set_num_threads(threads)
    for rank in range(2):
        records = results[rank]["records"]
        losses = [r["val_loss"] for r in records]
        np.testing.assert_allclose(losses, plain.history.column("val_loss"), rtol=1e-9, err_msg=str(rank))
        assert [r["val_accuracy"] for r in records] == plain.history.column("val_accuracy")
        # Each rank's 8 or 7 validation rows fit one evaluation batch: one forward per epoch, not two.
        assert results[rank]["eval_forwards"] == EPOCHS, f"rank {rank}"
    assert [r["backend"] for r in results] == ["gloo", "gloo"] and results[0]["world_size"] == 2
    assert [r["rank_zero"] for r in results] == [True, False]
    assert results[0]["calls"] == [1, 2, 3] and results[1]["calls"] == []  # only rank 0 writes
    assert [r["direct"] for r in results] == [True, False]
    assert (tmp_path / "direct0" / "checkpoint.json").is_file() and not (tmp_path / "direct1").exists()
    assert json.loads((tmp_path / "run" / "checkpoint.json").read_text())["epoch"] == EPOCHS


# -- leaving together ----------------------------------------------------------------------------

_WAITER = (
    "import os, sys, time\n"
    "from pathlib import Path\n"
    "from mlpkit.train.distributed import wait_for_every_rank\n"
    "rank, out, late = os.environ['RANK'], Path(sys.argv[1]), sys.argv[2]\n"
    "if rank == '1':\n"
    "    if late == 'never':\n"
    "        sys.exit(0)\n"
    "    time.sleep(float(late))\n"
    "    (out / 'rank1-done').write_text('')\n"
    "start = time.monotonic()\n"
    "arrived = wait_for_every_rank(1.0 if late == 'never' else 60.0)\n"
    "print(arrived, (out / 'rank1-done').exists(), time.monotonic() - start >= 1.0)\n"
)


def test_wait_for_every_rank_lets_no_rank_leave_before_the_others_arrive(tmp_path):
    from launch import launch_ranks

    script = tmp_path / "waiter.py"
    script.write_text(_WAITER)
    # Rank 1 arrives 0.5 s late, after writing a file: rank 0 can only get past the wait once it exists.
    rank0, rank1 = launch_ranks([str(script), str(tmp_path), "0.5"], cwd=tmp_path, timeout=60)
    assert (rank0.returncode, rank1.returncode) == (0, 0), rank0.stderr + rank1.stderr
    assert rank0.stdout.split()[:2] == rank1.stdout.split()[:2] == ["True", "True"]


def test_wait_for_every_rank_gives_up_on_a_rank_that_never_comes(tmp_path):
    from launch import launch_ranks

    script = tmp_path / "waiter.py"
    script.write_text(_WAITER)
    rank0, rank1 = launch_ranks([str(script), str(tmp_path), "never"], cwd=tmp_path, timeout=60)
    assert (rank0.returncode, rank1.returncode) == (0, 0), rank0.stderr
    assert rank0.stdout == "False False True\n"                 # waited its full 1 s, then left alone
    assert "1 of 2 ranks finished within 1 s; exiting without the others" in rank0.stderr


def test_wait_for_every_rank_returns_at_once_without_a_launcher_store():
    assert wait_for_every_rank(env={})                            # not under torchrun
    assert wait_for_every_rank(env={"WORLD_SIZE": "2", "RANK": "0"})  # no agent store to count on


# -- helpers ------------------------------------------------------------------------------------


def test_shards_of_a_global_batch_are_contiguous_and_cover_it():
    batch = torch.arange(10, 20)
    shards = [shard_batch(batch, r, 3) for r in range(3)]
    assert [s.tolist() for s in shards] == [[10, 11, 12, 13], [14, 15, 16], [17, 18, 19]]
    assert shard_batch(torch.arange(1), 1, 2).shape == (0,)  # a rank may get nothing
    # Weighted shard means average to the global mean: sum_r w_r * mean_r / W == mean.
    values = torch.linspace(0, 1, 10, dtype=torch.float64)
    parts = [(shard_weight(10, r, 3) * values[s - 10].mean()).item() for r, s in enumerate(shards)]
    assert sum(parts) / 3 == pytest.approx(values.mean().item(), rel=1e-12)
    assert shard_weight(256, 1, 2) == 1.0


def test_the_global_batch_must_split_evenly():
    assert local_batch_size(256, 4) == 64
    with pytest.raises(
        ConfigError, match=r"batch_size 250 is not divisible by the world size 3: .*use a multiple of 3"
    ):
        local_batch_size(250, 3)
    ctx = DistributedContext(rank=0, world_size=3, local_rank=0, backend="gloo", device=torch.device("cpu"))
    with pytest.raises(ConfigError, match="batch_size 8 is not divisible by the world size 3"):
        make_trainer(ctx)


def test_single_process_defaults():
    assert init_distributed("cpu", env={}) is None  # not under torchrun
    assert is_rank_zero() and not is_distributed()
    values = torch.tensor([1.0, 2.0])
    assert all_reduce_sum(values) is values and values.tolist() == [1.0, 2.0]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"WORLD_SIZE": "2", "RANK": "0"},
            r"torchrun environment is incomplete: missing \['LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT'\]",
        ),
        (
            {"WORLD_SIZE": "two", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "x", "MASTER_PORT": "1"},
            "torchrun environment variable WORLD_SIZE must be an int, got 'two'",
        ),
        (
            {"WORLD_SIZE": "2", "RANK": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "x", "MASTER_PORT": "1"},
            r"RANK must lie in \[0, WORLD_SIZE=2\), got 2",
        ),
        (
            {
                "WORLD_SIZE": "2",
                "RANK": "0",
                "LOCAL_RANK": "0",
                "MASTER_ADDR": "x",
                "MASTER_PORT": "1",
                "_device": "tpu",
            },
            r"device must be one of",
        ),
        (
            {
                "WORLD_SIZE": "2",
                "RANK": "0",
                "LOCAL_RANK": "0",
                "MASTER_ADDR": "x",
                "MASTER_PORT": "1",
                "_backend": "mpi",
            },
            r"backend must be one of \['gloo', 'nccl'\], got 'mpi'",
        ),
        (
            {
                "WORLD_SIZE": "2",
                "RANK": "0",
                "LOCAL_RANK": "0",
                "MASTER_ADDR": "x",
                "MASTER_PORT": "1",
                "_backend": "nccl",
            },
            "backend 'nccl' needs CUDA devices",
        ),
    ],
)
def test_a_bad_torchrun_environment_is_a_config_error(env, message):
    env = dict(env)
    device, backend = env.pop("_device", "cpu"), env.pop("_backend", None)
    with pytest.raises(ConfigError, match=message):
        init_distributed(device, backend=backend, env=env)


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
