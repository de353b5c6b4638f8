"""Initialization: vanishing and exploding gradients in a deep MLP, and the initializers that prevent them.

Zhang et al., *Dive into Deep Learning* (d2l), sec. 5.4 "Numerical Stability and Initialization";
Glorot & Bengio, "Understanding the difficulty of training deep feedforward neural networks",
AISTATS 2010; He, Zhang, Ren, Sun, "Delving deep into rectifiers", ICCV 2015.

A 10-layer MLP (9 hidden layers of width H, then the 10-way output) with sigmoid, tanh or ReLU
hidden units is initialized five ways, biases at 0:

* ``normal_0.01``: N(0, 0.01²), the small-weight start of d2l's shallow examples;
* ``normal_1``: N(0, 1), too large (d2l's exploding product of N(0, 1) matrices);
* ``xavier``: N(0, 2 / (fan_in + fan_out)), the variance of Glorot & Bengio's normalized
  initialization (their eq. 16 draws it from a uniform law), derived for units with f(0) = 0 and
  f'(0) = 1 (tanh, softsign) as a compromise between keeping the activations' variance constant
  forward and the gradients' variance constant backward;
* ``xavier_x4``: Xavier with four times the standard deviation, the rule for sigmoid units that
  Glorot wrote into the LISA lab's Deep Learning Tutorials (MLP chapter, 2010) and Bengio restates
  in "Practical recommendations for gradient-based training of deep architectures" (2012): it
  puts back the factor σ'(0) = 1/4 that the sigmoid takes from every layer;
* ``kaiming``: N(0, 2 / fan_in), He et al.'s eq. 10, which puts back the half of the variance a
  ReLU zeroes.

These are the papers' formulas, drawn with :mod:`mlpkit.engine.init`; they are *not* what
``MLPSpec(init="xavier_normal")`` builds, because :func:`~mlpkit.engine.build_mlp` follows torch
and scales every initializer by the gain of the next activation (√2 for ReLU), which would make
Xavier and Kaiming the same for ReLU and hide the comparison.

On one real batch at initialization the study records, per Linear layer, ``‖∂L/∂W‖_F`` (what
the optimizer sees) and, per hidden layer, the standard deviation of the activations, then
trains each network for a few epochs with momentum SGD.

What it shows (and one thing often misstated). With N(0, 0.01²), sigmoid gradients shrink by
about ``σ'(0) · 0.01 · √H`` per layer: the first layer's is ~10⁻¹² of the last's. Xavier removes
the weight-scale factor but *not* ``σ'(z) ≤ 1/4``, so in a deep sigmoid network the gradient still
shrinks about fourfold per layer (~10⁻⁵ over nine layers) and it does not train: Glorot & Bengio
derived their variance for tanh-like units and showed sigmoid networks to be hard to train for
this reason. Bengio's fourfold weights (``xavier_x4``) win back most of it, not all: they
widen the pre-activations to a standard deviation of about 2.5, where σ' is well below 1/4, and
the first layer's gradient is still ~10⁻² of the last's. With tanh, Xavier keeps the gradient
norms within a small factor across depth. With ReLU the weight gradients keep their ratio
across layers under any scaling (the forward and backward factors cancel), but their *size*
shrinks or grows with depth like ``(s √(H/2))^L`` for weight scale s: N(0, 0.01²) leaves every
gradient ~10⁻⁸, N(0, 1) explodes them, Kaiming (s² = 2/H) keeps them of order one.

JSON keys: ``study``, ``config`` (``activations``, ``initializers``, ``num_layers``,
``hidden_features``, ``probe_batch_size``, ``epochs``, ``lr``, ``momentum``, ``batch_size``,
``n_train``, ``n_test``, ``seed``, ``quick``) and ``runs``, a list of {``activation``,
``init``, ``grad_norms`` (per Linear layer, first to last), ``activation_std`` (per hidden
layer), ``grad_ratio`` (first / last layer), ``loss_at_init``, ``curves``, ``test_accuracy``,
``diverged``}.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlpkit._checks import check_choice, check_positive_int
from mlpkit.engine.activations import ACTIVATIONS
from mlpkit.engine.init import kaiming_normal, normal, xavier_normal
from mlpkit.engine.layers import Dropout, Linear
from mlpkit.engine.losses import SoftmaxCrossEntropyLoss
from mlpkit.engine.network import Sequential, build_mlp
from mlpkit.engine.optimizers import SGD
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
    train_with_curves,
    write_study,
)
from mlpkit.spec import MLPSpec

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "INITIALIZERS",
    "InitRun",
    "InitializationResult",
    "build_deep_mlp",
    "gradient_norms_at_init",
    "initialization_study",
    "plot_initialization",
    "run_initialization",
]

logger = logging.getLogger(__name__)

NAME = "initialization"

Draw = Callable[[tuple[int, int], np.random.Generator], np.ndarray]

INITIALIZERS: dict[str, tuple[str, Draw]] = {
    "normal_0.01": ("N(0, 0.01²)", partial(normal, std=0.01)),
    "normal_1": ("N(0, 1)", partial(normal, std=1.0)),
    # Glorot & Bengio 2010: Var(W) = 2 / (fan_in + fan_out), with no activation gain.
    "xavier": ("Xavier", partial(xavier_normal, gain=1.0)),
    # For sigmoid units (Deep Learning Tutorials 2010; Bengio 2012): Glorot & Bengio's scale × 1/σ'(0).
    "xavier_x4": ("Xavier ×4", partial(xavier_normal, gain=4.0)),
    # He et al. 2015, eq. 10: Var(W) = 2 / fan_in.
    "kaiming": ("Kaiming", partial(kaiming_normal, gain=math.sqrt(2.0))),
}
"""Initializer name -> (plot label, ``draw((fan_out, fan_in), rng)``)."""


def build_deep_mlp(
    in_features: int,
    out_features: int,
    *,
    activation: str,
    init: str,
    rng: np.random.Generator,
    num_layers: int = 10,
    hidden_features: int = 128,
    dtype: np.dtype | type = np.float64,
) -> Sequential:
    """A ``num_layers``-Linear-layer MLP of one width, its weights drawn with one of ``INITIALIZERS``.

    Parameters
    ----------
    in_features, out_features : int
        D and C.
    activation : str
        Hidden activation, a name from :data:`mlpkit.engine.activations.ACTIVATIONS`.
    init : str
        A key of :data:`INITIALIZERS`.
    rng : numpy.random.Generator
        Draws the weights.
    num_layers : int
        Linear layers L (L − 1 hidden layers of width H).
    hidden_features : int
        H.
    dtype : float32 or float64

    Returns
    -------
    Sequential

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> net = build_deep_mlp(8, 3, activation="tanh", init="xavier", rng=rng, num_layers=4)
    >>> net.forward(np.zeros((2, 8))).shape
    (2, 3)
    """
    check_choice("init", init, INITIALIZERS)
    check_choice("activation", activation, ACTIVATIONS)
    check_positive_int("num_layers", num_layers)
    spec = MLPSpec(in_features, (hidden_features,) * (num_layers - 1), out_features, activation=activation)
    network = build_mlp(spec, rng=rng, dtype=dtype)
    draw = INITIALIZERS[init][1]
    for layer in network.layers:
        if isinstance(layer, Linear):
            weight = draw((layer.out_features, layer.in_features), rng)  # (H_out, H_in), torch's layout
            layer.weight.data[...] = weight.T                           # stored (D, H)
    return network


def gradient_norms_at_init(
    network: Sequential, x: np.ndarray, y: np.ndarray
) -> tuple[list[float], list[float], float]:
    """One forward/backward pass on a batch: per-layer weight-gradient norms and activation spreads.

    Parameters
    ----------
    network : Sequential
        Linear and activation layers (no dropout).
    x : ndarray of shape (B, D)
    y : ndarray of shape (B,), int

    Returns
    -------
    grad_norms : list of float
        ``‖∂L/∂W‖_F`` of each Linear layer, first to last (L entries).
    activation_std : list of float
        Standard deviation of each hidden activation's output (L − 1 entries).
    loss : float
        Mean cross-entropy of the batch.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> net = build_deep_mlp(8, 3, activation="relu", init="kaiming", rng=rng, num_layers=4)
    >>> grads, stds, loss = gradient_norms_at_init(net, rng.random((16, 8)), rng.integers(0, 3, 16))
    >>> len(grads), len(stds)
    (4, 3)
    """
    if any(isinstance(layer, Dropout) for layer in network.layers):
        raise ValueError("gradient_norms_at_init expects a network without dropout")
    x = np.asarray(x, dtype=network.dtype)
    stds: list[float] = []
    h = x
    for layer in network.layers[:-1]:                                  # the last layer gives logits
        h = layer.forward(h)                                           # (B, H)
        if not isinstance(layer, Linear):
            stds.append(float(h.std()))
    logits = network.layers[-1].forward(h)                             # (B, C)
    loss = SoftmaxCrossEntropyLoss()
    value = loss.forward(logits, y)
    network.backward(loss.backward())
    linears = [layer for layer in network.layers if isinstance(layer, Linear)]
    grads = [float(np.linalg.norm(layer.weight.grad)) for layer in linears]
    return grads, stds, value


@dataclass(frozen=True)
class InitRun:
    """One (activation, initializer) pair: its gradients at initialization and its training curves.

    Parameters
    ----------
    activation, init : str
    grad_norms : list of float
        ``‖∂L/∂W‖_F`` per Linear layer, first to last.
    activation_std : list of float
        Standard deviation of each hidden layer's output.
    grad_ratio : float
        ``grad_norms[0] / grad_norms[-1]``: ≪ 1 is vanishing towards the input.
    loss_at_init : float
    curves : Curves
        Training curves (they stop early if the run diverged).
    test_accuracy : float
        After the last finished epoch (NaN if none finished).
    diverged : bool
    """

    activation: str
    init: str
    grad_norms: list[float]
    activation_std: list[float]
    grad_ratio: float
    loss_at_init: float
    curves: Curves
    test_accuracy: float
    diverged: bool


@dataclass(frozen=True)
class InitializationResult:
    """The numbers behind the initialization figure.

    Parameters
    ----------
    runs : list of InitRun
        Activations outer, initializers inner, in the order asked for.
    activations, initializers : list of str
    num_layers, hidden_features, probe_batch_size, epochs, lr, momentum, batch_size, n_train, n_test
        The settings the numbers came from.
    """

    runs: list[InitRun]
    activations: list[str]
    initializers: list[str]
    num_layers: int
    hidden_features: int
    probe_batch_size: int
    epochs: int
    lr: float
    momentum: float
    batch_size: int
    n_train: int
    n_test: int

    @property
    def config(self) -> dict[str, Any]:
        """The settings, as written to the JSON file's ``config``."""
        keys = (
            "activations", "initializers", "num_layers", "hidden_features", "probe_batch_size",
            "epochs", "lr", "momentum", "batch_size", "n_train", "n_test",
        )
        return {key: getattr(self, key) for key in keys}

    def run(self, activation: str, init: str) -> InitRun:
        """The run of this pair."""
        for run in self.runs:
            if (run.activation, run.init) == (activation, init):
                return run
        raise KeyError(f"no run for activation={activation!r}, init={init!r}")


def initialization_study(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    rng: np.random.Generator,
    activations: Sequence[str] = ("sigmoid", "tanh", "relu"),
    initializers: Sequence[str] = tuple(INITIALIZERS),
    num_layers: int = 10,
    hidden_features: int = 128,
    probe_batch_size: int = 256,
    epochs: int = 4,
    lr: float = 0.05,
    momentum: float = 0.9,
    batch_size: int = 128,
) -> InitializationResult:
    """Measure gradients at initialization on a real batch, then train, for every pair.

    Parameters
    ----------
    x_train : ndarray of shape (N, D), float
    y_train : ndarray of shape (N,), int
    x_test : ndarray of shape (M, D), float
    y_test : ndarray of shape (M,), int
    rng : numpy.random.Generator
        Draws the seed every network starts from (same draws for every pair; the shapes agree).
    activations : sequence of str
    initializers : sequence of str
        Keys of :data:`INITIALIZERS`.
    num_layers, hidden_features
        Depth L (Linear layers) and width H.
    probe_batch_size : int
        The first this many training examples form the batch the gradients are measured on.
    epochs, lr, momentum, batch_size
        Momentum SGD's settings; ``epochs=0`` skips training.

    Returns
    -------
    InitializationResult

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.random((32, 8)), rng.integers(0, 3, 32)
    >>> r = initialization_study(x, y, x, y, rng=rng, activations=("tanh",), initializers=("xavier",),
    ...                          num_layers=4, hidden_features=16, epochs=1)
    >>> len(r.run("tanh", "xavier").grad_norms)
    4
    """
    check_positive_int("probe_batch_size", probe_batch_size)
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    x_probe, y_probe = x_train[:probe_batch_size], y_train[:probe_batch_size]
    seed = fresh_seed(rng)
    runs = []
    for activation in activations:
        for name in initializers:
            def build(dtype: type, *, activation: str = activation, name: str = name) -> Sequential:
                return build_deep_mlp(
                    x_train.shape[1], num_classes, activation=activation, init=name,
                    rng=np.random.default_rng(seed), num_layers=num_layers,
                    hidden_features=hidden_features, dtype=dtype,
                )

            # Measured in float64 so that a 1e-12 gradient is a number, not rounding noise.
            with np.errstate(over="ignore"):                           # N(0, 1) may overflow exp in σ
                grads, stds, loss_at_init = gradient_norms_at_init(build(np.float64), x_probe, y_probe)
            curves = Curves([], [], [], [], [])
            if epochs:
                network = build(np.float32)                            # the same weights, rounded
                curves = train_with_curves(
                    network,
                    loss=SoftmaxCrossEntropyLoss(),
                    optimizer=SGD(network.parameters().values(), lr=lr, momentum=momentum),
                    rng=np.random.default_rng(seed + 1),
                    batch_size=batch_size,
                    train=(x_train, y_train),
                    test=(x_test, y_test),
                    epochs=epochs,
                    allow_divergence=True,                             # N(0, 1) with ReLU is meant to blow up
                )
            run = InitRun(
                activation=activation,
                init=name,
                grad_norms=grads,
                activation_std=stds,
                grad_ratio=grads[0] / grads[-1] if grads[-1] > 0 else math.inf,
                loss_at_init=loss_at_init,
                curves=curves,
                test_accuracy=curves.test_accuracy[-1] if curves.test_accuracy else math.nan,
                diverged=curves.diverged,
            )
            runs.append(run)
            logger.info(
                "%s, %s: grad first/last %.3g, test accuracy %.4f%s",
                activation, name, run.grad_ratio, run.test_accuracy, " (diverged)" if run.diverged else "",
            )
    return InitializationResult(
        runs=runs,
        activations=list(activations),
        initializers=list(initializers),
        num_layers=num_layers,
        hidden_features=hidden_features,
        probe_batch_size=len(x_probe),
        epochs=epochs,
        lr=lr,
        momentum=momentum,
        batch_size=batch_size,
        n_train=len(x_train),
        n_test=len(x_test),
    )


def plot_initialization(result: InitializationResult) -> Figure:
    """Per activation (columns): gradient norms by layer, activation spread by layer, test accuracy."""
    cols = len(result.activations)
    fig, axes = new_figure(3, cols, width=4.6 * cols, height=10.5)
    for j, activation in enumerate(result.activations):
        ax_grad, ax_std, ax_acc = axes[0][j], axes[1][j], axes[2][j]
        for i, name in enumerate(result.initializers):
            run = result.run(activation, name)
            label = INITIALIZERS[name][0]
            layers = np.arange(1, len(run.grad_norms) + 1)
            ax_grad.plot(layers, np.maximum(run.grad_norms, 1e-300), "o-", ms=3, color=f"C{i}", label=label)
            ax_std.plot(np.arange(1, len(run.activation_std) + 1), np.maximum(run.activation_std, 1e-300),
                        "o-", ms=3, color=f"C{i}", label=label)
            acc = run.curves.test_accuracy
            if acc:
                ax_acc.plot(epochs_axis(acc), acc, "o-", ms=3, color=f"C{i}",
                            label=label + (" (diverged)" if run.diverged else ""))
            elif run.diverged:
                ax_acc.plot([], [], color=f"C{i}", label=label + " (diverged in epoch 1)")
        style_axes(ax_grad, title=f"{activation}: ‖∂L/∂W‖ at init", xlabel="layer (1 = input side)",
                   ylabel="Frobenius norm", log_y=True)
        style_axes(ax_std, title=f"{activation}: activation std at init", xlabel="hidden layer",
                   ylabel="std", log_y=True)
        ax_acc.axhline(0.1, color="0.5", ls=":", lw=1, label="chance")
        style_axes(ax_acc, title=f"{activation}: test accuracy", xlabel="epoch", ylabel="accuracy",
                   integer_x=True)
        ax_acc.set_ylim(0, 1)
        for ax in (ax_grad, ax_std, ax_acc):
            ax.legend(fontsize=7)
    fig.suptitle(
        f"Initialization of a {result.num_layers}-layer MLP (width {result.hidden_features}) "
        "on Fashion-MNIST "
        "(d2l 5.4; Glorot & Bengio 2010; Bengio 2012; He et al. 2015)",
        fontsize=11,
    )
    return fig


def _summary(result: InitializationResult) -> str:
    rows = [
        [
            r.activation,
            INITIALIZERS[r.init][0],
            r.grad_norms[0],
            r.grad_norms[-1],
            r.grad_ratio,
            "diverged" if r.diverged else r.test_accuracy,
        ]
        for r in result.runs
    ]
    return "\n".join(
        [
            f"# Initialization: a {result.num_layers}-layer MLP of width {result.hidden_features}",
            "",
            f"![gradient norms, activations and training]({NAME}.png)",
            "",
            f"Gradients measured on one batch of {count(result.probe_batch_size, 'training image')} at "
            f"initialization; then {count(result.epochs, 'epoch')} of SGD (lr {result.lr:g}, momentum "
            f"{result.momentum:g}) on {count(result.n_train, 'image')}. *diverged*: the loss became",
            "infinite, the exploding start this study is there to show; such a run's curves end at its last",
            "finite epoch.",
            "",
            markdown_table(
                ["activation", "init", "‖∂L/∂W₁‖", f"‖∂L/∂W{result.num_layers}‖", "first/last",
                 "test accuracy"],
                rows,
            ),
            "",
            "- N(0, 0.01²): gradients vanish, towards the input for sigmoid and at every layer for tanh",
            "  and ReLU (whose activations shrink ~10× per layer); nothing trains.",
            "- N(0, 1): ReLU activations and gradients explode and training diverges at once; tanh",
            "  saturates and its gradients *grow* towards the input; sigmoid saturates too, but its",
            "  large weights offset its small slope, and it is the sigmoid start that trains best here.",
            "- Xavier fixes tanh, whose slope at 0 is 1, but not sigmoid, whose slope is at most 1/4:",
            "  deep sigmoid networks lose about a factor 4 of gradient per layer at Xavier's scale.",
            "- Xavier ×4, Bengio's (2012) rule for sigmoid units, undoes most of that loss but not all:",
            "  the larger weights spread the pre-activations to where the sigmoid's slope is below 1/4.",
            "  For tanh and ReLU, whose slope at 0 is 1, the same weights are too large.",
            "- Kaiming keeps ReLU activations and gradients of order one at every depth; Xavier's",
            "  ReLU activations shrink by √2 per layer, mild at this depth.",
            "",
            "References: Zhang et al., *Dive into Deep Learning*, sec. 5.4; Glorot & Bengio, AISTATS 2010;",
            "Bengio, *Practical recommendations for gradient-based training of deep architectures*, 2012;",
            "He et al., ICCV 2015.",
        ]
    )


def run_initialization(
    out_dir: Path, *, quick: bool = False, seed: int = 0, data_dir: Path | None = None
) -> Path:
    """Vanishing and exploding gradients of a 10-layer MLP under five initializations (d2l 5.4).

    Writes ``initialization.png``, ``initialization.json`` and ``summary.md``; uses Fashion-MNIST.

    Parameters
    ----------
    out_dir : Path
        Created if needed.
    quick : bool
        Width 32, 1000 training and 1000 test images, 1 epoch, instead of width 128, 6000
        training and 5000 test images and 3 epochs. The depth stays 10 in both.
    seed : int
        Seeds the subsample, the weights and the minibatch order.
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
    n_train, n_test = (1000, 1000) if quick else (6000, 5000)
    x_train, y_train, x_test, y_test = load_scaled_fashion_mnist(
        data_dir, n_train=n_train, n_test=n_test, rng=rng
    )
    settings: dict[str, Any] = {"hidden_features": 32, "epochs": 1} if quick else {"epochs": 3}
    result = initialization_study(x_train, y_train, x_test, y_test, rng=rng, **settings)
    numbers = {
        "study": NAME,
        "config": {**result.config, "seed": seed, "quick": quick},
        "runs": [asdict(run) for run in result.runs],
    }
    return write_study(
        out_dir,
        NAME,
        numbers=numbers,
        summary=_summary(result),
        figure=plot_initialization(result),
        quick=quick,
    )
