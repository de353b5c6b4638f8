"""Early stopping as a small state machine with no framework import.

Both trainers (NumPy and torch) and the scikit-learn estimators feed it one score per epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from mlpkit._checks import check_choice, check_nonnegative_float, check_positive_int


@dataclass
class EarlyStopping:
    """Stop when the monitored score has not improved by more than ``min_delta`` for ``patience`` epochs.

    Parameters
    ----------
    patience : int
        Epochs without improvement tolerated before stopping.
    min_delta : float
        The least change that counts as an improvement.
    mode : {"min", "max"}
        ``"min"`` for losses, ``"max"`` for accuracies and AUCs.
    monitor : str
        Name of the score, used in :attr:`reason` (e.g. ``"val_loss"``).

    Examples
    --------
    >>> stopper = EarlyStopping(patience=2, min_delta=0.01, mode="min", monitor="val_loss")
    >>> [stopper.update(s) for s in (1.0, 0.5, 0.495, 0.6)]
    [False, False, False, True]
    >>> stopper.best_epoch, stopper.reason
    (2, 'val_loss did not improve by more than 0.01 for 2 epochs (best 0.5 at epoch 2)')
    """

    patience: int = 5
    min_delta: float = 0.0
    mode: str = "min"
    monitor: str = "val_loss"
    best_score: float = field(init=False, default=math.nan)
    best_epoch: int = field(init=False, default=0)
    epoch: int = field(init=False, default=0)
    improved: bool = field(init=False, default=False)
    bad_epochs: int = field(init=False, default=0)
    reason: str = field(init=False, default="")

    def __post_init__(self) -> None:
        check_positive_int("patience", self.patience)
        check_nonnegative_float("min_delta", self.min_delta)
        check_choice("mode", self.mode, ("min", "max"))

    def is_better(self, score: float) -> bool:
        """Whether ``score`` beats the best so far by more than ``min_delta``."""
        if math.isnan(self.best_score):
            return not math.isnan(score)
        if self.mode == "min":
            return score < self.best_score - self.min_delta
        return score > self.best_score + self.min_delta

    def update(self, score: float) -> bool:
        """Record one epoch's score (epochs count from 1); return True when training should stop."""
        self.epoch += 1
        self.improved = self.is_better(score)
        if self.improved:
            self.best_score, self.best_epoch, self.bad_epochs = float(score), self.epoch, 0
            return False
        self.bad_epochs += 1
        if self.bad_epochs >= self.patience:
            self.reason = (
                f"{self.monitor} did not improve by more than {self.min_delta:g} for {self.patience} epochs "
                f"(best {self.best_score:.4g} at epoch {self.best_epoch})"
            )
            return True
        return False

    def state_dict(self) -> dict[str, float | int | str]:
        """The counters, for checkpoints."""
        return {
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "epoch": self.epoch,
            "bad_epochs": self.bad_epochs,
        }

    def load_state_dict(self, state: dict[str, float | int | str]) -> None:
        """Restore the counters from :meth:`state_dict`."""
        self.best_score = float(state["best_score"])
        self.best_epoch = int(state["best_epoch"])
        self.epoch = int(state["epoch"])
        self.bad_epochs = int(state["bad_epochs"])
