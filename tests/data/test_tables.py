"""Tabular CTR data: the id layout against hand-built expectations, CSV/Parquet/chunking
equivalence, the cache (hits, invalidation, corruption) and every error message."""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlpkit.data import (
    FittedTable,
    TableSpec,
    encode_file,
    load_table_dataset,
    load_table_spec,
    table_fit,
    table_io,
    tables,
)
from mlpkit.errors import ConfigError, DataFormatError, DataNotFoundError

MASK64 = 2**64 - 1


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    path.write_text("\n".join([",".join(header)] + [",".join(str(v) for v in row) for row in rows]) + "\n")
    return path


Rows = list[list[object]]


def make_dir(root: Path, header: list[str], train: Rows, valid: Rows | None = None,
             test: Rows | None = None) -> Path:
    """A data directory of three CSV files; valid and test default to the training rows."""
    root.mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", train), ("valid", valid), ("test", test)):
        write_csv(root / f"{split}.csv", header, train if rows is None else rows)
    return root


def load(data_dir: Path, spec: object = None, **kwargs: object) -> tables.TableDataset:
    kwargs.setdefault("cache_dir", data_dir.parent / "cache")
    return load_table_dataset(data_dir, spec, **kwargs)  # type: ignore[arg-type]


def reference_hash(text: str) -> int:
    """FNV-1a 64 then splitmix64's finaliser, one byte at a time in plain Python integers."""
    h = 0xCBF29CE484222325
    for byte in text.encode("utf-8"):
        h = ((h ^ byte) * 0x100000001B3) & MASK64
    h ^= h >> 30
    h = (h * 0xBF58476D1CE4E5B9) & MASK64
    h ^= h >> 27
    h = (h * 0x94D049BB133111EB) & MASK64
    return h ^ (h >> 31)


def mixed_rows(rng: np.random.Generator, n: int) -> list[list[object]]:
    """Rows of label, a Zipf category, a numeric column with gaps, another for bins, and tags."""
    rows: list[list[object]] = []
    for i in range(n):
        tags = "|".join(f"t{t}" for t in rng.integers(0, 6, size=rng.integers(0, 4)))
        x = "" if i % 7 == 3 else repr(float(np.round(rng.normal(3, 2), 3)))
        rows.append([int(rng.random() < 0.3), f"c{min(int(rng.zipf(1.5)), 40)}", x,
                     repr(float(rng.exponential(5))), tags])
    return rows


MIXED_HEADER = ["label", "cat", "x", "q", "tags"]
MIXED_SPEC = {
    "cat": {},
    "x": {"kind": "numeric", "transform": "standardize"},
    "q": {"kind": "numeric", "transform": "quantile", "bins": 5},
    "tags": {"kind": "multi", "max_len": 2},
}


def arrays_of(split: tables.TableSplit) -> dict[str, np.ndarray]:
    out = {"sparse": np.asarray(split.sparse), "dense": np.asarray(split.dense)}
    out.update({f"multi:{k}": np.asarray(v) for k, v in split.multi.items()})
    if split.label is not None:
        out["label"] = np.asarray(split.label)
    return out


def assert_same(a: tables.TableDataset, b: tables.TableDataset) -> None:
    assert a.fields == b.fields and a.fitted == b.fitted
    for name in ("train", "valid", "test"):
        left, right = arrays_of(a.splits[name]), arrays_of(b.splits[name])
        assert left.keys() == right.keys()
        for key in left:
            np.testing.assert_array_equal(left[key], right[key], err_msg=f"{name} {key}")


# --- vocabularies and the id layout ---------------------------------------------------------------


def test_vocabulary_is_fitted_on_train_only_by_count_then_value(tmp_path: Path) -> None:
    train = [[1, "b"], [0, "a"], [1, "b"], [0, "c"], [1, "a"], [0, "b"], [1, "007"]]
    valid = [[0, "7"], [1, "c"], [0, "zz"], [1, "a"], [0, "007"]]
    data = load(make_dir(tmp_path / "d", ["label", "user"], train, valid))
    # b: 3, a: 2, then "007" and "c" once each, "007" first by value; no missing cells -> no id 1 reserved.
    assert data.vocabularies == {"user": ("b", "a", "007", "c")}
    assert data.fields.categorical[0].vocab_size == 5
    np.testing.assert_array_equal(data.splits["train"].sparse[:, 0], [1, 2, 1, 4, 2, 1, 3])
    np.testing.assert_array_equal(data.splits["valid"].sparse[:, 0], [0, 4, 0, 2, 3])   # "7", "zz" -> OOV
    np.testing.assert_array_equal(data.splits["valid"].label, np.array([0, 1, 0, 1, 0], np.float32))
    # Ids are int32 on disk, int64 in a batch (what torch.nn.Embedding indexes with).
    assert data.splits["valid"].sparse.dtype == np.int32 and data.splits["valid"].label.dtype == np.float32
    batch = data.splits["valid"].batch([1, 3])
    assert batch["sparse"].dtype == np.int64 and batch["sparse"][:, 0].tolist() == [4, 2]
    assert isinstance(data.splits["train"].sparse, np.memmap)


def test_missing_gets_id_1_only_when_train_had_missing_cells(tmp_path: Path) -> None:
    with_gaps = load(make_dir(tmp_path / "a", ["label", "u"], [[1, "a"], [0, ""], [1, "a"], [0, "b"]],
                              [[1, ""], [0, "q"], [1, "b"]]))
    assert with_gaps.vocabularies["u"] == ("a", "b") and with_gaps.fields.fields[0].vocab_size == 4
    np.testing.assert_array_equal(with_gaps.splits["valid"].sparse[:, 0], [1, 0, 3])   # missing, OOV, b
    without = load(make_dir(tmp_path / "b", ["label", "u"], [[1, "a"], [0, "b"], [1, "a"]],
                            [[1, ""], [0, "q"], [1, "b"]]))
    assert without.fields.fields[0].vocab_size == 3
    np.testing.assert_array_equal(without.splits["valid"].sparse[:, 0], [0, 0, 2])      # missing -> OOV


def test_min_count_sends_rare_categories_to_oov(tmp_path: Path) -> None:
    rows = [[1, v] for v in ["a", "a", "a", "b", "b", "c"]]
    data = load(make_dir(tmp_path / "d", ["label", "u"], rows), {"u": {"min_count": 2}})
    assert data.vocabularies["u"] == ("a", "b") and data.fields.fields[0].vocab_size == 3
    np.testing.assert_array_equal(data.splits["train"].sparse[:, 0], [1, 1, 1, 2, 2, 0])


def test_hashed_ids_are_stable_across_processes_and_match_the_reference(tmp_path: Path) -> None:
    values = ["a", "", "user-42", "ünï", "a" * 40, "7", "007"]
    data_dir = make_dir(tmp_path / "d", ["label", "u"], [[i % 2, v] for i, v in enumerate(values)])
    spec = {"u": {"hash_buckets": 1000}}
    here = load(data_dir, spec).splits["train"].sparse[:, 0].tolist()
    expected = [0 if v == "" else 1 + reference_hash(v) % 1000 for v in values]          # 0: missing
    assert here == expected
    code = (
        "import json, sys; from mlpkit.data import load_table_dataset; "
        f"d = load_table_dataset(sys.argv[1], {spec!r}, cache_dir=sys.argv[2]); "
        "print(json.dumps(d.splits['train'].sparse[:, 0].tolist()))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", code, str(data_dir), str(tmp_path / "other-cache")],
                            capture_output=True, text=True, check=True, env=env)
    assert json.loads(result.stdout) == expected


def test_multi_valued_cells_are_split_padded_and_truncated(tmp_path: Path) -> None:
    train = [[1, "a|b"], [0, "b"], [1, "b|c|a"], [0, ""]]
    valid = [[1, "z|b|a"], [0, ""], [1, "a||c"], [0, "c|c|c|c"]]
    data = load(make_dir(tmp_path / "d", ["label", "tags"], train, valid), {"tags": {"kind": "multi"}})
    tags = data.fields.multi[0]
    # tokens: b 3, a 2, c 1 -> ids 2, 3, 4 after padding 0 and OOV 1; max_len: the longest train list.
    assert data.vocabularies["tags"] == ("b", "a", "c") and (tags.vocab_size, tags.max_len) == (5, 3)
    train_ids, valid_ids = data.splits["train"].multi["tags"], data.splits["valid"].multi["tags"]
    np.testing.assert_array_equal(train_ids, [[3, 2, 0], [2, 0, 0], [2, 4, 3], [0, 0, 0]])
    np.testing.assert_array_equal(valid_ids, [[1, 2, 3], [0, 0, 0], [3, 4, 0], [4, 4, 4]])
    short = load(make_dir(tmp_path / "e", ["label", "tags"], train, valid),
                 {"tags": {"kind": "multi", "max_len": 2, "delimiter": "|", "pooling": "sum"}})
    assert short.fields.multi[0].pooling == "sum"
    np.testing.assert_array_equal(short.splits["valid"].multi["tags"], [[1, 2], [0, 0], [3, 4], [4, 4]])


def test_vocabulary_lookup_survives_hash_collisions(tmp_path: Path, rng: np.random.Generator,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = make_dir(tmp_path / "d", MIXED_HEADER, mixed_rows(rng, 50))
    expected = load(data_dir, MIXED_SPEC, cache_dir=tmp_path / "a")
    # Every string hashes alike: the lookup must still give each category its own id.
    monkeypatch.setattr(tables, "stable_hash", lambda strings: np.zeros(len(strings), np.uint64))
    assert_same(expected, load(data_dir, MIXED_SPEC, cache_dir=tmp_path / "b"))
    one = load(make_dir(tmp_path / "e", ["label", "u"], [[1, "a"]], [[1, "zz"], [0, "a"]]))
    np.testing.assert_array_equal(one.splits["valid"].sparse[:, 0], [0, 1])     # "zz" hashes like "a"


def test_hashed_multi_valued_tokens(tmp_path: Path) -> None:
    data = load(make_dir(tmp_path / "d", ["label", "tags"], [[1, "x;y"], [0, ""]]),
                {"tags": {"kind": "multi", "delimiter": ";", "hash_buckets": 7}})
    expected = [[1 + reference_hash("x") % 7, 1 + reference_hash("y") % 7], [0, 0]]
    np.testing.assert_array_equal(data.splits["train"].multi["tags"], expected)
    assert data.fields.multi[0].vocab_size == 8


# --- numeric transforms -----------------------------------------------------------------------------


@pytest.mark.parametrize("transform", ["none", "standardize", "log"])
def test_numeric_transforms_match_numpy(tmp_path: Path, rng: np.random.Generator, transform: str) -> None:
    train_x = np.round(rng.normal(1.0, 3.0, size=40), 4)
    valid_x = np.round(rng.normal(1.0, 3.0, size=10), 4)
    cells = [repr(float(v)) for v in valid_x]
    cells[4] = ""                                                       # a missing cell
    data = load(make_dir(tmp_path / "d", ["label", "x"], [[1, repr(float(v))] for v in train_x],
                         [[0, c] for c in cells]), {"x": {"kind": "numeric", "transform": transform}})
    expected = {
        "none": valid_x,
        "standardize": (valid_x - train_x.mean()) / train_x.std(),
        "log": np.log1p(np.maximum(valid_x, 0)),
    }[transform].astype(np.float32)
    expected[4] = 0.0
    assert data.fields.numeric[0].name == "x" and data.splits["valid"].sparse.shape == (10, 0)
    np.testing.assert_allclose(data.splits["valid"].dense[:, 0], expected, rtol=1e-6)
    fitted = data.fitted.columns[0]
    assert fitted.mean == pytest.approx(train_x.mean(), rel=1e-12)
    assert fitted.std == pytest.approx(train_x.std(), rel=1e-12)


def test_quantile_bins_match_numpy_quantiles(tmp_path: Path, rng: np.random.Generator) -> None:
    train_x = rng.exponential(2.0, size=101)
    valid_x = np.concatenate([rng.exponential(2.0, size=9), [-1.0, 100.0]])
    cells = [repr(float(v)) for v in valid_x] + [""]
    spec = {"x": {"kind": "numeric", "transform": "quantile", "bins": 4}}
    data = load(make_dir(tmp_path / "d", ["label", "x"], [[0, repr(float(v))] for v in train_x],
                         [[1, c] for c in cells]), spec)
    edges = np.quantile(train_x, [0.25, 0.5, 0.75])
    assert data.fitted.columns[0].edges == tuple(edges)
    expected = np.append(2 + np.searchsorted(edges, valid_x, side="right"), 1)       # 1: the missing cell
    field = data.fields.fields[0]
    assert (field.kind, field.vocab_size) == ("categorical", 6)
    np.testing.assert_array_equal(data.splits["valid"].sparse[:, 0], expected)
    assert data.splits["valid"].sparse[-3:, 0].tolist() == [2, 5, 1]                  # below, above, missing


def test_reservoir_keeps_a_bounded_seeded_sample_of_the_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = np.arange(10_000, dtype=np.float64)
    samples = []
    for _ in range(2):
        reservoir = table_fit._Reservoir(500, np.random.default_rng(0))
        for chunk in np.array_split(stream, 37):
            reservoir.add(chunk)
        samples.append(reservoir.sample)
    sample = samples[0]
    assert len(sample) == 500 and len(np.unique(sample)) == 500 and np.isin(sample, stream).all()
    np.testing.assert_array_equal(samples[0], samples[1])
    # Uniform over the stream: each tenth holds 50 values on average (binomial sd ~6.7; 5 sd bound).
    assert np.abs(np.bincount((sample // 1000).astype(int), minlength=10) - 50).max() < 34


# --- file formats and chunking ----------------------------------------------------------------------


def test_csv_gzip_and_parquet_encode_alike(tmp_path: Path, rng: np.random.Generator) -> None:
    rows = mixed_rows(rng, 60)
    csv_dir = make_dir(tmp_path / "csv", MIXED_HEADER, rows[:40], rows[40:50], rows[50:])
    gz_dir, parquet_dir = tmp_path / "gz", tmp_path / "parquet"
    gz_dir.mkdir()
    parquet_dir.mkdir()
    for split, part in (("train", rows[:40]), ("valid", rows[40:50]), ("test", rows[50:])):
        text = (csv_dir / f"{split}.csv").read_bytes()
        (gz_dir / f"{split}.csv.gz").write_bytes(gzip.compress(text))
        columns = list(zip(*part, strict=True))
        table = pa.table({
            "label": pa.array([int(v) for v in columns[0]], pa.int64()),
            "cat": pa.array(columns[1], pa.string()),
            "x": pa.array([None if v == "" else float(v) for v in columns[2]], pa.float64()),
            "q": pa.array([float(v) for v in columns[3]], pa.float64()),
            "tags": pa.array(columns[4], pa.string()),
        })
        pq.write_table(table, parquet_dir / f"{split}.parquet")
    reference = load(csv_dir, MIXED_SPEC)
    assert_same(reference, load(gz_dir, MIXED_SPEC))
    assert_same(reference, load(parquet_dir, MIXED_SPEC))


def test_a_parquet_list_column_reads_like_delimited_text(tmp_path: Path) -> None:
    for name, tags in (("text", pa.array(["a|b", "", "b"])), ("lists", pa.array([["a", "b"], [], ["b"]]))):
        (tmp_path / name).mkdir()
        for split in ("train", "valid", "test"):
            pq.write_table(pa.table({"label": [1, 0, 1], "tags": tags}), tmp_path / name / f"{split}.parquet")
    spec = {"tags": {"kind": "multi"}}
    assert_same(load(tmp_path / "text", spec), load(tmp_path / "lists", spec))


def test_chunked_encoding_equals_one_chunk(tmp_path: Path, rng: np.random.Generator,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    rows = mixed_rows(rng, 400)
    data_dir = make_dir(tmp_path / "d", MIXED_HEADER, rows[:300], rows[300:350], rows[350:])
    monkeypatch.setattr(table_fit, "_STATS_BLOCK", 16)              # statistics merged block by block
    monkeypatch.setattr(table_fit, "QUANTILE_SAMPLE", 50)           # the reservoir replaces values
    whole = load(data_dir, MIXED_SPEC, cache_dir=tmp_path / "whole")
    monkeypatch.setattr(table_io, "CSV_BLOCK_BYTES", 128)           # a few rows per chunk
    monkeypatch.setattr(table_fit, "_MERGE_AT", 4)                  # merge category counts often
    chunks: list[int] = []
    iter_chunks = table_io.iter_chunks

    def counting(*args: object) -> object:
        for chunk in iter_chunks(*args):  # type: ignore[arg-type]
            chunks.append(chunk.num_rows)
            yield chunk

    monkeypatch.setattr(table_fit, "iter_chunks", counting)
    chunked = load(data_dir, MIXED_SPEC, cache_dir=tmp_path / "chunked")
    assert len(chunks) > 50 and sum(chunks) == 300                   # the fitting pass saw many chunks
    assert_same(whole, chunked)


# --- the named batch and encode_file ----------------------------------------------------------------


@pytest.mark.parametrize("index", [0, np.int64(2), [3], slice(4, 5)])
def test_a_batch_of_one_keeps_its_batch_axis(tmp_path: Path, rng: np.random.Generator, index: object) -> None:
    data = load(make_dir(tmp_path / "d", MIXED_HEADER, mixed_rows(rng, 6)), MIXED_SPEC)
    split = data.splits["train"]
    batch = split.batch(index)
    assert set(batch) == {"sparse", "dense", "multi:tags"}
    assert {name: array.shape for name, array in batch.items()} == {
        "sparse": (1, 2), "dense": (1, 1), "multi:tags": (1, 2)
    }
    row = 4 if isinstance(index, slice) else int(np.asarray(index).reshape(-1)[0])
    np.testing.assert_array_equal(batch["sparse"][0], split.sparse[row])
    assert type(batch["sparse"]) is np.ndarray and len(split) == 6


def test_encode_file_uses_the_fitted_vocabulary_with_or_without_labels(tmp_path: Path) -> None:
    data = load(make_dir(tmp_path / "d", ["label", "u", "x"], [[1, "a", 1], [0, "b", 3], [1, "a", 5]]),
                {"u": {}, "x": {"kind": "numeric", "transform": "standardize"}})
    new = write_csv(tmp_path / "new.csv", ["x", "u", "extra"], [[3, "b", "?"], [7, "never", "?"]])
    fitted = FittedTable.from_dict(json.loads(json.dumps(data.fitted.to_dict())))   # as saved with a model
    encoded = encode_file(new, fitted)
    assert encoded.label is None and len(encoded) == 2
    np.testing.assert_array_equal(encoded.sparse[:, 0], [2, 0])                    # b, unseen -> OOV
    np.testing.assert_allclose(encoded.dense[:, 0], (np.array([3, 7]) - 3) / np.std([1, 3, 5]), rtol=1e-6)
    mapped = encode_file(new, fitted, out_dir=tmp_path / "out")
    assert isinstance(mapped.sparse, np.memmap)
    np.testing.assert_array_equal(mapped.sparse, encoded.sparse)
    np.testing.assert_array_equal(mapped.dense, encoded.dense)
    labelled = encode_file(tmp_path / "d" / "valid.csv", fitted)
    np.testing.assert_array_equal(labelled.label, [1, 0, 1])
    np.testing.assert_array_equal(labelled.sparse, data.splits["valid"].sparse)
    bad = write_csv(tmp_path / "bad.csv", ["u", "x"], [["a", 1], ["b", "many"]])
    with pytest.raises(DataFormatError, match=re.escape(f"{bad}: numeric column 'x' must hold numbers; "
                                                        "row 2 holds 'many'")):
        encode_file(bad, fitted, out_dir=tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["new.dense.npy", "new.sparse.npy"]
    lacking = write_csv(tmp_path / "lacking.csv", ["u"], [["a"]])
    with pytest.raises(DataFormatError, match=re.escape(
            f"{lacking} lacks column(s) ['x'] the model reads; its columns: ['u']")):
        encode_file(lacking, fitted)


# --- the cache ----------------------------------------------------------------------------------------


@pytest.fixture
def build_calls(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Each directory an encoding was built for; a cache hit adds none."""
    calls: list[Path] = []
    real = tables._build

    def spy(files: dict[str, Path], *args: object) -> object:
        calls.append(files["train"].parent)
        return real(files, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(tables, "_build", spy)
    return calls


def test_a_second_load_maps_the_cached_arrays(
        tmp_path: Path, rng: np.random.Generator, build_calls: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = make_dir(tmp_path / "d", MIXED_HEADER, mixed_rows(rng, 30))
    caplog.set_level(logging.INFO, logger="mlpkit.data.tables")
    first = load_table_dataset(data_dir, MIXED_SPEC)
    assert first.cache_dir.parent == data_dir / ".mlpkit-cache"              # beside the data by default
    second = load_table_dataset(data_dir, MIXED_SPEC)
    assert len(build_calls) == 1 and second.cache_dir == first.cache_dir
    assert f"using cached encoding {first.cache_dir}" in caplog.text
    assert_same(first, second)


def test_the_cache_falls_back_to_the_user_cache_when_the_data_dir_is_not_writable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = make_dir(tmp_path / "d", ["label", "u"], [[1, "a"]])
    (data_dir / ".mlpkit-cache").write_text("a file where the cache directory would go")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    data = load_table_dataset(data_dir)
    assert data.cache_dir.parent == tmp_path / "xdg" / "mlpkit" / "tables"


def test_changing_a_file_or_the_spec_invalidates_the_cache(tmp_path: Path, build_calls: list[Path]) -> None:
    data_dir = make_dir(tmp_path / "d", ["label", "u"], [[1, "a"], [0, "b"], [1, "a"]])
    load(data_dir)
    write_csv(data_dir / "valid.csv", ["label", "u"], [[1, "b"]])              # new content, new size
    assert load(data_dir).splits["valid"].sparse[:, 0].tolist() == [2]
    assert len(build_calls) == 2
    valid = data_dir / "valid.csv"                                             # same size, same mtime
    stat = valid.stat()
    valid.write_text(valid.read_text().replace(",b", ",a"))
    os.utime(valid, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert load(data_dir).splits["valid"].sparse[:, 0].tolist() == [1]
    assert len(build_calls) == 3
    load(data_dir, {"u": {"min_count": 2}})
    assert len(build_calls) == 4
    load(data_dir, {"u": {"min_count": 2}})
    assert len(build_calls) == 4


@pytest.mark.parametrize("damage", ["truncate npy", "delete npy", "bad json", "wrong shape"])
def test_a_corrupted_cache_is_rebuilt_with_a_warning(tmp_path: Path, rng: np.random.Generator, damage: str,
                                                     build_calls: list[Path],
                                                     caplog: pytest.LogCaptureFixture) -> None:
    data_dir = make_dir(tmp_path / "d", MIXED_HEADER, mixed_rows(rng, 30))
    first = load(data_dir, MIXED_SPEC)
    entry = first.cache_dir
    expected = {k: v.copy() for k, v in arrays_of(first.splits["valid"]).items()}
    del first
    bad = entry / "valid.sparse.npy"
    if damage == "truncate npy":
        bad.write_bytes(bad.read_bytes()[:-8])
        reason = "cannot be read as .npy"
    elif damage == "delete npy":
        bad.unlink()
        reason = "cannot be read as .npy"
    elif damage == "bad json":
        bad = entry / "meta.json"
        bad.write_text('{"format": 1, "arr')
        reason = "is not a valid cache description"
    else:
        np.save(bad, np.zeros((3, 2), np.int64))
        reason = "holds int64 (3, 2), expected int32 (30, 2)"
    with caplog.at_level(logging.WARNING, logger="mlpkit.data.tables"):
        again = load(data_dir, MIXED_SPEC)
    assert len(build_calls) == 2
    assert f"cache file {bad} is unusable: {reason}" in caplog.text
    for key, value in arrays_of(again.splits["valid"]).items():
        np.testing.assert_array_equal(value, expected[key])


def test_a_failed_encoding_leaves_no_cache_behind(tmp_path: Path) -> None:
    data_dir = make_dir(tmp_path / "d", ["label", "x"], [[1, 1.5], [0, 2]], [[1, 3], [0, "abc"]])
    with pytest.raises(DataFormatError, match="row 2 holds 'abc'"):
        load(data_dir, {"x": {"kind": "numeric"}})
    assert list((tmp_path / "cache").iterdir()) == []


# --- errors ----------------------------------------------------------------------------------------


def test_error_a_missing_label_column(tmp_path: Path) -> None:
    data_dir = make_dir(tmp_path / "d", ["clicked", "u"], [[1, "a"]])
    with pytest.raises(DataFormatError, match=re.escape(
            f"{data_dir / 'train.csv'}: no label column 'label'; its columns: ['clicked', 'u']")):
        load(data_dir)
    assert load(data_dir, label="clicked").fitted.label == "clicked"


def test_error_a_label_that_is_not_0_or_1_names_value_and_row(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    rows: list[list[object]] = [[i % 2, "a"] for i in range(60)]
    rows[47][0] = 2
    data_dir = make_dir(tmp_path / "d", ["label", "u"], [[1, "a"]], rows)
    monkeypatch.setattr(table_io, "CSV_BLOCK_BYTES", 64)            # the bad row is in a later chunk
    with pytest.raises(DataFormatError, match=re.escape(
            f"{data_dir / 'valid.csv'}: label column 'label' must hold 0 or 1; row 48 holds '2'")):
        load(data_dir)
    write_csv(data_dir / "valid.csv", ["label", "u"], [[1, "a"], ["", "b"]])
    with pytest.raises(DataFormatError, match="must hold 0 or 1; row 2 holds ''"):
        load(data_dir)


def test_error_text_in_a_numeric_column_names_value_and_row(tmp_path: Path) -> None:
    data_dir = make_dir(tmp_path / "d", ["label", "x"], [[1, "1.5"], [0, "2e3"], [1, "n/a"]])
    with pytest.raises(DataFormatError, match=re.escape(
            f"{data_dir / 'train.csv'}: numeric column 'x' must hold numbers; row 3 holds 'n/a'")):
        load(data_dir, {"x": {"kind": "numeric"}})
    write_csv(data_dir / "train.csv", ["label", "x"], [[1, "inf"]])
    with pytest.raises(DataFormatError, match="column 'x' must hold finite numbers; row 1 holds 'inf'"):
        load(data_dir, {"x": {"kind": "numeric"}})


def test_error_an_empty_file(tmp_path: Path) -> None:
    data_dir = make_dir(tmp_path / "d", ["label", "u"], [[1, "a"]])
    (data_dir / "test.csv").write_text("")
    test = data_dir / "test.csv"
    with pytest.raises(DataFormatError, match=re.escape(f"{test}: the file is empty (no header row)")):
        load(data_dir)
    test.write_text("label,u\n")
    with pytest.raises(DataFormatError, match=re.escape(f"{test}: no data rows")):
        load(data_dir)
    test.unlink()
    (data_dir / "test.parquet").write_bytes(b"")
    with pytest.raises(DataFormatError, match=re.escape(f"{data_dir / 'test.parquet'}: the file is empty")):
        load(data_dir)
    pq.write_table(pa.table({"label": pa.array([], pa.int64()), "u": pa.array([], pa.string())}),
                   data_dir / "test.parquet")
    with pytest.raises(DataFormatError, match=re.escape(f"{data_dir / 'test.parquet'}: no data rows")):
        load(data_dir)
    assert list((tmp_path / "cache").iterdir()) == []


def test_error_a_spec_naming_an_absent_column(tmp_path: Path) -> None:
    data_dir = make_dir(tmp_path / "d", ["label", "user", "item"], [[1, "a", "b"]])
    with pytest.raises(ConfigError, match=re.escape(
            f"the spec names column(s) ['usr'] that {data_dir / 'train.csv'} does not have; "
            "its columns: ['label', 'user', 'item']")):
        load(data_dir, {"usr": {}})
    with pytest.raises(ConfigError, match="the spec sets column 'label', which is the label"):
        load(data_dir, {"label": {}})


def test_error_splits_with_different_columns(tmp_path: Path) -> None:
    data_dir = make_dir(tmp_path / "d", ["label", "user", "item"], [[1, "a", "b"]])
    write_csv(data_dir / "valid.csv", ["label", "usr", "item"], [[1, "a", "b"]])
    with pytest.raises(DataFormatError, match=re.escape(
            f"{data_dir / 'valid.csv'} has different columns from {data_dir / 'train.csv'}: "
            "missing ['user'], extra ['usr']")):
        load(data_dir)


def test_error_a_missing_split_file(tmp_path: Path) -> None:
    data_dir = make_dir(tmp_path / "d", ["label", "u"], [[1, "a"]])
    (data_dir / "test.csv").unlink()
    with pytest.raises(DataNotFoundError, match=re.escape(
            f"no test file in {data_dir}: looked for test.csv, test.csv.gz, test.parquet; "
            "found ['train.csv', 'valid.csv']")):
        load(data_dir)
    write_csv(data_dir / "test.csv", ["label", "u"], [[1, "a"]])
    pq.write_table(pa.table({"label": [1], "u": ["a"]}), data_dir / "test.parquet")
    with pytest.raises(DataFormatError, match=re.escape(
            f"{data_dir} holds 2 test files (test.csv, test.parquet); keep one")):
        load(data_dir)


# --- the spec ------------------------------------------------------------------------------------


def test_spec_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "spec.toml"
    path.write_text('[I1]\nkind = "numeric"\ntransform = "log"\n\n[C1]\nmin_count = 10\n\n'
                    '[tags]\nkind = "multi"\nmax_len = 5\n')
    spec = load_table_spec(path)
    assert list(spec.columns) == ["I1", "C1", "tags"]
    assert spec.columns["tags"].delimiter == "|" and spec.columns["tags"].pooling == "mean"
    assert spec.columns["C1"].to_dict() == {"kind": "categorical", "min_count": 10}
    assert TableSpec.from_dict(spec.to_dict()) == spec
    data_dir = make_dir(tmp_path / "d", ["label", "u", "x"], [[1, "a", 1], [0, "b", 2]])
    path.write_text('[x]\nkind = "numeric"\n')
    data = load(data_dir, path)                                     # a spec file, as a path
    assert [(f.name, f.kind) for f in data.fields.fields] == [("x", "numeric")]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"u": {"kind": "categorical", "bukets": 3}},
         "[u] unknown key(s) ['bukets']; valid keys: ['bins', 'delimiter', 'hash_buckets', 'kind', "
         "'max_len', 'min_count', 'pooling', 'transform']"),
        ({"u": {"kind": "catgorical"}},
         "[u] kind must be one of ['categorical', 'multi', 'numeric'], got 'catgorical' "
         "(did you mean 'categorical'?)"),
        ({"u": {"delimiter": ";"}}, "[u] delimiter does not apply to kind 'categorical' (got ';')"),
        ({"x": {"kind": "numeric", "bins": 4}},
         "[x] bins needs transform = 'quantile', got transform 'none'"),
        ({"x": {"kind": "numeric", "transform": "quantile"}},
         "[x] transform 'quantile' needs bins, the number of bins (e.g. bins = 10)"),
        ({"x": {"kind": "numeric", "transform": "log2"}},
         "[x] transform must be one of ['log', 'none', 'quantile', 'standardize'], got 'log2' "
         "(did you mean 'log'?)"),
        ({"u": {"min_count": 0}}, "[u] min_count must be a positive int, got 0"),
        ({"u": {"hash_buckets": 10, "min_count": 3}},
         "[u] min_count does not apply to a hashed column (got 3)"),
        ({"t": {"kind": "multi", "max_len": 0}}, "[t] max_len must be a positive int, got 0"),
        ({"u": {"hash_buckets": 2**31 - 1}}, "[u] hash_buckets must be below 2147483647, got 2147483647"),
        ({"u": "categorical"}, "[u] must be a table of keys, got 'categorical'"),
    ],
)
def test_invalid_specs_are_named(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        TableSpec.from_dict(raw)


def test_importing_the_data_package_reads_no_table_library() -> None:
    code = "import sys, mlpkit.data; print(sorted({'pyarrow', 'torch'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_numeric_cells_empty_quoted_or_not_are_missing_and_na_text_is_refused(tmp_path: Path) -> None:
    # The CSV reader parses numeric columns itself: only an empty cell, quoted or not, is missing.
    data_dir = make_dir(tmp_path / "d", ["label", "x"], [[1, "1.0"], [0, '""'], [1, ""], [0, "3.0"]])
    dense = np.asarray(load(data_dir, {"x": {"kind": "numeric"}}).splits["train"].dense)[:, 0]
    np.testing.assert_array_equal(dense, [1.0, 0.0, 0.0, 3.0])         # untransformed; missing as 0
    write_csv(data_dir / "train.csv", ["label", "x"], [[1, "1.0"], [0, "NA"]])
    with pytest.raises(DataFormatError, match=re.escape(
            f"{data_dir / 'train.csv'}: numeric column 'x' must hold numbers; row 2 holds 'NA'")):
        load(data_dir, {"x": {"kind": "numeric"}})
