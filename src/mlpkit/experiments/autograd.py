"""From a scalar graph to the engine: train the scalar-autograd MLP, then time it against the NumPy engine.

The scalar MLP of :mod:`mlpkit.autograd` (one :class:`~mlpkit.autograd.Value` per number, the
chain rule applied edge by edge; Rumelhart, Hinton & Williams, Nature 323, 1986) is trained with
minibatch SGD on two small problems:

- **two moons** (scikit-learn's ``make_moons``, noise 0.2): two interleaved half circles that no
  line separates, standardized with the training points' mean and standard deviation; the figure
  draws the decision boundary the network found, in the original coordinates;
- **Fashion-MNIST at 7x7**: a few hundred images, each 28x28 image averaged over 4x4 blocks to
  49 inputs, ten classes.

Accuracies and the decision boundary are computed by the NumPy engine from the scalar MLP's
weights (:mod:`mlpkit.autograd.convert`): the same function (tests/autograd checks the two to
1e-12, and each run records the largest logit difference on its test set), at a fraction of the
cost (the timing below). The loss per epoch is the scalar graph's own, the running mean over the
epoch's batches.

Then the cost of one training sample, forward and backward, on the image network: the scalar
graph, the engine fed one sample at a time, and the engine fed the batch at once, all in float64
with the same weights and samples. The ratio is the price of building and walking a graph of
Python objects instead of calling a few matrix products, which is why every practical library,
the engine included, works on whole arrays.

JSON keys: ``study``, ``config`` (``seed``, ``quick``, and per task the sizes and SGD settings),
``moons`` and ``images`` ({``task``, ``architecture``, ``n_train``, ``n_test``, ``epochs``, ``lr``,
``batch_size``, ``curves`` (``running_train_loss``, ``train_loss``, ``test_loss``,
``train_accuracy``, ``test_accuracy`` per epoch), ``train_accuracy``, ``test_accuracy``,
``max_logit_difference``}), ``boundary`` (``x1``, ``x2``: the grid's axes; ``probability``: P(class
1) on the grid, one row per x2; ``x_train``, ``y_train``) and ``timing`` (``architecture``,
``n_samples``, ``repeats``, ``scalar_seconds``, ``engine_seconds``, ``engine_batch_seconds`` (each
per sample, the median over repeats), ``ratio`` = scalar / engine one sample at a time,
``batch_ratio`` = scalar / engine batched).
"""

from __future__ import annotations

import logging
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mlpkit._checks import check_positive_float, check_positive_int
from mlpkit._optional import require
from mlpkit.autograd import MLP, cross_entropy_loss
from mlpkit.autograd.convert import mlp_from_state_dict, state_dict
from mlpkit.engine.losses import SoftmaxCrossEntropyLoss
from mlpkit.engine.network import Sequential, build_mlp
from mlpkit.evaluate.report import markdown_table
from mlpkit.experiments._common import (
    Curves,
    count,
    epochs_axis,
    fresh_seed,
    load_scaled_fashion_mnist,
    new_figure,
    prepare_out_dir,
    style_axes,
    write_study,
)
from mlpkit.spec import MLPSpec
from mlpkit.train.schedules import CosineLR

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "AutogradResult",
    "Boundary",
    "TaskRun",
    "Timing",
    "autograd_study",
    "downsample",
    "plot_autograd",
    "run_autograd",
    "time_per_sample",
    "train_scalar_mlp",
]

logger = logging.getLogger(__name__)

NAME = "autograd"
MOONS_NOISE = 0.2
IMAGE_SIDE = 7                                                         # 28 / 4: 4x4 blocks averaged


@dataclass(frozen=True)
class TaskRun:
    """One task trained with the scalar MLP.

    Parameters
    ----------
    task : str
    architecture : str
        ``MLPSpec.describe()``, e.g. ``"49-32-10 MLP (tanh)"``.
    n_train, n_test, epochs, batch_size : int
    lr : float
    curves : Curves
        Per epoch: the scalar graph's running loss, and the loss and accuracy on the training and
        test sets after the epoch.
    train_accuracy, test_accuracy : float
        After the last epoch.
    max_logit_difference : float
        Largest ``|scalar − engine|`` over the test set's logits, with the final weights.
    """

    task: str
    architecture: str
    n_train: int
    n_test: int
    epochs: int
    lr: float
    batch_size: int
    curves: Curves
    train_accuracy: float
    test_accuracy: float
    max_logit_difference: float


@dataclass(frozen=True)
class Boundary:
    """P(class 1) of the trained moons network on a grid, and the training points.

    Parameters
    ----------
    x1 : list of float, length G1
    x2 : list of float, length G2
    probability : list of lists of float, shape (G2, G1)
    x_train : list of [float, float]
    y_train : list of int
    """

    x1: list[float]
    x2: list[float]
    probability: list[list[float]]
    x_train: list[list[float]]
    y_train: list[int]


@dataclass(frozen=True)
class Timing:
    """Time per training sample (forward, loss and backward), in seconds.

    Parameters
    ----------
    architecture : str
    n_samples : int
        The samples each measurement runs through (the engine's batch).
    repeats : int
        Measurements per implementation, in rotating order; each time is their median.
    scalar_seconds : float
        The scalar autograd, one graph for the batch.
    engine_seconds : float
        The NumPy engine, one sample at a time (B = 1).
    engine_batch_seconds : float
        The NumPy engine, all ``n_samples`` in one batch.
    ratio, batch_ratio : float
        ``scalar_seconds / engine_seconds`` and ``scalar_seconds / engine_batch_seconds``.
    """

    architecture: str
    n_samples: int
    repeats: int
    scalar_seconds: float
    engine_seconds: float
    engine_batch_seconds: float
    ratio: float
    batch_ratio: float


@dataclass(frozen=True)
class AutogradResult:
    """The numbers behind the autograd figure."""

    moons: TaskRun
    images: TaskRun
    boundary: Boundary
    timing: Timing


def downsample(x: np.ndarray, factor: int = 4) -> np.ndarray:
    """Average ``factor x factor`` blocks of square images given as rows.

    Parameters
    ----------
    x : ndarray of shape (N, S*S)
    factor : int
        Must divide S.

    Returns
    -------
    ndarray of shape (N, (S/factor)²), float64

    Examples
    --------
    >>> downsample(np.arange(16.0).reshape(1, 16), factor=2)       # 4x4 -> 2x2
    array([[ 2.5,  4.5, 10.5, 12.5]])
    """
    n, pixels = x.shape
    side = round(pixels**0.5)
    if side * side != pixels or side % factor:
        raise ValueError(f"x must hold square images whose side divides by {factor}, got rows of {pixels}")
    small = side // factor
    blocks = x.reshape(n, small, factor, small, factor).astype(np.float64)   # (N, s, f, s, f)
    return blocks.mean(axis=(2, 4)).reshape(n, small * small)


def _engine_twin(net: MLP) -> Sequential:
    """A float64 engine network with the scalar MLP's current weights."""
    network = build_mlp(net.spec, rng=np.random.default_rng(0), dtype=np.float64)   # weights replaced below
    network.load_state_dict(state_dict(net))
    return network


def _score(network: Sequential, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``network`` on (x (N, D), y (N,))."""
    logits = network.forward(x.copy())                                  # (N, C)
    loss = SoftmaxCrossEntropyLoss().forward(logits, y)
    return loss, float(np.mean(logits.argmax(axis=1) == y))


def train_scalar_mlp(
    net: MLP,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    rng: np.random.Generator,
) -> Curves:
    """Minibatch SGD on the scalar MLP with softmax cross-entropy, scored after each epoch.

    Each step builds one graph for the batch (``cross_entropy_loss`` of the batch's logits),
    calls ``backward()`` and moves every parameter by ``−lr · grad``. The learning rate follows
    the trainers' cosine schedule (:class:`~mlpkit.train.schedules.CosineLR`, from ``lr`` in the
    first epoch towards 0), so that the last epochs settle instead of ending on one large step's
    jump. After each epoch the weights are copied into a NumPy engine network, which scores the
    training and test sets.

    Parameters
    ----------
    net : MLP
        Trained in place.
    train, test : (ndarray of shape (N, D), ndarray of shape (N,) int)
    epochs, batch_size : int
    lr : float
        The first epoch's learning rate.
    rng : numpy.random.Generator
        Shuffles the training set every epoch.

    Returns
    -------
    Curves
        With ``extra["lr"]``, each epoch's learning rate.
    """
    check_positive_int("epochs", epochs)
    check_positive_int("batch_size", batch_size)
    check_positive_float("lr", lr)
    x_train, y_train = train
    rows, labels = x_train.tolist(), y_train.tolist()                  # Python floats and ints
    params = net.parameters()
    curves = Curves([], [], [], [], [], extra={"lr": []}, stop_reason=f"completed {count(epochs, 'epoch')}")
    schedule = CosineLR(lr, epochs=epochs)
    for _ in range(epochs):
        step_size = schedule.lr
        curves.extra["lr"].append(step_size)
        order = rng.permutation(len(rows)).tolist()
        losses = []
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            loss = cross_entropy_loss([net(rows[i]) for i in batch], [labels[i] for i in batch])
            net.zero_grad()
            loss.backward()
            for p in params:
                p.data -= step_size * p.grad
            losses.append(loss.data * len(batch))
        schedule.step()
        network = _engine_twin(net)
        curves.running_train_loss.append(sum(losses) / len(rows))
        for (loss_list, acc_list), (x, y) in (
            ((curves.train_loss, curves.train_accuracy), train),
            ((curves.test_loss, curves.test_accuracy), test),
        ):
            value, accuracy = _score(network, x, y)
            loss_list.append(value)
            acc_list.append(accuracy)
    return curves


def _run_task(
    task: str,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    *,
    hidden_features: tuple[int, ...],
    activation: str,
    epochs: int,
    lr: float,
    batch_size: int,
    rng: np.random.Generator,
) -> tuple[MLP, TaskRun]:
    num_classes = int(max(train[1].max(), test[1].max())) + 1
    net = MLP(train[0].shape[1], hidden_features, num_classes, activation=activation,
              rng=random.Random(fresh_seed(rng)))
    curves = train_scalar_mlp(net, train, test, epochs=epochs, lr=lr, batch_size=batch_size, rng=rng)
    scalar_logits = np.array([[v.data for v in net(row)] for row in test[0].tolist()])    # (N, C)
    engine_logits = _engine_twin(net).forward(test[0].copy())
    run = TaskRun(
        task=task,
        architecture=net.spec.describe(),
        n_train=len(train[0]),
        n_test=len(test[0]),
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        curves=curves,
        train_accuracy=curves.train_accuracy[-1],
        test_accuracy=curves.test_accuracy[-1],
        max_logit_difference=float(np.abs(scalar_logits - engine_logits).max()),
    )
    logger.info("%s: %s, test accuracy %.4f", task, run.architecture, run.test_accuracy)
    return net, run


def _boundary(
    net: MLP,
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    resolution: int,
    scale: Callable[[np.ndarray], np.ndarray] = lambda x: x,
) -> Boundary:
    """P(class 1) on a grid around the training points (N, 2), in their own coordinates.

    ``scale`` maps those coordinates to the network's inputs (the standardization it was trained with).
    """
    low, high = x_train.min(axis=0) - 0.5, x_train.max(axis=0) + 0.5
    x1, x2 = np.linspace(low[0], high[0], resolution), np.linspace(low[1], high[1], resolution)
    grid = np.stack(np.meshgrid(x1, x2), axis=-1).reshape(-1, 2)       # (G2·G1, 2), x1 varying fastest
    logits = _engine_twin(net).forward(scale(grid))                    # (G2·G1, 2)
    # P(class 1) = softmax(z)_1 = σ(z_1 − z_0), in a form that cannot overflow.
    probability = 0.5 * (1.0 + np.tanh(0.5 * (logits[:, 1] - logits[:, 0])))
    return Boundary(
        x1=x1.tolist(),
        x2=x2.tolist(),
        probability=probability.reshape(resolution, resolution).tolist(),
        x_train=x_train.tolist(),
        y_train=y_train.tolist(),
    )


def time_per_sample(spec: MLPSpec, state: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, *,
                    repeats: int) -> Timing:
    """Seconds per sample of forward + loss + backward: scalar graph, engine per sample, engine batched.

    The three run the same float64 weights on the same samples and compute the same gradients
    (the engine skips dL/dx of the first layer, which the scalar graph does not compute either,
    since its inputs are constants). They take turns, ``repeats`` rounds, so that a change in the
    machine's load during the measurement touches all three; each time is the median of its rounds.

    Parameters
    ----------
    spec : MLPSpec
    state : dict of str to ndarray
        The weights, in the engine's ``state_dict`` layout.
    x : ndarray of shape (N, D)
    y : ndarray of shape (N,), int
    repeats : int

    Returns
    -------
    Timing
    """
    check_positive_int("repeats", repeats)
    net = mlp_from_state_dict(spec, state)
    network = build_mlp(spec, rng=np.random.default_rng(0), dtype=np.float64)
    network.load_state_dict(state)
    x = np.ascontiguousarray(x, dtype=np.float64)
    n = len(x)
    rows, labels = x.tolist(), y.tolist()
    singles = [(x[i : i + 1], y[i : i + 1]) for i in range(n)]           # (1, D), (1,) each
    loss = SoftmaxCrossEntropyLoss()

    def scalar() -> None:
        net.zero_grad()
        cross_entropy_loss([net(row) for row in rows], labels).backward()

    def engine_step(xb: np.ndarray, yb: np.ndarray) -> None:
        loss.forward(network.forward(xb.copy()), yb)
        network.backward_params(loss.backward())

    def engine_each() -> None:
        for xb, yb in singles:
            engine_step(xb, yb)

    # One batched step takes microseconds: repeat it until a measurement lasts ~10 ms or more.
    start = time.perf_counter()
    engine_step(x, y)
    inner = max(1, min(1000, int(0.01 / max(time.perf_counter() - start, 1e-7))))

    def engine_batch() -> None:
        for _ in range(inner):
            engine_step(x, y)

    runs: dict[str, tuple[Callable[[], None], int]] = {
        "scalar": (scalar, n), "engine": (engine_each, n), "batch": (engine_batch, n * inner)
    }
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for round_ in range(repeats):
        names = list(runs)
        names = names[round_ % 3 :] + names[: round_ % 3]               # rotate who goes first
        for name in names:
            fn, samples = runs[name]
            start = time.perf_counter()
            fn()
            seconds[name].append((time.perf_counter() - start) / samples)
    per_sample = {name: statistics.median(values) for name, values in seconds.items()}
    return Timing(
        architecture=spec.describe(),
        n_samples=n,
        repeats=repeats,
        scalar_seconds=per_sample["scalar"],
        engine_seconds=per_sample["engine"],
        engine_batch_seconds=per_sample["batch"],
        ratio=per_sample["scalar"] / per_sample["engine"],
        batch_ratio=per_sample["scalar"] / per_sample["batch"],
    )


def autograd_study(
    x_images: np.ndarray,
    y_images: np.ndarray,
    x_images_test: np.ndarray,
    y_images_test: np.ndarray,
    *,
    rng: np.random.Generator,
    n_moons: tuple[int, int] = (300, 300),
    moons_hidden: tuple[int, ...] = (16, 16),
    moons_epochs: int = 40,
    image_hidden: tuple[int, ...] = (32,),
    image_epochs: int = 10,
    moons_lr: float = 0.5,
    image_lr: float = 0.3,
    batch_size: int = 16,
    timing_samples: int = 32,
    timing_repeats: int = 5,
    resolution: int = 80,
) -> AutogradResult:
    """Train the scalar MLP on two moons and on 7x7 images, draw the boundary, time it against the engine.

    Parameters
    ----------
    x_images : ndarray of shape (N, 784)
        Training images in [0, 1] (downsampled here to 49 inputs).
    y_images : ndarray of shape (N,), int
    x_images_test : ndarray of shape (M, 784)
    y_images_test : ndarray of shape (M,), int
    rng : numpy.random.Generator
        Draws the moons, the initial weights and the minibatch order.
    n_moons : (int, int)
        Training and test points of the moons.
    moons_hidden, image_hidden : tuple of int
        Hidden widths (tanh) of the two networks.
    moons_epochs, image_epochs : int
    moons_lr, image_lr : float
        SGD's learning rates.
    batch_size : int
        SGD's, for both tasks.
    timing_samples, timing_repeats : int
        Samples per timing measurement (the engine's batch), and rounds.
    resolution : int
        Grid points per axis of the decision-boundary grid.

    Returns
    -------
    AutogradResult
    """
    from sklearn.datasets import make_moons

    seed = fresh_seed(rng) % 2**32                                     # scikit-learn takes a 32-bit seed
    points, classes = make_moons(n_samples=sum(n_moons), noise=MOONS_NOISE, random_state=seed)
    # Standardized with the training points' mean and standard deviation: centred inputs of unit
    # scale keep the tanh units off their flat tails at the start (LeCun et al., "Efficient
    # BackProp", 1998, sec. 4.3). The figure draws the boundary in the original coordinates.
    mean, std = points[: n_moons[0]].mean(axis=0), points[: n_moons[0]].std(axis=0)

    def scale(x: np.ndarray) -> np.ndarray:
        return (x - mean) / std

    moons_train = (scale(points[: n_moons[0]]), classes[: n_moons[0]])
    moons_test = (scale(points[n_moons[0] :]), classes[n_moons[0] :])
    sgd = {"activation": "tanh", "batch_size": batch_size, "rng": rng}
    moons_net, moons = _run_task(
        "two moons", moons_train, moons_test, hidden_features=moons_hidden, epochs=moons_epochs, lr=moons_lr,
        **sgd,
    )
    images_train = (downsample(x_images), y_images)
    images_test = (downsample(x_images_test), y_images_test)
    images_net, images = _run_task(
        f"Fashion-MNIST {IMAGE_SIDE}x{IMAGE_SIDE}", images_train, images_test, hidden_features=image_hidden,
        epochs=image_epochs, lr=image_lr, **sgd,
    )
    n = min(timing_samples, len(images_train[0]))
    x_time, y_time = images_train[0][:n], images_train[1][:n]
    timing = time_per_sample(images_net.spec, state_dict(images_net), x_time, y_time, repeats=timing_repeats)
    logger.info("scalar / engine time per sample: %.0f (one at a time), %.0f (batched)", timing.ratio,
                timing.batch_ratio)
    return AutogradResult(
        moons=moons,
        images=images,
        boundary=_boundary(moons_net, points[: n_moons[0]], moons_train[1], resolution=resolution,
                           scale=scale),
        timing=timing,
    )


def _duration(seconds: float) -> str:
    """``"2.81 ms"``, ``"41.2 µs"``: three significant digits in the unit that fits."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def plot_autograd(result: AutogradResult) -> Figure:
    """The moons' decision boundary, both tasks' accuracy per epoch, and the time per sample."""
    fig, axes = new_figure(1, 4, width=18.0, height=4.2)
    ax_boundary, ax_moons, ax_images, ax_time = axes[0]

    b = result.boundary
    filled = ax_boundary.contourf(b.x1, b.x2, b.probability, levels=np.linspace(0, 1, 11), cmap="RdBu_r",
                                  alpha=0.6)
    ax_boundary.contour(b.x1, b.x2, b.probability, levels=[0.5], colors="k", linewidths=1.5)
    points, labels = np.asarray(b.x_train), np.asarray(b.y_train)
    for cls, color in ((0, "tab:blue"), (1, "tab:red")):
        pick = labels == cls
        ax_boundary.scatter(points[pick, 0], points[pick, 1], s=10, c=color, edgecolors="k", linewidths=0.3,
                            label=f"class {cls}")
    fig.colorbar(filled, ax=ax_boundary, label="P(class 1)")
    style_axes(ax_boundary, title=f"two moons: decision boundary, test acc {result.moons.test_accuracy:.3f}",
               xlabel="x₁", ylabel="x₂")
    ax_boundary.legend(fontsize=7, loc="lower left")

    for ax, run in ((ax_moons, result.moons), (ax_images, result.images)):
        c = run.curves
        ax.plot(epochs_axis(c.train_accuracy), c.train_accuracy, color="C0", label="train accuracy")
        ax.plot(epochs_axis(c.test_accuracy), c.test_accuracy, color="C0", ls="--", label="test accuracy")
        style_axes(ax, title=f"{run.task}: {run.architecture}", xlabel="epoch", ylabel="accuracy",
                   integer_x=True)
        loss_ax = ax.twinx()
        loss_ax.plot(epochs_axis(c.running_train_loss), c.running_train_loss, color="C1", lw=1,
                     label="scalar graph's loss")
        loss_ax.set_ylabel("cross-entropy (running mean)")
        handles = ax.get_legend_handles_labels()[0] + loss_ax.get_legend_handles_labels()[0]
        ax.legend(handles=handles, fontsize=7, loc="center right")

    t = result.timing
    names = ["scalar\nautograd", "engine,\none sample", f"engine,\nbatch of {t.n_samples}"]
    values = [t.scalar_seconds, t.engine_seconds, t.engine_batch_seconds]
    bars = ax_time.bar(names, values, color=["C3", "C2", "C0"])
    ax_time.set_yscale("log")
    for bar, value, ratio in zip(bars, values, (1.0, t.ratio, t.batch_ratio), strict=True):
        note = _duration(value) + ("" if ratio == 1.0 else f"\n{ratio:,.0f}x faster")
        center = bar.get_x() + bar.get_width() / 2
        ax_time.annotate(note, (center, value), ha="center", va="bottom", fontsize=8)
    ax_time.set_ylim(min(values) / 3, max(values) * 20)
    style_axes(ax_time, title=f"time per sample, forward + backward\n{t.architecture}, float64", xlabel="",
               ylabel="seconds", log_y=True)
    fig.suptitle("The scalar-autograd MLP: what it learns, and what one sample costs against the engine",
                 fontsize=11)
    return fig


def _summary(result: AutogradResult) -> str:
    t = result.timing
    task_rows = [
        [run.task, run.architecture, f"{run.n_train} / {run.n_test}", run.epochs, run.train_accuracy,
         run.test_accuracy, f"{run.max_logit_difference:.1e}"]
        for run in (result.moons, result.images)
    ]
    time_rows = [
        ["scalar autograd (`mlpkit.autograd`)", _duration(t.scalar_seconds), "1"],
        ["NumPy engine, one sample at a time", _duration(t.engine_seconds), f"{t.ratio:,.0f}"],
        [f"NumPy engine, batch of {t.n_samples}", _duration(t.engine_batch_seconds), f"{t.batch_ratio:,.0f}"],
    ]
    m, i = result.moons, result.images
    return "\n".join(
        [
            "# The scalar-autograd MLP: two moons, Fashion-MNIST at 7x7, and its cost against the engine",
            "",
            f"![decision boundary, accuracy curves and time per sample]({NAME}.png)",
            "",
            f"Minibatch SGD (batch {m.batch_size}; lr {m.lr:g} on the moons, {i.lr:g} on the images, with",
            "cosine decay) on `mlpkit.autograd.MLP` with softmax cross-entropy; every gradient comes from",
            "`Value.backward()`.",
            "The moons are standardized with the training points' mean and standard deviation; the images",
            f"are Fashion-MNIST averaged over 4x4 blocks to {IMAGE_SIDE}x{IMAGE_SIDE}, pixels in [0, 1].",
            "Accuracies are after the last epoch, computed by the NumPy engine from the scalar MLP's",
            "weights; the last column is the largest difference between the two implementations' logits",
            "on the test set.",
            "",
            markdown_table(["task", "network", "train / test", "epochs", "train acc", "test acc",
                            "max logit difference"], task_rows),
            "",
            f"## Time per sample, forward + backward ({t.architecture}, float64)",
            "",
            markdown_table(["implementation", "time per sample", "scalar / this"], time_rows),
            "",
            f"Scalar / engine time ratio: **{t.ratio:,.0f}** one sample at a time, **{t.batch_ratio:,.0f}**",
            f"with the {count(t.n_samples, 'sample')} in one batch (median of {count(t.repeats, 'round')}).",
            "The scalar graph makes a Python object for every multiply and add, and walks them one by one",
            "backwards; the engine does the same arithmetic as a few matrix products in compiled code, and",
            "a batch turns many small products into a few large ones. Same numbers, different cost: this",
            "is why neural networks are written over arrays.",
            "",
            "The derivation of what `backward()` computes, equation by equation, is in docs/backprop.md.",
            "",
            "Reference: Rumelhart, Hinton & Williams, \"Learning representations by back-propagating",
            "errors\", Nature 323 (1986).",
        ]
    )


def run_autograd(out_dir: Path, *, quick: bool = False, seed: int = 0, data_dir: Path | None = None) -> Path:
    """Train the scalar-autograd MLP on two moons and 7x7 Fashion-MNIST; time it against the engine.

    Writes ``autograd.png``, ``autograd.json`` and ``summary.md``.

    Parameters
    ----------
    out_dir : Path
        Created if needed.
    quick : bool
        100 + 100 moons for 15 epochs (2-8-8-2), 100 + 100 images for 3 epochs (49-16-10), and
        3 timing rounds of 16 samples, instead of 300 + 300 moons for 40 epochs (2-16-16-2), 500 +
        500 images for 10 epochs (49-32-10) and 5 rounds of 32 samples.
    seed : int
        Seeds the moons, the image subsample, the initial weights and the minibatch order.
    data_dir : Path or None
        Where the Fashion-MNIST files are; searched for (and downloaded) when None.

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    MissingDependencyError
        If scikit-learn (the moons) or matplotlib (the figure) is not installed; nothing is created.
    DataNotFoundError
        If Fashion-MNIST is not found and cannot be downloaded.
    """
    require("sklearn", feature=f"the {NAME} study's two moons")
    out_dir = prepare_out_dir(out_dir, study=NAME)
    rng = np.random.default_rng(seed)
    n_images = (100, 100) if quick else (500, 500)
    x_train, y_train, x_test, y_test = load_scaled_fashion_mnist(
        data_dir, n_train=n_images[0], n_test=n_images[1], rng=rng
    )
    if quick:
        result = autograd_study(
            x_train, y_train, x_test, y_test, rng=rng, n_moons=(100, 100), moons_hidden=(8, 8),
            moons_epochs=15, image_hidden=(16,), image_epochs=3, timing_samples=16, timing_repeats=3,
            resolution=60,
        )
    else:
        result = autograd_study(x_train, y_train, x_test, y_test, rng=rng)
    keys = ("architecture", "n_train", "n_test", "epochs", "lr", "batch_size")
    numbers = {
        "study": NAME,
        "config": {
            "moons": {key: getattr(result.moons, key) for key in keys} | {"noise": MOONS_NOISE},
            "images": {key: getattr(result.images, key) for key in keys} | {"side": IMAGE_SIDE},
            "seed": seed,
            "quick": quick,
        },
        "moons": asdict(result.moons),
        "images": asdict(result.images),
        "boundary": asdict(result.boundary),
        "timing": asdict(result.timing),
    }
    return write_study(
        out_dir, NAME, numbers=numbers, summary=_summary(result), figure=plot_autograd(result), quick=quick
    )
