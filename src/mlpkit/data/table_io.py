"""Reading CTR tables in chunks, and the small pieces the encoder builds on.

- :func:`find_split_files` finds ``train``, ``valid`` and ``test`` by stem (``.csv``, ``.csv.gz``,
  ``.parquet``);
- :func:`read_columns` reads a file's column names without reading its rows;
- :func:`iter_chunks` streams a file as record batches: a CSV cut at line ends into blocks that
  :data:`PARSE_THREADS` threads parse at once, with the numeric columns parsed as float64 and every
  other column read as text (so ``"007"`` stays ``"007"``), Parquet through ``iter_batches`` in its
  own types;
- :func:`to_floats` and :func:`to_labels` turn a column into numbers, naming the file, the column,
  the row and the value that is not one;
- :func:`stable_hash` hashes strings the same way in every process and on every machine;
- :class:`NpyAppender` writes a ``.npy`` file chunk by chunk, without knowing its row count first;
- :class:`NpyWriter` writes one whose shape is known, rows at any place, from several threads;
- :class:`RecordFile` keeps a sequence of records of 1-d arrays in a scratch file, to be read back
  by their place.

Rows in messages count the data rows of a file from 1, the header not counted (row n of a CSV is
its line n + 1).
No torch here; pyarrow (the ``tables`` extra) is imported when a table is read.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import functools
import gzip
import io
import os
import queue
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from mlpkit._io import read_into
from mlpkit._optional import require
from mlpkit.errors import DataFormatError, DataNotFoundError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "SPLITS",
    "SUFFIXES",
    "NpyAppender",
    "NpyWriter",
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

CSV_BLOCK_BYTES = 1 << 23
"""Bytes of CSV per chunk: a file is cut at the first line end after every ``CSV_BLOCK_BYTES``.
Arrow parsed a 256 MB Criteo-shaped file as fast in 2-8 MiB blocks; 8 MiB (about 32k of its rows)
made the whole encoding about 5% faster than 4 MiB, the counts being merged from fewer chunks."""
PARQUET_BATCH_ROWS = 1 << 16
"""Rows of a Parquet file read per chunk."""
READ_AHEAD = 2
"""Chunks parsed ahead of the caller, beyond the ones being parsed. Arrow parses with Python's GIL
released, so on two cores reading the next chunks overlaps the work on this one."""
PARSE_THREADS = min(2, os.cpu_count() or 1)
"""Threads parsing blocks of one CSV file at once, each block on one thread (Arrow's own pool of
parsing threads cost more CPU than it saved). Two threads parsed the 256 MB file in 0.83 s where
one took 1.67 s; blocks still come to the caller in file order."""

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
                numbers: Sequence[str] = (), label: str | None = None) -> Iterator[pa.RecordBatch]:
    """Stream ``columns`` of a CSV or Parquet file as record batches of bounded size.

    CSV columns named in ``numbers``, and the ``label`` column, are parsed as float64 by the reader
    (empty cells null), those in ``dictionaries`` come dictionary-encoded (``dictionary<int32,
    string>``, one dictionary per chunk), both in the parsing threads; the others are text
    (``pyarrow.string``), with empty cells as ``""``. Parquet columns keep their stored types, with
    nulls. Up to :data:`READ_AHEAD` chunks are parsed ahead of the caller.

    Raises
    ------
    DataFormatError
        Naming the file and the rows read before the chunk when a chunk cannot be parsed (a row
        with too many fields, say), and the column, row and value when a cell of a ``numbers`` or
        ``label`` column is not a number: the reader stops at it, and the file is read again as
        text to find it (:func:`_first_non_number`).
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
    rows = 0
    try:
        for chunk in _csv_chunks(path, columns, dictionaries, [*numbers, *([label] if label else [])]):
            yield chunk
            rows += chunk.num_rows
    except (pa.ArrowInvalid, _BlockParseError, OSError) as exc:
        if (numbers or label) and not isinstance(exc, OSError) and "conversion error" in str(exc):
            _first_non_number(path, columns, dictionaries, numbers, label)
        detail = exc.located(rows) if isinstance(exc, _BlockParseError) else str(exc)
        raise DataFormatError(f"{path}: cannot parse the CSV after row {rows}: {detail}") from exc


def _csv_chunks(path: Path, columns: Sequence[str], dictionaries: Sequence[str],
                numbers: Sequence[str]) -> Iterator[pa.RecordBatch]:
    """The chunks of a CSV file for :func:`iter_chunks`: its blocks parsed by :data:`PARSE_THREADS`
    threads, or, for a gzip file or one whose lines end in a lone ``\\r``, Arrow's streaming reader
    on one thread."""
    pa, _ = arrow()
    import pyarrow.csv as pacsv

    names = read_columns(path)

    def type_of(name: str) -> Any:
        if name in numbers:
            return pa.float64()
        return pa.dictionary(pa.int32(), pa.string()) if name in dictionaries else pa.string()

    convert = pacsv.ConvertOptions(
        column_types={name: type_of(name) for name in names},
        include_columns=list(columns),
        null_values=[""],                    # only an empty cell is missing: "NA" as a number is refused
        strings_can_be_null=False,           # text columns keep "" (missing is decided by the encoder)
        quoted_strings_can_be_null=True,     # "" quoted or not: the same missing number
    )
    if path.name.lower().endswith(".gz"):
        yield from _streamed(path, convert)
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        blocks = _csv_blocks(path, fd)
        if blocks is None:
            yield from _streamed(path, convert)
            return
        tasks = (functools.partial(_parse_block, block, names, convert) for block in blocks)
        # closing(): the parsing threads are done with the file before it is closed.
        with contextlib.closing(_in_order(tasks, PARSE_THREADS, READ_AHEAD)) as parsed:
            for batches in parsed:
                yield from (batch for batch in batches if batch.num_rows)
    finally:
        os.close(fd)


def _streamed(path: Path, convert: Any) -> Iterator[pa.RecordBatch]:
    """Arrow's streaming CSV reader, on one thread read ahead of the caller."""
    import pyarrow.csv as pacsv

    read = pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES, use_threads=False)
    with contextlib.closing(_read_ahead(pacsv.open_csv(path, convert_options=convert, read_options=read),
                                        READ_AHEAD)) as chunks:
        yield from chunks


@dataclass(frozen=True)
class _Block:
    path: Path
    fd: int                                 # the open file, read with os.pread
    start: int                              # bytes start..end: whole lines of the file
    end: int
    first: bool                             # holds the header line


def _parse_block(block: _Block, names: list[str], convert: Any) -> list[pa.RecordBatch]:
    """A block's rows, as one record batch (or none)."""
    pa, _ = arrow()
    import pyarrow.csv as pacsv

    data = _pread(block.fd, block.start, block.end - block.start)
    # The header is the file's first line: the first block parses it, the others are given it.
    read = pacsv.ReadOptions(column_names=None if block.first else names, use_threads=False,
                             block_size=data.size + 1)
    try:
        table = pacsv.read_csv(pa.BufferReader(data), read_options=read, convert_options=convert)
    except pa.ArrowInvalid as exc:
        # Arrow numbers the block's lines from 1, the header line among them in the first block.
        raise _BlockParseError(str(exc), -1 if block.first else 0) from exc
    return table.to_batches()


class _BlockParseError(ValueError):
    """Arrow's error for one block of a CSV file, whose "Row #N" counts the block's lines.

    ``shift`` turns such a line number into the block's data row (-1 in the first block, whose
    first line is the header); :meth:`located` writes it as the file's data row.
    """

    def __init__(self, message: str, shift: int) -> None:
        super().__init__(message)
        self.shift = shift

    def located(self, rows_before: int) -> str:
        """The message with Arrow's row written as the data row of the file, given the block's start."""
        return re.sub(r"Row #(\d+)", lambda m: f"row {rows_before + int(m.group(1)) + self.shift}", str(self))


def _csv_blocks(path: Path, fd: int) -> Iterator[_Block] | None:
    """The CSV file open as ``fd`` cut into blocks of whole lines, each the bytes up to the first
    ``\\n`` after :data:`CSV_BLOCK_BYTES` (the first block holds the header); ``None`` when the first
    line ends in a lone ``\\r``, which the cuts would not see.

    Each block is read when it is parsed, with ``os.pread``: a memory map would leave every page
    of the file counted in the process's resident memory, however large the file.

    Like Arrow's own multi-threaded reader (``newlines_in_values=False``), this assumes no value
    holds a line end.
    """
    size = os.fstat(fd).st_size
    header_end = _find_newline(fd, 0, size)
    head = _pread(fd, 0, header_end if header_end >= 0 else min(size, CSV_BLOCK_BYTES)).to_pybytes()
    cr = head.find(b"\r")
    if cr >= 0 and (header_end < 0 or cr != header_end - 1):
        return None

    def cut() -> Iterator[_Block]:
        start = 0
        while start < size:
            newline = _find_newline(fd, min(start + CSV_BLOCK_BYTES, size - 1), size)
            end = size if newline < 0 else newline + 1
            yield _Block(path, fd, start, end, start == 0)
            start = end

    return cut()


def _pread(fd: int, start: int, length: int) -> pa.Buffer:
    """``length`` bytes of ``fd`` from ``start`` (fewer only at the end of the file), read with
    ``os.preadv`` into a buffer of Arrow's memory pool.

    Not Python bytes: each 8 MiB block freed by glibc raised its mmap threshold, after which its
    heap fragmented as the run went on (the encoding's peak memory at 5M rows was 1.4x that at 1M;
    1.1-1.2x this way).
    """
    pa, _ = arrow()
    data = pa.allocate_buffer(length)
    done = read_into(fd, memoryview(data), start)
    return data if done == length else data.slice(0, done)  # the file ends (or was cut short meanwhile)


def _find_newline(fd: int, start: int, size: int) -> int:
    """Position of the first ``\\n`` at or after ``start``, or -1."""
    step = 1 << 16
    while start < size:
        found = os.pread(fd, step, start).find(b"\n")
        if found >= 0:
            return start + found
        start += step
    return -1


def _in_order(tasks: Iterator[Callable[[], Any]], threads: int, ahead: int) -> Iterator[Any]:
    """The results of ``tasks``, run by ``threads`` threads, in the tasks' order: at most
    ``threads + ahead`` run or wait done at a time, so memory holds that many results.

    An exception of a task is raised in the caller's thread, at that task's place. When the caller
    stops early (an error, ``close()``), tasks not started are dropped and running ones finish.
    """
    if threads <= 1:
        yield from _read_ahead((task() for task in tasks), ahead)
        return
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="mlpkit-parse")
    pending: collections.deque[Future[Any]] = collections.deque()
    try:
        for task in tasks:
            pending.append(pool.submit(task))
            if len(pending) >= threads + ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _first_non_number(path: Path, columns: Sequence[str], dictionaries: Sequence[str],
                      numbers: Sequence[str], label: str | None) -> None:
    """Read ``path`` again with ``numbers`` and ``label`` as text and raise :func:`to_floats`'s error
    for the first chunk holding a cell that is not a number; return if there is none."""
    rows = 0
    with contextlib.closing(iter_chunks(path, columns, dictionaries)) as chunks:
        for chunk in chunks:
            if label is not None:
                to_floats(chunk.column(label), path=path, column=label, first_row=rows, what="label column")
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
    if numbers.null_count:                   # NaN written by Arrow, so that NumPy views its buffer
        numbers = pc.fill_null(numbers, pa.scalar(np.nan, pa.float64()))
    values = numbers.to_numpy(zero_copy_only=True)                                     # (n,) float64
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
    """A 0/1 label column (text, or numbers as the CSV reader parsed them) as (n,) float32.

    Raises
    ------
    DataFormatError
        Naming the file, the column, and the row and value of the first label that is not 0 or 1
        (or is empty).
    """
    pa, _ = arrow()
    values, missing = to_floats(array, path=path, column=column, first_row=first_row, what="label column")
    bad = missing | ((values != 0) & (values != 1))
    if bad.any():
        i = int(np.argmax(bad))
        cell = array[i].as_py()
        if pa.types.is_floating(array.type):        # parsed by the reader: written as the file had it
            cell = "" if cell is None else f"{cell:g}"
        raise DataFormatError(
            f"{path}: label column {column!r} must hold 0 or 1; row {first_row + i + 1} holds {cell!r}"
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


def _npy_header(dtype: np.dtype[Any], shape: tuple[int, ...]) -> bytes:
    """The version 1.0 ``.npy`` header of a C-ordered array, padded as NumPy pads it."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {
        "descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape,
    })
    return header.getvalue()


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
        return self._file.write(_npy_header(self.dtype, (self.rows, *self.tail)))

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


class NpyWriter:
    """Write a ``.npy`` file whose shape is known, rows at any place and from several threads.

    The header is written first and the file sized to the whole array; :meth:`write` puts rows in
    place with ``os.pwrite``, which moves no shared file position.

    Parameters
    ----------
    path : Path
        The file to create.
    dtype : numpy dtype
    shape : tuple of int
        The array's shape, ``(N, *tail)``.
    """

    def __init__(self, path: Path, dtype: np.dtype[Any] | type, shape: tuple[int, ...]) -> None:
        self.path, self.dtype, self.shape = path, np.dtype(dtype), shape
        header = _npy_header(self.dtype, shape)
        self._offset = len(header)
        self._row_bytes = self.dtype.itemsize * int(np.prod(shape[1:], dtype=np.int64))
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self.closed = False
        os.pwrite(self._fd, header, 0)
        os.ftruncate(self._fd, self._offset + self._row_bytes * shape[0])

    def write(self, row: int, chunk: np.ndarray) -> None:
        """Write (n, *tail) rows from row ``row`` on."""
        if chunk.shape[1:] != self.shape[1:] or not 0 <= row <= row + len(chunk) <= self.shape[0]:
            raise ValueError(f"{self.path.name}: rows {row}..{row + len(chunk)} of shape {chunk.shape[1:]} "
                             f"do not fit an array of shape {self.shape}")
        data = memoryview(np.ascontiguousarray(chunk, dtype=self.dtype).reshape(-1)).cast("B")
        position = self._offset + row * self._row_bytes
        while data:
            written = os.pwrite(self._fd, data, position)
            data, position = data[written:], position + written

    def close(self) -> tuple[int, ...]:
        """Flush to disk and return the array's shape."""
        os.fsync(self._fd)
        os.close(self._fd)
        self.closed = True
        return self.shape

    def abort(self) -> None:
        """Close without finishing (the caller removes the file)."""
        os.close(self._fd)
        self.closed = True


class RecordFile:
    """A scratch file of records, each a few 1-d arrays, written one after another and read back by
    their place, from any number of threads.

    A record starts with each array's byte size and dtype (two int64 each); the arrays' bytes
    follow. The file keeps where each record starts, so :meth:`read` takes a record's index and
    reads it with ``os.pread``, which moves no shared file position. Nothing in it outlives the
    encoding that wrote it, so it is neither versioned nor synced to disk.

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
        self._fd: int | None = None
        self._starts: list[int] = []                        # byte offset of each record
        self._size = 0
        self._opening = threading.Lock()

    def __len__(self) -> int:
        return len(self._starts)

    def write(self, arrays: Sequence[np.ndarray]) -> None:
        """Append one record: the arrays, each flattened."""
        if self._file is None:
            self._file = open(self.path, "wb")  # noqa: SIM115 - closed by close()
        arrays = [np.ascontiguousarray(a) for a in arrays]
        head = np.array([(a.nbytes, self.DTYPES.index(a.dtype)) for a in arrays], dtype=np.int64)
        self._starts.append(self._size)
        self._file.write(head.tobytes())
        for a in arrays:
            if a.nbytes:
                self._file.write(memoryview(a.reshape(-1)).cast("B"))
        self._size += head.nbytes + sum(a.nbytes for a in arrays)

    def read(self, index: int, count: int) -> list[np.ndarray]:
        """Record ``index``'s ``count`` arrays (read-only views of one buffer)."""
        if not 0 <= index < len(self._starts):
            raise EOFError(f"{self.path}: no record {index} (it holds {len(self._starts)})")
        fd = self._reader()
        offset = self._starts[index]
        head = os.pread(fd, 16 * count, offset)
        sizes = np.frombuffer(head, dtype=np.int64).reshape(count, 2).tolist()
        body = os.pread(fd, sum(size for size, _ in sizes), offset + len(head))
        out, start = [], 0
        for size, code in sizes:
            dtype = self.DTYPES[code]
            out.append(np.frombuffer(body, dtype=dtype, count=size // dtype.itemsize, offset=start) if size
                       else np.zeros(0, dtype=dtype))
            start += size
        return out

    def _reader(self) -> int:
        """The file descriptor reads use, opened once the writing is flushed."""
        with self._opening:
            if self._fd is None:
                if self._file is not None:
                    self._file.close()
                    self._file = None
                self._fd = os.open(self.path, os.O_RDONLY)
            return self._fd

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
