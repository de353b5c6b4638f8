"""Pass 1 over a training table: the vocabularies and statistics that fix every split's encoding.

:func:`fit_table` reads the training file once, in chunks, and returns a :class:`FittedTable`:
per column, the categories kept (by descending count, ties by value), whether cells were
missing, numeric mean and standard deviation (merged chunk by chunk, Chan, Golub and LeVeque
1979) and, for quantile bins, the edges placed on a uniform sample of at most
:data:`QUANTILE_SAMPLE` values (reservoir sampling, Vitter 1985, with a fixed seed so that the
same file gives the same bins). Memory grows with the number of distinct training values (the
counts are merged over them, :class:`_Distinct`), never with the number of rows; hashed columns
keep none.

Given a :class:`ChunkSink`, it hands on what it read of every chunk and the ids of each chunk's
values, so that :mod:`mlpkit.data.tables` encodes the training split without parsing the file again.

A :class:`FittedTable` is plain JSON (:meth:`FittedTable.to_dict`), saved with the encoded arrays
and, by a run, with its model.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mlpkit.data.fields import Field, FieldSpec
from mlpkit.data.table_io import arrow, iter_chunks, missing_mask, to_floats, to_labels, to_strings
from mlpkit.data.table_spec import ColumnConfig
from mlpkit.errors import DataFormatError

__all__ = [
    "QUANTILE_SAMPLE",
    "ChunkColumn",
    "ChunkSink",
    "FittedColumn",
    "FittedTable",
    "fit_table",
    "tokens",
]

QUANTILE_SAMPLE = 1_000_000
"""Values kept to place quantile bin edges; all of them when training has no more."""
_QUANTILE_SEED = 0                  # fixed: the same training file gives the same edges in every run
_MERGE_AT = 1 << 18                 # distinct values pending before per-chunk counts are merged: 2**16 cost
                                    # 35% more merging on a Criteo-shaped file; 2**20 saved only 4% more
# Numeric statistics work on blocks of this many values of the column, whatever the reading chunks,
# so the fitted mean, std and bin edges do not depend on the chunk size down to the last bit.
_STATS_BLOCK = 1 << 16


@dataclass(frozen=True)
class FittedColumn:
    """What the training split taught about one column: enough to encode any file the same way.

    Parameters
    ----------
    name : str
    config : ColumnConfig
    categories : tuple of str
        Categorical and multi-valued columns with a vocabulary: the kept values in id order, the
        first at :attr:`first_id`.
    has_missing : bool
        Whether the training split had missing cells (categorical columns: id 1 is "missing").
    mean, std : float
        Numeric columns: mean and population standard deviation of the training values present.
    edges : tuple of float
        Quantile bins: the ``bins - 1`` cut points.
    max_len : int
        Multi-valued columns: tokens kept per cell.
    """

    name: str
    config: ColumnConfig
    categories: tuple[str, ...] = ()
    has_missing: bool = False
    mean: float = 0.0
    std: float = 1.0
    edges: tuple[float, ...] = ()
    max_len: int = 0

    @property
    def hashed(self) -> bool:
        return self.config.hash_buckets is not None

    @property
    def first_id(self) -> int:
        """Id of the first category (after OOV, missing or padding)."""
        if self.config.kind == "multi":
            return 2
        return 2 if self.has_missing else 1

    @property
    def field(self) -> Field:
        """The column as the model sees it."""
        config = self.config
        if config.kind == "numeric":
            if config.transform == "quantile":
                return Field(self.name, "categorical", int(config.bins or 0) + 2)
            return Field(self.name, "numeric")
        size = int(config.hash_buckets or 0) + 1 if self.hashed else self.first_id + len(self.categories)
        if config.kind == "multi":
            return Field(self.name, "multi", size, pooling=config.pooling or "mean", max_len=self.max_len)
        return Field(self.name, "categorical", size)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "config": self.config.to_dict(), "categories": list(self.categories),
                "has_missing": self.has_missing, "mean": self.mean, "std": self.std,
                "edges": list(self.edges), "max_len": self.max_len}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> FittedColumn:
        return cls(raw["name"], ColumnConfig(**raw["config"]), tuple(raw["categories"]),
                   bool(raw["has_missing"]), float(raw["mean"]), float(raw["std"]),
                   tuple(float(e) for e in raw["edges"]), int(raw["max_len"]))


@dataclass(frozen=True)
class FittedTable:
    """The fitted encoding of a table: save it with a model, to encode new files the same way.

    Parameters
    ----------
    label : str
        The label column.
    columns : tuple of FittedColumn
        The encoded columns, in spec (or file) order.
    train_rows : int
        Rows of the training split it was fitted on.
    """

    label: str
    columns: tuple[FittedColumn, ...]
    train_rows: int = 0

    @property
    def fields(self) -> FieldSpec:
        return FieldSpec(tuple(c.field for c in self.columns))

    @property
    def vocabularies(self) -> dict[str, tuple[str, ...]]:
        """Column -> its categories in id order (from ``first_id``), for columns with a vocabulary."""
        return {c.name: c.categories for c in self.columns
                if c.config.kind != "numeric" and not c.hashed}

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "train_rows": self.train_rows,
                "columns": [c.to_dict() for c in self.columns]}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> FittedTable:
        return cls(raw["label"], tuple(FittedColumn.from_dict(c) for c in raw["columns"]),
                   int(raw["train_rows"]))


class _Distinct:
    """The distinct values of a column over many chunks, their counts, and each chunk's values among them.

    Each chunk comes dictionary-encoded: its (k,) distinct values and their (k,) counts. Chunks wait
    in a list and are merged into the values seen so far in amortised batches (when the pending
    values outnumber ``max(_MERGE_AT, values so far)``): Arrow's ``index_in`` finds the pending
    values among the values so far, and ``dictionary_encode`` numbers the new ones by first
    occurrence after them, so the values so far keep their ids and every pending chunk's
    dictionary gets the (k,) int32 ids of its values among all of them. (One ``dictionary_encode``
    of ``[values so far, *pending]`` gives the same ids, but builds its hash table, its indices and
    a new dictionary over all of them at every merge.) ``on_ids``,
    when given, receives the ids, chunk after chunk, so the encoder can turn a chunk's positions
    in its own dictionary into ids without reading the file again.
    """

    def __init__(self, on_ids: Callable[[np.ndarray], None] | None = None) -> None:
        self.on_ids = on_ids
        self.values: Any = None                             # (M,) distinct values, in id order
        self.counts = np.zeros(0, dtype=np.int64)           # (M,)
        self._pending: list[Any] = []
        self._pending_counts: list[np.ndarray] = []
        self._pending_size = 0

    def add(self, dictionary: Any, counts: np.ndarray) -> None:
        """Count a chunk: its (k,) distinct values (no nulls) and their (k,) int64 counts."""
        self._pending.append(dictionary)
        self._pending_counts.append(counts)
        self._pending_size += len(dictionary)
        if self._pending_size > max(_MERGE_AT, len(self.counts)):
            self._merge()

    def _merge(self) -> None:
        pa, pc = arrow()
        if not self._pending:
            return
        known = len(self.counts)
        # Arrow leaves empty chunks out of a chunked result: only the non-empty ones go in.
        pending = pa.chunked_array([a for a in self._pending if len(a)], type=pa.string())   # (P,)
        ids = np.empty(len(pending), dtype=np.int32)                                      # (P,)
        fresh = pending
        if known:
            found = pc.index_in(pending, value_set=self.values)          # (P,), null: a new value
            is_new = np.asarray(pc.is_null(found).to_numpy(), dtype=bool)
            ids[~is_new] = _numpy(pc.drop_null(found))
            fresh = pc.filter(pending, pa.array(is_new))
        values = self.values if known else pa.array([], type=pa.string())
        if len(fresh):
            # The new values numbered by first occurrence; every chunk holds the whole dictionary.
            encoded = pc.dictionary_encode(fresh)
            new_ids = known + np.concatenate([_numpy(c.indices) for c in encoded.chunks])
            if known:
                ids[is_new] = new_ids
                values = pa.concat_arrays([self.values, encoded.chunk(0).dictionary])
            else:
                ids[:] = new_ids
                values = encoded.chunk(0).dictionary
        counts = np.zeros(len(values), dtype=np.int64)
        counts[:known] = self.counts
        start = 0
        for dictionary, chunk_counts in zip(self._pending, self._pending_counts, strict=True):
            chunk_ids = ids[start:start + len(dictionary)]                # (k,)
            start += len(dictionary)
            counts[chunk_ids] += chunk_counts               # a chunk's values are distinct: no add.at
            if self.on_ids is not None:
                self.on_ids(chunk_ids)
        self.values, self.counts = values, counts
        self._pending, self._pending_counts, self._pending_size = [], [], 0

    def ranks(self, min_count: int) -> tuple[tuple[str, ...], np.ndarray]:
        """The values seen at least ``min_count`` times, most frequent first, ties by value, and the
        (M,) int32 position of each distinct value among them (-1 when it is not kept)."""
        pa, pc = arrow()
        self._merge()
        if self.values is None:
            return (), np.zeros(0, dtype=np.int32)
        kept = np.flatnonzero(self.counts >= min_count)
        table = pa.table({"v": self.values.take(pa.array(kept)), "c": self.counts[kept]})
        order = _numpy(pc.sort_indices(table, sort_keys=[("c", "descending"), ("v", "ascending")]))
        rank = np.full(len(self.counts), -1, dtype=np.int32)
        rank[kept[order]] = np.arange(len(order))
        return tuple(table.column("v").take(pa.array(order)).to_pylist()), rank


def _numpy(array: Any) -> np.ndarray:
    return np.asarray(array.to_numpy(zero_copy_only=False))


class _Moments:
    """Count, mean and sum of squared deviations, merged chunk by chunk (Chan, Golub, LeVeque 1979)."""

    def __init__(self) -> None:
        self.n, self.mean, self.m2 = 0, 0.0, 0.0

    def add(self, x: np.ndarray) -> None:
        if not len(x):
            return
        n_b, mean_b = len(x), float(x.mean())
        m2_b = float(np.square(x - mean_b).sum())
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * self.n * n_b / n
        self.n = n

    @property
    def std(self) -> float:
        return float(np.sqrt(self.m2 / self.n)) if self.n else 0.0


class _Reservoir:
    """A uniform sample of at most ``capacity`` values of a stream (Vitter's algorithm R, vectorised)."""

    def __init__(self, capacity: int, rng: np.random.Generator) -> None:
        self.capacity, self.rng, self.seen = capacity, rng, 0
        self.sample = np.empty(0, dtype=np.float64)

    def add(self, x: np.ndarray) -> None:
        room = self.capacity - len(self.sample)
        if room > 0:
            self.sample = np.concatenate([self.sample, x[:room]])
            self.seen += min(room, len(x))
            x = x[room:]
        if not len(x):
            return
        # Value t (0-based over the stream) replaces slot j ~ U{0..t} when j < capacity.
        t = self.seen + np.arange(len(x))
        slots = self.rng.integers(0, t + 1)
        hit = np.flatnonzero(slots < self.capacity)
        # A slot drawn twice in one chunk keeps the later value, as one-at-a-time sampling would.
        last = len(hit) - 1 - np.unique(slots[hit][::-1], return_index=True)[1]
        self.sample[slots[hit][last]] = x[hit][last]
        self.seen += len(x)


@dataclass(frozen=True)
class ChunkColumn:
    """One column of one training chunk as the fit pass read it, for the encoder to finish it.

    Parameters
    ----------
    values : ndarray of shape (n,), float64, or None
        Numeric columns: the values, NaN where a cell is missing.
    codes : ndarray of shape (n,) or (T,), int32, or None
        Columns with a vocabulary: each cell's (each token's) position in the chunk's own
        dictionary of k values, whose ids among all training values come later, through
        :meth:`ChunkSink.ids`; a missing cell is ``k``, one past the dictionary.
    strings : pyarrow array of shape (n,) or (T,), or None
        Hashed columns: the cells as read (text, or dictionary-encoded text), or the tokens.
    rows : ndarray of shape (T,), int32, or None
        Multi-valued columns: the row of each token, as :func:`tokens` returns it.
    """

    values: np.ndarray | None = None
    codes: np.ndarray | None = None
    strings: Any = None
    rows: np.ndarray | None = None


class ChunkSink(Protocol):
    """What :func:`fit_table` hands on, so that the training file is read once for fit and encode.

    Calls come in this order: :meth:`chunk` for every chunk; :meth:`ids` for every chunk of a
    column with a vocabulary, in chunk order, interleaved with the chunks (a column's ids come in
    batches, as its counts are merged); then, after the last chunk, :meth:`ranks` once per such column.
    """

    def chunk(self, labels: np.ndarray, columns: list[ChunkColumn]) -> None:
        """A chunk's (n,) float32 labels and its columns, in the order of ``columns``."""

    def ids(self, column: int, ids: np.ndarray) -> None:
        """The (k,) int32 ids among the column's training values of one chunk's dictionary."""

    def ranks(self, column: int, rank: np.ndarray) -> None:
        """The (M,) int32 place of each training value among the fitted categories; -1: not kept."""


class _Fitter:
    """Statistics of one column over the training chunks."""

    def __init__(self, name: str, config: ColumnConfig, path: Path,
                 on_ids: Callable[[np.ndarray], None] | None = None) -> None:
        self.name, self.config, self.path = name, config, path
        self.counts = _Distinct(on_ids)
        self.rank = np.zeros(0, dtype=np.int32)
        self.has_missing = False
        self.longest = 0
        self.moments = _Moments()
        self.reservoir = _Reservoir(QUANTILE_SAMPLE, np.random.default_rng(_QUANTILE_SEED))
        self._pending: list[np.ndarray] = []                 # present values not yet in a block
        self._pending_size = 0

    def add(self, array: Any, first_row: int) -> ChunkColumn:
        pa, _ = arrow()
        config = self.config
        if config.kind == "numeric":
            values, missing = to_floats(array, path=self.path, column=self.name, first_row=first_row)
            present = values[~missing]
            self._pending.append(present)
            self._pending_size += len(present)
            if self._pending_size >= _STATS_BLOCK:
                self._blocks(final=False)
            return ChunkColumn(values=values)
        if config.kind == "categorical":
            if self.hashed:
                if pa.types.is_dictionary(array.type):
                    self.has_missing |= bool(array.null_count or missing_mask(array.dictionary).any())
                else:
                    self.has_missing |= bool(missing_mask(to_strings(array)).any())
                return ChunkColumn(strings=array)
            codes, missing = self._count(array)
            self.has_missing |= missing
            return ChunkColumn(codes=codes)
        values, rows, n = tokens(array, config)
        if len(rows):
            self.longest = max(self.longest, int(np.bincount(rows, minlength=n).max()))
        rows = rows.astype(np.int32, copy=False)
        if self.hashed:
            return ChunkColumn(strings=values, rows=rows)
        return ChunkColumn(codes=self._count(values)[0], rows=rows)

    def _count(self, array: Any) -> tuple[np.ndarray, bool]:
        """Count a chunk's values: each cell's (n,) int32 code in the chunk's dictionary of k
        values (k for a missing cell, null or empty), and whether there was one."""
        pa, pc = arrow()
        if pa.types.is_dictionary(array.type) and array.type.value_type == pa.string():
            encoded = array                                 # the CSV parser encoded it already
        else:
            encoded = pc.dictionary_encode(to_strings(array))
        k = len(encoded.dictionary)
        indices = encoded.indices if not encoded.indices.null_count else pc.fill_null(encoded.indices, k)
        codes = _numpy(indices).astype(np.int32, copy=False)
        counts = np.bincount(codes, minlength=k + 1)                    # (k + 1,), the last: nulls
        missing = encoded.indices.null_count > 0
        empty = pc.index(encoded.dictionary, pa.scalar("", pa.string())).as_py()
        if empty >= 0:                                                  # "" is missing, never counted
            missing = True
            codes = np.where(codes == empty, np.int32(k), codes)
            counts[empty] = 0
        self.counts.add(encoded.dictionary, counts[:k])
        return codes, missing

    @property
    def hashed(self) -> bool:
        return self.config.hash_buckets is not None

    def _blocks(self, *, final: bool) -> None:
        """Feed the pending values to the statistics in whole blocks (and the rest when ``final``)."""
        values = np.concatenate(self._pending) if self._pending else np.zeros(0)
        whole = len(values) if final else len(values) - len(values) % _STATS_BLOCK
        for start in range(0, whole, _STATS_BLOCK):
            block = values[start:start + _STATS_BLOCK]
            self.moments.add(block)
            if self.config.transform == "quantile":
                self.reservoir.add(block)
        self._pending = [values[whole:]]
        self._pending_size = len(values) - whole

    def result(self) -> FittedColumn:
        config = self.config
        if config.kind == "numeric":
            self._blocks(final=True)
            edges: tuple[float, ...] = ()
            if config.transform == "quantile" and len(self.reservoir.sample):
                bins = int(config.bins or 1)
                edges = tuple(float(e) for e in np.quantile(self.reservoir.sample, np.arange(1, bins) / bins))
            elif config.transform == "quantile":
                edges = (0.0,) * (int(config.bins or 1) - 1)
            return FittedColumn(self.name, config, mean=self.moments.mean, std=self.moments.std, edges=edges)
        categories: tuple[str, ...] = ()
        if not self.hashed:
            categories, self.rank = self.counts.ranks(config.min_count)
            self.counts = _Distinct()                       # the values and counts are done with
        if config.kind == "categorical":
            return FittedColumn(self.name, config, categories, has_missing=self.has_missing)
        max_len = config.max_len or max(self.longest, 1)
        return FittedColumn(self.name, config, categories, max_len=max_len)


def tokens(array: Any, config: ColumnConfig) -> tuple[Any, np.ndarray, int]:
    """The non-empty tokens of a multi-valued column, with the (row) each came from, and the row count."""
    pa, pc = arrow()
    lists = array if pa.types.is_list(array.type) else pc.split_pattern(to_strings(array), config.delimiter)
    n = len(lists)
    lengths = np.asarray(pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False))
    flat = to_strings(pc.list_flatten(lists))
    rows = np.repeat(np.arange(n), lengths)
    keep = ~missing_mask(flat)
    return pc.filter(flat, pa.array(keep)), rows[keep], n


def fit_table(path: Path, columns: Mapping[str, ColumnConfig], label: str,
              *, sink: ChunkSink | None = None) -> FittedTable:
    """Fit the encoding of ``columns`` on the training file: one pass, in chunks.

    Parameters
    ----------
    path : Path
        The training file.
    columns : Mapping of str to ColumnConfig
        The columns to encode (:func:`load_table_dataset` checks them against the file first).
    label : str
        The label column, checked to hold 0/1 on the way.
    sink : ChunkSink, optional
        Receives every chunk as read, and the ids of its values once they are known, so that the
        caller can encode the training split from this one reading of the file.

    Returns
    -------
    FittedTable

    Raises
    ------
    DataFormatError
        The file has no data rows, a label is not 0/1, or a numeric column holds text.
    """
    fitters = []
    for j, (name, config) in enumerate(columns.items()):
        on_ids = None if sink is None else functools.partial(sink.ids, j)
        fitters.append(_Fitter(name, config, path, on_ids))
    rows = 0
    # The parser dictionary-encodes the categorical columns and parses the numeric ones and the
    # label, in the parsing threads.
    encoded = [name for name, config in columns.items() if config.kind == "categorical"]
    numbers = [name for name, config in columns.items() if config.kind == "numeric"]
    # closing(): on an error the parsing threads stop now, not when the traceback is let go.
    with contextlib.closing(iter_chunks(path, [label, *columns], encoded, numbers, label)) as chunks:
        for chunk in chunks:
            labels = to_labels(chunk.column(label), path=path, column=label, first_row=rows)
            parts = [fitter.add(chunk.column(fitter.name), rows) for fitter in fitters]
            if sink is not None:
                sink.chunk(labels, parts)
            rows += chunk.num_rows
    if rows == 0:
        raise DataFormatError(f"{path}: no data rows")
    fitted = FittedTable(label, tuple(f.result() for f in fitters), rows)
    if sink is not None:
        for j, fitter in enumerate(fitters):
            if fitter.config.kind != "numeric" and not fitter.hashed:
                sink.ranks(j, fitter.rank)
    return fitted
