"""MappedRows: a memory-mapped input read batch by batch equals the array indexed in memory and trains a
model exactly as the same data held in memory does; the epoch order is the NumPy trainer's permutation
up to one window of rows, and window by window past it; the pages read are released every window."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mlpkit.train.mapped import MappedRows, is_memory_map, windowed_order
from mlpkit.train.torch_trainer import TorchTrainer, build_loss, build_optimizer, epoch_order

pytestmark = pytest.mark.torch

CPU = torch.device("cpu")


def mapped(tmp_path: Path, array: np.ndarray, name: str = "a.npy") -> np.ndarray:
    np.save(tmp_path / name, array)
    return np.load(tmp_path / name, mmap_mode="r")


@pytest.mark.parametrize("index", [[3], [7, 0, 7, 2, 9], list(range(10))[::-1]])
def test_rows_in_any_order_with_repeats_equal_in_memory_indexing(tmp_path: Path, index: list[int]) -> None:
    array = np.random.default_rng(0).integers(0, 1000, (10, 3), dtype=np.int64)
    rows = MappedRows(mapped(tmp_path, array), device=CPU, dtype=torch.int64)
    got = rows[torch.tensor(index)]
    assert got.dtype == torch.int64 and got.shape == (len(index), 3)              # a batch of one: (1, 3)
    np.testing.assert_array_equal(got.numpy(), array[index])


def test_slices_and_the_dtype_conversion(tmp_path: Path) -> None:
    array = np.random.default_rng(1).random((9, 2)).astype(np.float32)
    rows = MappedRows(mapped(tmp_path, array), device=CPU, dtype=torch.float64)
    assert rows.shape == (9, 2) and len(rows) == 9
    np.testing.assert_array_equal(rows[2:5].numpy(), array[2:5].astype(np.float64))
    assert rows[2:5].dtype == torch.float64
    assert rows[0:0].shape == (0, 2)
    assert is_memory_map(np.load(tmp_path / "a.npy", mmap_mode="r")) and not is_memory_map(array)


def test_the_epoch_order_is_the_permutation_the_numpy_trainer_draws() -> None:
    for n in (1, 5, 1000):
        ours, numpy_trainer = np.random.default_rng(n), np.random.default_rng(n)
        order = epoch_order(ours, n)
        assert order.dtype == np.int32
        np.testing.assert_array_equal(order, numpy_trainer.permutation(n))
        assert ours.bit_generator.state == numpy_trainer.bit_generator.state       # the next epochs too


class _TinyCTR(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(50, 4)
        self.linear = nn.Linear(3, 1)
        self.dropout = nn.Dropout(0.2)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        # (B, F) ids and (B, 3) numbers -> (B,) logits
        ids = self.dropout(self.embedding(batch["sparse"]))             # (B, F, 4)
        return ids.sum(dim=(1, 2)) + self.linear(batch["dense"])[:, 0]


Trained = tuple[list[dict[str, object]], dict[str, torch.Tensor]]


def _train(x: dict[str, np.ndarray], y: np.ndarray) -> Trained:
    torch.manual_seed(3)
    model = _TinyCTR()
    trainer = TorchTrainer(model, loss=build_loss("bce_with_logits"),
                           optimizer=build_optimizer("adam", model, lr=0.05),
                           rng=np.random.default_rng(4), batch_size=16, eval_batch_size=24)
    history = trainer.fit(x, y, x, y, epochs=3)
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history.records], model.state_dict()


def test_training_on_memory_maps_equals_training_in_memory_bit_for_bit(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    x = {"sparse": rng.integers(0, 50, (100, 4)), "dense": rng.random((100, 3)).astype(np.float32)}
    y = (x["sparse"][:, 0] > 25).astype(np.float32)
    files = {name: mapped(tmp_path, array, f"{name}.npy") for name, array in x.items()}
    in_memory, on_file = _train(x, y), _train(files, y)
    assert on_file[0] == in_memory[0]                                    # every epoch's losses, exactly
    for name, tensor in in_memory[1].items():
        assert torch.equal(on_file[1][name], tensor), name


@pytest.mark.parametrize("n", [1, 31, 32, 100, 1000, 1001])
def test_the_windowed_order_is_the_shuffled_blocks_each_window_shuffled(n: int) -> None:
    window, block = 64, 16
    order = windowed_order(np.random.default_rng(n), n, window_rows=window, block_rows=block)
    assert order.dtype == np.int32 and sorted(order.tolist()) == list(range(n))     # every row once
    # The definition, step by step: the blocks in the generator's order, each block's rows in file
    # order (the last block short), then the rows of each run of `window` positions reordered.
    blocks = np.random.default_rng(n).permutation(-(-n // block))
    unshuffled = [row for b in blocks for row in range(b * block, min((b + 1) * block, n))]
    for start in range(0, n, window):
        assert sorted(order[start : start + window].tolist()) == sorted(unshuffled[start : start + window])
        assert len({row // block for row in order[start : start + window].tolist()}) <= window // block + 1
    if n >= window:
        assert order[:window].tolist() != unshuffled[:window]                       # shuffled inside


def test_the_windowed_order_differs_between_epochs_and_repeats_for_a_seed() -> None:
    a, b = np.random.default_rng(7), np.random.default_rng(7)
    first, again = (windowed_order(g, 500, window_rows=64, block_rows=8) for g in (a, b))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(windowed_order(a, 500, window_rows=64, block_rows=8), first)


class _Recorded(MappedRows):
    """MappedRows that records the rows of every batch read by an index tensor (training's reads)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.batches: list[list[int]] = []

    def __getitem__(self, index: torch.Tensor | slice) -> torch.Tensor:
        if not isinstance(index, slice):
            self.batches.append(index.tolist())
        return super().__getitem__(index)


@pytest.mark.parametrize(("n", "windowed"), [(64, False), (300, True)])
def test_the_trainer_reads_a_larger_file_window_by_window(tmp_path: Path, n: int, windowed: bool) -> None:
    rng = np.random.default_rng(8)
    sparse = _Recorded(mapped(tmp_path, rng.integers(0, 50, (n, 4))), device=CPU, dtype=torch.int64,
                       window_rows=64, block_rows=16)
    dense = MappedRows(mapped(tmp_path, rng.random((n, 3)).astype(np.float32), "d.npy"), device=CPU,
                       dtype=torch.float32, window_rows=64, block_rows=16)
    model = _TinyCTR()
    trainer = TorchTrainer(model, loss=build_loss("bce_with_logits"),
                           optimizer=build_optimizer("sgd", model, lr=0.1),
                           rng=np.random.default_rng(9), batch_size=32)
    trainer.fit({"sparse": sparse, "dense": dense}, np.zeros(n, np.float32), epochs=2)
    expected = np.random.default_rng(9)
    for _ in range(2):
        order = (windowed_order(expected, n, window_rows=64, block_rows=16) if windowed
                 else expected.permutation(n))                    # up to one window: the full permutation
        epoch, sparse.batches = sparse.batches[: -(-n // 32)], sparse.batches[-(-n // 32):]
        assert epoch == [order[i : i + 32].tolist() for i in range(0, n, 32)]
    assert sparse.batches == []


def _mapped_kib(path: Path) -> int:
    """Resident KiB of this process's maps of ``path`` (/proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 5 and ":" in fields[3] and "-" in fields[0] and not fields[0].endswith(":"):
            inside = fields[-1] == str(path)                       # a mapping's header line
        elif inside and fields[0] == "Rss:":
            total += int(fields[1])
    return total


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps (Linux)")
@pytest.mark.parametrize("mode", ["r", "c"])
def test_rows_are_read_into_memory_of_our_own_not_through_the_map(tmp_path: Path, mode: str) -> None:
    array = np.random.default_rng(10).random((4096, 256)).astype(np.float32)   # 4 MiB, 1 KiB a row
    np.save(tmp_path / "a.npy", array)
    rows = MappedRows(np.load(tmp_path / "a.npy", mmap_mode=mode), device=CPU, dtype=torch.float32,
                      window_rows=256, block_rows=64)
    order = windowed_order(np.random.default_rng(11), 4096, window_rows=256, block_rows=64)
    for start in range(0, 4096, 128):                                            # an epoch's batches
        index = order[start : start + 128]
        np.testing.assert_array_equal(rows[torch.from_numpy(index)].numpy(), array[index])
        np.testing.assert_array_equal(rows[start : start + 128].numpy(), array[start : start + 128])
    everything = np.random.default_rng(12).permutation(4096)     # 64 blocks: more than the ring's 10
    np.testing.assert_array_equal(rows[torch.from_numpy(everything)].numpy(), array[everything])
    if mode == "r":    # read with preadv into the ring: not one page of the file is mapped
        assert _mapped_kib(tmp_path / "a.npy") == 0
    else:              # a copy-on-write map is indexed as it is, and the whole file ends up mapped
        assert _mapped_kib(tmp_path / "a.npy") >= 4000


@pytest.mark.parametrize(("order_kind", "batch"), [("windowed", 50), ("permutation", 4), ("repeats", 4),
                                                   ("permutation", 50)])
def test_the_ring_of_blocks_returns_the_rows_asked_for(tmp_path: Path, order_kind: str, batch: int) -> None:
    n = 1000                                             # 63 blocks of 16 rows; the ring holds 10
    array = np.random.default_rng(12).integers(-99, 99, (n, 3), dtype=np.int32)
    rows = MappedRows(mapped(tmp_path, array), device=CPU, dtype=torch.int64, window_rows=64, block_rows=16)
    rng = np.random.default_rng(13)
    for _ in range(2):                                  # the second epoch reads blocks the ring let go
        order = {"windowed": lambda: windowed_order(rng, n, window_rows=64, block_rows=16),
                 "permutation": lambda: rng.permutation(n),
                 "repeats": lambda: rng.integers(-n, n, n)}[order_kind]()  # negative: from the end
        for start in range(0, n, batch):
            index = order[start : start + batch]
            np.testing.assert_array_equal(rows[torch.from_numpy(index)].numpy(), array[index])
    np.testing.assert_array_equal(rows[990:2000].numpy(), array[990:])
    with pytest.raises(IndexError, match="out of range for 1000 rows"):
        rows[torch.tensor([0, 1000])]
    # 50 random rows span more than the ring's 10 blocks: gathered 10 blocks at a time, so only
    # the ring's 160 rows are ever held, never the map's pages (test_rows_are_read_into_memory...)
    assert rows._ring is not None and len(rows._ring.buffer) == 160


def test_a_copy_on_write_map_gives_what_was_written_to_it(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros((512, 4), np.float32))
    written = np.load(tmp_path / "a.npy", mmap_mode="c")
    written[:] = 1.0                                   # private pages: the file still holds zeros
    rows = MappedRows(written, device=CPU, dtype=torch.float32, window_rows=16, block_rows=16)
    assert bool((rows[torch.arange(512)] == 1.0).all()) and bool((rows[0:512] == 1.0).all())


def test_a_file_cut_short_names_the_file_and_rows(tmp_path: Path) -> None:
    path = tmp_path / "a.npy"
    np.save(path, np.zeros((100, 4), np.float32))
    rows = MappedRows(np.load(path, mmap_mode="r"), device=CPU, dtype=torch.float32,
                      window_rows=32, block_rows=16)
    os.truncate(path, path.stat().st_size - 16 * 50)                 # the last 50 rows gone
    np.testing.assert_array_equal(rows[torch.tensor([3, 40])].numpy(), np.zeros((2, 4)))
    with pytest.raises(OSError, match=r"a\.npy: rows 48\.\.63 are not all there"):
        rows[torch.tensor([3, 60])]


def test_a_map_at_an_offset_is_read_from_there_and_a_view_through_the_map(tmp_path: Path) -> None:
    array = np.arange(200, dtype=np.float32).reshape(50, 4)
    (tmp_path / "raw").write_bytes(b"x" * 24 + array.tobytes())
    on_file = np.memmap(tmp_path / "raw", dtype=np.float32, mode="r", offset=24, shape=(50, 4))
    for source, expected in ((on_file, array), (on_file[10:], array[10:])):
        rows = MappedRows(source, device=CPU, dtype=torch.float32, window_rows=16, block_rows=8)
        assert (rows._ring is not None) == (source is on_file)      # a view has no file offset of its own
        np.testing.assert_array_equal(rows[torch.tensor([0, 17, 39])].numpy(), expected[[0, 17, 39]])
        np.testing.assert_array_equal(rows[3:9].numpy(), expected[3:9])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps (Linux)")
def test_a_file_replaced_or_deleted_after_mapping_is_read_through_the_map(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.arange(8, dtype=np.int64).reshape(4, 2))
    on_file = np.load(tmp_path / "a.npy", mmap_mode="r")
    np.save(tmp_path / "new.npy", np.arange(8, dtype=np.int64).reshape(4, 2) * 100)
    os.replace(tmp_path / "new.npy", tmp_path / "a.npy")               # another file at the same path
    rows = MappedRows(on_file, device=CPU, dtype=torch.int64)
    assert rows._ring is None and rows[torch.tensor([1])].tolist() == [[2, 3]]
    os.remove(tmp_path / "a.npy")
    rows = MappedRows(on_file, device=CPU, dtype=torch.int64)
    assert rows._ring is None and rows[0:2].tolist() == [[0, 1], [2, 3]]


def test_a_copy_or_an_unpickled_one_opens_the_file_again(tmp_path: Path) -> None:
    import copy
    import pickle

    array = np.arange(40, dtype=np.int64).reshape(20, 2)
    rows = MappedRows(mapped(tmp_path, array), device=CPU, dtype=torch.int64, window_rows=8, block_rows=4)
    copied, unpickled = copy.deepcopy(rows), pickle.loads(pickle.dumps(rows))
    del rows                                   # its descriptor closed: a number the next open may reuse
    (tmp_path / "other").write_bytes(b"\xff" * 4096)
    with open(tmp_path / "other", "rb"):
        for other in (copied, unpickled):
            np.testing.assert_array_equal(other[torch.tensor([5, 0])].numpy(), array[[5, 0]])
