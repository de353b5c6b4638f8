"""Read images to classify, from whatever a user has at hand, as rows of 0..255 grey levels.

:func:`read_images` takes one path and returns an :class:`ImageInput`: the pixels as a (N, H*W)
float64 matrix on the training data's 0..255 scale, one name per row, the labels a CSV carried,
and notes saying every change made on the way (conversion, resizing, scaling, a dropped column).

The format is chosen by content, not by name:

==============================  ====================================================================
content                         read as
==============================  ====================================================================
PNG, JPEG, BMP, GIF, WebP       one image, through Pillow (the ``images`` extra): grayscale, resized
a folder                        every image file in it, sorted by name; other entries are noted
``\\x93NUMPY`` (a .npy file)    an array of one or N images (shapes below)
IDX (the data set's format)     the same shapes; gzipped or not, like any of these formats
text                            CSV: one image per row, an optional header, an optional label column
==============================  ====================================================================

No torch here; Pillow is imported only when an image file is read.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mlpkit._checks import check_choice
from mlpkit._optional import require
from mlpkit.data.idx import IDX_DTYPES, decompress_if_gzipped, read_idx_bytes
from mlpkit.errors import DataFormatError, DataNotFoundError

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = ["IMAGE_FORMATS", "INPUT_SCALES", "ImageInput", "read_images"]

logger = logging.getLogger(__name__)

MAX_PIXEL = 255
INPUT_SCALES = ("auto", "255", "1")
"""The values of ``input_scale``: decide from the data, grey levels 0..255, or values in [0, 1]."""

IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WebP")
"""The image file formats read through Pillow, recognised by their signatures."""

_IMAGE_SUFFIXES = {
    ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".gif": "GIF", ".webp": "WebP",
}
# BITMAPINFOHEADER sizes a BMP's DIB header can have (Microsoft, "Bitmap Header Types"): 12 (CORE),
# 40 (INFO), 52/56 (V2/V3 INFO), 64 (OS/2 2.x), 108 (V4), 124 (V5).
_BMP_DIB_SIZES = {12, 40, 52, 56, 64, 108, 124}
_SIXTEEN_BIT_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}
_HEAD = 32                       # bytes enough for every signature below
# An unnamed label column holds class indices below 100, where pixel columns reach 255: a bound
# that tells them apart for any classifier with up to 100 classes.
_UNNAMED_LABELS_BELOW = 100
_LISTED = 5                      # names listed in a note about many files

# Position of a value in the input, for messages: (row of the (N, H*W) matrix, column) -> text.
_Locate = Callable[[int, int], str]


@dataclass(frozen=True)
class ImageInput:
    """Images read by :func:`read_images`, ready for ``pixels_to_features``.

    Parameters
    ----------
    pixels : ndarray of shape (N, H*W), float64
        One flattened image per row (C order: row by row), grey levels on the 0..255 scale
        (0 black, 255 white), as the training images were before scaling.
    names : tuple of str
        N names, one per row: the file name for an image file or a folder's files
        (``"shirt.png"``); ``"{file name}:{i}"`` with the 0-based image index i for a .npy,
        IDX or CSV file (``"batch.csv:0"``, ``"batch.csv:1"``; a CSV header is not counted).
    labels : ndarray of shape (N,), int64, or None
        The label column of a CSV, when it had one; else None.
    notes : tuple of str
        What was done to the input on the way, one human-readable sentence each
        (``"converted RGB to grayscale"``, ``"resized 640x480 -> 28x28"``): empty when the file
        was read exactly as stored. Sizes in notes are width x height, as image tools print them.
    """

    pixels: np.ndarray
    names: tuple[str, ...]
    labels: np.ndarray | None = None
    notes: tuple[str, ...] = ()


@dataclass
class _Raw:
    """One file or folder read, before the scale is checked."""

    values: np.ndarray                          # (N, H*W), any real dtype
    names: list[str]
    locate: _Locate
    is_float: bool                              # stored as floating point (decides "auto")
    is_image: bool = False                      # image files: 0..255 whatever input_scale says
    labels: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)


def read_images(
    path: str | os.PathLike[str],
    *,
    image_shape: tuple[int, int] = (28, 28),
    input_scale: str = "auto",
) -> ImageInput:
    """Read grey-level images to classify from an image file, a folder, a .npy, IDX or CSV file.

    Arrays (.npy and IDX) may hold ONE image, of shape (H, W) or (H*W,), or N images, of shape
    (N, H*W), (N, H, W), (N, H, W, 1) or (N, 1, H, W). An (H, W) array is one image even when
    H = W: a 28x28 array is not 28 rows of 28 features.

    Image files (PNG, JPEG, BMP, GIF's first frame, WebP; recognised by content, whatever the
    suffix) are read with Pillow, in this order: turned upright per their EXIF orientation;
    transparent pixels composited onto black, the data set's background; converted to 8-bit
    grayscale with Pillow's ``convert("L")`` (ITU-R 601-2 luma, ``L = 0.299 R + 0.587 G +
    0.114 B``; 16-bit grey is divided by 257); resized to ``image_shape`` with Pillow's
    ``resize((W, H), Resampling.LANCZOS)`` (Lanczos-3, its support widened by the scale factor
    when shrinking, so a photo is averaged over each target pixel's area, not sampled). The
    aspect ratio is not kept. Images are never inverted: Fashion-MNIST shows light objects on
    black, so an image whose border is mostly bright gets a note saying so. A folder gives all
    its image files, sorted by name (code-point order: ``b10.png`` before ``b2.png``); other
    entries are skipped with a note.

    A CSV holds one image per row of H*W comma-separated numbers, after an optional header row
    (detected: a first row that is not all numbers, or that numbers the columns 0, 1, ... or 1, 2, ...
    as pandas does). With H*W + 1 columns, a label column is
    dropped and returned as ``labels``: the column whose header contains ``"label"`` (any
    non-negative integers), or else the first or the last column when it holds small class indices,
    integers 0..99, and the other does not; when both do, the one with fewer zeros (a corner pixel
    is black in nearly every image). The note names the column dropped.

    Parameters
    ----------
    path : str or os.PathLike
        A file or a folder of image files.
    image_shape : tuple of int
        (H, W), the model's image size.
    input_scale : {"auto", "255", "1"}
        ``"255"``: values are grey levels and must lie in [0, 255]. ``"1"``: values must lie in
        [0, 1] and are multiplied by 255. ``"auto"``: refuse floating-point data that lies wholly
        in [0, 1] and is not all zero (it looks scaled already, and read as grey levels every
        image would be near black); otherwise as ``"255"``. Image files are always 0..255.
        In a CSV, "floating point" means a value written with a decimal point or an exponent.

    Returns
    -------
    ImageInput
        ``pixels`` of shape (N, H*W) float64 on the 0..255 scale, ``names``, ``labels`` (N,)
        or None, and ``notes``.

    Raises
    ------
    DataNotFoundError
        If ``path`` does not exist.
    DataFormatError
        Naming the file: an unrecognised or unreadable file (a corrupt image, a bad .npy), an
        array of another shape (the shape found and the shapes accepted), a CSV of another width
        (both widths) or with a bad line (its number), no images at all (an empty folder names the
        folder), NaN or inf, a value outside the range of ``input_scale``, or, with ``"auto"``,
        floating-point values that all lie in [0, 1]. Positions are 0-based array indices for
        arrays, and 1-based line and column numbers (the header is line 1) for a CSV.
    MissingDependencyError
        If an image file is to be read and Pillow is not installed.
    ValueError
        If ``image_shape`` is not two positive ints or ``input_scale`` not one of the three.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from mlpkit.data.images import read_images
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     np.save(Path(tmp) / "one.npy", np.full((28, 28), 7, dtype=np.uint8))
    ...     images = read_images(Path(tmp) / "one.npy")
    >>> images.pixels.shape, images.names, float(images.pixels.max())
    ((1, 784), ('one.npy:0',), 7.0)
    """
    shape = _check_image_shape(image_shape)
    check_choice("input_scale", input_scale, INPUT_SCALES)
    source = Path(path)
    if source.is_dir():
        raw = _read_folder(source, shape)
    elif source.is_file():
        raw = _read_file(source, shape)
    else:
        raise DataNotFoundError(f"{source}: no such file or folder of images to classify")
    pixels = _apply_scale(source, raw, input_scale)
    raw.notes.extend(_border_notes(pixels, raw.names, shape))
    logger.debug("read %d image(s) from %s; notes: %s", len(pixels), source, raw.notes)
    return ImageInput(pixels=pixels, names=tuple(raw.names), labels=raw.labels, notes=tuple(raw.notes))


def _check_image_shape(image_shape: object) -> tuple[int, int]:
    if (
        not isinstance(image_shape, Sequence)
        or len(image_shape) != 2
        or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in image_shape)
    ):
        raise ValueError(f"image_shape must be a pair of positive ints (H, W), got {image_shape!r}")
    return int(image_shape[0]), int(image_shape[1])


def _sniff(head: bytes) -> str | None:
    """The format a file's first bytes announce, or None (then it may be CSV text)."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):                    # PNG spec, section 5.2
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):                         # JPEG SOI marker, then a marker
        return "JPEG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":             # RIFF container, WebP form type
        return "WebP"
    # "BM" alone could begin a line of text; a BMP also has a known DIB header size at byte 14.
    if head[:2] == b"BM" and len(head) >= 18 and int.from_bytes(head[14:18], "little") in _BMP_DIB_SIZES:
        return "BMP"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if len(head) >= 4 and head[0] == 0 and head[1] == 0 and head[2] in IDX_DTYPES and head[3] >= 1:
        return "IDX"
    return None


def _read_file(path: Path, shape: tuple[int, int]) -> _Raw:
    data = decompress_if_gzipped(path.read_bytes(), str(path))
    if not data:
        raise DataFormatError(f"{path}: the file is empty; no images to classify")
    kind = _sniff(data[:_HEAD])
    suffix = path.suffix.lower()
    if kind in IMAGE_FORMATS:
        pixels, notes = _read_image(path, data, kind, shape)
        locate = _image_locate(path.name, shape)
        return _Raw(pixels[np.newaxis], [path.name], locate, False, is_image=True, notes=notes)
    if kind == "npy":
        try:
            array = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise DataFormatError(f"{path}: not a readable .npy array ({exc})") from exc
        return _from_array(path, array, shape)
    if kind == "IDX":
        return _from_array(path, read_idx_bytes(data, str(path)), shape)
    if suffix in _IMAGE_SUFFIXES:
        raise DataFormatError(
            f"{path}: not a readable {_IMAGE_SUFFIXES[suffix]} image: the content does not start with "
            f"the {_IMAGE_SUFFIXES[suffix]} signature (first bytes {data[:8].hex(' ')})"
        )
    if suffix == ".npy":
        # Checked here: NumPy's own error for a file without the magic talks about pickles and
        # allow_pickle, which we never use.
        raise DataFormatError(f"{path}: not a .npy file (it does not start with the NPY magic \\x93NUMPY)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text:
        raise DataFormatError(
            f"{path}: unrecognised file: not {', '.join(IMAGE_FORMATS)}, .npy, IDX or CSV text "
            f"(first bytes {data[:8].hex(' ')})"
        )
    return _from_csv(path, text, shape)


def _read_folder(folder: Path, shape: tuple[int, int]) -> _Raw:
    images: list[tuple[Path, str]] = []
    skipped: list[str] = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        kind = None
        if entry.is_file():
            with entry.open("rb") as f:
                kind = _sniff(f.read(_HEAD))
        if kind in IMAGE_FORMATS:
            images.append((entry, str(kind)))
        else:
            skipped.append(entry.name + ("/" if entry.is_dir() else ""))
    if not images:
        found = f"; it holds only {_listing(skipped)}" if skipped else "; it is empty"
        raise DataFormatError(f"{folder}: no {', '.join(IMAGE_FORMATS)} image files in this folder{found}")
    rows = np.empty((len(images), shape[0] * shape[1]), dtype=np.uint8)   # (N, H*W)
    per_file: dict[str, list[str]] = {}
    for i, (file, kind) in enumerate(images):
        rows[i], notes = _read_image(file, file.read_bytes(), kind, shape)
        for note in notes:
            per_file.setdefault(note, []).append(file.name)
    names = [file.name for file, _ in images]
    notes = [f"{note} ({_count(files, len(images))})" for note, files in per_file.items()]
    if skipped:
        notes.append(f"skipped {len(skipped)} entr{'y' if len(skipped) == 1 else 'ies'} that are not images: "
                     f"{_listing(skipped)}")

    def locate(row: int, col: int) -> str:
        return _image_locate(names[row], shape)(0, col)

    return _Raw(rows, names, locate, False, is_image=True, notes=notes)


def _count(files: list[str], total: int) -> str:
    if len(files) == total:
        return "all files" if total > 1 else files[0]
    return f"{len(files)} of {total} files: {_listing(files)}"


def _listing(names: list[str]) -> str:
    more = f", ... ({len(names) - _LISTED} more)" if len(names) > _LISTED else ""
    return ", ".join(names[:_LISTED]) + more


def _image_locate(name: str, shape: tuple[int, int]) -> _Locate:
    return lambda _row, col: f"{name}, pixel row {col // shape[1]}, column {col % shape[1]}"


def _read_image(path: Path, data: bytes, kind: str, shape: tuple[int, int]) -> tuple[np.ndarray, list[str]]:
    """One image file's bytes -> its (H*W,) uint8 grey levels and the notes on what changed."""
    require("PIL", feature="reading PNG/JPEG images")
    from PIL import Image

    notes: list[str] = []
    try:
        with Image.open(io.BytesIO(data)) as opened:
            frames = getattr(opened, "n_frames", 1)
            if frames > 1:
                notes.append(f"read the first of {frames} frames")
            opened.seek(0)
            opened.load()
            image = _grayscale(_upright(opened, notes), notes)
            height, width = shape
            if image.size != (width, height):
                notes.append(f"resized {image.width}x{image.height} -> {width}x{height}")
                image = image.resize((width, height), Image.Resampling.LANCZOS)
            pixels = np.asarray(image, dtype=np.uint8).reshape(-1)       # (H, W) -> (H*W,)
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise DataFormatError(f"{path}: not a readable {kind} image ({type(exc).__name__}: {exc})") from exc
    return pixels, notes


def _upright(image: PILImage.Image, notes: list[str]) -> PILImage.Image:
    from PIL import ImageOps

    orientation = image.getexif().get(0x0112, 1)                  # EXIF tag 274, Orientation
    if orientation in (None, 1):
        return image
    notes.append(f"turned upright per the EXIF orientation {orientation}")
    return ImageOps.exif_transpose(image)


def _grayscale(image: PILImage.Image, notes: list[str]) -> PILImage.Image:
    """``image`` as mode "L", noting any conversion."""
    from PIL import Image

    mode = image.mode
    if mode == "L":
        return image
    if mode in _SIXTEEN_BIT_MODES:
        # Pillow's convert("L") clips 16-bit grey at 255 instead of scaling it: scale by hand.
        grey = np.asarray(image, dtype=np.float64)
        eight = np.clip(np.rint(grey / 257), 0, MAX_PIXEL).astype(np.uint8)   # 65535 / 255 = 257
        notes.append(f"converted 16-bit grayscale ({mode}) to 8-bit")
        return Image.fromarray(eight)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", image.size, (0, 0, 0, 255)), rgba)
        notes.append("composited transparent pixels onto black, the data set's background")
    described = {"1": "1-bit black and white", "P": "palette colour (P)"}.get(mode, mode)
    notes.append(f"converted {described} to grayscale")
    return image.convert("L")


def _from_array(path: Path, array: np.ndarray, shape: tuple[int, int]) -> _Raw:
    """An array of one or N images -> (N, H*W) rows, or a DataFormatError listing the shapes."""
    height, width = shape
    size = height * width
    accepted = (
        f"one image ({height}, {width}) or ({size},), or N images (N, {size}), "
        f"(N, {height}, {width}), (N, {height}, {width}, 1) or (N, 1, {height}, {width})"
    )
    dims = array.shape
    if dims in ((height, width), (size,)):
        rows = array.reshape(1, size)                                      # one image -> (1, H*W)
    elif (
        (array.ndim == 2 and dims[1] == size)
        or (array.ndim == 3 and dims[1:] == (height, width))
        or (array.ndim == 4 and dims[1:] in ((height, width, 1), (1, height, width)))
    ):
        rows = array.reshape(dims[0], size)                                # (N, ...) -> (N, H*W)
    else:
        hint = ""
        if array.ndim in (3, 4) and dims[-1] in (3, 4):
            hint = "; colour arrays are not converted: convert them to grey levels first"
        raise DataFormatError(
            f"{path}: cannot read images from an array of shape {dims}: expected {accepted}{hint}"
        )
    if len(rows) == 0:
        raise DataFormatError(f"{path}: no images to classify (shape {dims})")
    if rows.dtype.kind not in "uif":
        raise DataFormatError(f"{path}: pixel values must be real numbers, got dtype {array.dtype}")

    def locate(row: int, col: int) -> str:
        index = tuple(int(i) for i in np.unravel_index(row * size + col, dims))
        return f"index {index}"

    names = [f"{path.name}:{i}" for i in range(len(rows))]
    return _Raw(rows, names, locate, rows.dtype.kind == "f")


def _from_csv(path: Path, text: str, shape: tuple[int, int]) -> _Raw:
    """CSV text -> (N, H*W) rows, with the header detected and a label column dropped."""
    size = shape[0] * shape[1]
    lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        raise DataFormatError(f"{path}: the file holds no rows; no images to classify")
    header: list[str] | None = None
    if not _all_numbers(lines[0][1]) or _is_column_numbers(lines[0][1]):
        header = [name.strip().strip('"').strip() for name in lines[0][1].split(",")]
        lines = lines[1:]
        if not lines:
            raise DataFormatError(f"{path}: only a header row; no images to classify")
    table = _parse_csv(path, lines)                                        # (N, columns)
    columns = table.shape[1]
    if header is not None and len(header) != columns:
        raise DataFormatError(
            f"{path}: the header row has {len(header)} names but the rows have {columns} values"
        )
    numbers = [number for number, _ in lines]
    notes: list[str] = []
    labels = None
    pixel_columns = list(range(columns))
    if columns == size + 1:
        label_column = _label_column(path, table, header, size)
        labels = table[:, label_column].astype(np.int64)
        pixel_columns.remove(label_column)
        where = {0: "first", columns - 1: "last"}.get(label_column, f"number {label_column + 1}")
        named = f" ({header[label_column]!r})" if header is not None else ""
        notes.append(
            f"dropped the {where} column{named} as labels (values {labels.min()}..{labels.max()})"
        )
        table = table[:, pixel_columns]
    elif columns != size:
        hint = ""
        if columns == shape[1] and len(table) == shape[0]:
            hint = f"; a {shape[0]}x{shape[1]} grid of one image is not read: write it as one row"
        raise DataFormatError(
            f"{path}: expected {size} pixel columns (one {shape[0]}x{shape[1]} image per row, "
            f"optionally one label column more), got {columns}{hint}"
        )
    is_float = any(any(c in line for c in ".eE") for _, line in lines)

    def locate(row: int, col: int) -> str:
        return f"line {numbers[row]}, column {pixel_columns[col] + 1}"

    names = [f"{path.name}:{i}" for i in range(len(table))]
    return _Raw(table, names, locate, is_float, labels=labels, notes=notes)


def _all_numbers(line: str) -> bool:
    try:
        for value in line.split(","):
            float(value.strip().strip('"'))
    except ValueError:
        return False
    return True


def _is_column_numbers(line: str) -> bool:
    """Whether ``line`` is 0, 1, ..., C-1 or 1, ..., C with C > 256: a header of column numbers
    (pandas writes one for an unnamed frame), never grey levels, which stop at 255."""
    values = [float(value.strip().strip('"')) for value in line.split(",")]
    count = len(values)
    return count > MAX_PIXEL + 1 and values in (list(range(count)), list(range(1, count + 1)))


def _parse_csv(path: Path, lines: list[tuple[int, str]]) -> np.ndarray:
    try:
        rows = [line for _, line in lines]
        return np.loadtxt(rows, delimiter=",", ndmin=2, dtype=np.float64, quotechar='"')
    except ValueError:
        pass
    # Find the first bad line again, to name it by its number in the file.
    width = len(lines[0][1].split(","))
    for number, line in lines:
        values = line.split(",")
        if len(values) != width:
            raise DataFormatError(
                f"{path}: line {number} has {len(values)} values, but the first row has {width}"
            ) from None
        for column, value in enumerate(values, start=1):
            try:
                float(value.strip().strip('"'))
            except ValueError:
                raise DataFormatError(
                    f"{path}: line {number}, column {column}: {value.strip()!r} is not a number"
                ) from None
    raise DataFormatError(f"{path}: not a CSV of numbers")   # pragma: no cover - loadtxt and float() agree


def _label_column(path: Path, table: np.ndarray, header: list[str] | None, size: int) -> int:
    """The index of the label column of a (N, H*W + 1) table, or a DataFormatError saying why not."""
    columns = table.shape[1]
    if header is not None:
        named = [i for i, name in enumerate(header) if "label" in name.lower()]
        if len(named) == 1:
            values = table[:, named[0]]
            if not _is_labels(values):
                bad = int(np.argmax(~_label_values(values)))
                raise DataFormatError(
                    f"{path}: column {named[0] + 1} ({header[named[0]]!r}) must hold non-negative integer "
                    f"labels, got {values[bad].item()!r} in data row {bad + 1}"
                )
            return named[0]
    candidates = [i for i in (0, columns - 1) if _is_labels(table[:, i], below=_UNNAMED_LABELS_BELOW)]
    if len(candidates) == 2:
        # A corner pixel column is mostly zero (black background), a label column mostly not.
        zeros = [np.count_nonzero(table[:, i] == 0) for i in candidates]
        if zeros[0] != zeros[1]:
            candidates = [candidates[int(np.argmin(zeros))]]
    if len(candidates) == 1:
        return candidates[0]
    why = (
        "neither the first nor the last column holds labels (integers 0..99)"
        if not candidates
        else "the first and the last column could both be labels (integers 0..99, as many zeros)"
    )
    raise DataFormatError(
        f"{path}: expected {size} pixel columns, got {columns}: {why}; name the label column 'label' "
        f"in a header row, or remove it"
    )


def _label_values(values: np.ndarray, below: int = 2**31) -> np.ndarray:
    return np.isfinite(values) & (values >= 0) & (values == np.round(values)) & (values < below)


def _is_labels(values: np.ndarray, below: int = 2**31) -> bool:
    return bool(_label_values(values, below).all())


def _apply_scale(path: Path, raw: _Raw, input_scale: str) -> np.ndarray:
    """Check finiteness and range for ``input_scale``; return (N, H*W) float64 on 0..255."""
    values = raw.values.astype(np.float64)                                # a copy, (N, H*W)
    if raw.is_image:
        if input_scale == "1":
            raw.notes.append("input scale 1 does not apply to image files: read as grey levels 0..255")
        return values
    finite = np.isfinite(values)
    if not finite.all():
        row, col = (int(i) for i in np.argwhere(~finite)[0])
        raise DataFormatError(
            f"{path}: {np.count_nonzero(~finite)} NaN or infinite value(s); the first, "
            f"{values[row, col].item()!r}, at {raw.locate(row, col)}"
        )
    low, high = (0.0, 1.0) if input_scale == "1" else (0.0, float(MAX_PIXEL))
    if (
        input_scale == "auto"
        and raw.is_float
        and values.any()
        and values.min() >= 0.0
        and values.max() <= 1.0
    ):
        raise DataFormatError(
            f"{path}: every value lies in [0, 1], so the pixels look already scaled to [0, 1], but the "
            f"model reads grey levels 0..255; pass --input-scale 1 (input_scale='1') to multiply them "
            f"by 255, or --input-scale 255 if they really are grey levels"
        )
    outside = (values < low) | (values > high)
    if outside.any():
        row, col = (int(i) for i in np.argwhere(outside)[0])
        rule = "in [0, 1] for input scale 1" if input_scale == "1" else "grey levels in [0, 255]"
        raise DataFormatError(
            f"{path}: pixel values must be {rule}, got {values[row, col].item()!r} at {raw.locate(row, col)}"
        )
    if input_scale == "1":
        values *= MAX_PIXEL
        raw.notes.append("scaled [0, 1] input by 255")
    return values


def _border_notes(pixels: np.ndarray, names: list[str], shape: tuple[int, int]) -> list[str]:
    """A note when images have a mostly bright border: likely dark objects on light paper."""
    images = pixels.reshape(len(pixels), *shape)                           # (N, H, W)
    border = np.concatenate(
        [images[:, 0, :], images[:, -1, :], images[:, 1:-1, 0], images[:, 1:-1, -1]], axis=1
    )                                                                      # (N, 2W + 2(H - 2))
    bright = (border > MAX_PIXEL / 2).mean(axis=1) > 0.5                   # (N,)
    if not bright.any():
        return []
    advice = (
        "the model expects a light object on a black background, as in Fashion-MNIST; if this is a "
        "dark object on light paper, invert it (255 - pixels)"
    )
    if len(pixels) == 1:
        return [f"the border is mostly bright: {advice}"]
    flagged = [names[i] for i in np.flatnonzero(bright)]
    return [
        f"{len(flagged)} of {len(pixels)} images {'has' if len(flagged) == 1 else 'have'} a mostly bright "
        f"border ({_listing(flagged)}): {advice}"
    ]

