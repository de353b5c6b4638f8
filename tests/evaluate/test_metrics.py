"""Metrics against hand computations, brute-force pairwise counts, and scikit-learn."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from mlpkit.errors import DataFormatError
from mlpkit.evaluate.metrics import accuracy, classification_scores, confusion_matrix, log_loss, roc_auc


def scalar(text: str) -> str:
    """Regex for a number in a message, printed plain or, by NumPy 2's repr, as ``np.int64(7)``."""
    return rf"(?:np\.\w+\()?{text}\)?"


def pairwise_auc(y: np.ndarray, s: np.ndarray) -> float:
    """The definition, O(P·N): the fraction of (positive, negative) pairs ordered right, ties 1/2."""
    pos, neg = s[y == 1], s[y == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


# -- accuracy and confusion matrix ---------------------------------------------------------------


def test_accuracy_counts_matches() -> None:
    assert accuracy(np.array([3, 1, 4, 1, 5]), np.array([3, 1, 4, 0, 0])) == 0.6
    assert accuracy(np.array([2]), np.array([2])) == 1.0


def test_accuracy_rejects_scores_and_mismatched_lengths() -> None:
    with pytest.raises(
        DataFormatError, match=r"y_pred must be 1-D class indices \(N,\), got shape \(2, 3\); take argmax"
    ):
        accuracy(np.array([0, 1]), np.zeros((2, 3)))
    with pytest.raises(DataFormatError, match=r"y_pred must have N=3 rows like y_true, got shape \(2,\)"):
        accuracy(np.array([0, 1, 2]), np.array([0, 1]))
    with pytest.raises(DataFormatError, match="y_true is empty"):
        accuracy(np.array([]), np.array([]))


def test_confusion_matrix_by_hand() -> None:
    y_true = np.array([0, 0, 1, 2, 2, 2])
    y_pred = np.array([0, 1, 1, 2, 0, 2])
    expected = np.array(
        [
            [1, 1, 0, 0],  # true 0: once right, once taken for 1
            [0, 1, 0, 0],  # true 1: right
            [1, 0, 2, 0],  # true 2: twice right, once taken for 0
            [0, 0, 0, 0],  # class 3 never occurs but keeps its row and column
        ]
    )
    m = confusion_matrix(y_true, y_pred, num_classes=4)
    np.testing.assert_array_equal(m, expected)
    assert m.dtype == np.int64
    assert np.trace(m) / m.sum() == accuracy(y_true, y_pred)


def test_confusion_matrix_names_an_out_of_range_label() -> None:
    with pytest.raises(
        DataFormatError, match=rf"y_pred has label {scalar(7)} at index 1, outside the class range \[0, 3\)"
    ):
        confusion_matrix(np.array([0, 1]), np.array([0, 7]), num_classes=3)


# -- per-class scores ------------------------------------------------------------------------------


def test_classification_scores_by_hand() -> None:
    m = np.array(
        [
            [5, 1, 0],  # true 0: 6 samples, 5 right
            [2, 3, 1],  # true 1: 6 samples, 3 right
            [0, 2, 6],  # true 2: 8 samples, 6 right
        ]
    )
    # Column sums (predictions per class) 7, 6, 7; F1 = 2 tp / (row sum + column sum).
    precision = [5 / 7, 3 / 6, 6 / 7]
    recall = [5 / 6, 3 / 6, 6 / 8]
    f1 = [10 / 13, 6 / 12, 12 / 15]
    scores = classification_scores(m)
    np.testing.assert_allclose(scores["precision"], precision, rtol=1e-15)
    np.testing.assert_allclose(scores["recall"], recall, rtol=1e-15)
    np.testing.assert_allclose(scores["f1"], f1, rtol=1e-15)
    np.testing.assert_array_equal(scores["support"], [6, 6, 8])
    assert scores["support"].dtype == np.int64
    assert scores["accuracy"] == pytest.approx(14 / 20, rel=1e-15)
    assert scores["macro"] == pytest.approx(
        {"precision": 29 / 42, "recall": 25 / 36, "f1": (10 / 13 + 1 / 2 + 4 / 5) / 3}, rel=1e-15
    )
    assert scores["weighted"] == pytest.approx(
        {
            "precision": (6 * 5 / 7 + 6 * 1 / 2 + 8 * 6 / 7) / 20,  # = 99/140
            "recall": 14 / 20,  # support-weighted recall is always the accuracy
            "f1": (6 * 10 / 13 + 6 * 1 / 2 + 8 * 4 / 5) / 20,
        },
        rel=1e-15,
    )


def test_classification_scores_zero_division_is_zero() -> None:
    # Class 1 occurs but is never predicted: precision 0/0 -> 0. Class 2 never occurs and is
    # never predicted: every ratio 0/0 -> 0, support 0, and it still counts in the macro mean.
    scores = classification_scores(np.array([[2, 0, 0], [1, 0, 0], [0, 0, 0]]))
    np.testing.assert_array_equal(scores["precision"], [2 / 3, 0.0, 0.0])
    np.testing.assert_array_equal(scores["recall"], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(scores["f1"], [4 / 5, 0.0, 0.0], rtol=1e-15)
    np.testing.assert_array_equal(scores["support"], [2, 1, 0])
    assert scores["macro"] == pytest.approx({"precision": 2 / 9, "recall": 1 / 3, "f1": 4 / 15}, rel=1e-15)
    assert scores["weighted"] == pytest.approx({"precision": 4 / 9, "recall": 2 / 3, "f1": 8 / 15}, rel=1e-15)
    assert scores["accuracy"] == pytest.approx(2 / 3, rel=1e-15)


@pytest.mark.parametrize("seed", range(4))
def test_classification_scores_match_sklearn(seed: int) -> None:
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    num_classes = 6
    # Skewed labels, and predictions that never use class 4 and mostly copy the truth: some
    # ratios are 0/0, so the zero_division rule is exercised on random data too.
    y_true = rng.choice(num_classes, size=300, p=[0.3, 0.25, 0.2, 0.15, 0.1, 0.0])
    y_pred = np.where(rng.random(300) < 0.6, y_true, rng.choice([0, 1, 2, 3, 5], size=300))
    labels = list(range(num_classes))
    scores = classification_scores(confusion_matrix(y_true, y_pred, num_classes=num_classes))

    precision, recall, f1, support = sklearn_metrics.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    np.testing.assert_allclose(scores["precision"], precision, rtol=1e-12)
    np.testing.assert_allclose(scores["recall"], recall, rtol=1e-12)
    np.testing.assert_allclose(scores["f1"], f1, rtol=1e-12)
    np.testing.assert_array_equal(scores["support"], support)

    report = sklearn_metrics.classification_report(
        y_true, y_pred, labels=labels, output_dict=True, zero_division=0
    )
    for ours, theirs in (("macro", "macro avg"), ("weighted", "weighted avg")):
        row = report[theirs]
        expected = {"precision": row["precision"], "recall": row["recall"], "f1": row["f1-score"]}
        assert scores[ours] == pytest.approx(expected, rel=1e-12)
    assert scores["accuracy"] == pytest.approx(report["accuracy"], rel=1e-12)
    assert scores["accuracy"] == accuracy(y_true, y_pred)


@pytest.mark.parametrize(
    ("confusion", "message"),
    [
        (np.zeros((2, 3), dtype=np.int64), r"confusion must be a square \(C, C\) matrix, got shape \(2, 3\)"),
        (np.zeros(4, dtype=np.int64), r"confusion must be a square \(C, C\) matrix, got shape \(4,\)"),
        (np.array([[1, -2], [0, 3]]), r"non-negative whole counts, got -2 at index \(0, 1\)"),
        (np.array([[1.0, 0.5], [0.0, 3.0]]), r"non-negative whole counts, got 0.5 at index \(0, 1\)"),
        (np.array([[1.0, 0.0], [np.nan, 3.0]]), r"non-negative whole counts, got nan at index \(1, 0\)"),
        (np.array([["a", "b"], ["c", "d"]]), r"confusion must hold counts \(integers\), got dtype <U1"),
        (np.zeros((3, 3), dtype=np.int64), "confusion counts no sample: scores need at least one"),
    ],
)
def test_classification_scores_errors(confusion: np.ndarray, message: str) -> None:
    with pytest.raises(DataFormatError, match=message):
        classification_scores(confusion)


# -- log loss ----------------------------------------------------------------------------------------


def test_log_loss_multiclass_by_hand() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.25, 0.5, 0.25]])
    y = np.array([0, 2, 0])
    assert log_loss(y, probs) == pytest.approx(
        -(math.log(0.7) + math.log(0.8) + math.log(0.25)) / 3, rel=1e-12
    )


def test_log_loss_binary_by_hand() -> None:
    p = np.array([0.9, 0.2, 0.6])
    y = np.array([1, 0, 0])
    assert log_loss(y, p) == pytest.approx(-(math.log(0.9) + math.log(0.8) + math.log(0.4)) / 3, rel=1e-12)


def test_log_loss_from_logits_equals_from_softmax(rng: np.random.Generator) -> None:
    logits = rng.standard_normal((50, 4)) * 3
    y = rng.integers(0, 4, 50)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert log_loss(y, logits=logits) == pytest.approx(log_loss(y, probs), rel=1e-12)
    z = rng.standard_normal(50) * 3
    b = rng.integers(0, 2, 50)
    assert log_loss(b, logits=z) == pytest.approx(log_loss(b, 1 / (1 + np.exp(-z))), rel=1e-12)


def test_log_loss_from_logits_is_stable_for_huge_logits() -> None:
    # softmax([1000, 0]) underflows to [1, 0] in float64; the log-sum-exp form keeps the exact loss.
    assert log_loss(np.array([1]), logits=np.array([[1000.0, 0.0]])) == pytest.approx(1000.0)
    assert log_loss(np.array([0, 1]), logits=np.array([1e4, 1e4])) == pytest.approx(5e3)
    assert log_loss(np.array([1, 0]), logits=np.array([800.0, -800.0])) == pytest.approx(0.0, abs=1e-300)


def test_log_loss_clips_zero_probabilities() -> None:
    assert log_loss(np.array([0]), np.array([[0.0, 1.0]])) == pytest.approx(-math.log(1e-15))


def test_log_loss_matches_sklearn(rng: np.random.Generator) -> None:
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    probs = rng.dirichlet(np.ones(5), size=40)
    y = rng.integers(0, 5, 40)
    assert log_loss(y, probs) == pytest.approx(sklearn_metrics.log_loss(y, probs, labels=range(5)), rel=1e-10)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({}, ValueError, "exactly one of probs and logits"),
        (
            {"probs": np.full((2, 2), 0.5), "logits": np.zeros((2, 2))},
            ValueError,
            "exactly one of probs and logits",
        ),
        (
            {"probs": np.array([[0.5, 0.6], [0.5, 0.5]])},
            DataFormatError,
            "probs rows must sum to 1, row 0 sums to 1.1",
        ),
        ({"probs": np.array([[1.5, -0.5], [0.5, 0.5]])}, DataFormatError, r"probs must lie in \[0, 1\]"),
        (
            {"logits": np.array([[np.nan, 0.0], [0.0, 0.0]])},
            DataFormatError,
            r"logits contains NaN .* index \(0, 0\)",
        ),
        (
            {"logits": np.zeros((2, 1))},
            DataFormatError,
            rf"y_true has label {scalar(1)} at index 1, outside the class range \[0, 1\)",
        ),
        (
            {"logits": np.zeros((3, 2))},
            DataFormatError,
            r"logits must have N=2 rows like y_true, got shape \(3, 2\)",
        ),
    ],
)
def test_log_loss_errors(kwargs: dict[str, np.ndarray], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        log_loss(np.array([0, 1]), **kwargs)


# -- ROC AUC -----------------------------------------------------------------------------------------


def test_roc_auc_by_hand() -> None:
    # Pairs (positive, negative): (0.35, 0.1) right, (0.35, 0.4) wrong, (0.8, *) right -> 3/4.
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
    assert roc_auc(np.array([0, 1]), np.array([0.0, 1.0])) == 1.0
    assert roc_auc(np.array([1, 0]), np.array([0.0, 1.0])) == 0.0
    assert roc_auc(np.array([True, False, True]), np.array([2.0, 2.0, 2.0])) == 0.5  # all tied


@pytest.mark.parametrize("seed", range(5))
def test_roc_auc_equals_the_pairwise_count_with_many_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 60)
    scores = rng.integers(0, 6, 60).astype(float)  # 6 distinct values for 60 samples: ties everywhere
    assert roc_auc(y, scores) == pytest.approx(pairwise_auc(y, scores), rel=1e-12)


def test_roc_auc_matches_sklearn_on_random_data(rng: np.random.Generator) -> None:
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    y = rng.integers(0, 2, 5000)
    scores = rng.standard_normal(5000) + 0.7 * y
    assert roc_auc(y, scores) == pytest.approx(sklearn_metrics.roc_auc_score(y, scores), rel=1e-12)
    rounded = np.round(scores, 1)  # with ties
    assert roc_auc(y, rounded) == pytest.approx(sklearn_metrics.roc_auc_score(y, rounded), rel=1e-12)


def test_roc_auc_is_invariant_to_monotone_transforms(rng: np.random.Generator) -> None:
    y = rng.integers(0, 2, 200)
    logits = rng.standard_normal(200) + y
    assert roc_auc(y, logits) == roc_auc(y, 1 / (1 + np.exp(-logits)))


@pytest.mark.parametrize(
    ("y", "scores", "message"),
    [
        (
            np.array([1, 1]),
            np.array([0.1, 0.2]),
            r"needs both classes in y_true, got only positives \(1\) in 2 samples",
        ),
        (np.array([0, 0]), np.array([0.1, 0.2]), r"got only negatives \(0\)"),
        (
            np.array([0, 2]),
            np.array([0.1, 0.2]),
            rf"y_true has label {scalar(2)} at index 1, outside the class range \[0, 2\)",
        ),
        (np.array([0, 1]), np.array([0.1, np.nan]), "y_score contains NaN at index 1"),
        (np.array([0, 1]), np.zeros((2, 2)), r"y_score must be 1-D \(N,\), got shape \(2, 2\)"),
    ],
)
def test_roc_auc_errors(y: np.ndarray, scores: np.ndarray, message: str) -> None:
    with pytest.raises(DataFormatError, match=message):
        roc_auc(y, scores)
