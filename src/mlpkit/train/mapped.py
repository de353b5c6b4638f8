"""Training inputs read from memory-mapped files batch by batch, so memory does not grow with the file.

The torch trainer moves an in-memory data set to the device once per fit and indexes it there. A
CTR training set is a memory map of the encoded ids (:class:`~mlpkit.data.tables.TableSplit`),
possibly larger than memory: :class:`MappedRows` stands in for such an (N, ...) input. Indexed like
a tensor (a (B,) index tensor or a slice), it reads only those rows, in file order, and returns
them as a tensor on the device.

Pages of a memory map that a read has touched stay mapped into the process, and count in its
resident set (``VmRSS``, ``VmHWM``), until the mapping is dropped: an epoch of random batches would
end with the whole file resident. So every :data:`RELEASE_BYTES` of pages read, the mapping is told
that they are not needed (``madvise(MADV_DONTNEED)``). For a read-only file mapping that only unmaps
them: the kernel keeps the file in its page cache, and reading the rows again costs a minor fault,
not disk I/O.
"""

from __future__ import annotations

import mmap
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["RELEASE_BYTES", "MappedRows", "is_memory_map"]

RELEASE_BYTES = 64 << 20
"""Bytes of pages read from a mapping before they are released: what the mapping adds to the RSS
at most. A batch of 4,096 random rows touches up to 16 MiB of 4 KiB pages."""

_PAGE = mmap.PAGESIZE


def is_memory_map(array: Any) -> bool:
    """Whether ``array`` is a NumPy memory map (``np.memmap``, or ``np.load(..., mmap_mode=...)``)."""
    return isinstance(array, np.memmap)


def _mapping(array: np.ndarray) -> mmap.mmap | None:
    """The ``mmap`` object under ``array`` (a memory map or a view of one), or None."""
    base: Any = array
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None)
    return base


class MappedRows:
    """An (N, ...) memory-mapped array whose rows are read onto the device when indexed.

    Parameters
    ----------
    array : np.memmap of shape (N, ...)
    device : torch.device
        Where the rows read go.
    dtype : torch.dtype
        What they are converted to (the model's float dtype, or int64 for embedding ids).
    release_bytes : int
        Pages read before the mapping's resident pages are released (:data:`RELEASE_BYTES`).

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
                 release_bytes: int = RELEASE_BYTES) -> None:
        if array.ndim == 0:
            raise ValueError("a memory-mapped input must have a batch axis, got a scalar")
        self.array = array
        self.device = device
        self.dtype = dtype
        self.release_bytes = release_bytes
        self._mapping = _mapping(array)
        self._row_bytes = int(array.strides[0]) if array.shape[0] else 0
        self._touched = 0                          # bytes of pages read since the last release

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def __getitem__(self, index: Tensor | slice) -> Tensor:
        """Rows ``index`` (a (B,) integer tensor, in any order, repeats allowed, or a slice) as a
        (B, ...) tensor on the device, equal to ``torch.as_tensor(array)[index]``."""
        if isinstance(index, slice):
            rows = np.array(self.array[index])                    # (B, ...): contiguous, one copy
            touched = rows.nbytes + _PAGE
        else:
            wanted = index.cpu().numpy()                          # (B,)
            order = np.argsort(wanted, kind="stable")
            rows = np.empty((len(wanted), *self.array.shape[1:]), dtype=self.array.dtype)
            rows[order] = self.array[wanted[order]]               # ascending: the file read forward
            # Each row touches its own page at worst (a row is smaller than a page here).
            touched = len(wanted) * max(self._row_bytes, _PAGE)
        self._account(touched)
        return torch.from_numpy(rows).to(device=self.device, dtype=self.dtype)

    def _account(self, touched: int) -> None:
        self._touched += touched
        if self._touched >= self.release_bytes and self._mapping is not None:
            # Every page of the mapping at once: walking the page table of a 1 GB mapping takes
            # well under a millisecond, and the next reads fault back only the pages they use.
            if hasattr(self._mapping, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
                self._mapping.madvise(mmap.MADV_DONTNEED)
            self._touched = 0

    def __repr__(self) -> str:
        return (f"MappedRows(shape={self.shape}, dtype={self.array.dtype} -> {self.dtype}, "
                f"device={self.device})")
