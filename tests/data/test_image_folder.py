"""Image folders (one subfolder per class): colour resolution, resizing, skipped files, errors, splits.

Every image is generated with Pillow into tmp_path; nothing is downloaded or read from the repository.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PIL")
from PIL import Image

from mlpkit.data.image_folder import (
    COLOR_MODES,
    IMAGE_SUFFIXES,
    ImageFolder,
    Skipped,
    find_image_splits,
    is_image_folder,
    load_image,
    read_image_folder,
    resolve_color,
)
from mlpkit.errors import DataFormatError, DataNotFoundError

SIZE = 6
RED, TEAL = (200, 30, 10), (13, 150, 171)
GREY = 77


def _solid(path: Path, mode: str, value: int | tuple[int, ...], size: tuple[int, int] = (SIZE, SIZE)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value).save(path)
    return path


def _luma(rgb: tuple[int, int, int]) -> int:
    """ITU-R 601-2 luma as Pillow's "L" conversion computes it, rounded half up."""
    r, g, b = rgb
    return int(r * 299 / 1000 + g * 587 / 1000 + b * 114 / 1000 + 0.5)


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """cats: 2 RGB images, a grayscale one, a corrupt PNG; dogs: one RGB image and a text file."""
    root = tmp_path / "pets"
    _solid(root / "cat" / "a.png", "RGB", RED)
    _solid(root / "cat" / "b.png", "RGB", TEAL)
    (root / "cat" / "bad.png").write_bytes(b"not a png")
    _solid(root / "cat" / "c.png", "L", GREY)
    (root / "cat" / ".DS_Store").write_bytes(b"\0\1")          # hidden: ignored without a word
    _solid(root / "dog" / "d.png", "RGB", TEAL)
    (root / "dog" / "notes.txt").write_text("a dog\n")
    (root / ".cache").mkdir()                                  # hidden folder: not a class
    return root


def test_auto_color_reads_a_grey_rgb_mix_as_rgb_and_skips_bad_files(
    mixed: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="mlpkit.data.image_folder"):
        folder = read_image_folder(mixed, size=SIZE)

    assert isinstance(folder, ImageFolder)
    assert folder.color == "rgb"
    assert folder.classes == ("cat", "dog")
    assert folder.images.shape == (4, SIZE, SIZE, 3) and folder.images.dtype == np.uint8
    assert folder.labels.dtype == np.int64 and folder.labels.tolist() == [0, 0, 0, 1]
    assert [Path(p).name for p in folder.paths] == ["a.png", "b.png", "c.png", "d.png"]
    assert (folder.images[0] == RED).all() and (folder.images[1] == TEAL).all()
    assert (folder.images[2] == GREY).all()            # grey repeated in R, G and B
    assert (folder.images[3] == TEAL).all()

    bad, notes = str(mixed / "cat" / "bad.png"), str(mixed / "dog" / "notes.txt")
    assert [s.path for s in folder.skipped] == [notes, bad]
    by_path = {s.path: s.reason for s in folder.skipped}
    assert by_path[notes] == "not an image (suffix '.txt')"
    assert by_path[bad].startswith("cannot be read (") and "bad.png" in by_path[bad]
    assert all(isinstance(s, Skipped) for s in folder.skipped)

    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(bad in m and "cannot be read" in m for m in messages)
    assert any(notes in m and "not an image" in m for m in messages)
    assert messages[-1] == f"2 of 6 files skipped in {mixed}"


def test_grayscale_converts_rgb_pixels_with_pillows_luma(mixed: Path) -> None:
    folder = read_image_folder(mixed, size=SIZE, color="grayscale")
    assert folder.color == "grayscale"
    assert folder.images.shape == (4, SIZE, SIZE, 1) and folder.images.dtype == np.uint8
    expected = [_luma(RED), _luma(TEAL), GREY, _luma(TEAL)]
    assert [int(np.unique(image)[0]) for image in folder.images] == expected
    assert all(np.unique(image).size == 1 for image in folder.images)


def test_auto_color_of_an_all_grey_folder_is_grayscale(tmp_path: Path) -> None:
    _solid(tmp_path / "a" / "x.png", "L", 10)
    _solid(tmp_path / "b" / "y.png", "LA", (200, 255))
    folder = read_image_folder(tmp_path, size=SIZE)
    assert folder.color == "grayscale" and folder.images.shape == (2, SIZE, SIZE, 1)
    assert folder.images[:, :, :, 0].reshape(2, -1).tolist() == [[10] * SIZE**2, [200] * SIZE**2]


def test_resolve_color(tmp_path: Path) -> None:
    grey = _solid(tmp_path / "g.png", "L", 3)
    palette = tmp_path / "p.png"
    Image.new("RGB", (4, 4), RED).convert("P").save(palette)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG nonsense")
    with Image.open(palette) as image:
        assert image.mode == "P"
    assert resolve_color([grey, broken], "auto") == "grayscale"     # the unreadable file is passed over
    assert resolve_color([grey, palette], "auto") == "rgb"
    assert resolve_color([palette], "grayscale") == "grayscale"
    assert resolve_color([], "rgb") == "rgb"
    with pytest.raises(ValueError, match=r"color must be one of .*'colour'"):
        resolve_color([grey], "colour")


def test_resizing_to_a_square_keeps_a_solid_colour(tmp_path: Path) -> None:
    wide = _solid(tmp_path / "wide.png", "RGB", RED, size=(8, 4))
    image = load_image(wide, size=4, color="rgb")
    assert image.shape == (4, 4, 3) and image.dtype == np.uint8
    assert (image == RED).all()
    assert load_image(wide, size=4, color="grayscale").shape == (4, 4, 1)


def test_resizing_interpolates_bilinearly(tmp_path: Path, rng: np.random.Generator) -> None:
    pixels = rng.integers(0, 256, size=(16, 12, 3), dtype=np.uint8)
    path = tmp_path / "noise.png"
    Image.fromarray(pixels).save(path)
    expected = np.asarray(Image.fromarray(pixels).resize((5, 5), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(load_image(path, size=5, color="rgb"), expected)
    # already the requested size: the pixels come back untouched
    square = tmp_path / "square.png"
    Image.fromarray(pixels[:12]).save(square)
    np.testing.assert_array_equal(load_image(square, size=12, color="rgb"), pixels[:12])


def test_load_image_errors_name_the_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DataFormatError, match=re.escape(f"{bad}: cannot be read")):
        load_image(bad, size=4, color="rgb")
    with pytest.raises(DataNotFoundError, match=r"no image file at .*missing\.png"):
        load_image(tmp_path / "missing.png", size=4, color="rgb")
    with pytest.raises(ValueError, match="color must be one of"):
        load_image(bad, size=4, color="auto")


def test_a_truncated_image_is_skipped(tmp_path: Path, rng: np.random.Generator) -> None:
    _solid(tmp_path / "a" / "ok.png", "RGB", RED)
    _solid(tmp_path / "b" / "ok.png", "RGB", TEAL)
    Image.fromarray(rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)).save(tmp_path / "b" / "cut.png")
    data = (tmp_path / "b" / "cut.png").read_bytes()
    (tmp_path / "b" / "cut.png").write_bytes(data[: len(data) // 2])   # header intact, pixels cut off
    folder = read_image_folder(tmp_path, size=SIZE)
    assert [Path(s.path).name for s in folder.skipped] == ["cut.png"]
    assert folder.skipped[0].reason.startswith("cannot be read (")
    assert folder.labels.tolist() == [0, 1]


def test_strict_raises_on_the_first_bad_file(mixed: Path) -> None:
    (mixed / "dog" / "notes.txt").unlink()
    with pytest.raises(DataFormatError, match=r"bad\.png: cannot be read") as info:
        read_image_folder(mixed, size=SIZE, strict=True)
    assert str(mixed / "cat" / "bad.png") in str(info.value)


def test_strict_raises_on_a_non_image(mixed: Path) -> None:
    with pytest.raises(DataFormatError, match=r"notes\.txt: not an image \(suffix '\.txt'\)"):
        read_image_folder(mixed, size=SIZE, strict=True)


def test_folder_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataNotFoundError, match="nowhere"):
        read_image_folder(missing, size=SIZE)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataFormatError, match="empty holds no class folders") as info:
        read_image_folder(empty, size=SIZE)
    assert f"({empty}/<class>/<image>)" in str(info.value)

    flat = tmp_path / "flat"
    _solid(flat / "a.png", "RGB", RED)
    _solid(flat / "b.png", "RGB", TEAL)
    with pytest.raises(DataFormatError, match="flat holds no class folders"):
        read_image_folder(flat, size=SIZE)

    textonly = tmp_path / "textonly"
    _solid(textonly / "cat" / "a.png", "RGB", RED)
    (textonly / "dog").mkdir()
    (textonly / "dog" / "readme.txt").write_text("no dogs yet")
    with pytest.raises(DataFormatError, match=r"class folder .*dog holds no images \(1 file\(s\) skipped\)"):
        read_image_folder(textonly, size=SIZE)

    single = tmp_path / "single"
    _solid(single / "cat" / "a.png", "RGB", RED)
    with pytest.raises(DataFormatError, match=r"single holds one class folder only \('cat'\)"):
        read_image_folder(single, size=SIZE)

    file_root = _solid(tmp_path / "x.png", "RGB", RED)
    with pytest.raises(DataNotFoundError, match="it is a file"):
        read_image_folder(file_root, size=SIZE)


@pytest.mark.parametrize(
    ("size", "color"), [(0, "auto"), (-3, "rgb"), (2.5, "rgb"), (True, "rgb"), (4, "RGB")]
)
def test_bad_arguments_name_the_value(mixed: Path, size: object, color: str) -> None:
    with pytest.raises(ValueError, match=repr(size) if color in COLOR_MODES else "'RGB'"):
        read_image_folder(mixed, size=size, color=color)  # type: ignore[arg-type]


def test_given_classes_label_a_val_folder_and_refuse_unknown_ones(tmp_path: Path) -> None:
    val = tmp_path / "val"
    _solid(val / "dog" / "a.png", "RGB", TEAL)            # no "cat" here: fine
    folder = read_image_folder(val, size=SIZE, classes=["bird", "cat", "dog"])
    assert folder.classes == ("bird", "cat", "dog") and folder.labels.tolist() == [2]

    _solid(val / "horse" / "a.png", "RGB", RED)
    unknown = r"class folder .*horse is not one of the training classes"
    with pytest.raises(DataFormatError, match=unknown) as info:
        read_image_folder(val, size=SIZE, classes=("bird", "cat", "dog"))
    assert "['bird', 'cat', 'dog']" in str(info.value)


def test_one_image_per_class(tmp_path: Path) -> None:
    _solid(tmp_path / "b" / "only.png", "RGB", TEAL)
    _solid(tmp_path / "a" / "only.jpg", "RGB", RED)
    folder = read_image_folder(tmp_path, size=SIZE)
    assert folder.images.shape == (2, SIZE, SIZE, 3) and folder.labels.tolist() == [0, 1]
    assert folder.classes == ("a", "b") and folder.skipped == ()
    assert np.abs(folder.images[0].astype(int) - RED).max() <= 3     # JPEG is lossy, barely on a flat colour


def test_uppercase_suffixes_are_images(tmp_path: Path) -> None:
    _solid(tmp_path / "a" / "X.PNG", "RGB", RED)
    _solid(tmp_path / "b" / "Y.Png", "RGB", TEAL)
    assert read_image_folder(tmp_path, size=SIZE).paths[0].endswith("X.PNG")
    assert ".png" in IMAGE_SUFFIXES


def test_find_image_splits(tmp_path: Path) -> None:
    split = tmp_path / "split"
    for name in ("train", "valid", "test"):
        (split / name / "cat").mkdir(parents=True)
    expected = {"train": split / "train", "val": split / "valid", "test": split / "test"}
    assert find_image_splits(split) == expected

    (split / "valid").rename(split / "val")
    assert find_image_splits(split)["val"] == split / "val"
    (split / "val").rename(split / ".val")                # hidden: no validation split
    assert find_image_splits(split) == {"train": split / "train", "test": split / "test"}

    plain = tmp_path / "plain"
    (plain / "cat").mkdir(parents=True)
    (plain / "dog").mkdir()
    assert find_image_splits(plain) == {"all": plain}

    half = tmp_path / "half"
    (half / "train" / "cat").mkdir(parents=True)
    with pytest.raises(DataFormatError, match="half holds a train/ folder but no test/ folder"):
        find_image_splits(half)
    (half / "train").rename(half / "test")
    with pytest.raises(DataFormatError, match="holds a test/ folder but no train/ folder"):
        find_image_splits(half)

    with pytest.raises(DataNotFoundError, match="nowhere"):
        find_image_splits(tmp_path / "nowhere")


def test_is_image_folder(tmp_path: Path) -> None:
    images = tmp_path / "images"
    (images / "cat").mkdir(parents=True)
    tables = tmp_path / "tables"
    tables.mkdir()
    for name in ("train.csv", "valid.csv", "test.csv"):
        (tables / name).write_text("x,y\n1,0\n")
    (tables / ".git").mkdir()                             # hidden folders do not count
    assert is_image_folder(images)
    assert not is_image_folder(tables)
    assert not is_image_folder(tmp_path / "nowhere")
    assert not is_image_folder(tables / "train.csv")
