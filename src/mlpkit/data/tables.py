"""Tabular CTR data at any size: CSV or Parquet files to memory-mapped id and value arrays.

:func:`load_table_dataset` reads a directory holding ``train``, ``valid`` and ``test`` files
(``.csv``, ``.csv.gz`` or ``.parquet``, found by stem) and returns a :class:`TableDataset`: the
:class:`~mlpkit.data.fields.FieldSpec` the models are built from, and one :class:`TableSplit` of
memory-mapped arrays per split, in the id layout :mod:`mlpkit.data.fields` documents.

It works in bounded memory whatever the file size, and parses each file once:

1. **fit**, the one pass over the training file, in chunks: category and token counts, missing
   cells, numeric mean and standard deviation (merged chunk by chunk, Chan et al. 1979) and, for
   quantile bins, a uniform sample of at most 1e6 values (reservoir sampling, Vitter 1985, seeded
   so the same file gives the same bins). A CSV file is cut at line ends into blocks that two
   threads parse at once (:func:`~mlpkit.data.table_io.iter_chunks`), the categorical columns
   dictionary-encoded by the parser; each chunk's positions in its own dictionary, and the values
   it will need once the statistics are known, go to a scratch file in the cache entry being
   built. Meanwhile a thread of its own parses the valid and test CSV files into an Arrow IPC
   spool beside it, on the cores the fit leaves idle;
2. **encode**: train from the scratch file, each chunk's dictionary mapped to ids (one ``take``
   per chunk and column) and written in place by two threads, while valid and test are encoded
   from their spool chunk by chunk with vectorised Arrow and NumPy operations (Arrow's
   ``index_in`` for a small vocabulary, a binary search in the sorted stable hashes of a large
   one, built once per field; never a loop over rows); each array goes to a ``.npy`` file;
3. **cache** the arrays and the fitted encoding (:mod:`mlpkit.data.table_cache`): a second call on
   unchanged files and spec maps the arrays without reading the data; a corrupted entry is
   rebuilt, with a warning naming the bad file.

The id layout, per field (``0`` always means "unknown" to the model):

- categorical: 0 OOV (unseen in training, or seen fewer than ``min_count`` times), 1 missing if
  the training split had missing cells in the column (else a missing cell is OOV), then the
  categories by descending training count, ties by value (Arrow's byte order of the UTF-8 text);
- multi-valued: 0 padding, 1 OOV, then the tokens as above; a cell is split on ``delimiter``,
  empty tokens dropped, the first ``max_len`` kept; an empty cell is all padding;
- hashed (``hash_buckets``): 0 missing (padding for ``multi``), then
  ``1 + stable_hash(value) % hash_buckets`` (:func:`~mlpkit.data.table_io.stable_hash`);
- numeric: float32 ``x``, ``(x - mean) / std`` (population std; 1 when it is 0) or
  ``log1p(max(x, 0))``; a missing cell (empty, null or NaN) is 0.0, i.e. the mean under
  ``standardize``;
- quantile bins: ``bins + 2`` ids, 0 unused (kept so that 0 never is a value), 1 missing, then
  ``2 + searchsorted(edges, x, side="right")`` with the ``bins - 1`` edges at the training quantiles
  ``k / bins`` (NumPy's linear interpolation); the field becomes categorical.

Missing means an empty cell or a null; the text ``"NA"`` is a category. Categorical columns are
read as text, so ``"007"`` and ``"7"`` stay distinct (a Parquet column's values as Arrow writes
them as text). Ids are stored as int32 (:data:`ID_DTYPE`): half the bytes of int64 to write, to
cache and to read back batch by batch; :meth:`TableSplit.batch` and the trainer hand them on as the
int64 that :class:`torch.nn.Embedding` indexes with.

No torch here; pyarrow (the ``tables`` extra) does the reading.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlpkit.data import table_cache
from mlpkit.data.fields import FieldSpec
from mlpkit.data.table_fit import ChunkColumn, FittedColumn, FittedTable, fit_table, tokens
from mlpkit.data.table_io import (
    SPLITS,
    NpyAppender,
    NpyWriter,
    RecordFile,
    arrow,
    find_split_files,
    iter_chunks,
    missing_mask,
    read_columns,
    stable_hash,
    to_floats,
    to_labels,
    to_strings,
)
from mlpkit.data.table_spec import ColumnConfig, TableSpec, load_table_spec
from mlpkit.errors import ConfigError, DataFormatError, DataNotFoundError

__all__ = [
    "FittedColumn",
    "FittedTable",
    "TableDataset",
    "TableSplit",
    "encode_file",
    "fit_table",
    "load_table_dataset",
]

logger = logging.getLogger(__name__)

ID_DTYPE = np.dtype(np.int32)
"""The dtype of the id arrays (``sparse``, ``multi:<name>``) on disk. Every id is below a field's
vocabulary size or ``hash_buckets + 1``, both under 2**31 (:class:`~mlpkit.data.table_spec.ColumnConfig`
bounds ``hash_buckets``)."""

WRITE_THREADS = min(2, os.cpu_count() or 1)
"""Threads writing the training arrays from the fit's scratch files, each chunk's rows in place.
NumPy's ``take`` and ``os.pwrite`` release the GIL: on two cores two threads wrote the 1M-row
Criteo-shaped split in 0.15 s, one thread in 0.20-0.29 s."""


def _resolve_columns(
    files: Mapping[str, Path], spec: TableSpec | None, label: str
) -> dict[str, ColumnConfig]:
    """The encoded columns after checking the files against each other, the label and the spec."""
    train = files["train"]
    columns = read_columns(train)
    if label not in columns:
        raise DataFormatError(f"{train}: no label column {label!r}; its columns: {columns}")
    for split, path in files.items():
        if split == "train":
            continue
        other = read_columns(path)
        if set(other) != set(columns):
            lacks, extra = sorted(set(columns) - set(other)), sorted(set(other) - set(columns))
            raise DataFormatError(
                f"{path} has different columns from {train}: missing {lacks}, extra {extra}"
            )
    if spec is None:
        return {name: ColumnConfig() for name in columns if name != label}
    if label in spec.columns:
        raise ConfigError(f"the spec sets column {label!r}, which is the label; leave it out of the spec")
    if absent := [name for name in spec.columns if name not in columns]:
        raise ConfigError(
            f"the spec names column(s) {absent} that {train} does not have; its columns: {columns}"
        )
    if ignored := [name for name in columns if name != label and name not in spec.columns]:
        logger.info("columns not in the spec, left out: %s", ignored)
    return dict(spec.columns)


# ----------------------------------------------------------------------------------------------- encoding


def _per_unique(strings: Any, function: Any) -> np.ndarray:
    """``function`` applied to the distinct values of a chunk only, then spread back to its (n,) rows."""
    _, pc = arrow()
    encoded = pc.dictionary_encode(strings)
    if not len(encoded.dictionary):
        return np.zeros(len(strings), dtype=np.int64)
    codes = np.asarray(pc.fill_null(encoded.indices, 0).to_numpy(zero_copy_only=False), dtype=np.int64)
    return np.asarray(function(encoded.dictionary))[codes]


class _VocabularyLookup:
    """Position of each string in a vocabulary, -1 when absent, without rebuilding a hash table per chunk.

    Arrow's ``index_in`` hashes the whole value set on every call: for a field of 10^5 categories
    that is most of the work of encoding a chunk. The vocabulary's :func:`stable_hash` values are
    sorted once instead; a chunk's distinct values are hashed, found by binary search, and
    compared as strings, so a hash collision can never map a value to the wrong id. A vocabulary
    whose own hashes collide (about 1 in 10^7 for 2 million categories) uses ``index_in``, and so
    does a small one (:data:`INDEX_IN_MAX` values, or twice the chunk's): there hashing the value
    set is the cheaper side (10^4 categories: 0.4 ms against 1.6 ms for 10^4 values looked up).
    """

    INDEX_IN_MAX = 1 << 15

    def __init__(self, categories: tuple[str, ...]) -> None:
        pa, _ = arrow()
        self.values = pa.array(categories, type=pa.string())
        hashes = stable_hash(self.values)
        self.order = np.argsort(hashes, kind="stable")
        self.sorted = hashes[self.order]
        self.collides = bool((np.diff(self.sorted) == 0).any())

    def __call__(self, strings: Any) -> np.ndarray:
        pa, pc = arrow()
        if not len(self.values) or not len(strings):
            return np.full(len(strings), -1, dtype=np.int64)
        if self.collides or len(self.values) <= max(self.INDEX_IN_MAX, 2 * len(strings)):
            index = pc.fill_null(pc.index_in(strings, value_set=self.values), -1)
            return np.asarray(index.to_numpy(zero_copy_only=False), dtype=np.int64)
        hashes = stable_hash(strings)
        slot = np.minimum(np.searchsorted(self.sorted, hashes), len(self.sorted) - 1)
        candidate = self.order[slot]
        same = self.sorted[slot] == hashes
        same &= np.asarray(pc.fill_null(pc.equal(strings, self.values.take(pa.array(candidate))), False)
                           .to_numpy(zero_copy_only=False), dtype=bool)
        return np.where(same, candidate, -1)


class _Encoder:
    """Encodes the chunks of any file with a fitted table, into named arrays."""

    def __init__(self, fitted: FittedTable) -> None:
        self.fitted = fitted
        self.sparse = [c for c in fitted.columns if c.field.kind == "categorical"]
        self.dense = [c for c in fitted.columns if c.field.kind == "numeric"]
        self.multi = [c for c in fitted.columns if c.field.kind == "multi"]
        self.vocab = {c.name: _VocabularyLookup(c.categories) for c in fitted.columns
                      if c.config.kind != "numeric" and not c.hashed}

    def layout(self, with_label: bool) -> dict[str, tuple[np.dtype[Any], tuple[int, ...]]]:
        """Array name -> (dtype, shape of one row)."""
        arrays: dict[str, tuple[np.dtype[Any], tuple[int, ...]]] = {
            "sparse": (ID_DTYPE, (len(self.sparse),)),
            "dense": (np.dtype(np.float32), (len(self.dense),)),
        }
        for c in self.multi:
            arrays[f"multi:{c.name}"] = (ID_DTYPE, (c.max_len,))
        if with_label:
            arrays["label"] = (np.dtype(np.float32), ())
        return arrays

    def _lookup(self, column: FittedColumn, oov: int) -> Callable[[Any], np.ndarray]:
        """Distinct (k,) strings -> (k,) int64 ids: vocabulary position + first id (``oov`` when
        unseen), or a hash bucket."""
        if column.hashed:
            return functools.partial(_hash_buckets, config=column.config)
        vocab = self.vocab[column.name]

        def ids(values: Any) -> np.ndarray:
            index = vocab(values)
            return np.where(index >= 0, index + column.first_id, oov)

        return ids

    def _ids(self, column: FittedColumn, strings: Any, oov: int) -> np.ndarray:
        """(n,) int64 ids of (n,) strings (none missing), looked up for their distinct values only."""
        return _per_unique(strings, self._lookup(column, oov))

    def encode(self, chunk: Any, *, path: Path, first_row: int, with_label: bool) -> dict[str, np.ndarray]:
        n = chunk.num_rows
        out: dict[str, np.ndarray] = {
            "sparse": np.empty((n, len(self.sparse)), dtype=ID_DTYPE),
            "dense": np.empty((n, len(self.dense)), dtype=np.float32),
        }
        for j, c in enumerate(self.sparse):
            array = chunk.column(c.name)
            if c.config.kind == "numeric":                       # quantile bins
                values, missing = to_floats(array, path=path, column=c.name, first_row=first_row)
                out["sparse"][:, j] = _bin_ids(c, values, missing)
                continue
            out["sparse"][:, j] = _categorical_ids(array, self._lookup(c, oov=0),
                                                   0 if c.hashed or not c.has_missing else 1)
        for j, c in enumerate(self.dense):
            values, missing = to_floats(chunk.column(c.name), path=path, column=c.name, first_row=first_row)
            out["dense"][:, j] = _numeric_values(c.config, values, missing, c.mean, c.std)
        for c in self.multi:
            values, rows, _ = tokens(chunk.column(c.name), c.config)
            out[f"multi:{c.name}"] = _pad(self._ids(c, values, oov=1), rows, n, c.max_len)
        if with_label:
            out["label"] = to_labels(chunk.column(self.fitted.label), path=path, column=self.fitted.label,
                                     first_row=first_row)
        return out


def _hash_buckets(values: Any, config: ColumnConfig) -> np.ndarray:
    """(k,) int64 ids ``1 + stable_hash(value) % hash_buckets`` of (k,) strings."""
    return (1 + stable_hash(values) % np.uint64(config.hash_buckets or 1)).astype(np.int64)


def _hashed_ids(strings: Any, config: ColumnConfig) -> np.ndarray:
    """(n,) int64 hashed ids of (n,) strings (a missing cell is the caller's to set)."""
    return _per_unique(strings, functools.partial(_hash_buckets, config=config))


def _categorical_ids(array: Any, lookup: Callable[[Any], np.ndarray], missing_id: int) -> np.ndarray:
    """(n,) int64 ids of a categorical column: ``lookup`` of the chunk's (k,) distinct values, spread
    to the rows; ``missing_id`` for a missing cell (null or empty). A column the CSV parser
    dictionary-encoded is taken as it is."""
    pa, pc = arrow()
    encoded = array if pa.types.is_dictionary(array.type) else pc.dictionary_encode(to_strings(array))
    dictionary = to_strings(encoded.dictionary)
    k = len(dictionary)
    ids = np.empty(k + 1, dtype=np.int64)                   # (k + 1,), the last for a null
    ids[:k] = lookup(dictionary)
    ids[k] = missing_id
    ids[:k][missing_mask(dictionary)] = missing_id          # the empty string
    indices = encoded.indices if not encoded.indices.null_count else pc.fill_null(encoded.indices, k)
    return ids[np.asarray(indices.to_numpy(zero_copy_only=False))]


def _bin_ids(column: FittedColumn, values: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """(n,) int64 quantile-bin ids of (n,) values: 1 where missing, else 2 + the bin."""
    return np.where(missing, 1, 2 + np.searchsorted(np.asarray(column.edges), values, side="right"))


def _numeric_values(config: ColumnConfig, values: np.ndarray, missing: np.ndarray,
                    mean: float = 0.0, std: float = 1.0) -> np.ndarray:
    """(n,) float64 model inputs of a numeric column's (n,) values: transformed, 0.0 where missing."""
    if config.transform == "log":
        return np.log1p(np.fmax(values, 0.0))               # fmax(NaN, 0) is 0: missing -> log1p(0) = 0
    if config.transform == "standardize":
        values = (values - mean) / (std or 1.0)
    return np.where(missing, 0.0, values)


def _pad(ids: np.ndarray, rows: np.ndarray, n: int, max_len: int) -> np.ndarray:
    """(n, max_len) int32 token ids from (T,) ids and their (T,) rows, the first ``max_len`` a row; 0 pads."""
    counts = np.bincount(rows, minlength=n)
    position = np.arange(len(rows)) - (np.cumsum(counts) - counts)[rows]   # token's place in its cell
    kept = position < max_len
    padded = np.zeros((n, max_len), dtype=ID_DTYPE)                        # (n, L), 0 = padding
    padded[rows[kept], position[kept]] = ids[kept]
    return padded


def _read_chunks(path: Path, columns: Mapping[str, ColumnConfig], label: str | None) -> Iterator[Any]:
    """The chunks of ``path`` as the encoder reads them: categorical columns dictionary-encoded by
    the parser, numeric ones and the label (when given) parsed as numbers."""
    categorical = [name for name, config in columns.items() if config.kind == "categorical"]
    numbers = [name for name, config in columns.items() if config.kind == "numeric"]
    return iter_chunks(path, [*columns, *([label] if label else [])], categorical, numbers, label)


def _encode_chunks(path: Path, encoder: _Encoder, *, with_label: bool,
                   spooled: Path | None = None) -> Iterator[dict[str, np.ndarray]]:
    """Encode ``path`` chunk by chunk, or its chunks as :func:`_spool` kept them in ``spooled``;
    raises DataFormatError if it has no data rows."""
    fitted = encoder.fitted
    rows = 0
    columns = {c.name: c.config for c in fitted.columns}
    # closing(): on an error the parsing threads stop now.
    read = _read_chunks(path, columns, fitted.label if with_label else None) if spooled is None \
        else _spooled_chunks(spooled)
    with contextlib.closing(read) as chunks:
        for chunk in chunks:
            yield encoder.encode(chunk, path=path, first_row=rows, with_label=with_label)
            rows += chunk.num_rows
    if rows == 0:
        raise DataFormatError(f"{path}: no data rows")


def _encode_to_files(path: Path, encoder: _Encoder, directory: Path, prefix: str,
                     *, with_label: bool, spooled: Path | None = None) -> dict[str, dict[str, Any]]:
    """Encode ``path`` into ``directory/<prefix>.<array>.npy`` files; returns each file's description."""
    return _write_arrays(_encode_chunks(path, encoder, with_label=with_label, spooled=spooled),
                         encoder.layout(with_label), directory, prefix)


def _spool(path: Path, columns: Mapping[str, ColumnConfig], label: str, spooled: Path,
           stop: threading.Event) -> None:
    """Parse the CSV file ``path`` as the encoder reads it, into the Arrow IPC stream ``spooled``
    (each chunk with its own dictionaries), until ``stop`` is set; no file when it has no rows.

    The fit pass parses the training file while this parses valid and test, on the cores its
    parsing leaves idle; encoding them then reads these chunks without parsing text again.
    """
    arrow()                                 # pyarrow, or the error naming the tables extra
    import pyarrow.ipc as ipc

    writer = None
    try:
        with contextlib.closing(_read_chunks(path, columns, label)) as chunks:
            for chunk in chunks:
                if stop.is_set():
                    return
                writer = writer or ipc.new_stream(str(spooled), chunk.schema)
                writer.write_batch(chunk)
    finally:
        if writer is not None:
            writer.close()


def _spooled_chunks(spooled: Path) -> Iterator[Any]:
    """The chunks :func:`_spool` wrote, read one at a time (not memory-mapped: the pages of a map
    would stay counted in the process's resident memory)."""
    pa, _ = arrow()
    import pyarrow.ipc as ipc

    if spooled.is_file():
        with pa.OSFile(str(spooled)) as file:
            yield from ipc.open_stream(file)


def _array_files(layout: Iterable[str], prefix: str) -> dict[str, str]:
    """Array name -> its ``.npy`` file name in a split's layout (``multi:<name>`` by position)."""
    return {name: f"{prefix}.{name if not name.startswith('multi:') else f'multi{i}'}.npy"
            for i, name in enumerate(layout)}


def _write_arrays(chunks: Iterable[dict[str, np.ndarray]],
                  layout: Mapping[str, tuple[np.dtype[Any], tuple[int, ...]]],
                  directory: Path, prefix: str, skip: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
    """Append encoded chunks to ``directory/<prefix>.<array>.npy`` files; returns each file's
    description. The arrays named in ``skip`` are written elsewhere, and left out of the chunks."""
    names = _array_files(layout, prefix)
    writers = {name: _appender(directory, names[name], layout[name]) for name in layout if name not in skip}
    try:
        for arrays in chunks:
            for name, writer in writers.items():
                writer.append(arrays[name])
        return {name: _close(writer, names[name]) for name, writer in writers.items()}
    except BaseException:
        _discard(writers.values())
        raise


def _appender(directory: Path, file: str, layout: tuple[np.dtype[Any], tuple[int, ...]]) -> NpyAppender:
    return NpyAppender(directory / file, layout[0], layout[1])


def _discard(writers: Iterable[NpyAppender | NpyWriter]) -> None:
    """Close unfinished ``.npy`` files and delete them all: nothing half-written stays behind."""
    for writer in writers:
        if not writer.closed:
            writer.abort()
        writer.path.unlink(missing_ok=True)


def _close(writer: NpyAppender | NpyWriter, file: str) -> dict[str, Any]:
    """Finish a ``.npy`` file; its description in the cache entry's metadata."""
    return {"file": file, "shape": list(writer.close()), "dtype": str(writer.dtype)}


class _Cancelled(RuntimeError):
    """A thread stopped because another part of the encoding failed."""


class _TrainStage:
    """The training file as the fit pass read it, kept in scratch files so that encoding it does not
    parse it again (the :class:`~mlpkit.data.table_fit.ChunkSink` of :func:`fit_table`).

    The labels are final as read, and so are the numeric inputs when no column needs a fitted
    statistic (no ``standardize``): those go straight to ``train.label.npy`` and
    ``train.dense.npy``. ``train.stage`` holds one record per chunk
    (:class:`~mlpkit.data.table_io.RecordFile`): the row count n, then per column

    - numeric, transform none or log (unless written directly): its (n,) float32 model inputs;
    - numeric, standardize or quantile: its (n,) float64 values, NaN where missing (the mean, the
      standard deviation and the bin edges are known only after the last chunk);
    - categorical with a vocabulary: (n,) positions in the chunk's dictionary of k values (k:
      missing), in the narrowest of uint8, uint16 and int32 that holds k;
    - categorical, hashed: (n,) int64 ids, final;
    - multi-valued: (T,) dictionary positions (as above) or (T,) int64 hashed ids, then (T,)
      int32 rows.

    The ids of each chunk's dictionary among all training values, for vocabulary column j, go to
    ``train.ids<j>.stage`` as the fit merges its counts. :meth:`encoded` reads both back and maps
    every position to its id with one ``take`` per chunk and column. Memory holds one chunk at a
    time, plus one int64 per distinct training value of each vocabulary column.
    """

    def __init__(self, directory: Path, columns: Mapping[str, ColumnConfig]) -> None:
        self.configs = list(columns.values())
        self.records = RecordFile(directory / "train.stage")
        self.ids_files = {j: RecordFile(directory / f"train.ids{j}.stage")
                          for j, config in enumerate(self.configs)
                          if config.kind != "numeric" and config.hash_buckets is None}
        self.rank: dict[int, np.ndarray] = {}
        self.rows: list[int] = []                                # each chunk's row count
        self.cancelled = threading.Event()
        # The labels, and the numeric inputs when none needs a fitted statistic, are final as
        # read: they go straight to their .npy files instead of through the scratch file.
        numeric = [c for c in self.configs if c.kind == "numeric" and c.transform != "quantile"]
        layout: dict[str, tuple[np.dtype[Any], tuple[int, ...]]] = {"label": (np.dtype(np.float32), ())}
        if all(c.transform in ("none", "log") for c in numeric):
            layout["dense"] = (np.dtype(np.float32), (len(numeric),))
        files = _array_files(layout, "train")
        self.direct = {name: _appender(directory, files[name], layout[name]) for name in layout}
        self.staged = [c.kind != "numeric" or c.transform == "quantile" or "dense" not in self.direct
                       for c in self.configs]
        # The row count, then one array per staged column, two per multi-valued one.
        self.arrays = 1 + sum(self.staged) + sum(c.kind == "multi" for c in self.configs)

    def chunk(self, labels: np.ndarray, columns: list[ChunkColumn]) -> None:
        self.direct["label"].append(labels)
        record: list[np.ndarray] = [np.array([len(labels)], dtype=np.int64)]
        dense: list[np.ndarray] = []
        for config, part, staged in zip(self.configs, columns, self.staged, strict=True):
            if part.values is not None:                         # numeric
                values = part.values
                if config.transform in ("none", "log"):
                    values = _numeric_values(config, values, np.isnan(values)).astype(np.float32)
                (record if staged else dense).append(values)
                continue
            if part.codes is not None:                          # positions: the narrowest dtype
                top = int(part.codes.max(initial=0))
                ids = part.codes.astype(np.uint8 if top < 256 else np.uint16 if top < 65536 else np.int32)
            elif part.rows is not None:
                ids = _hashed_ids(part.strings, config)
            else:                                               # hashed: 0 is missing
                ids = _categorical_ids(part.strings, functools.partial(_hash_buckets, config=config), 0)
            record += [ids] if part.rows is None else [ids, part.rows]
        if "dense" in self.direct:
            self.direct["dense"].append(np.stack(dense, axis=1) if dense else np.empty((len(labels), 0),
                                                                                        np.float32))
        self.records.write(record)
        self.rows.append(len(labels))

    def ids(self, column: int, ids: np.ndarray) -> None:
        self.ids_files[column].write([ids])

    def ranks(self, column: int, rank: np.ndarray) -> None:
        self.rank[column] = rank

    def write(self, fitted: FittedTable, directory: Path,
              layout: Mapping[str, tuple[np.dtype[Any], tuple[int, ...]]],
              threads: int = WRITE_THREADS) -> dict[str, dict[str, Any]]:
        """Write the training split's arrays but the direct ones, chunk by chunk, by ``threads``
        threads (each chunk's rows in place, :class:`~mlpkit.data.table_io.NpyWriter`); returns
        each file's description."""
        final: dict[int, np.ndarray] = {}                       # column -> (M,) int32 id of each value
        for j, rank in self.rank.items():
            c = fitted.columns[j]
            unseen = 1 if c.config.kind == "multi" else 0
            final[j] = np.where(rank >= 0, rank + c.first_id, unseen).astype(ID_DTYPE)
        self.rank.clear()
        starts = np.concatenate([[0], np.cumsum(self.rows)]).tolist()                # (chunks + 1,)
        names = _array_files(layout, "train")
        writers = {name: NpyWriter(directory / names[name], dtype, (starts[-1], *tail))
                   for name, (dtype, tail) in layout.items() if name not in self.direct}

        def write_chunks(first: int) -> None:
            try:
                for i in range(first, len(self.rows), threads):     # chunks dealt out in turn
                    if self.cancelled.is_set():
                        raise _Cancelled("encoding the training split was cancelled")
                    for name, array in self._encoded(i, fitted, final).items():
                        writers[name].write(starts[i], array)
            except BaseException:
                self.cancel()                                   # the other threads stop at their next chunk
                raise

        try:
            with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="mlpkit-write-train") as pool:
                done = [pool.submit(write_chunks, first) for first in range(threads)]
            errors = [e for e in (f.exception() for f in done) if e is not None]
            if errors:                                          # the cause, not the threads it stopped
                raise next((e for e in errors if not isinstance(e, _Cancelled)), errors[0])
            return {name: _close(writer, names[name]) for name, writer in writers.items()}
        except BaseException:
            _discard(writers.values())
            raise

    def _encoded(self, index: int, fitted: FittedTable,
                 final: Mapping[int, np.ndarray]) -> dict[str, np.ndarray]:
        """Chunk ``index``'s arrays but the direct ones, as :meth:`_Encoder.encode` gives them."""
        fields = fitted.fields
        record = iter(self.records.read(index, self.arrays))
        n = int(next(record)[0])
        # Filled a column at a time into (F, n), then transposed once: contiguous writes, where
        # filling the columns of (n, F) in place took 40% longer.
        sparse = np.empty((len(fields.categorical), n), dtype=ID_DTYPE)
        out: dict[str, np.ndarray] = {}
        if "dense" not in self.direct:
            out["dense"] = np.empty((n, len(fields.numeric)), dtype=np.float32)
        s = d = 0
        for j, (c, staged) in enumerate(zip(fitted.columns, self.staged, strict=True)):
            if not staged:
                continue
            x = next(record)
            if j in final:                                      # dictionary positions -> ids
                lookup = final[j][self.ids_files[j].read(index, 1)[0]]                 # (k,)
                if c.config.kind == "categorical":
                    lookup = np.append(lookup, 1 if c.has_missing else 0)         # k: a missing cell
                    np.take(lookup, x, out=sparse[s])
                    s += 1
                    continue
                x = lookup[x]
            if c.config.kind == "multi":
                out[f"multi:{c.name}"] = _pad(x, next(record), n, c.max_len)
            elif c.config.transform == "quantile":
                sparse[s] = _bin_ids(c, x, np.isnan(x))
                s += 1
            elif c.config.kind == "categorical":
                sparse[s] = x
                s += 1
            else:
                if c.config.transform == "standardize":
                    x = _numeric_values(c.config, x, np.isnan(x), c.mean, c.std)
                out["dense"][:, d] = x
                d += 1
        out["sparse"] = sparse.T
        return out

    def cancel(self) -> None:
        """Make :meth:`write`'s threads stop at their next chunk."""
        self.cancelled.set()

    def finish(self) -> dict[str, dict[str, Any]]:
        """Close the arrays written directly; their descriptions."""
        files = _array_files(self.direct, "train")
        return {name: _close(writer, files[name]) for name, writer in self.direct.items()}

    def remove(self) -> None:
        """Close and delete the scratch files (and the direct arrays, unless finished)."""
        for records in (self.records, *self.ids_files.values()):
            records.close()
            records.path.unlink(missing_ok=True)
        _discard(writer for writer in self.direct.values() if not writer.closed)


# ----------------------------------------------------------------------------------------------- API


@dataclass(frozen=True)
class TableSplit:
    """One encoded split: memory-mapped arrays, read row by row as batches are drawn.

    Parameters
    ----------
    sparse : ndarray of shape (N, F), int32
        One id per categorical field (quantile-binned numeric ones included), in
        ``FieldSpec.categorical`` order.
    dense : ndarray of shape (N, D), float32
        One value per numeric field, in ``FieldSpec.numeric`` order.
    multi : dict of str to ndarray of shape (N, L), int32
        One padded id list per multi-valued field.
    label : ndarray of shape (N,), float32, or None
        0/1 labels; None for a file without a label column (:func:`encode_file`).
    """

    sparse: np.ndarray
    dense: np.ndarray
    multi: Mapping[str, np.ndarray] = field(default_factory=dict)
    label: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.sparse.shape[0])

    def batch(self, indices: Any) -> dict[str, np.ndarray]:
        """The named batch of rows ``indices`` (an int, a slice or an index array), as in-memory copies.

        Returns
        -------
        dict
            ``{"sparse": (B, F) int64, "dense": (B, D) float32, "multi:<name>": (B, L) int64}``; an
            int index gives B = 1. The labels of the same rows are ``split.label[indices]``.
        """
        if isinstance(indices, int | np.integer):
            indices = np.array([indices])                       # keep the batch axis: B = 1
        elif isinstance(indices, slice):
            indices = np.arange(len(self))[indices]             # a copy, not a view of the file
        out = {"sparse": self.sparse[indices].astype(np.int64), "dense": np.asarray(self.dense[indices])}
        out.update({f"multi:{name}": array[indices].astype(np.int64) for name, array in self.multi.items()})
        return out

    @classmethod
    def _from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> TableSplit:
        multi = {name.removeprefix("multi:"): a for name, a in arrays.items() if name.startswith("multi:")}
        return cls(arrays["sparse"], arrays["dense"], multi, arrays.get("label"))


@dataclass(frozen=True)
class TableDataset:
    """An encoded CTR data set, as returned by :func:`load_table_dataset`.

    Parameters
    ----------
    fields : FieldSpec
        The fields, in column order: what the models are built from.
    splits : dict of str to TableSplit
        ``"train"``, ``"valid"`` and ``"test"``.
    fitted : FittedTable
        The encoding fitted on train; ``fitted.to_dict()`` saved with a model lets
        :func:`encode_file` encode new files for it.
    cache_dir : Path
        The cache entry holding the arrays.
    """

    fields: FieldSpec
    splits: dict[str, TableSplit]
    fitted: FittedTable
    cache_dir: Path

    @property
    def vocabularies(self) -> dict[str, tuple[str, ...]]:
        """Column -> its categories in id order, for the columns with a fitted vocabulary."""
        return self.fitted.vocabularies


def _as_spec(spec: TableSpec | Mapping[str, Any] | str | os.PathLike[str] | None) -> TableSpec | None:
    if spec is None or isinstance(spec, TableSpec):
        return spec
    if isinstance(spec, str | os.PathLike):
        return load_table_spec(spec)
    if isinstance(spec, Mapping):
        return TableSpec.from_dict(spec)
    raise ConfigError(f"spec must be a TableSpec, a dict or a TOML file path, got {type(spec).__name__}")


def _build(files: Mapping[str, Path], columns: Mapping[str, ColumnConfig], label: str,
           directory: Path) -> dict[str, Any]:
    """Fit on train and encode every split into ``directory``; the cache entry's metadata.

    The training file is parsed once: the fit pass keeps what it read (:class:`_TrainStage`), and
    the training arrays are written from that in a second thread while valid and test are encoded
    (each side mostly in NumPy and Arrow, which release the GIL).
    """
    stage = _TrainStage(directory, columns)
    # CSV files of the other splits are parsed during the fit, in a thread of their own.
    spools = {split: directory / f"{split}.spool" for split, path in files.items()
              if split != "train" and path.name.lower().endswith((".csv", ".csv.gz"))}
    try:
        start = time.perf_counter()
        stop = threading.Event()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlpkit-spool") as spooler:
            spooled = [spooler.submit(_spool, files[split], columns, label, file, stop)
                       for split, file in spools.items()]
            try:
                fitted = fit_table(files["train"], columns, label, sink=stage)
            except BaseException:
                stop.set()                                      # the spooling stops at its next chunk
                raise
            for future in spooled:
                future.result()                                 # a bad valid or test file: its error now
        logger.info("fitted %d columns on %s (%d rows) in %.1f s", len(fitted.columns), files["train"].name,
                    fitted.train_rows, time.perf_counter() - start)
        encoder = _Encoder(fitted)

        def encode(split: str) -> dict[str, dict[str, Any]]:
            start = time.perf_counter()
            if split == "train":
                layout = encoder.layout(True)
                written = stage.write(fitted, directory, layout)
                written.update(stage.finish())
                described = {name: written[name] for name in layout}                # in layout order
            else:
                described = _encode_to_files(files[split], encoder, directory, split, with_label=True,
                                             spooled=spools.get(split))
            rows = described["label"]["shape"][0]
            seconds = time.perf_counter() - start
            logger.info("encoded %s: %d rows in %.1f s (%.0f rows/s)", files[split].name, rows, seconds,
                        rows / max(seconds, 1e-9))
            return described

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlpkit-encode-train") as pool:
            train = pool.submit(encode, "train")
            try:
                described = {split: encode(split) for split in files if split != "train"}
            except BaseException:
                stage.cancel()                                  # train's thread stops at its next chunk
                raise
            described["train"] = train.result()
    finally:
        stage.remove()
        for file in spools.values():
            file.unlink(missing_ok=True)
    arrays = {f"{split}/{name}": info for split in files for name, info in described[split].items()}
    return {"format": table_cache.FORMAT_VERSION, "files": {s: p.name for s, p in files.items()},
            "fitted": fitted.to_dict(), "arrays": arrays}


def load_table_dataset(
    data_dir: str | os.PathLike[str],
    spec: TableSpec | Mapping[str, Any] | str | os.PathLike[str] | None = None,
    *,
    label: str = "label",
    cache_dir: str | os.PathLike[str] | None = None,
) -> TableDataset:
    """Encode (or load from the cache) the train, valid and test files of a CTR data set.

    Parameters
    ----------
    data_dir : str or path
        The directory holding ``train``, ``valid`` and ``test`` as ``.csv``, ``.csv.gz`` or ``.parquet``.
    spec : TableSpec, dict, TOML file path or None
        How each column is encoded (:mod:`mlpkit.data.table_spec`); None: every column but the
        label is categorical.
    label : str, default "label"
        The 0/1 label column.
    cache_dir : str or path, optional
        Where cache entries go; default ``<data_dir>/.mlpkit-cache`` if writable, else
        ``~/.cache/mlpkit/tables``.

    Returns
    -------
    TableDataset

    Raises
    ------
    DataNotFoundError
        ``data_dir`` or a split file is missing.
    DataFormatError
        Naming the file, column and row: no label column, a label not 0/1, text in a numeric column,
        an empty file, splits with different columns.
    ConfigError
        The spec is invalid or names a column the files do not have (listing theirs).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     for split in ("train", "valid", "test"):
    ...         _ = (pathlib.Path(tmp) / f"{split}.csv").write_text("label,user\\n1,a\\n0,b\\n1,a\\n")
    ...     data = load_table_dataset(tmp)
    ...     valid = data.splits["valid"]
    ...     print(data.fields.categorical[0].vocab_size, valid.batch([0, 1])["sparse"].tolist())
    3 [[1], [2]]
    """
    data_dir = Path(data_dir)
    table_spec = _as_spec(spec)
    files = find_split_files(data_dir)
    columns = _resolve_columns(files, table_spec, label)
    key = table_cache.cache_key(files, None if table_spec is None else table_spec.to_dict(), label)
    root = Path(cache_dir) if cache_dir is not None else table_cache.default_cache_root(data_dir)
    directory = root / key
    if directory.exists():
        try:
            meta, arrays = table_cache.read_cache(directory)
        except table_cache.CorruptCacheError as exc:
            logger.warning("cache file %s is unusable: %s; encoding %s again", exc.path, exc.reason, data_dir)
            table_cache.discard_cache(directory)
        else:
            logger.info("using cached encoding %s", directory)
            return _dataset(meta, arrays, directory)
    directory, meta = table_cache.write_cache(root, key, lambda tmp: _build(files, columns, label, tmp))
    logger.info("cached the encoding in %s", directory)
    meta, arrays = table_cache.read_cache(directory, meta)
    return _dataset(meta, arrays, directory)


def _dataset(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray], directory: Path) -> TableDataset:
    fitted = FittedTable.from_dict(meta["fitted"])
    splits = {}
    for split in SPLITS:
        prefix = f"{split}/"
        splits[split] = TableSplit._from_arrays(
            {name.removeprefix(prefix): a for name, a in arrays.items() if name.startswith(prefix)}
        )
    return TableDataset(fitted.fields, splits, fitted, directory)


def encode_file(
    path: str | os.PathLike[str],
    fitted: FittedTable,
    *,
    out_dir: str | os.PathLike[str] | None = None,
) -> TableSplit:
    """Encode a new file (e.g. to predict on) with a fitted encoding; unseen categories become OOV.

    Parameters
    ----------
    path : str or path
        A ``.csv``, ``.csv.gz`` or ``.parquet`` file holding the fitted columns; the label column is optional.
    fitted : FittedTable
        ``TableDataset.fitted``, or ``FittedTable.from_dict`` of it as saved with a model.
    out_dir : str or path, optional
        Write the arrays there as ``.npy`` files and map them (bounded memory, for large files);
        by default they are built in memory.

    Returns
    -------
    TableSplit
        ``label`` is None when the file has no label column.

    Raises
    ------
    DataNotFoundError, DataFormatError
        The file is missing, lacks a fitted column (listing them), is empty, or holds bad values
        (naming the file, column and row).
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{path} does not exist or is not a file")
    columns = read_columns(path)
    if absent := [c.name for c in fitted.columns if c.name not in columns]:
        raise DataFormatError(f"{path} lacks column(s) {absent} the model reads; its columns: {columns}")
    with_label = fitted.label in columns
    if out_dir is not None:
        directory = Path(out_dir)
        directory.mkdir(parents=True, exist_ok=True)
        described = _encode_to_files(path, _Encoder(fitted), directory, path.name.split(".")[0],
                                     with_label=with_label)
        return TableSplit._from_arrays(
            {name: np.load(directory / info["file"], mmap_mode="r") for name, info in described.items()}
        )
    parts: dict[str, list[np.ndarray]] = {}
    for arrays in _encode_chunks(path, _Encoder(fitted), with_label=with_label):
        for name, array in arrays.items():
            parts.setdefault(name, []).append(array)
    return TableSplit._from_arrays({name: np.concatenate(chunks) for name, chunks in parts.items()})
