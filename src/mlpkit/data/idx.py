r"""Read and write IDX files, the format of MNIST and Fashion-MNIST, gzipped or not.

Format (LeCun, Cortes, Burges, http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT"):
a 4-byte magic ``0x00 0x00 TT NN`` where ``TT`` is the type code and ``NN`` the number of
dimensions, then ``NN`` big-endian uint32 sizes, then the data in C order, big-endian:

====  =========  ====  ========
code  type       code  type
====  =========  ====  ========
0x08  uint8      0x0C  int32
0x09  int8       0x0D  float32
0x0B  int16      0x0E  float64
====  =========  ====  ========

A file is read as gzip when it starts with the gzip magic bytes ``1f 8b``, whatever its name.
Every check raises :class:`mlpkit.errors.DataFormatError` naming the file and the offending value.

Examples
--------
>>> from mlpkit.data.idx import read_idx_bytes
>>> read_idx_bytes(b"\x00\x00\x08\x02\x00\x00\x00\x02\x00\x00\x00\x03" + bytes(range(6)), "example")
array([[0, 1, 2],
       [3, 4, 5]], dtype=uint8)
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import numpy.typing as npt

from mlpkit._io import atomic_write_bytes
from mlpkit.errors import DataFormatError, DataNotFoundError

__all__ = ["decompress_if_gzipped", "read_idx", "read_idx_bytes", "write_idx"]

GZIP_MAGIC = b"\x1f\x8b"  # RFC 1952, section 2.3.1: ID1 = 31, ID2 = 139

# IDX type code -> big-endian dtype, from the format description quoted in the module docstring.
IDX_DTYPES: dict[int, np.dtype[np.generic]] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODE_OF_DTYPE: dict[np.dtype[np.generic], int] = {
    dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()
}
_VALID_CODES = ", ".join(f"0x{code:02x} ({dt.newbyteorder('=').name})" for code, dt in IDX_DTYPES.items())


def decompress_if_gzipped(data: bytes, source: str) -> bytes:
    """Return ``data`` gunzipped if it starts with the gzip magic ``1f 8b``, else ``data`` unchanged.

    Parameters
    ----------
    data : bytes
        The file content.
    source : str
        Where ``data`` came from (a path or URL), used in error messages.

    Returns
    -------
    bytes
        The decompressed content.

    Raises
    ------
    DataFormatError
        If the gzip stream is corrupted (bad CRC, invalid deflate data) or truncated.
    """
    if not data.startswith(GZIP_MAGIC):
        return data
    try:
        return gzip.decompress(data)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DataFormatError(
            f"{source}: the .gz file is corrupted or truncated ({exc}); delete it and fetch it again"
        ) from exc


def read_idx_bytes(data: bytes, source: str) -> np.ndarray:
    """Parse an uncompressed IDX file held in memory.

    Parameters
    ----------
    data : bytes
        The whole file: header then data.
    source : str
        Where ``data`` came from (a path or URL), used in error messages.

    Returns
    -------
    np.ndarray of shape (d1, ..., dn)
        A new, writable, native-endian array with the dtype the type code names and the
        dimensions the header gives.

    Raises
    ------
    DataFormatError
        If the magic's first two bytes are not zero, the type code is unknown, the header declares
        0 dimensions or is cut short, or the data is shorter or longer than the header promises.
    """
    if len(data) < 4:
        raise DataFormatError(
            f"{source}: too short for an IDX file: {len(data)} bytes, the magic alone needs 4"
        )
    magic = int.from_bytes(data[:4], "big")
    if data[0] != 0 or data[1] != 0:
        raise DataFormatError(
            f"{source}: not an IDX file: expected magic 0x0000TTNN (two zero bytes, type code, "
            f"number of dims), got 0x{magic:08x}"
        )
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        raise DataFormatError(
            f"{source}: unknown IDX type code 0x{code:02x} in magic 0x{magic:08x}; "
            f"valid codes: {_VALID_CODES}"
        )
    if ndim == 0:
        raise DataFormatError(f"{source}: IDX magic 0x{magic:08x} declares 0 dimensions; need at least 1")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DataFormatError(
            f"{source}: truncated IDX header: {ndim} dims need {header_size} header bytes, found {len(data)}"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header_size])
    dtype = IDX_DTYPES[code]
    count = math.prod(dims)
    expected = count * dtype.itemsize
    found = len(data) - header_size
    if found != expected:
        problem = "truncated IDX file" if found < expected else "trailing bytes after the IDX data"
        raise DataFormatError(
            f"{source}: {problem}: header promises {expected} bytes of data, found {found} "
            f"(shape {dims}, {dtype.newbyteorder('=').name})"
        )
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=header_size)
    return flat.astype(dtype.newbyteorder("=")).reshape(dims)  # astype copies: writable, native-endian


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file, gzipped or not (detected from the content, not the name).

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    np.ndarray of shape (d1, ..., dn)
        A new, writable, native-endian array; MNIST-style image files give (N, 28, 28) uint8
        and label files (N,) uint8.

    Raises
    ------
    DataNotFoundError
        If ``path`` does not exist.
    DataFormatError
        If the gzip stream is corrupted or truncated, or the IDX content is malformed
        (see :func:`read_idx_bytes`).
    """
    file = Path(path)
    try:
        raw = file.read_bytes()
    except FileNotFoundError as exc:
        raise DataNotFoundError(f"{file}: no such IDX file") from exc
    return read_idx_bytes(decompress_if_gzipped(raw, str(file)), str(file))


def write_idx(path: str | os.PathLike[str], array: npt.ArrayLike) -> Path:
    """Write ``array`` as an IDX file, gzipped if ``path`` ends in ``.gz``, atomically.

    The gzip header's timestamp is 0, so equal arrays give byte-identical files.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write. Its parent directory must exist.
    array : array_like of shape (d1, ..., dn)
        1 <= n <= 255 dimensions, each < 2**32, with dtype uint8, int8, int16, int32, float32
        or float64 (any byte order).

    Returns
    -------
    Path
        ``path`` as a :class:`~pathlib.Path`.

    Raises
    ------
    ValueError
        If the dtype or the number or size of dimensions cannot be stored in IDX.
    OutputError
        If ``path`` cannot be written.
    """
    values = np.asarray(array)
    native = values.dtype.newbyteorder("=")
    if native not in _CODE_OF_DTYPE:
        raise ValueError(f"array dtype must be one of the IDX types {_VALID_CODES}, got {values.dtype}")
    if not 1 <= values.ndim <= 255:
        raise ValueError(f"array must have 1 to 255 dimensions for IDX, got shape {values.shape}")
    if any(size >= 2**32 for size in values.shape):
        raise ValueError(f"array dimensions must be < 2**32 for IDX, got shape {values.shape}")
    code = _CODE_OF_DTYPE[native]
    header = bytes([0, 0, code, values.ndim]) + struct.pack(f">{values.ndim}I", *values.shape)
    payload = header + np.ascontiguousarray(values, dtype=IDX_DTYPES[code]).tobytes()
    target = Path(path)
    if target.suffix == ".gz":
        payload = gzip.compress(payload, compresslevel=6, mtime=0)
    return atomic_write_bytes(target, payload)
