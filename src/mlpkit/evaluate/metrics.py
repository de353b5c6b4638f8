"""Classification metrics on NumPy arrays: accuracy, confusion matrix, per-class scores, log loss and ROC AUC.

Every function takes the true labels first, like scikit-learn, checks its inputs at the boundary
and raises :class:`~mlpkit.errors.DataFormatError` (a ``ValueError``) naming the argument and the
offending value. Results are plain Python floats (or an int64 matrix), ready for JSON.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlpkit._checks import check_labels, check_positive_int
from mlpkit.engine.losses import BCEWithLogitsLoss, SoftmaxCrossEntropyLoss
from mlpkit.errors import DataFormatError

__all__ = ["accuracy", "classification_scores", "confusion_matrix", "log_loss", "roc_auc"]

# Probabilities are clipped to [eps, 1 - eps] before the log, so one confidently wrong row costs
# -log(1e-15) ≈ 34.5 instead of making the mean infinite (scikit-learn's long-standing default).
_PROB_EPS = 1e-15


def _check_1d_pair(y_true: object, y_other: object, other: str) -> tuple[np.ndarray, np.ndarray]:
    """Return both as arrays after checking they are non-empty, 1-D and of equal length."""
    a, b = np.asarray(y_true), np.asarray(y_other)
    if a.ndim != 1:
        raise DataFormatError(f"y_true must be 1-D (N,), got shape {a.shape}")
    if b.shape[:1] != a.shape:
        raise DataFormatError(f"{other} must have N={a.shape[0]} rows like y_true, got shape {b.shape}")
    if a.size == 0:
        raise DataFormatError("y_true is empty: a metric needs at least one sample")
    return a, b


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of samples whose predicted class equals the true class.

    Parameters
    ----------
    y_true : ndarray of shape (N,)
        True class indices.
    y_pred : ndarray of shape (N,)
        Predicted class indices (``logits.argmax(axis=1)``).

    Returns
    -------
    float in [0, 1]

    Examples
    --------
    >>> accuracy(np.array([0, 1, 2, 2]), np.array([0, 2, 2, 2]))
    0.75
    """
    y_true, y_pred = _check_1d_pair(y_true, y_pred, "y_pred")
    if y_pred.ndim != 1:
        raise DataFormatError(
            f"y_pred must be 1-D class indices (N,), got shape {y_pred.shape}; take argmax first"
        )
    return float(np.count_nonzero(y_true == y_pred) / y_true.shape[0])


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, *, num_classes: int) -> np.ndarray:
    """Counts of (true class, predicted class) pairs.

    Parameters
    ----------
    y_true : ndarray of shape (N,)
        True class indices in ``[0, num_classes)``.
    y_pred : ndarray of shape (N,)
        Predicted class indices in ``[0, num_classes)``.
    num_classes : int
        C, the size of the matrix (classes that never occur still get a row and a column).

    Returns
    -------
    ndarray of shape (C, C), int64
        ``m[i, j]`` = number of samples of true class ``i`` predicted as ``j``; rows sum to the
        class counts and the trace is the number of correct predictions.

    Examples
    --------
    >>> confusion_matrix(np.array([0, 1, 1]), np.array([0, 0, 1]), num_classes=2)
    array([[1, 0],
           [1, 1]])
    """
    c = check_positive_int("num_classes", num_classes)
    y_true, y_pred = _check_1d_pair(y_true, y_pred, "y_pred")
    t = check_labels("y_true", y_true, c)
    p = check_labels("y_pred", y_pred, c)
    # One bincount over the flat index i*C + j instead of a Python loop over the N pairs.
    return np.bincount(t * c + p, minlength=c * c).reshape(c, c)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator`` elementwise (float64), 0.0 where the denominator is 0."""
    out = np.zeros(numerator.shape, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def classification_scores(confusion: np.ndarray) -> dict[str, Any]:
    """Precision, recall, F1 and support of each class, their macro and weighted means, and accuracy.

    For class ``k`` with ``tp = m[k, k]``, ``fp = m[:, k].sum() - tp`` and ``fn = m[k, :].sum() - tp``:
    precision ``tp / (tp + fp)``, recall ``tp / (tp + fn)`` and F1 ``2 tp / (2 tp + fp + fn)`` (the
    harmonic mean of the two). A ratio whose denominator is 0 (a class never predicted has no
    precision, a class that never occurs has no recall) is 0.0, as scikit-learn's
    ``zero_division=0``. The macro mean weights every class equally, absent ones included; the
    weighted mean weights each class by its support. Both average the per-class F1, as
    :func:`sklearn.metrics.precision_recall_fscore_support` does, rather than taking the F1 of the
    averaged precision and recall.

    Parameters
    ----------
    confusion : ndarray of shape (C, C)
        Counts, rows true class and columns predicted class, as from :func:`confusion_matrix`.

    Returns
    -------
    dict
        ``"precision"``, ``"recall"``, ``"f1"`` : ndarray of shape (C,), float64;
        ``"support"`` : ndarray of shape (C,), int64, the samples of each true class (row sums);
        ``"macro"`` and ``"weighted"`` : dict with float ``"precision"``, ``"recall"``, ``"f1"``;
        ``"accuracy"`` : float, the trace over the total.

    Raises
    ------
    DataFormatError
        If ``confusion`` is not square, holds a negative, fractional or non-finite count, or
        counts no sample at all.

    Examples
    --------
    >>> scores = classification_scores(np.array([[3, 1], [0, 2]]))  # class 1: 2 of 3 predictions right
    >>> scores["precision"], scores["recall"], scores["support"]
    (array([1.        , 0.66666667]), array([0.75, 1.  ]), array([4, 2]))
    >>> scores["macro"]["recall"], scores["accuracy"]
    (0.875, 0.8333333333333334)
    """
    m = np.asarray(confusion)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise DataFormatError(f"confusion must be a square (C, C) matrix, got shape {m.shape}")
    if m.dtype == bool or not (np.issubdtype(m.dtype, np.integer) or np.issubdtype(m.dtype, np.floating)):
        raise DataFormatError(f"confusion must hold counts (integers), got dtype {m.dtype}")
    bad = (m < 0) | ~np.isfinite(m) | (m != np.round(m)) if m.dtype.kind == "f" else m < 0
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise DataFormatError(
            f"confusion must hold non-negative whole counts, got {m[where].item()!r} at index {where}"
        )
    m = m.astype(np.int64)
    total = int(m.sum())
    if total == 0:
        raise DataFormatError("confusion counts no sample: scores need at least one")

    tp = np.diag(m)                                     # (C,)
    support = m.sum(axis=1)                             # (C,) samples of each true class
    predicted = m.sum(axis=0)                           # (C,) predictions of each class
    per_class = {
        "precision": _ratio(tp, predicted),             # (C,)
        "recall": _ratio(tp, support),                  # (C,)
        "f1": _ratio(2 * tp, support + predicted),      # (C,) 2 tp / (2 tp + fp + fn)
    }
    return {
        **per_class,
        "support": support,
        "macro": {name: float(np.mean(values)) for name, values in per_class.items()},
        "weighted": {name: float(np.average(values, weights=support)) for name, values in per_class.items()},
        "accuracy": float(tp.sum() / total),
    }


def log_loss(
    y_true: np.ndarray,
    probs: np.ndarray | None = None,
    *,
    logits: np.ndarray | None = None,
) -> float:
    """Mean negative log-likelihood of the true labels (cross-entropy), from probabilities or logits.

    Give exactly one of ``probs`` and ``logits``. With 2-D inputs the problem is multiclass
    (softmax); with 1-D inputs it is binary and each value is for the positive class (sigmoid),
    the CTR case. From logits the loss is computed in float64 with the log-sum-exp and
    ``log1p(exp(-|z|))`` forms of the engine's losses, so it stays finite for any finite logit.
    Probabilities are clipped to ``[1e-15, 1 - 1e-15]``.

    Parameters
    ----------
    y_true : ndarray of shape (N,)
        Class indices in ``[0, C)``, or 0/1 labels in the binary case.
    probs : ndarray of shape (N, C) or (N,), optional
        Class probabilities, rows summing to 1; or P(y = 1) per sample.
    logits : ndarray of shape (N, C) or (N,), optional
        Unnormalised scores; or the logit of P(y = 1) per sample.

    Returns
    -------
    float >= 0

    Examples
    --------
    >>> round(log_loss(np.array([0, 1]), np.array([[0.5, 0.5], [0.2, 0.8]])), 6)  # -(ln .5 + ln .8) / 2
    0.458145
    >>> round(log_loss(np.array([0, 1]), logits=np.array([[0.0, 0.0], [0.0, np.log(4)]])), 6)
    0.458145
    """
    if (probs is None) == (logits is None):
        raise ValueError("log_loss needs exactly one of probs and logits")
    name, given = ("probs", probs) if probs is not None else ("logits", logits)
    y_true, values = _check_1d_pair(y_true, given, name)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim not in (1, 2):
        raise DataFormatError(f"{name} must be (N, C) or (N,), got shape {values.shape}")
    if not np.isfinite(values).all():
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(values))[0])
        raise DataFormatError(
            f"{name} contains NaN or infinite values; first at index {bad}: {values[bad].item()}"
        )
    num_classes = values.shape[1] if values.ndim == 2 else 2
    labels = check_labels("y_true", y_true, num_classes)

    if logits is not None:
        if values.ndim == 2:
            return SoftmaxCrossEntropyLoss().forward(values, labels)
        return BCEWithLogitsLoss().forward(values, labels.astype(np.float64))

    if values.min() < 0 or values.max() > 1:
        raise DataFormatError(f"probs must lie in [0, 1], got values in [{values.min()}, {values.max()}]")
    if values.ndim == 2:
        row_sums = values.sum(axis=1)
        if not np.allclose(row_sums, 1.0, atol=1e-4):
            worst = int(np.argmax(np.abs(row_sums - 1.0)))
            raise DataFormatError(f"probs rows must sum to 1, row {worst} sums to {row_sums[worst]}")
        p_true = values[np.arange(len(labels)), labels]                    # (N,)
    else:
        p_true = np.where(labels == 1, values, 1.0 - values)               # (N,)
    return float(-np.mean(np.log(np.clip(p_true, _PROB_EPS, 1.0 - _PROB_EPS))))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x`` (N,), tied values sharing the mean of the ranks they span."""
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    starts_group = np.r_[True, sorted_x[1:] != sorted_x[:-1]]              # (N,) first of a tie group
    group = np.cumsum(starts_group) - 1                                    # (N,) group id per sorted slot
    first = np.flatnonzero(starts_group)                                   # (G,) 0-based start of each group
    last = np.r_[first[1:], len(x)]                                        # (G,) one past its end
    ranks = np.empty(len(x), dtype=np.float64)
    # Positions first..last-1 hold ranks first+1..last, whose mean is (first + 1 + last) / 2.
    ranks[order] = ((first + 1 + last) / 2.0)[group]
    return ranks


def roc_auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Area under the ROC curve: P(score of a random positive > score of a random negative).

    Computed from ranks as the Mann-Whitney U statistic divided by ``n_pos * n_neg``
    (Hanley & McNeil, Radiology 1982): ``U = sum of the positives' ranks - n_pos (n_pos + 1) / 2``.
    Tied scores get the average of their ranks, so a positive-negative tie counts 1/2, exactly as
    the pairwise definition and ``sklearn.metrics.roc_auc_score``. O(N log N) time, O(N) memory.

    Parameters
    ----------
    y_true : ndarray of shape (N,)
        0/1 (or False/True) labels; both classes must occur.
    y_score : ndarray of shape (N,)
        Any monotone score of the positive class: probability, logit, margin.

    Returns
    -------
    float in [0, 1]

    Examples
    --------
    >>> roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    0.75
    >>> roc_auc(np.array([0, 1]), np.array([0.5, 0.5]))  # a tie counts 1/2
    0.5
    """
    y_true, y_score = _check_1d_pair(y_true, y_score, "y_score")
    if y_score.ndim != 1:
        raise DataFormatError(f"y_score must be 1-D (N,), got shape {y_score.shape}")
    labels = check_labels("y_true", y_true.astype(np.int64) if y_true.dtype == bool else y_true, 2)
    scores = np.asarray(y_score, dtype=np.float64)
    if np.isnan(scores).any():
        raise DataFormatError(f"y_score contains NaN at index {int(np.argmax(np.isnan(scores)))}")
    positive = labels == 1
    n_pos = int(np.count_nonzero(positive))
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        only = "positives (1)" if n_neg == 0 else "negatives (0)"
        raise DataFormatError(
            f"roc_auc needs both classes in y_true, got only {only} in {len(labels)} samples"
        )
    u = _average_ranks(scores)[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))
