"""Weight decay: an L2 penalty on high-dimensional linear regression with 20 training points.

Zhang, Lipton, Li, Smola, *Dive into Deep Learning* (d2l), sec. 3.7 "Weight Decay" (1.0 edition;
sec. 4.5 of the 0.17 edition). The data come from
:func:`mlpkit.data.synthetic.make_linear_regression`: ``y = 0.05 + Σ_i 0.01 x_i + ε``,
``x ~ N(0, I_200)``, ``ε ~ N(0, 0.01²)``, 20 training and 100 test points. With 200 weights and 20
equations the unregularized model can fit the training set exactly; penalizing ``‖w‖²`` picks
small weights instead.

The penalty comes from the engine's optimizer, not from the loss. d2l adds ``(λ/2) ‖w‖²``, whose
gradient is ``λ w``; :class:`~mlpkit.engine.SGD` with ``weight_decay=λ`` adds exactly ``λ w`` to
each weight's gradient, and leaves the bias alone (its Parameter has ``decay=False``), as d2l does.
So ``weight_decay`` here *is* d2l's λ. The data term is the engine's MSE ``mean((ŷ − y)²)``, as in
d2l's concise PyTorch version (``nn.MSELoss`` with ``SGD(weight_decay=wd)`` on the weight only);
d2l's from-scratch version uses ``½ (ŷ − y)²``, against which the same λ penalizes twice as hard
(``weight_decay=2λ`` with half the learning rate reproduces it step for step).

Settings are d2l 0.17's: weights from N(0, 1), bias 0, SGD with lr 0.003, batch size 5, 100
epochs. Every run of the sweep starts from the same weights and sees the same minibatches, so only
λ differs.

JSON keys: ``study``, ``loss``, ``config`` (``n_train``, ``n_test``, ``in_features``, ``epochs``,
``lr``, ``batch_size``, ``init_std``, ``weight_decays``, ``seed``, ``quick``) and ``runs``, a list of
{``weight_decay``, ``curves`` (``train_loss``, ``test_loss``, ``extra.weight_norm`` per epoch, ...),
``weight_norm``, ``train_loss``, ``test_loss``} with the final values, ``initial_weight_norm`` and
``mean_predictor_test_loss``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlpkit._checks import check_nonnegative_float, check_positive_float, check_positive_int
from mlpkit.data.synthetic import make_linear_regression
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
    readable_log_ticks,
    style_axes,
    train_with_curves,
    write_study,
)
from mlpkit.spec import MLPSpec

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["DecayRun", "WeightDecayResult", "plot_weight_decay", "run_weight_decay", "weight_decay_study"]

logger = logging.getLogger(__name__)

NAME = "weight-decay"
LOSS_NAME = "mse = mean((y_hat - y)^2), without the penalty"
DEFAULT_WEIGHT_DECAYS = (0.0, 0.3, 1.0, 3.0, 10.0, 30.0)


@dataclass(frozen=True)
class DecayRun:
    """One training run at one penalty strength.

    Parameters
    ----------
    weight_decay : float
        λ, the SGD ``weight_decay`` (d2l's ``lambd``).
    curves : Curves
        Per-epoch MSE on the training and test sets (the penalty is not included), and
        ``extra["weight_norm"]``, ``‖w‖₂`` after each epoch.
    weight_norm, train_loss, test_loss : float
        The final values.
    """

    weight_decay: float
    curves: Curves
    weight_norm: float
    train_loss: float
    test_loss: float


@dataclass(frozen=True)
class WeightDecayResult:
    """The numbers behind the weight-decay figure.

    Parameters
    ----------
    runs : list of DecayRun
        One per λ, in the order asked for.
    initial_weight_norm : float
        ``‖w‖₂`` before training, the same for every run.
    mean_predictor_test_loss : float
        Test MSE of predicting the training labels' mean: the floor for any model that cannot
        tell the 200 true weights apart from 20 points.
    n_train, n_test, in_features, epochs, lr, batch_size, init_std
        The settings the numbers came from.
    """

    runs: list[DecayRun]
    initial_weight_norm: float
    mean_predictor_test_loss: float
    n_train: int
    n_test: int
    in_features: int
    epochs: int
    lr: float
    batch_size: int
    init_std: float

    @property
    def config(self) -> dict[str, Any]:
        """The settings, as written to the JSON file's ``config``."""
        keys = ("n_train", "n_test", "in_features", "epochs", "lr", "batch_size", "init_std")
        config = {key: getattr(self, key) for key in keys}
        return config | {"weight_decays": [r.weight_decay for r in self.runs]}

    def run(self, weight_decay: float) -> DecayRun:
        """The run with this λ."""
        for run in self.runs:
            if run.weight_decay == weight_decay:
                return run
        raise KeyError(f"no run with weight_decay={weight_decay}; have {[r.weight_decay for r in self.runs]}")


def _norm(array: np.ndarray) -> float:
    return float(np.linalg.norm(array))


def weight_decay_study(
    *,
    rng: np.random.Generator,
    weight_decays: Sequence[float] = DEFAULT_WEIGHT_DECAYS,
    n_train: int = 20,
    n_test: int = 100,
    in_features: int = 200,
    epochs: int = 100,
    lr: float = 0.003,
    batch_size: int = 5,
    init_std: float = 1.0,
) -> WeightDecayResult:
    """Train the linear model once per λ and record losses and the weight norm.

    Parameters
    ----------
    rng : numpy.random.Generator
        Draws the data, then the one seed every run starts from.
    weight_decays : sequence of float
        The λ to try.
    n_train, n_test, in_features
        The data, as in :func:`~mlpkit.data.synthetic.make_linear_regression`.
    epochs, lr, batch_size
        SGD's settings (d2l 0.17: 100, 0.003, 5).
    init_std : float
        Standard deviation of the initial weights (d2l 0.17: 1).

    Returns
    -------
    WeightDecayResult

    Examples
    --------
    >>> r = weight_decay_study(rng=np.random.default_rng(0), weight_decays=(0.0, 3.0), epochs=3)
    >>> r.run(3.0).weight_norm < r.run(0.0).weight_norm
    True
    """
    for lam in weight_decays:
        check_nonnegative_float("weight_decay", lam)
    check_positive_int("epochs", epochs)
    check_positive_float("lr", lr)
    data = make_linear_regression(rng=rng, n_train=n_train, n_test=n_test, in_features=in_features)
    train = (data.x_train, data.y_train[:, None])                      # (N, D), (N, 1)
    test = (data.x_test, data.y_test[:, None])
    run_seed = fresh_seed(rng)
    spec = MLPSpec(in_features, (), 1, init="normal", init_std=init_std)
    runs = []
    initial_norm = float("nan")
    for lam in weight_decays:
        run_rng = np.random.default_rng(run_seed)
        network = build_mlp(spec, rng=run_rng, dtype=np.float64)
        weight = linear_weights(network)[0]                            # (D, 1), updated in place
        initial_norm = float(np.linalg.norm(weight))
        curves = train_with_curves(
            network,
            loss=MSELoss(),
            optimizer=SGD(network.parameters().values(), lr=lr, weight_decay=lam),
            rng=run_rng,
            batch_size=batch_size,
            train=train,
            test=test,
            epochs=epochs,
            probes={"weight_norm": partial(_norm, weight)},
        )
        runs.append(
            DecayRun(
                weight_decay=float(lam),
                curves=curves,
                weight_norm=curves.extra["weight_norm"][-1],
                train_loss=curves.train_loss[-1],
                test_loss=curves.test_loss[-1],
            )
        )
        logger.info(
            "weight_decay=%g: ||w|| %.4g, train %.4g, test %.4g",
            lam, runs[-1].weight_norm, runs[-1].train_loss, runs[-1].test_loss,
        )
    return WeightDecayResult(
        runs=runs,
        initial_weight_norm=initial_norm,
        mean_predictor_test_loss=float(np.mean((data.y_test - data.y_train.mean()) ** 2)),
        n_train=n_train,
        n_test=n_test,
        in_features=in_features,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        init_std=init_std,
    )


def plot_weight_decay(result: WeightDecayResult, *, compare: Sequence[float] = (0.0, 3.0)) -> Figure:
    """Curves for the ``compare`` λ (losses, then ‖w‖), then final losses and ‖w‖ across the sweep."""
    fig, axes = new_figure(1, 4, width=17.0, height=3.8)
    ax_loss, ax_norm, ax_sweep, ax_sweep_norm = axes[0]
    shown = [run for run in result.runs if run.weight_decay in compare]
    for i, run in enumerate(shown):
        c = run.curves
        lam = f"λ={run.weight_decay:g}"
        ax_loss.plot(epochs_axis(c.train_loss), c.train_loss, color=f"C{i}", label=f"train, {lam}")
        ax_loss.plot(epochs_axis(c.test_loss), c.test_loss, color=f"C{i}", ls="--", label=f"test, {lam}")
        norms = c.extra["weight_norm"]
        ax_norm.plot(epochs_axis(norms), norms, color=f"C{i}", label=lam)
    style_axes(ax_loss, title="train and test MSE", xlabel="epoch", ylabel="MSE", log_y=True, integer_x=True)
    ax_loss.legend(fontsize=7)
    style_axes(ax_norm, title="weight norm ‖w‖₂", xlabel="epoch", ylabel="‖w‖₂", log_y=True, integer_x=True)
    readable_log_ticks(ax_norm)
    ax_norm.legend(fontsize=7)

    # The sweep is a handful of λ including 0: equally spaced, labelled positions show them all,
    # where a log axis would drop λ = 0.
    pos = np.arange(len(result.runs))
    ax_sweep.plot(pos, [run.train_loss for run in result.runs], "o-", label="train")
    ax_sweep.plot(pos, [run.test_loss for run in result.runs], "s--", label="test")
    ax_sweep.axhline(
        result.mean_predictor_test_loss, color="0.5", ls=":", lw=1, label="test, predicting the mean"
    )
    norms_after = [run.weight_norm for run in result.runs]
    ax_sweep_norm.plot(pos, norms_after, "o-", color="C2", label="after training")
    ax_sweep_norm.axhline(result.initial_weight_norm, color="0.5", ls=":", lw=1, label="at initialization")
    for ax in (ax_sweep, ax_sweep_norm):
        ax.set_xticks(pos, [f"{run.weight_decay:g}" for run in result.runs])
    after = f"after {count(result.epochs, 'epoch')}"
    style_axes(ax_sweep, title=after, xlabel="weight decay λ", ylabel="MSE", log_y=True)
    ax_sweep.legend(fontsize=7)
    style_axes(ax_sweep_norm, title=f"‖w‖₂ {after}", xlabel="weight decay λ", ylabel="‖w‖₂", log_y=True)
    readable_log_ticks(ax_sweep_norm)
    ax_sweep_norm.legend(fontsize=7)
    fig.suptitle(
        f"Weight decay: linear regression, d={result.in_features}, "
        f"{count(result.n_train, 'training point')} (d2l 3.7)",
        fontsize=11,
    )
    return fig


def _summary(result: WeightDecayResult) -> str:
    steps = result.epochs * math.ceil(result.n_train / result.batch_size)
    points = count(result.n_train, "training point")
    # Each SGD step multiplies w by (1 − lr·λ) before the data gradient; in the ~180 directions
    # that 20 points leave unconstrained, that is all that happens to the initial weights.
    rows = [
        [r.weight_decay, r.train_loss, r.test_loss, r.weight_norm,
         result.initial_weight_norm * (1 - result.lr * r.weight_decay) ** steps]
        for r in result.runs
    ]
    return "\n".join(
        [
            f"# Weight decay: {count(result.in_features, 'input')}, {points}",
            "",
            f"![losses and weight norm]({NAME}.png)",
            "",
            f"SGD, lr {result.lr:g}, batch {result.batch_size}, {count(result.epochs, 'epoch')}; "
            "the penalty (λ/2)‖w‖²",
            "is SGD's `weight_decay=λ` on the weight (not the bias). Losses are MSE without the penalty;",
            f"‖w‖₂ starts at {result.initial_weight_norm:.3g}.",
            "",
            markdown_table(["λ", "train MSE", "test MSE", "‖w‖₂", "‖w₀‖₂ (1 − lr·λ)^steps"], rows),
            "",
            f"The last column is the norm of the initial weights after {count(steps, 'step')} of decay",
            "alone; up to λ ≈ 3 it matches ‖w‖₂: the penalty's main work is to erase the random initial",
            f"weights in the directions the {points} say nothing about.",
            "",
            f"Without the penalty the model interpolates the {points} (train MSE near 0)",
            f"and keeps most of its large random initial weights, which {count(result.n_train, 'equation')}",
            f"cannot constrain in {count(result.in_features, 'dimension')}: the test error is huge.",
            "Weight decay shrinks every weight the data do not pin down, and the test error falls by",
            f"orders of magnitude, towards the {result.mean_predictor_test_loss:.3g} of predicting the",
            f"training mean: with {count(result.n_train, 'point')} the signal Σ 0.01 xᵢ itself cannot be",
            "recovered, only kept from doing harm.",
            "",
            "Reference: Zhang et al., *Dive into Deep Learning*, sec. 3.7 (sec. 4.5 of the 0.17 edition).",
        ]
    )


def run_weight_decay(
    out_dir: Path, *, quick: bool = False, seed: int = 0, data_dir: Path | None = None
) -> Path:
    """Weight decay on 200-dimensional linear regression from 20 points, λ = 0 to 30 (d2l 3.7).

    Writes ``weight-decay.png``, ``weight-decay.json`` and ``summary.md``.

    Parameters
    ----------
    out_dir : Path
        Created if needed.
    quick : bool
        30 epochs and λ in (0, 1, 3, 10) instead of 100 epochs and the full sweep.
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
    rng = np.random.default_rng(seed)
    if quick:
        result = weight_decay_study(rng=rng, weight_decays=(0.0, 1.0, 3.0, 10.0), epochs=30)
    else:
        result = weight_decay_study(rng=rng)
    numbers = {
        "study": NAME,
        "loss": LOSS_NAME,
        "config": {**result.config, "seed": seed, "quick": quick},
        "initial_weight_norm": result.initial_weight_norm,
        "mean_predictor_test_loss": result.mean_predictor_test_loss,
        "runs": [asdict(run) for run in result.runs],
    }
    return write_study(
        out_dir,
        NAME,
        numbers=numbers,
        summary=_summary(result),
        figure=plot_weight_decay(result),
        quick=quick,
    )
