"""scikit-learn estimators over the NumPy engine: :class:`MLPClassifier` and :class:`MLPRegressor`.

Both follow scikit-learn's estimator contract (the constructor stores parameters only, ``fit``
returns ``self``, fitted attributes end in ``_``, inputs are checked by
:func:`sklearn.utils.validation.validate_data`), so they work in ``Pipeline``, ``GridSearchCV``,
``clone`` and ``pickle``, and they pass scikit-learn's own estimator checks
(``tests/test_sklearn_estimator_checks.py``). Parameter names are those of
:mod:`sklearn.neural_network` wherever the concept is the same, so most code moves over by
changing the import. The training loop is :class:`~mlpkit.train.NumpyTrainer`'s; this module only
translates between scikit-learn's conventions and the engine.

The objective: the same numbers as scikit-learn
-----------------------------------------------
For a minibatch of B samples the loss minimised is scikit-learn's (``_backprop`` in
``sklearn/neural_network/_multilayer_perceptron.py``)::

    L = data_loss + alpha / (2 B) * sum_l ||W_l||²        (biases are not penalised)

so the penalty's gradient is ``alpha * W / B``: ``alpha`` means the same number in both libraries,
and a smaller last batch gets a proportionally larger penalty, as there. ``data_loss`` is the
batch mean over samples of

- softmax cross-entropy over C logits (multiclass),
- binary cross-entropy on one logit (binary: scikit-learn's single logistic output unit, so
  ``coefs_`` have the same shapes),
- binary cross-entropy summed over the labels (multilabel indicator targets),
- half the squared error summed over the outputs (regression: gradient ``(ŷ - y) / B``).

``loss_curve_`` is that objective averaged over each epoch's samples, penalty included.
(For several regression targets scikit-learn *reports* the squared error averaged over outputs
but *follows* the gradient of its sum; here the reported loss is the one whose gradient is
followed, so its data term is n_outputs times scikit-learn's. For one target the two agree.)

Differences from scikit-learn's MLP, on purpose
-----------------------------------------------
- ``warm_start`` and ``partial_fit`` keep the optimizer state (Adam's moments and step count,
  SGD's momentum buffer) and the shuffling stream: two ``fit`` calls of ``max_iter=k`` with
  ``warm_start=True`` give the network of one ``fit`` with ``max_iter=2k``. scikit-learn builds a
  new optimizer on every ``fit`` and restarts its random stream (scikit-learn issue #6091).
- ``early_stopping`` works with ``partial_fit``; see :meth:`MLPClassifier.partial_fit`.
- Extras: per-layer ``activation`` including ``"gelu"``, ``"silu"`` and ``"leaky_relu"``;
  ``dropout``; ``solver="adamw"`` with decoupled ``weight_decay``; ``init`` (the engine's
  initializers: Glorot/Xavier by default, Kaiming for ReLU nets); ``validation_loss_curve_``;
  ``progress`` (a progress bar); ``dtype``, to force a precision. By default the precision is
  scikit-learn's: float32 input trains and predicts in float32, anything else in float64
  (``dtype_`` says which); ``predict`` converts its input to that precision, while scikit-learn
  computes in the input's. Predictions are returned as float64.
- Not provided: ``solver="lbfgs"``, the ``learning_rate`` schedules (``power_t``), ``max_fun``,
  ``sample_weight`` and sparse input (a ``TypeError`` says so).
- The default ``init="xavier_uniform"`` is Glorot's uniform law with the gain of the following
  activation as in ``torch.nn.init`` (sqrt(2) for ReLU) and zero biases; scikit-learn uses gain 1
  and draws the biases from the same law.
- Adam adds ``epsilon`` after the bias correction of the second moment (Kingma & Ba's
  Algorithm 1, and torch); scikit-learn folds the correction into the step size, which makes its
  epsilon larger by 1/sqrt(1 - beta_2^t) in the first few thousand steps.
- ``verbose`` logs to the ``mlpkit.sklearn`` logger at INFO level instead of printing (library
  code never prints); ``logging.basicConfig(level=logging.INFO)`` shows it.
"""

from __future__ import annotations

import logging
import math
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Self

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from mlpkit._checks import (
    check_choice,
    check_nonnegative_float,
    check_positive_float,
    check_positive_int,
    check_probability,
)
from mlpkit.engine.layers import Linear, Parameter
from mlpkit.engine.losses import BCEWithLogitsLoss, Loss, MSELoss, SoftmaxCrossEntropyLoss, log_softmax
from mlpkit.engine.network import Sequential, build_mlp
from mlpkit.engine.optimizers import SGD, Adam, AdamW, Optimizer
from mlpkit.spec import MLPSpec
from mlpkit.train.early_stopping import EarlyStopping
from mlpkit.train.numpy_trainer import NumpyTrainer, predict_logits

__all__ = ["MLPClassifier", "MLPRegressor"]

logger = logging.getLogger(__name__)

SOLVERS = ("sgd", "adam", "adamw")
DTYPES = ("float32", "float64")
# scikit-learn's name for the logistic sigmoid; the engine calls it "sigmoid".
_ACTIVATION_ALIASES = {"logistic": "sigmoid"}

# The batch size scikit-learn's "auto" means: min(200, n_samples).
_AUTO_BATCH_SIZE = 200


# --- the objective and the pieces of the loop that differ from the trainer's defaults ---------------


class _PenalizedObjective(Loss):
    """scikit-learn's minibatch objective: ``scale * data_loss + alpha / (2 B) * sum ||W||²``.

    The engine losses are batch means; ``scale`` turns them into scikit-learn's losses (C for
    multilabel BCE, a sum over labels; ``n_outputs / 2`` for regression, half the squared error
    summed over outputs). The penalty's value is added here; its gradient, which belongs to the
    weights and not to the logits, is added by :class:`_PenalizedOptimizer` before each step,
    using the batch size this object saw last.

    Parameters
    ----------
    data_loss : Loss
        An engine loss on logits (its mean over the batch).
    scale : float
        Factor applied to ``data_loss`` and its gradient.
    weights : list of Parameter
        The penalised parameters (the Linear weights, not the biases).
    alpha : float
        scikit-learn's L2 penalty.
    """

    def __init__(self, data_loss: Loss, *, scale: float, weights: list[Parameter], alpha: float) -> None:
        self.data_loss = data_loss
        self.scale = scale
        self.weights = weights
        self.alpha = alpha
        self.batch_size = 0

    def unpenalized(self, logits: np.ndarray, target: np.ndarray) -> float:
        """The data loss alone, for validation: logits (N, C), target as for :meth:`forward`."""
        return self.scale * self.data_loss.forward(logits, target)

    def forward(self, logits: np.ndarray, target: np.ndarray) -> float:
        """logits (B, C); target (B,) class indices or (B, C) targets, as ``data_loss`` takes them."""
        self.batch_size = len(target)
        value = self.unpenalized(logits, target)
        if self.alpha:
            squares = sum(float(np.vdot(w.data, w.data)) for w in self.weights)
            value += 0.5 * self.alpha * squares / self.batch_size
        return value

    def backward(self) -> np.ndarray:
        """dL/dlogits (B, C) of the scaled data loss (the penalty does not depend on the logits).

        The engine's losses already flush entries that would turn subnormal (``flush_tiny``).
        """
        grad = self.data_loss.backward()
        if self.scale != 1.0:
            grad *= grad.dtype.type(self.scale)
        return grad


class _PenalizedOptimizer(Optimizer):
    """Adds the penalty's gradient ``alpha * W / B`` to each weight's grad, then steps ``inner``.

    The engine's coupled ``weight_decay`` is a constant per optimizer, but scikit-learn's penalty
    coefficient depends on the size of each batch (the last one of an epoch is smaller), and it
    must also combine with AdamW's decoupled decay. This wrapper holds no state of its own: the
    moments, the step count and ``lr`` are ``inner``'s, so checkpoints see the plain optimizer.
    """

    def __init__(self, inner: Optimizer, objective: _PenalizedObjective) -> None:
        # No super().__init__: every attribute the trainer reads is delegated to ``inner``.
        self.inner = inner
        self.objective = objective
        self.params = inner.params
        self._scratch = [np.empty_like(w.data) for w in objective.weights]   # no (D, H) temporaries

    @property
    def lr(self) -> float:
        return self.inner.lr

    @lr.setter
    def lr(self, value: float) -> None:                      # schedules set it
        self.inner.lr = value

    @property
    def step_count(self) -> int:
        return self.inner.step_count

    @step_count.setter
    def step_count(self, value: int) -> None:
        self.inner.step_count = value

    def step(self) -> None:
        """One update of ``inner`` from the data gradient plus the penalty's."""
        alpha = self.objective.alpha
        if alpha:
            for w, scratch in zip(self.objective.weights, self._scratch, strict=True):
                np.multiply(w.data, w.data.dtype.type(alpha / self.objective.batch_size), out=scratch)
                w.grad += scratch
        self.inner.step()

    def state_arrays(self) -> dict[str, np.ndarray]:
        return self.inner.state_arrays()

    def state_dict(self) -> dict[str, object]:
        return self.inner.state_dict()

    def load_state_dict(self, state: Any) -> None:
        self.inner.load_state_dict(state)


@dataclass
class _NoImprovementStopping(EarlyStopping):
    """scikit-learn's stopping rule, fed to the trainer in place of :class:`EarlyStopping`.

    An epoch is an improvement when its score beats the best so far by at least ``min_delta``
    (scikit-learn's ``tol``); training stops after ``patience`` epochs in a row without one
    (``patience = n_iter_no_change + 1``: scikit-learn stops when the count *exceeds*
    ``n_iter_no_change``). Unlike :class:`EarlyStopping`, the best score moves on *any* gain, so
    steady progress of less than ``tol`` per epoch counts as no improvement, as in scikit-learn
    (``_update_no_improvement_count``).
    """

    def update(self, score: float) -> bool:
        """Record one epoch's score; return True when training should stop."""
        self.epoch += 1
        sign = 1.0 if self.mode == "max" else -1.0                 # compare as "higher is better"
        best = sign * self.best_score if not math.isnan(self.best_score) else -math.inf
        gain = sign * score - best
        self.improved = gain >= self.min_delta
        self.bad_epochs = 0 if self.improved else self.bad_epochs + 1
        if gain > 0:
            self.best_score, self.best_epoch = float(score), self.epoch
        if self.bad_epochs >= self.patience:
            self.reason = (
                f"{self.monitor} did not improve by at least tol={self.min_delta:g} for {self.bad_epochs} "
                f"consecutive epochs (best {self.best_score:.6g} at epoch {self.best_epoch})"
            )
            return True
        return False


class _EstimatorTrainer(NumpyTrainer):
    """A :class:`NumpyTrainer` whose validation score is the estimator's ``score`` (accuracy or R²).

    The trainer's own validation accuracy cannot express R² nor multilabel subset accuracy, and
    its validation loss would include the penalty; this subclass overrides :meth:`evaluate` only,
    and the score lands in the record's ``val_accuracy`` slot, which ``monitor="val_accuracy"``
    maximises. The loop, the best-epoch bookkeeping and restore-best are the trainer's.
    """

    def __init__(
        self,
        network: Sequential,
        *,
        objective: _PenalizedObjective,
        score_fn: Callable[[np.ndarray, np.ndarray], float],
        **kwargs: Any,
    ) -> None:
        super().__init__(network, loss=objective, monitor="val_accuracy", **kwargs)
        self.objective = objective
        self.score_fn = score_fn

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float | None]:
        """Unpenalised loss and score of (x (N, D), y) in evaluation mode."""
        logits = predict_logits(self.network, x)                  # (N, C)
        return self.objective.unpenalized(logits, y), float(self.score_fn(logits, y))


class _InOrder(np.random.Generator):
    """A generator whose ``permutation(n)`` is ``arange(n)``: the trainer's batches without shuffling."""

    def __init__(self) -> None:
        super().__init__(np.random.PCG64(0))

    def permutation(self, x: Any, axis: int = 0) -> np.ndarray:
        return np.arange(x)

    # Generator's own reduce would rebuild a plain Generator, which shuffles.
    def __reduce__(self) -> Any:
        return (_InOrder, ())


def _argmax_accuracy(logits: np.ndarray, target: np.ndarray) -> float:
    """Multiclass accuracy: logits (N, C), target (N,) class indices."""
    return float(np.mean(logits.argmax(axis=1) == target))


def _threshold_accuracy(logits: np.ndarray, target: np.ndarray) -> float:
    """Binary accuracy, or multilabel subset accuracy: logits and target (N, C), target in {0, 1}."""
    return float(np.mean(np.all((logits > 0) == (target > 0.5), axis=1)))


def _r2(logits: np.ndarray, target: np.ndarray) -> float:
    """R² averaged over outputs (scikit-learn's ``score``): logits and target (N, K)."""
    return float(r2_score(target, logits))


def _seed_sequence(random_state: object) -> np.random.SeedSequence:
    """The root of every random stream of a fit, from scikit-learn's ``random_state``."""
    if isinstance(random_state, int | np.integer) and not isinstance(random_state, bool):
        return np.random.SeedSequence(int(random_state))
    if random_state is None:
        return np.random.SeedSequence()
    # A RandomState instance (or anything check_random_state accepts): draw the seed from it.
    return np.random.SeedSequence(int(check_random_state(random_state).randint(np.iinfo(np.int32).max)))


def _scalar(value: object) -> object:
    """numpy scalars as Python ones (GridSearchCV over ``np.arange`` passes ``np.int64``)."""
    return value.item() if isinstance(value, np.generic) else value


@dataclass(frozen=True)
class _Settings:
    """The validated parameters one fit needs (constructor parameters are never modified)."""

    layers: MLPSpec                       # hidden sizes, activations, dropout, init; in/out widths are 1
    dtype: np.dtype | None                # None: from the training data (float32 stays, else float64)
    solver: str
    alpha: float
    lr: float
    momentum: float
    betas: tuple[float, float]
    epsilon: float
    weight_decay: float
    batch_size: int | None                # None for "auto"
    patience: int
    tol: float
    validation_fraction: float
    max_iter: int


# --- the estimators ------------------------------------------------------------------------------


_PARAMETERS_DOC = """
    Parameters
    ----------
    hidden_layer_sizes : int or tuple of int, default=(100,)
        Width of each hidden layer, first to last; ``()`` gives a linear model.
    activation : str or tuple of str, default="relu"
        Activation after each hidden layer, one name for all or one per layer: ``"relu"``,
        ``"leaky_relu"`` (slope 0.01), ``"gelu"`` (exact, erf), ``"silu"``, ``"tanh"``,
        ``"logistic"`` (alias ``"sigmoid"``) or ``"identity"``.
    solver : {"adam", "adamw", "sgd"}, default="adam"
        Adam (Kingma & Ba, 2015), AdamW (Adam with decoupled ``weight_decay``; Loshchilov & Hutter,
        2019) or minibatch SGD with ``momentum``.
    alpha : float, default=1e-4
        L2 penalty, exactly scikit-learn's: each batch of B samples adds
        ``alpha / (2 B) * sum ||W||²`` to the loss (gradient ``alpha * W / B``); biases are not
        penalised. It applies with every solver (set it to 0 for plain AdamW).
    batch_size : int or "auto", default="auto"
        Minibatch size; ``"auto"`` is ``min(200, n_samples)``. Larger values are clipped with a
        warning, as in scikit-learn.
    learning_rate_init : float, default=1e-3
        The (constant) learning rate.
    max_iter : int, default=200
        Maximum number of epochs of one ``fit`` call.
    shuffle : bool, default=True
        Shuffle the training samples every epoch.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights, the shuffling, the dropout masks and the validation split.
    tol : float, default=1e-4
        The least improvement that counts: of the training loss, or with ``early_stopping`` of the
        validation score.
    verbose : bool, default=False
        Log the loss (and validation score) of every epoch to the ``mlpkit.sklearn`` logger at
        INFO level.
    warm_start : bool, default=False
        Let ``fit`` continue from the fitted network *and optimizer state* instead of starting
        over. Architecture, solver, ``momentum``, ``nesterovs_momentum``, ``early_stopping`` and
        an explicit ``dtype`` must then stay the same (with ``dtype=None`` later data is converted
        to the first fit's ``dtype_``); the learning rate, ``alpha``, ``weight_decay``, Adam's
        betas and epsilon, ``tol``, ``n_iter_no_change`` and ``batch_size`` may change.
    momentum : float, default=0.9
        SGD momentum in [0, 1). Only used when ``solver="sgd"``.
    nesterovs_momentum : bool, default=True
        Use Nesterov's momentum. Only used when ``solver="sgd"`` and ``momentum > 0``.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data (stratified for single-label
        classification), score it after every epoch with the estimator's ``score``, stop when it
        has not improved by ``tol`` for ``n_iter_no_change`` epochs, and keep the best epoch's
        weights.
    validation_fraction : float, default=0.1
        Share of the training data held out for ``early_stopping``, in (0, 1).
    beta_1, beta_2 : float, default=0.9, 0.999
        Decay rates of Adam's moment estimates, in [0, 1). Only used by "adam" and "adamw".
    epsilon : float, default=1e-8
        Adam's numerical-stability term. Only used by "adam" and "adamw".
    n_iter_no_change : int or numpy.inf, default=10
        Epochs without a ``tol`` improvement tolerated before stopping (training stops at the
        next one, as in scikit-learn); ``numpy.inf`` never stops before ``max_iter``.
    dropout : float or tuple of float, default=0.0
        Inverted-dropout probability after each hidden activation (Srivastava et al., 2014), one
        value for all hidden layers or one per layer.
    weight_decay : float, default=0.01
        Decoupled weight decay of AdamW, ``W ← (1 − lr·weight_decay) W`` each step (torch's
        default value). Only used when ``solver="adamw"``.
    init : {"xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "normal"}, \
default="xavier_uniform"
        Weight initializer (:mod:`mlpkit.engine.init`), with the gain of the activation that
        follows each layer; biases start at zero.
    dtype : {"float32", "float64"} or None, default=None
        Precision of the network and of training. None is scikit-learn's rule: float32 training
        data keeps float32 (twice float64's GEMM throughput), any other input (float64, integers,
        lists) trains in float64. A name forces that precision. Inputs are converted once; the
        precision chosen is ``dtype_``.
    progress : bool, default=False
        Show one progress bar over every batch of a ``fit`` (its ETA is the fit's), with the
        running loss.
"""

_COMMON_ATTRIBUTES_DOC = """
    n_features_in_ : int
        Number of features seen during ``fit``.
    dtype_ : numpy.dtype
        Precision of the network, chosen by the first ``fit`` (see ``dtype``); ``predict`` and
        later ``partial_fit`` or warm-started ``fit`` calls convert their input to it.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of the features, when ``X`` had string column names.
    n_outputs_ : int
        Number of output units.
    n_layers_ : int
        Number of layers, input and output included (scikit-learn's count).
    out_activation_ : str
        ``"softmax"``, ``"logistic"`` or ``"identity"``: the link applied to the output units.
    coefs_ : list of ndarray
        Weight matrix of each layer, (fan_in, fan_out) as in scikit-learn; the live arrays.
    intercepts_ : list of ndarray
        Bias vector of each layer, (fan_out,).
    loss_ : float
        Training loss of the last epoch.
    loss_curve_ : list of float
        Training loss (penalty included) of every epoch since the network was initialized.
    best_loss_ : float or None
        Lowest training loss; None with ``early_stopping``.
    validation_scores_ : list of float or None
        Validation score of every epoch with ``early_stopping``, else None.
    validation_loss_curve_ : list of float or None
        Validation loss (no penalty) of every epoch with ``early_stopping``, else None.
    best_validation_score_ : float or None
        Best validation score with ``early_stopping``, else None.
    best_epoch_ : int
        The epoch (1-based index into ``loss_curve_``) of the best validation score, or without
        ``early_stopping`` of the lowest training loss. With ``early_stopping`` the weights are
        that epoch's after ``fit``.
    n_iter_ : int
        Epochs run by the last ``fit`` or ``partial_fit`` call.
    t_ : int
        Training samples seen since the network was initialized.
    converged_ : bool
        Whether the last call stopped because the monitored score did not improve by ``tol`` for
        ``n_iter_no_change`` epochs. After a ``fit`` that ran to its end it is False exactly
        when a ``ConvergenceWarning`` was raised.
    network_ : mlpkit.engine.Sequential
        The trained engine network (``network_.state_dict()`` gives torch-layout weights).
    spec_ : mlpkit.spec.MLPSpec
        The network's description; it builds the same network in either engine.
"""


class _BaseMLP(BaseEstimator):  # type: ignore[misc]  # scikit-learn ships no type stubs
    """Shared constructor, validation and training of the two estimators (not public)."""

    def __init__(
        self,
        hidden_layer_sizes: int | tuple[int, ...] = (100,),
        activation: str | tuple[str, ...] = "relu",
        *,
        solver: str = "adam",
        alpha: float = 1e-4,
        batch_size: int | str = "auto",
        learning_rate_init: float = 1e-3,
        max_iter: int = 200,
        shuffle: bool = True,
        random_state: int | np.random.RandomState | None = None,
        tol: float = 1e-4,
        verbose: bool = False,
        warm_start: bool = False,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        n_iter_no_change: int | float = 10,
        dropout: float | tuple[float, ...] = 0.0,
        weight_decay: float = 0.01,
        init: str = "xavier_uniform",
        dtype: str | None = None,
        progress: bool = False,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.dropout = dropout
        self.weight_decay = weight_decay
        self.init = init
        self.dtype = dtype
        self.progress = progress

    # -- what the subclasses define ----------------------------------------------------------------

    def _targets(self, y: np.ndarray, *, reset: bool, incremental: bool, classes: Any) -> np.ndarray:
        """Check y, set the target attributes (on reset), return the loss's targets: (N,) or (N, K)."""
        raise NotImplementedError

    def _data_loss(self) -> tuple[Loss, float]:
        """The engine loss for ``n_outputs_`` outputs and its scale to scikit-learn's loss."""
        raise NotImplementedError

    def _score_function(self) -> Callable[[np.ndarray, np.ndarray], float]:
        """The estimator's ``score`` as a function of (logits, loss targets), for validation."""
        raise NotImplementedError

    def _stratify(self, target: np.ndarray) -> np.ndarray | None:
        """The labels to stratify the validation split by, or None."""
        return None

    # -- parameters ---------------------------------------------------------------------------------

    def _settings(self) -> _Settings:
        """Validate the constructor parameters (scikit-learn validates in fit, never in __init__)."""
        p: dict[str, Any] = {name: _scalar(value) for name, value in self.get_params(deep=False).items()}
        sizes = p["hidden_layer_sizes"]
        try:
            widths = [sizes] if isinstance(sizes, int) else [_scalar(w) for w in sizes]
        except TypeError:
            raise ValueError(
                f"hidden_layer_sizes must be an int or a sequence of ints, got {sizes!r}"
            ) from None
        hidden = tuple(check_positive_int("hidden_layer_sizes", w) for w in widths)
        activation, dropout = p["activation"], p["dropout"]
        if isinstance(activation, str):
            activation = _ACTIVATION_ALIASES.get(activation, activation)
        elif isinstance(activation, list | tuple):
            activation = tuple(_ACTIVATION_ALIASES.get(a, a) for a in activation)
        if isinstance(dropout, list | tuple):
            dropout = tuple(dropout)
        # The spec checks the architecture now, with placeholder widths, so that a bad activation
        # or dropout is reported before any data is looked at.
        layers = MLPSpec(1, hidden, 1, activation=activation, dropout=dropout, init=p["init"])
        batch_size = None if p["batch_size"] == "auto" else check_positive_int("batch_size", p["batch_size"])
        if p["n_iter_no_change"] == math.inf:
            patience = sys.maxsize                                 # never stops before max_iter
        else:
            patience = check_positive_int("n_iter_no_change", p["n_iter_no_change"]) + 1
        validation_fraction = check_probability("validation_fraction", p["validation_fraction"])
        if p["early_stopping"] and validation_fraction == 0:
            raise ValueError("validation_fraction must be in (0, 1) with early_stopping=True, got 0")
        return _Settings(
            layers=layers,
            dtype=None if p["dtype"] is None else np.dtype(check_choice("dtype", p["dtype"], DTYPES)),
            solver=check_choice("solver", p["solver"], SOLVERS),
            alpha=check_nonnegative_float("alpha", p["alpha"]),
            lr=check_positive_float("learning_rate_init", p["learning_rate_init"]),
            momentum=check_probability("momentum", p["momentum"]),
            betas=(check_probability("beta_1", p["beta_1"]), check_probability("beta_2", p["beta_2"])),
            epsilon=check_positive_float("epsilon", p["epsilon"]),
            weight_decay=check_nonnegative_float("weight_decay", p["weight_decay"]),
            batch_size=batch_size,
            patience=patience,
            tol=check_nonnegative_float("tol", p["tol"]),
            validation_fraction=validation_fraction,
            max_iter=check_positive_int("max_iter", p["max_iter"]),
        )

    def _frozen(self, s: _Settings) -> dict[str, object]:
        """What warm_start and partial_fit cannot change: it shapes the network or optimizer state."""
        return {
            "hidden_layer_sizes": s.layers.hidden_features,
            "activation": s.layers.activations,
            "dropout": s.layers.dropouts,
            "init": s.layers.init,
            "solver": s.solver,
            "momentum": s.momentum if s.solver == "sgd" else None,
            "nesterovs_momentum": bool(self.nesterovs_momentum) if s.solver == "sgd" else None,
            "early_stopping": bool(self.early_stopping),
        }

    # -- fitting -------------------------------------------------------------------------------------

    def _fit(self, X: Any, y: Any, *, incremental: bool, classes: Any = None) -> Self:
        s = self._settings()
        reset = not hasattr(self, "network_") or (not incremental and not self.warm_start)
        if not reset:
            dtype: Any = self.dtype_                             # continue in the first fit's precision
        elif s.dtype is None:
            dtype = (np.float64, np.float32)                     # float32 stays, all else float64
        else:
            dtype = s.dtype
        X, y = validate_data(
            self, X, y, reset=reset, dtype=dtype, multi_output=True, y_numeric=not is_classifier(self)
        )
        target = self._targets(y, reset=reset, incremental=incremental, classes=classes)
        if reset:
            self._initialize(s, X.dtype)
        else:
            self._update(s)
        if target.ndim == 2:
            target = target.astype(self.dtype_, copy=False)     # BCE/MSE targets: once, not per batch
        self._train(X, target, s, epochs=1 if incremental else s.max_iter, incremental=incremental)
        return self

    def _initialize(self, s: _Settings, dtype: np.dtype) -> None:
        """Build the network (parameters in ``dtype``), objective, optimizer, stopping rule and trainer."""
        net_seed, shuffle_seed, split_seed = _seed_sequence(self.random_state).spawn(3)
        self.spec_ = replace(s.layers, in_features=self.n_features_in_, out_features=self.n_outputs_)
        self.dtype_ = np.dtype(dtype)
        # One generator draws the initial weights and then the dropout masks, as build_mlp wires it.
        self.network_ = build_mlp(self.spec_, rng=np.random.default_rng(net_seed), dtype=self.dtype_)
        params = list(self.network_.parameters().values())
        loss, scale = self._data_loss()
        weights = [p for p in params if p.decay]                 # Linear weights; biases are not penalised
        objective = _PenalizedObjective(loss, scale=scale, weights=weights, alpha=s.alpha)
        inner: Optimizer
        if s.solver == "sgd":
            # scikit-learn ignores Nesterov without momentum; the engine rejects the combination.
            nesterov = bool(self.nesterovs_momentum) and s.momentum > 0
            inner = SGD(params, lr=s.lr, momentum=s.momentum, nesterov=nesterov)
        elif s.solver == "adam":
            inner = Adam(params, lr=s.lr, betas=s.betas, eps=s.epsilon)
        else:
            inner = AdamW(params, lr=s.lr, betas=s.betas, eps=s.epsilon, weight_decay=s.weight_decay)
        stopping = _NoImprovementStopping(
            patience=s.patience,
            min_delta=s.tol,
            mode="max" if self.early_stopping else "min",
            monitor="validation score" if self.early_stopping else "training loss",
        )
        self._shuffle_rng = np.random.default_rng(shuffle_seed)
        # An int, so that every call holds out the same rows of the same data (no leakage across
        # warm starts or partial_fit calls), even with random_state=None.
        self._split_seed = int(split_seed.generate_state(1)[0])
        # The trainer owns these; the estimator keeps typed references to update them between calls.
        self._optimizer = _PenalizedOptimizer(inner, objective)
        self._stopping = stopping
        self._trainer = _EstimatorTrainer(
            self.network_,
            objective=objective,
            optimizer=self._optimizer,
            score_fn=self._score_function(),
            rng=self._shuffle_rng,
            early_stopping=stopping,
        )
        self._frozen_params = self._frozen(s)
        self.t_ = 0

    def _update(self, s: _Settings) -> None:
        """Continue training: check nothing structural changed, apply the parameters that may."""
        frozen, fitted = self._frozen(s), dict(self._frozen_params)
        if s.dtype is not None:                                  # None continues in the fitted dtype_
            frozen["dtype"], fitted["dtype"] = s.dtype.name, self.dtype_.name
        for name, value in frozen.items():
            if value != fitted[name]:
                raise ValueError(
                    f"{name} changed from {fitted[name]!r} to {value!r} since the network was "
                    "initialized; warm_start and partial_fit continue the same network and optimizer, so "
                    "fit with warm_start=False to start over"
                )
        optimizer = self._optimizer
        optimizer.lr = s.lr
        optimizer.objective.alpha = s.alpha
        inner = optimizer.inner
        if isinstance(inner, Adam):
            inner.beta1, inner.beta2 = s.betas
            inner.eps = s.epsilon
        if isinstance(inner, AdamW):
            inner.weight_decay = s.weight_decay
        self._stopping.patience, self._stopping.min_delta = s.patience, s.tol

    def _train(
        self, X: np.ndarray, target: np.ndarray, s: _Settings, *, epochs: int, incremental: bool
    ) -> None:
        """Run ``epochs`` epochs of the trainer on (X (N, D), target) and set the fitted attributes."""
        if self.early_stopping:
            x_train, x_val, t_train, t_val = train_test_split(
                X, target, test_size=s.validation_fraction, random_state=self._split_seed,
                stratify=self._stratify(target),
            )
            if len(x_val) < 2:
                raise ValueError(
                    "The validation set is too small. Increase 'validation_fraction' or the size of your "
                    "dataset."
                )
        else:
            x_train, t_train, x_val, t_val = X, target, None, None
        n = len(x_train)
        if s.batch_size is None:
            batch_size = min(_AUTO_BATCH_SIZE, n)
        else:
            batch_size = s.batch_size
            if batch_size > n:
                warnings.warn(
                    "Got `batch_size` less than 1 or larger than sample size. It is going to be clipped",
                    UserWarning,
                    stacklevel=4,
                )
                batch_size = n
        trainer = self._trainer
        trainer.batch_size = batch_size
        trainer.rng = self._shuffle_rng if self.shuffle else _InOrder()
        trainer.progress = bool(self.progress)
        # partial_fit keeps the latest weights between calls and restores the best only on stopping.
        trainer.restore_best = bool(self.early_stopping) and not incremental
        trainer.on_epoch_end = self._log_epoch if self.verbose else None
        done = len(trainer.history.records)
        try:
            trainer.fit(x_train, t_train, x_val, t_val, epochs=epochs)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", UserWarning, stacklevel=4)
            if trainer.restore_best and trainer.best_state is not None:
                trainer.restore_best_weights()
        finally:
            trainer.on_epoch_end = None                          # no bound method in the fitted state
        self.converged_ = self._stopping.bad_epochs >= self._stopping.patience
        if incremental and self.early_stopping and self.converged_:
            trainer.restore_best_weights()
        self.n_iter_ = len(trainer.history.records) - done
        self.t_ += n * self.n_iter_
        self._set_curves()
        if not incremental and not self.converged_ and self.n_iter_ == s.max_iter:
            warnings.warn(
                f"Stochastic Optimizer: Maximum iterations ({s.max_iter}) reached and the optimization "
                "hasn't converged yet.",
                ConvergenceWarning,
                stacklevel=4,
            )

    def _set_curves(self) -> None:
        history = self._trainer.history
        self.loss_curve_ = [float(v) for v in history.column("train_loss")]
        self.loss_ = self.loss_curve_[-1]
        self.best_epoch_ = history.best_epoch
        if self.early_stopping:
            self.validation_scores_: list[float] | None = [float(v) for v in history.column("val_accuracy")]
            self.validation_loss_curve_: list[float] | None = [float(v) for v in history.column("val_loss")]
            self.best_validation_score_: float | None = max(self.validation_scores_)
            self.best_loss_: float | None = None
        else:
            self.validation_scores_ = self.validation_loss_curve_ = self.best_validation_score_ = None
            self.best_loss_ = min(self.loss_curve_)

    def _log_epoch(self, record: dict[str, Any]) -> None:
        logger.info("Iteration %d, loss = %.8f", record["epoch"], record["train_loss"])
        if record["val_accuracy"] is not None:
            logger.info("Validation score: %f", record["val_accuracy"])

    # -- prediction ------------------------------------------------------------------------------

    def _logits(self, X: Any) -> np.ndarray:
        """Validated X (N, D), converted to ``dtype_`` -> logits (N, n_outputs_) in ``dtype_``."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=self.dtype_)
        return predict_logits(self.network_, X)

    @property
    def coefs_(self) -> list[np.ndarray]:
        check_is_fitted(self)
        return [layer.weight.data for layer in self.network_.layers if isinstance(layer, Linear)]

    @property
    def intercepts_(self) -> list[np.ndarray]:
        check_is_fitted(self)
        linears = [layer for layer in self.network_.layers if isinstance(layer, Linear)]
        return [layer.bias.data for layer in linears if layer.bias is not None]

    @property
    def n_layers_(self) -> int:
        check_is_fitted(self)
        return len(self.spec_.hidden_features) + 2

    def __getstate__(self) -> dict[str, Any]:
        # Engine layers keep their last input for backward, up to predict_logits' 8192-row chunk;
        # a one-row forward replaces it, so a pickle holds the model and not the last batch.
        if hasattr(self, "network_"):
            predict_logits(self.network_, np.zeros((1, self.n_features_in_), dtype=self.network_.dtype))
        return super().__getstate__()  # type: ignore[no-any-return]


class MLPClassifier(ClassifierMixin, _BaseMLP):  # type: ignore[misc]
    __doc__ = (
        """Multilayer perceptron classifier over the mlpkit NumPy engine, scikit-learn compatible.

    Multiclass targets train a softmax output layer with cross-entropy; binary targets one logistic
    output unit; multilabel indicator matrices one logistic unit per label. Labels may be any
    type scikit-learn accepts (strings included); ``classes_`` holds them sorted.
"""
        + _PARAMETERS_DOC
        + """
    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels."""
        + _COMMON_ATTRIBUTES_DOC
        + """
    See Also
    --------
    sklearn.neural_network.MLPClassifier : scikit-learn's implementation, whose parameters these are.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from mlpkit.sklearn import MLPClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = MLPClassifier((16,), learning_rate_init=0.01, max_iter=500, random_state=0).fit(X, y)
    >>> clf.predict_proba(X[:2]).shape
    (2, 3)
    """
    )

    def _targets(self, y: np.ndarray, *, reset: bool, incremental: bool, classes: Any) -> np.ndarray:
        """Labels (N,) or indicator matrix (N, C) -> class indices (N,) or {0, 1} targets (N, C)."""
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if reset:
            binarizer = LabelBinarizer()
            # partial_fit takes the classes from ``classes``: one batch may hold any subset of them
            # (a multilabel indicator matrix names every label by its columns).
            binarizer.fit(classes if incremental and classes is not None and y.ndim == 1 else y)
            if len(binarizer.classes_) < 2:
                only = binarizer.classes_.tolist()[0]            # a Python scalar: 'a', not np.str_('a')
                raise ValueError(
                    f"{type(self).__name__} needs samples of at least 2 classes in the data, but the data "
                    f"contains only one class: {only!r}"
                )
            self._label_binarizer = binarizer
            self.classes_ = binarizer.classes_
            self.out_activation_ = "softmax" if binarizer.y_type_ == "multiclass" else "logistic"
            self.n_outputs_ = 1 if binarizer.y_type_ == "binary" else len(self.classes_)
        seen = unique_labels(y)
        if not reset and not incremental and set(seen) != set(self.classes_):
            raise ValueError(
                "warm_start can only be used where `y` has the same classes as in the previous call to fit. "
                f"Previously got {self.classes_}, `y` has {seen}"
            )
        if len(np.setdiff1d(seen, self.classes_)):
            raise ValueError(
                f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. "
                f"'y' has {seen}."
            )
        onehot: np.ndarray = self._label_binarizer.transform(y)   # (N, C), or (N, 1) when binary
        if self.out_activation_ == "softmax":
            indices: np.ndarray = onehot.argmax(axis=1)          # (N,) class indices
            return indices
        return onehot

    def _score_function(self) -> Callable[[np.ndarray, np.ndarray], float]:
        # Accuracy, as scikit-learn's score: argmax for softmax, logit > 0 (p > 0.5) per label otherwise.
        return _argmax_accuracy if self.out_activation_ == "softmax" else _threshold_accuracy

    def _data_loss(self) -> tuple[Loss, float]:
        if self.out_activation_ == "softmax":
            return SoftmaxCrossEntropyLoss(), 1.0
        # The engine's BCE averages over all N·C entries; scikit-learn sums over labels.
        return BCEWithLogitsLoss(), float(self.n_outputs_)

    def _stratify(self, target: np.ndarray) -> np.ndarray | None:
        if self.out_activation_ == "softmax":
            return target
        return target[:, 0] if self.n_outputs_ == 1 else None   # scikit-learn does not stratify multilabel

    def fit(self, X: Any, y: Any) -> Self:
        """Train on (X, y) for up to ``max_iter`` epochs (continuing the last fit with ``warm_start``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs; converted once to the network's precision (float32 input stays float32,
            other input becomes float64, unless ``dtype`` names one). Sparse matrices are not supported.
        y : array-like of shape (n_samples,) or (n_samples, n_classes)
            Class labels, or a multilabel indicator matrix.

        Returns
        -------
        self : MLPClassifier
        """
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> Self:
        """Train one epoch on (X, y), continuing from the current network and optimizer state.

        With ``early_stopping``, each call holds out ``validation_fraction`` of its data (the same
        rows whenever it gets the same data), scores the epoch on it and remembers the best
        weights; when the score has not improved by ``tol`` for ``n_iter_no_change`` calls, the
        call restores the best weights and sets ``converged_``. Further calls continue training
        from there (``converged_`` stays True until the score improves), so a loop can read
        ``while not clf.converged_: clf.partial_fit(X, y)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_classes)
        classes : array-like of shape (n_classes,), default=None
            Every class of the whole data set; required on the first call (except for multilabel
            targets), ignored afterwards.

        Returns
        -------
        self : MLPClassifier
        """
        fitted = hasattr(self, "classes_")
        if not fitted and classes is None and type_of_target(y) != "multilabel-indicator":
            raise ValueError("classes must be passed on the first call to partial_fit.")
        if fitted and classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(
                f"`classes={classes!r}` is not the same as on last call to partial_fit, "
                f"was: {self.classes_!r}"
            )
        return self._fit(X, y, incremental=True, classes=classes)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,), or (n_samples, n_classes) for multilabel targets
        """
        logits = self._logits(X)                                 # (N, n_outputs_)
        if self.n_outputs_ == 1:
            logits = logits[:, 0]                                # binary: (N,)
        # A logit > 0 is a probability > 0.5; multiclass takes the argmax.
        labels: np.ndarray = self._label_binarizer.inverse_transform(logits, threshold=0.0)
        return labels

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, in float64 so that each row sums to 1 to rounding.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Columns in the order of ``classes_``; for multilabel targets, each label's probability.
        """
        proba: np.ndarray = np.exp(self.predict_log_proba(X))
        return proba

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Log of :meth:`predict_proba`, computed from the logits without underflow.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        z = self._logits(X).astype(np.float64)                  # (N, n_outputs_)
        if self.out_activation_ == "softmax":
            return log_softmax(z)                                # (N, C)
        if self.n_outputs_ == 1:
            # softmax([0, z]) = [1 − σ(z), σ(z)]: the binary case as a two-column softmax.
            return log_softmax(np.hstack([np.zeros_like(z), z]))  # (N, 2)
        return -np.logaddexp(0.0, -z)                            # log σ(z) per label, (N, C)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):  # type: ignore[misc]
    __doc__ = (
        """Multilayer perceptron regressor over the mlpkit NumPy engine, scikit-learn compatible.

    Trains linear output units on half the squared error summed over the outputs (scikit-learn's
    ``squared_error``), for one target (1-D ``y``) or several (2-D ``y``). Its ``score`` and, with
    ``early_stopping``, the validation score are R².
"""
        + _PARAMETERS_DOC
        + """
    Attributes
    ----------"""
        + _COMMON_ATTRIBUTES_DOC
        + """
    See Also
    --------
    sklearn.neural_network.MLPRegressor : scikit-learn's implementation, whose parameters these are.

    Examples
    --------
    >>> import numpy as np
    >>> from mlpkit.sklearn import MLPRegressor
    >>> X = np.linspace(-1, 1, 200).reshape(-1, 1)
    >>> reg = MLPRegressor((32,), learning_rate_init=0.01, max_iter=500, random_state=0).fit(X, X[:, 0] ** 2)
    >>> reg.predict(X[:3]).shape
    (3,)
    """
    )

    def _targets(self, y: np.ndarray, *, reset: bool, incremental: bool, classes: Any) -> np.ndarray:
        """Targets (N,) or (N, K) -> (N, K) in the network's dtype."""
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        target = y.reshape(len(y), -1)                           # (N, K)
        if reset:
            self.n_outputs_ = target.shape[1]
            self.out_activation_ = "identity"
        elif target.shape[1] != self.n_outputs_:
            raise ValueError(
                f"y has {target.shape[1]} outputs, but {type(self).__name__} was fitted with "
                f"{self.n_outputs_}"
            )
        return target

    def _score_function(self) -> Callable[[np.ndarray, np.ndarray], float]:
        return _r2

    def _data_loss(self) -> tuple[Loss, float]:
        # MSELoss is the mean over all N·K entries; scikit-learn's gradient is that of
        # sum_k (ŷ − y)² / 2, averaged over samples: a factor K / 2.
        return MSELoss(), self.n_outputs_ / 2.0

    def fit(self, X: Any, y: Any) -> Self:
        """Train on (X, y) for up to ``max_iter`` epochs (continuing the last fit with ``warm_start``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs; converted once to the network's precision (float32 input stays float32,
            other input becomes float64, unless ``dtype`` names one). Sparse matrices are not supported.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets.

        Returns
        -------
        self : MLPRegressor
        """
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X: Any, y: Any) -> Self:
        """Train one epoch on (X, y), continuing from the current network and optimizer state.

        ``early_stopping`` works as described in :meth:`MLPClassifier.partial_fit`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)

        Returns
        -------
        self : MLPRegressor
        """
        return self._fit(X, y, incremental=True)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted targets, as float64.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,), or (n_samples, n_outputs) when fitted on 2-D targets
        """
        out = self._logits(X).astype(np.float64)                 # (N, K)
        return out[:, 0] if self.n_outputs_ == 1 else out

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
