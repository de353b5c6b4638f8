"""IDX reading and writing: round trips, a hand-written reference file, and every format error."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pytest

from mlpkit.data.idx import read_idx, read_idx_bytes, write_idx
from mlpkit.errors import DataFormatError, DataNotFoundError, OutputError

# dtype -> IDX type code, from the format description (yann.lecun.com/exdb/mnist)
CODES = {"uint8": 0x08, "int8": 0x09, "int16": 0x0B, "int32": 0x0C, "float32": 0x0D, "float64": 0x0E}


def random_array(rng: np.random.Generator, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
    return rng.standard_normal(shape).astype(dtype)


def idx_bytes(code: int, dims: tuple[int, ...], data: bytes) -> bytes:
    """An IDX file written out by hand from the format description."""
    header = bytes([0, 0, code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)
    return header + data


@pytest.mark.parametrize("dtype", list(CODES))
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip_every_dtype(tmp_path: Path, rng: np.random.Generator, dtype: str, suffix: str) -> None:
    array = random_array(rng, dtype, (3, 4, 5))
    path = tmp_path / f"array-idx3{suffix}"
    write_idx(path, array)
    raw = path.read_bytes()
    if suffix == ".gz":
        assert raw[:2] == b"\x1f\x8b"
        raw = gzip.decompress(raw)
    # magic 0x0000TTNN, then three big-endian uint32 dims
    assert raw[:16] == bytes([0, 0, CODES[dtype], 3]) + b"\x00\x00\x00\x03\x00\x00\x00\x04\x00\x00\x00\x05"
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    assert back.shape == (3, 4, 5)
    assert back.flags.writeable
    np.testing.assert_array_equal(back, array)
    assert names(tmp_path) == [path.name]


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_reads_hand_written_big_endian_file() -> None:
    # int16 [258, -2] is 0x0102, 0xfffe big-endian
    data = idx_bytes(0x0B, (2,), b"\x01\x02\xff\xfe")
    out = read_idx_bytes(data, "memory")
    assert out.dtype == np.int16 and out.dtype.isnative
    assert out.tolist() == [258, -2]


def test_reads_float64_reference_value() -> None:
    data = idx_bytes(0x0E, (1, 1), np.array([[1.5]], dtype=">f8").tobytes())
    assert read_idx_bytes(data, "memory").tolist() == [[1.5]]


def test_big_endian_input_array_writes_the_same_file(tmp_path: Path) -> None:
    native = np.arange(6, dtype=np.int32).reshape(2, 3)
    write_idx(tmp_path / "native", native)
    write_idx(tmp_path / "swapped", native.astype(">i4"))
    assert (tmp_path / "native").read_bytes() == (tmp_path / "swapped").read_bytes()


def test_gzip_is_detected_by_content_not_suffix(tmp_path: Path) -> None:
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    write_idx(tmp_path / "a.gz", array)
    (tmp_path / "a.gz").rename(tmp_path / "gzipped-without-suffix")
    np.testing.assert_array_equal(read_idx(tmp_path / "gzipped-without-suffix"), array)
    (tmp_path / "plain-with-suffix.gz").write_bytes(idx_bytes(0x08, (3, 4), array.tobytes()))
    np.testing.assert_array_equal(read_idx(tmp_path / "plain-with-suffix.gz"), array)


def test_gzip_output_is_reproducible(tmp_path: Path) -> None:
    array = np.arange(100, dtype=np.uint8)
    write_idx(tmp_path / "a.gz", array)
    write_idx(tmp_path / "b.gz", array)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()


@pytest.mark.parametrize("shape", [(7,), (2, 1, 3, 2), (0, 28, 28)])
def test_round_trip_shapes(tmp_path: Path, rng: np.random.Generator, shape: tuple[int, ...]) -> None:
    array = random_array(rng, "uint8", shape)
    write_idx(tmp_path / "a", array)
    back = read_idx(tmp_path / "a")
    assert back.shape == shape
    np.testing.assert_array_equal(back, array)


def test_bad_magic_names_path_and_value(tmp_path: Path) -> None:
    path = tmp_path / "bad"
    path.write_bytes(b"\x01\x00\x08\x01\x00\x00\x00\x01\x07")
    with pytest.raises(DataFormatError, match=re.escape(f"{path}: not an IDX file") + ".*got 0x01000801"):
        read_idx(path)


def test_png_is_not_idx() -> None:
    with pytest.raises(DataFormatError, match=r"picture.png: not an IDX file.*got 0x89504e47"):
        read_idx_bytes(b"\x89PNG\r\n\x1a\n", "picture.png")


def test_unknown_dtype_code(tmp_path: Path) -> None:
    path = tmp_path / "bad"
    path.write_bytes(idx_bytes(0x0A, (1,), b"\x00"))
    with pytest.raises(
        DataFormatError, match=re.escape(f"{path}: unknown IDX type code 0x0a in magic 0x00000a01")
    ):
        read_idx(path)


def test_zero_dimensions(tmp_path: Path) -> None:
    path = tmp_path / "bad"
    path.write_bytes(b"\x00\x00\x08\x00\x05")
    message = f"{path}: IDX magic 0x00000800 declares 0 dimensions; need at least 1"
    with pytest.raises(DataFormatError, match=re.escape(message)):
        read_idx(path)


def test_too_short_for_magic() -> None:
    with pytest.raises(DataFormatError, match=r"empty\.idx: too short for an IDX file: 2 bytes"):
        read_idx_bytes(b"\x00\x00", "empty.idx")


def test_truncated_header(tmp_path: Path) -> None:
    path = tmp_path / "bad"
    path.write_bytes(b"\x00\x00\x08\x03\x00\x00\x00\x02")
    message = f"{path}: truncated IDX header: 3 dims need 16 header bytes, found 8"
    with pytest.raises(DataFormatError, match=re.escape(message)):
        read_idx(path)


def test_truncated_data(tmp_path: Path) -> None:
    path = tmp_path / "images"
    path.write_bytes(idx_bytes(0x0B, (3, 4), bytes(23)))  # int16 (3, 4) needs 24 bytes
    message = f"{path}: truncated IDX file: header promises 24 bytes of data, found 23"
    with pytest.raises(DataFormatError, match=re.escape(message)):
        read_idx(path)


def test_trailing_bytes(tmp_path: Path) -> None:
    path = tmp_path / "labels"
    path.write_bytes(idx_bytes(0x08, (5,), bytes(7)))
    message = f"{path}: trailing bytes after the IDX data: header promises 5 bytes of data, found 7"
    with pytest.raises(DataFormatError, match=re.escape(message)):
        read_idx(path)


def test_truncated_data_inside_valid_gzip(tmp_path: Path) -> None:
    path = tmp_path / "images.gz"
    path.write_bytes(gzip.compress(idx_bytes(0x08, (10,), bytes(9))))
    with pytest.raises(DataFormatError, match=re.escape(f"{path}: truncated IDX file")):
        read_idx(path)


def gz_of_random_idx(tmp_path: Path, rng: np.random.Generator) -> Path:
    path = tmp_path / "images-idx3-ubyte.gz"
    write_idx(path, random_array(rng, "uint8", (10, 28, 28)))  # random bytes: the deflate stream is long
    return path


def test_corrupted_gzip(tmp_path: Path, rng: np.random.Generator) -> None:
    path = gz_of_random_idx(tmp_path, rng)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(DataFormatError, match=re.escape(f"{path}: the .gz file is corrupted or truncated")):
        read_idx(path)


def test_truncated_gzip(tmp_path: Path, rng: np.random.Generator) -> None:
    path = gz_of_random_idx(tmp_path, rng)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataFormatError, match=re.escape(f"{path}: the .gz file is corrupted or truncated")):
        read_idx(path)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent-idx1-ubyte.gz"
    with pytest.raises(DataNotFoundError, match=re.escape(f"{path}: no such IDX file")):
        read_idx(path)


@pytest.mark.parametrize("dtype", ["float16", "bool", "uint16", "int64"])
def test_write_rejects_dtypes_idx_cannot_hold(tmp_path: Path, dtype: str) -> None:
    with pytest.raises(ValueError, match=f"array dtype must be one of the IDX types .*, got {dtype}"):
        write_idx(tmp_path / "a", np.zeros(3, dtype=dtype))
    assert names(tmp_path) == []


def test_write_rejects_scalar(tmp_path: Path) -> None:
    message = "array must have 1 to 255 dimensions for IDX, got shape ()"
    with pytest.raises(ValueError, match=re.escape(message)):
        write_idx(tmp_path / "a", np.uint8(3))


def test_write_into_missing_directory_raises_output_error(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "a.gz"
    with pytest.raises(OutputError, match=re.escape(f"cannot write {path}")):
        write_idx(path, np.zeros(3, dtype=np.uint8))
