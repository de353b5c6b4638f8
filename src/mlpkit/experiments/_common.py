"""Plumbing the studies share: seeded streams, training with per-epoch curves, figures, output files.

Every study is split the same way: a pure function computes the numbers (a frozen dataclass of
plain lists and floats), a plotting function draws them, and ``run_<name>`` writes the three
files with :func:`write_study`. Only this module knows how the files are written.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlpkit._io import atomic_write_json, atomic_write_text, ensure_writable_dir
from mlpkit.engine.layers import Linear
from mlpkit.engine.losses import Loss
from mlpkit.engine.network import Sequential
from mlpkit.engine.optimizers import Optimizer
from mlpkit.errors import TrainingDivergedError
from mlpkit.evaluate.plots import save_png
from mlpkit.train.numpy_trainer import NumpyTrainer

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)




def fresh_seed(rng: np.random.Generator) -> int:
    """Draw a seed for generators that several runs of one comparison re-create identically.

    The runs of a comparison (dropout against none, one initializer against another) each
    build ``numpy.random.default_rng(seed)`` from the same drawn seed, so they start from the
    same weights (where the shapes agree) and see the same minibatch order: only the factor
    under study differs.
    """
    return int(rng.integers(2**63))


def linear_weights(network: Sequential) -> list[np.ndarray]:
    """The weight matrices of the network's Linear layers, first to last, each (D, H)."""
    return [layer.weight.data for layer in network.layers if isinstance(layer, Linear)]


@dataclass(frozen=True)
class Curves:
    """Per-epoch numbers of one training run.

    Losses and accuracies are measured at the end of each epoch in evaluation mode (dropout
    off), on the whole training set (or the subset passed as ``train_eval``) and on the test
    set, as d2l's ``evaluate_loss`` does. The trainer's own ``train_loss`` is a running mean over
    the epoch's minibatches, taken while the weights move and, with dropout, on thinned networks;
    it is kept as ``running_train_loss`` because it is what the optimizer saw.

    Parameters
    ----------
    train_loss, test_loss : list of float
        One entry per finished epoch.
    train_accuracy, test_accuracy : list of float
        For classification losses; empty for regression.
    running_train_loss : list of float
        The trainer's minibatch mean.
    extra : dict of str to list of float
        Probes evaluated at the end of each epoch (e.g. ``"weight_norm"``).
    stop_reason : str
        Why training ended.
    diverged : bool
        Whether the loss became NaN or infinite (the curves end at the last finite epoch).
    """

    train_loss: list[float]
    test_loss: list[float]
    train_accuracy: list[float]
    test_accuracy: list[float]
    running_train_loss: list[float]
    extra: dict[str, list[float]] = field(default_factory=dict)
    stop_reason: str = ""
    diverged: bool = False


def train_with_curves(
    network: Sequential,
    *,
    loss: Loss,
    optimizer: Optimizer,
    rng: np.random.Generator,
    batch_size: int,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    epochs: int,
    train_eval: tuple[np.ndarray, np.ndarray] | None = None,
    probes: Mapping[str, Callable[[], float]] | None = None,
    allow_divergence: bool = False,
) -> Curves:
    """Train with :class:`~mlpkit.train.NumpyTrainer` and record end-of-epoch curves.

    The test set is passed to the trainer as its validation set only to be *measured*: the
    trainer does not restore its best epoch (``restore_best=False``) and there is no early
    stopping, so nothing is selected on test data and the final weights are the last epoch's.

    Parameters
    ----------
    network : Sequential
    loss : Loss
    optimizer : Optimizer
        Built over ``network.parameters()``.
    rng : numpy.random.Generator
        Shuffles the minibatches.
    batch_size : int
    train : (ndarray of shape (N, D), ndarray of shape (N,) or (N, C))
    test : (ndarray of shape (M, D), ndarray of shape (M,) or (M, C))
    epochs : int
    train_eval : (ndarray, ndarray), optional
        Where to measure the training loss; the whole training set by default.
    probes : mapping of str to callable, optional
        Called after each epoch; each value goes to ``Curves.extra[name]``.
    allow_divergence : bool
        Record a diverging run (NaN/inf loss) as ``diverged=True`` instead of raising
        :class:`~mlpkit.errors.TrainingDivergedError`; floating-point overflow warnings are
        silenced for that run, since overflow is the expected way for it to end.

    Returns
    -------
    Curves
    """
    x_eval, y_eval = train if train_eval is None else train_eval
    probes = dict(probes or {})
    train_loss: list[float] = []
    train_acc: list[float] = []
    extra: dict[str, list[float]] = {name: [] for name in probes}

    def on_epoch_end(record: dict[str, Any]) -> None:
        value, accuracy = trainer.evaluate(x_eval, y_eval)
        train_loss.append(value)
        if accuracy is not None:
            train_acc.append(accuracy)
        for name, probe in probes.items():
            extra[name].append(float(probe()))

    trainer = NumpyTrainer(
        network,
        loss=loss,
        optimizer=optimizer,
        rng=rng,
        batch_size=batch_size,
        restore_best=False,
        on_epoch_end=on_epoch_end,
    )
    diverged = False
    errstate = {"over": "ignore", "invalid": "ignore"} if allow_divergence else {}
    with np.errstate(**errstate):  # type: ignore[arg-type]
        try:
            history = trainer.fit(*train, *test, epochs=epochs)
            stop_reason = history.stop_reason
        except TrainingDivergedError as exc:
            if not allow_divergence:
                raise
            diverged, stop_reason = True, str(exc)
            logger.info("%s", exc)
    history = trainer.history
    return Curves(
        train_loss=train_loss,
        test_loss=[float(v) for v in history.column("val_loss")],
        train_accuracy=train_acc,
        test_accuracy=[float(a) for a in history.column("val_accuracy") if a is not None],
        running_train_loss=[float(v) for v in history.column("train_loss")],
        extra=extra,
        stop_reason=stop_reason,
        diverged=diverged,
    )


# -- output files ----------------------------------------------------------------------------


def to_jsonable(value: Any) -> Any:
    """Dataclasses, NumPy arrays and scalars to plain JSON values; NaN and ±inf to None.

    JSON has no NaN or infinity (and :func:`~mlpkit._io.atomic_write_json` refuses them); a
    diverged run's last loss is "no number", which is what ``null`` says.

    Examples
    --------
    >>> to_jsonable({"a": np.float32(0.5), "b": [float("nan"), np.arange(2)]})
    {'a': 0.5, 'b': [None, [0, 1]]}
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def new_figure(nrows: int, ncols: int, *, width: float, height: float) -> tuple[Figure, np.ndarray]:
    """A figure (see :func:`mlpkit.evaluate.plots.new_figure`) with an (nrows, ncols) array of axes."""
    from mlpkit.evaluate.plots import new_figure as bare_figure

    fig = bare_figure(width, height)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def style_axes(ax: Axes, *, title: str, xlabel: str, ylabel: str, log_y: bool = False) -> None:
    """Title, labels, a light grid and (optionally) a log y axis: the look every panel shares."""
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if log_y:
        ax.set_yscale("log")
    ax.grid(True, which="major", alpha=0.3)


def epochs_axis(values: Sequence[float]) -> np.ndarray:
    """Epoch numbers 1..n for a per-epoch curve."""
    return np.arange(1, len(values) + 1)


def load_scaled_fashion_mnist(
    data_dir: str | os.PathLike[str] | None,
    *,
    n_train: int | None,
    n_test: int | None,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fashion-MNIST as float32 in [0, 1] (d2l's ``ToTensor``), optionally a random subsample.

    Parameters
    ----------
    data_dir : path or None
        Passed to :func:`~mlpkit.data.load_fashion_mnist`, which searches (and downloads) when None.
    n_train, n_test : int or None
        Sizes of uniform random subsamples without replacement; None keeps the whole split.
    rng : numpy.random.Generator
        Draws the subsamples.

    Returns
    -------
    x_train : ndarray of shape (N, 784), float32
    y_train : ndarray of shape (N,), int64
    x_test : ndarray of shape (M, 784), float32
    y_test : ndarray of shape (M,), int64

    Raises
    ------
    DataNotFoundError
        From the loader, when the files are nowhere to be found and cannot be downloaded.
    """
    from mlpkit.data.fashion_mnist import load_fashion_mnist

    data = load_fashion_mnist(data_dir)

    def take(x: np.ndarray, y: np.ndarray, n: int | None) -> tuple[np.ndarray, np.ndarray]:
        if n is not None and n < len(x):
            idx = np.sort(rng.choice(len(x), size=n, replace=False))
            x, y = x[idx], y[idx]
        return x.astype(np.float32) / np.float32(255), y

    return (*take(data.x_train, data.y_train, n_train), *take(data.x_test, data.y_test, n_test))


def prepare_out_dir(out_dir: str | os.PathLike[str]) -> Path:
    """Create ``out_dir`` and check it is writable before any training starts (fail in a second)."""
    return ensure_writable_dir(out_dir)


def write_study(
    out_dir: Path,
    name: str,
    *,
    numbers: Any,
    summary: str,
    figure: Figure,
) -> Path:
    """Write ``{name}.png``, ``{name}.json`` and ``summary.md`` into ``out_dir``, each atomically.

    Parameters
    ----------
    out_dir : Path
        An existing, writable directory (see :func:`prepare_out_dir`).
    name : str
        The study's registry name, used for the file stems.
    numbers : object
        The numbers behind the figure; converted with :func:`to_jsonable`.
    summary : str
        Markdown; it should link ``{name}.png``.
    figure : matplotlib.figure.Figure

    Returns
    -------
    Path
        ``out_dir``.
    """
    save_png(figure, out_dir / f"{name}.png")
    atomic_write_json(out_dir / f"{name}.json", to_jsonable(numbers))
    atomic_write_text(out_dir / "summary.md", summary.rstrip() + "\n")
    logger.info("wrote %s.png, %s.json and summary.md to %s", name, name, out_dir)
    return out_dir
