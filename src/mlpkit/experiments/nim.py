"""Can an MLP learn the game of Nim? Classifying positions as won or lost from the heap sizes' bits.

In Nim, players alternately take any positive number of objects from one heap; whoever takes the
last object wins. Bouton (1901), "Nim, a game with a complete mathematical theory", Annals of
Mathematics 3(1/4): 35–39, showed that the player to move loses with perfect play iff the nim-sum,
the XOR of the heap sizes, is 0. The labels come from
:func:`mlpkit.data.synthetic.make_nim_positions`: K heaps of up to ``2**bits − 1`` objects, each
size written in binary with one input per bit (K · bits inputs in {0, 1}); class 1 is "the player
to move wins" (nim-sum ≠ 0), class 0 "loses". Deciding the class is a parity problem per bit
column (is every column's XOR 0?), the kind of structure a linear model cannot represent.

Protocol. For each setting all ``2**(K·bits)`` positions are enumerated (sampled beyond
``max_positions``) and a stratified random ``test_fraction`` of them is held out; the model never
sees a held-out position. Models: one ReLU hidden layer of width H (Kaiming init) and, as the
baseline, the same network with no hidden layer (logistic regression); both are trained with
softmax cross-entropy and momentum SGD for a fixed budget of steps.

Class balance. Only a fraction ``2**−bits`` of positions is losing, so "always winning" already
scores ``1 − 2**−bits`` accuracy (0.875 for 3 bits) while knowing nothing. We therefore (a) train
on a balanced sample, repeating the losing training positions until they are as many as the winning
ones, which weighs both classes equally in the loss (the engine's loss has no class weights) and
throws no winning position away, as undersampling would; and (b) report *balanced accuracy*, the
mean of the two classes' recalls, for which chance and the majority rule both score 0.5. Plain
accuracy is reported too.

Each score is the mean over ``repeats`` random splits and initializations; the MLP and the linear
baseline of one setting share the split.

JSON keys: ``study``, ``config`` (``hidden_features``, ``test_fraction``, ``steps``, ``lr``,
``momentum``, ``batch_size``, ``repeats``, ``max_positions``, ``seed``, ``quick``), and
``by_heaps``, ``by_bits``, ``by_width``: lists of {``num_heaps``, ``bits``, ``hidden_features``
([] for the linear model), ``balanced_accuracy``, ``accuracy``, ``train_balanced_accuracy``,
``majority_accuracy``, ``balanced_accuracies`` (per repeat), ``n_positions``, ``n_train``,
``n_test``, ``n_test_losing``, ``epochs``}.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlpkit._checks import check_positive_float, check_positive_int, check_probability
from mlpkit.data.synthetic import NimPositions, make_nim_positions
from mlpkit.engine.losses import SoftmaxCrossEntropyLoss
from mlpkit.engine.network import build_mlp
from mlpkit.engine.optimizers import SGD
from mlpkit.evaluate.metrics import accuracy
from mlpkit.evaluate.report import markdown_table
from mlpkit.experiments._common import (
    count,
    fresh_seed,
    new_figure,
    prepare_out_dir,
    style_axes,
    write_study,
)
from mlpkit.spec import MLPSpec
from mlpkit.train.numpy_trainer import NumpyTrainer, predict_logits

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "NimResult",
    "NimScore",
    "balanced_accuracy",
    "balanced_split",
    "nim_score",
    "nim_study",
    "plot_nim",
    "run_nim",
]

logger = logging.getLogger(__name__)

NAME = "nim"


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean over the classes present in ``y_true`` of the fraction of that class predicted right.

    Parameters
    ----------
    y_true, y_pred : ndarray of shape (N,), int

    Returns
    -------
    float
        0.5 for chance or a constant prediction with two classes; 1 for a perfect one.

    Examples
    --------
    >>> balanced_accuracy(np.array([1, 1, 1, 0]), np.array([1, 1, 1, 1]))
    0.5
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D of one shape, got {y_true.shape} and {y_pred.shape}")
    # The recall of class c is the accuracy on the samples of class c.
    return float(np.mean([accuracy(y_true[y_true == c], y_pred[y_true == c]) for c in np.unique(y_true)]))


def balanced_split(
    y: np.ndarray, *, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hold out a stratified random subset; balance the rest by repeating the rarer class.

    Parameters
    ----------
    y : ndarray of shape (N,), int in {0, 1}
    test_fraction : float
        Fraction of *each* class held out (rounded, at least one when the class has two or more).
    rng : numpy.random.Generator

    Returns
    -------
    train : ndarray of shape (N_train,), int
        The distinct training indices.
    train_balanced : ndarray of shape (2 · N_majority,), int
        ``train`` with the minority class's indices repeated cyclically (so their counts differ
        by at most one) until the class is as large as the majority class.
    test : ndarray of shape (N_test,), int

    Examples
    --------
    >>> y = np.array([0, 0, 1, 1, 1, 1, 1, 1, 1, 1])
    >>> train, balanced, test = balanced_split(y, test_fraction=0.5, rng=np.random.default_rng(0))
    >>> len(train), len(test), np.bincount(y[balanced]).tolist()
    (5, 5, [4, 4])
    """
    check_probability("test_fraction", test_fraction)
    train_parts, test_parts = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_test = max(1, round(test_fraction * len(idx))) if len(idx) > 1 and test_fraction > 0 else 0
        test_parts.append(idx[:n_test])
        train_parts.append(idx[n_test:])
    majority = max(len(part) for part in train_parts)
    balanced = [np.resize(part, majority) for part in train_parts if len(part)]   # cyclic repeats
    train = np.concatenate(train_parts)
    return train, np.concatenate(balanced), np.concatenate(test_parts)


@dataclass(frozen=True)
class NimScore:
    """How well one model classifies held-out positions of one game size.

    Parameters
    ----------
    num_heaps, bits : int
    hidden_features : list of int
        ``[]`` for the linear baseline.
    balanced_accuracy, accuracy : float
        On the held-out positions, mean over repeats.
    train_balanced_accuracy : float
        On the (distinct) training positions, mean over repeats.
    majority_accuracy : float
        Accuracy of always answering "winning" on the held-out positions.
    balanced_accuracies : list of float
        Per repeat.
    n_positions, n_train, n_test, n_test_losing : int
        Positions in all, distinct training positions, held-out ones, and losing held-out ones.
    epochs : int
        Epochs over the balanced training set (the step budget divided by the epoch length).
    """

    num_heaps: int
    bits: int
    hidden_features: list[int]
    balanced_accuracy: float
    accuracy: float
    train_balanced_accuracy: float
    majority_accuracy: float
    balanced_accuracies: list[float]
    n_positions: int
    n_train: int
    n_test: int
    n_test_losing: int
    epochs: int


def _fit_and_score(
    positions: NimPositions,
    hidden_features: Sequence[int],
    *,
    rng: np.random.Generator,
    test_fraction: float,
    steps: int,
    lr: float,
    momentum: float,
    batch_size: int,
) -> tuple[float, float, float, float, int, int, int, int]:
    x, y = positions.x, positions.y                                    # (N, K*bits), (N,)
    train, train_balanced, test = balanced_split(y, test_fraction=test_fraction, rng=rng)
    spec = MLPSpec(x.shape[1], tuple(hidden_features), 2, init="kaiming_normal")
    network = build_mlp(spec, rng=rng)
    trainer = NumpyTrainer(
        network,
        loss=SoftmaxCrossEntropyLoss(),
        optimizer=SGD(network.parameters().values(), lr=lr, momentum=momentum),
        rng=rng,
        batch_size=batch_size,
        restore_best=False,
    )
    # A budget of SGD steps rather than epochs, so that a game with 64 positions and one with
    # 4096 get comparable optimization, and the large ones do not cost 64 times more.
    epochs = max(1, round(steps / math.ceil(len(train_balanced) / batch_size)))
    trainer.fit(x[train_balanced], y[train_balanced], epochs=epochs)
    predict = predict_logits(network, x).argmax(axis=1)                # (N,)
    return (
        balanced_accuracy(y[test], predict[test]),
        accuracy(y[test], predict[test]),
        balanced_accuracy(y[train], predict[train]),
        float(np.mean(y[test] == 1)),
        len(train),
        len(test),
        int(np.count_nonzero(y[test] == 0)),
        epochs,
    )


def nim_score(
    num_heaps: int,
    bits: int,
    hidden_features: Sequence[int],
    *,
    rng: np.random.Generator,
    test_fraction: float = 0.3,
    steps: int = 3000,
    lr: float = 0.05,
    momentum: float = 0.9,
    batch_size: int = 32,
    repeats: int = 1,
    max_positions: int = 1 << 14,
) -> NimScore:
    """Train on a balanced sample of positions, score on held-out positions, ``repeats`` times.

    Parameters
    ----------
    num_heaps, bits : int
        The game: K heaps of up to ``2**bits − 1`` objects.
    hidden_features : sequence of int
        Hidden widths; ``()`` is the linear baseline.
    rng : numpy.random.Generator
        Draws the positions (when sampled) and one seed per repeat, from which that repeat draws
        its split, then its weights and minibatches.
    test_fraction : float
        Fraction of each class held out.
    steps : int
        SGD steps per training run (rounded to whole epochs, at least one).
    lr, momentum, batch_size
        Momentum SGD's settings.
    repeats : int
        Independent splits and initializations averaged.
    max_positions : int
        Enumerate all positions up to this many, else sample this many.

    Returns
    -------
    NimScore

    Examples
    --------
    >>> s = nim_score(2, 2, (8,), rng=np.random.default_rng(0), steps=50)
    >>> s.n_positions, s.n_test + s.n_train, s.hidden_features
    (16, 16, [8])
    """
    check_positive_int("repeats", repeats)
    check_positive_int("steps", steps)
    check_positive_float("lr", lr)
    positions = make_nim_positions(num_heaps, bits, max_positions=max_positions, rng=rng)
    # One generator per repeat, drawn before any training: the split is its first draw, so two
    # calls with equal ``rng`` states hold out the same positions in every repeat, whatever the
    # models (whose weights take different numbers of draws).
    seeds = [fresh_seed(rng) for _ in range(repeats)]
    scores = [
        _fit_and_score(
            positions, hidden_features, rng=np.random.default_rng(seed), test_fraction=test_fraction,
            steps=steps, lr=lr, momentum=momentum, batch_size=batch_size,
        )
        for seed in seeds
    ]
    bal, acc, train_bal, majority, n_train, n_test, n_losing, epochs = zip(*scores, strict=True)
    return NimScore(
        num_heaps=num_heaps,
        bits=bits,
        hidden_features=list(hidden_features),
        balanced_accuracy=float(np.mean(bal)),
        accuracy=float(np.mean(acc)),
        train_balanced_accuracy=float(np.mean(train_bal)),
        majority_accuracy=float(np.mean(majority)),
        balanced_accuracies=[float(b) for b in bal],
        n_positions=len(positions.y),
        n_train=n_train[0],
        n_test=n_test[0],
        n_test_losing=n_losing[0],
        epochs=epochs[0],
    )


@dataclass(frozen=True)
class NimResult:
    """The numbers behind the Nim figure.

    Parameters
    ----------
    by_heaps : list of NimScore
        MLP and linear model for each number of heaps, at ``heaps_bits`` bits.
    by_bits : list of NimScore
        MLP and linear model for each number of bits, at ``bits_heaps`` heaps.
    by_width : list of NimScore
        One per hidden width at ``width_game`` (width 0 is the linear model).
    hidden_features, test_fraction, steps, lr, momentum, batch_size, repeats, max_positions
        The settings the numbers came from.
    """

    by_heaps: list[NimScore]
    by_bits: list[NimScore]
    by_width: list[NimScore]
    hidden_features: int
    test_fraction: float
    steps: int
    lr: float
    momentum: float
    batch_size: int
    repeats: int
    max_positions: int

    @property
    def config(self) -> dict[str, Any]:
        """The settings, as written to the JSON file's ``config``."""
        keys = (
            "hidden_features", "test_fraction", "steps", "lr", "momentum", "batch_size", "repeats",
            "max_positions",
        )
        return {key: getattr(self, key) for key in keys}


def nim_study(
    *,
    rng: np.random.Generator,
    heaps: Sequence[int] = (2, 3, 4),
    heaps_bits: int = 3,
    bits: Sequence[int] = (3, 4, 5, 6),
    bits_heaps: int = 2,
    widths: Sequence[int] = (0, 2, 4, 8, 16, 32, 64, 128),
    width_game: tuple[int, int] = (4, 3),
    hidden_features: int = 64,
    test_fraction: float = 0.3,
    steps: int = 3000,
    lr: float = 0.05,
    momentum: float = 0.9,
    batch_size: int = 32,
    repeats: int = 3,
    max_positions: int = 1 << 14,
) -> NimResult:
    """Held-out balanced accuracy against the number of heaps, the bits per heap and the hidden width.

    Parameters
    ----------
    rng : numpy.random.Generator
        Draws one seed per game size; the models compared on that size re-create their generator
        from it, so they share the splits.
    heaps, heaps_bits : sequence of int, int
        Numbers of heaps to try, at this many bits.
    bits, bits_heaps : sequence of int, int
        Bits per heap to try, with this many heaps.
    widths, width_game : sequence of int, (int, int)
        Hidden widths to try (0: no hidden layer) on the game (heaps, bits).
    hidden_features : int
        The MLP's width in the heaps and bits sweeps.
    test_fraction, steps, lr, momentum, batch_size, repeats, max_positions
        As in :func:`nim_score`.

    Returns
    -------
    NimResult
    """
    common: dict[str, Any] = {
        "test_fraction": test_fraction, "steps": steps, "lr": lr, "momentum": momentum,
        "batch_size": batch_size, "repeats": repeats, "max_positions": max_positions,
    }

    def compare(games: Sequence[tuple[int, int]], models: Sequence[tuple[int, ...]]) -> list[NimScore]:
        scores = []
        for k, b in games:
            seed = fresh_seed(rng)
            for hidden in models:
                score = nim_score(k, b, hidden, rng=np.random.default_rng(seed), **common)
                logger.info(
                    "%s x %s, hidden %s: held-out balanced accuracy %.3f",
                    count(k, "heap"), count(b, "bit"), list(hidden), score.balanced_accuracy,
                )
                scores.append(score)
        return scores

    both = [(hidden_features,), ()]
    return NimResult(
        by_heaps=compare([(k, heaps_bits) for k in heaps], both),
        by_bits=compare([(bits_heaps, b) for b in bits], both),
        by_width=compare([width_game], [(w,) if w else () for w in widths]),
        hidden_features=hidden_features,
        **common,
    )


def plot_nim(result: NimResult) -> Figure:
    """Held-out balanced accuracy of the MLP and the linear model across the three sweeps."""
    fig, axes = new_figure(1, 3, width=14.0, height=4.0)
    ax_heaps, ax_bits, ax_width = axes[0]
    for ax, scores, key, xlabel in (
        (ax_heaps, result.by_heaps, "num_heaps", "number of heaps"),
        (ax_bits, result.by_bits, "bits", "bits per heap"),
    ):
        for hidden, label, color in (
            ([result.hidden_features], f"MLP, hidden {result.hidden_features}", "C0"),
            ([], "linear (no hidden layer)", "C3"),
        ):
            sel = [s for s in scores if s.hidden_features == hidden]
            xs = [getattr(s, key) for s in sel]
            ax.plot(xs, [s.balanced_accuracy for s in sel], "o-", color=color, label=f"{label}: balanced")
            ax.plot(xs, [s.accuracy for s in sel], "x:", color=color, alpha=0.7, label=f"{label}: plain")
        sel = [s for s in scores if s.hidden_features == []]
        ax.plot([getattr(s, key) for s in sel], [s.majority_accuracy for s in sel], "--", color="0.5",
                lw=1, label="always 'winning': plain")
        ax.set_xticks(sorted({getattr(s, key) for s in scores}))
        fixed = count(scores[0].bits, "bit") if key == "num_heaps" else count(scores[0].num_heaps, "heap")
        style_axes(ax, title=f"held-out positions, {fixed}", xlabel=xlabel, ylabel="accuracy")
    ax_heaps.legend(fontsize=7, loc="lower left")

    widths = [s.hidden_features[0] if s.hidden_features else 0 for s in result.by_width]
    pos = np.arange(len(widths))
    ax_width.plot(pos, [s.balanced_accuracy for s in result.by_width], "o-", color="C0", label="balanced")
    ax_width.plot(pos, [s.train_balanced_accuracy for s in result.by_width], "s--", color="C2",
                  label="balanced, training positions")
    ax_width.plot(pos, [s.accuracy for s in result.by_width], "x:", color="C0", alpha=0.7, label="plain")
    ax_width.set_xticks(pos, ["linear" if w == 0 else str(w) for w in widths])
    game = result.by_width[0]
    style_axes(ax_width, title=f"hidden width, {count(game.num_heaps, 'heap')} x {count(game.bits, 'bit')}",
               xlabel="hidden width", ylabel="accuracy")
    ax_width.legend(fontsize=7, loc="lower right")
    for ax in axes[0]:
        ax.axhline(0.5, color="0.7", lw=0.8)
        ax.set_ylim(0, 1.02)
    fig.suptitle(
        f"Nim: classifying held-out positions as won or lost (Bouton 1901); mean of "
        f"{count(result.repeats, 'split')}",
        fontsize=11,
    )
    return fig


def _summary(result: NimResult) -> str:
    def rows(scores: Sequence[NimScore]) -> list[list[object]]:
        return [
            [
                s.num_heaps, s.bits, "linear" if not s.hidden_features else s.hidden_features[0],
                s.n_positions, s.n_test, s.n_test_losing,
                s.balanced_accuracy, s.accuracy, s.majority_accuracy,
            ]
            for s in scores
        ]

    headers = ["heaps", "bits", "hidden", "positions", "held out", "losing held out", "balanced acc",
               "accuracy", "always-win acc"]
    return "\n".join(
        [
            "# Can an MLP learn Nim?",
            "",
            f"![held-out accuracy]({NAME}.png)",
            "",
            "Labels: the player to move loses iff the XOR of the heap sizes is 0 (Bouton 1901). Inputs: the",
            f"heap sizes' bits. {result.test_fraction:.0%} of the positions of each class are held out;",
            "models train on the rest, with the rare losing positions repeated to balance the classes.",
            "Balanced accuracy (mean of the per-class recalls) is the headline number because answering",
            "'winning' everywhere already scores 1 − 2^-bits plain accuracy. Mean of "
            f"{count(result.repeats, 'split')}; momentum SGD, {count(result.steps, 'step')}.",
            "",
            markdown_table(headers, rows(result.by_heaps + result.by_bits + result.by_width)),
            "",
            "The linear model stays near (or below) 0.5 balanced accuracy: parity cannot be separated by one",
            "hyperplane. One hidden ReLU layer classifies held-out positions far better, and is perfect",
            "when the game has enough positions to learn from. With few positions (64 for 2 heaps of 3",
            "bits, of which only 2 losing ones are held out) the score depends on the split: that game",
            "appears in both the heaps and the bits sweep, with different splits.",
            "",
            *_capacity_note(result.by_width),
        ]
    )


def _capacity_note(scores: Sequence[NimScore]) -> list[str]:
    """Say which widths fail on their own training positions: too little capacity, not overfitting."""
    narrow = [s.hidden_features[0] for s in scores if s.hidden_features and s.train_balanced_accuracy < 0.95]
    if not narrow:
        return []
    return [
        f"Hidden widths up to {max(narrow)} do not even fit their training positions (balanced training",
        "accuracy below 0.95): what limits them is capacity, not generalization.",
    ]


def run_nim(out_dir: Path, *, quick: bool = False, seed: int = 0, data_dir: Path | None = None) -> Path:
    """Can an MLP learn which Nim positions are lost? Held-out accuracy against a linear model.

    Writes ``nim.png``, ``nim.json`` and ``summary.md``.

    Parameters
    ----------
    out_dir : Path
        Created if needed.
    quick : bool
        Small games (2–3 heaps of 3 bits; 2 heaps of 2–4 bits; widths 0, 4, 32 on 3 heaps of 3
        bits), 1000 steps and one split, instead of the full sweeps, 3000 steps and 3 splits.
    seed : int
        Seeds the splits, the weights and the minibatch order.
    data_dir : Path or None
        Unused: the positions are generated.

    Returns
    -------
    Path
        ``out_dir``.
    """
    out_dir = prepare_out_dir(out_dir, study=NAME)
    rng = np.random.default_rng(seed)
    if quick:
        result = nim_study(
            rng=rng, heaps=(2, 3), bits=(2, 3, 4), widths=(0, 4, 32), width_game=(3, 3), steps=1000, repeats=1
        )
    else:
        result = nim_study(rng=rng)
    numbers: dict[str, Any] = {"study": NAME, "config": {**result.config, "seed": seed, "quick": quick}}
    numbers |= {key: [asdict(s) for s in getattr(result, key)] for key in ("by_heaps", "by_bits", "by_width")}
    return write_study(
        out_dir, NAME, numbers=numbers, summary=_summary(result), figure=plot_nim(result), quick=quick
    )
