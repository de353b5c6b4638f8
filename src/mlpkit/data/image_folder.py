"""A folder of images, one subfolder per class, read into arrays a classifier can train on.

The layout is torchvision's ``ImageFolder`` and Keras' ``image_dataset_from_directory``::

    root/cat/001.png            root/train/cat/001.png
    root/cat/002.jpg    or      root/train/dog/001.png
    root/dog/001.png            root/val/cat/007.png     (``val/`` or ``valid/``, optional)
                                root/test/dog/003.png

- :func:`is_image_folder` tells such a directory from, say, a directory of CSV files;
- :func:`find_image_splits` finds the ``train`` / ``val`` / ``test`` subfolders, or the one folder;
- :func:`resolve_color` decides grayscale or RGB once for the whole folder (``"auto"``);
- :func:`load_image` reads one file as a square ``uint8`` array;
- :func:`read_image_folder` reads every class folder: files that are not images, or that Pillow
  cannot decode, are skipped with a warning naming them (or refused, with ``strict=True``), and a
  class left with no image is an error.

Pillow (the ``images`` extra) is imported when an image is read; no torch here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlpkit._optional import require
from mlpkit.errors import DataFormatError, DataNotFoundError

__all__ = [
    "COLOR_MODES",
    "IMAGE_SUFFIXES",
    "ImageFolder",
    "Skipped",
    "find_image_splits",
    "is_image_folder",
    "load_image",
    "read_image_folder",
    "resolve_color",
]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
"""File suffixes (compared lowercased) read as images; any other file in a class folder is skipped."""

COLOR_MODES = ("auto", "grayscale", "rgb")
"""``color`` values: ``"auto"`` is RGB when any image of the folder is in colour, else grayscale."""

# Pillow modes that hold one grey channel (with or without alpha). The 16-bit variants are listed
# too: a 16-bit grey TIFF or PNG opens as "I;16B" or the like, and it is no more colour than "I;16".
_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})

_PIL_MODE = {"grayscale": "L", "rgb": "RGB"}
_CHANNELS = {"grayscale": 1, "rgb": 3}


@dataclass(frozen=True)
class Skipped:
    """A file of a class folder that was not read: its ``path`` and the ``reason``, e.g.
    ``"not an image (suffix '.txt')"`` or ``"cannot be read (<Pillow's message>)"``."""

    path: str
    reason: str


@dataclass(frozen=True)
class ImageFolder:
    """The images of a class-per-subfolder directory, in class order then file order.

    Attributes
    ----------
    images : np.ndarray
        (N, S, S, C) uint8, ``S`` the requested size, ``C`` 1 for grayscale or 3 for RGB.
    labels : np.ndarray
        (N,) int64, each image's index into ``classes``.
    classes : tuple of str
        The class names: the class folder names sorted, or the ``classes`` passed in.
    paths : tuple of str
        (N,) each image's file path, aligned with ``images`` and ``labels``.
    skipped : tuple of Skipped
        The files that were not read, in the order met, with the reason.
    color : str
        ``"grayscale"`` or ``"rgb"``: the colour mode used (``"auto"`` resolved).
    """

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    paths: tuple[str, ...]
    skipped: tuple[Skipped, ...]
    color: str


# -- finding the folders -------------------------------------------------------------------------


def _subfolders(root: Path) -> list[Path]:
    """The non-hidden subdirectories of ``root``, sorted by name."""
    folders = (p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    return sorted(folders, key=lambda p: p.name)


def is_image_folder(root: str | Path) -> bool:
    """Whether ``root`` is a directory with at least one non-hidden subdirectory.

    This is the cheap test a caller uses to tell an image folder (classes or splits as subfolders)
    from a directory of ``train.csv`` / ``valid.csv`` / ``test.csv`` files, which has none.
    """
    root = Path(root)
    return root.is_dir() and bool(_subfolders(root))


def find_image_splits(root: str | Path) -> dict[str, Path]:
    """The split folders of an image folder.

    Returns
    -------
    dict of str to Path
        ``{"train": p, "val": p, "test": p}`` when ``root`` holds ``train/`` and ``test/``
        subfolders (``"val"`` only when a ``val/`` or ``valid/`` subfolder exists); otherwise
        ``{"all": root}``, a single folder of class subfolders to be split by the caller.

    Raises
    ------
    DataNotFoundError
        ``root`` is missing or not a directory.
    DataFormatError
        ``train/`` without ``test/`` or the reverse (naming what is missing), or both ``val/`` and
        ``valid/`` (which one is the validation split would be a guess).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataNotFoundError(f"no image folder at {root}" + (" (it is a file)" if root.exists() else ""))
    names = {p.name for p in _subfolders(root)}
    has_train, has_test = "train" in names, "test" in names
    if not has_train and not has_test:
        return {"all": root}
    if has_train != has_test:
        present, missing = ("train", "test") if has_train else ("test", "train")
        raise DataFormatError(
            f"{root} holds a {present}/ folder but no {missing}/ folder: a split image folder needs "
            f"{root}/train/<class>/<image> and {root}/test/<class>/<image> (and optionally val/)"
        )
    vals = sorted(names & {"val", "valid"})
    if len(vals) > 1:
        raise DataFormatError(f"{root} holds both val/ and valid/ folders: keep one validation split")
    splits = {"train": root / "train"}
    if vals:
        splits["val"] = root / vals[0]
    splits["test"] = root / "test"
    return splits


# -- reading one image ---------------------------------------------------------------------------


def _read_errors() -> tuple[type[BaseException], ...]:
    """What Pillow raises on a file it cannot read. UnidentifiedImageError (an OSError) is an unknown
    format and OSError a truncated or broken one; the rest come from malformed headers in some
    plugins, and DecompressionBombError from an image too large to be a sane training example."""
    from PIL import Image, UnidentifiedImageError

    return (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def _check_size(size: object) -> int:
    # bool is an int, but size=True is surely a mistake
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size <= 0:
        raise ValueError(f"size must be a positive int, got {size!r}")
    return int(size)


def _check_color(color: object, allowed: Sequence[str]) -> str:
    if color not in allowed:
        raise ValueError(f"color must be one of {list(allowed)}, got {color!r}")
    return str(color)


def _decode(path: Path, size: int, color: str) -> np.ndarray:
    """``load_image`` without the error translation: Pillow's exceptions propagate."""
    from PIL import Image

    with Image.open(path) as image:
        # Image.open reads the header only; load() decodes now, so a truncated file fails here
        image.load()
        converted = image.convert(_PIL_MODE[color])
    if converted.size != (size, size):
        converted = converted.resize((size, size), Image.Resampling.BILINEAR)
    array = np.asarray(converted, dtype=np.uint8)
    return array.reshape(size, size, _CHANNELS[color])


def load_image(path: str | Path, *, size: int, color: str) -> np.ndarray:
    """One image file as a square array.

    The file is opened with Pillow and converted to ``"L"`` (``color="grayscale"``, ITU-R 601-2
    luma) or ``"RGB"`` (``color="rgb"``; a grey image repeats its value in the three channels, an
    alpha channel is dropped), then resized to ``size`` x ``size`` with bilinear resampling unless it
    is that size already (the aspect ratio is not kept, as in torchvision's ``Resize((S, S))``).

    Parameters
    ----------
    path : str or Path
        The image file.
    size : int
        The side ``S`` of the square result, positive.
    color : str
        ``"grayscale"`` or ``"rgb"``.

    Returns
    -------
    np.ndarray
        (size, size, C) uint8, ``C`` 1 for grayscale, 3 for RGB.

    Raises
    ------
    DataNotFoundError
        No file at ``path``.
    DataFormatError
        Pillow cannot identify or decode the file (the message names the path).
    ValueError
        ``size`` is not a positive int or ``color`` is not ``"grayscale"`` or ``"rgb"``.
    """
    require("PIL", feature="reading image folders")
    size = _check_size(size)
    color = _check_color(color, ("grayscale", "rgb"))
    path = Path(path)
    if not path.is_file():
        where = " (it is a directory)" if path.is_dir() else ""
        raise DataNotFoundError(f"no image file at {path}{where}")
    try:
        return _decode(path, size, color)
    except _read_errors() as exc:
        raise DataFormatError(f"{path}: cannot be read ({exc})") from exc


def resolve_color(paths: Sequence[Path], color: str) -> str:
    """The colour mode to read a folder in: ``"grayscale"`` or ``"rgb"``.

    ``color`` itself unless it is ``"auto"``. For ``"auto"``: ``"rgb"`` when any readable file of
    ``paths`` has a colour Pillow mode (any but ``1``, ``L``, ``LA``, ``I``, ``I;16`` and its byte
    orders, ``F``; a ``P`` palette image counts as colour, as its palette may be), else
    ``"grayscale"``, so one colour image makes the whole folder RGB rather than losing its colour.
    Only headers are read, and files Pillow cannot open are passed over (reading them reports them).

    Raises
    ------
    ValueError
        ``color`` is not one of :data:`COLOR_MODES`.
    """
    color = _check_color(color, COLOR_MODES)
    if color != "auto":
        return color
    require("PIL", feature="reading image folders")
    from PIL import Image

    errors = _read_errors()
    for path in paths:
        try:
            with Image.open(path) as image:
                mode = image.mode
        except errors:
            continue
        if mode not in _GREY_MODES:
            return "rgb"
    return "grayscale"


# -- reading the folder --------------------------------------------------------------------------


def _class_folders(root: Path, classes: Sequence[str] | None) -> tuple[list[Path], tuple[str, ...]]:
    """The class folders to read and the class names the labels index into."""
    folders = _subfolders(root)
    if not folders:
        raise DataFormatError(
            f"{root} holds no class folders: put the images of each class in its own subfolder "
            f"({root}/<class>/<image>)"
        )
    if classes is None:
        if len(folders) < 2:
            raise DataFormatError(
                f"{root} holds one class folder only ({folders[0].name!r}): a classifier needs at least "
                f"2 classes, each in its own subfolder of {root}"
            )
        return folders, tuple(p.name for p in folders)
    given = tuple(str(c) for c in classes)
    if len(set(given)) != len(given):
        raise ValueError(f"classes must be distinct, got {list(given)}")
    # A val or test folder may lack a class (few examples) but may not add one the model never saw.
    for folder in folders:
        if folder.name not in given:
            raise DataFormatError(
                f"class folder {folder} is not one of the training classes {list(given)}"
            )
    return folders, given


def _skip(path: Path, reason: str, strict: bool, skipped: list[Skipped]) -> None:
    if strict:
        raise DataFormatError(f"{path}: {reason}")
    logger.warning("skipped %s: %s", path, reason)
    skipped.append(Skipped(str(path), reason))


def read_image_folder(
    root: str | Path,
    *,
    size: int,
    color: str = "auto",
    strict: bool = False,
    classes: Sequence[str] | None = None,
) -> ImageFolder:
    """Every image of a folder laid out one subfolder per class.

    Class folders are the non-hidden subdirectories of ``root``, sorted by name; the images are
    the files directly in each (sorted by name; files whose name starts with ``"."`` are ignored).
    A file whose lowercased suffix is not in :data:`IMAGE_SUFFIXES`, or that Pillow cannot open and
    decode, is skipped with a warning naming it; a closing warning counts them. Each image goes
    through :func:`load_image`, with ``"auto"`` resolved once for the whole folder by
    :func:`resolve_color` so every image has the same number of channels.

    Parameters
    ----------
    root : str or Path
        The folder of class folders (one split of a :func:`find_image_splits` layout, or the whole).
    size : int
        The side ``S`` every image is resized to, positive.
    color : str
        ``"auto"`` (RGB if any image is in colour, else grayscale), ``"grayscale"`` or ``"rgb"``.
    strict : bool
        Raise on the first file that would be skipped instead of skipping it.
    classes : sequence of str, optional
        The training classes, when reading a val or test folder: each class folder must be one of
        them, labels index into them (a class with no folder here is fine), and they are returned
        as ``classes``. By default the folder names, and at least 2 are needed.

    Returns
    -------
    ImageFolder
        ``images`` (N, S, S, C) uint8, ``labels`` (N,) int64, in class order then file order.

    Raises
    ------
    DataNotFoundError
        ``root`` is missing or not a directory.
    DataFormatError
        No class folders, a single one, a folder not among ``classes``, a class folder left with
        no image, or (``strict``) a file that is not a readable image; each names the path.
    ValueError
        ``size`` is not a positive int, ``color`` not one of :data:`COLOR_MODES`, ``classes`` repeats.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataNotFoundError(f"no image folder at {root}" + (" (it is a file)" if root.exists() else ""))
    size = _check_size(size)
    color = _check_color(color, COLOR_MODES)
    require("PIL", feature="reading image folders")
    folders, class_names = _class_folders(root, classes)
    label_of = {name: i for i, name in enumerate(class_names)}

    skipped: list[Skipped] = []
    candidates: list[tuple[Path, list[Path], int]] = []     # (class folder, image files, files seen)
    n_files = 0
    for folder in folders:
        files = sorted(
            (p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")), key=lambda p: p.name
        )
        n_files += len(files)
        images = []
        for path in files:
            suffix = path.suffix.lower()
            if suffix in IMAGE_SUFFIXES:
                images.append(path)
            else:
                _skip(path, f"not an image (suffix {suffix!r})", strict, skipped)
        candidates.append((folder, images, len(files)))

    # Decided before any image is loaded, so every array gets the same channel count.
    resolved = resolve_color([p for _, images, _ in candidates for p in images], color)
    errors = _read_errors()
    arrays: list[np.ndarray] = []
    labels: list[int] = []
    paths: list[str] = []
    for folder, images, n_seen in candidates:
        n_read = 0
        for path in images:
            try:
                array = _decode(path, size, resolved)
            except errors as exc:
                _skip(path, f"cannot be read ({exc})", strict, skipped)
                continue
            arrays.append(array)
            labels.append(label_of[folder.name])
            paths.append(str(path))
            n_read += 1
        if n_read == 0:
            # no image was read, so every file seen in it was skipped
            why = f" ({n_seen} file(s) skipped)" if n_seen else ""
            nested = sum(1 for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
            if nested:
                # A common mistake: one level too deep. Say so rather than leave the user puzzled.
                why += f"; its {nested} subfolder(s) are not read, images must be directly in it"
            raise DataFormatError(f"class folder {folder} holds no images{why}")

    if skipped:
        logger.warning("%d of %d files skipped in %s", len(skipped), n_files, root)
    channels = _CHANNELS[resolved]
    return ImageFolder(
        images=np.stack(arrays).astype(np.uint8, copy=False).reshape(len(arrays), size, size, channels),
        labels=np.asarray(labels, dtype=np.int64),
        classes=class_names,
        paths=tuple(paths),
        skipped=tuple(skipped),
        color=resolved,
    )
