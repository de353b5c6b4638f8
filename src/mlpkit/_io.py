"""Atomic file writes: write a temporary file beside the target, fsync it, then rename it over the target.
(And :func:`read_into`, the positioned read that the readers of large files share.)

A reader never sees a half-written file: it sees the old content or the new content. An interrupted
or failed write leaves no temporary file behind and does not touch the target. The temporary file
lives in the target's directory so that :func:`os.replace` is a rename on one file system, which
POSIX makes atomic. After the rename the directory is fsync'ed too, so the new name survives a crash.

Failures to write (permission denied, missing parent directory, disk full) raise
:class:`mlpkit.errors.OutputError` naming the path and the operating system's reason.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mlpkit.errors import OutputError

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "ensure_writable_dir",
    "read_into",
]

# Some file systems cannot fsync a directory; the rename has happened, so these are not failures.
_DIR_FSYNC_UNSUPPORTED = {errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF}


def _umask() -> int:
    """Return the process umask, read without changing it where the OS allows."""
    try:  # Linux >= 4.7 reports it; os.umask() can only read it by setting it, which races with threads.
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _reason(exc: OSError, path: Path) -> str:
    """Explain an ``OSError`` raised while writing ``path`` in a few words."""
    parent = path.parent
    if isinstance(exc, FileNotFoundError) and not parent.exists():
        return f"parent directory {parent} does not exist"
    if isinstance(exc, FileNotFoundError | NotADirectoryError) and not parent.is_dir():
        return f"parent {parent} is not a directory"
    return exc.strerror or str(exc)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    if not hasattr(os, "O_DIRECTORY"):  # Windows cannot open a directory; its rename is durable enough.
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _DIR_FSYNC_UNSUPPORTED:
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it onto ``path`` atomically.

    The body writes the temporary path by any means (``open``, ``safetensors.numpy.save_file``,
    ``matplotlib`` ``savefig``, ...). When the body returns, the file is fsync'ed, given the mode a
    new file would get (``0o666 & ~umask``), renamed onto ``path`` with :func:`os.replace`, and the
    directory is fsync'ed. When the body raises, the temporary file is removed, ``path`` is left as
    it was, and the exception propagates unchanged.

    The temporary name keeps the target's suffix (``.model-x1y2.tmp.safetensors``), so writers that
    pick a format from the suffix still work.

    Parameters
    ----------
    path : str or os.PathLike
        The final file. Its parent directory must exist.

    Yields
    ------
    Path
        The temporary file, already created (empty) in the same directory as ``path``.

    Raises
    ------
    OutputError
        If the temporary file cannot be created (permission denied, missing parent), synced or renamed.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     target = pathlib.Path(tmp) / "notes.txt"
    ...     with atomic_path(target) as part:
    ...         _ = part.write_text("done\\n")
    ...     print(target.read_text(), end="")
    ...     print(sorted(p.name for p in pathlib.Path(tmp).iterdir()))
    done
    ['notes.txt']
    """
    target = Path(path)
    directory = target.parent
    try:
        fd, tmp_name = tempfile.mkstemp(
            dir=directory, prefix=f".{target.stem}-", suffix=f".tmp{target.suffix}"
        )
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {_reason(exc, target)}") from exc
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        try:
            _fsync_file(tmp)
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, target)
        except OSError as exc:
            raise OutputError(f"cannot write {target}: {_reason(exc, target)}") from exc
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    try:
        _fsync_dir(directory)
    except OSError as exc:
        raise OutputError(
            f"cannot sync directory {directory} after writing {target}: {_reason(exc, target)}"
        ) from exc


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename, directory fsync).

    Parameters
    ----------
    path : str or os.PathLike
        The file to write. Its parent directory must exist.
    data : bytes
        The whole new content.

    Returns
    -------
    Path
        ``path`` as a :class:`~pathlib.Path`.

    Raises
    ------
    OutputError
        If ``path`` cannot be written; neither a temporary file nor a partial ``path`` is left behind.
    """
    target = Path(path)
    with atomic_path(target) as tmp:
        try:
            with open(tmp, "wb") as file:
                file.write(data)
        except OSError as exc:
            raise OutputError(f"cannot write {target}: {_reason(exc, target)}") from exc
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically, encoded with ``encoding`` and with newlines kept as given.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write. Its parent directory must exist.
    text : str
        The whole new content.
    encoding : str, default "utf-8"
        The text encoding.

    Returns
    -------
    Path
        ``path`` as a :class:`~pathlib.Path`.

    Raises
    ------
    OutputError
        If ``path`` cannot be written; neither a temporary file nor a partial ``path`` is left behind.
    """
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | os.PathLike[str], obj: object, *, indent: int | None = 2) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically: insertion order, ``indent=2``, one trailing newline.

    NaN and infinity are rejected (``allow_nan=False``) because they are not JSON and most other
    readers refuse them. The object is serialised before any file is created.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write. Its parent directory must exist.
    obj : object
        A JSON-serialisable value (dicts, lists, str, int, finite float, bool, None).
    indent : int or None
        Spaces per level, for files people read; ``None`` writes one compact line, for files
        rewritten often and read by programs (the standard library encodes indented JSON in Python,
        compact JSON in C: about ten times faster).

    Returns
    -------
    Path
        ``path`` as a :class:`~pathlib.Path`.

    Raises
    ------
    ValueError
        If ``obj`` holds NaN or infinity (nothing is written).
    TypeError
        If ``obj`` holds a value JSON cannot represent (nothing is written).
    OutputError
        If ``path`` cannot be written.
    """
    target = Path(path)
    try:
        text = json.dumps(obj, indent=indent, allow_nan=False, ensure_ascii=False)
    except ValueError as exc:
        raise ValueError(f"cannot write {target} as JSON: {exc}") from exc
    except TypeError as exc:
        raise TypeError(f"cannot write {target} as JSON: {exc}") from exc
    return atomic_write_text(target, text + "\n")


def ensure_writable_dir(path: str | os.PathLike[str]) -> Path:
    """Create directory ``path`` (and its parents) if needed and check that files can be created in it.

    The check creates and removes a temporary file, because ``os.access`` is wrong for root and
    for read-only mounts. Call it before long work whose results must be saved, so a bad output
    directory fails in the first second instead of after training.

    Parameters
    ----------
    path : str or os.PathLike
        The output directory.

    Returns
    -------
    Path
        ``path`` as a :class:`~pathlib.Path`.

    Raises
    ------
    OutputError
        ``cannot write to output directory {path}: {reason}`` if the directory cannot be created
        or written.
    """
    directory = Path(path)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise OutputError(
            f"cannot write to output directory {directory}: it exists and is not a directory"
        ) from exc
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if isinstance(exc, NotADirectoryError):
            reason = "a parent path exists and is not a directory"
        raise OutputError(f"cannot write to output directory {directory}: {reason}") from exc
    try:
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".write-probe-")
    except OSError as exc:
        raise OutputError(f"cannot write to output directory {directory}: {exc.strerror or exc}") from exc
    os.close(fd)
    os.unlink(probe)
    return directory


def read_into(fd: int, buffer: memoryview, offset: int) -> int:
    """Fill ``buffer`` with the bytes of ``fd`` from ``offset`` (``os.preadv``, retried after a short
    read); return how many were read, fewer than ``len(buffer)`` only where the file ends.

    The bytes land in memory the caller owns (a NumPy array, an Arrow buffer), with no Python
    ``bytes`` in between and no memory map: the file's pages stay in the kernel's page cache and
    are never counted in the process's resident set.
    """
    if not buffer.nbytes:
        return 0
    view = buffer.cast("B") if buffer.format != "B" or buffer.ndim != 1 else buffer
    done = 0
    while done < len(view):
        got = os.preadv(fd, [view[done:]], offset + done)
        if not got:
            break
        done += got
    return done
