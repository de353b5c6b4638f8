"""Figures of a run: loss and accuracy curves, and a grid of test images with their predictions.

matplotlib is imported inside the functions, so ``import mlpkit.evaluate`` stays light and
matplotlib is needed only by callers who plot (it is the ``plot`` extra); without it they raise
:class:`~mlpkit.errors.MissingDependencyError` naming that extra. The figures are built
with :class:`matplotlib.figure.Figure` and the Agg canvas directly, never through ``pyplot``: no
global figure registry, no GUI backend, nothing to close, safe in threads and on servers.

Each function returns the :class:`~matplotlib.figure.Figure` so callers and tests can inspect
it, and writes the PNG atomically when given a path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mlpkit._io import atomic_path
from mlpkit._optional import require
from mlpkit.errors import DataFormatError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_curves", "plot_predictions", "plot_regression", "plot_scores"]

_DPI = 100
_MISTAKE_COLOR = "tab:red"


def new_figure(width: float, height: float, *, feature: str = "drawing a figure") -> Figure:
    """A Figure on an Agg canvas: PNG rendering without pyplot or a display.

    The figure is never registered with ``pyplot``: no global figure list holds it (nothing to
    close, nothing leaks across calls) and the user's interactive backend is left alone.

    Parameters
    ----------
    width, height : float
        In inches.
    feature : str
        What the figure is for, named in the error when matplotlib is missing.

    Raises
    ------
    MissingDependencyError
        ``{feature} needs matplotlib, which is not installed: pip install 'mlpkit[plot]'``.
    """
    require("matplotlib", feature=feature)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_png(figure: Figure, path: str | os.PathLike[str]) -> None:
    """Render ``figure`` to ``path`` as PNG, atomically (temporary file, fsync, rename)."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=_DPI)


def plot_curves(
    records: Sequence[Mapping[str, Any]],
    path: str | os.PathLike[str] | None = None,
    *,
    best_epoch: int | None = None,
    title: str | None = None,
    metrics: Sequence[str] = ("loss", "accuracy"),
) -> Figure:
    """Loss (left) and accuracy (right) per epoch, train and validation, as one figure.

    Parameters
    ----------
    records : sequence of mapping
        One mapping per epoch with ``epoch``, ``train_loss``, ``val_loss``, ``train_accuracy`` and
        ``val_accuracy`` (the trainer's history records, or the lines of ``metrics.jsonl``). A
        series whose values are all ``None`` (no validation set) is left out.
    path : str or os.PathLike, optional
        Where to write the PNG; nothing is written when omitted.
    best_epoch : int, optional
        Marked with a dotted vertical line on both axes.
    title : str, optional
        The figure's title (its suptitle) above both axes, e.g. the run's name and test accuracy;
        none when omitted.
    metrics : sequence of str
        One axis per name, plotting ``train_<name>`` and ``val_<name>`` (e.g. ``("loss", "auc")``
        for a CTR run, which has a validation AUC only).

    Returns
    -------
    matplotlib.figure.Figure
        Two axes titled ``"loss"`` and ``"accuracy"``, one line per series (``label`` "train" or
        "validation") plus the best-epoch marker.

    Raises
    ------
    MissingDependencyError
        If matplotlib is not installed.
    """
    if not records:
        raise ValueError("plot_curves needs at least one epoch record, got none")
    epochs = [int(record["epoch"]) for record in records]
    figure = new_figure(10.0, 4.0, feature="plotting training curves (curves.png)")
    if title is not None:
        figure.suptitle(title, fontsize=11)
    axes = np.atleast_1d(figure.subplots(1, len(metrics)))
    for ax, metric in zip(axes, metrics, strict=True):
        for split, label, style in (("train", "train", "-o"), ("val", "validation", "-s")):
            values = [record.get(f"{split}_{metric}") for record in records]
            if all(v is None for v in values):
                continue
            ax.plot(epochs, [np.nan if v is None else v for v in values], style, markersize=3, label=label)
        if best_epoch is not None:
            ax.axvline(best_epoch, color="grey", linestyle=":", label=f"best epoch ({best_epoch})")
        ax.set_title(metric)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
        # Epochs are integers: ticks at 1.5 would suggest half epochs. min_n_ticks=1, or with a
        # single epoch in view the locator falls back to fractional ticks.
        ax.xaxis.get_major_locator().set_params(integer=True, min_n_ticks=1)
    if path is not None:
        save_png(figure, path)
    return figure


def plot_predictions(
    images: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike[str] | None = None,
    *,
    ncols: int = 5,
    ink: bool = True,
) -> Figure:
    """A grid of images, each titled with its predicted class over its true class.

    Mistakes are titled in red, so a glance shows which classes the model confuses.

    Parameters
    ----------
    images : ndarray of shape (N, H, W), (N, H*W) or (N, H, W, 3)
        Grey-level images (uint8 0..255 or floats in [0, 1]), flat rows of a square size, or RGB.
    y_true : ndarray of shape (N,)
        True class indices.
    y_pred : ndarray of shape (N,)
        Predicted class indices.
    class_names : sequence of str
        Name of each class index.
    path : str or os.PathLike, optional
        Where to write the PNG; nothing is written when omitted.
    ncols : int
        Images per row.
    ink : bool
        Grey levels are ink on a blank page, 0 the background (Fashion-MNIST): drawn dark on white.
        False draws them as photographs (0 black).

    Returns
    -------
    matplotlib.figure.Figure
        One axes per image, titled ``"{predicted}\\n{true}"``.

    Raises
    ------
    DataFormatError
        If the images or labels do not have the shapes above.
    MissingDependencyError
        If matplotlib is not installed.
    """
    images = np.asarray(images)
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    n = len(images)
    if n == 0:
        raise DataFormatError("plot_predictions needs at least one image, got 0")
    if images.ndim == 2:
        side = round(np.sqrt(images.shape[1]))
        if side * side != images.shape[1]:
            raise DataFormatError(f"flat images must have a square number of pixels, got {images.shape[1]}")
        images = images.reshape(n, side, side)                             # (N, 784) -> (N, 28, 28)
    if images.ndim != 3 and not (images.ndim == 4 and images.shape[3] == 3):
        raise DataFormatError(f"images must be (N, H, W), (N, H*W) or (N, H, W, 3), got shape {images.shape}")
    if y_true.shape != (n,) or y_pred.shape != (n,):
        raise DataFormatError(
            f"y_true and y_pred must have shape ({n},) like the images, got {y_true.shape} and {y_pred.shape}"
        )
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    figure = new_figure(1.6 * ncols, 1.9 * nrows + 0.4, feature="plotting predictions (predictions.png)")
    figure.suptitle("predicted / true (mistakes in red)", fontsize=10)
    axes = figure.subplots(nrows, ncols, squeeze=False).ravel()
    vmax = 255 if images.dtype == np.uint8 else 1.0
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i >= n:
            continue
        if images.ndim == 4:
            rgb = images[i] if images.dtype == np.uint8 else np.clip(images[i], 0, 1)
            ax.imshow(rgb, interpolation="nearest")
        else:
            ax.imshow(images[i], cmap="gray_r" if ink else "gray", vmin=0, vmax=vmax, interpolation="nearest")
        wrong = y_pred[i] != y_true[i]
        ax.set_title(
            f"{class_names[y_pred[i]]}\n{class_names[y_true[i]]}",
            fontsize=8,
            color=_MISTAKE_COLOR if wrong else "black",
        )
    if path is not None:
        save_png(figure, path)
    return figure


def plot_scores(
    names: Sequence[str],
    scores: Mapping[str, Sequence[float]],
    path: str | os.PathLike[str] | None = None,
    *,
    title: str | None = None,
    ylabel: str = "score",
) -> Figure:
    """Grouped bars: for each of N names, one bar per series of ``scores`` (each N values).

    The y axis starts just below the smallest score, not at 0, because CTR models differ in the third
    decimal of their AUC; each bar is labelled with its value so the axis cannot mislead.

    Returns
    -------
    matplotlib.figure.Figure
        One axes with ``len(scores)`` bar containers.
    """
    if not names:
        raise ValueError("plot_scores needs at least one name, got none")
    figure = new_figure(max(6.0, 0.9 * len(names) + 2), 4.0, feature="plotting scores")
    ax = figure.subplots()
    width = 0.8 / max(len(scores), 1)
    x = np.arange(len(names))
    values = [v for series in scores.values() for v in series if v is not None and np.isfinite(v)]
    for k, (label, series) in enumerate(scores.items()):
        heights = [np.nan if v is None else v for v in series]
        bars = ax.bar(x + (k - (len(scores) - 1) / 2) * width, heights, width, label=label)
        ax.bar_label(bars, fmt="%.4f", fontsize=7, rotation=90, padding=2)
    if values:
        low, high = min(values), max(values)
        margin = max(high - low, 1e-3)
        ax.set_ylim(low - margin, high + margin)
    ax.set_xticks(x, list(names), rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    if path is not None:
        save_png(figure, path)
    return figure


def plot_regression(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    *,
    predicted_path: str | os.PathLike[str] | None = None,
    residuals_path: str | os.PathLike[str] | None = None,
    target: str = "target",
) -> tuple[Figure, Figure]:
    """A regression's two diagnostic figures: predicted against true (the diagonal is a perfect
    model), and the residual ``ŷ - y`` against the prediction (a trend or a funnel is a misfit).

    Parameters
    ----------
    y_true, y_pred : ndarray of shape (N,)
        In the target's own units.
    predicted_path, residuals_path : path, optional
        Where to write each PNG.
    target : str
        The target's name, for the axis labels.

    Returns
    -------
    (Figure, Figure)
        Each with one axes: N points, plus the diagonal or the zero line.
    """
    y_true, y_pred = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true and y_pred must both be (N,), got {y_true.shape} and {y_pred.shape}")
    alpha = float(np.clip(30 / np.sqrt(max(len(y_true), 1)), 0.1, 0.8))   # dense clouds stay readable

    predicted = new_figure(5.0, 5.0, feature="plotting predictions (predicted.png)")
    ax = predicted.subplots()
    ax.scatter(y_true, y_pred, s=8, alpha=alpha)
    low, high = float(min(y_true.min(), y_pred.min())), float(max(y_true.max(), y_pred.max()))
    ax.plot([low, high], [low, high], color="grey", linestyle="--", label="predicted = true")
    ax.set_xlabel(f"true {target}")
    ax.set_ylabel(f"predicted {target}")
    ax.set_title("predicted against true (test)")
    ax.legend()
    ax.grid(alpha=0.3)

    residuals = new_figure(6.0, 4.0, feature="plotting residuals (residuals.png)")
    ax = residuals.subplots()
    ax.scatter(y_pred, y_pred - y_true, s=8, alpha=alpha)
    ax.axhline(0.0, color="grey", linestyle="--")
    ax.set_xlabel(f"predicted {target}")
    ax.set_ylabel("residual (predicted - true)")
    ax.set_title("residuals (test)")
    ax.grid(alpha=0.3)
    if predicted_path is not None:
        save_png(predicted, predicted_path)
    if residuals_path is not None:
        save_png(residuals, residuals_path)
    return predicted, residuals
