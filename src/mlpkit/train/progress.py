"""The terminal progress bar of a fit: one bar for the whole run, with the running loss and accuracy.

Keras prints a bar per epoch and Lightning one per epoch with an ETA for that epoch; what a user
waiting for a run wants to know is when the *run* ends. So :class:`RunProgress` counts every batch
of every epoch of one :meth:`~mlpkit.train.loop.EpochTrainer.fit` call, its description says which
epoch is running, and its postfix shows the epoch's running mean loss and accuracy. The epoch
lines that the run logs go above the bar (the CLI writes log records through ``tqdm.write``).

The running numbers are read through a callable, and only when the bar is about to be redrawn
(at most every ``refresh`` seconds): for the torch engine reading them is a device-to-host copy,
which must not happen once per batch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TextIO

from tqdm.auto import tqdm

__all__ = ["RunProgress"]

Stats = Callable[[], tuple[float, float | None]]
"""Returns the running mean loss and accuracy (None for regression) of the epoch so far."""


class RunProgress:
    """One progress bar over ``epochs`` epochs of ``batches`` batches each.

    Parameters
    ----------
    epochs : int
        Epochs this fit will run at most (early stopping may end it sooner: the bar then closes
        short of its total).
    batches : int
        Batches per epoch.
    enabled : bool
        False makes every method a no-op (no bar, no reads of the running numbers).
    first_epoch : int
        Number of the first epoch this fit runs (above 1 after a resume).
    total_epochs : int or None
        The run's planned epochs, shown as "epoch 3/10"; default ``first_epoch + epochs - 1``.
    refresh : float
        Least seconds between two reads of the running numbers.
    file : text stream or None
        Where the bar is drawn; None is ``sys.stderr``.

    Examples
    --------
    >>> bar = RunProgress(epochs=2, batches=3, enabled=False)
    >>> bar.start_epoch(1); bar.step(lambda: (0.5, 0.9)); bar.close()
    >>> bar.total
    6
    """

    def __init__(
        self,
        *,
        epochs: int,
        batches: int,
        enabled: bool,
        first_epoch: int = 1,
        total_epochs: int | None = None,
        refresh: float = 0.1,
        file: TextIO | None = None,
    ) -> None:
        self.total = epochs * batches
        self.enabled = enabled and self.total > 0
        self.total_epochs = first_epoch + epochs - 1 if total_epochs is None else total_epochs
        self.refresh = refresh
        self._last = -math.inf
        self._bar = (
            tqdm(
                total=self.total, unit="batch", leave=False, dynamic_ncols=True, smoothing=0.05, file=file,
                mininterval=min(0.1, refresh),
            )
            if self.enabled
            else None
        )

    def start_epoch(self, epoch: int) -> None:
        """Say which epoch the next batches belong to."""
        if self._bar is not None:
            self._bar.set_description(f"epoch {epoch}/{self.total_epochs}")  # one redraw an epoch
            self._last = -math.inf  # the first batch of an epoch shows its own numbers

    def step(self, stats: Stats) -> None:
        """One batch done; ``stats`` is called only when the postfix is due for a redraw."""
        if self._bar is None:
            return
        now = time.monotonic()
        if now - self._last >= self.refresh:
            self._last = now
            loss, acc = stats()
            postfix = f"loss {loss:.4f}" + ("" if acc is None else f", acc {acc:.4f}")
            self._bar.set_postfix_str(postfix, refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        """Remove the bar (it is left on screen by no one: the epoch lines tell the story)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
