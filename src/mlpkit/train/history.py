"""What a training run leaves behind: one record per epoch, the best epoch, and why it stopped."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class History:
    """Per-epoch records and the outcome of a fit.

    Each record is a dict with ``epoch`` (from 1), ``train_loss``, ``train_accuracy``, ``val_loss``,
    ``val_accuracy``, ``lr`` and ``seconds``; the same keys both trainers write to ``metrics.jsonl``.
    Accuracies are ``None`` for regression and validation entries ``None`` without a validation set.
    """

    records: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    stop_reason: str = ""

    def column(self, key: str) -> list[Any]:
        """One metric across epochs, e.g. ``history.column("val_loss")``."""
        return [record.get(key) for record in self.records]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {"records": self.records, "best_epoch": self.best_epoch, "stop_reason": self.stop_reason}
