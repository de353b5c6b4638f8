"""Arrays in, numbers and documents out: metrics, plots and the Markdown run report.

matplotlib is imported only inside the plotting functions, so importing this package does not
need it.
"""

from __future__ import annotations

from mlpkit.evaluate.metrics import accuracy, classification_scores, confusion_matrix, log_loss, roc_auc
from mlpkit.evaluate.plots import plot_curves, plot_predictions
from mlpkit.evaluate.report import render_report

__all__ = [
    "accuracy",
    "classification_scores",
    "confusion_matrix",
    "log_loss",
    "plot_curves",
    "plot_predictions",
    "render_report",
    "roc_auc",
]
