"""Dropout: the 784-256-256-10 MLP on Fashion-MNIST with dropout 0.2/0.5 against none.

Srivastava, Hinton, Krizhevsky, Sutskever, Salakhutdinov, "Dropout: a simple way to prevent neural
networks from overfitting", JMLR 15 (2014); Zhang et al., *Dive into Deep Learning* (d2l),
sec. 5.6 "Dropout" (1.0 edition). The network and recipe are d2l's: ReLU hidden layers of 256,
dropout 0.2 after the first and 0.5 after the second (d2l's advice: less dropout near the input),
weights from N(0, 0.01²), softmax cross-entropy, SGD with lr 0.5, batch size 256, 10 epochs,
pixels scaled to [0, 1]. The engine's :class:`~mlpkit.engine.Dropout` is inverted dropout, which
scales survivors by ``1/(1 − p)`` while training so that evaluation is the identity (as torch).

Both networks start from the same weights and see the same minibatches; only dropout differs.
Train loss and accuracy are measured at the end of each epoch in evaluation mode on a fixed
subset of the training images, so they are comparable with the test numbers; the loss the
optimizer saw (on thinned networks) is kept as ``running_train_loss``.

JSON keys: ``study``, ``config`` (``hidden_features``, ``epochs``, ``lr``, ``batch_size``,
``n_train``, ``n_test``, ``n_train_eval``, ``seed``, ``quick``) and ``runs``, a list of
{``label``, ``dropout``, ``curves`` (``train_loss``, ``test_loss``, ``train_accuracy``,
``test_accuracy``, ``running_train_loss`` per epoch), ``train_accuracy``, ``test_accuracy``,
``gap``}, the last three final, ``gap`` = train − test accuracy.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlpkit._checks import check_positive_float, check_positive_int
from mlpkit.engine.losses import SoftmaxCrossEntropyLoss
from mlpkit.engine.network import build_mlp
from mlpkit.engine.optimizers import SGD
from mlpkit.evaluate.report import markdown_table
from mlpkit.experiments._common import (
    Curves,
    count,
    epochs_axis,
    format_signed,
    fresh_seed,
    load_scaled_fashion_mnist,
    new_figure,
    prepare_out_dir,
    style_axes,
    train_with_curves,
    write_study,
)
from mlpkit.spec import MLPSpec

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["DropoutResult", "DropoutRun", "dropout_study", "plot_dropout", "run_dropout"]

logger = logging.getLogger(__name__)

NAME = "dropout"
D2L_DROPOUT = (0.2, 0.5)
_DUMBBELL_OFFSET = 0.12                                                # x offset of each marker from its run


@dataclass(frozen=True)
class DropoutRun:
    """One network's training run.

    Parameters
    ----------
    label : str
        ``"no dropout"`` or ``"dropout 0.2/0.5"``.
    dropout : list of float
        Drop probability after each hidden layer.
    curves : Curves
        Per-epoch loss and accuracy (train in evaluation mode on the evaluation subset; test).
    train_accuracy, test_accuracy : float
        After the last epoch.
    gap : float
        ``train_accuracy − test_accuracy``, the generalization gap.
    """

    label: str
    dropout: list[float]
    curves: Curves
    train_accuracy: float
    test_accuracy: float
    gap: float


@dataclass(frozen=True)
class DropoutResult:
    """The numbers behind the dropout figure.

    Parameters
    ----------
    runs : list of DropoutRun
    hidden_features : list of int
    epochs, lr, batch_size, n_train, n_test, n_train_eval
        The settings the numbers came from.
    """

    runs: list[DropoutRun]
    hidden_features: list[int]
    epochs: int
    lr: float
    batch_size: int
    n_train: int
    n_test: int
    n_train_eval: int

    @property
    def config(self) -> dict[str, Any]:
        """The settings, as written to the JSON file's ``config``."""
        keys = ("hidden_features", "epochs", "lr", "batch_size", "n_train", "n_test", "n_train_eval")
        return {key: getattr(self, key) for key in keys}

    def run(self, label: str) -> DropoutRun:
        """The run with this label."""
        for run in self.runs:
            if run.label == label:
                return run
        raise KeyError(f"no run labelled {label!r}; have {[r.label for r in self.runs]}")


def _label(dropout: Sequence[float]) -> str:
    return "no dropout" if not any(dropout) else "dropout " + "/".join(f"{p:g}" for p in dropout)


def dropout_study(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    rng: np.random.Generator,
    dropouts: Sequence[Sequence[float]] = ((0.0, 0.0), D2L_DROPOUT),
    hidden_features: Sequence[int] = (256, 256),
    epochs: int = 10,
    lr: float = 0.5,
    batch_size: int = 256,
    n_train_eval: int | None = 10_000,
) -> DropoutResult:
    """Train one MLP per dropout setting and record train/test curves.

    Parameters
    ----------
    x_train : ndarray of shape (N, D), float
    y_train : ndarray of shape (N,), int
    x_test : ndarray of shape (M, D), float
    y_test : ndarray of shape (M,), int
    rng : numpy.random.Generator
        Draws the training-evaluation subset and the seed every run starts from.
    dropouts : sequence of sequences of float
        One setting per run: the drop probability after each hidden layer.
    hidden_features : sequence of int
        Hidden widths (d2l: 256, 256).
    epochs, lr, batch_size
        SGD's settings (d2l: 10, 0.5, 256).
    n_train_eval : int or None
        Size of the fixed random subset of the training set on which train loss and accuracy are
        measured each epoch (None: all of it).

    Returns
    -------
    DropoutResult

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.random((64, 8)), rng.integers(0, 3, 64)
    >>> r = dropout_study(x, y, x, y, rng=rng, hidden_features=(16, 16), epochs=2, batch_size=16)
    >>> [run.label for run in r.runs], len(r.run("no dropout").curves.test_accuracy)
    (['no dropout', 'dropout 0.2/0.5'], 2)
    """
    check_positive_int("epochs", epochs)
    check_positive_float("lr", lr)
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    eval_idx = np.arange(len(x_train))
    if n_train_eval is not None and n_train_eval < len(x_train):
        eval_idx = np.sort(rng.choice(len(x_train), size=n_train_eval, replace=False))
    run_seed = fresh_seed(rng)
    runs = []
    for dropout in dropouts:
        spec = MLPSpec(x_train.shape[1], tuple(hidden_features), num_classes, dropout=tuple(dropout))
        init_rng = np.random.default_rng(run_seed)                    # weights, then dropout masks
        network = build_mlp(spec, rng=init_rng)
        curves = train_with_curves(
            network,
            loss=SoftmaxCrossEntropyLoss(),
            optimizer=SGD(network.parameters().values(), lr=lr),
            rng=np.random.default_rng(run_seed + 1),                 # minibatch order, shared by all runs
            batch_size=batch_size,
            train=(x_train, y_train),
            test=(x_test, y_test),
            train_eval=(x_train[eval_idx], y_train[eval_idx]),
            epochs=epochs,
        )
        train_acc, test_acc = curves.train_accuracy[-1], curves.test_accuracy[-1]
        runs.append(
            DropoutRun(
                label=_label(dropout),
                dropout=[float(p) for p in dropout],
                curves=curves,
                train_accuracy=train_acc,
                test_accuracy=test_acc,
                gap=train_acc - test_acc,
            )
        )
        logger.info("%s: train accuracy %.4f, test accuracy %.4f", runs[-1].label, train_acc, test_acc)
    return DropoutResult(
        runs=runs,
        hidden_features=list(hidden_features),
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        n_train=len(x_train),
        n_test=len(x_test),
        n_train_eval=len(eval_idx),
    )


def plot_dropout(result: DropoutResult) -> Figure:
    """Loss curves, accuracy curves, and the final train/test accuracy of each run.

    One legend for the three panels sits below them, outside every axes, so it covers neither a
    curve nor a label. The final accuracies are a dumbbell per run, the train marker left of the
    test marker so that neither hides the other when they agree; the gap is written under the
    run's name.
    """
    from matplotlib.lines import Line2D

    fig, axes = new_figure(1, 3, width=14.0, height=4.4)
    ax_loss, ax_acc, ax_gap = axes[0]
    curve_handles: list[list[Line2D]] = [[], [], []]                  # train, test, while training
    for i, run in enumerate(result.runs):
        c = run.curves
        epochs = epochs_axis(c.train_loss)
        color = f"C{i}"
        curve_handles[0] += ax_loss.plot(epochs, c.train_loss, color=color, label=f"train, {run.label}")
        curve_handles[1] += ax_loss.plot(epochs, c.test_loss, color=color, ls="--",
                                         label=f"test, {run.label}")
        curve_handles[2] += ax_loss.plot(
            epochs, c.running_train_loss, color=color, ls=":", lw=1, label=f"while training, {run.label}"
        )
        ax_acc.plot(epochs, c.train_accuracy, color=color, label=f"train, {run.label}")
        ax_acc.plot(epochs, c.test_accuracy, color=color, ls="--", label=f"test, {run.label}")
    style_axes(ax_loss, title="cross-entropy", xlabel="epoch", ylabel="loss", integer_x=True)
    style_axes(ax_acc, title="accuracy", xlabel="epoch", ylabel="accuracy", integer_x=True)

    # A dumbbell per run rather than bars: the accuracies differ in the second decimal, and bars
    # cut off far above zero would exaggerate that.
    x = np.arange(len(result.runs))
    train = [run.train_accuracy for run in result.runs]
    test = [run.test_accuracy for run in result.runs]
    for xi, (a, b) in enumerate(zip(train, test, strict=True)):
        ax_gap.plot([xi - _DUMBBELL_OFFSET, xi + _DUMBBELL_OFFSET], [a, b], color="0.6", lw=2, zorder=2)
    markers = ax_gap.plot(x - _DUMBBELL_OFFSET, train, "o", ms=8, color="k", label="final train accuracy",
                          zorder=3)
    markers += ax_gap.plot(x + _DUMBBELL_OFFSET, test, "s", ms=8, mfc="white", mew=2, color="k",
                           label="final test accuracy", zorder=4)
    ax_gap.set_xticks(x, [f"{run.label}\ngap {format_signed(run.gap)}" for run in result.runs])
    ax_gap.set_xlim(-0.5, len(result.runs) - 0.5)
    style_axes(ax_gap, title=f"after {count(result.epochs, 'epoch')}", xlabel="", ylabel="accuracy")
    # Filled column by column: one column per kind of curve, one row per run, the markers last.
    handles = [h for column in curve_handles for h in column] + markers
    fig.legend(handles=handles, loc="outside lower center", ncols=-(-len(handles) // len(result.runs)),
               fontsize=8)
    fig.suptitle(
        f"Dropout on Fashion-MNIST, 784-{'-'.join(map(str, result.hidden_features))}-10, "
        f"{count(result.n_train, 'training image')} (d2l 5.6)",
        fontsize=11,
    )
    return fig


def _verdict(result: DropoutResult) -> str:
    """What the gaps say, in one sentence that follows the numbers rather than the textbook."""
    gaps = ", ".join(f"{r.label} {format_signed(r.gap)}" for r in result.runs)
    if max(r.gap for r in result.runs) < 0.03:
        return (
            f"Neither network has overfit yet (train − test accuracy: {gaps}), so dropout has little to "
            "regularize at this budget; its effect shows with longer training or fewer images."
        )
    best = min(result.runs, key=lambda r: r.gap)
    return f"Generalization gaps (train − test accuracy): {gaps}; the smallest is {best.label}'s."


def _summary(result: DropoutResult) -> str:
    rows = [
        [r.label, r.curves.train_loss[-1], r.curves.test_loss[-1], r.train_accuracy, r.test_accuracy,
         format_signed(r.gap)]
        for r in result.runs
    ]
    return "\n".join(
        [
            f"# Dropout: 784-{'-'.join(map(str, result.hidden_features))}-10 on Fashion-MNIST",
            "",
            f"![curves and final accuracies]({NAME}.png)",
            "",
            f"{count(result.n_train, 'training image')} and {count(result.n_test, 'test image')}; SGD, lr "
            f"{result.lr:g}, batch {result.batch_size}, {count(result.epochs, 'epoch')}. Train numbers are "
            f"measured in evaluation mode on {count(result.n_train_eval, 'training image')}.",
            "",
            markdown_table(["run", "train loss", "test loss", "train acc", "test acc", "gap"], rows),
            "",
            "Dropout trains on randomly thinned networks; the gap between train and test accuracy is",
            "what it is meant to shrink. " + _verdict(result),
            f"With lr {result.lr:g} the curves jump from epoch to epoch: each point is measured after the",
            "epoch's last, smaller minibatch, and single SGD steps move the accuracy by a few points.",
            "",
            "References: Srivastava et al., JMLR 2014; Zhang et al., *Dive into Deep Learning*, sec. 5.6.",
        ]
    )


def run_dropout(out_dir: Path, *, quick: bool = False, seed: int = 0, data_dir: Path | None = None) -> Path:
    """Dropout 0.2/0.5 against none in a 784-256-256-10 MLP on Fashion-MNIST (d2l 5.6).

    Writes ``dropout.png``, ``dropout.json`` and ``summary.md``.

    Parameters
    ----------
    out_dir : Path
        Created if needed.
    quick : bool
        10000 training and 2000 test images, 2 epochs, instead of all of them and 10 epochs.
    seed : int
        Seeds the subsample, the initial weights, the dropout masks and the minibatch order.
    data_dir : Path or None
        Where the Fashion-MNIST files are; searched for (and downloaded) when None.

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    DataNotFoundError
        If Fashion-MNIST is not found and cannot be downloaded.
    """
    out_dir = prepare_out_dir(out_dir, study=NAME)
    rng = np.random.default_rng(seed)
    n_train, n_test = (10_000, 2000) if quick else (None, None)
    x_train, y_train, x_test, y_test = load_scaled_fashion_mnist(
        data_dir, n_train=n_train, n_test=n_test, rng=rng
    )
    result = dropout_study(x_train, y_train, x_test, y_test, rng=rng, epochs=2 if quick else 10)
    numbers = {
        "study": NAME,
        "config": {**result.config, "seed": seed, "quick": quick},
        "runs": [asdict(run) for run in result.runs],
    }
    return write_study(
        out_dir, NAME, numbers=numbers, summary=_summary(result), figure=plot_dropout(result), quick=quick
    )
