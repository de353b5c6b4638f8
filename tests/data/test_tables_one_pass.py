"""The training file parsed once: the fit pass keeps the chunks' dictionary positions, and the
training arrays built from them equal a second, separate encoding pass over the file."""

from __future__ import annotations

import collections
import re
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlpkit.data import TableSpec, encode_file, load_table_dataset, table_fit, table_io, tables
from mlpkit.errors import DataFormatError

SPEC = {
    "cat": {"min_count": 3},
    "late": {},                                             # empty in the first rows: empty dictionaries
    "code": {"min_count": 2},                               # "007" and "7" stay two categories
    "hashed": {"hash_buckets": 50},
    "tags": {"kind": "multi", "min_count": 2},
    "htags": {"kind": "multi", "delimiter": ";", "hash_buckets": 20},
    "x": {"kind": "numeric", "transform": "standardize"},
    "y": {"kind": "numeric", "transform": "log"},
    "z": {"kind": "numeric"},
    "q": {"kind": "numeric", "transform": "quantile", "bins": 4},
}
HEADER = ["label", *SPEC]


def generated_columns(rng: np.random.Generator, n: int) -> dict[str, list[str]]:
    """Seeded CSV cells of every kind of column, with missing ones ("") in each."""
    def zipf(prefix: str, cap: int, missing: float) -> list[str]:
        values = np.minimum(rng.zipf(1.4, size=n), cap)
        return ["" if rng.random() < missing else f"{prefix}{v}" for v in values]

    def number(values: np.ndarray, missing: float) -> list[str]:
        return ["" if rng.random() < missing else repr(float(v)) for v in np.round(values, 3)]

    def token_lists(prefix: str, delimiter: str) -> list[str]:
        return [delimiter.join(f"{prefix}{min(int(t), 30)}" for t in rng.zipf(1.5, size=rng.integers(0, 5)))
                for _ in range(n)]

    late = zipf("l", 20, 0.1)
    return {
        "label": [str(int(rng.random() < 0.3)) for _ in range(n)],
        "cat": zipf("c", 60, 0.1),
        "late": [""] * (n // 3) + late[n // 3:],
        "code": [rng.choice(["007", "7", "07", "x"]) for _ in range(n)],
        "hashed": zipf("h", 500, 0.05),
        "tags": token_lists("t", "|"),
        "htags": token_lists("u", ";"),
        "x": number(rng.normal(3.0, 2.0, size=n), 0.1),
        "y": number(rng.exponential(4.0, size=n) - 0.5, 0.1),
        "z": number(rng.normal(size=n), 0.05),
        "q": number(rng.exponential(2.0, size=n), 0.1),
    }


def write_split(directory: Path, split: str, columns: dict[str, list[str]], fmt: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        path = directory / f"{split}.csv"
        rows = zip(*columns.values(), strict=True)
        path.write_text("\n".join([",".join(columns)] + [",".join(row) for row in rows]) + "\n")
        return path
    path = directory / f"{split}.parquet"                  # missing cells as nulls, numbers as doubles
    numeric = {name for name, raw in SPEC.items() if raw.get("kind") == "numeric"}
    table = {
        name: pa.array([None if v == "" else float(v) for v in cells], pa.float64()) if name in numeric
        else pa.array([int(v) for v in cells]) if name == "label"
        else pa.array([None if v == "" and name not in ("tags", "htags") else v for v in cells], pa.string())
        for name, cells in columns.items()
    }
    pq.write_table(pa.table(table), path)
    return path


def make_data(root: Path, rng: np.random.Generator, fmt: str = "csv", n: int = 600) -> Path:
    for split, rows in (("train", n), ("valid", n // 4), ("test", n // 4)):
        write_split(root, split, generated_columns(rng, rows), fmt)
    return root


def arrays_of(split: tables.TableSplit) -> dict[str, np.ndarray]:
    out = {"sparse": np.asarray(split.sparse), "dense": np.asarray(split.dense)}
    out.update({f"multi:{k}": np.asarray(v) for k, v in split.multi.items()})
    if split.label is not None:
        out["label"] = np.asarray(split.label)
    return out


def two_pass(train: Path, spec: dict[str, dict[str, object]]
             ) -> tuple[table_fit.FittedTable, tables.TableSplit]:
    """The reference: fit on the file, then a second, separate reading of it to encode it."""
    columns = dict(TableSpec.from_dict(spec).columns)
    fitted = table_fit.fit_table(train, columns, "label")
    return fitted, encode_file(train, fitted)


@pytest.mark.parametrize(("fmt", "small_chunks", "standardize"),
                         [("csv", False, True), ("csv", True, True), ("parquet", True, True),
                          ("csv", True, False)])
def test_one_pass_equals_two_passes(tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch,
                                    fmt: str, small_chunks: bool, standardize: bool) -> None:
    # Without a standardized column the numeric inputs are final as read, and skip the scratch file.
    spec = SPEC if standardize else {**SPEC, "x": {"kind": "numeric", "transform": "log"}}
    data_dir = make_data(tmp_path / "d", rng, fmt)
    if small_chunks:
        monkeypatch.setattr(table_io, "CSV_BLOCK_BYTES", 512)          # about 8 rows a chunk
        monkeypatch.setattr(table_io, "PARQUET_BATCH_ROWS", 7)
        monkeypatch.setattr(table_fit, "_MERGE_AT", 8)                 # merge the counts often
    data = load_table_dataset(data_dir, spec, cache_dir=tmp_path / "cache")
    train = next(data_dir.glob("train.*"))
    fitted, reference = two_pass(train, spec)
    assert data.fitted == fitted
    one, two = arrays_of(data.splits["train"]), arrays_of(reference)
    assert one.keys() == two.keys()
    for name in one:
        assert one[name].dtype == two[name].dtype, name
        np.testing.assert_array_equal(one[name], two[name], err_msg=name)
    assert not list(data.cache_dir.glob("*.stage"))                    # the scratch files are gone


def test_vocabularies_match_a_counter_over_the_rows(tmp_path: Path, rng: np.random.Generator,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(table_io, "CSV_BLOCK_BYTES", 256)
    monkeypatch.setattr(table_fit, "_MERGE_AT", 4)
    columns = generated_columns(rng, 500)
    data_dir = tmp_path / "d"
    for split in ("train", "valid", "test"):
        write_split(data_dir, split, columns, "csv")
    data = load_table_dataset(data_dir, SPEC, cache_dir=tmp_path / "cache")
    for name, min_count in (("cat", 3), ("late", 1), ("code", 2)):
        counts = collections.Counter(v for v in columns[name] if v)
        expected = sorted((v for v, c in counts.items() if c >= min_count), key=lambda v: (-counts[v], v))
        assert data.vocabularies[name] == tuple(expected), name
    tags = collections.Counter(t for cell in columns["tags"] for t in cell.split("|") if t)
    assert data.vocabularies["tags"] == tuple(sorted((t for t, c in tags.items() if c >= 2),
                                                     key=lambda t: (-tags[t], t)))
    cat = data.fitted.columns[0]
    ids = data.splits["train"].sparse[:, 0]
    for row, cell in enumerate(columns["cat"]):                          # 0 OOV, 1 missing, then by count
        expected_id = 1 if cell == "" else cat.categories.index(cell) + 2 if cell in cat.categories else 0
        assert ids[row] == expected_id


def test_chunks_with_many_distinct_values_keep_their_ids(tmp_path: Path) -> None:
    # One chunk of 70 000 distinct values: its dictionary positions need more than 16 bits.
    n = 70_000
    rows = [f"{i % 2},u{i},v{i % 300}" for i in range(n)] + [f"1,u{n - 1},v0"]
    data_dir = tmp_path / "d"
    data_dir.mkdir()
    for split in ("train", "valid", "test"):
        (data_dir / f"{split}.csv").write_text("label,u,v\n" + "\n".join(rows) + "\n")
    data = load_table_dataset(data_dir, cache_dir=tmp_path / "cache")
    vocab = data.vocabularies
    assert vocab["u"][0] == f"u{n - 1}" and len(vocab["u"]) == n and vocab["v"][0] == "v0"
    position = {value: i for i, value in enumerate(vocab["u"])}
    expected_u = [position[f"u{i}"] + 1 for i in range(n)] + [1]
    np.testing.assert_array_equal(data.splits["train"].sparse[:, 0], expected_u)
    np.testing.assert_array_equal(data.splits["train"].sparse, data.splits["valid"].sparse)


def test_the_training_file_is_parsed_once(tmp_path: Path, rng: np.random.Generator,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: collections.Counter[str] = collections.Counter()         # file -> bytes parsed
    parse = table_io._parse_block

    def counting(block: table_io._Block, *args: object) -> object:
        parsed[block.path.name] += block.end - block.start
        return parse(block, *args)

    monkeypatch.setattr(table_io, "CSV_BLOCK_BYTES", 1024)              # several blocks a file
    monkeypatch.setattr(table_io, "_parse_block", counting)
    data_dir = make_data(tmp_path / "d", rng)
    load_table_dataset(data_dir, SPEC, cache_dir=tmp_path / "cache")
    files = ("test.csv", "train.csv", "valid.csv")
    assert parsed == {name: (data_dir / name).stat().st_size for name in files}

    batches: list[int] = []
    iter_batches = pq.ParquetFile.iter_batches

    def counting_batches(self: pq.ParquetFile, *args: object, **kwargs: object) -> object:
        batches.append(self.metadata.num_rows)
        return iter_batches(self, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", counting_batches)
    parquet_dir = make_data(tmp_path / "p", rng, "parquet", n=400)
    load_table_dataset(parquet_dir, SPEC, cache_dir=tmp_path / "cache")
    assert sorted(batches) == [100, 100, 400]


def our_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("mlpkit-")]


@pytest.mark.parametrize("bad", ["train", "test"])
def test_a_failure_leaves_no_scratch_files_and_no_thread(tmp_path: Path, rng: np.random.Generator,
                                                         monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setattr(table_io, "CSV_BLOCK_BYTES", 512)              # the bad row in a later chunk
    data_dir = make_data(tmp_path / "d", rng)
    path = data_dir / f"{bad}.csv"
    lines = path.read_text().splitlines()
    lines[100] = ",".join(["2", *lines[100].split(",")[1:]])
    path.write_text("\n".join(lines) + "\n")
    message = f"{path}: label column 'label' must hold 0 or 1; row 100 holds '2'"
    with pytest.raises(DataFormatError, match=re.escape(message)):
        load_table_dataset(data_dir, SPEC, cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []
    assert our_threads() == []                     # the reading and encoding threads have stopped


def test_a_failing_writer_thread_stops_the_others_and_its_error_is_raised(
        tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(table_io, "CSV_BLOCK_BYTES", 512)              # dozens of training chunks
    encoded = tables._TrainStage._encoded
    done: list[int] = []

    def failing(self: tables._TrainStage, index: int, *args: object) -> dict[str, np.ndarray]:
        if index == 3:
            raise OSError("disk full")
        if index % 2 == 0:
            time.sleep(0.005)                                       # the other thread's chunks are slow
        done.append(index)
        return encoded(self, index, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(tables._TrainStage, "_encoded", failing)
    data_dir = make_data(tmp_path / "d", rng)
    with pytest.raises(OSError, match="disk full"):
        load_table_dataset(data_dir, SPEC, cache_dir=tmp_path / "cache")
    chunks = len(list(table_io.iter_chunks(data_dir / "train.csv", ["label"])))
    # Thread 0 has the even chunks, thread 1 fails at its second: thread 0 stops within a few.
    assert chunks > 30 and len([i for i in done if i % 2 == 0]) < 6
    assert list((tmp_path / "cache").iterdir()) == []
    assert our_threads() == []


def test_a_bad_valid_file_is_named_from_its_parse_during_the_fit(tmp_path: Path, rng: np.random.Generator,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(table_io, "CSV_BLOCK_BYTES", 512)
    data_dir = make_data(tmp_path / "d", rng)
    path = data_dir / "valid.csv"
    lines = path.read_text().splitlines()
    x = HEADER.index("x")
    lines[120] = ",".join(["abc" if i == x else cell for i, cell in enumerate(lines[120].split(","))])
    path.write_text("\n".join(lines) + "\n")
    message = f"{path}: numeric column 'x' must hold numbers; row 120 holds 'abc'"
    with pytest.raises(DataFormatError, match=re.escape(message)):
        load_table_dataset(data_dir, SPEC, cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []
    assert our_threads() == []


def test_a_label_that_is_not_a_number_is_named_with_its_text(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("label,u\n" + "".join(f"{i % 2},u{i}\n" for i in range(50)) + "yes,u\n1,u\n")
    message = f"{path}: label column 'label' must hold numbers; row 51 holds 'yes'"
    with pytest.raises(DataFormatError, match=re.escape(message)):
        table_fit.fit_table(path, {"u": TableSpec.from_dict({"u": {}}).columns["u"]}, "label")


@pytest.mark.parametrize("bad_row", [3, 150])                     # in the first block, in a later one
def test_a_parse_error_names_the_data_row_of_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      bad_row: int) -> None:
    monkeypatch.setattr(table_io, "CSV_BLOCK_BYTES", 64)
    rows = [f"{i % 2},u{i}" for i in range(1, 201)]
    rows[bad_row - 1] = "1,u,too,many"
    path = tmp_path / "t.csv"
    path.write_text("label,u\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataFormatError, match=re.escape(f"row {bad_row}: Expected 2 columns, got 4")):
        for _ in table_io.iter_chunks(path, ["label", "u"]):
            pass


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"])
@pytest.mark.parametrize("last_newline", [True, False])
def test_blocks_parsed_by_threads_come_in_file_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     ending: str, last_newline: bool) -> None:
    lines = ["label,u,x"] + [f'{i % 2},"u,{i}",{i / 4}' for i in range(300)]     # quoted commas
    path = tmp_path / "t.csv"
    path.write_bytes((ending.join(lines) + (ending if last_newline else "")).encode())
    monkeypatch.setattr(table_io, "CSV_BLOCK_BYTES", 100)                # about ten rows a block

    def rows() -> tuple[list[str], list[float], int]:
        chunks = list(table_io.iter_chunks(path, ["u", "x"], numbers=["x"], label="label"))
        table = pa.Table.from_batches(chunks)
        return table.column("u").to_pylist(), table.column("x").to_pylist(), len(chunks)

    u, x, chunks = rows()
    assert u == [f"u,{i}" for i in range(300)] and x == [i / 4 for i in range(300)]
    # "\r" alone ends no block: the file is read by Arrow's own streaming reader instead.
    assert chunks > 20
    monkeypatch.setattr(table_io, "PARSE_THREADS", 1)
    assert rows()[:2] == (u, x)


# --- the pieces ---------------------------------------------------------------------------------------


def test_distinct_values_keep_their_ids_across_merges(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(table_fit, "_MERGE_AT", 3)
    chunks = [["b", "a"], [], ["c", "a", "d"], ["a"], ["e", "f", "g", "b"], ["h"]]
    received: list[np.ndarray] = []
    distinct = table_fit._Distinct(received.append)
    for values in chunks:
        distinct.add(pa.array(values, pa.string()), np.ones(len(values), dtype=np.int64))
    categories, rank = distinct.ranks(min_count=2)
    assert len(received) == len(chunks)                              # one (k,) array per chunk, in order
    seen = distinct.values.to_pylist()
    assert [[seen[i] for i in ids] for ids in received] == chunks
    assert categories == ("a", "b")                                  # a: 3, b: 2; the rest once
    assert [seen[i] for i in np.argsort(rank)[rank[np.argsort(rank)] >= 0]] == ["a", "b"]
    assert distinct.counts[seen.index("a")] == 3 and (rank >= 0).sum() == 2


def test_record_file_round_trips_every_dtype(tmp_path: Path, rng: np.random.Generator) -> None:
    records = table_io.RecordFile(tmp_path / "scratch")
    written = [[rng.integers(0, 200, size=5).astype(dtype) for dtype in table_io.RecordFile.DTYPES]
               + [np.zeros(0, np.int64)] for _ in range(3)]
    for arrays in written:
        records.write(arrays)
    assert len(records) == 3
    for index in (2, 0, 1):                                         # any order
        back = records.read(index, len(written[index]))
        assert [a.dtype for a in back] == [a.dtype for a in written[index]]
        for a, b in zip(written[index], back, strict=True):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(EOFError, match=re.escape("no record 3 (it holds 3)")):
        records.read(3, 1)
    records.close()


def test_npy_writer_puts_rows_in_place_from_threads(tmp_path: Path, rng: np.random.Generator) -> None:
    expected = rng.integers(-5, 5, size=(37, 3))
    writer = table_io.NpyWriter(tmp_path / "a.npy", np.int64, expected.shape)
    starts = [0, 5, 6, 20, 37]

    def put(i: int) -> None:
        writer.write(starts[i], expected[starts[i]:starts[i + 1]].T.T)       # any layout of the rows

    threads = [threading.Thread(target=put, args=(i,)) for i in (3, 1, 2, 0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert writer.close() == (37, 3)
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy", mmap_mode="r"), expected)
    other = table_io.NpyWriter(tmp_path / "b.npy", np.int64, (4, 3))
    message = "rows 3..5 of shape (3,) do not fit an array of shape (4, 3)"
    with pytest.raises(ValueError, match=re.escape(message)):
        other.write(3, expected[:2])
    other.abort()


def test_to_floats_reads_sliced_and_null_cells(tmp_path: Path) -> None:
    cells = pa.array(["9", "1.5", "", None, "-2e3", "nan", ""], pa.string()).slice(1)
    values, missing = table_io.to_floats(cells, path=tmp_path, column="x", first_row=0)
    np.testing.assert_array_equal(missing, [False, True, True, False, True, True])
    np.testing.assert_array_equal(values[~missing], [1.5, -2000.0])


def test_reading_ahead_stops_with_the_caller_and_hands_over_parse_errors(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(table_io, "CSV_BLOCK_BYTES", 64)
    path = tmp_path / "t.csv"
    lines = ["label,u"] + [f"{i % 2},u{i}" for i in range(200)]
    path.write_text("\n".join(lines) + "\n")

    def readers() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name.startswith(("mlpkit-parse", "mlpkit-read-ahead"))]

    chunks = table_io.iter_chunks(path, ["label", "u"])
    first = next(chunks)
    assert first.num_rows > 0 and len(readers()) == table_io.PARSE_THREADS
    chunks.close()                                                   # the caller stops early
    assert readers() == []
    assert sum(c.num_rows for c in table_io.iter_chunks(path, ["label", "u"])) == 200
    path.write_text("\n".join([*lines[:150], "1,u,too,many", *lines[150:]]) + "\n")
    # Blocks end at the first line end 64 bytes or more after they start: the rows before the bad
    # one's block are counted in the message.
    text, start, before = path.read_bytes(), 0, 0
    bad_at = text.index(b"1,u,too,many")
    while (end := text.index(b"\n", start + 64) + 1) <= bad_at:
        before += text.count(b"\n", start, end) - (start == 0)
        start = end
    assert 130 < before < 150
    message = f"{path}: cannot parse the CSV after row {before}: "
    with pytest.raises(DataFormatError, match=re.escape(message)):
        for _ in table_io.iter_chunks(path, ["label", "u"]):
            pass
    assert readers() == []
