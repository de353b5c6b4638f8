"""The training loop for torch modules: it owns the loss, the optimizer, the device and the loop.

The model only maps a (B, D) batch to (B, C) logits. :class:`TorchTrainer` has the shape of
:class:`~mlpkit.train.numpy_trainer.NumpyTrainer` (``fit(x, y, x_val, y_val, epochs=...)``
returning a :class:`~mlpkit.train.history.History` with the same record keys, ``on_epoch_end``,
``best_state``, restore-best) and adds a device, learning-rate schedules, gradient clipping and
data parallelism (:mod:`mlpkit.train.distributed`). Minibatches come from
``rng.permutation(N)`` exactly as in the NumPy trainer, so one seed gives both engines the same
batches; a memory-mapped input of more rows than a window (2**18) is shuffled window by window
instead (:mod:`mlpkit.train.mapped`), so that an epoch reads the file a window at a time.

The hot loop is kept lean: the whole data set is moved to the device once per :meth:`fit`, a
batch is an index into it, gradients are released with ``zero_grad(set_to_none=True)``, and the
loss and accuracy are summed *on the device* and read back once per epoch. Reading a number back
(``.item()``) waits for the device to finish; per batch that serialises a GPU and costs several
percent on a CPU, so NaN detection happens once per epoch too (see :meth:`TorchTrainer.train_epoch`).
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor, nn

from mlpkit._checks import (
    check_choice,
    check_positive_float,
    check_positive_int,
    check_probability,
)
from mlpkit.data.augment import ShiftFlip
from mlpkit.errors import ConfigError, TrainingDivergedError
from mlpkit.train.device import resolve_device
from mlpkit.train.distributed import (
    DistributedContext,
    all_reduce_sum,
    gather_generator_states,
    gather_rows,
    local_batch_size,
    shard_batch,
    shard_bounds,
    shard_weight,
)
from mlpkit.train.early_stopping import EarlyStopping
from mlpkit.train.loop import EpochTrainer, Metric
from mlpkit.train.mapped import MappedRows, is_memory_map, windowed_order
from mlpkit.train.schedules import Schedule

__all__ = [
    "AUTOCASTS",
    "LOSS_NAMES",
    "OPTIMIZER_NAMES",
    "TorchTrainer",
    "build_loss",
    "build_optimizer",
]

logger = logging.getLogger(__name__)

OPTIMIZER_NAMES = ("sgd", "adam", "adamw")
AUTOCASTS = ("none", "bf16")
"""Mixed precision of the training forward passes: none, or ``torch.autocast`` to bfloat16."""
LOSS_NAMES = ("cross_entropy", "bce_with_logits", "mse")


def build_loss(name: str) -> nn.Module:
    """A loss on logits by name: ``cross_entropy``, ``bce_with_logits`` or ``mse`` (mean reduction).

    Raises
    ------
    ConfigError
        For an unknown name, listing the valid ones.

    Examples
    --------
    >>> build_loss("cross_entropy")
    CrossEntropyLoss()
    """
    losses: dict[str, type[nn.Module]] = {
        "cross_entropy": nn.CrossEntropyLoss,
        "bce_with_logits": nn.BCEWithLogitsLoss,
        "mse": nn.MSELoss,
    }
    if name not in losses:
        raise ConfigError(f"loss must be one of {sorted(losses)}, got {name!r}")
    return losses[name]()


def build_optimizer(
    name: str,
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    nesterov: bool = False,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> torch.optim.Optimizer:
    """A torch optimizer whose weight decay, like the NumPy engine's, touches weights only.

    Parameters with two or more dimensions (Linear weights) form a group with ``weight_decay``;
    biases, norm scales and embedding tables form a group with none (Goodfellow et al., *Deep
    Learning*, sec. 7.1). Embedding tables are left out because decay would shrink every row at
    every step while only the rows of the batch's ids get gradients: rare ids would decay to zero.
    They are regularized through the loss instead (the trainer's ``regularizer``), on the whole
    tables, as FuxiCTR does.
    ``sgd`` adds ``weight_decay * w`` to the gradient and may use (Nesterov) momentum; ``adam``
    is coupled L2; ``adamw`` decays decoupled (Loshchilov & Hutter, ICLR 2019).

    Parameters
    ----------
    name : {"sgd", "adam", "adamw"}
    model : nn.Module
    lr, weight_decay, momentum, nesterov, betas, eps
        As in ``torch.optim``; ``momentum`` and ``nesterov`` for SGD, ``betas``/``eps`` for Adam(W).

    Raises
    ------
    ConfigError
        For an unknown name, listing the valid ones.
    ValueError
        For an out-of-range value, naming the parameter.

    Examples
    --------
    >>> opt = build_optimizer("adamw", nn.Linear(3, 2), lr=1e-3, weight_decay=0.01)
    >>> [g["weight_decay"] for g in opt.param_groups]
    [0.01, 0.0]
    """
    if name not in OPTIMIZER_NAMES:
        raise ConfigError(f"optimizer must be one of {sorted(OPTIMIZER_NAMES)}, got {name!r}")
    lr = check_positive_float("lr", lr)
    weight_decay = float(weight_decay)
    if not math.isfinite(weight_decay) or weight_decay < 0:
        raise ValueError(f"weight_decay must be a non-negative float, got {weight_decay!r}")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("optimizer got an empty parameter list")
    tables = {
        id(p)
        for module in model.modules()
        if isinstance(module, nn.Embedding | nn.EmbeddingBag)
        for p in module.parameters(recurse=False)
    }
    decay = [p for p in params if p.ndim >= 2 and id(p) not in tables]
    no_decay = [p for p in params if p.ndim < 2 or id(p) in tables]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if name == "sgd":
        momentum = check_probability("momentum", momentum)
        if nesterov and momentum == 0:
            raise ValueError("nesterov momentum needs momentum > 0, got momentum=0")
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov)
    check_probability("betas[0]", betas[0])
    check_probability("betas[1]", betas[1])
    check_positive_float("eps", eps)
    cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    # The fused kernel updates each tensor in one pass over its moments: DeepFM's 423k parameters
    # in 0.6 ms on one CPU thread against the foreach path's 2.2 ms. It needs floating-point
    # parameters on a device it supports; elsewhere torch's default path runs.
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return cls(groups, lr=lr, betas=tuple(betas), eps=eps, fused=fused or None)


def _shift_flip(augment: ShiftFlip, x: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """:class:`~mlpkit.data.augment.ShiftFlip` on the device, crops drawn by :meth:`ShiftFlip.draw`.

    x (B, H*W), rows (B, H) and cols (B, W) on one device -> (B, H*W).
    """
    b, h, w, s = x.shape[0], augment.height, augment.width, augment.max_shift
    padded = x.new_zeros((b, h + 2 * s, w + 2 * s))                         # (B, H+2s, W+2s)
    padded[:, s : s + h, s : s + w] = x.reshape(b, h, w)
    batch = torch.arange(b, device=x.device)
    return padded[batch[:, None, None], rows[:, :, None], cols[:, None, :]].reshape(b, h * w)


Batch = Tensor | dict[str, Tensor]
"""A model's input: one (B, D) tensor, or named tensors of equal first axis (``{"sparse": (B, F) int64,
"dense": (B, N)}``), which the model takes as they are. A whole data set of named inputs may hold
:class:`~mlpkit.train.mapped.MappedRows` (a memory-mapped file's rows) in place of tensors: indexed
with :func:`_take`, they become tensors too."""


def _rows(x: Batch) -> int:
    """B, the number of rows of a batch."""
    return next(iter(x.values())).shape[0] if isinstance(x, dict) else x.shape[0]


def _take(x: Batch, index: Tensor | slice) -> Batch:
    """The rows ``index`` of a batch (an index tensor or a slice), for every named tensor alike."""
    return {name: t[index] for name, t in x.items()} if isinstance(x, dict) else x[index]


def epoch_order(rng: np.random.Generator, n: int) -> np.ndarray:
    """``rng.permutation(n)``: the same order, and the generator left in the same state, but (N,)
    int32 while N < 2**31, 4 bytes a row instead of 8 (the one array of an epoch that grows with
    the data; the shuffle draws the same numbers whatever the array's dtype).

    Examples
    --------
    >>> a, b = np.random.default_rng(0), np.random.default_rng(0)
    >>> bool((epoch_order(a, 10) == b.permutation(10)).all()), epoch_order(a, 3).dtype
    (True, dtype('int32'))
    """
    order = np.arange(n, dtype=np.int32 if n < 2**31 else np.int64)
    rng.shuffle(order)
    return order


def _epoch_order(rng: np.random.Generator, x: Batch, n: int) -> np.ndarray:
    """The order of one epoch over ``x``'s N rows: :func:`epoch_order`, or, for memory-mapped inputs
    of more rows than their window, :func:`~mlpkit.train.mapped.windowed_order`, which reads the
    file window by window instead of one random page per row (see :mod:`mlpkit.train.mapped`)."""
    mapped = next((t for t in x.values() if isinstance(t, MappedRows)), None) if isinstance(x, dict) else None
    if mapped is not None and n > mapped.window_rows:
        return windowed_order(rng, n, window_rows=mapped.window_rows, block_rows=mapped.block_rows)
    return epoch_order(rng, n)


def _correct_fn(loss: nn.Module) -> Callable[[Tensor, Tensor], Tensor] | None:
    """Correct predictions in a batch, as a device tensor, for classification losses; else None."""
    if isinstance(loss, nn.CrossEntropyLoss):
        return lambda logits, y: (logits.argmax(dim=1) == y).sum()
    if isinstance(loss, nn.BCEWithLogitsLoss):
        return lambda logits, y: ((logits > 0) == (y > 0.5)).sum()
    return None


class TorchTrainer(EpochTrainer):
    """Minibatch training of a torch module, with validation, early stopping and restore-best.

    The epoch loop is :class:`~mlpkit.train.loop.EpochTrainer`'s, shared with the NumPy trainer;
    this class supplies the device, one epoch of autograd training, DDP and gradient clipping.

    Parameters
    ----------
    model : nn.Module
        Maps (B, D) inputs to (B, C) logits. The trainer moves it to ``device``.
    loss : nn.Module
        A mean-reduced loss on logits (see :func:`build_loss`).
    optimizer : torch.optim.Optimizer
        Built over ``model``'s parameters (see :func:`build_optimizer`).
    rng : numpy.random.Generator
        Shuffles the training set each epoch (``rng.permutation(N)``, as the NumPy trainer; window
        by window for memory-mapped inputs of more rows than a window, see :func:`_epoch_order`).
        In a distributed run every rank must pass a generator with the same seed.
    batch_size : int
        The global minibatch size; in a distributed run each rank takes B / WORLD_SIZE of it.
    device : str or torch.device
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (see :func:`resolve_device`);
        ignored when ``distributed`` is given (its device is used).
    early_stopping : EarlyStopping or None
        Stops when its monitored score stalls; ``None`` trains every epoch.
    monitor : {"val_loss", "val_accuracy", "train_loss"} or "val_<metric>"
        Which score picks the best epoch and feeds early stopping and the plateau schedule;
        ``"train_loss"`` when there is no validation set.
    restore_best : bool
        Put the best epoch's weights back at the end of :meth:`fit`.
    schedule : Schedule or None
        Sets the learning rate of every parameter group before each epoch; stepped with the
        monitored score after it.
    grad_clip_norm : float or None
        Clip the global L2 norm of the gradients to this value before each step.
    augment : ShiftFlip or None
        Random shifts and flips of each training minibatch, on the device. The crops are drawn
        from ``rng`` for the whole global batch, as the NumPy trainer draws them, so the two
        engines see the same images for one seed, and N processes the same as one.
    progress : bool
        Show one progress bar per :meth:`fit` (off unless asked; see ``EpochTrainer``).
    on_epoch_end : callable or None
        Called with each finished epoch's record, after the trainer's whole state (early
        stopping, schedule, best weights) is updated, so a checkpoint written there resumes
        exactly. Called on rank 0 only, the rank that writes the run directory.
    distributed : DistributedContext or None
        From :func:`~mlpkit.train.distributed.init_distributed`; wraps the model in
        ``DistributedDataParallel``.
    eval_batch_size : int
        Batch size for validation and prediction (no gradients kept).
    metrics : mapping of str to (callable, mode), optional
        Validation scores recorded as ``val_<name>`` after every epoch and usable as ``monitor``
        (see :class:`~mlpkit.train.loop.EpochTrainer`), e.g. ``{"auc": (roc_auc, "max")}``.
    regularizer : callable or None
        Returns a scalar tensor added to each training batch's loss before the backward pass
        (e.g. an L2 penalty on the embedding rows, as BARS's ``embedding_regularizer``). The
        recorded losses are the data loss alone, so they compare with the validation loss.
    autocast : {"none", "bf16"}
        ``"bf16"``: each training forward pass runs under :func:`torch.autocast` to bfloat16
        (Micikevicius et al., "Mixed Precision Training", ICLR 2018; bfloat16 keeps float32's
        exponent range, so no loss scaling is needed, Kalamkar et al. 2019). Linear layers and
        matrix products run in bfloat16 and the layers after them (ReLU, BatchNorm) take their
        bfloat16 output; embedding lookups and products of float32 tensors (the FM and cross terms)
        stay float32. The logits come back in the model's dtype before the loss, and the weights,
        gradients and optimizer state never leave it. Validation and prediction run in full
        precision, so every recorded score is a full-precision one. It pays where the hardware has
        bfloat16 matrix units (AMX or AVX-512 BF16 CPUs, recent GPUs): on a CPU with AMX, the
        BARS DeepFM tower (400-400-400, batch 4096) took 0.6x the float32 time a step; elsewhere
        it can be slower than float32, and small matrices (a width-64 ViT) were slower even there.

    Examples
    --------
    >>> import numpy as np
    >>> model = nn.Linear(4, 3)
    >>> trainer = TorchTrainer(model, loss=build_loss("cross_entropy"),
    ...                        optimizer=build_optimizer("sgd", model, lr=0.1), rng=np.random.default_rng(0))
    >>> x, y = np.zeros((8, 4), np.float32), np.zeros(8, np.int64)
    >>> len(trainer.fit(x, y, epochs=2).records), trainer.predict_logits(x[:1]).shape
    (2, (1, 3))
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        loss: nn.Module,
        optimizer: torch.optim.Optimizer,
        rng: np.random.Generator,
        batch_size: int = 256,
        device: str | torch.device = "cpu",
        early_stopping: EarlyStopping | None = None,
        monitor: str = "val_loss",
        restore_best: bool = True,
        schedule: Schedule | None = None,
        grad_clip_norm: float | None = None,
        augment: ShiftFlip | None = None,
        progress: bool = False,
        on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
        distributed: DistributedContext | None = None,
        eval_batch_size: int = 8192,
        metrics: Mapping[str, Metric] | None = None,
        regularizer: Callable[[], Tensor] | None = None,
        autocast: str = "none",
    ) -> None:
        super().__init__(
            rng=rng,
            batch_size=batch_size,
            early_stopping=early_stopping,
            monitor=monitor,
            restore_best=restore_best,
            schedule=schedule,
            progress=progress,
            on_epoch_end=on_epoch_end,
            metrics=metrics,
        )
        self.eval_batch_size = check_positive_int("eval_batch_size", eval_batch_size)
        self.autocast = check_choice("autocast", autocast, AUTOCASTS)
        self.regularizer = regularizer
        self.augment = augment
        # Under DDP: every rank's torch generators after the last epoch, for checkpoints (rank 0
        # writes them all, each rank resumes its own dropout masks).
        self.rank_generator_states: list[dict[str, Tensor]] | None = None
        self.grad_clip_norm = (
            None if grad_clip_norm is None else check_positive_float("grad_clip_norm", grad_clip_norm)
        )
        self.distributed = distributed if distributed is not None and distributed.world_size > 1 else None
        if self.distributed is not None:
            local_batch_size(self.batch_size, self.distributed.world_size)  # raises if uneven
        self.device = distributed.device if distributed is not None else resolve_device(device)
        self.model = model.to(self.device)
        self.loss = loss.to(self.device)
        self.optimizer = optimizer
        self._params = [p for p in model.parameters() if p.requires_grad]
        self.dtype = self._params[0].dtype if self._params else torch.float32
        self._correct = _correct_fn(loss)
        self.train_model: nn.Module = model
        if self.distributed is not None:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DistributedDataParallel(model, device_ids=ids)  # broadcasts rank 0's weights

    def close(self) -> None:
        """Drop the DDP wrapper (a no-op in one process); the trainer cannot train afterwards.

        DDP's reducer holds a reference to the process group. Released here, the group can be
        destroyed while the interpreter runs (:func:`~mlpkit.train.distributed.cleanup_distributed`);
        left to the trainer's reference cycles, gloo is torn down at interpreter exit instead, and
        that sometimes aborts the process after a run that succeeded.
        """
        self.train_model = self.model
        self.distributed = None

    # -- state ---------------------------------------------------------------------------------

    @property
    def lr(self) -> float:
        """The learning rate of the first parameter group."""
        return float(self.optimizer.param_groups[0]["lr"])

    def _set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def snapshot(self) -> dict[str, Any]:
        """Copies of the model, optimizer and shuffling state (the last good state kept per epoch)."""
        return {
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "rng": copy.deepcopy(self.rng.bit_generator.state),
        }

    def restore_snapshot(self, snap: dict[str, Any]) -> None:
        """Put back what :meth:`snapshot` copied."""
        self.model.load_state_dict(snap["model"])
        self.optimizer.load_state_dict(snap["optimizer"])
        self.rng.bit_generator.state = snap["rng"]

    def weights(self) -> dict[str, Tensor]:
        """Detached copies of the model's state (what :attr:`best_state` holds)."""
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def load_weights(self, state: dict[str, Tensor]) -> None:
        self.model.load_state_dict(state)

    def _is_rank_zero(self) -> bool:
        return self.distributed is None or self.distributed.is_rank_zero

    def _prepare(self, x: Any, y: Any) -> tuple[Batch, Tensor]:
        x_t = self._inputs(x)
        if _rows(x_t) == 0:
            raise ValueError("cannot train on an empty array (0 samples)")
        return x_t, self._targets(y, _rows(x_t))

    # -- data ----------------------------------------------------------------------------------

    def _inputs(self, x: Any) -> Batch:
        """Inputs on the device: floats in the model's dtype, integer ids as int64 (embedding rows)."""
        if isinstance(x, dict):
            if not x:
                raise ValueError("x is an empty dict of inputs")
            named = {name: self._tensor(name, value) for name, value in x.items()}
            sizes = {name: t.shape[0] for name, t in named.items()}
            if len(set(sizes.values())) != 1:
                raise ValueError(f"the named inputs have different numbers of rows: {sizes}")
            return named
        t = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x)
        if t.ndim != 2:
            raise ValueError(f"x must be 2-D (samples, features), got shape {tuple(t.shape)}")
        return t.to(device=self.device, dtype=self.dtype)

    def _tensor(self, name: str, value: Any) -> Tensor | MappedRows:
        if isinstance(value, MappedRows):  # prepared already (fit's validation inputs)
            return value
        if is_memory_map(value):  # a file's rows, read batch by batch: memory does not grow with it
            if np.issubdtype(value.dtype, np.floating):
                return MappedRows(value, device=self.device, dtype=self.dtype)
            if np.issubdtype(value.dtype, np.integer):
                return MappedRows(value, device=self.device, dtype=torch.int64)
            raise ValueError(f"input {name!r} must hold numbers, got dtype {value.dtype}")
        if not isinstance(value, Tensor):
            value = np.asarray(value)
            if not value.flags.writeable:  # read-only memory: torch would warn, then share it
                value = value.copy()
        t = torch.as_tensor(value)
        if t.ndim == 0:
            raise ValueError(f"input {name!r} must have a batch axis, got a scalar")
        if t.is_floating_point():
            return t.to(device=self.device, dtype=self.dtype)
        if t.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8):
            return t.to(device=self.device, dtype=torch.int64)
        raise ValueError(f"input {name!r} must hold numbers, got dtype {t.dtype}")

    def _targets(self, y: Any, n: int) -> Tensor:
        t = torch.as_tensor(np.asarray(y) if not isinstance(y, Tensor) else y)
        if t.shape[0] != n:
            raise ValueError(f"y has {t.shape[0]} rows for {n} samples")
        dtype = torch.long if isinstance(self.loss, nn.CrossEntropyLoss) else self.dtype
        return t.to(device=self.device, dtype=dtype)

    # -- one epoch ---------------------------------------------------------------------------

    def train_epoch(self, x: Batch, y: Tensor) -> tuple[float, float | None]:
        """One pass over device tensors (x, y) in shuffled minibatches; return mean loss and accuracy.

        NaN detection, and its trade-off: the loss is summed on the device and checked once, at
        the end of the epoch, because checking each batch forces a device sync per batch. The
        price is that a diverging run wastes the rest of its epoch and the error names the epoch,
        not the batch. To make up for it, the caller keeps the state of the last good epoch
        (:meth:`snapshot`): :meth:`fit` rolls back to it before raising, so neither the restored
        weights nor any checkpoint ever holds NaN.
        """
        model, loss_fn, optimizer = self.train_model, self.loss, self.optimizer
        model.train()
        n = _rows(x)
        order = torch.from_numpy(_epoch_order(self.rng, x, n)).to(self.device)
        starts = range(0, n, self.batch_size)
        if self.augment is not None:
            if isinstance(x, dict):
                raise ConfigError("augment shifts and flips images: it needs one (N, H*W) input, not a dict")
            self.augment.check_features(x.shape[1])
            # Every batch's crops, drawn in batch order from the generator exactly as the NumPy
            # trainer draws them, and copied to the device once: a copy per batch would make each
            # batch wait for the device.
            drawn = [self.augment.draw(min(self.batch_size, n - start), self.rng) for start in starts]
            all_rows = torch.from_numpy(np.concatenate([r for r, _ in drawn])).to(self.device)  # (N, H)
            all_cols = torch.from_numpy(np.concatenate([c for _, c in drawn])).to(self.device)  # (N, W)
        ctx = self.distributed
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        epoch = self.epochs_done + 1
        seen = 0  # rows of this rank's shards so far: the bar shows rank 0's running numbers

        def running() -> tuple[float, float | None]:  # a device-to-host read: only when the bar redraws
            acc = correct.item() / max(seen, 1) if self._correct is not None else None
            return loss_sum.item() / max(seen, 1), acc

        for start in starts:
            idx = order[start : start + self.batch_size]  # (B,) global batch
            crops = None
            if self.augment is not None:  # every rank drew every crop: the generators stay in step
                crops = (all_rows[start : start + self.batch_size], all_cols[start : start + self.batch_size])
            weight = 1.0
            if ctx is not None:
                weight = shard_weight(len(idx), ctx.rank, ctx.world_size)
                idx = shard_batch(idx, ctx.rank, ctx.world_size)  # (B / W,)
                if crops is not None:
                    crops = (shard_batch(crops[0], ctx.rank, ctx.world_size),
                             shard_batch(crops[1], ctx.rank, ctx.world_size))
            xb, yb = _take(x, idx), y[idx]  # (B, D) or named (B, ...), and (B,)
            if crops is not None:
                xb = _shift_flip(self.augment, xb, *crops)  # type: ignore[arg-type]
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast == "bf16"):
                logits = model(xb)  # (B, C)
            logits = logits.to(self.dtype)  # the loss and its gradient's first step in full precision
            if len(idx):
                loss = loss_fn(logits, yb)
                loss_sum += loss.detach() * len(idx)
                seen += len(idx)
                if self._correct is not None:
                    correct += self._correct(logits.detach(), yb)
            else:  # an empty shard still joins DDP's all-reduce
                loss = logits.sum() * 0.0
            optimizer.zero_grad(set_to_none=True)
            objective = loss * weight if weight != 1.0 else loss
            if self.regularizer is not None:
                # Every rank adds it: DDP averages the gradients, so each rank's share is whole.
                objective = objective + self.regularizer()
            objective.backward()
            if self.grad_clip_norm is not None:
                nn.utils.clip_grad_norm_(self._params, self.grad_clip_norm)
            optimizer.step()
            self._progress.step(running)
        totals = all_reduce_sum(torch.stack([loss_sum, correct.to(torch.float64)]))  # sums over ranks
        # A last batch can turn the weights to NaN while its own loss is still finite: check both.
        nonfinite = torch.stack([~torch.isfinite(p).all() for p in self._params]).sum().to(torch.float64)
        totals = torch.cat([totals, nonfinite.reshape(1)])
        total_loss, total_correct, bad_params = totals.tolist()  # the one sync of the epoch
        if ctx is not None:
            self.rank_generator_states = gather_generator_states(ctx)
        if not math.isfinite(total_loss) or bad_params:
            what = (
                f"the loss is {total_loss / n}"
                if not math.isfinite(total_loss)
                else "a weight became NaN or inf"
            )
            raise TrainingDivergedError(
                f"training diverged: {what} in epoch {epoch} (lr={self.lr:g}); the trainer was rolled back "
                f"to the end of epoch {epoch - 1}; try a smaller learning rate or gradient clipping"
                # (the roll-back itself is done by fit, which kept the last good state)
            )
        return total_loss / n, (total_correct / n if self._correct is not None else None)

    def evaluate(self, x: Any, y: Any) -> tuple[float, float | None]:
        """Mean loss and accuracy (None for regression) in evaluation mode, summed over ranks.

        Parameters
        ----------
        x : array or Tensor of shape (N, D), or a dict of named arrays with N rows each
        y : array or Tensor of shape (N,) or (N, C)
        """
        loss, accuracy, _ = self._score(x, y, keep_logits=False)
        return loss, accuracy

    def evaluate_with_scores(self, x: Any, y: Any) -> tuple[float, float | None, np.ndarray]:
        """:meth:`evaluate` and :meth:`predict_scores` from one forward pass over ``x``.

        The loss and accuracy are summed batch by batch exactly as :meth:`evaluate` sums them (the
        same numbers, bit for bit); the logits of the batches are kept and, under DDP, gathered in
        rank order, so every rank computes the same metrics.

        Parameters
        ----------
        x : array or Tensor of shape (N, D), or a dict of named arrays with N rows each
        y : array or Tensor of shape (N,) or (N, C)

        Returns
        -------
        loss : float
        accuracy : float or None
        logits : ndarray of shape (N, C), or (N,) for a model with one logit per row
        """
        loss, accuracy, logits = self._score(x, y, keep_logits=True)
        return loss, accuracy, cast(np.ndarray, logits)  # always an array with keep_logits=True

    @torch.no_grad()
    def _score(self, x: Any, y: Any, *, keep_logits: bool) -> tuple[float, float | None, np.ndarray | None]:
        """One evaluation-mode pass: mean loss, accuracy, and every row's logits when ``keep_logits``.

        Without ``keep_logits`` only two sums cross the ranks; with it the logits of every row do too
        (the metrics need them all), so :meth:`evaluate` does not pay for a gather it has no use for.
        """
        x_t = self._inputs(x)
        n = _rows(x_t)
        y_t = self._targets(y, n)
        if n == 0:
            raise ValueError("cannot evaluate on an empty array (0 samples)")
        ctx = self.distributed
        lo, hi = (0, n) if ctx is None else shard_bounds(n, ctx.rank, ctx.world_size)  # one piece a rank
        was_training = self.model.training
        self.model.eval()
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        parts: list[Tensor] = []
        try:
            for start in range(lo, hi, self.eval_batch_size):
                piece = slice(start, min(start + self.eval_batch_size, hi))
                xb, yb = _take(x_t, piece), y_t[piece]
                logits = self.model(xb)  # (B, C) or (B,)
                loss_sum += self.loss(logits, yb) * len(yb)
                if self._correct is not None:
                    correct += self._correct(logits, yb)
                if keep_logits:
                    parts.append(logits)
            if keep_logits and not parts:  # a rank with no rows (N < world size): a (0, ...) piece
                parts.append(self.model(_take(x_t, slice(0, 0))))
        finally:
            self.model.train(was_training)
        totals = all_reduce_sum(torch.stack([loss_sum, correct.to(torch.float64)])).tolist()
        logits_all = None
        if keep_logits:
            mine = torch.cat(parts)  # (N / W, C) or (N / W,)
            logits_all = (gather_rows(mine, n, ctx) if ctx is not None else mine).cpu().numpy()  # (N, ...)
        return totals[0] / n, (totals[1] / n if self._correct is not None else None), logits_all

    @torch.no_grad()
    def predict_scores(self, x: Any) -> np.ndarray:
        """Logits of every row of ``x``, in order, on every rank (what whole-set metrics such as AUC read).

        Under DDP each rank scores one contiguous piece and the pieces are gathered, so every rank
        computes the same metric from the same numbers and takes the same early-stopping decision.
        """
        ctx = self.distributed
        if ctx is None:
            return self.predict_logits(x)
        x_t = self._inputs(x)
        n = _rows(x_t)
        mine = self._logits(x_t, *shard_bounds(n, ctx.rank, ctx.world_size))
        return gather_rows(mine, n, ctx).cpu().numpy()

    @torch.no_grad()
    def predict_logits(self, x: Any) -> np.ndarray:
        """Logits of ``x`` in evaluation mode (dropout off), in batches; this rank only.

        Parameters
        ----------
        x : array or Tensor of shape (N, D), or a dict of named arrays with N rows each

        Returns
        -------
        ndarray of shape (N, C), or (N,) for a model with one logit per row
        """
        x_t = self._inputs(x)
        if _rows(x_t) == 0:
            raise ValueError("cannot predict on an empty array (0 samples)")
        return self._logits(x_t, 0, _rows(x_t)).cpu().numpy()

    @torch.no_grad()
    def _logits(self, x_t: Batch, lo: int, hi: int) -> Tensor:
        """Logits of rows ``lo:hi`` of device inputs in evaluation mode, in batches: (hi - lo, ...),
        a (0, ...) tensor when ``lo == hi`` (a rank with no rows)."""
        was_training = self.model.training
        self.model.eval()
        try:
            parts = [
                self.model(_take(x_t, slice(i, min(i + self.eval_batch_size, hi))))
                for i in range(lo, hi, self.eval_batch_size)
            ] or [self.model(_take(x_t, slice(0, 0)))]
        finally:
            self.model.train(was_training)
        return torch.cat(parts)
