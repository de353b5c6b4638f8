"""Model selection: fitting a cubic with the right number of features, too few, and too many.

Zhang, Lipton, Li, Smola, *Dive into Deep Learning* (d2l), sec. 3.6 "Generalization" (1.0
edition); the experiment is sec. 4.4 "Model Selection, Underfitting, and Overfitting" of the 0.17
edition. The data come from :func:`mlpkit.data.synthetic.make_polynomial_regression`:
``x ~ N(0, 1)``, features ``x^i / i!`` for ``i < 20``, labels
``y = 5 + 1.2x − 3.4x²/2! + 5.6x³/3! + ε`` with ``ε ~ N(0, 0.1²)``, 100 training and 100 test
points. A linear layer without bias (column 0 is the constant 1) is fitted on the first ``k``
features: ``k = 4`` is the true model ("normal"), ``k = 2`` a straight line ("underfit"), and
``k = 20`` has capacity to spare ("overfit").

Training follows d2l's PyTorch code: the engine's :class:`~mlpkit.engine.MSELoss`, the mean of
``(ŷ − y)²`` (torch's ``nn.MSELoss``, *not* d2l's from-scratch ``½ (ŷ − y)²``; every loss here is
that MSE), SGD with lr 0.01, batch size 10, 400 epochs. Weights start from N(0, 0.01²) where
torch would draw U(±1/√k).

One finding differs from the book's narrative, and the figure shows why. After 400 epochs of SGD
(d2l uses 1500 for ``k = 20``) the 20-feature model's test loss is usually *close* to its
training loss, as readers of d2l report (d2l-ai/d2l-en issue #2337). The columns ``x^i / i!``
with large ``i`` are tiny (``2^19/19! ≈ 4e-12``), so are their gradients, and SGD leaves their
weights where they started: stopped early, gradient descent fits a low-degree polynomial. The
converged fit, the minimum-norm least-squares minimizer of the *same* training loss
(:func:`numpy.linalg.lstsq`), is what 20 features can do: a training loss below the noise floor
and a test loss orders of magnitude above it. The figure draws SGD's curves and, dashed, the
least-squares losses; the acceptance test checks the overfit on the converged fit.

JSON keys: ``study``, ``loss``, ``config`` (``n_train``, ``n_test``, ``max_degree``, ``noise``,
``true_weight``, ``epochs``, ``lr``, ``batch_size``, ``seed``, ``quick``), ``x_train``,
``y_train`` and ``fits``, a list of {``num_features``, ``label``, ``curves`` (``train_loss``,
``test_loss``, ... per epoch), ``weight``, ``lstsq_weight``, ``lstsq_train_loss``,
``lstsq_test_loss``}.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlpkit._checks import check_positive_float, check_positive_int
from mlpkit.data.synthetic import D2L_POLYNOMIAL_WEIGHT, make_polynomial_regression, polynomial_features
from mlpkit.engine.losses import MSELoss
from mlpkit.engine.network import build_mlp
from mlpkit.engine.optimizers import SGD
from mlpkit.evaluate.report import markdown_table
from mlpkit.experiments._common import (
    Curves,
    count,
    epochs_axis,
    fresh_seed,
    linear_weights,
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
    "ModelSelectionResult",
    "PolynomialFit",
    "model_selection",
    "plot_model_selection",
    "run_model_selection",
]

logger = logging.getLogger(__name__)

NAME = "model-selection"
LOSS_NAME = "mse = mean((y_hat - y)^2)"


@dataclass(frozen=True)
class PolynomialFit:
    """One model: SGD's curves and weights, and the converged least-squares fit of the same features.

    Parameters
    ----------
    num_features : int
        k, the number of leading columns ``x^i / i!`` used.
    label : str
        ``"normal"``, ``"underfit"`` or ``"overfit"``, by comparing k with the true degree + 1.
    curves : Curves
        SGD's per-epoch MSE on the training and test sets.
    weight : list of float
        SGD's final weights, length k.
    lstsq_weight : list of float
        The minimum-norm least-squares weights, length k.
    lstsq_train_loss, lstsq_test_loss : float
        Their MSE on the training and test sets.
    """

    num_features: int
    label: str
    curves: Curves
    weight: list[float]
    lstsq_weight: list[float]
    lstsq_train_loss: float
    lstsq_test_loss: float


@dataclass(frozen=True)
class ModelSelectionResult:
    """The numbers behind the model-selection figure.

    Parameters
    ----------
    fits : list of PolynomialFit
        One per feature count, in the order asked for.
    x_train, y_train : list of float
        The training inputs ``x`` (not the features) and labels, for the data panel.
    true_weight : list of float
        The true weights of the leading features.
    n_train, n_test, max_degree, noise, epochs, lr, batch_size
        The settings the numbers came from.
    """

    fits: list[PolynomialFit]
    x_train: list[float]
    y_train: list[float]
    true_weight: list[float]
    n_train: int
    n_test: int
    max_degree: int
    noise: float
    epochs: int
    lr: float
    batch_size: int

    @property
    def config(self) -> dict[str, Any]:
        """The settings, as written to the JSON file's ``config``."""
        keys = ("n_train", "n_test", "max_degree", "noise", "true_weight", "epochs", "lr", "batch_size")
        return {key: getattr(self, key) for key in keys}

    def fit(self, num_features: int) -> PolynomialFit:
        """The fit with ``num_features`` features."""
        for fit in self.fits:
            if fit.num_features == num_features:
                return fit
        have = [f.num_features for f in self.fits]
        raise KeyError(f"no fit with {count(num_features, 'feature')}; have {have}")


def _mse(x: np.ndarray, y: np.ndarray, weight: np.ndarray) -> float:
    residual = x @ weight - y                                          # (N,)
    return float(np.mean(residual * residual))


def model_selection(
    *,
    rng: np.random.Generator,
    num_features: Sequence[int] = (4, 2, 20),
    n_train: int = 100,
    n_test: int = 100,
    max_degree: int = 20,
    noise: float = 0.1,
    epochs: int = 400,
    lr: float = 0.01,
    batch_size: int = 10,
) -> ModelSelectionResult:
    """Fit the polynomial with each number of features by SGD, and by least squares.

    Parameters
    ----------
    rng : numpy.random.Generator
        Draws the data, then one seed from which every model draws its initial weights and
        minibatch order (so a model's result does not depend on which others are fitted).
    num_features : sequence of int
        The k to fit, each at most ``max_degree``.
    n_train, n_test, max_degree, noise
        The data, as in :func:`~mlpkit.data.synthetic.make_polynomial_regression`.
    epochs, lr, batch_size
        SGD's settings (d2l: 400, 0.01, 10).

    Returns
    -------
    ModelSelectionResult

    Examples
    --------
    >>> r = model_selection(rng=np.random.default_rng(0), num_features=(4,), epochs=2)
    >>> len(r.fit(4).curves.test_loss), len(r.fit(4).weight)
    (2, 4)
    """
    for k in num_features:
        check_positive_int("num_features", k)
        if k > max_degree:
            raise ValueError(f"num_features must be at most max_degree={max_degree}, got {k}")
    check_positive_int("epochs", epochs)
    check_positive_float("lr", lr)
    data = make_polynomial_regression(
        rng=rng, n_train=n_train, n_test=n_test, max_degree=max_degree, noise=noise
    )
    true_degree = len(D2L_POLYNOMIAL_WEIGHT)
    fit_seed = fresh_seed(rng)
    fits = []
    for k in num_features:
        fit_rng = np.random.default_rng(fit_seed)
        x_train, x_test = data.x_train[:, :k], data.x_test[:, :k]     # (N, k), (M, k)
        spec = MLPSpec(k, (), 1, init="normal", init_std=0.01, bias=False)
        network = build_mlp(spec, rng=fit_rng, dtype=np.float64)
        curves = train_with_curves(
            network,
            loss=MSELoss(),
            optimizer=SGD(network.parameters().values(), lr=lr),
            rng=fit_rng,
            batch_size=batch_size,
            train=(x_train, data.y_train[:, None]),                  # MSELoss wants (N, 1) like the logits
            test=(x_test, data.y_test[:, None]),
            epochs=epochs,
        )
        weight = linear_weights(network)[0][:, 0]                     # (k,)
        # rcond=None cuts singular values below machine precision: the minimum-norm solution.
        lstsq = np.linalg.lstsq(x_train, data.y_train, rcond=None)[0]  # (k,)
        label = "normal" if k == true_degree else "underfit" if k < true_degree else "overfit"
        fits.append(
            PolynomialFit(
                num_features=k,
                label=label,
                curves=curves,
                weight=weight.tolist(),
                lstsq_weight=lstsq.tolist(),
                lstsq_train_loss=_mse(x_train, data.y_train, lstsq),
                lstsq_test_loss=_mse(x_test, data.y_test, lstsq),
            )
        )
        logger.info(
            "%s: SGD train %.4g test %.4g; least squares train %.4g test %.4g",
            count(k, "feature"), curves.train_loss[-1], curves.test_loss[-1],
            fits[-1].lstsq_train_loss, fits[-1].lstsq_test_loss,
        )
    return ModelSelectionResult(
        fits=fits,
        x_train=data.x_train[:, 1].tolist(),                           # column 1 is x itself
        y_train=data.y_train.tolist(),
        true_weight=list(D2L_POLYNOMIAL_WEIGHT),
        n_train=n_train,
        n_test=n_test,
        max_degree=max_degree,
        noise=noise,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
    )


def plot_model_selection(result: ModelSelectionResult) -> Figure:
    """One loss panel per fit (SGD curves, least-squares levels dashed), then the fitted functions."""
    fits = result.fits
    fig, axes = new_figure(1, len(fits) + 1, width=4.2 * (len(fits) + 1), height=3.8)
    for ax, fit in zip(axes[0], fits, strict=False):
        c = fit.curves
        ax.plot(epochs_axis(c.train_loss), c.train_loss, color="C0", label="train (SGD)")
        ax.plot(epochs_axis(c.test_loss), c.test_loss, color="C1", label="test (SGD)")
        ax.axhline(fit.lstsq_train_loss, color="C0", ls="--", lw=1, label="train (least squares)")
        ax.axhline(fit.lstsq_test_loss, color="C1", ls="--", lw=1, label="test (least squares)")
        ax.axhline(result.noise**2, color="0.5", ls=":", lw=1, label="noise variance")
        style_axes(
            ax, title=f"{count(fit.num_features, 'feature')} ({fit.label})", xlabel="epoch", ylabel="MSE",
            log_y=True, integer_x=True,
        )
    axes[0][0].legend(fontsize=7)

    ax = axes[0][-1]
    x, y = np.asarray(result.x_train), np.asarray(result.y_train)
    grid = np.linspace(x.min() - 0.3, x.max() + 0.3, 400)
    features = polynomial_features(grid, result.max_degree)         # (400, D)
    truth = features[:, : len(result.true_weight)] @ np.asarray(result.true_weight)
    ax.scatter(x, y, s=8, color="0.3", label="training points", zorder=3)
    ax.plot(grid, truth, color="k", lw=2, label="true cubic")
    for i, fit in enumerate(fits):
        k = fit.num_features
        ax.plot(grid, features[:, :k] @ np.asarray(fit.weight), color=f"C{i + 2}",
                label=f"SGD, {count(k, 'feature')}")
    widest = max(fits, key=lambda f: f.num_features)
    ax.plot(
        grid, features[:, : widest.num_features] @ np.asarray(widest.lstsq_weight),
        color="C1", ls="--", label=f"least squares, {count(widest.num_features, 'feature')}",
    )
    pad = 0.25 * (y.max() - y.min())
    ax.set_ylim(y.min() - pad, y.max() + pad)              # the least-squares curve leaves the frame
    style_axes(ax, title="fitted functions", xlabel="x", ylabel="y")
    ax.legend(fontsize=7)
    sizes = [str(fit.num_features) for fit in fits]
    listed = sizes[0] if len(sizes) == 1 else ", ".join(sizes[:-1]) + " and " + sizes[-1]
    noun = "feature" if sizes == ["1"] else "features"
    fig.suptitle(f"Model selection: polynomial regression with {listed} {noun} (d2l 3.6)", fontsize=11)
    return fig


def _summary(result: ModelSelectionResult) -> str:
    rows = [
        [
            f.num_features,
            f.label,
            f.curves.train_loss[-1],
            f.curves.test_loss[-1],
            f.lstsq_train_loss,
            f.lstsq_test_loss,
            f.lstsq_test_loss / f.lstsq_train_loss,
        ]
        for f in result.fits
    ]
    table = markdown_table(
        ["features", "model", "SGD train", "SGD test", "lstsq train", "lstsq test", "lstsq test/train"], rows
    )
    lines = [
        f"# Model selection: polynomial regression ({count(result.epochs, 'epoch')} of SGD)",
        "",
        f"![train and test loss]({NAME}.png)",
        "",
        f"Losses are MSE, mean((ŷ − y)²); the noise variance is {result.noise**2:g}.",
        "",
        table,
        "",
    ]
    by_label = {f.label: f for f in result.fits}
    if "normal" in by_label:
        lines.append(
            f"The {by_label['normal'].num_features}-feature model recovers the true weights "
            f"{result.true_weight} as {[round(w, 3) for w in by_label['normal'].weight]}."
        )
    if "underfit" in by_label:
        lines.append(
            f"{count(by_label['underfit'].num_features, 'feature')} underfit: even the training loss stays "
            "far above the noise."
        )
    if "overfit" in by_label:
        over = by_label["overfit"]
        lines.append(
            f"{count(over.num_features, 'feature')} fitted to convergence (least squares) overfit: training "
            f"loss {over.lstsq_train_loss:.3g}, test loss {over.lstsq_test_loss:.3g}."
        )
        if "normal" in by_label:
            lines.append(
                f"The training loss is below the true model's ({by_label['normal'].lstsq_train_loss:.3g}): "
                "the extra features fit the noise."
            )
    lines += [
        "",
        f"SGD stopped after {count(result.epochs, 'epoch')} barely moves the weights of the tiny high-order",
        "columns x^i/i!, so its 20-feature fit behaves like a low-degree one and hardly overfits: stopping",
        "early is itself a regularizer (see the module docstring and d2l-ai/d2l-en#2337).",
        "",
        "Reference: Zhang et al., *Dive into Deep Learning*, sec. 3.6 (sec. 4.4 of the 0.17 edition).",
    ]
    return "\n".join(lines)


def run_model_selection(
    out_dir: Path, *, quick: bool = False, seed: int = 0, data_dir: Path | None = None
) -> Path:
    """Under- and overfitting: a cubic fitted with 4, 2 and 20 polynomial features (d2l 3.6).

    Writes ``model-selection.png``, ``model-selection.json`` and ``summary.md``.

    Parameters
    ----------
    out_dir : Path
        Created if needed.
    quick : bool
        100 epochs instead of 400.
    seed : int
        Seeds the data, the initial weights and the minibatch order.
    data_dir : Path or None
        Unused: the data are generated.

    Returns
    -------
    Path
        ``out_dir``.
    """
    out_dir = prepare_out_dir(out_dir, study=NAME)
    result = model_selection(rng=np.random.default_rng(seed), epochs=100 if quick else 400)
    numbers = {
        "study": NAME,
        "loss": LOSS_NAME,
        "config": {**result.config, "seed": seed, "quick": quick},
        "x_train": result.x_train,
        "y_train": result.y_train,
        "fits": [asdict(fit) for fit in result.fits],
    }
    return write_study(
        out_dir,
        NAME,
        numbers=numbers,
        summary=_summary(result),
        figure=plot_model_selection(result),
        quick=quick,
    )
