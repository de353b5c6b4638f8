"""Reading images to classify: every accepted layout, image files through Pillow, CSV label
columns, the input scale, and every error message."""

from __future__ import annotations

import dataclasses
import gzip
import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mlpkit._optional
from mlpkit.data import ImageInput
from mlpkit.data import read_images as exported_read_images
from mlpkit.data.idx import write_idx
from mlpkit.data.images import read_images
from mlpkit.errors import DataFormatError, DataNotFoundError, MissingDependencyError

BORDER_ADVICE = (
    "the model expects a light object on a black background, as in Fashion-MNIST; if this is a "
    "dark object on light paper, invert it (255 - pixels)"
)
AUTO_REFUSAL = (
    "every value lies in [0, 1], so the pixels look already scaled to [0, 1], but the model reads "
    "grey levels 0..255; pass --input-scale 1 (input_scale='1') to multiply them by 255, or "
    "--input-scale 255 if they really are grey levels"
)


def objects(rng: np.random.Generator, n: int, shape: tuple[int, int] = (28, 28)) -> np.ndarray:
    """N uint8 images like Fashion-MNIST's: a light random object on a black border, (N, H, W)."""
    images = np.zeros((n, *shape), dtype=np.uint8)
    images[:, 2:-2, 2:-2] = rng.integers(1, 256, size=(n, shape[0] - 4, shape[1] - 4))
    return images


def fails(path: Path, message: str, **kwargs: object) -> None:
    """read_images(path) raises DataFormatError with exactly ``{path}: {message}``."""
    with pytest.raises(DataFormatError, match=f"^{re.escape(f'{path}: {message}')}$"):
        read_images(path, **kwargs)  # type: ignore[arg-type]


def fails_starting(path: Path, start: str) -> None:
    """read_images(path) raises DataFormatError whose message starts with ``{path}: {start}``."""
    with pytest.raises(DataFormatError, match=f"^{re.escape(f'{path}: {start}')}"):
        read_images(path)


def write_csv(path: Path, table: np.ndarray, header: list[str] | None = None) -> Path:
    lines = [",".join(header)] if header is not None else []
    lines += [",".join(str(v) for v in row) for row in table.tolist()]
    path.write_text("\n".join(lines) + "\n")
    return path


# --- arrays: .npy and IDX --------------------------------------------------------------------


def test_a_single_28x28_image_is_one_row_equal_to_the_flattened_image(tmp_path, rng):
    image = objects(rng, 1)[0]                                          # (28, 28)
    np.save(tmp_path / "one.npy", image)
    out = read_images(tmp_path / "one.npy")
    assert isinstance(out, ImageInput)
    assert out.pixels.shape == (1, 784) and out.pixels.dtype == np.float64
    np.testing.assert_array_equal(out.pixels[0], image.reshape(784).astype(np.float64))
    assert out.names == ("one.npy:0",)
    assert out.labels is None and out.notes == ()


@pytest.mark.parametrize(
    "layout",
    ["flat", "hw", "n_flat", "n_hw", "n_hw_1", "n_1_hw"],
)
@pytest.mark.parametrize("container", ["npy", "idx", "idx.gz"])
def test_every_accepted_layout_gives_the_flattened_rows(tmp_path, rng, layout, container):
    # A non-square (H, W) = (5, 7) catches any confusion of H with W.
    images = objects(rng, 3, (5, 7))                                    # (N, H, W)
    arrays = {
        "flat": images[0].reshape(35),
        "hw": images[0],
        "n_flat": images.reshape(3, 35),
        "n_hw": images,
        "n_hw_1": images[..., np.newaxis],
        "n_1_hw": images[:, np.newaxis],
    }
    n = 1 if layout in ("flat", "hw") else 3
    path = tmp_path / f"x.{container}"
    if container == "npy":
        np.save(path, arrays[layout])
    else:
        write_idx(path, arrays[layout])
    out = read_images(path, image_shape=(5, 7))
    np.testing.assert_array_equal(out.pixels, images[:n].reshape(n, 35).astype(np.float64))
    assert out.names == tuple(f"x.{container}:{i}" for i in range(n))


def test_gzipped_npy_is_read_by_content(tmp_path, rng):
    images = objects(rng, 2)
    buffer = io.BytesIO()
    np.save(buffer, images)
    (tmp_path / "batch").write_bytes(gzip.compress(buffer.getvalue()))
    out = read_images(tmp_path / "batch")
    np.testing.assert_array_equal(out.pixels, images.reshape(2, 784))


@pytest.mark.parametrize(
    ("shape", "hint"),
    [
        ((28, 27), ""),
        ((2, 28, 27), ""),
        ((2, 2, 28, 28), ""),
        ((3, 28, 28, 3), "; colour arrays are not converted: convert them to grey levels first"),
        ((), ""),
    ],
)
def test_other_array_shapes_are_refused_naming_the_shape_and_the_accepted_ones(tmp_path, shape, hint):
    np.save(tmp_path / "x.npy", np.zeros(shape, dtype=np.uint8))
    fails(
        tmp_path / "x.npy",
        f"cannot read images from an array of shape {shape}: expected one image (28, 28) or (784,), "
        f"or N images (N, 784), (N, 28, 28), (N, 28, 28, 1) or (N, 1, 28, 28){hint}",
    )


def test_an_array_of_no_images_is_refused(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((0, 784), dtype=np.uint8))
    fails(tmp_path / "x.npy", "no images to classify (shape (0, 784))")


def test_a_non_numeric_array_is_refused(tmp_path):
    np.save(tmp_path / "x.npy", np.full((1, 784), "a"))
    fails(tmp_path / "x.npy", "pixel values must be real numbers, got dtype <U1")


def test_npy_suffix_without_the_magic_and_a_corrupt_npy(tmp_path):
    (tmp_path / "text.npy").write_text("1,2,3\n")
    fails(tmp_path / "text.npy", "not a .npy file (it does not start with the NPY magic \\x93NUMPY)")
    (tmp_path / "cut.npy").write_bytes(b"\x93NUMPY\x01\x00garbage")
    fails_starting(tmp_path / "cut.npy", "not a readable .npy array (")


def test_a_malformed_idx_file_names_the_file(tmp_path):
    # magic 0x00000803 (uint8, 3 dims), sizes 1 x 28 x 28, but only 10 bytes of data
    (tmp_path / "x-idx3").write_bytes(bytes([0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 28, 0, 0, 0, 28]) + bytes(10))
    fails(
        tmp_path / "x-idx3",
        "truncated IDX file: header promises 784 bytes of data, found 10 (shape (1, 28, 28), uint8)",
    )


# --- image files -----------------------------------------------------------------------------


def test_rgb_png_is_converted_and_resized_as_pillow_does(tmp_path, rng):
    rgb = rng.integers(0, 120, size=(56, 56, 3), dtype=np.uint8)       # dark: no border note
    Image.fromarray(rgb).save(tmp_path / "photo.png")
    # The documented pipeline, run through Pillow itself: luma "L", then Lanczos to 28x28.
    expected = np.asarray(Image.fromarray(rgb).convert("L").resize((28, 28), Image.Resampling.LANCZOS))
    out = read_images(tmp_path / "photo.png")
    np.testing.assert_array_equal(out.pixels, expected.reshape(1, 784).astype(np.float64))
    assert out.names == ("photo.png",)
    assert out.notes == ("converted RGB to grayscale", "resized 56x56 -> 28x28")


def test_uniform_red_png_has_the_luma_of_red(tmp_path):
    # ITU-R 601-2 luma of pure red: 0.299 * 255 = 76.2 -> 76, unchanged by resizing a uniform image.
    Image.new("RGB", (640, 480), (255, 0, 0)).save(tmp_path / "red.png")
    out = read_images(tmp_path / "red.png")
    np.testing.assert_array_equal(out.pixels, np.full((1, 784), 76.0))
    assert out.notes == ("converted RGB to grayscale", "resized 640x480 -> 28x28")


def test_a_grey_28x28_png_is_read_exactly_without_notes(tmp_path, rng):
    image = objects(rng, 1)[0]
    Image.fromarray(image).save(tmp_path / "x.png")
    out = read_images(tmp_path / "x.png")
    np.testing.assert_array_equal(out.pixels[0], image.reshape(784))
    assert out.notes == ()


def test_image_content_is_recognised_whatever_the_suffix(tmp_path, rng):
    image = objects(rng, 1)[0]
    Image.fromarray(image).save(tmp_path / "x.png")
    (tmp_path / "x.png").rename(tmp_path / "upload.dat")
    np.testing.assert_array_equal(read_images(tmp_path / "upload.dat").pixels[0], image.reshape(784))


def test_jpeg_is_read_as_pillow_decodes_it(tmp_path):
    Image.new("RGB", (40, 30), (0, 100, 0)).save(tmp_path / "x.jpg", quality=95)
    decoded = Image.open(tmp_path / "x.jpg").convert("L").resize((28, 28), Image.Resampling.LANCZOS)
    out = read_images(tmp_path / "x.jpg")
    np.testing.assert_array_equal(out.pixels[0], np.asarray(decoded).reshape(784))
    # luma of (0, 100, 0) is 0.587 * 100 = 58.7; JPEG may move a uniform block by a level
    assert np.abs(out.pixels - 58.7).max() <= 1.5
    assert out.notes == ("converted RGB to grayscale", "resized 40x30 -> 28x28")


def test_bmp_and_lossless_webp(tmp_path, rng):
    image = objects(rng, 1)[0]
    Image.fromarray(image).save(tmp_path / "x.bmp")
    Image.fromarray(image).save(tmp_path / "x.webp", lossless=True)
    for name in ("x.bmp", "x.webp"):
        np.testing.assert_array_equal(read_images(tmp_path / name).pixels[0], image.reshape(784))


def test_gif_gives_its_first_frame_with_a_note(tmp_path):
    frames = [Image.new("L", (28, 28), 60), Image.new("L", (28, 28), 200)]
    frames[0].save(tmp_path / "x.gif", save_all=True, append_images=frames[1:])
    out = read_images(tmp_path / "x.gif")
    np.testing.assert_array_equal(out.pixels, np.full((1, 784), 60.0))
    assert out.notes[0] == "read the first of 2 frames"


def test_transparent_pixels_become_black(tmp_path):
    rgba = np.zeros((28, 28, 4), dtype=np.uint8)
    rgba[..., :3] = 255                                                 # white, but...
    rgba[10:18, 10:18, 3] = 255                                         # opaque only in the middle
    Image.fromarray(rgba).save(tmp_path / "x.png")
    expected = np.zeros((28, 28))
    expected[10:18, 10:18] = 255
    out = read_images(tmp_path / "x.png")
    np.testing.assert_array_equal(out.pixels[0], expected.reshape(784))
    assert out.notes == (
        "composited transparent pixels onto black, the data set's background",
        "converted RGBA to grayscale",
    )


def test_16_bit_grey_is_scaled_to_8_bit_not_clipped(tmp_path):
    grey = np.array([[0, 65535], [257, 1000]], dtype=np.uint16)
    Image.fromarray(grey).save(tmp_path / "x.png")
    out = read_images(tmp_path / "x.png", image_shape=(2, 2))
    # v / 257: 0, 255, 1 and 1000 / 257 = 3.89 -> 4
    np.testing.assert_array_equal(out.pixels, [[0, 255, 1, 4]])
    assert out.notes[0].startswith("converted 16-bit grayscale (I;16")


def test_exif_orientation_is_applied(tmp_path):
    image = np.arange(6, dtype=np.uint8).reshape(2, 3) * 10             # 3 wide, 2 high
    exif = Image.Exif()
    exif[0x0112] = 6                                   # Orientation 6: rotate 90 degrees clockwise to view
    Image.fromarray(image).save(tmp_path / "x.png", exif=exif)
    out = read_images(tmp_path / "x.png", image_shape=(3, 2))
    np.testing.assert_array_equal(out.pixels[0], np.rot90(image, k=-1).reshape(6))
    assert out.notes == ("turned upright per the EXIF orientation 6",)


def test_a_mostly_bright_border_gets_a_note_and_is_not_inverted(tmp_path):
    paper = np.full((28, 28), 250, dtype=np.uint8)
    paper[8:20, 8:20] = 20                                              # a dark object on white paper
    Image.fromarray(paper).save(tmp_path / "paper.png")
    out = read_images(tmp_path / "paper.png")
    np.testing.assert_array_equal(out.pixels[0], paper.reshape(784))
    assert out.notes == (f"the border is mostly bright: {BORDER_ADVICE}",)


def test_the_border_note_counts_images_in_an_array(tmp_path, rng):
    images = objects(rng, 3)
    images[1] = 255 - images[1]
    np.save(tmp_path / "x.npy", images)
    out = read_images(tmp_path / "x.npy")
    assert out.notes == (f"1 of 3 images has a mostly bright border (x.npy:1): {BORDER_ADVICE}",)


def test_input_scale_1_does_not_apply_to_image_files(tmp_path):
    Image.new("L", (28, 28), 9).save(tmp_path / "x.png")
    out = read_images(tmp_path / "x.png", input_scale="1")
    np.testing.assert_array_equal(out.pixels, np.full((1, 784), 9.0))
    assert out.notes == ("input scale 1 does not apply to image files: read as grey levels 0..255",)


def test_a_folder_gives_its_images_sorted_by_name(tmp_path, rng):
    images = objects(rng, 3)
    Image.fromarray(images[0]).save(tmp_path / "b.png")
    Image.fromarray(images[1]).convert("RGB").resize((56, 56)).save(tmp_path / "a.png")
    Image.fromarray(images[2]).save(tmp_path / "c.bmp")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub").mkdir()
    out = read_images(tmp_path)
    assert out.names == ("a.png", "b.png", "c.bmp")
    expected_a = Image.open(tmp_path / "a.png").convert("L").resize((28, 28), Image.Resampling.LANCZOS)
    np.testing.assert_array_equal(out.pixels[0], np.asarray(expected_a).reshape(784))
    np.testing.assert_array_equal(out.pixels[1:], images[[0, 2]].reshape(2, 784))
    assert out.notes == (
        "converted RGB to grayscale (1 of 3 files: a.png)",
        "resized 56x56 -> 28x28 (1 of 3 files: a.png)",
        "skipped 2 entries that are not images: notes.txt, sub/",
    )


def test_an_empty_folder_and_a_folder_without_images_are_named(tmp_path):
    (tmp_path / "empty").mkdir()
    fails(tmp_path / "empty", "no PNG, JPEG, BMP, GIF, WebP image files in this folder; it is empty")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("a")
    np.save(tmp_path / "docs" / "b.npy", np.zeros((28, 28)))
    fails(
        tmp_path / "docs",
        "no PNG, JPEG, BMP, GIF, WebP image files in this folder; it holds only a.txt, b.npy",
    )


def test_corrupt_images_name_the_file(tmp_path):
    (tmp_path / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n and then nothing")
    fails_starting(tmp_path / "x.png", "not a readable PNG image (")
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buffer, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    fails_starting(tmp_path / "cut.jpg", "not a readable JPEG image (OSError: ")
    # a folder reports the bad file, not the folder
    (tmp_path / "dir").mkdir()
    (tmp_path / "x.png").rename(tmp_path / "dir" / "bad.png")
    with pytest.raises(DataFormatError, match=f"^{re.escape(str(tmp_path / 'dir' / 'bad.png'))}: not a"):
        read_images(tmp_path / "dir")


def test_an_image_suffix_on_other_content_names_the_signature(tmp_path):
    (tmp_path / "x.png").write_text("hello")
    fails(
        tmp_path / "x.png",
        "not a readable PNG image: the content does not start with the PNG signature "
        "(first bytes 68 65 6c 6c 6f)",
    )


def test_unrecognised_binary_and_empty_files(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"\xff\xfe\x00\x01\x02")
    fails(
        tmp_path / "x.bin",
        "unrecognised file: not PNG, JPEG, BMP, GIF, WebP, .npy, IDX or CSV text "
        "(first bytes ff fe 00 01 02)",
    )
    (tmp_path / "empty.csv").write_bytes(b"")
    fails(tmp_path / "empty.csv", "the file is empty; no images to classify")


def test_missing_path(tmp_path):
    missing = tmp_path / "nope.png"
    with pytest.raises(DataNotFoundError, match=f"^{re.escape(str(missing))}: no such file or folder"):
        read_images(missing)


def test_without_pillow_an_image_names_the_extra(tmp_path, monkeypatch):
    Image.new("L", (28, 28)).save(tmp_path / "x.png")
    monkeypatch.setattr(mlpkit._optional, "is_installed", lambda module: module != "PIL")
    message = "reading PNG/JPEG images needs PIL, which is not installed: pip install 'mlpkit[images]'"
    with pytest.raises(MissingDependencyError, match=f"^{re.escape(message)}$"):
        read_images(tmp_path / "x.png")


# --- CSV -------------------------------------------------------------------------------------


def test_csv_without_header(tmp_path, rng):
    images = objects(rng, 2).reshape(2, 784)
    out = read_images(write_csv(tmp_path / "x.csv", images))
    np.testing.assert_array_equal(out.pixels, images)
    assert out.names == ("x.csv:0", "x.csv:1") and out.labels is None and out.notes == ()


def test_csv_with_a_pixel_header(tmp_path, rng):
    images = objects(rng, 2).reshape(2, 784)
    out = read_images(write_csv(tmp_path / "x.csv", images, [f"pixel{i}" for i in range(1, 785)]))
    np.testing.assert_array_equal(out.pixels, images)
    assert out.labels is None and out.notes == ()


@pytest.mark.parametrize("start", [0, 1])
def test_csv_with_a_header_of_column_numbers(tmp_path, rng, start):
    # pandas' DataFrame(x).to_csv(index=False) writes 0, 1, ..., 783: numbers, but not grey levels
    images = objects(rng, 2).reshape(2, 784)
    out = read_images(write_csv(tmp_path / "x.csv", images, [str(i + start) for i in range(784)]))
    np.testing.assert_array_equal(out.pixels, images)
    assert out.names == ("x.csv:0", "x.csv:1")


@pytest.mark.parametrize("where", ["first", "last"])
@pytest.mark.parametrize("header", [False, True])
def test_csv_label_column_first_or_last_is_dropped_and_returned(tmp_path, rng, where, header):
    images = objects(rng, 4).reshape(4, 784)
    labels = np.array([3, 0, 9, 1])
    table = np.c_[labels, images] if where == "first" else np.c_[images, labels]
    names = None
    if header:
        pixels = [f"pixel{i}" for i in range(1, 785)]
        names = ["label", *pixels] if where == "first" else [*pixels, "label"]
    out = read_images(write_csv(tmp_path / "x.csv", table, names))
    np.testing.assert_array_equal(out.pixels, images)
    np.testing.assert_array_equal(out.labels, labels)
    assert out.labels is not None and out.labels.dtype == np.int64
    named = " ('label')" if header else ""
    assert out.notes == (f"dropped the {where} column{named} as labels (values 0..9)",)


def test_a_header_named_label_column_may_hold_any_non_negative_integers(tmp_path, rng):
    images = objects(rng, 2).reshape(2, 784)
    labels = np.array([250, 7])                        # too large to be guessed without the name
    header = ["Label", *(f"p{i}" for i in range(784))]
    out = read_images(write_csv(tmp_path / "x.csv", np.c_[labels, images], header))
    np.testing.assert_array_equal(out.labels, labels)


def test_a_header_named_label_column_must_hold_labels(tmp_path, rng):
    images = objects(rng, 2).reshape(2, 784).astype(np.float64)
    header = ["label", *(f"p{i}" for i in range(784))]
    write_csv(tmp_path / "x.csv", np.c_[[1.0, 2.5], images], header)
    fails(
        tmp_path / "x.csv", "column 1 ('label') must hold non-negative integer labels, got 2.5 in data row 2"
    )


def test_csv_with_785_columns_and_no_label_column(tmp_path, rng):
    table = np.c_[np.full(2, 150), objects(rng, 2).reshape(2, 784)[:, :-1], np.full(2, 200)]
    write_csv(tmp_path / "x.csv", table)
    fails(
        tmp_path / "x.csv",
        "expected 784 pixel columns, got 785: neither the first nor the last column holds labels "
        "(integers 0..99); name the label column 'label' in a header row, or remove it",
    )


def test_csv_where_first_and_last_column_both_look_like_labels(tmp_path, rng):
    table = np.c_[[1, 2], objects(rng, 2).reshape(2, 784)[:, :-1], [3, 4]]
    write_csv(tmp_path / "x.csv", table)
    fails(
        tmp_path / "x.csv",
        "expected 784 pixel columns, got 785: the first and the last column could both be labels "
        "(integers 0..99, as many zeros); name the label column 'label' in a header row, or remove it",
    )


def test_csv_of_another_width(tmp_path, rng):
    write_csv(tmp_path / "x.csv", objects(rng, 2).reshape(2, 784)[:, :780])
    fails(
        tmp_path / "x.csv",
        "expected 784 pixel columns (one 28x28 image per row, optionally one label column more), got 780",
    )
    write_csv(tmp_path / "grid.csv", objects(rng, 1)[0])
    fails(
        tmp_path / "grid.csv",
        "expected 784 pixel columns (one 28x28 image per row, optionally one label column more), got 28; "
        "a 28x28 grid of one image is not read: write it as one row",
    )


def test_csv_bad_lines_are_named_by_their_number_in_the_file(tmp_path):
    (tmp_path / "a.csv").write_text("1,2,3\n\n4,x,6\n")
    fails(tmp_path / "a.csv", "line 3, column 2: 'x' is not a number", image_shape=(1, 3))
    (tmp_path / "b.csv").write_text("a,b,c\n1,2,3\n4,5\n")
    fails(tmp_path / "b.csv", "line 3 has 2 values, but the first row has 3", image_shape=(1, 3))
    (tmp_path / "c.csv").write_text("a,b\n1,2,3\n")
    fails(tmp_path / "c.csv", "the header row has 2 names but the rows have 3 values", image_shape=(1, 3))
    (tmp_path / "d.csv").write_text("a,b,c\n")
    fails(tmp_path / "d.csv", "only a header row; no images to classify", image_shape=(1, 3))


# --- the input scale -------------------------------------------------------------------------


def test_auto_refuses_floats_already_in_0_1(tmp_path, rng):
    np.save(tmp_path / "x.npy", rng.random((2, 784)))
    fails(tmp_path / "x.npy", AUTO_REFUSAL)
    np.savetxt(tmp_path / "x.csv", rng.random((2, 784)), delimiter=",")
    fails(tmp_path / "x.csv", AUTO_REFUSAL)


def test_auto_reads_integers_all_zero_floats_and_larger_floats_as_grey_levels(tmp_path, rng):
    binary = rng.integers(0, 2, size=(2, 784), dtype=np.uint8)        # integers 0/1: grey levels
    np.save(tmp_path / "int.npy", binary)
    np.testing.assert_array_equal(read_images(tmp_path / "int.npy").pixels, binary)
    np.save(tmp_path / "zero.npy", np.zeros((1, 784)))
    np.testing.assert_array_equal(read_images(tmp_path / "zero.npy").pixels, np.zeros((1, 784)))
    grey = rng.random((2, 784)) * 255
    np.save(tmp_path / "grey.npy", grey)
    np.testing.assert_array_equal(read_images(tmp_path / "grey.npy").pixels, grey)


def test_scale_255_keeps_values_in_0_1_as_they_are(tmp_path, rng):
    values = rng.random((2, 784))
    np.save(tmp_path / "x.npy", values)
    out = read_images(tmp_path / "x.npy", input_scale="255")
    np.testing.assert_array_equal(out.pixels, values)
    assert out.notes == ()


def test_scale_1_multiplies_by_255(tmp_path, rng):
    values = rng.random((2, 784)).astype(np.float32)
    np.save(tmp_path / "x.npy", values)
    out = read_images(tmp_path / "x.npy", input_scale="1")
    np.testing.assert_array_equal(out.pixels, values.astype(np.float64) * 255)
    assert out.notes[0] == "scaled [0, 1] input by 255"


def test_out_of_range_values_name_the_first_position(tmp_path, rng):
    images = objects(rng, 2).astype(np.float64)
    images[1, 3, 4] = 300.0
    images[1, 5, 6] = -1.0
    np.save(tmp_path / "x.npy", images)
    fails(tmp_path / "x.npy", "pixel values must be grey levels in [0, 255], got 300.0 at index (1, 3, 4)")
    scaled = np.zeros((2, 784))
    scaled[0, 10] = 1.5
    np.save(tmp_path / "s.npy", scaled)
    fails(tmp_path / "s.npy", "pixel values must be in [0, 1] for input scale 1, got 1.5 at index (0, 10)",
          input_scale="1")
    # In a CSV: 1-based line and column in the file, counting the header and the label column.
    table = np.c_[[1, 2], objects(rng, 2).reshape(2, 784)]
    table[1, 5] = -3
    write_csv(tmp_path / "x.csv", table, ["label", *(f"p{i}" for i in range(784))])
    fails(tmp_path / "x.csv", "pixel values must be grey levels in [0, 255], got -3.0 at line 3, column 6")


def test_nan_and_inf_name_the_first_position(tmp_path):
    images = np.zeros((2, 28, 28))
    images[1, 2, 3] = np.nan
    images[1, 4, 4] = np.inf
    np.save(tmp_path / "x.npy", images)
    fails(tmp_path / "x.npy", "2 NaN or infinite value(s); the first, nan, at index (1, 2, 3)")
    (tmp_path / "x.csv").write_text("0,1,2\n3,inf,5\n")
    message = "1 NaN or infinite value(s); the first, inf, at line 2, column 2"
    fails(tmp_path / "x.csv", message, image_shape=(1, 3))


# --- arguments and the result ----------------------------------------------------------------


def test_arguments_are_checked(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((28, 28)))
    message = "input_scale must be one of ['1', '255', 'auto'], got 'x'"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        read_images(tmp_path / "x.npy", input_scale="x")
    message = "image_shape must be a pair of positive ints (H, W), got (28,)"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        read_images(tmp_path / "x.npy", image_shape=(28,))  # type: ignore[arg-type]


def test_the_result_is_frozen_and_exported(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((28, 28)))
    out = exported_read_images(tmp_path / "x.npy")
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.names = ()  # type: ignore[misc]
