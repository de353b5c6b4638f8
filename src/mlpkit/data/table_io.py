"""Reading CTR tables in chunks, and the small pieces the encoder builds on.

- :func:`find_split_files` finds ``train``, ``valid`` and ``test`` by stem (``.csv``, ``.csv.gz``,
  ``.parquet``);
- :func:`read_columns` reads a file's column names without reading its rows;
- :func:`iter_chunks` streams a file as record batches: CSV through ``pyarrow.csv.open_csv`` with
  the numeric columns parsed as float64 and every other column read as text (so ``"007"`` stays
  ``"007"``), Parquet through ``iter_batches`` in its own types;
- :func:`to_floats` and :func:`to_labels` turn a column into numbers, naming the file, the column,
  the row and the value that is not one;
- :func:`stable_hash` hashes strings the same way in every process and on every machine;
- :class:`NpyAppender` writes a ``.npy`` file chunk by chunk, without knowing its row count first;
- :class:`RecordFile` keeps a sequence of records of 1-d arrays in a scratch file, to be read back in order.

Rows in messages count the data rows of a file from 1, the header not counted (row n of a CSV is
its line n + 1).
No torch here; pyarrow (the ``tables`` extra) is imported when a table is read.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import os
import queue
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from mlpkit._optional import require
from mlpkit.errors import DataFormatError, DataNotFoundError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "SPLITS",
    "SUFFIXES",
    "NpyAppender",
    "RecordFile",
    "arrow",
    "find_split_files",
    "iter_chunks",
    "missing_mask",
    "read_columns",
    "stable_hash",
    "to_floats",
    "to_labels",
    "to_strings",
]

SPLITS = ("train", "valid", "test")
SUFFIXES = (".csv", ".csv.gz", ".parquet")
"""File types read, found by stem: ``train.csv``, ``train.csv.gz`` or ``train.parquet``."""

CSV_BLOCK_BYTES = 1 << 22
"""Bytes of CSV parsed per chunk (pyarrow's ``block_size``); a row must fit in one block. Arrow's
streaming reader parsed a 75 MB Criteo-shaped file faster in 1-4 MiB blocks than in 16 MiB ones."""
PARQUET_BATCH_ROWS = 1 << 16
"""Rows of a Parquet file read per chunk."""
READ_AHEAD = 2
"""Chunks a background thread parses ahead of the caller. Arrow parses with Python's GIL released,
so on two cores reading the next chunk overlaps the work on this one."""

_FEATURE = "tabular data"
# A number as Arrow's string -> double cast reads it; used only to find the value a failed cast choked on.
_NUMBER = r"^[+-]?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[iI][nN][fF]([iI][nN][iI][tT][yY])?|[nN][aA][nN])$"

# FNV-1a, 64-bit (Fowler, Noll, Vo; IETF draft-eastlake-fnv): offset basis and prime.
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
# splitmix64's finaliser (Steele, Lea, Flood, OOPSLA 2014): mixes FNV's weak low bits before "% buckets".
_MIX = ((30, np.uint64(0xBF58476D1CE4E5B9)), (27, np.uint64(0x94D049BB133111EB)))


def arrow() -> tuple[Any, Any]:
    """``pyarrow`` and ``pyarrow.compute``, or MissingDependencyError naming the ``tables`` extra."""
    pa = require("pyarrow", feature=_FEATURE)
    import pyarrow.compute as pc

    return pa, pc


def find_split_files(data_dir: Path, splits: Sequence[str] = SPLITS) -> dict[str, Path]:
    """The file of each split in ``data_dir``, found by stem.

    Raises
    ------
    DataNotFoundError
        When ``data_dir`` or a split's file is missing (naming what was looked for and what is there).
    DataFormatError
        When a split has two files (``train.csv`` and ``train.parquet``).
    """
    if not data_dir.is_dir():
        raise DataNotFoundError(f"data directory {data_dir} does not exist or is not a directory")
    found: dict[str, Path] = {}
    for split in splits:
        candidates = [data_dir / f"{split}{suffix}" for suffix in SUFFIXES]
        present = [path for path in candidates if path.is_file()]
        if len(present) > 1:
            raise DataFormatError(
                f"{data_dir} holds {len(present)} {split} files ({', '.join(p.name for p in present)}); "
                "keep one"
            )
        if not present:
            there = sorted(p.name for p in data_dir.iterdir() if not p.name.startswith("."))
            raise DataNotFoundError(
                f"no {split} file in {data_dir}: looked for {', '.join(p.name for p in candidates)}; "
                f"found {there}"
            )
        found[split] = present[0]
    return found


def _is_parquet(path: Path) -> bool:
    return path.name.lower().endswith(".parquet")


def read_columns(path: Path) -> list[str]:
    """The column names of a CSV (its header) or Parquet file, in file order.

    Raises
    ------
    DataFormatError
        When the file is empty, not a Parquet file, or names a column twice.
    """
    if _is_parquet(path):
        pa, _ = arrow()
        import pyarrow.parquet as pq

        try:
            names = list(pq.read_schema(path).names)
        except (pa.ArrowInvalid, OSError) as exc:
            if path.stat().st_size == 0:
                raise DataFormatError(f"{path}: the file is empty") from exc
            raise DataFormatError(f"{path}: not a readable Parquet file: {exc}") from exc
    else:
        opener = gzip.open if path.name.lower().endswith(".gz") else open
        try:
            with opener(path, "rt", encoding="utf-8-sig", newline="") as text:  # type: ignore[operator]
                header = next(csv.reader(text), None)
        except (OSError, UnicodeDecodeError, EOFError) as exc:
            raise DataFormatError(f"{path}: cannot read the header row: {exc}") from exc
        if not header or header == [""]:
            raise DataFormatError(f"{path}: the file is empty (no header row)")
        names = header
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise DataFormatError(f"{path}: column(s) {twice} appear more than once in the header")
    return names


def iter_chunks(path: Path, columns: Sequence[str], dictionaries: Sequence[str] = (),
                numbers: Sequence[str] = ()) -> Iterator[pa.RecordBatch]:
    """Stream ``columns`` of a CSV or Parquet file as record batches of bounded size.

    CSV columns named in ``numbers`` are parsed as float64 by the reader (empty cells null), those
    in ``dictionaries`` come dictionary-encoded (``dictionary<int32, string>``, one dictionary per
    chunk), both in the reading thread; the others are text (``pyarrow.string``), with empty cells
    as ``""``. Parquet columns keep their stored types, with nulls. A background thread reads up to
    :data:`READ_AHEAD` chunks ahead.

    Raises
    ------
    DataFormatError
        Naming the file when a chunk cannot be parsed (a row with too many fields, say), and the
        column, row and value when a cell of a ``numbers`` column is not a number: the reader
        stops at it, and the file is read again as text to find it (:func:`_first_non_number`).
    """
    pa, _ = arrow()
    if _is_parquet(path):
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(path)
            yield from _read_ahead(
                parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=list(columns)), READ_AHEAD
            )
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataFormatError(f"{path}: cannot read Parquet data: {exc}") from exc
        return
    try:
        yield from _read_ahead(_csv_reader(path, columns, dictionaries, numbers), READ_AHEAD)
    except (pa.ArrowInvalid, OSError) as exc:
        if numbers and isinstance(exc, pa.ArrowInvalid) and "conversion error" in str(exc):
            _first_non_number(path, columns, dictionaries, numbers)
        raise DataFormatError(f"{path}: cannot parse the CSV: {exc}") from exc


def _csv_reader(path: Path, columns: Sequence[str], dictionaries: Sequence[str],
                numbers: Sequence[str]) -> Any:
    """Arrow's streaming CSV reader for :func:`iter_chunks`."""
    pa, _ = arrow()
    import pyarrow.csv as pacsv

    def type_of(name: str) -> Any:
        if name in numbers:
            return pa.float64()
        return pa.dictionary(pa.int32(), pa.string()) if name in dictionaries else pa.string()

    convert = pacsv.ConvertOptions(
        column_types={name: type_of(name) for name in read_columns(path)},
        include_columns=list(columns),
        null_values=[""],                    # only an empty cell is missing: "NA" as a number is refused
        strings_can_be_null=False,           # text columns keep "" (missing is decided by the encoder)
        quoted_strings_can_be_null=True,     # "" quoted or not: the same missing number
    )
    # One parsing thread: _read_ahead already overlaps parsing with the caller's work, and Arrow's
    # own pool of parsing threads cost more CPU than it saved here.
    read = pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES, use_threads=False)
    return pacsv.open_csv(path, convert_options=convert, read_options=read)


def _first_non_number(path: Path, columns: Sequence[str], dictionaries: Sequence[str],
                      numbers: Sequence[str]) -> None:
    """Read ``path`` again with ``numbers`` as text and raise :func:`to_floats`'s error for the first
    chunk holding a cell that is not a number; return if there is none."""
    rows = 0
    with contextlib.closing(iter_chunks(path, columns, dictionaries)) as chunks:
        for chunk in chunks:
            for name in numbers:
                to_floats(chunk.column(name), path=path, column=name, first_row=rows)
            rows += chunk.num_rows


_END = object()


def _read_ahead(items: Iterator[Any], depth: int) -> Iterator[Any]:
    """The items of ``items``, drawn by a background thread at most ``depth`` ahead of the caller.

    An exception of the thread is raised in the caller's thread, at the item it stopped at. When
    the caller stops early (an error, ``close()``), the thread stops after the item in hand.
    """
    ready: queue.Queue[tuple[Any, BaseException | None]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[Any, BaseException | None]) -> bool:
        while not stop.is_set():
            try:
                ready.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
        except BaseException as exc:                    # handed over, raised in the caller's thread
            put((_END, exc))
        else:
            put((_END, None))

    thread = threading.Thread(target=produce, name="mlpkit-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item, error = ready.get()
            if error is not None:
                raise error
            if item is _END:
                return
            yield item
    finally:
        stop.set()
        thread.join()


def to_strings(array: pa.Array) -> pa.Array:
    """A column as ``pyarrow.string`` values (Parquet integers as their decimal text)."""
    pa, _ = arrow()
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return array if array.type == pa.string() else array.cast(pa.string())


def missing_mask(strings: pa.Array) -> np.ndarray:
    """(n,) bool: the cells that are null or empty text."""
    _, pc = arrow()
    return np.asarray(pc.fill_null(pc.equal(strings, ""), True).to_numpy(zero_copy_only=False), dtype=bool)


def to_floats(array: pa.Array, *, path: Path, column: str, first_row: int,
              what: str = "numeric column") -> tuple[np.ndarray, np.ndarray]:
    """A column as (n,) float64 values and an (n,) bool mask of missing cells (null, empty or NaN).

    Raises
    ------
    DataFormatError
        Naming the file, the column, the row and the first value that is not a number, or that is infinite.
    """
    pa, pc = arrow()
    if pa.types.is_integer(array.type) or pa.types.is_floating(array.type) or pa.types.is_boolean(array.type):
        numbers = array.cast(pa.float64())
    else:
        strings = to_strings(array)
        try:
            numbers = _without_empty(strings).cast(pa.float64())
        except pa.ArrowInvalid as exc:
            cells = pc.if_else(pc.fill_null(pc.equal(strings, ""), True), "nan", strings)
            bad = np.flatnonzero(~pc.match_substring_regex(cells, _NUMBER).to_numpy(zero_copy_only=False))
            if not len(bad):
                raise DataFormatError(f"{path}: {what} {column!r} must hold numbers: {exc}") from exc
            i = int(bad[0])
            raise DataFormatError(
                f"{path}: {what} {column!r} must hold numbers; row {first_row + i + 1} holds "
                f"{strings[i].as_py()!r}"
            ) from exc
    values = np.asarray(numbers.to_numpy(zero_copy_only=False), dtype=np.float64)     # null -> NaN
    missing = np.isnan(values)
    if np.isinf(values).any():
        i = int(np.argmax(np.isinf(values)))
        raise DataFormatError(
            f"{path}: {what} {column!r} must hold finite numbers; row {first_row + i + 1} holds "
            f"{str(array[i].as_py())!r}"  # as text, parsed by the reader or not: 'inf'
        )
    return values, missing


def _without_empty(strings: pa.Array) -> pa.Array:
    """The same (n,) strings with the empty ones null: the data buffer shared, only a validity
    bitmap built, so that a cast to numbers leaves them missing without copying the text."""
    pa, _ = arrow()
    n = len(strings)
    _, offsets_buffer, data_buffer = strings.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32, count=n + 1, offset=4 * strings.offset)
    present = offsets[1:] != offsets[:-1]                   # (n,) non-empty
    if strings.null_count:
        present &= np.asarray(strings.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    validity = pa.py_buffer(np.packbits(present, bitorder="little"))
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), data_buffer, validity)


def to_labels(array: pa.Array, *, path: Path, column: str, first_row: int) -> np.ndarray:
    """A 0/1 label column as (n,) float32.

    Raises
    ------
    DataFormatError
        Naming the file, the column, and the row and value of the first label that is not 0 or 1
        (or is empty).
    """
    values, missing = to_floats(array, path=path, column=column, first_row=first_row, what="label column")
    bad = missing | ((values != 0) & (values != 1))
    if bad.any():
        i = int(np.argmax(bad))
        raise DataFormatError(
            f"{path}: label column {column!r} must hold 0 or 1; row {first_row + i + 1} holds "
            f"{array[i].as_py()!r}"
        )
    return values.astype(np.float32)


def stable_hash(strings: pa.Array) -> np.ndarray:
    """(n,) uint64 hashes of strings, equal in every process: FNV-1a 64 over the UTF-8 bytes, then
    splitmix64's finaliser. Nulls hash as ``""``.

    Python's ``hash()`` of a string changes from one process to the next (``PYTHONHASHSEED``), so
    ids made with it would not survive a restart. The work is NumPy over the Arrow buffers: one
    pass per byte position, over the strings that long, longest first.
    """
    pa, pc = arrow()
    array = pc.fill_null(to_strings(strings), "").cast(pa.large_string())
    n = len(array)
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    _, offsets_buffer, data_buffer = array.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64, count=n + 1, offset=8 * array.offset)
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
    lengths = np.diff(offsets)
    order = np.argsort(-lengths, kind="stable")             # longest first: position p touches a prefix
    starts, sorted_lengths = offsets[:-1][order], lengths[order]
    longer = n - np.cumsum(np.bincount(lengths))             # longer[p]: strings longer than p bytes
    h = np.full(n, _FNV_OFFSET, dtype=np.uint64)
    for p in range(int(sorted_lengths[0])):
        k = int(longer[p])
        h[:k] ^= data[starts[:k] + p]
        h[:k] *= _FNV_PRIME                                  # wraps modulo 2**64, as FNV does
    for shift, multiplier in _MIX:
        h ^= h >> np.uint64(shift)
        h *= multiplier
    h ^= h >> np.uint64(31)
    out = np.empty(n, dtype=np.uint64)
    out[order] = h
    return out


class NpyAppender:
    """Write a ``.npy`` file chunk by chunk along axis 0, its row count set when it is closed.

    NumPy pads every header so that axis 0 can grow to 21 digits in place (``GROWTH_AXIS_MAX_DIGITS``),
    so the header is written once with 0 rows and rewritten at the end with the same length.

    Parameters
    ----------
    path : Path
        The file to create.
    dtype : numpy dtype
    tail : tuple of int
        The shape of one row: ``(F,)`` for an (N, F) array, ``()`` for an (N,) one.
    """

    def __init__(self, path: Path, dtype: np.dtype[Any] | type, tail: tuple[int, ...]) -> None:
        self.path, self.dtype, self.tail, self.rows = path, np.dtype(dtype), tail, 0
        self._file: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed by close()
        self.closed = False
        self._header_bytes = self._write_header()

    def _write_header(self) -> int:
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {
            "descr": np.lib.format.dtype_to_descr(self.dtype),
            "fortran_order": False,
            "shape": (self.rows, *self.tail),
        })
        self._file.write(header.getvalue())
        return len(header.getvalue())

    def append(self, chunk: np.ndarray) -> None:
        """Write (n, *tail) more rows."""
        if chunk.shape[1:] != self.tail:
            raise ValueError(f"{self.path.name}: rows of shape {self.tail} expected, got {chunk.shape[1:]}")
        chunk = np.ascontiguousarray(chunk, dtype=self.dtype)
        if chunk.size:
            self._file.write(memoryview(chunk.reshape(-1)).cast("B"))
        self.rows += chunk.shape[0]

    def close(self) -> tuple[int, ...]:
        """Set the row count in the header, flush to disk, and return the array's shape."""
        self._file.seek(0)
        if self._write_header() != self._header_bytes:
            raise RuntimeError(f"{self.path}: the .npy header changed length as it grew")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self.closed = True
        return (self.rows, *self.tail)

    def abort(self) -> None:
        """Close without finishing (the caller removes the file)."""
        self._file.close()
        self.closed = True


class RecordFile:
    """A scratch file of records, each a few 1-d arrays, written one after another and read back in order.

    A record starts with each array's byte size and dtype (two int64 each); the arrays' bytes
    follow. Nothing in it outlives the encoding that wrote it, so it is neither versioned nor
    synced to disk.

    Parameters
    ----------
    path : Path
        The file, created (or truncated) on the first :meth:`write`.
    """

    DTYPES = tuple(np.dtype(t) for t in (np.uint8, np.uint16, np.int32, np.int64, np.float32, np.float64))
    """The dtypes a record can hold."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: BinaryIO | None = None
        self._reading = False

    def write(self, arrays: Sequence[np.ndarray]) -> None:
        """Append one record: the arrays, each flattened."""
        if self._file is None:
            self._file = open(self.path, "wb")  # noqa: SIM115 - closed by close()
        arrays = [np.ascontiguousarray(a) for a in arrays]
        head = [(a.nbytes, self.DTYPES.index(a.dtype)) for a in arrays]
        self._file.write(np.array(head, dtype=np.int64).tobytes())
        for a in arrays:
            if a.nbytes:
                self._file.write(memoryview(a.reshape(-1)).cast("B"))

    def read(self, count: int) -> list[np.ndarray]:
        """The next record's ``count`` arrays (read-only views of one buffer)."""
        file = self._file
        if file is None or not self._reading:
            self.close()
            file = self._file = open(self.path, "rb")  # noqa: SIM115 - closed by close()
            self._reading = True
        head = file.read(16 * count)
        if len(head) != 16 * count:
            raise EOFError(f"{self.path}: no record left")
        sizes = np.frombuffer(head, dtype=np.int64).reshape(count, 2).tolist()
        body = file.read(sum(size for size, _ in sizes))
        out, start = [], 0
        for size, code in sizes:
            dtype = self.DTYPES[code]
            out.append(np.frombuffer(body, dtype=dtype, count=size // dtype.itemsize, offset=start) if size
                       else np.zeros(0, dtype=dtype))
            start += size
        return out

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
