"""The epoch loop both trainers share: validation, best epoch, schedule, early stopping, roll-back.

:class:`EpochTrainer` knows nothing of arrays or tensors. A subclass says how to run one epoch,
score a data set, read and set the learning rate, and copy weights and state; the loop around
those steps, and the order in which an epoch's bookkeeping happens, is written once here:

1. the schedule's learning rate is set before the epoch;
2. the epoch runs; if it diverges, the trainer rolls back to the end of the last good epoch and
   re-raises, so neither the restored weights nor any checkpoint ever hold NaN;
3. the validation set is scored and the record appended to the history (with ``metrics``, its
   loss, accuracy and metrics all come from one forward pass over it);
4. the best epoch (by ``monitor``) is tracked and its weights kept;
5. the schedule steps with the monitored score; early stopping sees it;
6. ``on_epoch_end(record)`` runs last, when the whole state is final, so a checkpoint written
   there resumes exactly.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from mlpkit._checks import check_choice, check_nonnegative_int, check_positive_int
from mlpkit.errors import TrainingDivergedError
from mlpkit.train.early_stopping import EarlyStopping
from mlpkit.train.history import History
from mlpkit.train.progress import RunProgress
from mlpkit.train.schedules import Schedule

logger = logging.getLogger(__name__)

MONITORS = {"val_loss": "min", "val_accuracy": "max", "train_loss": "min"}
"""Scores that can pick the best epoch, and whether lower or higher is better; each metric given
to a trainer adds ``val_<name>`` with its own mode."""

Metric = tuple[Callable[[np.ndarray, np.ndarray], float], str]
"""``(fn(y_true, scores) -> float, mode)``: a score of the whole validation set, ``"max"`` or ``"min"``
better (ROC AUC needs every score at once, so it cannot be averaged over batches as the loss is)."""


class EpochTrainer:
    """Base of :class:`~mlpkit.train.NumpyTrainer` and ``TorchTrainer``: the loop, not the maths.

    Parameters
    ----------
    rng : numpy.random.Generator
        Shuffles the training set each epoch (``rng.permutation(N)``), so one seed gives both
        engines the same batches.
    batch_size : int
        Minibatch size; the last batch of an epoch may be smaller.
    early_stopping : EarlyStopping or None
        Stops when its monitored score stalls; ``None`` trains every epoch.
    monitor : {"val_loss", "val_accuracy", "train_loss"} or "val_<metric>"
        Which score picks the best epoch and feeds early stopping and the plateau schedule;
        ``"train_loss"`` when there is no validation set.
    restore_best : bool
        Put the best epoch's weights back at the end of :meth:`fit`.
    schedule : Schedule or None
        Sets the learning rate before each epoch; stepped with the monitored score after it.
    progress : bool
        Show one progress bar for each :meth:`fit`, with the running loss and accuracy and the time
        left for the whole fit (:class:`~mlpkit.train.progress.RunProgress`; the CLI turns it on
        for terminals).
    on_epoch_end : callable or None
        Called with each finished epoch's record once the trainer's whole state is updated.
    metrics : mapping of str to (callable, mode), optional
        Scores of the validation set after every epoch, each recorded as ``val_<name>`` and
        available as ``monitor``: ``{"auc": (roc_auc, "max")}``. Each is computed from the targets
        and the model's outputs on the whole validation set (gathered from every rank).
    """

    def __init__(
        self,
        *,
        rng: np.random.Generator,
        batch_size: int = 256,
        early_stopping: EarlyStopping | None = None,
        monitor: str = "val_loss",
        restore_best: bool = True,
        schedule: Schedule | None = None,
        progress: bool = False,
        on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
        metrics: Mapping[str, Metric] | None = None,
    ) -> None:
        self.rng = rng
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.metrics = dict(metrics or {})
        for name, (_, mode) in self.metrics.items():
            check_choice(f"mode of metric {name!r}", mode, ("min", "max"))
        self.monitors = {**MONITORS, **{f"val_{name}": mode for name, (_, mode) in self.metrics.items()}}
        self.monitor = check_choice("monitor", monitor, self.monitors)
        self.early_stopping = early_stopping
        self.restore_best = restore_best
        self.schedule = schedule
        self.progress = progress
        self.on_epoch_end = on_epoch_end
        self.history = History()
        self.best_state: Any = None
        self.best_tracker = EarlyStopping(patience=1, mode=self.monitors[monitor], monitor=monitor)
        self.stopped_early = False
        self._progress = RunProgress(epochs=0, batches=0, enabled=False)  # fit() makes the real one

    # -- what a subclass provides --------------------------------------------------------------

    @property
    def lr(self) -> float:
        """The learning rate the next step will use."""
        raise NotImplementedError

    def _set_lr(self, lr: float) -> None:
        raise NotImplementedError

    def _prepare(self, x: Any, y: Any) -> tuple[Any, Any]:
        """Check and convert a data set once per :meth:`fit` (cast, move to the device)."""
        raise NotImplementedError

    def train_epoch(self, x: Any, y: Any) -> tuple[float, float | None]:
        """One pass over prepared (x, y); mean loss and accuracy (None for regression)."""
        raise NotImplementedError

    def evaluate(self, x: Any, y: Any) -> tuple[float, float | None]:
        """Mean loss and accuracy in evaluation mode."""
        raise NotImplementedError

    def evaluate_with_scores(self, x: Any, y: Any) -> tuple[float, float | None, np.ndarray]:
        """:meth:`evaluate`'s mean loss and accuracy, and the outputs of every row, from one forward pass.

        What the loop calls when ``metrics`` are configured: the outputs (every row, in order, on
        every rank, as :meth:`predict_scores` returns them) feed the metrics, and the loss and
        accuracy equal :meth:`evaluate`'s, so scoring the validation set costs one pass, not two.
        """
        raise NotImplementedError

    def predict_scores(self, x: Any) -> np.ndarray:
        """The model's outputs on prepared ``x`` in evaluation mode, every row, on every rank."""
        raise NotImplementedError

    def weights(self) -> Any:
        """A copy of the current weights (what :attr:`best_state` holds)."""
        raise NotImplementedError

    def load_weights(self, state: Any) -> None:
        """Put back weights from :meth:`weights`."""
        raise NotImplementedError

    def snapshot(self) -> dict[str, Any]:
        """Copies of everything an epoch changes: weights, optimizer state, shuffling state."""
        raise NotImplementedError

    def restore_snapshot(self, snap: dict[str, Any]) -> None:
        """Put back what :meth:`snapshot` copied."""
        raise NotImplementedError

    def _is_rank_zero(self) -> bool:
        """Whether this process reports (``on_epoch_end``); only one does in a distributed run."""
        return True

    # -- the loop ------------------------------------------------------------------------------

    @property
    def epochs_done(self) -> int:
        """Epochs finished so far (restored by a checkpoint)."""
        return len(self.history.records)

    def remaining_epochs(self, total: int) -> int:
        """Epochs left to reach ``total`` (0 once early stopping has fired): ``fit(epochs=...)`` on resume."""
        return 0 if self.stopped_early else max(0, total - self.epochs_done)

    def fit(self, x: Any, y: Any, x_val: Any = None, y_val: Any = None, *, epochs: int) -> History:
        """Train for up to ``epochs`` more epochs; may be called again (or after a resume) to continue.

        Parameters
        ----------
        x : array of shape (N, D)
            Inputs, converted once.
        y : array of shape (N,) or (N, C)
            Class indices for cross-entropy, targets for the other losses.
        x_val, y_val : array or None
            Validation set scored after every epoch.
        epochs : int
            Epochs to run in this call; 0 only restores the best weights. No epoch runs once
            early stopping has fired.

        Returns
        -------
        History
            Every epoch so far (records accumulate across calls and resumes).

        Raises
        ------
        TrainingDivergedError
            When the loss or the weights turn NaN or infinite; the trainer is first rolled back to
            the end of the last good epoch, which ``on_epoch_end`` has already seen.
        """
        check_nonnegative_int("epochs", epochs)
        if self.stopped_early:
            epochs = 0
        x, y = self._prepare(x, y)
        has_val = x_val is not None and y_val is not None
        if has_val:
            self._val_targets = np.asarray(y_val) if self.metrics else None  # before it moves to a device
            x_val, y_val = self._prepare(x_val, y_val)
        monitor = self.monitor if has_val else "train_loss"
        if monitor != self.best_tracker.monitor:
            self.best_tracker = EarlyStopping(patience=1, mode=self.monitors[monitor], monitor=monitor)
        self._progress = RunProgress(
            epochs=epochs,
            batches=math.ceil(len(x) / self.batch_size),
            enabled=self.progress and self._is_rank_zero(),
            first_epoch=self.epochs_done + 1,
        )
        try:
            for _ in range(epochs):
                if self._run_epoch(x, y, x_val if has_val else None, y_val, monitor):
                    break
        finally:
            self._progress.close()
        if self.restore_best and self.best_state is not None:
            self.restore_best_weights()
        return self.history

    def _run_epoch(self, x: Any, y: Any, x_val: Any, y_val: Any, monitor: str) -> bool:
        """Steps 1-6 of the module docstring for one epoch; return True when training should stop."""
        start = time.perf_counter()
        self._progress.start_epoch(self.epochs_done + 1)
        if self.schedule is not None:
            self._set_lr(self.schedule.lr)
        lr = self.lr
        last_good = self.snapshot()
        try:
            train_loss, train_acc = self.train_epoch(x, y)
        except TrainingDivergedError:
            self.restore_snapshot(last_good)
            raise
        val_loss: float | None = None
        val_acc: float | None = None
        scores = None
        if x_val is not None and self.metrics:  # one pass: the metrics need every row's output
            val_loss, val_acc, scores = self.evaluate_with_scores(x_val, y_val)
        elif x_val is not None:  # the loss and accuracy alone are sums: no outputs are kept or gathered
            val_loss, val_acc = self.evaluate(x_val, y_val)
        record = {
            "epoch": self.epochs_done + 1,
            "train_loss": train_loss,
            "train_accuracy": train_acc,
            "val_loss": val_loss,
            "val_accuracy": val_acc,
            "lr": lr,
        }
        if scores is not None:
            for name, (fn, _) in self.metrics.items():
                record[f"val_{name}"] = float(fn(self._val_targets, scores))
        record["seconds"] = time.perf_counter() - start
        self.history.records.append(record)
        score = record[monitor]
        if score is None:
            loss_name = type(getattr(self, "loss", None)).__name__
            raise ValueError(f"monitor {monitor!r} needs a classification loss, got {loss_name}")
        self.best_tracker.update(score)
        if self.best_tracker.improved:
            self.history.best_epoch = record["epoch"]
            self.best_state = self.weights()
        if self.schedule is not None:
            self._set_lr(self.schedule.step(score))
        stop = self.early_stopping is not None and self.early_stopping.update(score)
        if stop:
            self.stopped_early = True
            self.history.stop_reason = f"early stopping: {self.early_stopping.reason}"  # type: ignore[union-attr]
            logger.info(self.history.stop_reason)
        else:
            done = self.epochs_done
            self.history.stop_reason = f"completed {done} epoch{'' if done == 1 else 's'}"
        if self.on_epoch_end is not None and self._is_rank_zero():
            self.on_epoch_end(record)
        return stop

    def restore_best_weights(self) -> None:
        """Copy the best epoch's weights back."""
        if self.best_state is None:
            raise ValueError("no best weights recorded yet: call fit first")
        self.load_weights(self.best_state)
