"""The on-disk cache of an encoded table: NumPy arrays plus the fitted encoding, as JSON.

A cache entry is a directory ``<root>/<key>/`` holding ``meta.json`` (the fitted vocabularies and
statistics, and the shape and dtype of every array) and one ``.npy`` file per array, read back as
memory maps. The root is ``<data_dir>/.mlpkit-cache`` when that can be written, else
``$XDG_CACHE_HOME/mlpkit/tables`` (``~/.cache/mlpkit/tables``).

The key hashes, for each split file, its name, size, modification time (ns) and the BLAKE2b digest
of its first and last MiB, plus the spec, the label column and :data:`FORMAT_VERSION`. Size and
time catch ordinary edits and copies; the two ends catch a rewrite that kept both (``cp -p``,
``touch -r``) wherever it changed the header, the first rows or the last ones, which covers
appended and truncated files. A change of the same size in the middle of a file whose modification
time was put back goes unnoticed: hashing every byte would cost a full read of multi-GB files on
every load, which is what the cache is there to avoid.

An entry is built in a temporary directory beside it and renamed into place, so an interrupted
encoding leaves no entry (a ``.<key>.tmp-*`` directory may stay behind after a kill; it is never
read). On load, every array's file is checked against ``meta.json`` (present, the header's shape
and dtype, the exact byte size); a bad entry is reported as :class:`CorruptCacheError` naming the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mlpkit._io import ensure_writable_dir
from mlpkit.errors import OutputError

__all__ = [
    "FORMAT_VERSION",
    "CorruptCacheError",
    "cache_key",
    "default_cache_root",
    "discard_cache",
    "file_fingerprint",
    "read_cache",
    "write_cache",
]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2
"""Changes whenever the encoding or the cache layout does, so older entries are not read."""
HEAD_TAIL_BYTES = 1 << 20
META = "meta.json"


class CorruptCacheError(Exception):
    """A cache entry that cannot be used: ``path`` is the bad file, ``reason`` what is wrong with it."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def file_fingerprint(path: Path) -> dict[str, Any]:
    """Name, size, modification time (ns) and the BLAKE2b digest of the first and last MiB of ``path``."""
    stat = path.stat()
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as file:
        digest.update(file.read(HEAD_TAIL_BYTES))
        if stat.st_size > HEAD_TAIL_BYTES:
            file.seek(max(HEAD_TAIL_BYTES, stat.st_size - HEAD_TAIL_BYTES))
            digest.update(file.read(HEAD_TAIL_BYTES))
    return {"name": path.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "head_tail_blake2b": digest.hexdigest()}


def cache_key(files: Mapping[str, Path], spec: Mapping[str, Any] | None, label: str) -> str:
    """The name of the cache entry of these files encoded with this spec (20 hex digits)."""
    description = {
        "format": FORMAT_VERSION,
        "label": label,
        "spec": spec,
        "files": {split: file_fingerprint(path) for split, path in files.items()},
    }
    text = json.dumps(description, sort_keys=True)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=10).hexdigest()


def default_cache_root(data_dir: Path) -> Path:
    """``<data_dir>/.mlpkit-cache`` if it can be written, else ``$XDG_CACHE_HOME/mlpkit/tables``."""
    try:
        return ensure_writable_dir(data_dir / ".mlpkit-cache")
    except OutputError:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base) / "mlpkit" / "tables"


def read_cache(
    directory: Path, meta: dict[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``meta.json`` (or ``meta``, when the caller just wrote it) and the arrays of a cache entry,
    memory-mapped read-only.

    Raises
    ------
    CorruptCacheError
        Naming the first file that is missing, unreadable, or not what ``meta.json`` says.
    """
    meta_path = directory / META
    try:
        if meta is None:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT_VERSION:
            raise CorruptCacheError(meta_path, f"format {meta.get('format')!r}, expected {FORMAT_VERSION}")
        entries = meta["arrays"].items()
    except OSError as exc:
        raise CorruptCacheError(meta_path, f"cannot be read ({exc.strerror or exc})") from exc
    except (ValueError, KeyError, AttributeError, TypeError) as exc:
        raise CorruptCacheError(meta_path, f"is not a valid cache description ({exc!r})") from exc
    arrays: dict[str, np.ndarray] = {}
    for name, info in entries:
        try:
            path = directory / info["file"]
            expected = (tuple(info["shape"]), info["dtype"])
        except (KeyError, TypeError) as exc:
            raise CorruptCacheError(meta_path, f"is not a valid cache description ({exc!r})") from exc
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise CorruptCacheError(path, f"cannot be read as .npy ({exc})") from exc
        if (array.shape, str(array.dtype)) != expected:
            raise CorruptCacheError(
                path, f"holds {array.dtype} {array.shape}, expected {expected[1]} {expected[0]}"
            )
        offset = getattr(array, "offset", None)
        if offset is not None and path.stat().st_size != offset + array.nbytes:
            raise CorruptCacheError(
                path, f"is {path.stat().st_size} bytes, expected {offset + array.nbytes}"
            )
        arrays[name] = array
    return meta, arrays


def _fsync_dir(directory: Path) -> None:
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with contextlib.suppress(OSError):                  # some file systems cannot sync a directory
            os.fsync(fd)
    finally:
        os.close(fd)


def write_cache(
    root: Path, key: str, build: Callable[[Path], dict[str, Any]]
) -> tuple[Path, dict[str, Any]]:
    """Build the entry ``root/key`` atomically; return its directory and metadata.

    ``build(directory)`` writes the ``.npy`` files into a fresh temporary directory and returns the
    metadata, which is written last; the directory is then renamed to ``key``. If ``build`` raises,
    the temporary directory is removed and nothing else is touched. If another process finished the
    same entry first, its copy is kept.
    """
    ensure_writable_dir(root)
    target = root / key
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=root))
    try:
        meta = build(tmp)
        # Compact: the vocabularies make it long, and an indent makes json use its pure-Python
        # encoder, which took 0.35 s for the 10^5 categories of a Criteo-shaped file.
        meta_text = json.dumps(meta, allow_nan=False, ensure_ascii=False) + "\n"
        with open(tmp / META, "w", encoding="utf-8") as file:
            file.write(meta_text)
            file.flush()
            os.fsync(file.fileno())
        _fsync_dir(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / META).is_file():
                raise
            logger.info("another process cached the same encoding in %s first; using it", target)
            shutil.rmtree(tmp, ignore_errors=True)
            meta = json.loads((target / META).read_text(encoding="utf-8"))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(root)
    return target, meta


def discard_cache(directory: Path) -> None:
    """Remove a cache entry: renamed aside first, so it is gone from its name at once."""
    aside = directory.with_name(f".{directory.name}.discarded-{os.getpid()}")
    try:
        os.rename(directory, aside)
    except FileNotFoundError:
        return
    shutil.rmtree(aside, ignore_errors=True)
