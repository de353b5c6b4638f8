"""glibc's malloc told to keep freed memory for the next step: what the ``mlpkit`` command does first.

Training allocates and frees the same large buffers at every step: a (4096, 400) float32
activation of a CTR tower is 6.5 MB, a Criteo-sized embedding gradient 104 MB. glibc serves a
block above its mmap threshold (128 KiB at start, raised as such blocks are freed, to 32 MiB at
most) with fresh pages from ``mmap``, and gives the top of its heap back to the kernel once more
than its trim threshold is free there; either way the next step's block arrives as new pages,
each zeroed by the kernel on first touch. Measured on one CPU thread (glibc 2.36, torch 2.13): a
DeepFM training step on Frappe (about 140 ms) took 3,400-5,800 minor page faults and 7-10 ms of
kernel time, and 110-160 faults and 0.1-0.3 ms with the thresholds below; writing a fresh 104 MB
tensor took 53,000 faults and 52 ms, and 2,500 faults and 15 ms.

:func:`keep_freed_memory` sets both thresholds through ``mallopt(3)``: blocks below 256 MiB come
from the heap, and the heap keeps up to 512 MiB free before trimming. Setting the mmap threshold
also stops glibc's own adjustment of it, for the life of the process, and the memory kept is not
returned to the kernel until the process ends (peak use does not grow: the same blocks are live
at the peak). So the library never does this on import: a process-wide allocator setting is the
application's choice. The ``mlpkit`` command makes it before it runs a command;
``MLPKIT_MALLOC=default`` leaves glibc's defaults. Other C libraries (musl, macOS, Windows) have
no such knobs, and the call changes nothing there.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

__all__ = ["ENV_VAR", "MMAP_THRESHOLD", "TRIM_THRESHOLD", "keep_freed_memory"]

ENV_VAR = "MLPKIT_MALLOC"
"""``default`` here leaves glibc's allocator settings alone."""
MMAP_THRESHOLD = 256 << 20
"""Bytes: blocks below this come from the heap, not from fresh ``mmap`` pages."""
TRIM_THRESHOLD = 512 << 20
"""Bytes of free heap top kept before glibc gives any back to the kernel."""

# mallopt(3) parameter numbers, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds (module docstring); return whether they were set.

    False, changing nothing, when the C library is not glibc, or ``MLPKIT_MALLOC=default``.
    """
    if os.environ.get(ENV_VAR, "").strip().lower() == "default":
        return False
    if platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    # mallopt returns 1 on success, 0 when glibc refuses a value.
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
