"""The run configuration: frozen dataclasses, read from TOML, written to a run's ``config.json``.

A configuration has five sections, each a frozen dataclass whose defaults are the classic recipe
(784-256-10, ReLU, weights N(0, 0.01), SGD lr 0.1, batch 256, 10 epochs)::

    [model]           hidden_features, activation, dropout, init, init_std
    [optim]           optimizer, lr, momentum, nesterov, weight_decay, batch_size, epochs
    [early_stopping]  patience, min_delta, monitor, restore_best
    [data]            data_dir, val_size, download, verify
    [run]             name, seed, out, dtype, engine, device

Files are read by :func:`load_config`: ``.toml`` with the standard library's :mod:`tomllib`, and
``.json`` as written by a run, so ``mlpkit train --config RUN_DIR/config.json`` repeats a run.
Unknown sections and keys are errors that list the valid ones, because a typo that silently
falls back to a default is the worst kind of configuration bug. Every invalid value raises
:class:`~mlpkit.errors.ConfigError` naming the file (or the command line), the section, the key
and the value. Command-line options are applied on top with :meth:`RunConfig.with_overrides`,
which goes through the same checks.

TOML has no null: leave a key out to get its ``None`` default (``data_dir``, ``out``, ``name``,
``patience``); ``patience = 0`` also turns early stopping off.

Examples
--------
>>> config = RunConfig().with_overrides({"model": {"hidden_features": [512, 256]}, "optim": {"lr": 0.05}})
>>> config.model.hidden_features, config.optim.lr, config.name
((512, 256), 0.05, 'mlp512-256-sgd')
>>> RunConfig.from_dict(config.to_dict()) == config
True
"""

from __future__ import annotations

import contextlib
import json
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from mlpkit._checks import (
    check_choice,
    check_nonnegative_float,
    check_nonnegative_int,
    check_positive_float,
    check_positive_int,
    check_probability,
)
from mlpkit.errors import ConfigError
from mlpkit.spec import MLPSpec

__all__ = [
    "DTYPES",
    "ENGINES",
    "MONITORS",
    "OPTIMIZERS",
    "DataConfig",
    "EarlyStoppingConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "RunSettings",
    "load_config",
]

OPTIMIZERS = ("sgd", "adam", "adamw")
"""Optimizer names; each engine maps them to its implementation (``mlpkit.engine.OPTIMIZERS``)."""
ENGINES = ("numpy",)
"""Training engines. Issue 4 adds ``"torch"``, which is also when ``device`` may be other than cpu."""
DTYPES = ("float32", "float64")
MONITORS = ("val_loss", "val_accuracy")
"""Scores that can pick the best epoch; the test set is never one of them."""


@contextlib.contextmanager
def _section(name: str) -> Iterator[None]:
    """Turn the ``ValueError`` of an argument check into a ``ConfigError`` naming the section."""
    try:
        yield
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(f"[{name}] {exc}") from exc


def _check_bool(name: str, value: object) -> bool:
    # Not bool(value): TOML's "false" string or a 0 would be read as a silent choice.
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


def _check_optional_str(name: str, value: object) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ValueError(f"{name} must be a non-empty string or absent, got {value!r}")
    return value


def _set(obj: object, name: str, value: object) -> None:
    """Store a normalised value on a frozen dataclass (e.g. a TOML list as a tuple, 1 as 1.0)."""
    object.__setattr__(obj, name, value)


@dataclass(frozen=True)
class ModelConfig:
    """The network between the 784 pixels and the 10 class logits; see :class:`mlpkit.spec.MLPSpec`.

    Parameters
    ----------
    hidden_features : tuple of int
        Width of each hidden layer; ``()`` is softmax regression.
    activation : str or tuple of str
        One activation for every hidden layer, or one per layer.
    dropout : float or tuple of float
        Dropout probability after each hidden activation, one for all or one per layer.
    init : str
        Weight initializer (``"normal"`` draws N(0, ``init_std``²)).
    init_std : float
        Standard deviation of ``init="normal"``.
    """

    hidden_features: tuple[int, ...] = (256,)
    activation: str | tuple[str, ...] = "relu"
    dropout: float | tuple[float, ...] = 0.0
    init: str = "normal"
    init_std: float = 0.01

    def __post_init__(self) -> None:
        with _section("model"):
            if isinstance(self.hidden_features, str) or not isinstance(self.hidden_features, Sequence):
                raise ValueError(
                    f"hidden_features must be a list of positive ints, got {self.hidden_features!r}"
                )
            # MLPSpec owns the rules (names, per-layer lengths, ranges); sizes 1 are placeholders.
            spec = self.to_spec(in_features=1, out_features=1)
        _set(self, "hidden_features", spec.hidden_features)
        _set(self, "activation", spec.activation)
        _set(self, "dropout", spec.dropout if isinstance(spec.dropout, tuple) else float(spec.dropout))
        _set(self, "init_std", float(spec.init_std))

    def to_spec(self, in_features: int, out_features: int) -> MLPSpec:
        """The :class:`~mlpkit.spec.MLPSpec` for inputs of width D and C classes."""
        return MLPSpec(
            in_features,
            tuple(self.hidden_features),
            out_features,
            activation=self.activation,
            dropout=self.dropout,
            init=self.init,
            init_std=self.init_std,
        )


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer and schedule of the minibatch loop.

    Parameters
    ----------
    optimizer : {"sgd", "adam", "adamw"}
    lr : float
        Learning rate.
    momentum : float in [0, 1)
        SGD momentum (SGD only).
    nesterov : bool
        Nesterov momentum (SGD with momentum > 0 only).
    weight_decay : float
        L2 penalty for SGD and Adam, decoupled decay for AdamW; applied to weights, not biases.
    batch_size : int
        Minibatch size B.
    epochs : int
        Maximum number of passes over the training set.
    """

    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    batch_size: int = 256
    epochs: int = 10

    def __post_init__(self) -> None:
        with _section("optim"):
            check_choice("optimizer", self.optimizer, OPTIMIZERS)
            _set(self, "lr", check_positive_float("lr", self.lr))
            _set(self, "momentum", check_probability("momentum", self.momentum))
            _check_bool("nesterov", self.nesterov)
            _set(self, "weight_decay", check_nonnegative_float("weight_decay", self.weight_decay))
            check_positive_int("batch_size", self.batch_size)
            check_positive_int("epochs", self.epochs)
            if self.optimizer != "sgd" and (self.momentum or self.nesterov):
                raise ValueError(
                    f"momentum and nesterov apply to optimizer 'sgd' only, got momentum={self.momentum:g}, "
                    f"nesterov={str(self.nesterov).lower()} with optimizer {self.optimizer!r}"
                )
            if self.nesterov and self.momentum == 0:
                raise ValueError("nesterov needs momentum > 0, got momentum=0")

    def optimizer_kwargs(self) -> dict[str, float | bool]:
        """Keyword arguments of the optimizer's constructor (``make_optimizer(name, params, **kw)``)."""
        kwargs: dict[str, float | bool] = {"lr": self.lr, "weight_decay": self.weight_decay}
        if self.optimizer == "sgd":
            kwargs |= {"momentum": self.momentum, "nesterov": self.nesterov}
        return kwargs


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

    def __post_init__(self) -> None:
        with _section("early_stopping"):
            if self.patience is not None:
                check_nonnegative_int("patience", self.patience)
                if self.patience == 0:
                    _set(self, "patience", None)
            _set(self, "min_delta", check_nonnegative_float("min_delta", self.min_delta))
            check_choice("monitor", self.monitor, MONITORS)
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
    """

    data_dir: str | None = None
    val_size: int = 5000
    download: bool = True
    verify: bool = True

    def __post_init__(self) -> None:
        with _section("data"):
            _check_optional_str("data_dir", self.data_dir)
            check_nonnegative_int("val_size", self.val_size)
            _check_bool("download", self.download)
            _check_bool("verify", self.verify)


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
    engine : {"numpy"}
        Training engine.
    device : str
        ``"cpu"`` for the NumPy engine.
    """

    name: str | None = None
    seed: int = 0
    out: str | None = None
    dtype: str = "float32"
    engine: str = "numpy"
    device: str = "cpu"

    def __post_init__(self) -> None:
        with _section("run"):
            _check_optional_str("name", self.name)
            check_nonnegative_int("seed", self.seed)
            _check_optional_str("out", self.out)
            check_choice("dtype", self.dtype, DTYPES)
            check_choice("engine", self.engine, ENGINES)
            if not isinstance(self.device, str):
                raise ValueError(f"device must be a string, got {self.device!r}")
            if self.engine == "numpy" and self.device != "cpu":
                raise ValueError(f"device must be 'cpu' for engine 'numpy', got {self.device!r}")


_SECTIONS: dict[str, type[Any]] = {
    "model": ModelConfig,
    "optim": OptimConfig,
    "early_stopping": EarlyStoppingConfig,
    "data": DataConfig,
    "run": RunSettings,
}


@dataclass(frozen=True)
class RunConfig:
    """Everything a training run depends on; ``config.json`` of a run holds :meth:`to_dict`.

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

    @property
    def name(self) -> str:
        """``run.name``, or a name from the model and optimizer, e.g. ``"mlp256-sgd"``."""
        if self.run.name:
            return self.run.name
        hidden = "-".join(str(width) for width in self.model.hidden_features) or "linear"
        return f"mlp{hidden}-{self.optim.optimizer}"

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """JSON-ready nested dict, one entry per section (tuples become lists)."""
        return {
            name: {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(getattr(self, name)).items()}
            for name in _SECTIONS
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, source: str = "config") -> RunConfig:
        """Build a config from nested mappings; missing sections and keys take their defaults.

        Parameters
        ----------
        raw : mapping of section -> mapping of key -> value
            E.g. a parsed TOML file or ``config.json``.
        source : str
            What ``raw`` came from (a path, or "command-line options"); every error starts with it.

        Raises
        ------
        ConfigError
            For an unknown section or key (listing the valid ones) or an invalid value.
        """
        try:
            return cls(**{name: _build_section(name, raw.get(name, {})) for name in _check_sections(raw)})
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from exc

    def with_overrides(
        self, overrides: Mapping[str, Mapping[str, Any]], *, source: str = "command-line options"
    ) -> RunConfig:
        """A copy with some keys replaced, checked like a file: ``{"optim": {"lr": 0.05}}``."""
        merged = self.to_dict()
        for section, values in overrides.items():
            if not isinstance(values, Mapping):
                raise ConfigError(f"{source}: [{section}] must be a table of keys, got {values!r}")
            merged.setdefault(section, {}).update(values)
        return RunConfig.from_dict(merged, source=source)


def _check_sections(raw: Mapping[str, Any]) -> list[str]:
    """The section names, after rejecting unknown ones (with a hint for keys put at top level)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"expected a table of sections {sorted(_SECTIONS)}, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(_SECTIONS))
    if unknown:
        hints = [
            f"{key!r} belongs in [{section}]"
            for key in unknown
            for section, cls in _SECTIONS.items()
            if key in {f.name for f in fields(cls)}
        ]
        hint = f" ({'; '.join(hints)})" if hints else ""
        raise ConfigError(f"unknown section(s) {unknown}{hint}; valid sections: {sorted(_SECTIONS)}")
    return list(_SECTIONS)


def _build_section(name: str, values: object) -> Any:
    cls = _SECTIONS[name]
    if not isinstance(values, Mapping):
        raise ConfigError(f"[{name}] must be a table of keys, got {values!r}")
    valid = sorted(f.name for f in fields(cls))
    if unknown := sorted(set(values) - set(valid)):
        raise ConfigError(f"[{name}] unknown key(s) {unknown}; valid keys: {valid}")
    return cls(**values)


def load_config(path: str | Path) -> RunConfig:
    """Read a run configuration from a ``.toml`` file or a run's ``config.json``.

    A TOML file without ``[run] name`` is named after its stem (``configs/classic.toml`` ->
    ``"classic"``), which names the default run directory.

    Parameters
    ----------
    path : str or Path
        The file; the suffix picks the parser.

    Returns
    -------
    RunConfig

    Raises
    ------
    ConfigError
        Naming the file: missing or unreadable, not valid TOML/JSON, unsupported suffix, unknown
        section or key (with the valid ones), or an invalid value.
    """
    path = Path(path)
    suffix = path.suffix.lower()
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
    if suffix == ".toml" and isinstance(raw.get("run", {}), dict) and "name" not in raw.get("run", {}):
        raw.setdefault("run", {})["name"] = path.stem
    return RunConfig.from_dict(raw, source=str(path))
