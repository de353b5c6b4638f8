"""Training inputs read from memory-mapped files batch by batch, so memory does not grow with the file.

The torch trainer moves an in-memory data set to the device once per fit and indexes it there. A
CTR training set is a memory map of the encoded ids (:class:`~mlpkit.data.tables.TableSplit`),
possibly larger than memory: :class:`MappedRows` stands in for such an (N, ...) input. Indexed like
a tensor (a (B,) index tensor or a slice), it reads only those rows, in file order, and returns
them as a tensor on the device. What the process allocates stays one batch; each rank of a
torchrun group reads only its own rows.

The pages of the file that reads touch stay mapped, and are counted in the process's resident
set (``VmRSS``, ``VmHWM``) as ``RssFile``: they are the kernel's page cache, shared and clean, given
back under memory pressure without any writing. Unmapping them as the epoch goes
(``madvise(MADV_DONTNEED)``) was measured and rejected: a read fault maps 64 KiB around each row
(Linux's fault-around), so one batch of 4,096 random rows maps up to 256 MiB again, and releasing
every batch made an FM epoch over 1M rows 1.5x slower while its peak RSS fell by 13% only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["MappedRows", "is_memory_map"]


def is_memory_map(array: Any) -> bool:
    """Whether ``array`` is a NumPy memory map (``np.memmap``, or ``np.load(..., mmap_mode=...)``)."""
    return isinstance(array, np.memmap)


class MappedRows:
    """An (N, ...) memory-mapped array whose rows are read onto the device when indexed.

    Parameters
    ----------
    array : np.memmap of shape (N, ...)
    device : torch.device
        Where the rows read go.
    dtype : torch.dtype
        What they are converted to (the model's float dtype, or int64 for embedding ids).

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

    def __init__(self, array: np.ndarray, *, device: torch.device, dtype: torch.dtype) -> None:
        if array.ndim == 0:
            raise ValueError("a memory-mapped input must have a batch axis, got a scalar")
        self.array = array
        self.device = device
        self.dtype = dtype

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
        else:
            wanted = index.cpu().numpy()                          # (B,)
            order = np.argsort(wanted, kind="stable")
            rows = np.empty((len(wanted), *self.array.shape[1:]), dtype=self.array.dtype)
            rows[order] = self.array[wanted[order]]               # ascending: the file read forward
        return torch.from_numpy(rows).to(device=self.device, dtype=self.dtype)

    def __repr__(self) -> str:
        return (f"MappedRows(shape={self.shape}, dtype={self.array.dtype} -> {self.dtype}, "
                f"device={self.device})")
