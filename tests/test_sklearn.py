"""mlpkit.sklearn: scikit-learn's numbers, its conventions, and what scikit-learn's MLP lacks.

The reference for the objective is scikit-learn itself: from the same weights and the same
batches, three epochs of plain SGD must land on the same weights in both libraries (that pins the
loss, its gradient and the meaning of ``alpha``). The rest checks the contract (clone, Pipeline,
GridSearchCV, pickle), the training state carried by ``warm_start`` and ``partial_fit``, early
stopping, the error messages, the extras (per-layer activations, dropout, AdamW) and accuracy on
a real data set next to scikit-learn's.
"""

from __future__ import annotations

import logging
import math
import pickle
import re
import warnings
from collections.abc import Iterator

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.datasets import load_digits, make_blobs, make_classification, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.neural_network import MLPClassifier as SkMLPClassifier
from sklearn.neural_network import MLPRegressor as SkMLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

import mlpkit.sklearn as mlp_sklearn
from mlpkit.engine.activations import Sigmoid
from mlpkit.engine.layers import Linear
from mlpkit.sklearn import MLPClassifier, MLPRegressor

pytestmark = pytest.mark.filterwarnings("error")


@pytest.fixture(autouse=True)
def _one_blas_thread() -> Iterator[None]:
    # These problems are tiny (at most 1797 x 64): a second BLAS thread only adds
    # synchronisation, and on a busy shared machine its spin-waits slow the tests tenfold.
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _blobs(n: int = 120, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    x, y = make_blobs(n_samples=n, centers=classes, n_features=4, random_state=seed)
    return StandardScaler().fit_transform(x), y


def _fit_quietly(est, *args, **kwargs):  # type: ignore[no-untyped-def]
    """fit without the ConvergenceWarning that a deliberately short run raises."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(*args, **kwargs)


# --- the same numbers as scikit-learn -----------------------------------------------------------


CASES = {
    # name: (scikit-learn class, mlpkit class, targets for 30 samples)
    "multiclass": (SkMLPClassifier, MLPClassifier, lambda rng: rng.integers(0, 3, 30)),
    "binary": (SkMLPClassifier, MLPClassifier, lambda rng: rng.integers(0, 2, 30)),
    "multilabel": (SkMLPClassifier, MLPClassifier, lambda rng: rng.integers(0, 2, (30, 3))),
    "regression": (SkMLPRegressor, MLPRegressor, lambda rng: rng.standard_normal(30)),
    "regression_2d": (SkMLPRegressor, MLPRegressor, lambda rng: rng.standard_normal((30, 2))),
}


@pytest.mark.parametrize("case", list(CASES))
def test_sgd_epochs_from_the_same_weights_match_sklearn(case, rng):
    """Same start, same batches (7, 7, 7, 7, 2; no shuffling), plain SGD: same weights after 3 epochs.

    Matching with a smaller last batch and alpha > 0 pins alpha's meaning (gradient alpha W / B
    per batch of size B), and the losses pin the objective, penalty included.
    """
    sk_cls, our_cls, make_y = CASES[case]
    x, y = rng.standard_normal((30, 4)), make_y(rng)
    kwargs = {}
    if sk_cls is SkMLPClassifier:
        # scikit-learn wants ``classes`` on a first partial_fit even for multilabel targets.
        kwargs["classes"] = np.arange(y.shape[1]) if y.ndim == 2 else np.unique(y)
    # scikit-learn reports the squared error averaged over outputs but follows the gradient of
    # its sum (see the module docstring); without the penalty our reported loss is exactly
    # n_outputs times theirs, which keeps the loss comparison below exact.
    n_outputs = y.shape[1] if case == "regression_2d" else 1
    params = {"hidden_layer_sizes": (5,), "activation": "tanh", "solver": "sgd", "momentum": 0.0,
              "alpha": 0.3 if n_outputs == 1 else 0.0, "batch_size": 7, "shuffle": False,
              "learning_rate_init": 0.1, "random_state": 0}
    ours = our_cls(**params, dtype="float64").partial_fit(x, y, **kwargs)
    theirs = sk_cls(**params).partial_fit(x, y, **kwargs)
    for mine, ref in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_, strict=True):
        assert mine.shape == ref.shape
        mine[...] = ref                                       # start both from scikit-learn's weights
    for _ in range(3):
        ours.partial_fit(x, y)
        theirs.partial_fit(x, y)
    for mine, ref in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_, strict=True):
        np.testing.assert_allclose(mine, ref, rtol=1e-10, atol=1e-12)
    expected = np.multiply(theirs.loss_curve_[1:], n_outputs)
    np.testing.assert_allclose(ours.loss_curve_[1:], expected, rtol=1e-10)


def test_coefs_and_intercepts_have_sklearns_shapes():
    x, y = _blobs()
    ours = _fit_quietly(MLPClassifier((7, 5), max_iter=2, random_state=0), x, y)
    theirs = _fit_quietly(SkMLPClassifier((7, 5), max_iter=2, random_state=0), x, y)
    assert [c.shape for c in ours.coefs_] == [c.shape for c in theirs.coefs_] == [(4, 7), (7, 5), (5, 3)]
    assert [b.shape for b in ours.intercepts_] == [b.shape for b in theirs.intercepts_]
    assert ours.n_layers_ == theirs.n_layers_ == 4
    assert ours.out_activation_ == theirs.out_activation_ == "softmax"


# --- the scikit-learn contract ----------------------------------------------------------------------


def test_clone_copies_parameters_and_no_fitted_state():
    x, y = _blobs()
    est = MLPClassifier((8,), activation=("gelu",), dropout=0.1, solver="adamw", max_iter=3, random_state=0)
    _fit_quietly(est, x, y)
    copy = clone(est)
    assert copy.get_params() == est.get_params()
    assert not hasattr(copy, "network_") and not hasattr(copy, "classes_")


def test_grid_search_over_hidden_sizes_and_alpha_in_a_pipeline():
    x, y = make_classification(n_samples=150, n_features=6, n_informative=4, n_classes=3, random_state=0)
    x = x * [1, 10, 100, 1, 10, 100]                           # scales the StandardScaler must undo
    mlp = MLPClassifier(max_iter=40, learning_rate_init=0.01, random_state=0)
    pipe = make_pipeline(StandardScaler(), mlp)
    param_grid = {"mlpclassifier__hidden_layer_sizes": [(8,), (16, 8)], "mlpclassifier__alpha": [1e-4, 1e-1]}
    grid = GridSearchCV(pipe, param_grid, cv=3)
    _fit_quietly(grid, x, y)
    assert set(grid.cv_results_["params"][0]) == {"mlpclassifier__hidden_layer_sizes", "mlpclassifier__alpha"}
    assert len(grid.cv_results_["mean_test_score"]) == 4
    assert grid.best_score_ > 0.6
    assert grid.predict(x).shape == (150,)


def test_pickle_keeps_predictions_and_the_training_state():
    x, y = _blobs()
    est = MLPClassifier((8,), dropout=0.2, random_state=0)
    for _ in range(3):
        est.partial_fit(x, y, classes=[0, 1, 2])
    copy = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(copy.predict_proba(x), est.predict_proba(x))
    # Adam's moments, the shuffling stream and the dropout stream all survive the round trip.
    est.partial_fit(x, y)
    copy.partial_fit(x, y)
    np.testing.assert_array_equal(copy.predict_proba(x), est.predict_proba(x))
    assert copy.loss_curve_ == est.loss_curve_


def test_pickle_does_not_carry_the_last_predicted_batch():
    x, y = _blobs()
    est = _fit_quietly(MLPClassifier((8,), max_iter=2, random_state=0), x, y)
    small = len(pickle.dumps(est))
    est.predict(np.zeros((5000, 4)))
    assert len(pickle.dumps(est)) < small + 10_000            # not the 5000 x 4 input nor the activations


# --- warm_start and partial_fit carry the optimizer state ---------------------------------------


@pytest.mark.parametrize("solver", ["adam", "adamw", "sgd"])
def test_two_warm_started_fits_equal_one_fit_twice_as_long(solver):
    """What scikit-learn gets wrong (its issue #6091): its warm start resets Adam's moments."""
    x, y = _blobs()
    params = {"hidden_layer_sizes": (8,), "solver": solver, "learning_rate_init": 0.01,
              "n_iter_no_change": np.inf, "random_state": 0, "batch_size": 32}
    once = MLPClassifier(max_iter=10, **params)
    with pytest.warns(ConvergenceWarning, match=re.escape("Maximum iterations (10) reached")):
        once.fit(x, y)
    twice = MLPClassifier(max_iter=5, warm_start=True, **params)
    for _ in range(2):
        with pytest.warns(ConvergenceWarning):
            twice.fit(x, y)
    for a, b in zip(once.coefs_ + once.intercepts_, twice.coefs_ + twice.intercepts_, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert twice.loss_curve_ == pytest.approx(once.loss_curve_, rel=1e-6)
    assert twice.n_iter_ == 5 and once.n_iter_ == 10          # the last call's epochs, as in scikit-learn
    assert twice.t_ == once.t_ == 10 * len(x)


def test_warm_start_off_starts_over():
    x, y = _blobs()
    est = MLPClassifier((8,), max_iter=3, random_state=0)
    first = _fit_quietly(est, x, y).predict_proba(x)
    np.testing.assert_array_equal(_fit_quietly(est, x, y).predict_proba(x), first)
    assert len(est.loss_curve_) == 3


@pytest.mark.parametrize("early_stopping", [False, True])
def test_partial_fit_epochs_equal_fit_epochs(early_stopping):
    x, y = _blobs()
    params = {"hidden_layer_sizes": (8,), "dropout": 0.1, "early_stopping": early_stopping,
              "n_iter_no_change": np.inf, "random_state": 0}
    fitted = MLPClassifier(max_iter=6, **params)
    with pytest.warns(ConvergenceWarning):
        fitted.fit(x, y)
    stepped = MLPClassifier(**params)
    for _ in range(6):
        stepped.partial_fit(x, y, classes=[0, 1, 2])
    assert stepped.loss_curve_ == pytest.approx(fitted.loss_curve_, rel=1e-6)
    assert stepped.validation_scores_ == fitted.validation_scores_
    if not early_stopping:                                    # else fit restores the best epoch at the end
        np.testing.assert_allclose(stepped.predict_proba(x), fitted.predict_proba(x), rtol=1e-5)
    assert stepped.n_iter_ == 1 and stepped.t_ == fitted.t_


def test_warm_start_rejects_a_different_architecture():
    x, y = _blobs()
    est = _fit_quietly(MLPClassifier((8,), max_iter=2, warm_start=True, random_state=0), x, y)
    est.set_params(hidden_layer_sizes=(9,))
    with pytest.raises(ValueError, match=re.escape("hidden_layer_sizes changed from (8,) to (9,)")):
        est.fit(x, y)


def test_warm_start_rejects_different_classes():
    x, y = _blobs()
    est = _fit_quietly(MLPClassifier((8,), max_iter=2, warm_start=True, random_state=0), x, y)
    with pytest.raises(ValueError, match="warm_start can only be used where `y` has the same classes"):
        est.fit(x[y < 2], y[y < 2])


def test_warm_start_applies_a_new_learning_rate():
    x, y = _blobs()
    est = _fit_quietly(MLPClassifier((8,), max_iter=2, warm_start=True, random_state=0), x, y)
    est.set_params(learning_rate_init=0.05)
    _fit_quietly(est, x, y)
    assert est._optimizer.inner.lr == 0.05


# --- early stopping --------------------------------------------------------------------------


def _noisy_problem() -> tuple[np.ndarray, np.ndarray]:
    """Few samples, many noise features, 20% flipped labels: a big network overfits within epochs."""
    x, y = make_classification(n_samples=300, n_features=40, n_informative=3, flip_y=0.2, random_state=1)
    return StandardScaler().fit_transform(x), y


def test_early_stopping_keeps_the_best_epochs_weights():
    x, y = _noisy_problem()
    params = {"hidden_layer_sizes": (64,), "learning_rate_init": 0.01, "early_stopping": True,
              "random_state": 0}
    est = MLPClassifier(n_iter_no_change=5, max_iter=200, **params).fit(x, y)
    assert est.converged_
    best = est.best_epoch_
    assert est.n_iter_ == best + 6                            # then n_iter_no_change + 1 epochs of no gain
    assert est.validation_scores_[best - 1] == est.best_validation_score_ == max(est.validation_scores_)
    assert len(est.validation_loss_curve_) == len(est.loss_curve_) == est.n_iter_
    assert est.best_loss_ is None
    # The returned network is the one after `best` epochs: a run cut there ends on the same weights.
    with pytest.warns(ConvergenceWarning):
        cut = MLPClassifier(n_iter_no_change=np.inf, max_iter=best, **params).fit(x, y)
    np.testing.assert_array_equal(est.predict_proba(x), cut.predict_proba(x))
    # ...and not the last epoch's, which partial_fit (no restore before stopping) ends on.
    last = MLPClassifier(n_iter_no_change=np.inf, **params)
    for _ in range(est.n_iter_):
        last.partial_fit(x, y, classes=[0, 1])
    assert not np.allclose(last.predict_proba(x), est.predict_proba(x))


def test_validation_split_is_stratified(monkeypatch):
    x, y = make_classification(n_samples=400, n_features=5, n_informative=3, n_classes=3,
                               weights=[0.9, 0.06, 0.04], random_state=0)
    seen: list[np.ndarray] = []
    real_split = mlp_sklearn.train_test_split

    def spy(*arrays, **kwargs):  # type: ignore[no-untyped-def]
        out = real_split(*arrays, **kwargs)
        seen.append(out[3])                                   # the validation targets
        return out

    monkeypatch.setattr(mlp_sklearn, "train_test_split", spy)
    est = MLPClassifier((8,), early_stopping=True, validation_fraction=0.1, max_iter=2, random_state=0)
    _fit_quietly(est, x, y)
    (y_val,) = seen
    assert len(y_val) == 40
    counts, expected = np.bincount(y_val, minlength=3), np.bincount(y) / 10   # about 36, 2.5, 1.5
    assert counts.min() >= 1 and np.all(np.abs(counts - expected) < 1), (counts, expected)


def test_validation_split_needs_two_samples_per_class():
    x, y = _blobs()
    y[0] = 3                                                  # a class with one sample cannot be stratified
    with pytest.raises(ValueError, match="only 1 member, which is too few"):
        MLPClassifier(early_stopping=True, max_iter=2, random_state=0).fit(x, y)


def test_validation_set_too_small():
    x, y = _blobs(n=12, classes=2)
    with pytest.raises(ValueError, match="The validation set is too small"):
        MLPRegressor(early_stopping=True, validation_fraction=0.05, max_iter=2, random_state=0).fit(
            x, y.astype(float)
        )


def test_early_stopping_with_partial_fit_stops_and_restores():
    x, y = _noisy_problem()
    est = MLPClassifier((64,), learning_rate_init=0.01, early_stopping=True, n_iter_no_change=3,
                        random_state=0)
    calls = 0
    while calls < 200:
        est.partial_fit(x, y, classes=[0, 1])
        calls += 1
        if est.converged_:
            break
    assert est.converged_ and calls == est.best_epoch_ + 4
    # The restored weights reproduce the best epoch's validation score, recomputed from scratch.
    _, x_val, _, y_val = train_test_split(x, y, test_size=0.1, random_state=est._split_seed, stratify=y)
    assert est.score(x_val, y_val) == est.best_validation_score_


def test_regressor_validation_score_is_r2():
    x, y = make_regression(n_samples=200, n_features=5, noise=5.0, random_state=0)
    y = (y - y.mean()) / y.std()
    est = _fit_quietly(MLPRegressor((16,), early_stopping=True, learning_rate_init=0.01, max_iter=30,
                                    random_state=0), x, y)
    _, x_val, _, y_val = train_test_split(x, y, test_size=0.1, random_state=est._split_seed)
    assert est.score(x_val, y_val) == pytest.approx(est.best_validation_score_, rel=1e-5)
    assert est.best_validation_score_ > 0.8


# --- convergence --------------------------------------------------------------------------------


def test_convergence_on_training_loss_stops_without_warning():
    x, y = _blobs()
    est = MLPClassifier((8,), learning_rate_init=0.05, tol=1e-2, n_iter_no_change=2, random_state=0).fit(x, y)
    assert est.converged_ and est.n_iter_ < 200
    assert est.validation_scores_ is None and est.best_loss_ == min(est.loss_curve_)


def test_max_iter_without_convergence_warns_like_sklearn():
    x, y = _blobs()
    with pytest.warns(ConvergenceWarning, match=re.escape(
        "Stochastic Optimizer: Maximum iterations (3) reached and the optimization hasn't converged yet."
    )):
        est = MLPClassifier((8,), max_iter=3, random_state=0).fit(x, y)
    assert not est.converged_


# --- labels and targets -------------------------------------------------------------------------


@pytest.mark.parametrize("labels", [["cat", "dog"], ["cat", "dog", "eel"]], ids=["binary", "multiclass"])
def test_string_labels(labels):
    x, y = _blobs(classes=len(labels))
    names = np.array(labels, dtype=object)[y]
    est = MLPClassifier((8,), learning_rate_init=0.05, early_stopping=True, random_state=0)
    _fit_quietly(est, x, names)
    assert list(est.classes_) == labels
    assert set(est.predict(x)) <= set(labels)
    assert est.score(x, names) > 0.9
    proba = est.predict_proba(x)
    assert proba.shape == (len(x), len(labels)) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(est.classes_[proba.argmax(axis=1)], est.predict(x))


def test_binary_probabilities_come_from_one_logistic_unit():
    x, y = _blobs(classes=2)
    est = _fit_quietly(MLPClassifier((8,), max_iter=5, random_state=0), x, y)
    assert est.n_outputs_ == 1 and est.out_activation_ == "logistic"
    logit = est.network_.forward(x.astype(est.dtype_))[:, 0].astype(np.float64)
    np.testing.assert_allclose(est.predict_proba(x)[:, 1], 1 / (1 + np.exp(-logit)), rtol=1e-6)
    np.testing.assert_allclose(est.predict_log_proba(x), np.log(est.predict_proba(x)), rtol=1e-9)


def test_multilabel_targets():
    x, y1 = _blobs(classes=3)
    y = np.stack([y1 == 0, y1 != 2], axis=1).astype(int)      # two labels per sample
    est = _fit_quietly(MLPClassifier((8,), learning_rate_init=0.05, max_iter=60, random_state=0), x, y)
    assert est.predict(x).shape == (len(x), 2)
    assert est.predict_proba(x).shape == (len(x), 2)
    assert est.score(x, y) > 0.9                              # subset accuracy


@pytest.mark.parametrize("shape", [(50,), (50, 3)])
def test_regressor_output_shapes(shape):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 4))
    y = rng.standard_normal(shape)
    est = _fit_quietly(MLPRegressor((8,), max_iter=2, random_state=0), x, y)
    full = est.predict(x)
    assert full.shape == shape and full.dtype == np.float64
    one = est.predict(x[:1])                                  # a batch of one: (1,) or (1, 3)
    assert one.shape == (1, *shape[1:])
    np.testing.assert_allclose(one, full[:1], rtol=1e-6, atol=1e-7)


# --- bad input gets scikit-learn's errors -------------------------------------------------------------


def test_single_class_is_an_error():
    x, _ = _blobs()
    message = ("MLPClassifier needs samples of at least 2 classes in the data, but the data contains only "
               "one class: 'only'")
    with pytest.raises(ValueError, match=re.escape(message)):
        MLPClassifier(random_state=0).fit(x, ["only"] * len(x))


def test_nan_in_x_is_an_error():
    x, y = _blobs()
    x[3, 1] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        MLPClassifier(random_state=0).fit(x, y)


def test_nan_in_y_is_an_error():
    x, y = _blobs()
    with pytest.raises(ValueError, match="Input y contains NaN"):
        MLPRegressor(random_state=0).fit(x, np.where(y == 0, np.nan, y))


def test_wrong_feature_count_at_predict_time():
    x, y = _blobs()
    est = _fit_quietly(MLPClassifier((8,), max_iter=2, random_state=0), x, y)
    with pytest.raises(ValueError, match="X has 3 features, but MLPClassifier is expecting 4 features"):
        est.predict(x[:, :3])


def test_wrong_feature_count_in_partial_fit():
    x, y = _blobs()
    est = MLPRegressor((8,), random_state=0).partial_fit(x, y)
    with pytest.raises(ValueError, match="X has 5 features, but MLPRegressor is expecting 4 features"):
        est.partial_fit(np.hstack([x, x[:, :1]]), y)


@pytest.mark.parametrize(
    "est", [MLPClassifier(random_state=0), MLPRegressor(random_state=0)], ids=["classifier", "regressor"]
)
def test_sparse_input_is_a_clear_error(est):
    x, y = _blobs()
    with pytest.raises(TypeError, match="Sparse data was passed for X, but dense data is required"):
        est.fit(sp.csr_matrix(x), y)


def test_predict_before_fit():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError, match="This MLPClassifier instance is not fitted yet"):
        MLPClassifier().predict(np.zeros((2, 4)))


def test_partial_fit_needs_classes_first():
    x, y = _blobs()
    with pytest.raises(ValueError, match="classes must be passed on the first call to partial_fit"):
        MLPClassifier(random_state=0).partial_fit(x, y)


def test_partial_fit_rejects_unknown_classes():
    x, y = _blobs()
    est = MLPClassifier((8,), random_state=0).partial_fit(x, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match=re.escape("`y` has classes not in `self.classes_`")):
        est.partial_fit(x, y + 1)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"alpha": -1.0}, "alpha must be a non-negative float, got -1.0"),
        ({"solver": "lbfgs"}, "solver must be one of ['adam', 'adamw', 'sgd'], got 'lbfgs'"),
        ({"hidden_layer_sizes": (8, 0)}, "hidden_layer_sizes must be a positive int, got 0"),
        ({"activation": "softplus"}, "activation must be one of"),
        ({"activation": ("relu", "gelu")}, "activation must be one value or one per hidden layer (1)"),
        ({"dropout": 1.0}, "dropout must be a float in [0, 1), got 1.0"),
        ({"batch_size": 0}, "batch_size must be a positive int, got 0"),
        ({"n_iter_no_change": 0}, "n_iter_no_change must be a positive int, got 0"),
        ({"learning_rate_init": 0.0}, "learning_rate_init must be a positive float, got 0.0"),
        ({"dtype": "float16"}, "dtype must be one of ['float32', 'float64'], got 'float16'"),
        ({"early_stopping": True, "validation_fraction": 0.0}, "validation_fraction must be in (0, 1)"),
    ],
)
def test_bad_parameters_are_named_in_the_error(params, message):
    x, y = _blobs()
    with pytest.raises(ValueError, match=re.escape(message)):
        MLPClassifier(**{"hidden_layer_sizes": (8,), "random_state": 0, **params}).fit(x, y)


def test_batch_size_larger_than_the_data_is_clipped_with_sklearns_warning():
    x, y = _blobs(n=30)
    with pytest.warns(UserWarning, match="It is going to be clipped"):
        MLPClassifier((8,), batch_size=64, random_state=0).partial_fit(x, y, classes=[0, 1, 2])


# --- what scikit-learn's MLP does not have -------------------------------------------------------------


def test_per_layer_activations_build_those_layers():
    x, y = _blobs()
    est = MLPClassifier((8, 8, 8), activation=("gelu", "silu", "leaky_relu"), learning_rate_init=0.02,
                        max_iter=40, random_state=0)
    _fit_quietly(est, x, y)
    assert est.spec_.layer_names() == ("linear", "gelu", "linear", "silu", "linear", "leaky_relu", "linear")
    assert [type(layer).__name__ for layer in est.network_.layers[1::2]] == ["GELU", "SiLU", "LeakyReLU"]
    assert est.score(x, y) > 0.9


def test_logistic_is_sklearns_name_for_sigmoid():
    x, y = _blobs()
    est = _fit_quietly(MLPClassifier((8,), activation="logistic", max_iter=2, random_state=0), x, y)
    assert est.spec_.activations == ("sigmoid",)
    assert [type(layer) for layer in est.network_.layers] == [Linear, Sigmoid, Linear]


def test_dropout_trains_stochastically_and_predicts_deterministically():
    x, y = _blobs()
    plain = _fit_quietly(MLPClassifier((32,), max_iter=5, random_state=0), x, y)
    dropped = _fit_quietly(MLPClassifier((32,), dropout=0.5, max_iter=5, random_state=0), x, y)
    assert "dropout" in dropped.spec_.layer_names()
    assert dropped.loss_curve_ != plain.loss_curve_
    np.testing.assert_array_equal(dropped.predict_proba(x), dropped.predict_proba(x))   # eval mode: no masks


def test_adamw_decay_shrinks_the_weights():
    x, y = _blobs()
    norms = []
    for weight_decay in (0.0, 0.5):
        est = _fit_quietly(MLPClassifier((16,), solver="adamw", alpha=0.0, weight_decay=weight_decay,
                                         learning_rate_init=0.01, max_iter=30, random_state=0), x, y)
        norms.append(sum(float(np.sum(w * w)) for w in est.coefs_))
    assert norms[1] < 0.8 * norms[0]


def test_weight_decay_is_ignored_by_adam():
    x, y = _blobs()
    a = _fit_quietly(MLPClassifier((8,), weight_decay=0.0, max_iter=3, random_state=0), x, y)
    b = _fit_quietly(MLPClassifier((8,), weight_decay=0.5, max_iter=3, random_state=0), x, y)
    np.testing.assert_array_equal(a.coefs_[0], b.coefs_[0])


# A 20-2000-10 ReLU network: the first layer is followed by ReLU (gain sqrt(2), torch's), the output
# layer by the loss (gain 1). Stds by hand: Kaiming gain / sqrt(fan_in) (the uniform law's bound is
# sqrt(3) times that); Glorot gain * sqrt(2 / (fan_in + fan_out)); "normal" the spec's 0.01.
_FAN_IN, _WIDTH, _CLASSES = 20, 2000, 10
_KAIMING = (math.sqrt(2) / math.sqrt(_FAN_IN), 1 / math.sqrt(_WIDTH))                           # .316, .022
_XAVIER = (math.sqrt(2) * math.sqrt(2 / (_FAN_IN + _WIDTH)), math.sqrt(2 / (_WIDTH + _CLASSES)))  # .044, .032


@pytest.mark.parametrize(
    ("init", "stds", "uniform"),
    [
        ("kaiming_normal", _KAIMING, False),
        ("kaiming_uniform", _KAIMING, True),
        ("xavier_normal", _XAVIER, False),
        ("xavier_uniform", _XAVIER, True),
        ("normal", (0.01, 0.01), False),
    ],
)
def test_initializers(init, stds, uniform):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((2 * _CLASSES, _FAN_IN)), np.arange(2 * _CLASSES) % _CLASSES
    # One SGD epoch at lr 1e-12 leaves the weights where they started, to far below the tolerances.
    est = _fit_quietly(MLPClassifier((_WIDTH,), init=init, solver="sgd", momentum=0.0, alpha=0.0,
                                     learning_rate_init=1e-12, max_iter=1, random_state=0), x, y)
    assert est.spec_.init == init
    assert [w.shape for w in est.coefs_] == [(_FAN_IN, _WIDTH), (_WIDTH, _CLASSES)]
    for weights, std in zip(est.coefs_, stds, strict=True):
        # 40000 and 20000 draws: the sample std's standard error is at most 0.5%, so 3% is 6 of them.
        assert weights.std() == pytest.approx(std, rel=0.03)
        assert abs(weights.mean()) < 0.05 * std
        if uniform:                                               # U(-b, b) with b = sqrt(3) std
            assert np.abs(weights).max() <= math.sqrt(3) * std * (1 + 1e-6)
        else:                                                     # a normal law reaches past 3 std
            assert np.abs(weights).max() > 3 * std
    for bias in est.intercepts_:
        np.testing.assert_allclose(bias, 0.0, atol=1e-9)          # biases start at zero


# --- precision: scikit-learn's rule (float32 input stays float32, anything else float64) -----------


def _forward_by_hand(est, x: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The ReLU network's output (N, K), written out, in the dtype of ``x`` and the weights."""
    (w0, w1), (b0, b1) = est.coefs_, est.intercepts_
    return np.maximum(x @ w0 + b0, 0) @ w1 + b1


def _float32_values(a: np.ndarray) -> bool:
    """Whether every value of a float64 array is a float32 number (a float32 result, widened)."""
    return bool(np.array_equal(a, a.astype(np.float32).astype(np.float64)))


def _regression(n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 4))
    return x, x @ [1.0, -2.0, 0.5, 0.0] + 0.1 * rng.standard_normal(n)


def test_float64_input_trains_and_predicts_in_float64():
    x, y = _regression()
    est = _fit_quietly(MLPRegressor((8,), max_iter=3, random_state=0), x, y)
    assert est.dtype_ == np.float64
    assert {a.dtype for a in est.coefs_ + est.intercepts_} == {np.dtype(np.float64)}
    pred = est.predict(x)
    assert pred.dtype == np.float64 and not _float32_values(pred)
    np.testing.assert_allclose(pred, _forward_by_hand(est, x)[:, 0], rtol=1e-12, atol=1e-14)
    clf = _fit_quietly(MLPClassifier((8,), max_iter=3, random_state=0), *_blobs())
    assert clf.dtype_ == np.float64 and clf.coefs_[0].dtype == np.float64


def test_float32_input_trains_in_float32_and_predict_converts_to_it():
    x, y = _regression()
    x32 = x.astype(np.float32)
    est = _fit_quietly(MLPRegressor((8,), max_iter=3, random_state=0), x32, y)
    assert est.dtype_ == np.float32
    assert {a.dtype for a in est.coefs_ + est.intercepts_} == {np.dtype(np.float32)}
    pred = est.predict(x32)
    # Returned as float64, computed in float32: every value is a float32 number.
    assert pred.dtype == np.float64 and _float32_values(pred)
    np.testing.assert_allclose(pred, _forward_by_hand(est, x32)[:, 0], rtol=1e-6, atol=1e-6)
    # float64 input to a float32 network is converted to float32 first: the same predictions.
    np.testing.assert_array_equal(est.predict(x), pred)
    xb, yb = _blobs()
    clf = _fit_quietly(MLPClassifier((8,), max_iter=3, random_state=0), xb.astype(np.float32), yb)
    assert clf.dtype_ == np.float32 and clf.coefs_[0].dtype == np.float32


@pytest.mark.parametrize(
    ("dtype", "x_dtype"), [("float64", np.float32), ("float32", np.float64)], ids=["up", "down"]
)
def test_an_explicit_dtype_wins_over_the_input(dtype, x_dtype):
    x, y = _regression()
    est = _fit_quietly(MLPRegressor((8,), dtype=dtype, max_iter=3, random_state=0), x.astype(x_dtype), y)
    assert est.dtype_ == np.dtype(dtype)
    assert {a.dtype for a in est.coefs_ + est.intercepts_} == {np.dtype(dtype)}
    assert _float32_values(est.predict(x)) == (dtype == "float32")


@pytest.mark.parametrize(
    "convert", [lambda x: x.tolist(), lambda x: np.round(10 * x).astype(np.int64)], ids=["list", "int64"]
)
def test_lists_and_integers_train_in_float64(convert):
    x, y = _regression()
    est = _fit_quietly(MLPRegressor((8,), max_iter=3, random_state=0), convert(x), y)
    assert est.dtype_ == np.float64 and est.coefs_[0].dtype == np.float64


def test_partial_fit_and_warm_start_keep_the_first_fits_dtype():
    x, y = _regression()
    x32 = x.astype(np.float32)
    stepped = MLPRegressor((8,), random_state=0).partial_fit(x32, y)
    stepped.partial_fit(x, y)                                 # float64 data, converted to float32
    assert stepped.dtype_ == np.float32 and stepped.coefs_[0].dtype == np.float32
    # The float64 batch trained exactly as its float32 copy does.
    reference = MLPRegressor((8,), random_state=0).partial_fit(x32, y).partial_fit(x32, y)
    np.testing.assert_array_equal(stepped.coefs_[0], reference.coefs_[0])
    warm = _fit_quietly(MLPRegressor((8,), max_iter=2, warm_start=True, random_state=0), x32, y)
    _fit_quietly(warm, x, y)
    assert warm.dtype_ == np.float32 and warm.coefs_[0].dtype == np.float32
    warm.set_params(dtype="float64")
    message = "dtype changed from 'float32' to 'float64' since the network was initialized"
    with pytest.raises(ValueError, match=re.escape(message)):
        warm.fit(x, y)
    # Without warm_start, fit starts over and takes the new data's precision.
    cold = _fit_quietly(MLPRegressor((8,), max_iter=2, random_state=0), x32, y)
    assert _fit_quietly(cold, x, y).dtype_ == np.float64


def test_shuffle_false_survives_pickling():
    # That shuffle=False takes the batches in order is what the comparison with scikit-learn
    # above relies on; here: the switch matters, and a pickled estimator keeps it.
    x, y = _blobs()
    params = {"hidden_layer_sizes": (8,), "batch_size": 16, "random_state": 0}
    est = MLPClassifier(shuffle=False, **params).partial_fit(x, y, classes=[0, 1, 2])
    shuffled = MLPClassifier(**params).partial_fit(x, y, classes=[0, 1, 2])
    assert est.loss_curve_ != shuffled.loss_curve_
    copy = pickle.loads(pickle.dumps(est))
    assert copy.partial_fit(x, y).loss_curve_ == est.partial_fit(x, y).loss_curve_


def test_verbose_logs_every_epoch(caplog):
    x, y = _blobs()
    with caplog.at_level(logging.INFO, logger="mlpkit.sklearn"):
        _fit_quietly(MLPClassifier((8,), verbose=True, early_stopping=True, max_iter=2, random_state=0), x, y)
    messages = [r.getMessage() for r in caplog.records if r.name == "mlpkit.sklearn"]
    assert messages[0].startswith("Iteration 1, loss = ") and messages[1].startswith("Validation score: ")
    assert len(messages) == 4


def test_progress_bar(capsys):
    x, y = _blobs()
    _fit_quietly(MLPClassifier((8,), progress=True, batch_size=16, max_iter=2, random_state=0), x, y)
    assert "epoch 2" in capsys.readouterr().err


# --- a real data set, next to scikit-learn --------------------------------------------------------------


def test_digits_accuracy_and_parity_with_sklearn():
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x / 16, y, test_size=0.25, stratify=y, random_state=0)
    ours, theirs = [], []
    for seed in (0, 1):
        for scores, cls in ((ours, MLPClassifier), (theirs, SkMLPClassifier)):
            est = _fit_quietly(cls(max_iter=100, random_state=seed), x_train, y_train)
            scores.append(est.score(x_test, y_test))
    assert min(ours) > 0.95
    assert np.mean(ours) > np.mean(theirs) - 0.02, (ours, theirs)
