"""The run configuration: frozen dataclasses, read from TOML, written to a run's ``config.json``.

A configuration has five sections, each a frozen dataclass whose defaults are the classic recipe
(784-256-10, ReLU, weights N(0, 0.01), SGD lr 0.1, batch 256, 10 epochs)::

    [model]           name, then for an MLP hidden_features, activation, dropout, init, init_std,
                      for a ViT patch_size, dim, depth, heads, mlp_dim, dim_head, dropout, emb_dropout, pool,
                      pos_embedding, patch_norm
    [optim]           optimizer, lr, momentum, nesterov, weight_decay, batch_size, epochs,
                      schedule, min_lr, gamma, step_size, factor, schedule_patience, grad_clip_norm
    [early_stopping]  patience, min_delta, monitor, restore_best
    [data]            data_dir, val_size, download, verify, augment, max_shift, flip_p, or for an image
                      folder images, image_size, color, strict
    [run]             name, seed, out, dtype, engine, device, log, histogram_every

Files are read by :func:`load_config`: ``.toml`` with the standard library's :mod:`tomllib`, and
``.json`` as written by a run, so ``mlpkit train --config RUN_DIR/config.json`` repeats a run.
Unknown sections and keys are errors that list the valid ones, because a typo that silently
falls back to a default is the worst kind of configuration bug. Every invalid value raises
:class:`~mlpkit.errors.ConfigError` naming the file (or the command line), the section, the key
and the value. Command-line options are applied on top with :meth:`RunConfig.with_overrides`,
which goes through the same checks.

TOML has no null: leave a key out to get its ``None`` default (``data_dir``, ``out``, ``name``,
``patience``, ``gamma``, ``grad_clip_norm``); ``patience = 0`` also turns early stopping off.

A key that only one choice uses (``momentum`` for SGD, ``min_lr`` for the cosine and plateau
schedules, ``max_shift`` for the ``shift_flip`` augmentation, ...) is an error when set with
another choice, and so is a setting the chosen engine does not have: ``grad_clip_norm`` and a
GPU need ``engine = "torch"``. Whether a GPU is really
there is checked when a run starts, by the torch engine: reading a config never imports torch.

Examples
--------
>>> config = RunConfig().with_overrides({"model": {"hidden_features": [512, 256]}, "optim": {"lr": 0.05}})
>>> config.model.hidden_features, config.optim.lr, config.name
((512, 256), 0.05, 'mlp512-256-sgd')
>>> RunConfig.from_dict(config.to_dict()) == config
True
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from mlpkit._checks import (
    check_choice,
    check_nonnegative_float,
    check_nonnegative_int,
    check_positive_float,
    check_positive_int,
    check_probability,
    config_section,
    set_frozen,
)
from mlpkit.errors import ConfigError
from mlpkit.spec import MLPSpec

__all__ = [
    "AUGMENTS",
    "AUTOCASTS",
    "CONFIGS",
    "CTR_MODEL_NAMES",
    "CTR_MONITORS",
    "CTR_OPTIM_DEFAULTS",
    "DEVICES",
    "DTYPES",
    "ENGINES",
    "LOGS",
    "MODEL_NAMES",
    "MONITORS",
    "OPTIMIZERS",
    "SCHEDULES",
    "TABLE_TASKS",
    "TASKS",
    "CTRConfig",
    "CTRDataConfig",
    "CTREarlyStoppingConfig",
    "CTRModelConfig",
    "DataConfig",
    "EarlyStoppingConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "RunSettings",
    "TableConfig",
    "TableDataConfig",
    "TableEarlyStoppingConfig",
    "TableModelConfig",
    "load_config",
    "load_config_with_section",
    "unused_keys",
]

OPTIMIZERS = ("sgd", "adam", "adamw")
"""Optimizer names; each engine maps them to its implementation (``mlpkit.engine.OPTIMIZERS``)."""
ENGINES = ("numpy", "torch")
"""Training engines: the NumPy engine (CPU only) and PyTorch (any device, multi-process with torchrun)."""
DEVICES = ("auto", "cpu", "cuda")
"""Device names, plus ``"cuda:N"``; ``"auto"`` takes a GPU when there is one, else the CPU."""
SCHEDULES = ("constant", "step", "exponential", "cosine", "plateau")
"""Learning-rate schedules (``mlpkit.train.schedules.SCHEDULES``), stepped once per epoch."""
AUGMENTS = ("none", "shift_flip")
IMAGE_COLORS = ("auto", "grayscale", "rgb")
"""Training-time augmentations (``shift_flip``: :class:`mlpkit.data.augment.ShiftFlip`)."""
DTYPES = ("float32", "float64")
AUTOCASTS = ("none", "bf16")
"""Mixed precision of the torch engine's training passes (:data:`mlpkit.train.torch_trainer.AUTOCASTS`)."""
LOGS = ("tensorboard",)
"""Per-epoch logs a run can write besides ``metrics.jsonl`` and ``metrics.csv`` (``[run] log``)."""
MONITORS = ("val_loss", "val_accuracy")
"""Scores that can pick the best epoch; the test set is never one of them."""
CTR_MONITORS = ("val_auc", "val_logloss", "val_loss")
"""Scores that can pick the best epoch of a CTR run (``val_logloss`` is ``val_loss`` without the penalty)."""
CTR_MODEL_NAMES = (
    "lr", "fm", "ffm", "dnn", "ipnn", "nfm", "deepfm", "dcn", "dcnv2", "dcnv2-stacked", "dcnmix",
    "dcnmix-stacked", "transformer-deep",
)
"""The keys of :data:`mlpkit.models.ctr.CTR_MODELS`, known here without importing torch (a test keeps
the two equal)."""
TASKS = ("fashion_mnist", "ctr", "table")
"""What a run trains on: each task has its config class and its plug-in in :mod:`mlpkit.tasks`."""


def _check_bool(name: str, value: object) -> bool:
    # Not bool(value): TOML's "false" string or a 0 would be read as a silent choice.
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


def _check_optional_str(name: str, value: object) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ValueError(f"{name} must be a non-empty string or absent, got {value!r}")
    return value


DependentKeys = Mapping[str, tuple[str, tuple[str, ...]]]
"""A section's keys that apply under some choices of another of its keys only: ``key -> (owner,
users)``, e.g. ``"min_lr" -> ("schedule", ("cosine", "plateau"))``."""


def _check_dependent_keys(section: Any) -> None:
    """Reject a key of ``section.dependent_keys`` set away from its default when its owner's choice
    does not use it: a setting that does not apply is an error, never silently ignored."""
    defaults = {f.name: f.default for f in fields(section)}
    for key in unused_keys(section):
        owner, users = section.dependent_keys[key]
        value, chosen = getattr(section, key), getattr(section, owner)
        value = tuple(value) if isinstance(value, list) else value  # JSON and TOML give lists
        if value != defaults[key]:
            used_by = " or ".join(repr(name) for name in users)
            what = "model" if owner == "name" else owner  # "applies to model 'vit' only"
            raise ValueError(
                f"{key} applies to {what} {used_by} only, got {key}={value!r} with {what} {chosen!r}"
            )


def unused_keys(section: Any) -> list[str]:
    """The keys of a config section that its choices leave unused (and so at their defaults): the
    ViT's keys of an MLP's ``[model]``, ``gamma`` of a cosine schedule. A written config leaves them
    out (:func:`mlpkit.tune.to_toml`); ``config.json`` records every key.

    Examples
    --------
    >>> unused_keys(OptimConfig(schedule="cosine"))
    ['gamma', 'step_size', 'factor', 'schedule_patience']
    """
    dependent: DependentKeys = getattr(section, "dependent_keys", {})
    return [key for key, (owner, users) in dependent.items() if getattr(section, owner) not in users]


@dataclass(frozen=True)
class ModelConfig:
    """The network between the pixels and the class logits: an MLP (the default) or a ViT.

    ``name = "mlp"`` is the :class:`mlpkit.spec.MLPSpec` the NumPy engine and torch both build;
    ``name = "vit"`` is :class:`mlpkit.models.vit.ViT` (torch engine only), sized by the images.
    A key of the other model set away from its default is an error.

    Parameters
    ----------
    name : {"mlp", "vit"}
        The model.
    hidden_features : tuple of int
        Width of each hidden layer; ``()`` is softmax regression (MLP).
    activation : str or tuple of str
        One activation for every hidden layer, or one per layer (MLP).
    dropout : float or tuple of float
        Dropout probability after each hidden activation, one for all or one per layer (MLP);
        the ViT's dropout inside its blocks (one float).
    init : str
        Weight initializer (``"normal"`` draws N(0, ``init_std``²)) (MLP).
    init_std : float
        Standard deviation of ``init="normal"`` (MLP).
    patch_size : int
        P: the image is cut into P x P patches; each image side must be a multiple of it (ViT).
    dim : int
        Token width (ViT).
    depth : int
        Encoder blocks (ViT).
    heads : int
        Attention heads (ViT).
    mlp_dim : int
        Hidden width of each block's MLP (ViT).
    dim_head : int or None
        Width of each attention head; None (leave it out): ``dim / heads`` (ViT).
    emb_dropout : float
        Dropout on the tokens after the position embedding (ViT).
    pool : {"cls", "mean"}
        What the ViT's head reads: the class token, or the mean of the patch tokens.
    pos_embedding : {"learned", "sincos"}
        The ViT's position embedding: learned, or fixed 2-D sine-cosine codes.
    patch_norm : bool
        LayerNorm on each patch before the ViT's patch embedding and on the token after it.
    """

    name: str = "mlp"
    hidden_features: tuple[int, ...] = (256,)
    activation: str | tuple[str, ...] = "relu"
    dropout: float | tuple[float, ...] = 0.0
    init: str = "normal"
    init_std: float = 0.01
    patch_size: int = 7
    dim: int = 64
    depth: int = 6
    heads: int = 4
    mlp_dim: int = 128
    dim_head: int | None = None
    emb_dropout: float = 0.0
    pool: str = "cls"
    pos_embedding: str = "learned"
    patch_norm: bool = False

    dependent_keys: ClassVar[DependentKeys] = {
        **{key: ("name", ("mlp",)) for key in ("hidden_features", "activation", "init", "init_std")},
        **{key: ("name", ("vit",)) for key in ("patch_size", "dim", "depth", "heads", "mlp_dim", "dim_head",
                                                "emb_dropout", "pool", "pos_embedding", "patch_norm")},
    }

    def __post_init__(self) -> None:
        with config_section("model"):
            check_choice("name", self.name, MODEL_NAMES)
            if isinstance(self.hidden_features, str) or not isinstance(self.hidden_features, Sequence):
                raise ValueError(
                    f"hidden_features must be a list of positive ints, got {self.hidden_features!r}"
                )
            _check_dependent_keys(self)
            if self.name == "vit":
                self._check_vit()
                return
            # MLPSpec owns the rules (names, per-layer lengths, ranges); sizes 1 are placeholders.
            spec = self.to_spec(in_features=1, out_features=1)
        set_frozen(self, "hidden_features", spec.hidden_features)
        set_frozen(self, "activation", spec.activation)
        set_frozen(self, "dropout", spec.dropout if isinstance(spec.dropout, tuple) else float(spec.dropout))
        set_frozen(self, "init_std", float(spec.init_std))

    def _check_vit(self) -> None:
        """The ViT's settings that do not depend on the images (the patch size against the image
        size is checked when the data is loaded)."""
        set_frozen(self, "hidden_features", tuple(self.hidden_features))
        if not isinstance(self.dropout, int | float) or isinstance(self.dropout, bool):
            raise ValueError(f"dropout must be one float for model 'vit', got {self.dropout!r}")
        set_frozen(self, "dropout", check_probability("dropout", self.dropout))
        set_frozen(self, "emb_dropout", check_probability("emb_dropout", self.emb_dropout))
        for key in ("patch_size", "dim", "depth", "heads", "mlp_dim"):
            check_positive_int(key, getattr(self, key))
        check_choice("pool", self.pool, VIT_POOLS)
        check_choice("pos_embedding", self.pos_embedding, VIT_POSITION_EMBEDDINGS)
        if self.pos_embedding == "sincos" and self.dim % 4:
            raise ValueError(f"pos_embedding 'sincos' needs dim divisible by 4, got dim={self.dim}")
        if not isinstance(self.patch_norm, bool):
            raise ValueError(f"patch_norm must be true or false, got {self.patch_norm!r}")
        if self.dim_head is not None:
            check_positive_int("dim_head", self.dim_head)
        elif self.dim % self.heads:
            raise ValueError(
                f"dim must be divisible by heads when dim_head is not given, got dim={self.dim} "
                f"with heads={self.heads}"
            )

    def to_spec(self, in_features: int, out_features: int) -> MLPSpec:
        """The :class:`~mlpkit.spec.MLPSpec` for inputs of width D and C classes (``name = "mlp"``)."""
        if self.name != "mlp":
            raise ConfigError(f"[model] name {self.name!r} is not an MLP: it has no MLPSpec")
        return MLPSpec(
            in_features,
            tuple(self.hidden_features),
            out_features,
            activation=self.activation,
            dropout=self.dropout,
            init=self.init,
            init_std=self.init_std,
        )

    def vit_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :class:`mlpkit.models.vit.ViT` besides the image's and the classes'."""
        return {key: getattr(self, key) for key in ("patch_size", "dim", "depth", "heads", "mlp_dim",
                                                     "dim_head", "dropout", "emb_dropout", "pool",
                                                     "pos_embedding", "patch_norm")}


MODEL_NAMES = ("mlp", "vit")
"""The image task's models: ``mlp`` (both engines) and ``vit`` (torch engine)."""
VIT_POOLS = ("cls", "mean")
"""The ViT's pooling choices (:data:`mlpkit.models.vit.POOLS`, known here without importing torch)."""
VIT_POSITION_EMBEDDINGS = ("learned", "sincos")
"""The ViT's position embeddings (:data:`mlpkit.models.vit.POSITION_EMBEDDINGS`)."""


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer, learning-rate schedule and gradient clipping of the minibatch loop.

    Parameters
    ----------
    optimizer : {"sgd", "adam", "adamw"}
    lr : float
        Learning rate (the initial one when a schedule changes it).
    momentum : float in [0, 1)
        SGD momentum (SGD only).
    nesterov : bool
        Nesterov momentum (SGD with momentum > 0 only).
    weight_decay : float
        L2 penalty for SGD and Adam, decoupled decay for AdamW; applied to weights, not biases.
    batch_size : int
        Minibatch size B (the global batch of a multi-process run).
    epochs : int
        Maximum number of passes over the training set.
    schedule : {"constant", "step", "exponential", "cosine", "plateau"}
        Learning rate per epoch (see :mod:`mlpkit.train.schedules`): ``step`` multiplies it by
        ``gamma`` every ``step_size`` epochs, ``exponential`` by ``gamma`` every epoch, ``cosine``
        anneals it to ``min_lr`` over ``epochs`` epochs, ``plateau`` multiplies it by ``factor``
        after ``schedule_patience`` epochs without improvement of ``[early_stopping] monitor``.
    min_lr : float
        Floor of ``cosine`` and ``plateau``; smaller than ``lr``.
    gamma : float or None
        Decay factor of ``step`` (default 0.1) and ``exponential`` (default 0.95).
    step_size : int
        Epochs between two decays of ``step``.
    factor : float in (0, 1)
        Decay factor of ``plateau``.
    schedule_patience : int
        Epochs without improvement that ``plateau`` tolerates before it decays the rate.
    grad_clip_norm : float or None
        Clip the global L2 norm of the gradients to this value before each step (torch engine).
    """

    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    batch_size: int = 256
    epochs: int = 10
    schedule: str = "constant"
    min_lr: float = 0.0
    gamma: float | None = None
    step_size: int = 10
    factor: float = 0.1
    schedule_patience: int = 10
    grad_clip_norm: float | None = None

    dependent_keys: ClassVar[DependentKeys] = {
        "min_lr": ("schedule", ("cosine", "plateau")),
        "gamma": ("schedule", ("step", "exponential")),
        "step_size": ("schedule", ("step",)),
        "factor": ("schedule", ("plateau",)),
        "schedule_patience": ("schedule", ("plateau",)),
    }

    def __post_init__(self) -> None:
        with config_section("optim"):
            check_choice("optimizer", self.optimizer, OPTIMIZERS)
            set_frozen(self, "lr", check_positive_float("lr", self.lr))
            set_frozen(self, "momentum", check_probability("momentum", self.momentum))
            _check_bool("nesterov", self.nesterov)
            set_frozen(self, "weight_decay", check_nonnegative_float("weight_decay", self.weight_decay))
            check_positive_int("batch_size", self.batch_size)
            check_positive_int("epochs", self.epochs)
            if self.optimizer != "sgd" and (self.momentum or self.nesterov):
                raise ValueError(
                    f"momentum and nesterov apply to optimizer 'sgd' only, got momentum={self.momentum:g}, "
                    f"nesterov={str(self.nesterov).lower()} with optimizer {self.optimizer!r}"
                )
            if self.nesterov and self.momentum == 0:
                raise ValueError("nesterov needs momentum > 0, got momentum=0")
            self._check_schedule()
            if self.grad_clip_norm is not None:
                clip = check_positive_float("grad_clip_norm", self.grad_clip_norm)
                set_frozen(self, "grad_clip_norm", clip)

    def _check_schedule(self) -> None:
        check_choice("schedule", self.schedule, SCHEDULES)
        set_frozen(self, "min_lr", check_nonnegative_float("min_lr", self.min_lr))
        if self.gamma is not None:
            set_frozen(self, "gamma", check_positive_float("gamma", self.gamma))
        check_positive_int("step_size", self.step_size)
        factor = check_positive_float("factor", self.factor)
        if factor >= 1:
            raise ValueError(f"factor must be a float in (0, 1), got {self.factor!r}")
        set_frozen(self, "factor", factor)
        check_nonnegative_int("schedule_patience", self.schedule_patience)
        _check_dependent_keys(self)
        if "min_lr" not in unused_keys(self) and self.min_lr >= self.lr:
            raise ValueError(
                f"min_lr must be smaller than lr, got min_lr={self.min_lr:g} with lr={self.lr:g}"
            )

    def optimizer_kwargs(self) -> dict[str, float | bool]:
        """Keyword arguments of the optimizer's constructor (``make_optimizer(name, params, **kw)``)."""
        kwargs: dict[str, float | bool] = {"lr": self.lr, "weight_decay": self.weight_decay}
        if self.optimizer == "sgd":
            kwargs |= {"momentum": self.momentum, "nesterov": self.nesterov}
        return kwargs

    def schedule_kwargs(self, mode: str = "min") -> dict[str, Any]:
        """Keyword arguments of ``make_schedule(self.schedule, self.lr, **kw)``.

        Parameters
        ----------
        mode : {"min", "max"}
            Whether the monitored score improves downwards (a loss) or upwards (an accuracy);
            only ``plateau`` uses it.

        Examples
        --------
        >>> OptimConfig(schedule="cosine", epochs=20, min_lr=1e-4).schedule_kwargs()
        {'epochs': 20, 'min_lr': 0.0001}
        """
        gamma = {} if self.gamma is None else {"gamma": self.gamma}
        return {
            "constant": {},
            "step": {"step_size": self.step_size, **gamma},
            "exponential": gamma,
            "cosine": {"epochs": self.epochs, "min_lr": self.min_lr},
            "plateau": {
                "mode": mode,
                "factor": self.factor,
                "patience": self.schedule_patience,
                "min_lr": self.min_lr,
            },
        }[self.schedule]


@dataclass(frozen=True)
class EarlyStoppingConfig:
    """Which validation score picks the best epoch, and when to stop.

    Parameters
    ----------
    patience : int or None
        Stop after this many epochs without improvement; ``None`` (or 0) trains every epoch.
    min_delta : float
        The least change of the monitored score that counts as an improvement.
    monitor : {"val_loss", "val_accuracy"}
        The score that picks the best epoch, whether or not early stopping is on.
    restore_best : bool
        Save the best epoch's weights (True) or the last epoch's (False).
    """

    patience: int | None = None
    min_delta: float = 0.0
    monitor: str = "val_loss"
    restore_best: bool = True

    monitors: ClassVar[tuple[str, ...]] = MONITORS

    def __post_init__(self) -> None:
        with config_section("early_stopping"):
            if self.patience is not None:
                check_nonnegative_int("patience", self.patience)
                if self.patience == 0:
                    set_frozen(self, "patience", None)
            set_frozen(self, "min_delta", check_nonnegative_float("min_delta", self.min_delta))
            check_choice("monitor", self.monitor, self.monitors)
            _check_bool("restore_best", self.restore_best)


@dataclass(frozen=True)
class DataConfig:
    """Where the Fashion-MNIST files are and how the validation set is carved out.

    Parameters
    ----------
    data_dir : str or None
        Directory holding the four IDX files; ``None`` searches ``$MLPKIT_DATA``, the user cache
        and ``/usr/share/datasets/fashion-mnist`` (see :func:`mlpkit.data.locate_fashion_mnist`).
    val_size : int
        Training images held out for validation, drawn by the seeded generator; 0 trains on all
        of them and picks the best epoch by training loss. The test set is never used to select.
    download : bool
        Download the official files once when no copy is found.
    verify : bool
        Check the files' SHA-256 against the official ones; turn off only for other data in the
        same format (e.g. small generated files).
    augment : {"none", "shift_flip"}
        Training-time augmentation of each minibatch (never of validation or test images):
        ``shift_flip`` shifts each image by up to ``max_shift`` pixels and mirrors it with
        probability ``flip_p`` (:class:`mlpkit.data.augment.ShiftFlip`).
    max_shift : int
        Largest shift in pixels along each axis (``shift_flip``).
    flip_p : float in [0, 1]
        Probability of a horizontal flip (``shift_flip``).
    images : str or None
        A folder of the user's images instead of Fashion-MNIST: one subfolder per class, or
        ``train``, ``test`` (and optionally ``val``/``valid``) subfolders of that layout
        (:mod:`mlpkit.data.image_folder`). One folder is split 70/15/15 by the seed, stratified;
        without a ``val`` subfolder, 15% of ``train`` is held out for validation.
    image_size : int
        S: every image is resized to S x S (image folders).
    color : {"auto", "grayscale", "rgb"}
        The images' channels (image folders); ``auto`` is RGB when any image has color.
    strict : bool
        Refuse a folder holding a file that is not a readable image, instead of skipping it with a
        warning naming it (image folders).
    """

    data_dir: str | None = None
    val_size: int = 5000
    download: bool = True
    verify: bool = True
    augment: str = "none"
    max_shift: int = 2
    flip_p: float = 0.5
    images: str | None = None
    image_size: int = 28
    color: str = "auto"
    strict: bool = False

    dependent_keys: ClassVar[DependentKeys] = {
        "max_shift": ("augment", ("shift_flip",)),
        "flip_p": ("augment", ("shift_flip",)),
    }

    def __post_init__(self) -> None:
        with config_section("data"):
            _check_optional_str("data_dir", self.data_dir)
            check_nonnegative_int("val_size", self.val_size)
            _check_bool("download", self.download)
            _check_bool("verify", self.verify)
            check_choice("augment", self.augment, AUGMENTS)
            check_nonnegative_int("max_shift", self.max_shift)
            set_frozen(self, "flip_p", check_probability("flip_p", self.flip_p, inclusive_high=True))
            _check_dependent_keys(self)
            defaults = {f.name: f.default for f in fields(self)}
            _check_optional_str("images", self.images)
            check_positive_int("image_size", self.image_size)
            check_choice("color", self.color, IMAGE_COLORS)
            _check_bool("strict", self.strict)
            # A setting that does not apply is an error, never silently ignored.
            apart = ("image_size", "color", "strict") if self.images is None else ("data_dir", "val_size")
            for key in apart:
                if getattr(self, key) != defaults[key]:
                    what = "an image folder (images = DIR)" if self.images is None else "Fashion-MNIST only"
                    raise ValueError(f"{key} applies to {what}, got {key}={getattr(self, key)!r}")


@dataclass(frozen=True)
class RunSettings:
    """Seed, output and numerics of a run: the ``[run]`` section.

    Parameters
    ----------
    name : str or None
        Short name used in the default output directory; a TOML file's stem when read from one,
        else derived from the model (see :attr:`RunConfig.name`).
    seed : int
        The only seed of a run: it fixes the validation split, the initial weights, the dropout
        masks and the minibatch order.
    out : str or None
        The run directory; ``None`` means ``runs/<timestamp>-<name>`` under the current directory.
        Not recorded in ``config.json``, so repeating a run writes a new directory.
    dtype : {"float32", "float64"}
        Parameter and input dtype.
    engine : {"numpy", "torch"}
        Training engine. Both read the same data in the same seeded batches from the same initial
        weights and write the same run files; ``torch`` adds devices, gradient clipping,
        checkpoints with ``--resume``, and multi-process training under ``torchrun``.
    device : {"auto", "cpu", "cuda", "cuda:N"}
        Where the torch engine trains; ``"auto"`` takes a GPU when there is one. The NumPy engine
        runs on the CPU (``"cpu"`` or ``"auto"``).
    log : tuple of str
        Per-epoch logs besides ``metrics.jsonl`` and ``metrics.csv`` (always written): ``"tensorboard"``
        writes the epoch's scalars and parameter histograms to ``RUN_DIR/tensorboard`` (:mod:`mlpkit.logs`);
        one name alone is a list of one.
    histogram_every : int
        With ``"tensorboard"``: a histogram of every parameter's weights and gradient every N epochs
        and at the last one; 0 writes none.
    autocast : {"none", "bf16"}
        Torch engine: ``"bf16"`` runs each training forward pass under ``torch.autocast`` to
        bfloat16, the weights staying in ``dtype`` (see :class:`~mlpkit.train.TorchTrainer`); a
        speed-up where the hardware multiplies bfloat16 matrices natively, a slow-down elsewhere.
    checkpoint_interval : float
        Seconds between checkpoints: after an epoch the runner writes one when this much time has
        passed since the last, and always after the first and the last epoch of a session. 0 writes
        one after every epoch. A run killed in between resumes from the last checkpoint and replays
        the epochs since, to the same weights; the interval bounds the work lost, while the
        checkpoints' cost stops growing with the number of epochs (on iris an epoch takes 0.7 ms, a
        checkpoint 3 ms and the model file beside it 1 ms).
    """

    name: str | None = None
    seed: int = 0
    out: str | None = None
    dtype: str = "float32"
    engine: str = "numpy"
    device: str = "cpu"
    log: tuple[str, ...] = ()
    histogram_every: int = 5
    autocast: str = "none"
    checkpoint_interval: float = 10.0

    def __post_init__(self) -> None:
        with config_section("run"):
            _check_optional_str("name", self.name)
            check_nonnegative_int("seed", self.seed)
            _check_optional_str("out", self.out)
            check_choice("dtype", self.dtype, DTYPES)
            check_choice("engine", self.engine, ENGINES)
            if not isinstance(self.device, str) or not (
                self.device in DEVICES or re.fullmatch(r"cuda:\d+", self.device)
            ):
                raise ValueError(f"device must be one of {list(DEVICES)} or 'cuda:N', got {self.device!r}")
            if self.engine == "numpy" and self.device not in ("cpu", "auto"):
                raise ValueError(
                    f"device must be 'cpu' for engine 'numpy', got {self.device!r}: the NumPy engine runs "
                    "on the CPU only; use engine 'torch' (--engine torch) to train on a GPU"
                )
            self._check_log()
            set_frozen(self, "checkpoint_interval",
                       check_nonnegative_float("checkpoint_interval", self.checkpoint_interval))
            check_choice("autocast", self.autocast, AUTOCASTS)
            if self.engine == "numpy" and self.autocast != "none":
                raise ValueError(
                    f"autocast {self.autocast!r} needs engine 'torch' (--engine torch): the NumPy engine "
                    "computes in dtype only"
                )

    def _check_log(self) -> None:
        log = (self.log,) if isinstance(self.log, str) else self.log  # one name, or a list of them
        if not isinstance(log, Sequence):
            raise ValueError(f"log must be a list of names from {list(LOGS)}, got {self.log!r}")
        for name in log:
            check_choice("log", name, LOGS)
        set_frozen(self, "log", tuple(dict.fromkeys(log)))   # each once, in the order given
        check_nonnegative_int("histogram_every", self.histogram_every)
        if "tensorboard" not in self.log and self.histogram_every != 5:
            raise ValueError(
                f"histogram_every applies to log 'tensorboard' only, got histogram_every="
                f"{self.histogram_every!r} with log {list(self.log)}"
            )


_SECTIONS: dict[str, type[Any]] = {
    "model": ModelConfig,
    "optim": OptimConfig,
    "early_stopping": EarlyStoppingConfig,
    "data": DataConfig,
    "run": RunSettings,
}


def _to_dict(config: Any, sections: Mapping[str, type[Any]]) -> dict[str, Any]:
    """``{"task": ..., section: {key: value}}``, JSON-ready (tuples become lists)."""
    out: dict[str, Any] = {"task": config.task}
    for name in sections:
        values = asdict(getattr(config, name))
        out[name] = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
    return out


def _merged(base: Mapping[str, Any], overrides: Mapping[str, Any], source: str) -> dict[str, Any]:
    merged = {k: dict(v) if isinstance(v, Mapping) else v for k, v in base.items()}
    for section, values in overrides.items():
        if not isinstance(values, Mapping):
            raise ConfigError(f"{source}: [{section}] must be a table of keys, got {values!r}")
        merged.setdefault(section, {}).update(values)
    return merged


def _check_clipping(engine: str, optim: OptimConfig) -> None:
    """Refuse gradient clipping on the NumPy engine, which has none (a setting must not be ignored)."""
    if engine == "numpy" and optim.grad_clip_norm is not None:
        raise ConfigError(
            f"[optim] grad_clip_norm needs engine 'torch' (the NumPy engine does not clip gradients), "
            f"got grad_clip_norm={optim.grad_clip_norm:g} with engine 'numpy'"
        )


class _Sections:
    """What every run configuration shares: its sections (class attribute ``sections``), the
    ``config.json`` round trip and command-line overrides, checked like a file."""

    task: ClassVar[str]
    sections: ClassVar[Mapping[str, type[Any]]]

    @classmethod
    def _defaults(cls, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Section values the task sets before the file's own (which win); none by default."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready nested dict: ``"task"``, then one entry per section (tuples become lists)."""
        return _to_dict(self, self.sections)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, source: str = "config") -> Any:
        """Build a config from nested mappings; missing sections and keys take the task's defaults.

        Parameters
        ----------
        raw : mapping of section -> mapping of key -> value
            E.g. a parsed TOML file or ``config.json``; an optional top-level ``task`` must name
            this config's task.
        source : str
            What ``raw`` came from (a path, or "command-line options"); every error starts with it.

        Raises
        ------
        ConfigError
            For an unknown section or key (listing the valid ones), another task, or an invalid value.
        """
        try:
            sections = _check_sections(raw, cls.sections, cls.task)
            for name in sections:
                if not isinstance(raw.get(name, {}), Mapping):
                    raise ConfigError(f"[{name}] must be a table of keys, got {raw[name]!r}")
            values = _merged(cls._defaults(raw), {name: raw.get(name, {}) for name in sections}, source)
            built = {name: _build_section(name, values.get(name, {}), cls.sections) for name in sections}
            return cls(**built)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from exc

    def with_overrides(self, overrides: Mapping[str, Mapping[str, Any]], *,
                       source: str = "command-line options") -> Any:
        """A copy with some keys replaced, checked like a file: ``{"optim": {"lr": 0.05}}``."""
        return type(self).from_dict(_merged(self.to_dict(), overrides, source), source=source)


@dataclass(frozen=True)
class RunConfig(_Sections):
    """Everything a Fashion-MNIST training run depends on; ``config.json`` of a run holds :meth:`to_dict`.

    Parameters
    ----------
    model : ModelConfig
    optim : OptimConfig
    early_stopping : EarlyStoppingConfig
    data : DataConfig
    run : RunSettings
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    data: DataConfig = field(default_factory=DataConfig)
    run: RunSettings = field(default_factory=RunSettings)

    task: ClassVar[str] = "fashion_mnist"
    sections: ClassVar[Mapping[str, type[Any]]] = _SECTIONS

    def __post_init__(self) -> None:
        # Rules across sections: what an engine can do.
        engine = self.run.engine
        if engine == "numpy" and self.model.name != "mlp":
            raise ConfigError(
                f"[model] name {self.model.name!r} needs engine 'torch' (the NumPy engine trains MLPs "
                f"only), got engine 'numpy'; pass --engine torch"
            )
        _check_clipping(engine, self.optim)

    @property
    def name(self) -> str:
        """``run.name``, or a name from the model and optimizer, e.g. ``"mlp256-sgd"``."""
        if self.run.name:
            return self.run.name
        if self.model.name == "vit":
            m = self.model
            return f"vit-p{m.patch_size}-d{m.dim}x{m.depth}-{self.optim.optimizer}"
        hidden = "-".join(str(width) for width in self.model.hidden_features) or "linear"
        return f"mlp{hidden}-{self.optim.optimizer}"


# -- CTR runs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CTRModelConfig:
    """A model of the CTR zoo (:mod:`mlpkit.models.ctr`) and its settings.

    ``None`` leaves a setting to the model's own default, which is BARS's Frappe_x1 run for that
    model; a setting the model does not have (``hidden_features`` for FM, say) is refused when the
    model is built, naming the model and what it takes.

    Parameters
    ----------
    name : str
        A key of :data:`mlpkit.models.ctr.CTR_MODELS` (``lr``, ``fm``, ``deepfm``, ...).
    embedding_dim : int
        E, the width of every field embedding.
    hidden_features : tuple of int or None
        The DNN tower's widths.
    dropout : float or None
        Dropout after each tower layer.
    batch_norm : bool or None
        BatchNorm after each tower Linear.
    embedding_regularizer : float or None
        λ of the penalty ``(λ / 2) Σ w²`` over every embedding parameter added to the training
        loss (FuxiCTR's ``embedding_regularizer``); None: the model's BARS value.
    net_regularizer : float or None
        The same over every other weight; None: the model's BARS value (0 for most).
    """

    name: str = "deepfm"
    embedding_dim: int = 10
    hidden_features: tuple[int, ...] | None = None
    dropout: float | None = None
    batch_norm: bool | None = None
    embedding_regularizer: float | None = None
    net_regularizer: float | None = None

    def __post_init__(self) -> None:
        with config_section("model"):
            check_choice("name", self.name, CTR_MODEL_NAMES)
            check_positive_int("embedding_dim", self.embedding_dim)
            if self.hidden_features is not None:
                widths = self.hidden_features
                if isinstance(widths, str) or not isinstance(widths, Sequence) or not widths:
                    raise ValueError(
                        f"hidden_features must be a non-empty list of positive ints, got {widths!r}"
                    )
                widths = tuple(check_positive_int("hidden_features", w) for w in widths)
                set_frozen(self, "hidden_features", widths)
            if self.dropout is not None:
                set_frozen(self, "dropout", check_probability("dropout", self.dropout))
            if self.batch_norm is not None:
                _check_bool("batch_norm", self.batch_norm)
            for key in ("embedding_regularizer", "net_regularizer"):
                if (value := getattr(self, key)) is not None:
                    set_frozen(self, key, check_nonnegative_float(key, value))

    def model_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``build_ctr_model(name, fields, **kw)``: what is not left to the model."""
        kwargs: dict[str, Any] = {"embedding_dim": self.embedding_dim}
        for key in ("hidden_features", "dropout", "batch_norm"):
            if (value := getattr(self, key)) is not None:
                kwargs[key] = value
        return kwargs


@dataclass(frozen=True)
class CTRDataConfig:
    """Where a CTR data set is and how its columns are read (:func:`mlpkit.data.load_table_dataset`).

    Parameters
    ----------
    data_dir : str or None
        The directory holding ``train``, ``valid`` and ``test`` (``.csv``, ``.csv.gz`` or ``.parquet``);
        required to train.
    label : str
        The 0/1 label column.
    spec : str or None
        A TOML file of column settings (:mod:`mlpkit.data.table_spec`); None: every column but the
        label is categorical.
    cache_dir : str or None
        Where the encoded arrays are cached; None: ``<data_dir>/.mlpkit-cache`` if writable, else the
        user cache.
    """

    data_dir: str | None = None
    label: str = "label"
    spec: str | None = None
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        with config_section("data"):
            for key in ("data_dir", "spec", "cache_dir"):
                _check_optional_str(key, getattr(self, key))
            if not isinstance(self.label, str) or not self.label:
                raise ValueError(f"label must be a non-empty column name, got {self.label!r}")


@dataclass(frozen=True)
class CTREarlyStoppingConfig(EarlyStoppingConfig):
    """:class:`EarlyStoppingConfig` with BARS's defaults: validation AUC, patience 2, ``min_delta`` 1e-6."""

    patience: int | None = 2
    min_delta: float = 1e-6
    monitor: str = "val_auc"

    monitors: ClassVar[tuple[str, ...]] = CTR_MONITORS


CTR_OPTIM_DEFAULTS: dict[str, Any] = {
    "optimizer": "adam",
    "lr": 1e-3,
    "batch_size": 4096,
    "epochs": 100,
    "schedule": "plateau",
    "factor": 0.1,
    "schedule_patience": 0,
    "min_lr": 1e-6,
    "grad_clip_norm": 10.0,
}
"""BARS's protocol (FuxiCTR v1.1): Adam 1e-3, batch 4096, lr x0.1 after each epoch without a better
validation AUC, floored at 1e-6, gradient norm clipped at 10, at most 100 epochs."""

_CTR_SECTIONS: dict[str, type[Any]] = {
    "model": CTRModelConfig,
    "optim": OptimConfig,
    "early_stopping": CTREarlyStoppingConfig,
    "data": CTRDataConfig,
    "run": RunSettings,
}


@dataclass(frozen=True)
class CTRConfig(_Sections):
    """Everything a CTR training run depends on (``mlpkit ctr train``); the same five sections as
    :class:`RunConfig`, with BARS's defaults (:data:`CTR_OPTIM_DEFAULTS`, validation AUC) and the
    torch engine.

    Examples
    --------
    >>> config = CTRConfig.from_dict({"model": {"name": "fm"}, "data": {"data_dir": "frappe"}})
    >>> config.optim.optimizer, config.optim.batch_size, config.early_stopping.monitor, config.name
    ('adam', 4096, 'val_auc', 'ctr-fm')
    """

    model: CTRModelConfig = field(default_factory=CTRModelConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(**CTR_OPTIM_DEFAULTS))
    early_stopping: CTREarlyStoppingConfig = field(default_factory=CTREarlyStoppingConfig)
    data: CTRDataConfig = field(default_factory=CTRDataConfig)
    run: RunSettings = field(default_factory=lambda: RunSettings(engine="torch", device="auto"))

    task: ClassVar[str] = "ctr"
    sections: ClassVar[Mapping[str, type[Any]]] = _CTR_SECTIONS

    def __post_init__(self) -> None:
        if self.run.engine != "torch":
            raise ConfigError(
                f"[run] engine must be 'torch' for a CTR run (the models embed ids with torch), "
                f"got {self.run.engine!r}"
            )

    @property
    def name(self) -> str:
        """``run.name``, or ``"ctr-<model>"``."""
        return self.run.name or f"ctr-{self.model.name}"

    @classmethod
    def _defaults(cls, raw: Mapping[str, Any]) -> dict[str, Any]:
        """BARS's optimizer and the torch engine; the plateau's own settings only with the plateau."""
        optim = dict(CTR_OPTIM_DEFAULTS)
        given = raw.get("optim", {})
        chosen = given.get("schedule", "plateau") if isinstance(given, Mapping) else "plateau"
        if chosen != "plateau":  # the plateau's own settings go with it
            for key in ("factor", "schedule_patience", "min_lr", "schedule"):
                optim.pop(key)
        return {"optim": optim, "run": {"engine": "torch", "device": "auto"}}


# -- a user's own table ------------------------------------------------------------------------


TABLE_TASKS = ("auto", "classification", "regression")


@dataclass(frozen=True)
class TableModelConfig:
    """The MLP on a table's columns (:class:`mlpkit.spec.MLPSpec` on the NumPy engine's one-hot input,
    :class:`mlpkit.models.tabular.TabularMLP` with embeddings on the torch engine).

    Parameters
    ----------
    hidden_features : tuple of int
    activation : str or tuple of str
    dropout : float or tuple of float
    init : str
        The Linear weights' initializer (NumPy engine and torch alike).
    init_std : float
        Std of ``init = "normal"``.
    embedding_dims : dict of str to int
        Torch engine: the embedding width of a categorical column; the others take fastai's rule
        :func:`mlpkit.data.tabular.embedding_size`.

    Notes
    -----
    The defaults are scikit-learn's MLP: one hidden layer of 100 ReLU units, Glorot's uniform
    initial weights (Glorot & Bengio 2010; with ReLU's gain). Measured on the tables of
    ``benchmarks/tabular.py`` (mean test accuracy over 10 seeds, iris's test sets 24 rows each),
    the earlier 256-128 with Kaiming's weights and batches of 128 scored 0.867 on iris, against
    scikit-learn's 0.925; Glorot's weights gave 0.904, one layer of 100 as well 0.917, and batches
    of 32 as well (:data:`TABLE_OPTIM_DEFAULTS`) 0.921. On digits the old and the new defaults
    score 0.941 and 0.940 (scikit-learn 0.944).
    """

    hidden_features: tuple[int, ...] = (100,)
    activation: str | tuple[str, ...] = "relu"
    dropout: float | tuple[float, ...] = 0.0
    init: str = "xavier_uniform"
    init_std: float = 0.01
    embedding_dims: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        with config_section("model"):
            if isinstance(self.hidden_features, str) or not isinstance(self.hidden_features, Sequence):
                raise ValueError(
                    f"hidden_features must be a list of positive ints, got {self.hidden_features!r}"
                )
            spec = self.to_spec(1, 1)
            set_frozen(self, "hidden_features", spec.hidden_features)
            set_frozen(self, "activation", spec.activation)
            dropout = spec.dropout if isinstance(spec.dropout, tuple) else float(spec.dropout)
            set_frozen(self, "dropout", dropout)
            set_frozen(self, "init_std", float(spec.init_std))
            if not isinstance(self.embedding_dims, Mapping):
                raise ValueError(
                    f"embedding_dims must be a table of column = width, got {self.embedding_dims!r}"
                )
            for column, width in self.embedding_dims.items():
                check_positive_int(f"embedding_dims[{column!r}]", width)
            set_frozen(self, "embedding_dims", dict(self.embedding_dims))

    def to_spec(self, in_features: int, out_features: int) -> MLPSpec:
        """The NumPy engine's MLP for ``in_features`` one-hot inputs and ``out_features`` logits."""
        return MLPSpec(in_features, tuple(self.hidden_features), out_features, activation=self.activation,
                       dropout=self.dropout, init=self.init, init_std=self.init_std)


@dataclass(frozen=True)
class TableDataConfig:
    """Which table, which column to predict, and how the columns are read (:mod:`mlpkit.data.tabular`).

    Parameters
    ----------
    path : str or None
        One CSV or Parquet file (split by seed into train, validation and test), or a directory
        holding ``train``, ``valid`` and ``test`` files; required to train.
    target : str or None
        The column to predict; required to train.
    task : {"auto", "classification", "regression"}
        ``auto`` infers it from the target (:func:`mlpkit.data.tabular.infer_task`) and logs why.
    categorical, numeric, ignore : tuple of str
        Columns read as categories, as numbers, or not at all, whatever their values; the others
        are typed by :func:`mlpkit.data.tabular.plan_columns`.
    val_fraction, test_fraction : float
        One file: the share of rows (of each class, for classification) held out for validation
        (which picks the best epoch) and for the test scores.
    max_categories : int
        Integer columns (and targets) with at most this many distinct values are categorical.
    """

    path: str | None = None
    target: str | None = None
    task: str = "auto"
    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    max_categories: int = 20

    def __post_init__(self) -> None:
        with config_section("data"):
            _check_optional_str("path", self.path)
            _check_optional_str("target", self.target)
            check_choice("task", self.task, TABLE_TASKS)
            for key in ("categorical", "numeric", "ignore"):
                names = getattr(self, key)
                if isinstance(names, str) or not isinstance(names, Sequence) or not all(
                    isinstance(n, str) and n for n in names
                ):
                    raise ValueError(f"{key} must be a list of column names, got {names!r}")
                set_frozen(self, key, tuple(names))
            for key in ("val_fraction", "test_fraction"):
                set_frozen(self, key, check_probability(key, getattr(self, key)))
            if self.val_fraction + self.test_fraction >= 1:
                raise ValueError(
                    f"val_fraction + test_fraction must leave rows to train on, got "
                    f"{self.val_fraction:g} + {self.test_fraction:g}"
                )
            check_positive_int("max_categories", self.max_categories)


TABLE_OPTIM_DEFAULTS: dict[str, Any] = {"optimizer": "adam", "lr": 1e-3, "batch_size": 32, "epochs": 200}
"""Adam at 1e-3 (Kingma & Ba 2015) as scikit-learn's MLP, in batches of 32, for at most 200 epochs;
early stopping on the validation loss ends most runs long before. Batches of 32, not 128: the
small tables people start with (iris: 105 training rows) get four steps an epoch, not one, so
early stopping judges a trained model rather than one a few dozen steps old."""


@dataclass(frozen=True)
class TableEarlyStoppingConfig(EarlyStoppingConfig):
    """:class:`EarlyStoppingConfig` stopping after 10 epochs without a better validation loss
    (scikit-learn's ``n_iter_no_change``)."""

    patience: int | None = 10


_TABLE_SECTIONS: dict[str, type[Any]] = {
    "model": TableModelConfig,
    "optim": OptimConfig,
    "early_stopping": TableEarlyStoppingConfig,
    "data": TableDataConfig,
    "run": RunSettings,
}


@dataclass(frozen=True)
class TableConfig(_Sections):
    """Everything a run on a user's table depends on (``mlpkit train --data FILE --target COLUMN``);
    the same five sections as :class:`RunConfig`, with a table's ``[data]`` and defaults for tables.

    Examples
    --------
    >>> config = TableConfig.from_dict({"data": {"path": "houses.csv", "target": "price"}})
    >>> config.optim.optimizer, config.model.hidden_features, config.name
    ('adam', (100,), 'table-price')
    """

    model: TableModelConfig = field(default_factory=TableModelConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(**TABLE_OPTIM_DEFAULTS))
    early_stopping: TableEarlyStoppingConfig = field(default_factory=TableEarlyStoppingConfig)
    data: TableDataConfig = field(default_factory=TableDataConfig)
    run: RunSettings = field(default_factory=RunSettings)

    task: ClassVar[str] = "table"
    sections: ClassVar[Mapping[str, type[Any]]] = _TABLE_SECTIONS

    def __post_init__(self) -> None:
        _check_clipping(self.run.engine, self.optim)

    @property
    def name(self) -> str:
        """``run.name``, or ``"table-<target>"``."""
        return self.run.name or f"table-{self.data.target or 'data'}"

    @classmethod
    def _defaults(cls, raw: Mapping[str, Any]) -> dict[str, Any]:
        return {"optim": dict(TABLE_OPTIM_DEFAULTS)}


AnyConfig = RunConfig | CTRConfig | TableConfig
CONFIGS: dict[str, type[Any]] = {"fashion_mnist": RunConfig, "ctr": CTRConfig, "table": TableConfig}
"""The config class of each task."""


def _check_sections(raw: Mapping[str, Any], sections: Mapping[str, type[Any]], task: str) -> list[str]:
    """The section names, after rejecting unknown ones (with a hint for keys put at top level)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"expected a table of sections {sorted(sections)}, got {type(raw).__name__}")
    if "task" in raw and raw["task"] != task:
        raise ConfigError(
            f"task {raw['task']!r} is not this command's task {task!r}"
            + (f" (the tasks are {list(TASKS)})" if raw["task"] not in TASKS else "")
        )
    unknown = sorted(set(raw) - set(sections) - {"task"})
    if unknown:
        hints = [
            f"{key!r} belongs in [{section}]"
            for key in unknown
            for section, cls in sections.items()
            if key in {f.name for f in fields(cls)}
        ]
        hint = f" ({'; '.join(hints)})" if hints else ""
        raise ConfigError(f"unknown section(s) {unknown}{hint}; valid sections: {sorted(sections)}")
    return list(sections)


def _build_section(name: str, values: object, sections: Mapping[str, type[Any]]) -> Any:
    cls = sections[name]
    if not isinstance(values, Mapping):
        raise ConfigError(f"[{name}] must be a table of keys, got {values!r}")
    valid = sorted(f.name for f in fields(cls))
    if unknown := sorted(set(values) - set(valid)):
        raise ConfigError(f"[{name}] unknown key(s) {unknown}; valid keys: {valid}")
    return cls(**values)


def _read_raw(path: Path) -> dict[str, Any]:
    suffix = path.suffix.lower()
    if path.is_dir():
        raise ConfigError(
            f"{path} is a directory, not a config file; use a .toml file, or a run's config.json"
        )
    if suffix not in (".toml", ".json"):
        raise ConfigError(
            f"{path}: unsupported config file type {path.suffix!r}; use .toml, or a run's config.json"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such config file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc})") from exc
    try:
        raw = tomllib.loads(text) if suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: invalid {suffix[1:].upper()}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a table of sections, got {type(raw).__name__}")
    if suffix == ".toml" and isinstance(raw.get("run", {}), dict) and "name" not in raw.get("run", {}):
        raw.setdefault("run", {})["name"] = path.stem
    return raw


def load_config(path: str | Path, *, task: str | None = "fashion_mnist") -> Any:
    """Read a run configuration from a ``.toml`` file or a run's ``config.json``.

    A TOML file without ``[run] name`` is named after its stem (``configs/classic.toml`` ->
    ``"classic"``), which names the default run directory.

    Parameters
    ----------
    path : str or Path
        The file; the suffix picks the parser.
    task : str or None
        The task the file must configure (``"fashion_mnist"``: a :class:`RunConfig`; ``"ctr"``: a
        :class:`CTRConfig`; ``"table"``: a :class:`TableConfig`); None takes the file's own top-level
        ``task`` (a run's ``config.json`` names it; without one, ``table`` when ``[data]`` names a
        ``target`` or ``path``, else ``fashion_mnist``).

    Returns
    -------
    RunConfig or CTRConfig

    Raises
    ------
    ConfigError
        Naming the file: missing or unreadable, not valid TOML/JSON, unsupported suffix, another
        task, unknown section or key (with the valid ones), or an invalid value.
    """
    path = Path(path)
    return _config_from_raw(_read_raw(path), path, task)


def load_config_with_section(path: str | Path, section: str, *, task: str | None = None) -> tuple[Any, Any]:
    """Read a run configuration from a ``.toml`` file that holds one more top-level table, which
    another command reads (``[tune]`` of ``mlpkit tune``).

    Returns
    -------
    config : RunConfig, CTRConfig or TableConfig
        The file without ``[section]``, read as :func:`load_config` reads a file (``task`` likewise).
    table : Any
        The value of ``section`` as parsed (a dict for a table), or None when the file has none.
    """
    path = Path(path)
    raw = _read_raw(path)
    table = raw.pop(section, None)
    return _config_from_raw(raw, path, task), table


def _config_from_raw(raw: dict[str, Any], path: Path, task: str | None) -> Any:
    data = raw.get("data")
    # A file that names a target column configures a table run, whether or not it says task = "table".
    names_a_table = isinstance(data, Mapping) and ("target" in data or "path" in data)
    implied = "table" if names_a_table else "fashion_mnist"
    chosen = task if task is not None else raw.get("task", implied)
    if chosen not in CONFIGS:
        raise ConfigError(f"{path}: unknown task {chosen!r}; the tasks are {list(TASKS)}")
    return CONFIGS[chosen].from_dict(raw, source=str(path))
