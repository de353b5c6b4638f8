"""scikit-learn's own estimator suite on MLPClassifier and MLPRegressor.

``parametrize_with_checks`` yields every check scikit-learn applies to its estimators (API
contract, input validation, pickling, invariances, minimum accuracy on easy data). No check is
skipped or expected to fail. Two instances are small (one hidden layer of 16 units, at most 100
epochs at a larger learning rate); two have the default size. The default regressor runs in
float64: in float32, predicting a row alone or inside a batch differs by ~2e-7 (BLAS blocks the
two products differently), just over the tolerance of ``check_methods_subset_invariance``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator

import pytest
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import parametrize_with_checks
from threadpoolctl import threadpool_limits

from mlpkit.sklearn import MLPClassifier, MLPRegressor

pytestmark = pytest.mark.filterwarnings("error")


@pytest.fixture(autouse=True)
def _one_blas_thread() -> Iterator[None]:
    # The checks' data sets have at most a few hundred rows: a second BLAS thread only adds
    # synchronisation, and on a busy shared machine its spin-waits slow the suite tenfold.
    with threadpool_limits(limits=1, user_api="blas"):
        yield


SMALL = {"hidden_layer_sizes": (16,), "max_iter": 100, "learning_rate_init": 0.01, "random_state": 0}


@parametrize_with_checks(
    [
        MLPClassifier(**SMALL),
        MLPRegressor(**SMALL),
        MLPClassifier(random_state=0),
        MLPRegressor(random_state=0, dtype="float64"),
    ]
)
def test_sklearn_estimator_checks(estimator: BaseEstimator, check: Callable[[BaseEstimator], None]) -> None:
    # scikit-learn's suite runs each check under ignore_warnings(ConvergenceWarning, ...)
    # (sklearn/tests/test_common.py::test_estimators): the checks fit with few iterations on
    # purpose. Every other warning still fails the test.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)
