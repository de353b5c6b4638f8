"""The training loop for the NumPy engine.

The trainer owns the loss, the optimizer and the loop; the network only maps inputs to logits.
Minibatches are drawn by an explicit ``numpy.random.Generator``, so a seed fixes the run.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from mlpkit.engine.losses import BCEWithLogitsLoss, Loss, SoftmaxCrossEntropyLoss
from mlpkit.engine.network import Sequential
from mlpkit.engine.optimizers import Optimizer
from mlpkit.errors import TrainingDivergedError
from mlpkit.train.loop import MONITORS, EpochTrainer

__all__ = ["MONITORS", "NumpyTrainer", "count_correct", "predict_logits"]


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


class NumpyTrainer(EpochTrainer):
    """Minibatch training of an engine network, with validation, early stopping and restore-best.

    The epoch loop (best epoch, schedule, early stopping, roll-back on divergence, the order of
    an epoch's bookkeeping) is :class:`~mlpkit.train.loop.EpochTrainer`'s; this class supplies
    one epoch of forward, backward and update in NumPy.

    Parameters
    ----------
    network : Sequential
        Maps (B, D) inputs to (B, C) logits.
    loss : Loss
        Takes logits and targets.
    optimizer : Optimizer
        Built over ``network.parameters()``.
    augment : callable or None
        ``augment(xb, rng) -> xb`` applied to each training minibatch (B, D), e.g.
        :class:`~mlpkit.data.augment.ShiftFlip`; never to validation data.
    **loop
        ``rng``, ``batch_size``, ``early_stopping``, ``monitor``, ``restore_best``, ``schedule``,
        ``progress`` and ``on_epoch_end``, as documented on :class:`~mlpkit.train.loop.EpochTrainer`.

    Examples
    --------
    >>> from mlpkit.engine import SGD, SoftmaxCrossEntropyLoss, build_mlp
    >>> from mlpkit.spec import MLPSpec
    >>> rng = np.random.default_rng(0)
    >>> net = build_mlp(MLPSpec(4, (8,), 3), rng=rng)
    >>> opt = SGD(net.parameters().values(), lr=0.1)
    >>> trainer = NumpyTrainer(net, loss=SoftmaxCrossEntropyLoss(), optimizer=opt, rng=rng)
    >>> len(trainer.fit(np.zeros((8, 4)), np.zeros(8, dtype=int), epochs=2).records)
    2
    """

    def __init__(
        self,
        network: Sequential,
        *,
        loss: Loss,
        optimizer: Optimizer,
        rng: np.random.Generator,
        augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
        **loop: Any,
    ) -> None:
        super().__init__(rng=rng, **loop)
        self.network = network
        self.loss = loss
        self.optimizer = optimizer
        self.augment = augment

    # -- EpochTrainer hooks --------------------------------------------------------------------

    @property
    def lr(self) -> float:
        return self.optimizer.lr

    def _set_lr(self, lr: float) -> None:
        self.optimizer.lr = lr

    def _prepare(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(x, dtype=self.network.dtype)  # one cast, not one per batch
        y = np.asarray(y)
        if len(y) != len(x):
            raise ValueError(f"y has {len(y)} rows for {len(x)} samples")
        return x, y

    def weights(self) -> dict[str, np.ndarray]:
        return {name: p.data.copy() for name, p in self.network.named_parameters().items()}

    def load_weights(self, state: dict[str, np.ndarray]) -> None:
        for name, param in self.network.named_parameters().items():
            param.data[...] = state[name]

    def snapshot(self) -> dict[str, Any]:
        return {
            "weights": self.weights(),
            "optimizer": self.optimizer.state_dict(),
            "rng": copy.deepcopy(self.rng.bit_generator.state),
        }

    def restore_snapshot(self, snap: dict[str, Any]) -> None:
        self.load_weights(snap["weights"])
        self.optimizer.load_state_dict(snap["optimizer"])
        self.rng.bit_generator.state = snap["rng"]

    # -- one epoch ---------------------------------------------------------------------------

    def train_epoch(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float | None]:
        """One pass over (x, y) in shuffled minibatches; return mean loss and accuracy.

        Raises
        ------
        TrainingDivergedError
            As soon as a batch loss is NaN or infinite, naming the epoch and batch
            (:meth:`fit` then rolls back to the last good epoch).
        """
        # Overflow on the way to a divergence is caught below as a non-finite loss, with the epoch
        # and batch in the message; NumPy's own warnings would only say where in a ufunc it began.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return self._train_epoch(x, y)

    def _train_epoch(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float | None]:
        network, loss, optimizer = self.network, self.loss, self.optimizer
        network.train()
        n = len(x)
        if n == 0:
            raise ValueError("cannot train on an empty array (0 samples)")
        order = self.rng.permutation(n)
        epoch = self.epochs_done + 1
        total_loss, correct, counted = 0.0, 0, True
        seen = 0

        def running() -> tuple[float, float | None]:  # read by the progress bar when it redraws
            return total_loss / seen, (correct / seen if counted else None)

        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            xb, yb = x[idx], y[idx]  # (B, D), (B,)
            if self.augment is not None:
                xb = self.augment(xb, self.rng)
            logits = network.forward(xb)  # (B, C)
            batch_loss = loss.forward(logits, yb)
            if not math.isfinite(batch_loss):
                raise TrainingDivergedError(
                    f"training diverged: loss is {batch_loss} at epoch {epoch}, "
                    f"batch {start // self.batch_size + 1} (lr={optimizer.lr:g}); try a smaller learning rate"
                )
            hits = count_correct(loss, logits, yb)
            network.backward_params(loss.backward())
            optimizer.step()
            total_loss += batch_loss * len(idx)
            seen += len(idx)
            if hits is None:
                counted = False
            else:
                correct += hits
            self._progress.step(running)
        return total_loss / n, (correct / n if counted else None)

    def predict_scores(self, x: np.ndarray) -> np.ndarray:
        """Logits (N, C) of ``x`` in evaluation mode (what validation metrics are computed from)."""
        return predict_logits(self.network, x)

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float | None]:
        """Mean loss and accuracy (None for regression) in evaluation mode.

        Parameters
        ----------
        x : ndarray of shape (N, D)
        y : ndarray of shape (N,) or (N, C)
        """
        value, accuracy, _ = self.evaluate_with_scores(x, y)
        return value, accuracy

    def evaluate_with_scores(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float | None, np.ndarray]:
        """:meth:`evaluate` and the logits it was computed from, from one forward pass.

        Parameters
        ----------
        x : ndarray of shape (N, D)
        y : ndarray of shape (N,) or (N, C)

        Returns
        -------
        loss : float
        accuracy : float or None
        logits : ndarray of shape (N, C)
        """
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # as in train_epoch
            logits = predict_logits(self.network, x)  # (N, C)
            value = self.loss.forward(logits, np.asarray(y))
        hits = count_correct(self.loss, logits, y)
        return value, (hits / len(x) if hits is not None else None), logits
