"""``mlpkit train --data FOLDER``: a folder of images, one subfolder per class, through the image task."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fakedata import run_cli
from mlpkit.config import RunConfig
from mlpkit.errors import ConfigError

SHORT = ["--epochs", "6", "--batch-size", "16", "--lr", "0.1", "--image-size", "12", "--no-progress"]


def pattern(kind: str, rng: np.random.Generator, size: int = 16) -> np.ndarray:
    """A (size, size) uint8 image: horizontal stripes, vertical stripes, or a bright centre, plus noise."""
    image = np.zeros((size, size))
    if kind == "rows":
        image[::4] = 255
    elif kind == "columns":
        image[:, ::4] = 255
    else:
        image[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 255
    return np.clip(image + rng.normal(0, 20, image.shape), 0, 255).astype(np.uint8)


def write_folder(root: Path, per_class: int = 30, *, seed: int = 0, color_every: int = 0) -> Path:
    """Three classes of PNGs; every ``color_every``-th image saved as RGB (a tinted copy)."""
    rng = np.random.default_rng(seed)
    for kind in ("centre", "columns", "rows"):
        folder = root / kind
        folder.mkdir(parents=True)
        for i in range(per_class):
            grey = pattern(kind, rng)
            if color_every and i % color_every == 0:
                Image.fromarray(np.stack([grey, grey // 2, grey], axis=-1), "RGB").save(folder / f"{i}.png")
            else:
                Image.fromarray(grey, "L").save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_folder(tmp_path_factory.mktemp("images") / "shapes")
    (root / "rows" / "broken.png").write_bytes(b"not a png at all")
    (root / "columns" / "README.txt").write_text("notes, not an image")
    return root


@pytest.fixture(scope="module")
def folder_run(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("runs") / "shapes"
    code, _, err = run_cli("train", "--data", folder, *SHORT, "--out", out)
    assert code == 0, err
    return out, err


def test_a_class_folder_trains_as_images_with_its_class_names(folder_run: tuple[Path, str]) -> None:
    out, err = folder_run
    summary = json.loads((out / "summary.json").read_text())
    # 90 readable images split 70/15/15 per class: round(0.15 x 30) = round(4.5) = 4 (to even) for
    # test and validation in each of the 3 classes.
    assert (summary["n_train"], summary["n_val"], summary["n_test"]) == (66, 12, 12)
    assert summary["test_accuracy"] > 0.8  # stripes against blocks: easy at 12x12
    config = json.loads((out / "config.json").read_text())
    assert (config["task"], config["data"]["image_size"], config["data"]["color"]) == (
        "fashion_mnist",
        12,
        "auto",
    )
    assert "centre" in (out / "report.md").read_text() and (out / "predictions.png").is_file()
    # The two files that are not readable images are named and counted, not silently dropped.
    assert "broken.png" in err and "README.txt" in err


def test_evaluate_and_predict_read_the_images_as_training_did(
    folder_run: tuple[Path, str], tmp_path: Path
) -> None:
    out, _ = folder_run
    summary = json.loads((out / "summary.json").read_text())
    code, stdout, err = run_cli("evaluate", out, "--json")
    assert code == 0, err
    assert json.loads(stdout)["test_accuracy"] == summary["test_accuracy"]
    new = tmp_path / "new"
    new.mkdir()
    rng = np.random.default_rng(7)
    for kind in ("rows", "columns"):
        Image.fromarray(pattern(kind, rng, size=20), "L").save(new / f"{kind}.png")  # another size: resized
    code, stdout, err = run_cli("predict", out, new, "--probabilities")
    assert code == 0, err
    table = pd.read_csv(io.StringIO(stdout))
    assert list(table["name"]) == ["columns.png", "rows.png"]
    assert list(table["class_name"]) == ["columns", "rows"]
    np.testing.assert_allclose(table[["centre", "columns", "rows"]].sum(axis=1), 1.0, atol=1e-5)


def test_a_grayscale_rgb_mix_is_read_in_color_and_a_vit_takes_three_channels(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "mix", per_class=12, color_every=3)
    out = tmp_path / "vit"
    code, _, err = run_cli(
        "train",
        "--data",
        root,
        "--model",
        "vit",
        "--patch-size",
        "4",
        "--dim",
        "16",
        "--depth",
        "1",
        "--heads",
        "2",
        "--mlp-dim",
        "16",
        "--epochs",
        "1",
        "--image-size",
        "12",
        "--no-progress",
        "--out",
        out,
        "--device",
        "cpu",
    )
    assert code == 0, err
    config = json.loads((out / "config.json").read_text())
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), "numpy") as f:
        vit = json.loads(f.metadata()["vit"])
    assert (vit["channels"], vit["image_size"], config["model"]["name"]) == (3, [12, 12], "vit")


def test_train_val_test_subfolders_are_read_as_given(tmp_path: Path) -> None:
    root = tmp_path / "given"
    write_folder(root / "train", per_class=10, seed=1)
    write_folder(root / "val", per_class=3, seed=2)
    write_folder(root / "test", per_class=4, seed=3)
    out = tmp_path / "run"
    code, _, err = run_cli("train", "--data", root, *SHORT, "--out", out)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["n_train"], summary["n_val"], summary["n_test"]) == (30, 9, 12)


def test_strict_refuses_an_unreadable_file_by_path(folder: Path, tmp_path: Path) -> None:
    code, _, err = run_cli("train", "--data", folder, *SHORT, "--strict", "--out", tmp_path / "r")
    assert code != 0 and "README.txt: not an image (suffix '.txt')" in err
    assert not (tmp_path / "r").exists()


def test_shift_flip_on_color_images_is_refused(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "mix", per_class=6, color_every=2)
    code, _, err = run_cli(
        "train", "--data", root, *SHORT, "--augment", "shift_flip", "--out", tmp_path / "r"
    )
    assert code != 0 and "--color grayscale" in err


def test_an_empty_folder_and_a_class_without_images_are_named(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    (empty / "cats").mkdir(parents=True)
    (empty / "dogs").mkdir()
    (empty / "dogs" / "x.png").write_bytes(b"")
    code, _, err = run_cli("train", "--data", empty, *SHORT)
    assert code != 0 and "cats" in err and "holds no images" in err


def test_folder_settings_without_a_folder_are_refused() -> None:
    with pytest.raises(
        ConfigError, match=r"image_size applies to an image folder \(images = DIR\), got image_size=64"
    ):
        RunConfig.from_dict({"data": {"image_size": 64}})
    with pytest.raises(ConfigError, match="val_size applies to Fashion-MNIST only"):
        RunConfig.from_dict({"data": {"images": "photos", "val_size": 100}})
