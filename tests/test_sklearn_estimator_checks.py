"""scikit-learn's own estimator suite on MLPClassifier and MLPRegressor.

``parametrize_with_checks`` yields every check scikit-learn applies to its estimators (API
contract, input validation, pickling, invariances, minimum accuracy on easy data). No check is
expected to fail. Two instances are small (one hidden layer of 16 units, at most 100 epochs at a
larger learning rate); two have every default but a seed. All four take their precision from the
data, as scikit-learn's MLP does: the checks' float64 data trains in float64, where predicting a
row alone or inside a batch agrees to ~1e-16 whatever kernels BLAS picks for the two products
(in float32 they can differ by ~2e-7, over the 1e-7 of ``check_methods_subset_invariance``), and
``check_estimators_dtypes`` still trains on float32 data in float32. CI runs this file under
two OpenBLAS settings (``.ci/run``).
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
        MLPRegressor(random_state=0),
    ]
)
def test_sklearn_estimator_checks(estimator: BaseEstimator, check: Callable[[BaseEstimator], None]) -> None:
    # scikit-learn's suite runs each check under ignore_warnings(ConvergenceWarning, ...)
    # (sklearn/tests/test_common.py::test_estimators): the checks fit with few iterations on
    # purpose. Every other warning still fails the test.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)
