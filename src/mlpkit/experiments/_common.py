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
from mlpkit._optional import require
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

QUICK_NOTE = "quick run: smoke test, not a result"
"""What a ``--quick`` study's figure and summary say first: its numbers only show that the code runs."""


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and the noun in the number that agrees with it.

    Parameters
    ----------
    n : int
    noun : str
        The singular, e.g. ``"epoch"`` or ``"training image"``.
    plural : str, optional
        For nouns that do not take a plain ``s`` (``"batches"``).

    Examples
    --------
    >>> count(1, "epoch"), count(2, "epoch"), count(0, "split"), count(3, "batch", "batches")
    ('1 epoch', '2 epochs', '0 splits', '3 batches')
    """
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def format_signed(value: float, digits: int = 3) -> str:
    """A difference with its sign, rounded to ``digits`` decimals; a value that rounds to 0 has none.

    Examples
    --------
    >>> format_signed(0.0187), format_signed(-0.0006), format_signed(-0.0004), format_signed(0.0)
    ('+0.019', '-0.001', '0.000', '0.000')
    """
    rounded = round(value, digits)
    if rounded == 0:                                                   # also -0.0, which would print "-0.000"
        return f"{0.0:.{digits}f}"
    return f"{rounded:+.{digits}f}"


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
        Why training ended: ``"completed 3 epochs"`` or ``"diverged as expected in epoch 2 (...)"``.
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
        silenced for that run, since overflow is the expected way for it to end. Its
        ``stop_reason`` says that it diverged as expected, in which epoch, and gives no advice.

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
            trainer.fit(*train, *test, epochs=epochs)
        except TrainingDivergedError:
            if not allow_divergence:
                raise
            diverged = True
    history = trainer.history
    finished = len(history.records)
    if diverged:
        # The trainer's message advises a smaller learning rate; here divergence is the result.
        stop_reason = f"diverged as expected in epoch {finished + 1} (the loss became NaN or infinite)"
        if finished:
            stop_reason += f"; the curves end with epoch {finished}"
        logger.info("%s", stop_reason)
    else:
        stop_reason = f"completed {count(finished, 'epoch')}"
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


def style_axes(
    ax: Axes, *, title: str, xlabel: str, ylabel: str, log_y: bool = False, integer_x: bool = False
) -> None:
    """Title, labels, a light grid and (optionally) a log y axis: the look every panel shares.

    ``integer_x`` puts x ticks on whole numbers only, for epochs: with two epochs matplotlib
    would otherwise tick 1.0, 1.2, ..., 2.0, as if there were fractional epochs.
    """
    from matplotlib.ticker import MaxNLocator

    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if log_y:
        ax.set_yscale("log")
    if integer_x:
        # min_n_ticks=1: with one epoch in view MaxNLocator would otherwise fall back to fractions.
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.grid(True, which="major", alpha=0.3)


def readable_log_ticks(ax: Axes) -> None:
    """Label ticks between the powers of ten on a log y axis that spans four decades or less.

    Over such a range matplotlib labels only the powers of ten, which can leave a panel with
    two or three labelled ticks. Here a range of up to one decade is labelled at 1, 1.5, 2, 3, 5
    and 7 times each power of ten, up to two decades at 1, 2 and 5 times, up to four at 1 and 3
    times; wider ranges keep matplotlib's decade ticks. Call it after the data are drawn (it
    reads the y limits).
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    low, high = ax.get_ylim()
    if low <= 0:
        return
    decades = math.log10(high / low)
    if decades > 4:
        return
    subs = (1.0, 1.5, 2.0, 3.0, 5.0, 7.0) if decades <= 1 else (1.0, 2.0, 5.0) if decades <= 2 else (1.0, 3.0)
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


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


def prepare_out_dir(out_dir: str | os.PathLike[str], *, study: str) -> Path:
    """Check that matplotlib is installed, then create ``out_dir`` and check it is writable.

    Both before any training starts, so a study that cannot finish fails in a second and leaves
    nothing behind: without matplotlib no directory is created.

    Raises
    ------
    MissingDependencyError
        ``the {study} study's figure needs matplotlib, which is not installed: pip install 'mlpkit[plot]'``.
    OutputError
        If ``out_dir`` cannot be created or written.
    """
    require("matplotlib", feature=f"the {study} study's figure")
    return ensure_writable_dir(out_dir)


def mark_quick(figure: Figure, summary: str) -> str:
    """Put :data:`QUICK_NOTE` above the figure's title and under the summary's heading.

    Parameters
    ----------
    figure : matplotlib.figure.Figure
        Its suptitle gets the note as a first line, in red.
    summary : str
        Markdown starting with a ``# `` heading.

    Returns
    -------
    str
        The summary with the note as a quoted paragraph right after the heading.
    """
    title = figure.get_suptitle()
    figure.suptitle(f"{QUICK_NOTE.upper()}\n{title}" if title else QUICK_NOTE.upper(), color="tab:red",
                    fontsize=11)
    heading, _, rest = summary.partition("\n")
    note = (
        f"> **{QUICK_NOTE[0].upper()}{QUICK_NOTE[1:]}.** `--quick` shrinks the study to seconds: the "
        "numbers below show that the code runs, not what the study finds. Run it without `--quick` for "
        "the results."
    )
    return f"{heading}\n\n{note}\n{rest}"


def write_study(
    out_dir: Path,
    name: str,
    *,
    numbers: Any,
    summary: str,
    figure: Figure,
    quick: bool,
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
    quick : bool
        Whether the study ran with ``quick=True``: then the figure and the summary say first that
        it is a smoke test (see :func:`mark_quick`).

    Returns
    -------
    Path
        ``out_dir``.
    """
    if quick:
        summary = mark_quick(figure, summary)
    save_png(figure, out_dir / f"{name}.png")
    atomic_write_json(out_dir / f"{name}.json", to_jsonable(numbers))
    atomic_write_text(out_dir / "summary.md", summary.rstrip() + "\n")
    logger.info("wrote %s.png, %s.json and summary.md to %s", name, name, out_dir)
    return out_dir
