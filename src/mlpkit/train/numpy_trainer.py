"""The training loop for the NumPy engine.

The trainer owns the loss, the optimizer and the loop; the network only maps inputs to logits.
Minibatches are drawn by an explicit ``numpy.random.Generator``, so a seed fixes the run.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from mlpkit._checks import check_choice, check_positive_int
from mlpkit.engine.losses import BCEWithLogitsLoss, Loss, SoftmaxCrossEntropyLoss
from mlpkit.engine.network import Sequential
from mlpkit.engine.optimizers import Optimizer
from mlpkit.errors import TrainingDivergedError
from mlpkit.train.early_stopping import EarlyStopping
from mlpkit.train.history import History

logger = logging.getLogger(__name__)

MONITORS = {"val_loss": "min", "val_accuracy": "max", "train_loss": "min"}


def predict_logits(network: Sequential, x: np.ndarray, *, batch_size: int = 8192) -> np.ndarray:
    """Logits of ``x`` in evaluation mode (dropout off), in batches to bound memory.

    Parameters
    ----------
    network : Sequential
    x : ndarray of shape (N, D)

    Returns
    -------
    ndarray of shape (N, C)
    """
    was_training = network.training
    network.eval()
    try:
        x = np.asarray(x, dtype=network.dtype)
        parts = [network.forward(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    finally:
        network.train(was_training)
    if not parts:
        raise ValueError("cannot predict on an empty array (0 samples)")
    return np.concatenate(parts)


def count_correct(loss: Loss, logits: np.ndarray, target: np.ndarray) -> int | None:
    """Correct predictions in a batch for classification losses; None for regression."""
    if isinstance(loss, SoftmaxCrossEntropyLoss):
        return int(np.count_nonzero(logits.argmax(axis=1) == target))
    if isinstance(loss, BCEWithLogitsLoss):
        return int(np.count_nonzero((logits > 0) == (target > 0.5)))
    return None


class NumpyTrainer:
    """Minibatch training of an engine network, with validation, early stopping and restore-best.

    Parameters
    ----------
    network : Sequential
        Maps (B, D) inputs to (B, C) logits.
    loss : Loss
        Takes logits and targets.
    optimizer : Optimizer
        Built over ``network.parameters()``.
    batch_size : int
        Minibatch size; the last batch of an epoch may be smaller.
    rng : numpy.random.Generator
        Shuffles the training set each epoch.
    early_stopping : EarlyStopping or None
        Stops when its monitored score stalls; ``None`` trains every epoch.
    monitor : {"val_loss", "val_accuracy", "train_loss"}
        Which score picks the best epoch (and feeds early stopping). Falls back to
        ``"train_loss"`` when there is no validation set.
    restore_best : bool
        Put the best epoch's weights back at the end of :meth:`fit`.
    progress : bool
        Show a progress bar (the CLI turns it on for terminals).
    on_epoch_end : callable or None
        Called with each epoch's record after it is complete (the CLI writes metrics and
        checkpoints there, so a crash later leaves every finished epoch on disk).
    augment : callable or None
        ``augment(xb, rng) -> xb`` applied to each training minibatch (B, D), e.g.
        :class:`~mlpkit.data.augment.ShiftFlip`; never to validation data.
    lr_schedule : callable or None
        ``lr_schedule(epoch) -> lr`` for epochs counted from 0, set on the optimizer before
        each epoch; see :mod:`mlpkit.train.schedules`.
    """

    def __init__(
        self,
        network: Sequential,
        *,
        loss: Loss,
        optimizer: Optimizer,
        rng: np.random.Generator,
        batch_size: int = 256,
        early_stopping: EarlyStopping | None = None,
        monitor: str = "val_loss",
        restore_best: bool = True,
        progress: bool = False,
        on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
        augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
        lr_schedule: Callable[[int], float] | None = None,
    ) -> None:
        self.network = network
        self.loss = loss
        self.optimizer = optimizer
        self.rng = rng
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.monitor = check_choice("monitor", monitor, MONITORS)
        self.early_stopping = early_stopping
        self.restore_best = restore_best
        self.progress = progress
        self.on_epoch_end = on_epoch_end
        self.augment = augment
        self.lr_schedule = lr_schedule
        self.history = History()
        self.best_state: dict[str, np.ndarray] | None = None
        self._best = EarlyStopping(patience=1, mode=MONITORS[monitor], monitor=monitor)

    # -- one epoch ---------------------------------------------------------------------------

    def train_epoch(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float | None]:
        """One pass over (x, y) in shuffled minibatches; return mean loss and accuracy.

        Raises
        ------
        TrainingDivergedError
            As soon as a batch loss is NaN or infinite; the weights of the last finished
            epoch are gone from memory but any checkpoint written so far is untouched.
        """
        # Overflow on the way to a divergence is caught below as a non-finite loss, with the epoch
        # and batch in the message; NumPy's own warnings would only say where in a ufunc it began.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return self._train_epoch(x, y)

    def _train_epoch(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float | None]:
        network, loss, optimizer = self.network, self.loss, self.optimizer
        network.train()
        n = len(x)
        order = self.rng.permutation(n)
        total_loss, correct, counted = 0.0, 0, True
        batches = range(0, n, self.batch_size)
        bar = tqdm(batches, leave=False, unit="batch", disable=not self.progress, desc=f"epoch {len(self.history.records) + 1}")
        for start in bar:
            idx = order[start : start + self.batch_size]
            xb, yb = x[idx], y[idx]                          # (B, D), (B,)
            if self.augment is not None:
                xb = self.augment(xb, self.rng)
            logits = network.forward(xb)                     # (B, C)
            batch_loss = loss.forward(logits, yb)
            if not math.isfinite(batch_loss):
                epoch = len(self.history.records) + 1
                raise TrainingDivergedError(
                    f"training diverged: loss is {batch_loss} at epoch {epoch}, batch {start // self.batch_size + 1}"
                    f" (lr={optimizer.lr:g}); try a smaller learning rate"
                )
            hits = count_correct(loss, logits, yb)
            network.backward_params(loss.backward())
            optimizer.step()
            total_loss += batch_loss * len(idx)
            if hits is None:
                counted = False
            else:
                correct += hits
        return total_loss / n, (correct / n if counted else None)

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float | None]:
        """Mean loss and accuracy (None for regression) in evaluation mode."""
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):   # as in train_epoch
            logits = predict_logits(self.network, x)
            value = self.loss.forward(logits, y)
        hits = count_correct(self.loss, logits, y)
        return value, (hits / len(x) if hits is not None else None)

    # -- the loop ------------------------------------------------------------------------------

    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        x_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
        *,
        epochs: int,
    ) -> History:
        """Train for up to ``epochs`` more epochs; may be called again to continue.

        Parameters
        ----------
        x : ndarray of shape (N, D)
            Inputs, cast once to the network's dtype.
        y : ndarray of shape (N,) or (N, C)
            Class indices for cross-entropy, targets for the other losses.
        x_val, y_val : ndarray or None
            Validation set scored after every epoch.
        epochs : int
            Epochs to run in this call.
        """
        check_positive_int("epochs", epochs)
        x = np.asarray(x, dtype=self.network.dtype)
        has_val = x_val is not None and y_val is not None
        if has_val:
            x_val = np.asarray(x_val, dtype=self.network.dtype)
        monitor = self.monitor if has_val else "train_loss"
        if monitor != self._best.monitor:
            self._best = EarlyStopping(patience=1, mode=MONITORS[monitor], monitor=monitor)
        for _ in range(epochs):
            start = time.perf_counter()
            if self.lr_schedule is not None:
                self.optimizer.lr = float(self.lr_schedule(len(self.history.records)))
            train_loss, train_acc = self.train_epoch(x, y)
            val_loss, val_acc = self.evaluate(x_val, y_val) if has_val else (None, None)  # type: ignore[arg-type]
            record = {
                "epoch": len(self.history.records) + 1,
                "train_loss": train_loss,
                "train_accuracy": train_acc,
                "val_loss": val_loss,
                "val_accuracy": val_acc,
                "lr": self.optimizer.lr,
                "seconds": time.perf_counter() - start,
            }
            self.history.records.append(record)
            score = {"val_loss": val_loss, "val_accuracy": val_acc, "train_loss": train_loss}[monitor]
            if score is None:
                raise ValueError(f"monitor {monitor!r} needs a classification loss, got {type(self.loss).__name__}")
            self._best.update(score)
            if self._best.improved:
                self.history.best_epoch = record["epoch"]
                self.best_state = {name: p.data.copy() for name, p in self.network.named_parameters().items()}
            if self.on_epoch_end is not None:
                self.on_epoch_end(record)
            if self.early_stopping is not None and self.early_stopping.update(score):
                self.history.stop_reason = f"early stopping: {self.early_stopping.reason}"
                logger.info(self.history.stop_reason)
                break
        else:
            self.history.stop_reason = f"completed {len(self.history.records)} epochs"
        if self.restore_best and self.best_state is not None:
            self.restore_best_weights()
        return self.history

    def restore_best_weights(self) -> None:
        """Copy the best epoch's weights back into the network."""
        if self.best_state is None:
            raise ValueError("no best weights recorded yet: call fit first")
        for name, param in self.network.named_parameters().items():
            param.data[...] = self.best_state[name]
