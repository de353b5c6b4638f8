"""Figures: the returned Figure has the expected axes and lines, the PNG is written atomically."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from matplotlib import _pylab_helpers

from mlpkit.errors import DataFormatError, MissingDependencyError
from mlpkit.evaluate.plots import plot_curves, plot_predictions

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RECORDS = [
    {
        "epoch": e,
        "train_loss": 1 / e,
        "val_loss": 1.1 / e,
        "train_accuracy": 1 - 0.5 / e,
        "val_accuracy": 1 - 0.6 / e,
    }
    for e in (1, 2, 3)
]


def is_png(path: Path) -> bool:
    data = path.read_bytes()
    return data[:8] == PNG_MAGIC and len(data) > 1000


def test_curves_figure_has_loss_and_accuracy_with_train_and_validation(tmp_path: Path) -> None:
    figure = plot_curves(RECORDS, tmp_path / "curves.png", best_epoch=2)
    assert is_png(tmp_path / "curves.png")
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]  # no temporary file left
    loss, acc = figure.axes
    assert (loss.get_title(), acc.get_title()) == ("loss", "accuracy")
    for ax, metric in ((loss, "loss"), (acc, "accuracy")):
        labels = [line.get_label() for line in ax.get_lines()]
        assert labels == ["train", "validation", "best epoch (2)"]
        train, val, best = ax.get_lines()
        np.testing.assert_array_equal(train.get_xdata(), [1, 2, 3])
        np.testing.assert_allclose(train.get_ydata(), [r[f"train_{metric}"] for r in RECORDS])
        np.testing.assert_allclose(val.get_ydata(), [r[f"val_{metric}"] for r in RECORDS])
        assert list(best.get_xdata()) == [2, 2]


def test_curves_without_validation_draw_train_only() -> None:
    records = [{**r, "val_loss": None, "val_accuracy": None} for r in RECORDS]
    figure = plot_curves(records)
    assert all([line.get_label() for line in ax.get_lines()] == ["train"] for ax in figure.axes)


def test_curves_need_a_record() -> None:
    with pytest.raises(ValueError, match="at least one epoch record"):
        plot_curves([])


def test_prediction_grid_titles_predicted_over_true_and_marks_mistakes_red(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 28, 28)).astype(np.uint8)
    y_true = np.array([0, 1, 2, 0, 1, 2, 0])
    y_pred = np.array([0, 2, 2, 0, 1, 0, 0])
    names = ("cat", "dog", "eel")
    figure = plot_predictions(images, y_true, y_pred, names, tmp_path / "grid.png", ncols=3)
    assert is_png(tmp_path / "grid.png")
    shown = [ax for ax in figure.axes if ax.get_images()]
    assert len(figure.axes) == 9 and len(shown) == 7  # a 3x3 grid, two cells left empty
    titles = [ax.title for ax in shown]
    assert [t.get_text() for t in titles] == [
        f"{names[p]}\n{names[t]}" for p, t in zip(y_pred, y_true, strict=True)
    ]
    red = [t.get_color() == "tab:red" for t in titles]
    assert red == list(y_pred != y_true)
    np.testing.assert_array_equal(shown[0].get_images()[0].get_array(), images[0])


def test_prediction_grid_accepts_flat_rows() -> None:
    flat = np.zeros((2, 784), dtype=np.float32)
    figure = plot_predictions(flat, np.array([0, 1]), np.array([0, 1]), ("a", "b"))
    assert figure.axes[0].get_images()[0].get_array().shape == (28, 28)


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((2, 783)), "flat images must have a square number of pixels, got 783"),
        (
            np.zeros((2, 2, 28, 28)),
            r"images must be \(N, H, W\), \(N, H\*W\) or \(N, H, W, 3\), got shape \(2, 2, 28, 28\)",
        ),
        (np.zeros((3, 28, 28)), r"y_true and y_pred must have shape \(3,\) like the images"),
        (np.zeros((0, 28, 28)), "needs at least one image"),
    ],
)
def test_prediction_grid_errors(images: np.ndarray, message: str) -> None:
    with pytest.raises(DataFormatError, match=message):
        plot_predictions(images, np.array([0, 1]), np.array([0, 1]), ("a", "b"))


def test_figures_are_not_left_in_pyplot(tmp_path: Path) -> None:
    plot_curves(RECORDS, tmp_path / "c.png")
    plot_predictions(np.zeros((1, 28, 28)), np.array([0]), np.array([0]), ("a",), tmp_path / "p.png")
    assert _pylab_helpers.Gcf.get_num_fig_managers() == 0


def test_curves_figure_is_titled_by_the_caller() -> None:
    title = "20250101-120000-classic: test accuracy 0.8421"
    assert plot_curves(RECORDS, title=title).get_suptitle() == title
    assert plot_curves(RECORDS).get_suptitle() == ""                   # no title unless one is given


def test_a_single_epoch_is_ticked_as_epoch_1_only() -> None:
    figure = plot_curves(RECORDS[:1])
    figure.canvas.draw()
    for ax in figure.axes:
        lo, hi = ax.get_xlim()
        assert [t for t in ax.get_xticks() if lo <= t <= hi] == [1]    # not 0.96, 0.98, ..., 1.04


@pytest.mark.parametrize(
    ("plot", "feature"),
    [
        (lambda path: plot_curves(RECORDS, path), "plotting training curves (curves.png)"),
        (
            lambda path: plot_predictions(np.zeros((1, 28, 28)), np.array([0]), np.array([0]), ("a",), path),
            "plotting predictions (predictions.png)",
        ),
    ],
)
def test_without_matplotlib_plots_name_the_extra_and_write_nothing(
    plot: Any, feature: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)             # import fails, find_spec finds nothing
    message = f"{feature} needs matplotlib, which is not installed: pip install 'mlpkit[plot]'"
    with pytest.raises(MissingDependencyError, match=f"^{re.escape(message)}$"):
        plot(tmp_path / "figure.png")
    assert list(tmp_path.iterdir()) == []


def test_prediction_grid_draws_color_images_as_they_are_and_photos_unreversed() -> None:
    rgb = np.zeros((2, 4, 4, 3), np.uint8)
    rgb[0, 0, 0] = (255, 0, 0)
    figure = plot_predictions(rgb, np.array([0, 1]), np.array([0, 0]), ["a", "b"])
    drawn = figure.axes[0].images[0].get_array()
    assert drawn.shape == (4, 4, 3) and tuple(drawn[0, 0]) == (255, 0, 0)
    grey = np.zeros((1, 4, 4), np.uint8)
    ink = plot_predictions(grey, np.array([0]), np.array([0]), ["a"])
    assert ink.axes[0].images[0].get_cmap().name == "gray_r"
    photo = plot_predictions(grey, np.array([0]), np.array([0]), ["a"], ink=False)
    assert photo.axes[0].images[0].get_cmap().name == "gray"
