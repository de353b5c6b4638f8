"""Learning-rate schedules as small framework-free state machines, stepped once per epoch.

:class:`~mlpkit.train.torch_trainer.TorchTrainer` reads :attr:`Schedule.lr` before an epoch and
calls :meth:`Schedule.step` with the epoch's monitored score after it, and so does
:class:`~mlpkit.train.numpy_trainer.NumpyTrainer` (both through :class:`~mlpkit.train.loop.EpochTrainer`).
Each rule reproduces the ``torch.optim.lr_scheduler`` class of the same meaning (checked against
it in the tests), but holds only floats, so either trainer can use it and its state is plain JSON
for checkpoints.

========== ===================================================== ==========================
name       lr after epoch t (t counts from 1)                    torch equivalent
========== ===================================================== ==========================
constant   lr0                                                   (none)
step       lr0 · gamma^floor(t / step_size)                      StepLR
exponential lr0 · gamma^t                                        ExponentialLR
cosine     min_lr + (lr0 − min_lr)(1 + cos(π t / T)) / 2         CosineAnnealingLR (closed form)
plateau    × factor after ``patience`` epochs without improvement ReduceLROnPlateau
========== ===================================================== ==========================
"""

from __future__ import annotations

import math
from typing import Any

from mlpkit._checks import (
    check_choice,
    check_nonnegative_float,
    check_nonnegative_int,
    check_positive_float,
    check_positive_int,
)
from mlpkit.errors import ConfigError

__all__ = [
    "SCHEDULES",
    "ConstantLR",
    "CosineLR",
    "ExponentialLR",
    "ReduceLROnPlateau",
    "Schedule",
    "StepLR",
    "make_schedule",
]


class Schedule:
    """Base: the current ``lr`` and the number of epochs stepped.

    Parameters
    ----------
    lr : float
        The initial learning rate lr0.
    """

    name = "constant"

    def __init__(self, lr: float) -> None:
        self.base_lr = check_positive_float("lr", lr)
        self.lr = self.base_lr
        self.epoch = 0

    def step(self, score: float | None = None) -> float:
        """Advance one epoch (``score`` is the monitored metric; plateau uses it); return the new lr."""
        self.epoch += 1
        self.lr = self._lr_at(self.epoch)
        return self.lr

    def _lr_at(self, epoch: int) -> float:
        return self.base_lr

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready state; :meth:`load_state_dict` restores it."""
        return {"name": self.name, "lr": self.lr, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`; the name must match."""
        if state.get("name") != self.name:
            raise ValueError(f"schedule state is for {state.get('name')!r}, this schedule is {self.name!r}")
        self.lr, self.epoch = float(state["lr"]), int(state["epoch"])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(lr={self.lr:g}, epoch={self.epoch})"


class ConstantLR(Schedule):
    """The same lr every epoch.

    Examples
    --------
    >>> ConstantLR(0.1).step()
    0.1
    """


class StepLR(Schedule):
    """Multiply the lr by ``gamma`` every ``step_size`` epochs (torch ``StepLR``).

    Examples
    --------
    >>> s = StepLR(1.0, step_size=2, gamma=0.5)
    >>> [s.lr] + [s.step() for _ in range(4)]
    [1.0, 1.0, 0.5, 0.5, 0.25]
    """

    name = "step"

    def __init__(self, lr: float, *, step_size: int = 10, gamma: float = 0.1) -> None:
        super().__init__(lr)
        self.step_size = check_positive_int("step_size", step_size)
        self.gamma = check_positive_float("gamma", gamma)

    def _lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class ExponentialLR(Schedule):
    """Multiply the lr by ``gamma`` every epoch (torch ``ExponentialLR``)."""

    name = "exponential"

    def __init__(self, lr: float, *, gamma: float = 0.95) -> None:
        super().__init__(lr)
        self.gamma = check_positive_float("gamma", gamma)

    def _lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma**epoch


class CosineLR(Schedule):
    """Cosine annealing from lr0 to ``min_lr`` over ``epochs`` epochs, then held at ``min_lr``.

    Loshchilov & Hutter, "SGDR", ICLR 2017, eq. 5 without restarts; torch ``CosineAnnealingLR``
    in its closed form (torch's recursive form agrees to rounding).
    """

    name = "cosine"

    def __init__(self, lr: float, *, epochs: int, min_lr: float = 0.0) -> None:
        super().__init__(lr)
        self.epochs = check_positive_int("epochs", epochs)
        self.min_lr = check_nonnegative_float("min_lr", min_lr)

    def _lr_at(self, epoch: int) -> float:
        t = min(epoch, self.epochs)
        return self.min_lr + (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * t / self.epochs)) / 2


class ReduceLROnPlateau(Schedule):
    """Multiply the lr by ``factor`` when the score has not improved for more than ``patience`` epochs.

    The rule of torch ``ReduceLROnPlateau``: an improvement beats the best by a relative
    ``threshold`` (``threshold_mode="rel"``) or an absolute one (``"abs"``); after a reduction,
    ``cooldown`` epochs pass before bad epochs count again; the lr never goes below ``min_lr``,
    and a reduction smaller than ``eps`` is skipped.

    Parameters
    ----------
    lr : float
    mode : {"min", "max"}
        ``"min"`` for losses, ``"max"`` for accuracies.
    factor : float in (0, 1)
    patience : int
        Bad epochs tolerated; the lr drops on the ``patience + 1``-th.
    threshold : float
    threshold_mode : {"rel", "abs"}
    cooldown : int
    min_lr : float
    eps : float

    Examples
    --------
    >>> s = ReduceLROnPlateau(1.0, mode="min", factor=0.5, patience=1)
    >>> [s.step(v) for v in (1.0, 1.0, 1.0, 0.5)]
    [1.0, 1.0, 0.5, 0.5]
    """

    name = "plateau"

    def __init__(
        self,
        lr: float,
        *,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float = 0.0,
        eps: float = 1e-8,
    ) -> None:
        super().__init__(lr)
        self.mode = check_choice("mode", mode, ("min", "max"))
        self.factor = check_positive_float("factor", factor)
        if self.factor >= 1:
            raise ValueError(f"factor must be a float in (0, 1), got {factor!r}")
        self.patience = check_nonnegative_int("patience", patience)
        self.threshold = check_nonnegative_float("threshold", threshold)
        self.threshold_mode = check_choice("threshold_mode", threshold_mode, ("rel", "abs"))
        self.cooldown = check_nonnegative_int("cooldown", cooldown)
        self.min_lr = check_nonnegative_float("min_lr", min_lr)
        self.eps = check_nonnegative_float("eps", eps)
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0

    def _is_better(self, score: float) -> bool:
        if self.threshold_mode == "rel":
            scale = 1 - self.threshold if self.mode == "min" else 1 + self.threshold
            return score < self.best * scale if self.mode == "min" else score > self.best * scale
        if self.mode == "min":
            return score < self.best - self.threshold
        return score > self.best + self.threshold

    def step(self, score: float | None = None) -> float:
        if score is None:
            raise ValueError("the plateau schedule needs the epoch's monitored score, got None")
        self.epoch += 1
        if self._is_better(float(score)):
            self.best, self.num_bad_epochs = float(score), 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            new_lr = max(self.lr * self.factor, self.min_lr)
            if self.lr - new_lr > self.eps:
                self.lr = new_lr
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        return self.lr

    def state_dict(self) -> dict[str, Any]:
        # JSON has no infinity: an unset best is stored as None.
        best = self.best if math.isfinite(self.best) else None
        return super().state_dict() | {
            "best": best,
            "num_bad_epochs": self.num_bad_epochs,
            "cooldown_counter": self.cooldown_counter,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        unset = math.inf if self.mode == "min" else -math.inf
        self.best = unset if state["best"] is None else float(state["best"])
        self.num_bad_epochs = int(state["num_bad_epochs"])
        self.cooldown_counter = int(state["cooldown_counter"])


SCHEDULES: dict[str, type[Schedule]] = {
    "constant": ConstantLR,
    "step": StepLR,
    "exponential": ExponentialLR,
    "cosine": CosineLR,
    "plateau": ReduceLROnPlateau,
}


def make_schedule(name: str, lr: float, **kwargs: Any) -> Schedule:
    """Build a schedule by name with its keyword arguments.

    Raises
    ------
    ConfigError
        For an unknown name (listing the valid ones) or an argument the schedule does not take.

    Examples
    --------
    >>> make_schedule("cosine", 0.1, epochs=10)
    CosineLR(lr=0.1, epoch=0)
    """
    if name not in SCHEDULES:
        raise ConfigError(f"schedule must be one of {sorted(SCHEDULES)}, got {name!r}")
    try:
        return SCHEDULES[name](lr, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"schedule {name!r}: {exc}") from exc
