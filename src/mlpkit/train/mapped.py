"""Training inputs read from memory-mapped files batch by batch, so memory does not grow with the file.

The torch trainer moves an in-memory data set to the device once per fit and indexes it there. A
CTR training set is a memory map of the encoded ids (:class:`~mlpkit.data.tables.TableSplit`),
possibly larger than memory: :class:`MappedRows` stands in for such an (N, ...) input. Indexed like
a tensor (a (B,) index tensor or a slice), it returns those rows as a tensor on the device. Each
rank of a torchrun group converts only its own rows; it reads the whole blocks they lie in (a
rank's share of a batch still falls in nearly every block of the window).

It does not read them through the map. A page of a map that a read touches stays in the process's
resident set (``VmRSS``, ``VmHWM``) until unmapped, and a read fault maps far more than the page:
64 KiB by Linux's fault-around, a whole large folio (up to 2 MiB) on file systems that cache files
in large folios (ext4 and XFS on recent kernels). One batch of 4,096 rows drawn from 256 places
mapped 220 MiB of a 500 MiB file there. So the file is read with ``os.preadv`` into memory of our
own, a fixed ring of blocks:

- **Blocks.** The rows are read ``block_rows`` (1,024) consecutive rows at a time into a ring of
  slots, enough for two windows (:class:`_BlockRing`). A batch gathers its rows from the ring with
  one fancy index; a block not yet there is read when a batch first needs it, into the next slot in
  ring order that the batch does not use.
- **A local order.** Once the file holds more than one window (``window_rows``, 2**18 rows), the
  trainer shuffles it with :func:`windowed_order`. The blocks are shuffled, and then the rows of
  each window of the shuffled blocks are shuffled again. Every row is read once per epoch, each
  block once, and a batch mixes rows from 256 places in the file. This is the shuffle buffer of
  out-of-core data loaders (``tf.data``'s ``shuffle(buffer_size)`` over shuffled shards). A file of
  at most one window keeps the full permutation
  (:func:`~mlpkit.train.torch_trainer.epoch_order`), the order of in-memory training and the NumPy
  trainer, and the ring holds all of it.
- **Slices** (evaluation's batches, in file order) are read straight into the batch.

What the reads allocate is the ring: at most ``2 * window_rows + 2 * block_rows`` rows, 84 MB for the
160-byte rows of a Criteo-shaped file, whatever the file's size. The file's pages stay in the
kernel's page cache, so reading a block again costs a copy, not a disk read. An array that is not a
whole read-only ``.npy``-style memory map (a view, a copy-on-write map, an array in memory) is
indexed as it is, and so is a map whose file is gone or was replaced by another since it was mapped
(the descriptor must open the file the map shows). A batch spread over more blocks than the ring
holds (a batch larger than a window, or an order without locality) is gathered a ring's worth of
its blocks at a time: slower, as each block it touches is read whole, but in the same memory.
"""

from __future__ import annotations

import os
import weakref
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mlpkit._io import read_into

__all__ = ["BLOCK_ROWS", "WINDOW_ROWS", "MappedRows", "is_memory_map", "windowed_order"]


WINDOW_ROWS = 1 << 18
"""The shuffle window of a larger file's epoch: 262,144 rows (42 MB of the 160-byte rows of a
Criteo-shaped file); the ring holds two."""

BLOCK_ROWS = 1 << 10
"""Consecutive rows read together: 1,024 rows (104 KiB of 26 int32 ids), one ``preadv`` each."""


def is_memory_map(array: Any) -> bool:
    """Whether ``array`` is a NumPy memory map (``np.memmap``, or ``np.load(..., mmap_mode=...)``)."""
    return isinstance(array, np.memmap)


def windowed_order(rng: np.random.Generator, n: int, *, window_rows: int = WINDOW_ROWS,
                   block_rows: int = BLOCK_ROWS) -> np.ndarray:
    """One epoch's order of N rows, local to windows of ``window_rows`` rows: (N,) int32 (int64 from
    N + block_rows = 2**31 on).

    The ``ceil(N / block_rows)`` blocks of consecutive rows are shuffled (``rng.permutation``); then
    each run of ``window_rows`` positions of that order is shuffled in place (``rng.shuffle``), in
    order. Every row appears once. A window's rows come from at most ``window_rows / block_rows + 1``
    blocks (one more when the short last block falls inside it), and consecutive positions lie in the
    same window or the next one.

    Examples
    --------
    >>> order = windowed_order(np.random.default_rng(0), 10, window_rows=4, block_rows=2)
    >>> sorted(order.tolist()) == list(range(10)), order.dtype
    (True, dtype('int32'))
    >>> [sorted({int(row) // 2 for row in order[i : i + 4]}) for i in (0, 4)]  # two blocks a window
    [[2, 4], [0, 3]]
    """
    dtype = np.int32 if n + block_rows < 2**31 else np.int64
    k = -(-n // block_rows)
    blocks = rng.permutation(k).astype(dtype)                               # (K,) in the epoch's order
    order = (blocks[:, None] * block_rows + np.arange(block_rows, dtype=dtype)).ravel()  # (K * block,)
    if short := k * block_rows - n:  # the last block's missing rows: move what follows them down
        end = (int(np.flatnonzero(blocks == k - 1)[0]) + 1) * block_rows - short
        order[end:n] = order[end + short :]
        order = order[:n]                                                    # (N,)
    for start in range(0, n, window_rows):
        rng.shuffle(order[start : start + window_rows])                     # a view: shuffled in place
    return order


def _mapped_inode(address: int) -> tuple[int, int] | None:
    """(device, inode) of the file mapped at ``address``, from /proc/self/maps; None where there is none."""
    try:
        with open("/proc/self/maps", encoding="ascii") as maps:
            for line in maps:  # "start-end perms offset major:minor inode path"
                span, _, _, device, inode = line.split()[:5]
                start, end = (int(a, 16) for a in span.split("-"))
                if start <= address < end:
                    major, minor = (int(d, 16) for d in device.split(":"))
                    return os.makedev(major, minor), int(inode)
    except (OSError, ValueError):
        pass
    return None


def _open_mapped_file(array: np.ndarray) -> tuple[int, int] | None:
    """(read-only descriptor, where row 0 starts) of the file a whole read-only C-ordered ``np.memmap``
    maps; None for anything else, which is indexed as it is: a view of a map, a copy-on-write or
    writable map, an array in memory, an empty one, or a map whose file is gone from its path, too
    short, or (where /proc/self/maps tells) another file than the one mapped."""
    whole_file = isinstance(array, np.memmap) and not isinstance(array.base, np.ndarray)
    if (not whole_file or array.mode != "r" or array.filename is None or not array.flags.c_contiguous
            or not len(array) or not hasattr(os, "preadv")):
        return None
    offset = int(array.offset)
    try:
        fd = os.open(str(array.filename), os.O_RDONLY)
    except OSError:
        return None
    stat = os.fstat(fd)
    mapped = _mapped_inode(array.ctypes.data) if array.nbytes else None
    if stat.st_size < offset + array.nbytes or (mapped is not None and mapped != (stat.st_dev, stat.st_ino)):
        os.close(fd)
        return None
    return fd, offset


class _BlockRing:
    """Rows of an (N, ...) array stored in a file, read ``block_rows`` at a time into a ring of slots.

    Parameters
    ----------
    fd : int
        A descriptor of the file, closed with the ring.
    array : np.memmap of shape (N, ...)
        The map of that file: its name (for errors), shape and dtype.
    offset : int
        Where row 0 starts in the file.
    block_rows : int
    slots : int
        Blocks the ring holds (fewer if the file has fewer).
    """

    def __init__(self, fd: int, array: np.memmap, offset: int, block_rows: int, slots: int) -> None:
        shape, dtype = array.shape, array.dtype
        self.path, self.n, self.offset, self.block_rows = str(array.filename), shape[0], offset, block_rows
        self.row_bytes = dtype.itemsize * int(np.prod(shape[1:], dtype=np.int64))
        blocks = -(-self.n // block_rows)
        slots = min(slots, blocks)
        self.fd = fd
        self._close = weakref.finalize(self, os.close, fd)
        self.buffer = np.empty((slots * block_rows, *shape[1:]), dtype=dtype)  # (S * block, ...)
        self.slot_of = np.full(blocks, -1, dtype=np.int64)   # (K,) each block's slot, -1 if not held
        self.block_in = np.full(slots, -1, dtype=np.int64)   # (S,) each slot's block, -1 if empty
        self.next = 0                                        # where the ring goes on filling

    def take(self, index: np.ndarray) -> np.ndarray:
        """Rows ``index`` ((B,) int in [0, N), any order, repeats allowed) as a new (B, ...) array.

        A batch spread over more blocks than the ring holds is gathered a ring's worth of its
        blocks at a time, in file order: the memory stays the ring's whatever the batch.
        """
        block = index // self.block_rows                                 # (B,)
        needed = np.unique(block)                                        # (U,) ascending
        slots = len(self.block_in)
        if len(needed) <= slots:
            self._hold(needed)
            return self._held(block, index)
        out = np.empty((len(index), *self.buffer.shape[1:]), dtype=self.buffer.dtype)  # (B, ...)
        part_of = np.searchsorted(needed, block) // slots                # (B,) which ring's worth
        for part in range(-(-len(needed) // slots)):
            self._hold(needed[part * slots : (part + 1) * slots])
            mine = np.flatnonzero(part_of == part)                       # rows of this part's blocks
            out[mine] = self._held(block[mine], index[mine])
        return out

    def _held(self, block: np.ndarray, index: np.ndarray) -> np.ndarray:
        """Rows ``index`` ((B,), in blocks ``block`` = index // block_rows, all held) as a new array."""
        return self.buffer[self.slot_of[block] * self.block_rows + index % self.block_rows]

    def _hold(self, needed: np.ndarray) -> None:
        """Read the blocks of ``needed`` ((U,) ascending, U <= slots) the ring does not hold into
        slots that hold none of them, oldest first."""
        missing = needed[self.slot_of[needed] < 0]
        if len(missing):
            free = np.flatnonzero(~np.isin(self.block_in, needed))      # slots this batch does not use
            free = np.concatenate([free[free >= self.next], free[free < self.next]])[: len(missing)]
            for slot, b in zip(free.tolist(), missing.tolist(), strict=True):  # oldest first, file order
                self._load(slot, b)
            self.next = (int(free[-1]) + 1) % len(self.block_in)

    def _load(self, slot: int, block: int) -> None:
        if self.block_in[slot] >= 0:
            self.slot_of[self.block_in[slot]] = -1
        first = block * self.block_rows
        rows = min(self.block_rows, self.n - first)
        self._read(self.buffer[slot * self.block_rows : slot * self.block_rows + rows], first)
        self.block_in[slot], self.slot_of[block] = block, slot

    def _read(self, out: np.ndarray, first: int) -> None:
        """Fill ``out`` (C-contiguous rows) with the file's rows from ``first`` on."""
        got = read_into(self.fd, memoryview(out), self.offset + first * self.row_bytes)
        if got != out.nbytes:
            raise OSError(f"{self.path}: rows {first}..{first + len(out) - 1} are not all there ({got} of "
                          f"{out.nbytes} bytes read): was the file cut short?")

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` (in range), read straight into a new array."""
        out = np.empty((stop - start, *self.buffer.shape[1:]), dtype=self.buffer.dtype)
        self._read(out, start)
        return out


class MappedRows:
    """An (N, ...) memory-mapped array whose rows are read onto the device when indexed.

    Parameters
    ----------
    array : np.memmap of shape (N, ...)
    device : torch.device
        Where the rows read go.
    dtype : torch.dtype
        What they are converted to (the model's float dtype, or int64 for embedding ids).
    window_rows : int
        The trainer shuffles an input of more rows than this with :func:`windowed_order`; the ring
        holds two windows.
    block_rows : int
        Consecutive rows read together (and the blocks of :func:`windowed_order`).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "ids.npy"
    >>> np.save(path, np.arange(12).reshape(6, 2))
    >>> rows = MappedRows(np.load(path, mmap_mode="r"), device=torch.device("cpu"), dtype=torch.int64)
    >>> rows[torch.tensor([4, 0])]
    tensor([[8, 9],
            [0, 1]])
    >>> rows.shape, rows[1:3].shape
    ((6, 2), torch.Size([2, 2]))
    """

    def __init__(self, array: np.ndarray, *, device: torch.device, dtype: torch.dtype,
                 window_rows: int = WINDOW_ROWS, block_rows: int = BLOCK_ROWS) -> None:
        if array.ndim == 0:
            raise ValueError("a memory-mapped input must have a batch axis, got a scalar")
        if not 0 < block_rows <= window_rows:
            raise ValueError(f"need 0 < block_rows <= window_rows, got {block_rows} and {window_rows}")
        self.array = array
        self.device = device
        self.dtype = dtype
        self.window_rows = window_rows
        self.block_rows = block_rows
        self._ring = self._open_ring()

    def _open_ring(self) -> _BlockRing | None:
        opened = _open_mapped_file(self.array)
        if opened is None:
            return None
        fd, offset = opened
        return _BlockRing(fd, self.array, offset, self.block_rows,
                          slots=2 * (self.window_rows // self.block_rows) + 2)  # two windows

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_ring"}  # a descriptor is this process's

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._ring = self._open_ring()                                   # a copy opens the file again

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def __getitem__(self, index: Tensor | slice) -> Tensor:
        """Rows ``index`` (a (B,) integer tensor, in any order, repeats allowed, or a slice) as a
        (B, ...) tensor on the device, equal to ``torch.as_tensor(array)[index]``."""
        rows = self._slice(index) if isinstance(index, slice) else self._take(index.cpu().numpy())
        return torch.from_numpy(rows).to(device=self.device, dtype=self.dtype)

    def _slice(self, index: slice) -> np.ndarray:
        start, stop, step = index.indices(len(self))
        if self._ring is None or step != 1:
            return np.array(self.array[index])                   # (B, ...): one copy
        return self._ring.rows(start, max(start, stop))

    def _take(self, wanted: np.ndarray) -> np.ndarray:
        if len(wanted) and (wanted.min() < -len(self) or wanted.max() >= len(self)):
            raise IndexError(f"row index out of range for {len(self)} rows: {wanted.min()}..{wanted.max()}")
        wanted = np.where(wanted < 0, wanted + len(self), wanted)    # (B,) as NumPy counts them
        if self._ring is not None:
            return self._ring.take(wanted)
        order = np.argsort(wanted, kind="stable")                 # not a file we read: its map, forward
        rows = np.empty((len(wanted), *self.array.shape[1:]), dtype=self.array.dtype)
        rows[order] = self.array[wanted[order]]
        return rows

    def __repr__(self) -> str:
        return (f"MappedRows(shape={self.shape}, dtype={self.array.dtype} -> {self.dtype}, "
                f"device={self.device})")
