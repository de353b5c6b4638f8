"""Fashion-MNIST: locate order, download from a local server, checksums, structure checks, real data.

Every test runs on small generated IDX files. The system directory, the user cache and
$MLPKIT_DATA point into tmp_path, and the only server is a local http.server on 127.0.0.1.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.server
import logging
import os
import re
import socket
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlpkit.data import fashion_mnist as fm
from mlpkit.data.fashion_mnist import (
    FASHION_MNIST_CLASSES,
    OFFICIAL_URL,
    default_cache_dir,
    load_fashion_mnist,
    locate_fashion_mnist,
)
from mlpkit.data.idx import write_idx
from mlpkit.errors import ChecksumError, DataFormatError, DataNotFoundError

REAL_DIR = Path("/usr/share/datasets/fashion-mnist")
NAMES = [f.name for f in fm.FASHION_MNIST.files]
N_TRAIN, N_TEST = 12, 5


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep every test away from the real system dir, user cache, $MLPKIT_DATA, proxies and internet."""
    monkeypatch.setattr(fm, "SYSTEM_DATA_ROOT", tmp_path / "usr-share-datasets")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv("MLPKIT_DATA", raising=False)
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    real_urlopen = urllib.request.urlopen

    def local_only(request: Any, *args: Any, **kwargs: Any) -> Any:
        url = request.full_url if isinstance(request, urllib.request.Request) else request
        host = urllib.parse.urlsplit(url).hostname
        if host != "127.0.0.1":
            raise AssertionError(f"test tried to reach {url}")
        return real_urlopen(request, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", local_only)


def make_files(
    directory: Path,
    rng: np.random.Generator,
    *,
    gz: bool = True,
    overrides: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Write four small Fashion-MNIST-like IDX files; ``overrides`` replaces arrays by file name."""
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, size=(N_TRAIN, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, size=N_TRAIN, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, size=(N_TEST, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, size=N_TEST, dtype=np.uint8),
    }
    arrays.update(overrides or {})
    for name, array in arrays.items():
        write_idx(directory / (f"{name}.gz" if gz else name), array)
    return arrays


def spec_matching(directory: Path) -> fm.DatasetSpec:
    """The Fashion-MNIST spec with the checksums of the generated files in ``directory``."""
    files = []
    for file in fm.FASHION_MNIST.files:
        path = directory / f"{file.name}.gz"
        if path.exists():
            payload = gzip.decompress(path.read_bytes())
        else:
            payload = (directory / file.name).read_bytes()
        files.append(dataclasses.replace(file, sha256=hashlib.sha256(payload).hexdigest(), size=len(payload)))
    train_images, train_labels, test_images, test_labels = files
    return dataclasses.replace(
        fm.FASHION_MNIST,
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
    )


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


@pytest.fixture
def refusing_url() -> Iterator[str]:
    """A URL on a port that is bound but not listening, so that connections are refused.

    Holding the socket for the whole test keeps any other process from taking the port.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"


@dataclasses.dataclass
class Server:
    url: str
    root: Path
    requests: list[str]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A local HTTP server in a thread, serving tmp_path/server and recording each GET path."""
    root = tmp_path / "server"
    root.mkdir()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self) -> None:
            requests.append(self.path)
            super().do_GET()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{httpd.server_address[1]}/", root, requests)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_classes_in_label_order() -> None:
    assert len(FASHION_MNIST_CLASSES) == 10
    assert FASHION_MNIST_CLASSES[0] == "T-shirt/top"
    assert FASHION_MNIST_CLASSES[9] == "Ankle boot"


def test_official_sizes_follow_from_the_idx_format() -> None:
    # header: 4-byte magic + 4 bytes per dim; images are 28*28 uint8, labels one uint8 each
    spec = fm.FASHION_MNIST
    assert spec.train_images.size == 16 + 60000 * 28 * 28
    assert spec.train_labels.size == 8 + 60000
    assert spec.test_images.size == 16 + 10000 * 28 * 28
    assert spec.test_labels.size == 8 + 10000


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "uncompressed"])
def test_load_from_data_dir(
    tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch, gz: bool
) -> None:
    data_dir = tmp_path / "data"
    arrays = make_files(data_dir, rng, gz=gz)
    monkeypatch.setattr(fm, "FASHION_MNIST", spec_matching(data_dir))
    data = load_fashion_mnist(data_dir, download=False)  # verify=True with the generated checksums
    assert data.x_train.shape == (N_TRAIN, 784) and data.x_train.dtype == np.uint8
    assert data.y_train.shape == (N_TRAIN,) and data.y_train.dtype == np.int64
    assert data.x_test.shape == (N_TEST, 784) and data.y_test.shape == (N_TEST,)
    # row i of x is image i flattened in C order
    np.testing.assert_array_equal(data.x_train[3], arrays["train-images-idx3-ubyte"][3].ravel())
    np.testing.assert_array_equal(data.x_test.reshape(N_TEST, 28, 28), arrays["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(data.y_train, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(data.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert data.classes == FASHION_MNIST_CLASSES
    assert data.data_dir == data_dir
    assert "x_train=(12, 784) uint8" in repr(data)


def test_verify_rejects_files_that_are_not_the_official_ones(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    data_dir = tmp_path / "data"
    make_files(data_dir, rng)
    path = data_dir / "train-images-idx3-ubyte.gz"
    actual = hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest()
    message = (
        f"{path}: checksum mismatch for train-images-idx3-ubyte: the decompressed data has sha256 {actual} "
        f"({16 + N_TRAIN * 784} bytes), expected {fm.FASHION_MNIST.train_images.sha256} (47040016 bytes)"
    )
    with pytest.raises(ChecksumError, match=re.escape(message)):
        load_fashion_mnist(data_dir, download=False)
    data = load_fashion_mnist(data_dir, download=False, verify=False)
    assert data.x_train.shape == (N_TRAIN, 784)


@pytest.mark.parametrize(
    ("override", "bad_file", "message"),
    [
        (
            {"train-images-idx3-ubyte": np.zeros((N_TRAIN, 28, 27), dtype=np.uint8)},
            "train-images-idx3-ubyte.gz",
            "expected images of shape (N, 28, 28) and dtype uint8, got shape (12, 28, 27) and dtype uint8",
        ),
        (
            {"t10k-images-idx3-ubyte": np.zeros((N_TEST, 28, 28), dtype=np.float32)},
            "t10k-images-idx3-ubyte.gz",
            "expected images of shape (N, 28, 28) and dtype uint8, got shape (5, 28, 28) and dtype float32",
        ),
        (
            {"train-labels-idx1-ubyte": np.array([1, 2, 3, 10, 4, 5, 6, 7, 8, 9, 0, 11], dtype=np.uint8)},
            "train-labels-idx1-ubyte.gz",
            "labels must lie in 0..9, found 10 at index 3 (2 bad labels in all)",
        ),
        (
            {"t10k-labels-idx1-ubyte": np.zeros((N_TEST, 2), dtype=np.uint8)},
            "t10k-labels-idx1-ubyte.gz",
            "expected labels of shape (N,) and an integer dtype, got shape (5, 2) and dtype uint8",
        ),
    ],
)
def test_structure_is_checked_without_verify(
    tmp_path: Path, rng: np.random.Generator, override: dict[str, np.ndarray], bad_file: str, message: str
) -> None:
    data_dir = tmp_path / "data"
    make_files(data_dir, rng, overrides=override)
    with pytest.raises(DataFormatError, match=re.escape(f"{data_dir / bad_file}: {message}")):
        load_fashion_mnist(data_dir, download=False, verify=False)


def test_image_and_label_counts_must_match(tmp_path: Path, rng: np.random.Generator) -> None:
    data_dir = tmp_path / "data"
    make_files(data_dir, rng, overrides={"t10k-labels-idx1-ubyte": np.zeros(N_TEST + 1, dtype=np.uint8)})
    images, labels = data_dir / "t10k-images-idx3-ubyte.gz", data_dir / "t10k-labels-idx1-ubyte.gz"
    message = f"{images} holds {N_TEST} images but {labels} holds {N_TEST + 1} labels"
    with pytest.raises(DataFormatError, match=re.escape(message)):
        load_fashion_mnist(data_dir, download=False, verify=False)


def test_corrupted_gzip_is_reported_with_its_path(tmp_path: Path, rng: np.random.Generator) -> None:
    data_dir = tmp_path / "data"
    make_files(data_dir, rng)
    path = data_dir / "train-images-idx3-ubyte.gz"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(DataFormatError, match=re.escape(f"{path}: the .gz file is corrupted or truncated")):
        load_fashion_mnist(data_dir, download=False, verify=False)


def test_locate_order(tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit, env = tmp_path / "explicit", tmp_path / "env"
    cache, system = tmp_path / "xdg-cache" / "mlpkit" / "fashion-mnist", fm.SYSTEM_DATA_ROOT / "fashion-mnist"
    for directory in (explicit, env, cache, system):
        make_files(directory, rng)
    monkeypatch.setenv("MLPKIT_DATA", str(env))

    assert locate_fashion_mnist(explicit, download=False) == explicit
    assert locate_fashion_mnist(download=False) == env
    monkeypatch.delenv("MLPKIT_DATA")
    assert locate_fashion_mnist(download=False) == cache
    (cache / "t10k-labels-idx1-ubyte.gz").unlink()  # an incomplete cache does not count
    assert locate_fashion_mnist(download=False) == system


def test_a_mistyped_mlpkit_data_is_reported_even_when_the_cache_has_the_files(
    tmp_path: Path,
    rng: np.random.Generator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = tmp_path / "xdg-cache" / "mlpkit" / "fashion-mnist"
    make_files(cache, rng)
    monkeypatch.setenv("MLPKIT_DATA", str(tmp_path / "typo"))
    with caplog.at_level(logging.WARNING, logger="mlpkit.data.fashion_mnist"):
        assert locate_fashion_mnist(download=False) == cache
    assert f"$MLPKIT_DATA={tmp_path / 'typo'} does not hold the Fashion-MNIST files" in caplog.text


def test_mlpkit_data_may_hold_a_fashion_mnist_subdirectory(
    tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_files(tmp_path / "datasets" / "fashion-mnist", rng)
    monkeypatch.setenv("MLPKIT_DATA", str(tmp_path / "datasets"))
    assert locate_fashion_mnist(download=False) == tmp_path / "datasets" / "fashion-mnist"


def test_cache_dir_argument_overrides_xdg(tmp_path: Path, rng: np.random.Generator) -> None:
    make_files(tmp_path / "xdg-cache" / "mlpkit" / "fashion-mnist", rng)
    make_files(tmp_path / "my-cache", rng)
    assert locate_fashion_mnist(download=False, cache_dir=tmp_path / "my-cache") == tmp_path / "my-cache"


def test_default_cache_dir_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_cache_dir() == tmp_path / "xdg-cache" / "mlpkit" / "fashion-mnist"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # the XDG spec says to ignore relative paths
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "mlpkit" / "fashion-mnist"


def test_explicit_data_dir_without_files_does_not_fall_back(
    tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_files(fm.SYSTEM_DATA_ROOT / "fashion-mnist", rng)
    make_files(tmp_path / "env", rng)
    monkeypatch.setenv("MLPKIT_DATA", str(tmp_path / "env"))
    partial = tmp_path / "partial"
    make_files(partial, rng)
    (partial / "train-labels-idx1-ubyte.gz").unlink()
    message = f"Fashion-MNIST not found in data_dir {partial} (missing train-labels-idx1-ubyte)."
    with pytest.raises(DataNotFoundError, match=re.escape(message)):
        locate_fashion_mnist(partial)
    missing = tmp_path / "typo"
    message = f"not found in data_dir {missing} (does not exist). Expected the files train-images-idx3-ubyte"
    with pytest.raises(DataNotFoundError, match=re.escape(message)):
        load_fashion_mnist(missing)


def test_download_once_into_cache(
    tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch, server: Server
) -> None:
    arrays = make_files(server.root, rng)
    monkeypatch.setattr(fm, "FASHION_MNIST", spec_matching(server.root))
    cache = tmp_path / "cache"

    assert locate_fashion_mnist(base_url=server.url, cache_dir=cache) == cache
    assert sorted(server.requests) == sorted(f"/{name}.gz" for name in NAMES)
    assert listing(cache) == sorted(f"{name}.gz" for name in NAMES)  # no temporary files left
    for name in NAMES:
        assert (cache / f"{name}.gz").read_bytes() == (server.root / f"{name}.gz").read_bytes()

    data = load_fashion_mnist(base_url=server.url, cache_dir=cache)  # second call: from the cache
    assert len(server.requests) == 4
    np.testing.assert_array_equal(data.y_train, arrays["train-labels-idx1-ubyte"])
    assert data.data_dir == cache


def test_download_fetches_only_missing_files(
    tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch, server: Server
) -> None:
    make_files(server.root, rng)
    monkeypatch.setattr(fm, "FASHION_MNIST", spec_matching(server.root))
    cache = tmp_path / "cache"
    cache.mkdir()
    for name in NAMES[:2]:  # an earlier run placed two verified files
        (cache / f"{name}.gz").write_bytes((server.root / f"{name}.gz").read_bytes())
    locate_fashion_mnist(base_url=server.url.rstrip("/"), cache_dir=cache)
    assert sorted(server.requests) == sorted(f"/{name}.gz" for name in NAMES[2:])
    assert listing(cache) == sorted(f"{name}.gz" for name in NAMES)


def test_download_checksum_mismatch_leaves_nothing(
    tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch, server: Server
) -> None:
    make_files(server.root, rng)
    spec = spec_matching(server.root)
    wrong = "0" * 64
    actual = spec.test_labels.sha256
    monkeypatch.setattr(
        fm,
        "FASHION_MNIST",
        dataclasses.replace(spec, test_labels=dataclasses.replace(spec.test_labels, sha256=wrong)),
    )
    cache = tmp_path / "cache"
    url = f"{server.url}t10k-labels-idx1-ubyte.gz"
    message = f"{url}: checksum mismatch for t10k-labels-idx1-ubyte: the decompressed data has sha256 "
    with pytest.raises(ChecksumError, match=re.escape(message) + f"{actual} .*expected {wrong}"):
        locate_fashion_mnist(base_url=server.url, cache_dir=cache)
    assert len(server.requests) == 4  # the three good files were fetched too, and discarded with it
    assert listing(cache) == []


def test_offline_lists_every_place_and_how_to_get_the_data(tmp_path: Path, refusing_url: str) -> None:
    url = refusing_url
    cache = tmp_path / "cache"
    with pytest.raises(DataNotFoundError) as info:
        load_fashion_mnist(base_url=url, cache_dir=cache, timeout=5)
    message = str(info.value)
    system = fm.SYSTEM_DATA_ROOT / "fashion-mnist"
    for expected in [
        "Fashion-MNIST not found",
        "$MLPKIT_DATA: not set",
        f"{cache} (user cache): does not exist",
        f"{system} (system): does not exist",
        f"Downloading from {url} failed: {url}train-images-idx3-ubyte.gz: ",
        "Connection refused",
        "apt-get install dataset-fashion-mnist",
        "MLPKIT_DATA=DIR",
        "--data-dir",
        f"download them once from {url} into {cache}",
    ]:
        assert expected in message, f"{expected!r} missing from:\n{message}"
    assert listing(cache) == []


def test_missing_file_on_server_is_a_download_failure(
    tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch, server: Server
) -> None:
    make_files(server.root, rng)
    monkeypatch.setattr(fm, "FASHION_MNIST", spec_matching(server.root))
    (server.root / "t10k-images-idx3-ubyte.gz").unlink()
    cache = tmp_path / "cache"
    message = f"{server.url}t10k-images-idx3-ubyte.gz: HTTP 404"
    with pytest.raises(DataNotFoundError, match=re.escape(message)):
        locate_fashion_mnist(base_url=server.url, cache_dir=cache)
    assert listing(cache) == []


def test_no_download_when_disabled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLPKIT_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataNotFoundError) as info:
        locate_fashion_mnist(download=False)
    message = str(info.value)
    assert "Downloading was not attempted (download=False)." in message
    assert f"{tmp_path / 'nowhere'} ($MLPKIT_DATA): does not exist" in message
    assert f"download them once from {OFFICIAL_URL}" in message


def test_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="timeout must be a positive float, got 0"):
        locate_fashion_mnist(timeout=0)


@pytest.mark.real_data
def test_real_fashion_mnist() -> None:
    if not REAL_DIR.is_dir():
        pytest.skip(f"{REAL_DIR} does not exist (apt-get install dataset-fashion-mnist)")
    data = load_fashion_mnist(REAL_DIR, download=False, verify=True)
    assert data.x_train.shape == (60000, 784) and data.x_train.dtype == np.uint8
    assert data.y_train.shape == (60000,) and data.y_train.dtype == np.int64
    assert data.x_test.shape == (10000, 784) and data.y_test.shape == (10000,)
    np.testing.assert_array_equal(np.bincount(data.y_train, minlength=10), np.full(10, 6000))
    np.testing.assert_array_equal(np.bincount(data.y_test, minlength=10), np.full(10, 1000))
    assert data.x_train.min() == 0 and data.x_train.max() == 255
    assert os.fspath(data.data_dir) == str(REAL_DIR)

