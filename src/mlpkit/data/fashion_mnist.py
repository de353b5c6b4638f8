"""Fashion-MNIST: find the four IDX files (or download them once), verify them, load them as arrays.

Xiao, Rasul, Vollgraf. "Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning
Algorithms." 2017. https://arxiv.org/abs/1708.07747 and https://github.com/zalandoresearch/fashion-mnist

60000 training and 10000 test images, 28x28 grey levels (uint8), in 10 classes, stored as the
four MNIST-style IDX files ``{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``.

Where the files are looked for, in order (the first directory holding all four wins):

1. the ``data_dir`` argument; when given, nothing else is searched;
2. ``$MLPKIT_DATA``, or ``$MLPKIT_DATA/fashion-mnist``;
3. the user cache, ``$XDG_CACHE_HOME/mlpkit/fashion-mnist`` or ``~/.cache/mlpkit/fashion-mnist``;
4. ``/usr/share/datasets/fashion-mnist``, where the Debian package ``dataset-fashion-mnist`` puts them;
5. otherwise the official files are downloaded once into the user cache.

Each file may be gzipped (``NAME.gz``) or not (``NAME``). Checksums are SHA-256 digests of the
*decompressed* bytes, because the Debian package recompresses the ``.gz`` files, so their
compressed bytes differ from the official ones while the data is identical.

The locating and loading code is driven by a :class:`DatasetSpec` (file names, checksums, classes,
URL), so MNIST needs only another spec.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlpkit import __version__
from mlpkit._checks import check_positive_float
from mlpkit._io import atomic_path, ensure_writable_dir
from mlpkit.data.idx import decompress_if_gzipped, read_idx_bytes
from mlpkit.errors import ChecksumError, DataFormatError, DataNotFoundError, OutputError

__all__ = [
    "FASHION_MNIST",
    "FASHION_MNIST_CLASSES",
    "OFFICIAL_URL",
    "DatasetSpec",
    "FashionMNIST",
    "IdxFileSpec",
    "default_cache_dir",
    "load_fashion_mnist",
    "locate_fashion_mnist",
]

logger = logging.getLogger(__name__)

OFFICIAL_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
"""Where zalandoresearch/fashion-mnist's README links the four ``.gz`` files."""

DATA_ENV_VAR = "MLPKIT_DATA"
"""Environment variable naming a directory that holds the files (or a ``fashion-mnist`` subdirectory)."""

SYSTEM_DATA_ROOT = Path("/usr/share/datasets")
"""Where Debian's ``dataset-*`` packages install data sets, one subdirectory each."""

DEFAULT_TIMEOUT = 60.0
"""Seconds a download may wait for the server (connect, or between two reads) before giving up."""

# Class names in label order, from the zalandoresearch/fashion-mnist README ("Labels" table).
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


@dataclass(frozen=True)
class IdxFileSpec:
    """One IDX file of a data set, identified by its decompressed content.

    Parameters
    ----------
    name : str
        File name without ``.gz``, e.g. ``"train-images-idx3-ubyte"``.
    sha256 : str
        Hex SHA-256 digest of the decompressed bytes.
    size : int
        Length of the decompressed bytes.
    """

    name: str
    sha256: str
    size: int


@dataclass(frozen=True)
class DatasetSpec:
    """What identifies an MNIST-style data set: its files, checksums, classes and home.

    Parameters
    ----------
    title : str
        Name used in messages, e.g. ``"Fashion-MNIST"``.
    slug : str
        Directory name under the cache, ``$MLPKIT_DATA`` and ``/usr/share/datasets``.
    train_images, train_labels, test_images, test_labels : IdxFileSpec
        The four files.
    classes : tuple of str
        Class names in label order; labels must lie in ``0 .. len(classes) - 1``.
    image_shape : tuple of int
        Shape of one image, ``(28, 28)``.
    apt_package : str or None
        Debian package that installs the files under ``/usr/share/datasets/{slug}``, if any.
    """

    title: str
    slug: str
    train_images: IdxFileSpec
    train_labels: IdxFileSpec
    test_images: IdxFileSpec
    test_labels: IdxFileSpec
    classes: tuple[str, ...]
    image_shape: tuple[int, int] = (28, 28)
    apt_package: str | None = None

    @property
    def files(self) -> tuple[IdxFileSpec, IdxFileSpec, IdxFileSpec, IdxFileSpec]:
        """The four files, in download order."""
        return (self.train_images, self.train_labels, self.test_images, self.test_labels)


# Digests and sizes of the decompressed official files, measured with `zcat FILE | sha256sum` and
# `zcat FILE | wc -c` on the files of Debian's dataset-fashion-mnist, which hold the official data.
FASHION_MNIST = DatasetSpec(
    title="Fashion-MNIST",
    slug="fashion-mnist",
    train_images=IdxFileSpec(
        "train-images-idx3-ubyte",
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        47040016,
    ),
    train_labels=IdxFileSpec(
        "train-labels-idx1-ubyte", "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", 60008
    ),
    test_images=IdxFileSpec(
        "t10k-images-idx3-ubyte", "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", 7840016
    ),
    test_labels=IdxFileSpec(
        "t10k-labels-idx1-ubyte", "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", 10008
    ),
    classes=FASHION_MNIST_CLASSES,
    apt_package="dataset-fashion-mnist",
)


@dataclass(frozen=True, eq=False)
class FashionMNIST:
    """The Fashion-MNIST arrays, images flattened row by row.

    Parameters
    ----------
    x_train : np.ndarray of shape (60000, 784), uint8
        Training images, grey levels 0..255, each 28x28 image flattened in C order.
    y_train : np.ndarray of shape (60000,), int64
        Training labels in 0..9, indexes into ``classes``.
    x_test : np.ndarray of shape (10000, 784), uint8
        Test images.
    y_test : np.ndarray of shape (10000,), int64
        Test labels.
    classes : tuple of str
        The 10 class names in label order.
    data_dir : Path
        The directory the files were read from.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]
    data_dir: Path

    def __repr__(self) -> str:
        def describe(a: np.ndarray) -> str:
            return f"{a.shape} {a.dtype}"

        return (
            f"FashionMNIST(x_train={describe(self.x_train)}, y_train={describe(self.y_train)}, "
            f"x_test={describe(self.x_test)}, y_test={describe(self.y_test)}, "
            f"classes={len(self.classes)}, data_dir={str(self.data_dir)!r})"
        )


class _DownloadError(Exception):
    """A download failed for a reason worth one line in the not-found message."""


def default_cache_dir(slug: str = "fashion-mnist") -> Path:
    """Return the user cache directory of a data set: ``$XDG_CACHE_HOME/mlpkit/{slug}``.

    ``$XDG_CACHE_HOME`` falls back to ``~/.cache`` when unset or relative, as the XDG Base
    Directory specification requires.

    Parameters
    ----------
    slug : str, default "fashion-mnist"
        The data set's directory name.

    Returns
    -------
    Path
        The directory; it may not exist yet.
    """
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "mlpkit" / slug


def _find_files(directory: Path, spec: DatasetSpec) -> tuple[dict[str, Path] | None, str]:
    """Return ``({name: path}, "")`` if ``directory`` holds all four files, else ``(None, why not)``."""
    if not directory.exists():
        return None, "does not exist"
    if not directory.is_dir():
        return None, "is not a directory"
    found: dict[str, Path] = {}
    missing: list[str] = []
    for file in spec.files:
        for candidate in (directory / f"{file.name}.gz", directory / file.name):
            if candidate.is_file():
                found[file.name] = candidate
                break
        else:
            missing.append(file.name)
    if missing:
        return None, f"missing {', '.join(missing)}"
    return found, ""


def _sha256_or_raise(payload: bytes, file: IdxFileSpec, source: str, consequence: str) -> None:
    """Raise ``ChecksumError`` unless ``payload`` (decompressed bytes) has ``file.sha256``."""
    actual = hashlib.sha256(payload).hexdigest()
    if actual != file.sha256:
        raise ChecksumError(
            f"{source}: checksum mismatch for {file.name}: the decompressed data has sha256 {actual} "
            f"({len(payload)} bytes), expected {file.sha256} ({file.size} bytes); {consequence}"
        )


def _how_to_get(spec: DatasetSpec, cache: Path, base_url: str) -> str:
    ways = []
    if spec.apt_package:
        ways.append(f"sudo apt-get install {spec.apt_package}   (installs {SYSTEM_DATA_ROOT / spec.slug})")
    ways += [
        f"set {DATA_ENV_VAR}=DIR, where DIR holds the four files",
        "pass data_dir=DIR (--data-dir DIR on the command line)",
        f"run again while online to download them once from {base_url} into {cache}",
    ]
    return "To get the data, do one of:\n" + "\n".join(f"  - {way}" for way in ways)


def _fetch(url: str, destination: Path, timeout: float) -> None:
    """Stream ``url`` into ``destination``, with a progress bar when stderr is a terminal."""
    request = urllib.request.Request(url, headers={"User-Agent": f"mlpkit/{__version__}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, open(destination, "wb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length is not None and length.isdigit() else None
            bar = None
            if sys.stderr.isatty():
                from tqdm import tqdm  # type: ignore[import-untyped, unused-ignore]

                bar = tqdm(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1], leave=False)
            received = 0
            try:
                while chunk := response.read(1 << 16):
                    out.write(chunk)
                    received += len(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
            finally:
                if bar is not None:
                    bar.close()
    except urllib.error.HTTPError as exc:
        raise _DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise _DownloadError(f"{url}: {exc.reason}") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise _DownloadError(f"{url}: {str(exc) or type(exc).__name__}") from exc
    if total is not None and received != total:
        raise _DownloadError(f"{url}: connection closed after {received} of {total} bytes")


def _download(spec: DatasetSpec, cache: Path, base_url: str, timeout: float) -> None:
    """Download the files missing from ``cache``, verify them all, then move each into place.

    Either every missing file lands in ``cache`` or none does: the temporary files are only renamed
    once all of them have downloaded and verified, and are removed on any failure.
    """
    try:
        ensure_writable_dir(cache)
    except OutputError as exc:
        raise _DownloadError(f"cannot store the download: {exc}") from exc
    base = base_url if base_url.endswith("/") else base_url + "/"
    with contextlib.ExitStack() as stack:
        for file in spec.files:
            if any((cache / name).is_file() for name in (f"{file.name}.gz", file.name)):
                continue  # verified before it was moved into place by an earlier call
            url = base + f"{file.name}.gz"
            tmp = stack.enter_context(atomic_path(cache / f"{file.name}.gz"))
            logger.info("downloading %s to %s", url, cache)
            _fetch(url, tmp, timeout)
            payload = decompress_if_gzipped(tmp.read_bytes(), url)
            _sha256_or_raise(
                payload, file, url, f"the download was discarded and nothing was written to {cache}"
            )
    # Leaving the ExitStack fsyncs and renames every temporary file onto its final name.


def _locate(
    spec: DatasetSpec,
    data_dir: str | os.PathLike[str] | None,
    *,
    download: bool,
    base_url: str,
    cache_dir: str | os.PathLike[str] | None,
    timeout: float,
) -> Path:
    file_list = ", ".join(file.name for file in spec.files)
    if data_dir is not None:
        given = Path(data_dir)
        found, why = _find_files(given, spec)
        if found is None:
            raise DataNotFoundError(
                f"{spec.title} not found in data_dir {given} ({why}). Expected the files {file_list} "
                f"(each as NAME.gz or NAME). No other place was searched because data_dir was given."
            )
        return given

    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir(spec.slug)
    places: list[tuple[str, Path | None]] = []
    env = os.environ.get(DATA_ENV_VAR, "")
    if env:
        places += [(f"${DATA_ENV_VAR}", Path(env)), (f"${DATA_ENV_VAR}/{spec.slug}", Path(env) / spec.slug)]
    else:
        places.append((f"${DATA_ENV_VAR}", None))
    places += [("user cache", cache), ("system", SYSTEM_DATA_ROOT / spec.slug)]

    looked: list[str] = []
    for label, directory in places:
        if directory is None:
            looked.append(f"{label}: not set")
            continue
        found, why = _find_files(directory, spec)
        if found is not None:
            logger.debug("using %s from %s", spec.title, directory)  # the caller says where it trains from
            return directory
        looked.append(f"{directory} ({label}): {why}")
        if label == f"${DATA_ENV_VAR}/{spec.slug}":
            # Said as soon as both $MLPKIT_DATA places fail: a typo there must not pass unnoticed
            # just because a copy elsewhere (the cache, the system package) is then used instead.
            logger.warning(
                "$%s=%s does not hold the %s files; looking elsewhere", DATA_ENV_VAR, env, spec.title
            )

    if download:
        try:
            _download(spec, cache, base_url, timeout)
            return cache
        except _DownloadError as exc:
            attempt = f"Downloading from {base_url} failed: {exc}"
    else:
        attempt = "Downloading was not attempted (download=False)."
    raise DataNotFoundError(
        f"{spec.title} not found. Looked for {file_list} (each as NAME.gz or NAME) in:\n"
        + "\n".join(f"  - {line}" for line in looked)
        + f"\n{attempt}\n"
        + _how_to_get(spec, cache, base_url)
    )


def locate_fashion_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    base_url: str = OFFICIAL_URL,
    cache_dir: str | os.PathLike[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Path:
    """Return a directory holding the four Fashion-MNIST files, downloading them once if needed.

    Searches ``data_dir`` alone when it is given; otherwise ``$MLPKIT_DATA`` (the directory
    itself, then its ``fashion-mnist`` subdirectory), the user cache, and
    ``/usr/share/datasets/fashion-mnist``. If none holds all four files and ``download`` is true,
    the missing files are downloaded from ``base_url`` into the cache, verified against the
    SHA-256 of their decompressed bytes, and moved into place atomically.

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        Directory that must hold the files; it is an error if it does not.
    download : bool, default True
        Whether to download the files when no copy is found.
    base_url : str, default OFFICIAL_URL
        URL of the directory serving ``NAME.gz`` for each file.
    cache_dir : str or os.PathLike, optional
        The cache directory, instead of ``$XDG_CACHE_HOME/mlpkit/fashion-mnist``.
    timeout : float, default 60.0
        Seconds to wait for the server before a download gives up.

    Returns
    -------
    Path
        The directory holding all four files (``NAME.gz`` or ``NAME`` each).

    Raises
    ------
    DataNotFoundError
        If ``data_dir`` is given and lacks a file; or if no place holds the files and the download
        is disabled or fails. The message lists every place searched, the download error, and how
        to get the data.
    ChecksumError
        If a downloaded file does not match its checksum; nothing is left in the cache.
    DataFormatError
        If a downloaded ``.gz`` is corrupted; nothing is left in the cache.
    """
    check_positive_float("timeout", timeout)
    return _locate(
        FASHION_MNIST, data_dir, download=download, base_url=base_url, cache_dir=cache_dir, timeout=timeout
    )


def _read_checked(path: Path, file: IdxFileSpec, verify: bool) -> np.ndarray:
    payload = decompress_if_gzipped(path.read_bytes(), str(path))
    if verify:  # hash the bytes already in memory: no second read
        _sha256_or_raise(
            payload,
            file,
            str(path),
            "the file is corrupted or is not the official one (to load other data in the same format, "
            "pass verify=False, or --no-verify to mlpkit train)",
        )
    return read_idx_bytes(payload, str(path))


def _check_split(
    images: np.ndarray, labels: np.ndarray, images_path: Path, labels_path: Path, spec: DatasetSpec
) -> None:
    h, w = spec.image_shape
    if images.ndim != 3 or images.shape[1:] != spec.image_shape or images.dtype != np.uint8:
        raise DataFormatError(
            f"{images_path}: expected images of shape (N, {h}, {w}) and dtype uint8, "
            f"got shape {images.shape} and dtype {images.dtype}"
        )
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataFormatError(
            f"{labels_path}: expected labels of shape (N,) and an integer dtype, "
            f"got shape {labels.shape} and dtype {labels.dtype}"
        )
    num_classes = len(spec.classes)
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        raise DataFormatError(
            f"{labels_path}: labels must lie in 0..{num_classes - 1}, found {labels[bad[0]]} "
            f"at index {bad[0]} ({bad.size} bad labels in all)"
        )
    if len(images) != len(labels):
        raise DataFormatError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels"
        )


def _load(
    spec: DatasetSpec,
    data_dir: str | os.PathLike[str] | None,
    *,
    download: bool,
    verify: bool,
    base_url: str,
    cache_dir: str | os.PathLike[str] | None,
    timeout: float,
) -> FashionMNIST:
    directory = _locate(
        spec, data_dir, download=download, base_url=base_url, cache_dir=cache_dir, timeout=timeout
    )
    paths, why = _find_files(directory, spec)
    if paths is None:  # removed between locating and loading
        raise DataNotFoundError(f"{spec.title} not found in {directory} ({why})")
    arrays = {file.name: _read_checked(paths[file.name], file, verify) for file in spec.files}
    splits = []
    for images_spec, labels_spec in (
        (spec.train_images, spec.train_labels),
        (spec.test_images, spec.test_labels),
    ):
        images, labels = arrays[images_spec.name], arrays[labels_spec.name]
        _check_split(images, labels, paths[images_spec.name], paths[labels_spec.name], spec)
        splits.append((images.reshape(len(images), -1), labels.astype(np.int64)))  # (N, 784), (N,)
    (x_train, y_train), (x_test, y_test) = splits
    return FashionMNIST(x_train, y_train, x_test, y_test, spec.classes, directory)


def load_fashion_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    verify: bool = True,
    base_url: str = OFFICIAL_URL,
    cache_dir: str | os.PathLike[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> FashionMNIST:
    """Load Fashion-MNIST, finding or downloading the files as :func:`locate_fashion_mnist` does.

    Each file is read once: it is decompressed in memory, its SHA-256 checked (when ``verify``),
    then parsed. The structure is always checked: images (N, 28, 28) uint8, labels (N,) in 0..9,
    and as many labels as images.

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        Directory that must hold the files; nothing else is searched when it is given.
    download : bool, default True
        Whether to download the files when no copy is found.
    verify : bool, default True
        Check the SHA-256 of each decompressed file against the official one. Turn it off only to
        load other data in the same format (e.g. small generated files in tests).
    base_url : str, default OFFICIAL_URL
        URL of the directory serving ``NAME.gz`` for each file.
    cache_dir : str or os.PathLike, optional
        The cache directory, instead of ``$XDG_CACHE_HOME/mlpkit/fashion-mnist``.
    timeout : float, default 60.0
        Seconds to wait for the server before a download gives up.

    Returns
    -------
    FashionMNIST
        ``x_train`` (60000, 784) uint8, ``y_train`` (60000,) int64, ``x_test`` (10000, 784) uint8,
        ``y_test`` (10000,) int64, ``classes`` and ``data_dir``.

    Raises
    ------
    DataNotFoundError
        If the files are not found and cannot be downloaded (see :func:`locate_fashion_mnist`).
    ChecksumError
        If ``verify`` and a file's decompressed bytes do not have the official SHA-256.
    DataFormatError
        If a file is a corrupted ``.gz``, malformed IDX, or has the wrong shape, dtype or labels.
    """
    check_positive_float("timeout", timeout)
    return _load(
        FASHION_MNIST,
        data_dir,
        download=download,
        verify=verify,
        base_url=base_url,
        cache_dir=cache_dir,
        timeout=timeout,
    )
