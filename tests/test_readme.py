"""The README's Python examples run as printed, on small generated Fashion-MNIST files.

Every ```python block of README.md is executed in a fresh namespace. The examples load the data
with ``load_fashion_mnist()``, which searches ``$MLPKIT_DATA`` first: the test points it at the
generated files of tests/fakedata.py (300 training and 100 test images) and describes those
files in the loader's data-set spec, so the loader verifies their checksums as it would the
official ones. Nothing in an example is rewritten, so an example that breaks fails here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

from fakedata import N_TEST, N_TRAIN, write_fake_fashion_mnist
from mlpkit.data import fashion_mnist
from mlpkit.data.idx import decompress_if_gzipped

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"^```python\n(.*?)^```\s*$", re.DOTALL | re.MULTILINE)


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(line number of the opening fence, code) of every ```python block."""
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in _BLOCK.finditer(text)]


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


def test_the_readme_has_the_examples_this_test_runs():
    assert len(BLOCKS) >= 2
    assert any("NumpyTrainer" in code for _, code in BLOCKS)
    assert any("mlpkit.sklearn" in code for _, code in BLOCKS)
    assert any("mlpkit.autograd" in code for _, code in BLOCKS)


def test_blocks_are_found_with_their_line_numbers():
    text = "# t\n\n```python\nx = 1\n```\n\n```bash\nls\n```\n```python\ny = 2\n```\n"
    assert python_blocks(text) == [(3, "x = 1\n"), (10, "y = 2\n")]


@pytest.fixture
def fake_fashion_mnist(tmp_path, monkeypatch):
    """$MLPKIT_DATA with the generated files, and the loader's spec describing them."""
    directory = write_fake_fashion_mnist(tmp_path / "fashion-mnist")
    monkeypatch.setenv("MLPKIT_DATA", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))      # never the user's cache

    def describe(file: fashion_mnist.IdxFileSpec) -> fashion_mnist.IdxFileSpec:
        path = next(directory.glob(file.name + "*"))
        payload = decompress_if_gzipped(path.read_bytes(), str(path))
        return dataclasses.replace(file, sha256=hashlib.sha256(payload).hexdigest(), size=len(payload))

    spec = fashion_mnist.FASHION_MNIST
    keys = ("train_images", "train_labels", "test_images", "test_labels")
    fake = dataclasses.replace(spec, **{key: describe(getattr(spec, key)) for key in keys})
    monkeypatch.setattr(fashion_mnist, "FASHION_MNIST", fake)
    return directory


@pytest.mark.parametrize(("line", "code"), BLOCKS, ids=[f"README.md:{line}" for line, _ in BLOCKS])
def test_readme_example_runs(line, code, fake_fashion_mnist):
    namespace: dict[str, object] = {"__name__": f"readme_line_{line}"}
    exec(compile(code, f"README.md:{line}", "exec"), namespace)        # the README's own code
    if "data" in namespace:                                            # it loaded the generated files
        data = namespace["data"]
        assert data.data_dir == fake_fashion_mnist
        assert (len(data.x_train), len(data.x_test)) == (N_TRAIN, N_TEST)
    if "history" in namespace:                                         # the NumPy engine example
        assert [r["epoch"] for r in namespace["history"].records] == list(range(1, 11))
        x_train, x_val = namespace["x_train"], namespace["x_val"]
        assert (len(x_train), len(x_val)) == (N_TRAIN - N_TRAIN // 12, N_TRAIN // 12)
        assert x_train.dtype == np.float32 and x_train.min() >= 0 and x_train.max() <= 1
        assert x_train.max() > 0.5                                     # scaled by 255, not by 255²
        assert 0.0 <= namespace["test_accuracy"] <= 1.0
    if "accuracy" in namespace:                                        # the estimator example
        assert 0.0 <= namespace["accuracy"] <= 1.0
    if "dot" in namespace:                                             # the autograd example
        assert namespace["dot"].startswith("digraph autograd {")
        grads = [p.grad for p in namespace["net"].parameters()]
        assert len(grads) == 2 * 8 + 8 + 8 * 2 + 2 and any(g != 0.0 for g in grads)
