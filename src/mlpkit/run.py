"""The one runner: a task's data, model, objective and metrics trained into one run directory.

:func:`train_run` takes a config (:class:`~mlpkit.config.RunConfig` for Fashion-MNIST,
:class:`~mlpkit.config.CTRConfig` for CTR tables), finds its :class:`~mlpkit.tasks.base.Task`
(:func:`mlpkit.tasks.task_for`) and writes a run directory::

    config.json        the config, with its ``task`` and without ``out``: ``--config`` of it repeats the run
    metrics.jsonl      one JSON object per finished epoch, appended each epoch, fsynced with each checkpoint
    metrics.csv        the same records as a table, one row per epoch
    summary.json       the saved model's test scores, best epoch, stop reason, wall time
    model.safetensors  the saved weights (never pickle), with what rebuilds the model as metadata
    report.md          configuration, per-epoch table, result, links to the PNGs
    curves.png         the per-epoch curves, and the task's own files (the image task's
                       predictions.png, the CTR task's fitted vocabularies)
    tensorboard/       with ``[run] log = ["tensorboard"]``: the epochs' scalars and histograms of
                       the parameters, for TensorBoard (:mod:`mlpkit.logs`)

Every file is written atomically (temporary file, fsync, rename). The model to keep (the best
validation epoch's, or the last epoch's when ``restore_best`` is off) is written with each
checkpoint (``[run] checkpoint_interval``) and when a run diverges, so a crash or a divergence
leaves the last good model on disk and never weights from a diverged step. The test set is only
scored at the end and never selects anything.
One seed drives independent streams (spawned from one :class:`numpy.random.SeedSequence`): the
validation split, the initial weights (and the NumPy engine's dropout masks), the minibatch order,
and the seed of torch's generator (the torch engine's dropout masks).

``config.run.engine`` picks the trainer: the NumPy engine for tasks whose model is an
:class:`~mlpkit.spec.MLPSpec`, PyTorch for every task. Both write a checkpoint after every epoch
(``checkpoint.json`` and ``checkpoint-epoch*.safetensors``, see
:mod:`mlpkit.train.checkpoint_files`) that :func:`resume_run` continues from. Under ``torchrun``
every rank loads the data and trains, and rank 0 alone creates and writes the run directory; the
ranks agree before training starts, so an error on one rank stops them all. torch is imported
only on that path.

:func:`evaluate_run` scores a saved run's model on its test set, whatever its task;
:func:`predict_run` classifies images with an image run (:func:`mlpkit.tasks.ctr.predict_ctr_run`
scores a table with a CTR run).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlpkit._io import atomic_write_json
from mlpkit._optional import require
from mlpkit.config import load_config
from mlpkit.engine import build_mlp, make_optimizer
from mlpkit.engine.network import to_file_layout
from mlpkit.errors import CheckpointError, ConfigError, MlpkitError, TrainingDivergedError
from mlpkit.logs import NamedParameters, TensorBoardLog, check_logs
from mlpkit.rundir import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    MODEL_FILE,
    RUN_FILES,
    SUMMARY_FILE,
    TENSORBOARD_DIR,
    MetricsLog,
    Session,
    after_interrupt,
    checkpoint_epoch,
    prepare_run_dir,
    remove_if_unused,
    run_task,
    save_weights,
    write_config,
)
from mlpkit.tasks import task_for
from mlpkit.tasks.base import FinishedRun, Splits, Task, run_facts, run_seeds
from mlpkit.tasks.fashion_mnist import LoadedRun, Predictions, load_run, predict_run
from mlpkit.tasks.fashion_mnist import evaluate_run as evaluate_image_run
from mlpkit.train import EarlyStopping, History, NumpyTrainer
from mlpkit.train.checkpoint_files import has_checkpoint
from mlpkit.train.schedules import Schedule, make_schedule

__all__ = [
    "RUN_FILES",
    "EpochHook",
    "EpochWriter",
    "LoadedRun",
    "Predictions",
    "RunResult",
    "evaluate_run",
    "load_run",
    "predict_run",
    "resume_run",
    "run_seeds",
    "run_task",
    "train_run",
]

logger = logging.getLogger(__name__)

EpochHook = Callable[[Path, Mapping[str, Any]], None]
"""``on_epoch_end(run_dir, record)``: called on rank 0 after an epoch's files are on disk."""


@dataclass(frozen=True)
class RunResult:
    """What :func:`train_run` returns; everything in it is also on disk in ``run_dir``.

    Parameters
    ----------
    run_dir : Path
        The run directory.
    config : RunConfig or CTRConfig
        The configuration the run used.
    history : History
        Per-epoch records, best epoch and stop reason.
    summary : dict
        The contents of ``summary.json``; empty on the ranks other than 0 of a multi-process
        run, which write nothing.
    rank : int
        This process's rank in a multi-process run (0 otherwise).
    """

    run_dir: Path
    config: Any
    history: History
    summary: dict[str, Any]
    rank: int = 0


# -- what both engines share ---------------------------------------------------------------------


def _stopper(task: Task, monitor: str) -> EarlyStopping | None:
    es = task.config.early_stopping
    if es.patience is None:
        return None
    mode = task.monitor_modes[monitor]
    return EarlyStopping(patience=es.patience, min_delta=es.min_delta, mode=mode, monitor=monitor)


def _schedule(task: Task, monitor: str) -> Schedule | None:
    """The configured learning-rate schedule; None for ``constant`` (the optimizer's lr throughout)."""
    optim = task.config.optim
    if optim.schedule == "constant":
        return None
    kwargs = optim.schedule_kwargs(task.monitor_modes[monitor])
    if optim.schedule == "plateau":
        kwargs |= task.schedule_options()
    return make_schedule(optim.schedule, optim.lr, **kwargs)


def _check_engine(config: Any) -> None:
    """Refuse, before anything is written, what the configured engine cannot do here."""
    world_size = os.environ.get("WORLD_SIZE", "1")
    if config.run.engine == "numpy" and world_size.isdigit() and int(world_size) > 1:
        # Otherwise every process would train the whole job and write the same run directory.
        raise ConfigError(
            f"the NumPy engine trains in one process, but torchrun started {world_size} "
            f"(WORLD_SIZE={world_size}); pass --engine torch to train with several processes, "
            "or run mlpkit without torchrun"
        )
    if config.run.engine == "torch":
        require("torch", feature="the torch engine (--engine torch)")


class EpochWriter:
    """The trainer's ``on_epoch_end``: what a finished epoch leaves on disk, for every task.

    It refuses non-finite weights, appends the epoch's line to ``metrics.jsonl`` and its row to
    ``metrics.csv`` (:class:`~mlpkit.rundir.MetricsLog`), writes the epoch to TensorBoard when
    ``[run] log`` asks for it (:class:`~mlpkit.logs.TensorBoardLog`; before the checkpoint, so an
    epoch is either replayed on resume or already logged). Then, after the first and the last
    epoch of the session and whenever ``[run] checkpoint_interval`` seconds have passed since the
    last time, it saves ``model.safetensors`` with the weights to keep (the best epoch's so far,
    or the last epoch's when ``keep_every_epoch``, ``restore_best`` off) and a checkpoint of the
    whole trainer (:meth:`save_checkpoint`). So the model file always goes with the checkpoint: a
    run killed at any point resumes from an epoch whose metrics line and model are on disk,
    replaying the epochs after it deterministically and writing their lines and model again, and
    the file never holds weights of a diverged step. Last it calls the caller's ``hook``; when the
    hook raises (to stop the run), the checkpoint and model of this epoch are written first.
    """

    engine = "numpy"
    clock: Callable[[], float] = staticmethod(time.monotonic)
    """What the checkpoint interval is measured with (seconds)."""

    def __init__(
        self,
        run_dir: Path,
        trainer: Any,
        *,
        task: Task,
        data: Splits,
        epochs: int,
        keep_every_epoch: bool,
        session: Session,
        hook: EpochHook | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.session = session
        self.task, self.data = task, data
        self.recorded = task.recorded()
        self.metrics = MetricsLog(run_dir / METRICS_FILE)
        self.model_path = run_dir / MODEL_FILE
        self.trainer = trainer
        self.epochs = epochs
        self.keep_every_epoch = keep_every_epoch
        self.hook = hook
        self.saved_epoch: int | None = None  # the epoch whose weights model.safetensors holds
        self.model_epoch: int | None = None  # the epoch whose weights are the ones to keep
        settings = task.config.run
        self.checkpoint_interval = settings.checkpoint_interval
        self.checkpointed_at: float | None = None  # clock() at this session's last checkpoint
        self.tensorboard = (
            TensorBoardLog(run_dir / TENSORBOARD_DIR, histogram_every=settings.histogram_every)
            if "tensorboard" in settings.log
            else None
        )

    def weights_finite(self) -> bool:
        return all(np.isfinite(p.data).all() for p in self.trainer.network.parameters().values())

    def parameters(self) -> NamedParameters:
        """Each parameter's name (as in the model file), weights and gradient (of the last batch)."""
        for name, p in self.trainer.network.named_parameters().items():
            yield name, p.data, p.grad

    def weights(self) -> dict[str, np.ndarray]:
        """The current weights in the file layout."""
        state: dict[str, np.ndarray] = self.trainer.network.state_dict()
        return state

    def best_weights(self) -> dict[str, np.ndarray]:
        """The best epoch's weights (``trainer.best_state``) in the file layout (views)."""
        return {name: to_file_layout(a) for name, a in self.trainer.best_state.items()}

    def save_checkpoint(self) -> None:
        from mlpkit.train.numpy_checkpoint import save_numpy_checkpoint

        save_numpy_checkpoint(self.run_dir, self.trainer, extra=self.checkpoint_extra())

    def checkpoint_extra(self) -> dict[str, Any]:
        """What a checkpoint keeps besides the trainer: the config it was written with, the time so far."""
        return {"config": self.recorded.to_dict(), "wall_seconds": self.session.seconds()}

    def checkpoint_due(self) -> bool:
        """Whether ``checkpoint_interval`` seconds have passed since this session's last checkpoint
        (True before the first: a run is resumable from its first epoch on)."""
        if self.checkpointed_at is None:
            return True
        return self.clock() - self.checkpointed_at >= self.checkpoint_interval

    def save_model(self, state: dict[str, np.ndarray], epoch: int) -> None:
        save_weights(self.model_path, state, self.task.model_metadata(self.data, epoch, self.engine))
        self.saved_epoch = epoch

    def save_kept_model(self) -> None:
        """Write the weights to keep into ``model.safetensors`` unless the file holds them already.

        They are the trainer's current weights when their epoch is the last finished one, else the
        best epoch's copy. Called with each checkpoint and when a run diverges: then the current
        weights are the last good epoch's if the trainer rolled back to them, and if they are not
        finite, the last epoch's weights are lost and the file keeps what it has.
        """
        kept, history = self.model_epoch, self.trainer.history
        if kept is None or kept == self.saved_epoch:
            return
        if kept == len(history.records) and self.weights_finite():
            self.save_model(self.weights(), kept)
        elif kept == history.best_epoch and self.trainer.best_state is not None:
            self.save_model(self.best_weights(), kept)

    def __call__(self, record: dict[str, Any]) -> None:
        epoch = record["epoch"]
        # The last step of an epoch may overflow after a finite loss: such weights are never kept.
        if not self.weights_finite():
            raise TrainingDivergedError(
                f"training diverged: the weights hold NaN or inf after epoch {epoch} "
                f"(lr={record['lr']:g}); try a smaller learning rate"
            )
        self.metrics.append(record)
        last = epoch >= self.epochs or self.trainer.stopped_early
        if self.tensorboard is not None:
            self.tensorboard.write_epoch(record, self.parameters, last=last)
        logger.info("epoch %d/%d  %s", epoch, self.epochs, self.task.describe_epoch(record))
        if self.keep_every_epoch or self.trainer.history.best_epoch == epoch:
            self.model_epoch = epoch
        checkpointed = last or self.checkpoint_due()
        if checkpointed:
            self.save_checkpoint_and_model()
        if self.hook is not None:
            try:
                self.hook(self.run_dir, record)
            except BaseException:
                # The hook stops the run here (a pruned trial, say): leave it resumable from this epoch.
                if not checkpointed:
                    self.save_checkpoint_and_model()
                raise

    def save_checkpoint_and_model(self) -> None:
        """The metrics lines and the model file, then the checkpoint: no checkpoint names an epoch
        whose model or metrics line is not on disk."""
        self.metrics.sync()
        self.save_kept_model()
        self.save_checkpoint()
        self.checkpointed_at = self.clock()

    def close(self) -> None:
        """Close the logs that hold a file open (TensorBoard's); safe to call more than once."""
        if self.tensorboard is not None:
            self.tensorboard.close()


class TorchEpochWriter(EpochWriter):
    """:class:`EpochWriter` for a ``TorchTrainer``."""

    engine = "torch"

    def weights_finite(self) -> bool:
        import torch

        return all(bool(torch.isfinite(p).all()) for p in self.trainer.model.parameters())

    def parameters(self) -> NamedParameters:
        import torch

        for name, p in self.trainer.model.named_parameters():  # the module itself, never DDP's wrapper
            grad = None if p.grad is None else p.grad.detach().to("cpu", torch.float64).numpy()
            yield name, p.detach().to("cpu", torch.float64).numpy(), grad

    def weights(self) -> dict[str, np.ndarray]:
        from mlpkit.torch_engine import state_arrays

        return state_arrays(self.trainer.model)

    def best_weights(self) -> dict[str, np.ndarray]:
        return _torch_state(self.trainer.best_state)

    def save_checkpoint(self) -> None:
        from mlpkit.train.checkpoint import save_checkpoint

        save_checkpoint(self.run_dir, self.trainer, extra=self.checkpoint_extra())


def _torch_state(state: dict[str, Any]) -> dict[str, np.ndarray]:
    return {name: tensor.detach().cpu().numpy() for name, tensor in state.items()}


def _write_diverged_summary(
    run_dir: Path, exc: TrainingDivergedError, writer: EpochWriter
) -> TrainingDivergedError:
    """Record a diverged run in ``summary.json``; return the error to raise, saying what was kept."""
    writer.metrics.rewrite()
    writer.save_kept_model()
    summary: dict[str, Any] = {
        "status": "diverged",
        "stop_reason": str(exc),
        "epochs_run": len(writer.metrics.lines),
        "best_epoch": writer.trainer.history.best_epoch if writer.saved_epoch is not None else None,
        "saved_model_epoch": writer.saved_epoch,
    }
    summary |= {f"test_{name}": None for name in writer.task.test_scores}
    summary |= {"wall_seconds": writer.session.seconds(), "data_dir": writer.data.source}
    summary |= writer.session.facts
    atomic_write_json(run_dir / SUMMARY_FILE, summary)
    saved = writer.saved_epoch
    kept = "no model was saved" if saved is None else f"the model of epoch {saved} is kept"
    return TrainingDivergedError(
        f"{exc}. {len(writer.metrics.lines)} finished epoch(s) are in {writer.metrics.path}; {kept}"
    )


def _write_config(run_dir: Path, task: Task, data: Splits) -> None:
    """``config.json`` and the task's own files, before the first epoch (so an interrupted run has them)."""
    write_config(run_dir, task.recorded().to_dict())
    for name, content in task.run_files(data).items():
        atomic_write_json(run_dir / name, content)


def _finish(
    task: Task, writer: EpochWriter, trainer: Any, history: History, session: Session,
    *, restore_best: bool, engine: dict[str, Any],
) -> dict[str, Any]:
    """Hand the finished run to its task (rank 0): test scores, figures, summary and report."""
    writer.metrics.rewrite()
    last_state = writer.weights()
    best_state = writer.best_weights() if trainer.best_state is not None else last_state
    facts = run_facts(
        history, monitor=trainer.monitor, restore_best=restore_best, wall_seconds=session.seconds(),
        engine=engine, provenance=session.facts,
    )
    finished = FinishedRun(
        writer.run_dir, writer.data, history, trainer.monitor, restore_best, last_state, best_state,
        trainer, facts, session.facts,
    )
    summary = task.finish(finished)
    logger.debug("finished %s (best epoch %d)", writer.run_dir, history.best_epoch)
    return summary


# -- training and resuming -----------------------------------------------------------------------


def train_run(
    config: Any,
    *,
    progress: bool = False,
    overwrite: bool = False,
    command: Sequence[str] | None = None,
    on_epoch_end: EpochHook | None = None,
) -> RunResult:
    """Train the configured task and write one run directory.

    ``config.run.engine`` picks the NumPy engine or PyTorch; both write the same files, including
    a checkpoint after every epoch (see :func:`resume_run`). Under ``torchrun`` the torch engine
    trains on every rank, and only rank 0 writes the directory.

    Parameters
    ----------
    config : RunConfig or CTRConfig
        The whole run: model, optimizer, early stopping, data, seed and output directory; its
        class picks the task.
    progress : bool
        Show a progress bar per epoch (the CLI turns it on when stderr is a terminal).
    overwrite : bool
        Allow a non-empty ``config.run.out``; its run files (:data:`RUN_FILES` and a checkpoint)
        are removed first, other files are left alone.
    command : sequence of str, optional
        The command-line arguments that started the run, recorded in ``summary.json`` and the
        report (the CLI passes its own; default: this process's ``sys.argv``).
    on_epoch_end : callable, optional
        ``on_epoch_end(run_dir, record)`` after each epoch's metrics line, model and checkpoint
        are on disk (rank 0 only); an exception it raises stops the run as it would stop anywhere
        (``KeyboardInterrupt`` leaves a resumable run).

    Returns
    -------
    RunResult

    Raises
    ------
    OutputError
        Before any training: the run directory exists and is not empty (without ``overwrite``), or
        cannot be written. A directory this call created is removed again if the data fails to load.
    DataNotFoundError, DataFormatError, ChecksumError
        The data cannot be found, or is malformed (the message names the file and the value).
    ConfigError
        ``val_size`` leaves no training data; a device that is not there (e.g. ``cuda`` without
        a GPU), before anything is written.
    TrainingDivergedError
        The loss or the weights became NaN or infinite. ``metrics.jsonl`` keeps the finished epochs,
        ``summary.json`` says why the run stopped, and ``model.safetensors`` holds the last good
        model if one was saved (never diverged weights).
    """
    _check_engine(config)
    check_logs(config.run)
    task = task_for(config)
    run = _torch_run if config.run.engine == "torch" else _numpy_run
    return run(
        task, progress=progress, overwrite=overwrite, resume_dir=None, command=command, hook=on_epoch_end
    )


def _numpy_run(
    task: Task,
    *,
    progress: bool,
    overwrite: bool,
    resume_dir: Path | None,
    command: Sequence[str] | None,
    hook: EpochHook | None,
) -> RunResult:
    """:func:`train_run` and :func:`resume_run` on the NumPy engine (tasks with an MLPSpec model)."""
    from mlpkit.train.numpy_checkpoint import load_numpy_checkpoint

    if not task.numpy_engine:
        raise ConfigError(
            f"the NumPy engine trains MLPSpec models only; task {task.name!r} needs engine 'torch'"
        )
    config = task.config
    session = Session(command)
    if resume_dir is None:
        run_dir, created = prepare_run_dir(config.run.out, config.name, overwrite=overwrite)
    else:
        run_dir, created = resume_dir, False
    logger.info("%s: %s", "run directory" if resume_dir is None else "resuming the run in", run_dir)
    split_rng, init_rng, train_rng, _ = run_seeds(config.run.seed)
    try:
        data = task.load(split_rng, log=True)
        task.check_resources(data, device="cpu")
    except BaseException:
        remove_if_unused(run_dir, created)
        raise

    monitor = task.monitor(data.x_val is not None)
    network = build_mlp(task.spec(data), rng=init_rng, dtype=np.dtype(config.run.dtype))
    trainer = NumpyTrainer(
        network,
        loss=task.numpy_loss(data),
        optimizer=make_optimizer(
            config.optim.optimizer, network.parameters().values(), **config.optim.optimizer_kwargs()
        ),
        rng=train_rng,
        batch_size=config.optim.batch_size,
        early_stopping=_stopper(task, monitor),
        monitor=monitor,
        restore_best=False,  # the run scores both the last and the best weights
        schedule=_schedule(task, monitor),
        augment=task.numpy_augment(),
        progress=progress,
    )
    restore_best = config.early_stopping.restore_best
    recorded = task.recorded()
    if resume_dir is not None:
        extra = load_numpy_checkpoint(run_dir, trainer)
        _warn_if_config_changed(extra, recorded, run_dir)
        session.resume(extra, trainer.history.records, run_dir)
        if (finished := _already_finished(run_dir, config, trainer)) is not None:
            return finished
    writer = EpochWriter(
        run_dir, trainer, task=task, data=data, epochs=config.optim.epochs,
        keep_every_epoch=not restore_best, session=session, hook=hook,
    )
    trainer.on_epoch_end = writer
    _write_config(run_dir, task, data)
    if resume_dir is not None:
        _restart_files(writer, trainer, restore_best=restore_best)
        _log_nothing_to_train(trainer, config.optim.epochs)
    resumed_at = trainer.epochs_done

    try:
        try:
            history = trainer.fit(
                data.x_train, data.y_train, data.x_val, data.y_val,
                epochs=trainer.remaining_epochs(config.optim.epochs),
            )
        except TrainingDivergedError as exc:
            raise _write_diverged_summary(run_dir, exc, writer) from exc
        except KeyboardInterrupt:
            writer.close()  # before after_interrupt, which may remove the events
            after_interrupt(run_dir, created=created, new_run=resume_dir is None)
            raise

        engine: dict[str, Any] = {"engine": "numpy"}
        if resume_dir is not None:
            engine["resumed_at_epoch"] = resumed_at
        summary = _finish(task, writer, trainer, history, session, restore_best=restore_best, engine=engine)
    finally:
        writer.close()
    return RunResult(run_dir, config, history, summary)


def _already_finished(run_dir: Path, config: Any, trainer: Any, rank: int = 0) -> RunResult | None:
    """On resume of a finished run with no epoch left to train: the run as it is, untouched."""
    if trainer.remaining_epochs(config.optim.epochs) > 0:
        return None
    try:
        summary = json.loads((run_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # killed after its last epoch, before its summary: finish it
    if not isinstance(summary, dict) or summary.get("epochs_run") != trainer.epochs_done:
        return None
    if rank == 0:
        _log_nothing_to_train(trainer, config.optim.epochs)
        logger.info("%s is unchanged; pass --epochs to train it longer", run_dir)
    return RunResult(run_dir, config, trainer.history, summary if rank == 0 else {}, rank=rank)


def _log_nothing_to_train(trainer: Any, epochs: int) -> None:
    """On resume, say why no epoch will run (a finished or early-stopped run)."""
    if trainer.stopped_early:
        logger.info("nothing to train: the run stopped early after epoch %d", trainer.epochs_done)
    elif trainer.epochs_done >= epochs:
        logger.info("nothing to train: %d of %d epochs are done", trainer.epochs_done, epochs)



# -- the torch engine: every task, checkpoints, resume, several processes ------------------------
#
# Everything torch is imported inside these functions: `import mlpkit.run` stays torch-free.


def _run_dir_on_rank_zero(ctx: Any, config: Any, *, overwrite: bool) -> tuple[Path, bool]:
    """Rank 0 checks and creates the run directory; every rank learns the outcome.

    The other ranks never touch the directory: they get its path, or rank 0's error, by
    broadcast, so all ranks go on or all stop (none waits forever for a rank that has quit).
    """
    if ctx is None:
        return prepare_run_dir(config.run.out, config.name, overwrite=overwrite)
    from mlpkit.train.distributed import broadcast_json

    if ctx.is_rank_zero:
        try:
            run_dir, created = prepare_run_dir(config.run.out, config.name, overwrite=overwrite)
        except BaseException as exc:
            broadcast_json(ctx, {"error": f"{type(exc).__name__}: {exc}"})
            raise
        broadcast_json(ctx, {"run_dir": str(run_dir)})
        return run_dir, created
    outcome = broadcast_json(ctx, None)
    if "error" in outcome:
        raise MlpkitError(
            f"rank {ctx.rank} stops: rank 0 could not prepare the run directory ({outcome['error']})"
        )
    return Path(outcome["run_dir"]), False


def _resume_config(run_dir: Path) -> Any:
    """The configuration of the run to resume, checked before anything is loaded or written."""
    if not run_dir.is_dir():
        raise CheckpointError(f"cannot resume: run directory {run_dir} does not exist")
    config_path = run_dir / CONFIG_FILE
    if not config_path.is_file():
        raise CheckpointError(
            f"cannot resume: {run_dir} has no {CONFIG_FILE}, so it is not a run directory of 'mlpkit train'"
        )
    try:
        config = load_config(config_path, task=None)
    except ConfigError as exc:
        raise CheckpointError(
            f"cannot resume: {config_path} is not a valid run configuration: {exc}"
        ) from exc
    if not has_checkpoint(run_dir):
        raise CheckpointError(
            f"cannot resume: no checkpoint in {run_dir} (no {CHECKPOINT_FILE}); the run may have stopped "
            "before its first epoch finished: train it again instead"
        )
    return dataclasses.replace(config, run=dataclasses.replace(config.run, out=str(run_dir)))


def resume_run(
    run_dir: str | os.PathLike[str],
    *,
    epochs: int | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    device: str | None = None,
    checkpoint_interval: float | None = None,
    progress: bool = False,
    command: Sequence[str] | None = None,
    on_epoch_end: EpochHook | None = None,
) -> RunResult:
    """Continue an interrupted run from its last checkpoint, in the same directory, on either engine.

    The settings come from ``run_dir/config.json``; the trainer is rebuilt, restored from the
    checkpoint (weights, optimizer, schedule, early stopping, best epoch, the generators),
    ``metrics.jsonl`` is rewritten from the checkpoint's history, and training continues for the
    remaining epochs. On the CPU the result equals the uninterrupted run bit for bit. Under
    ``torchrun`` every rank reads the checkpoint and rank 0 writes. A finished run with no epoch
    left to train is returned as it is, and nothing is written.

    Parameters
    ----------
    run_dir : str or os.PathLike
    epochs : int, optional
        A new total number of epochs (Lightning's ``max_epochs``): more than the run had extends
        it (a run that stopped early stays stopped). Recorded in ``config.json``.
    data_dir : str or os.PathLike, optional
        Where the data is now, if not where the run found it; recorded in ``config.json``.
    device : str, optional
        Where the torch engine trains from now on (``cpu``, ``cuda``, ``cuda:N``, ``auto``).
    checkpoint_interval : float, optional
        Seconds between checkpoints from now on (``[run] checkpoint_interval``); it changes when
        the run is saved, never what it computes. Recorded in ``config.json``.
    progress : bool
    command : sequence of str, optional
    on_epoch_end : callable, optional
        As for :func:`train_run`.

    Raises
    ------
    CheckpointError
        Before anything is written: no such directory, no ``config.json`` or no checkpoint in it,
        a corrupted checkpoint, or one that does not fit the configuration (the message names the
        tensor and both shapes).
    ConfigError
        ``epochs`` fewer than the epochs the checkpoint has trained, or an invalid value.
    """
    config = _resume_config(Path(run_dir))
    overrides: dict[str, dict[str, Any]] = {}
    if epochs is not None:
        done = checkpoint_epoch(Path(run_dir))
        if isinstance(epochs, int) and not isinstance(epochs, bool) and epochs < done:
            raise ConfigError(
                f"--epochs {epochs} is fewer than the {done} epochs {run_dir} has trained; "
                f"pass more than {done} to train it longer"
            )
        overrides["optim"] = {"epochs": epochs}
    if device is not None:
        overrides["run"] = {"device": device}
    if checkpoint_interval is not None:
        overrides.setdefault("run", {})["checkpoint_interval"] = checkpoint_interval
    if overrides:
        config = config.with_overrides(overrides, source="resume options")
    task = task_for(config).with_data_dir(data_dir)
    _check_engine(config)
    check_logs(config.run)
    run = _torch_run if config.run.engine == "torch" else _numpy_run
    return run(
        task, progress=progress, overwrite=False, resume_dir=Path(run_dir), command=command, hook=on_epoch_end
    )


def _torch_run(
    task: Task,
    *,
    progress: bool,
    overwrite: bool,
    resume_dir: Path | None,
    command: Sequence[str] | None,
    hook: EpochHook | None,
) -> RunResult:
    """:func:`train_run` and :func:`resume_run` on the torch engine."""
    import torch.distributed as dist

    from mlpkit.train.distributed import cleanup_distributed, init_distributed

    session = Session(command)
    owns_group = not (dist.is_available() and dist.is_initialized())
    ctx = init_distributed(task.config.run.device)  # None unless started by torchrun
    try:
        if ctx is not None and ctx.world_size == 1:
            ctx = None  # torchrun with one process: a plain run
        return _torch_run_in_group(
            task, ctx, progress=progress, overwrite=overwrite, resume_dir=resume_dir, session=session,
            hook=hook,
        )
    finally:
        if owns_group:
            cleanup_distributed()


def _torch_run_in_group(
    task: Task,
    ctx: Any,
    *,
    progress: bool,
    overwrite: bool,
    resume_dir: Path | None,
    session: Session,
    hook: EpochHook | None,
) -> RunResult:
    import torch

    from mlpkit.train.checkpoint import load_checkpoint
    from mlpkit.train.device import resolve_device
    from mlpkit.train.distributed import local_batch_size, on_every_rank
    from mlpkit.train.torch_trainer import TorchTrainer, build_optimizer

    config = task.config
    rank = 0 if ctx is None else ctx.rank
    rank_zero = rank == 0
    # Before the directory: a device that is not there, or a batch the ranks cannot share, fails
    # with nothing written.
    device = ctx.device if ctx is not None else resolve_device(config.run.device)
    if ctx is not None:
        local_batch_size(config.optim.batch_size, ctx.world_size)
    if resume_dir is None:
        run_dir, created = _run_dir_on_rank_zero(ctx, config, overwrite=overwrite)
    else:
        run_dir, created = resume_dir, False
    if rank_zero:
        logger.info(
            "%s: %s (torch engine on %s%s)",
            "run directory" if resume_dir is None else "resuming the run in",
            run_dir,
            device,
            "" if ctx is None else f", {ctx.world_size} processes",
        )

    def leave_no_empty_directory() -> None:
        if rank_zero:
            remove_if_unused(run_dir, created)

    split_rng, init_rng, train_rng, torch_seed = run_seeds(config.run.seed)
    restore_best = config.early_stopping.restore_best
    recorded = task.recorded()

    def load_and_check() -> Splits:
        data = task.load(split_rng, log=rank_zero)
        task.check_resources(data, device=str(device))
        return data

    data = on_every_rank(ctx, "to load the data", load_and_check, leave_no_empty_directory)
    monitor = task.monitor(data.x_val is not None)
    try:
        # Dropout masks: the ranks draw different ones. Initial weights drawn from torch's generator
        # may differ across ranks too: DDP starts every rank from rank 0's.
        torch.manual_seed(torch_seed + rank)
        model = task.build_model(data, init_rng)
        # Wraps the model in DDP when there are several ranks: a collective, run by all or none.
        trainer = TorchTrainer(
            model,
            optimizer=build_optimizer(config.optim.optimizer, model, **config.optim.optimizer_kwargs()),
            rng=train_rng,
            batch_size=config.optim.batch_size,
            device=device,
            early_stopping=_stopper(task, monitor),
            monitor=monitor,
            restore_best=False,  # the run scores both the last and the best weights
            schedule=_schedule(task, monitor),
            grad_clip_norm=config.optim.grad_clip_norm,
            progress=progress and rank_zero,
            distributed=ctx,
            autocast=config.run.autocast,
            **task.trainer_options(model),
        )
    except BaseException:
        leave_no_empty_directory()
        raise
    # DDP's reducer holds the process group: dropping the wrapper on every way out lets
    # cleanup_distributed destroy the group now, not at interpreter exit, where tearing gloo
    # down aborts the process now and then (SIGABRT, "terminate called without an active exception").
    writer: TorchEpochWriter | None = None
    try:
        if resume_dir is not None:
            # Every rank reads the checkpoint; it is checked whole before anything changes.
            extra = on_every_rank(
                ctx, "to read the checkpoint", lambda: load_checkpoint(run_dir, trainer), None
            )
            _warn_if_config_changed(extra, recorded, run_dir)
            session.resume(extra, trainer.history.records, run_dir)
            if (finished := _already_finished(run_dir, config, trainer, rank)) is not None:
                return finished

        writer = TorchEpochWriter(
            run_dir, trainer, task=task, data=data, epochs=config.optim.epochs,
            keep_every_epoch=not restore_best, session=session, hook=hook,
        )
        trainer.on_epoch_end = writer  # called on rank 0 only
        if rank_zero:
            _write_config(run_dir, task, data)
            if resume_dir is not None:
                _restart_files(writer, trainer, restore_best=restore_best)
                _log_nothing_to_train(trainer, config.optim.epochs)
        epochs, resumed_at = trainer.remaining_epochs(config.optim.epochs), trainer.epochs_done
        try:
            history = trainer.fit(data.x_train, data.y_train, data.x_val, data.y_val, epochs=epochs)
        except TrainingDivergedError as exc:
            if not rank_zero:
                raise
            raise _write_diverged_summary(run_dir, exc, writer) from exc
        except KeyboardInterrupt:
            if rank_zero:
                writer.close()  # before after_interrupt, which may remove the events
                after_interrupt(run_dir, created=created, new_run=resume_dir is None)
            raise
        if not rank_zero:
            return RunResult(run_dir, config, history, {}, rank=rank)

        engine: dict[str, Any] = {
            "engine": "torch",
            "device": str(device),
            "world_size": 1 if ctx is None else ctx.world_size,
            "torch_version": torch.__version__,
        }
        if resume_dir is not None:
            engine["resumed_at_epoch"] = resumed_at
        summary = _finish(task, writer, trainer, history, session, restore_best=restore_best, engine=engine)
        return RunResult(run_dir, config, history, summary)
    finally:
        if writer is not None:
            writer.close()
        trainer.close()


def _restart_files(writer: EpochWriter, trainer: Any, *, restore_best: bool) -> None:
    """On resume, make ``metrics.jsonl`` and ``model.safetensors`` match the checkpoint.

    A run killed after epochs that no checkpoint holds yet (the checkpoint interval, or a kill
    between an epoch's metrics line and its checkpoint) has more epochs on disk than the
    checkpoint; they are replayed, so the files are rewritten from the checkpoint first.
    """
    history = trainer.history
    writer.metrics.rewrite(history.records)
    if not history.records:
        return
    if restore_best and trainer.best_state is not None:
        writer.save_model(writer.best_weights(), history.best_epoch)
    else:
        writer.save_model(writer.weights(), len(history.records))


_RESUME_SETTINGS = {
    ("optim", "epochs"), ("data", "data_dir"), ("run", "device"), ("run", "checkpoint_interval"),
}
"""What :func:`resume_run` may change on purpose; other changes to ``config.json`` get a warning."""


def _warn_if_config_changed(extra: Any, recorded: Any, run_dir: Path) -> None:
    """Log the settings of ``config.json`` that differ from those the checkpoint was written with."""
    saved = extra.get("config") if isinstance(extra, dict) else None
    if not isinstance(saved, dict):
        return
    changed, chosen = [], []
    for section, values in recorded.to_dict().items():
        if not isinstance(values, dict):
            continue  # the task's name: a different one is refused when the config is read
        before = saved.get(section, {})
        for key, value in values.items():
            if isinstance(before, dict) and key in before and before[key] != value:
                line = f"[{section}] {key}: {before[key]!r} -> {value!r}"
                (chosen if (section, key) in _RESUME_SETTINGS else changed).append(line)
    if chosen:
        logger.info("resuming with %s", "; ".join(chosen))
    if changed:
        logger.warning(
            "%s/%s differs from the configuration the checkpoint was written with: %s",
            run_dir, CONFIG_FILE, "; ".join(changed),
        )


# -- reusing a saved run -------------------------------------------------------------------------


def evaluate_run(
    run_dir: str | os.PathLike[str], *, data_dir: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Score a saved run's model on its test set, found as the run found it (or in ``data_dir``).

    An image run returns ``test_accuracy``, ``test_loss``, ``n_test``, per-class scores and the
    confusion matrix (:func:`mlpkit.tasks.fashion_mnist.evaluate_run`); a CTR run ``test_auc``,
    ``test_logloss`` and ``n_test`` (:func:`mlpkit.tasks.ctr.evaluate_ctr_run`); a table run the
    scores of its kind (:func:`mlpkit.tasks.tabular.evaluate_table_run`): the numbers of its
    ``summary.json``.

    Raises
    ------
    CheckpointError
        If the run directory is missing or corrupt.
    DataNotFoundError, DataFormatError
        If the test data cannot be loaded.
    """
    task = run_task(run_dir)
    if task == "ctr":
        from mlpkit.tasks.ctr import evaluate_ctr_run

        return evaluate_ctr_run(run_dir, data_dir=data_dir)
    if task == "table":
        from mlpkit.tasks.tabular import evaluate_table_run

        return evaluate_table_run(run_dir, data_dir=data_dir)
    return evaluate_image_run(run_dir, data_dir=data_dir)
