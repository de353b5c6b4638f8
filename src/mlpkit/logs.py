"""TensorBoard logs of a run: each epoch's scalars and the parameters' histograms in ``RUN_DIR/tensorboard``.

``[run] log = ["tensorboard"]`` (``--log tensorboard``) adds this view beside ``metrics.jsonl`` and
``metrics.csv``, which every run writes; ``tensorboard --logdir RUN_DIR`` (or a directory of runs)
shows it. The events are written by TensorBoard's own event-file writer and protos (the
``tensorboard`` package, the ``log`` extra), which import neither torch nor TensorFlow, so a
NumPy-engine run stays torch-free.

Every epoch, at step = epoch, each number of its ``metrics.jsonl`` record is a scalar, tagged by
what it measures and then the split, so that TensorBoard draws the training and validation curves
of one quantity in one section::

    train_loss, val_loss            loss/train, loss/val
    train_accuracy, val_accuracy    accuracy/train, accuracy/val
    val_<metric>                    <metric>/val      (auc/val, logloss/val, ...)
    lr                              lr                (the rate the epoch trained with)
    seconds                         time/epoch_seconds

A value that is None (no validation set, the accuracy of a regression) is left out. Every
``histogram_every`` epochs, and at the last epoch (the configured last, or the one early stopping
ends), each parameter gets two histograms, named as in ``model.safetensors``: ``weights/<name>``,
its values at the end of the epoch, and ``gradients/<name>``, the gradient the trainer holds then,
which is the gradient of the epoch's last batch. On the NumPy engine that is the loss's gradient
(the optimizer adds the L2 term of ``weight_decay`` apart from it); on torch, the gradient of the
whole objective (a regularizer's penalty included, such as the CTR models' embedding L2), after
gradient clipping. A histogram has :data:`HISTOGRAM_BUCKETS` buckets of equal width between the
values' minimum and maximum, which it keeps exactly, with their count, sum and sum of squares.

A run is one or more sessions (the first, then each ``--resume``). Each session opens a new event
file when it writes its first epoch, and begins it with a ``SessionLog`` START at that epoch:
TensorBoard's Python readers (``EventAccumulator``) then drop whatever earlier files hold at or
after that step, and its data server keeps the later value of a repeated step. An epoch written
after the last checkpoint and trained again on resume so appears once. The file is flushed after
every epoch and closed at the end of the run, on an error and on an interrupt.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mlpkit._optional import require
from mlpkit.errors import OutputError

__all__ = ["HISTOGRAM_BUCKETS", "NamedParameters", "TensorBoardLog", "check_logs", "histogram", "scalar_tags"]

logger = logging.getLogger(__name__)

HISTOGRAM_BUCKETS = 30
"""Buckets of each histogram: the number TensorBoard's own histogram summaries use by default."""

NamedParameters = Iterable[tuple[str, np.ndarray, "np.ndarray | None"]]
"""``(name, weights, gradient or None)`` for every parameter of a model, arrays of any shape."""

_TAGS = {"seconds": "time/epoch_seconds"}
"""Tags of the record's keys that are not ``<split>_<name>``; any other key keeps its name."""
_SPLITS = ("train", "val")


def check_logs(settings: Any) -> None:
    """Fail before anything is written when a log of ``settings.log`` (``[run]``) lacks its package.

    Raises
    ------
    MissingDependencyError
        ``"tensorboard"`` is configured and the ``tensorboard`` package is not installed.
    """
    if "tensorboard" in settings.log:
        require("tensorboard", feature="--log tensorboard")


def scalar_tags(record: Mapping[str, Any]) -> dict[str, float]:
    """The TensorBoard scalars of one ``metrics.jsonl`` record: tag -> value (see the module's table).

    Examples
    --------
    >>> scalar_tags({"epoch": 3, "train_loss": 0.5, "train_accuracy": None, "val_loss": 0.75,
    ...              "val_auc": 0.8, "lr": 0.1, "seconds": 2})
    {'loss/train': 0.5, 'loss/val': 0.75, 'auc/val': 0.8, 'lr': 0.1, 'time/epoch_seconds': 2.0}
    """
    tags: dict[str, float] = {}
    for key, value in record.items():
        if key == "epoch" or isinstance(value, bool) or not isinstance(value, int | float):
            continue  # the epoch is the step; None is no value
        split, _, name = key.partition("_")
        tags[f"{name}/{split}" if split in _SPLITS and name else _TAGS.get(key, key)] = float(value)
    return tags


def histogram(values: np.ndarray, buckets: int = HISTOGRAM_BUCKETS) -> dict[str, Any] | None:
    """The fields of TensorBoard's ``HistogramProto`` for ``values``; None if one is NaN or infinite.

    ``bucket_limit[i]`` is the right edge of bucket i, whose left edge is the previous limit (the
    minimum for the first bucket), as TensorBoard reads them; all values equal make one bucket.

    Parameters
    ----------
    values : array of any shape
        E.g. a weight matrix (H, D); flattened.
    buckets : int
        Buckets of equal width between the minimum and the maximum.

    Returns
    -------
    dict or None
        ``min``, ``max``, ``num``, ``sum``, ``sum_squares`` (floats, in float64) and the lists
        ``bucket_limit`` and ``bucket`` (counts).

    Examples
    --------
    >>> h = histogram(np.array([0.0, 1.0, 1.0, 4.0]), buckets=4)
    >>> h["min"], h["max"], h["num"], h["sum"], h["sum_squares"]
    (0.0, 4.0, 4.0, 6.0, 18.0)
    >>> h["bucket_limit"], h["bucket"]
    ([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 0.0, 1.0])
    """
    a = np.asarray(values, dtype=np.float64).ravel()  # (N,)
    if a.size == 0 or not np.isfinite(a).all():
        return None
    low, high = float(a.min()), float(a.max())
    if low == high:
        limits, counts = [high], [float(a.size)]
    else:
        counted, edges = np.histogram(a, bins=buckets, range=(low, high))
        limits, counts = edges[1:].tolist(), counted.astype(np.float64).tolist()
        limits[-1] = high  # the last edge is the maximum itself, not a rounding of low + width * buckets
    return {
        "min": low,
        "max": high,
        "num": float(a.size),
        "sum": float(a.sum()),
        "sum_squares": float(np.dot(a, a)),
        "bucket_limit": limits,
        "bucket": counts,
    }


class TensorBoardLog:
    """One session's TensorBoard event file in ``directory``, opened when the first epoch is written.

    Parameters
    ----------
    directory : Path
        ``RUN_DIR/tensorboard``; created when the first epoch is written.
    histogram_every : int
        Histograms of the parameters every N epochs and at the last; 0 writes none.
    """

    def __init__(self, directory: Path, *, histogram_every: int = 5) -> None:
        self.directory = directory
        self.histogram_every = histogram_every
        self._writer: Any = None  # EventFileWriter, once the first epoch is written

    def wants_histograms(self, epoch: int, *, last: bool) -> bool:
        """Whether epoch ``epoch`` gets histograms: every ``histogram_every``-th, and the last."""
        return self.histogram_every > 0 and (last or epoch % self.histogram_every == 0)

    def write_epoch(
        self, record: Mapping[str, Any], parameters: Callable[[], NamedParameters], *, last: bool
    ) -> None:
        """Write one epoch's scalars, and its histograms when due, at step = epoch, and flush them.

        Parameters
        ----------
        record : mapping
            The epoch's ``metrics.jsonl`` record (``epoch``, losses, scores, ``lr``, ``seconds``).
        parameters : callable
            Returns the model's ``(name, weights, gradient or None)``; called only for histograms.
        last : bool
            Whether this is the run's last epoch (which always gets histograms).

        Raises
        ------
        OutputError
            The event file cannot be created or written.
        """
        epoch = int(record["epoch"])
        writer = self._open(epoch)  # first: it names the extra if tensorboard is missing
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import HistogramProto, Summary

        values = [Summary.Value(tag=tag, simple_value=value) for tag, value in scalar_tags(record).items()]
        if self.wants_histograms(epoch, last=last):
            for name, weights, grad in parameters():
                for kind, array in (("weights", weights), ("gradients", grad)):
                    fields = None if array is None else histogram(array)
                    if fields is not None:
                        values.append(Summary.Value(tag=f"{kind}/{name}", histo=HistogramProto(**fields)))
                    elif array is not None:
                        logger.warning("no histogram of %s/%s at epoch %d: NaN or inf", kind, name, epoch)
        try:
            writer.add_event(Event(wall_time=time.time(), step=epoch, summary=Summary(value=values)))
            writer.flush()
        except OSError as exc:
            raise OutputError(
                f"cannot write TensorBoard events to {self.directory}: {exc.strerror or exc}"
            ) from exc

    def _open(self, epoch: int) -> Any:
        """The session's writer; a new event file that starts with a SessionLog START at ``epoch``."""
        if self._writer is not None:
            return self._writer
        require("tensorboard", feature="--log tensorboard")
        from tensorboard.compat.proto.event_pb2 import Event, SessionLog
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        try:
            self._writer = EventFileWriter(str(self.directory))  # closed by close(), whatever happens next
            # Readers drop what earlier files (an interrupted session) hold at or after this step.
            self._writer.add_event(
                Event(wall_time=time.time(), step=epoch, session_log=SessionLog(status=SessionLog.START))
            )
        except OSError as exc:
            raise OutputError(
                f"cannot write TensorBoard events to {self.directory}: {exc.strerror or exc}"
            ) from exc
        return self._writer

    def close(self) -> None:
        """Flush and close the event file (and stop its writer thread); nothing if none was opened."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
