"""Hyperparameter search over Optuna, every trial an ordinary run directory (``mlpkit tune``).

A tune file is a run configuration, the sections ``mlpkit train --config`` reads (with
``task = "ctr"`` at the top for a CTR run, as a CTR run's ``config.json`` says), plus a ``[tune]``
table: how long to search, what to select on, and the search space, one entry per setting
(``section.key``, as in ``config.json``)::

    [tune]
    trials = 30                   # the trials the study should hold in all (--trials)
    timeout = 1800                # seconds after which no trial starts (--timeout)
    metric = "val_accuracy"       # a validation score; default: [early_stopping] monitor
    pruner = "median"             # or "none"
    pruner_startup_trials = 5     # trials that complete before any is pruned
    pruner_warmup_epochs = 0      # epochs of every trial that are never pruned
    sampler_startup_trials = 10   # random trials before TPE models the results

    [tune.space]
    "optim.lr" = { low = 1e-3, high = 0.3, log = true }
    "optim.epochs" = { low = 5, high = 20, step = 5 }             # ints: an int setting
    "model.hidden_features" = { choices = [[256], [512, 256]] }

Every setting and every value the space can take (both ends of a range, every choice) is checked
against the run configuration before the first trial, so a typo or a value the config refuses is
a :class:`~mlpkit.errors.ConfigError` at once, naming it.

Each trial is :func:`mlpkit.run.train_run` of the config with the trial's values, in
``OUT/trial-NNNN``: a run directory like any other. Its per-epoch validation score goes to Optuna
(``trial.report``) and Optuna's median pruner stops a trial whose score is below the median of the
completed trials at the same epoch (Optuna's ``MedianPruner``; never at a trial's last epoch, when
the work is done). A pruned trial's directory keeps its epochs, its best model so far and its
checkpoint (``--resume`` trains it to the end), and a ``summary.json`` whose ``status`` is
``"pruned"``. A trial whose training diverges is a failed trial (Optuna's ``FAIL``; the sampler
ignores it) that counts towards ``trials``, so a space that diverges often still ends.

The objective is the validation score ``metric`` of the model the trial delivers (its best epoch,
or its last with ``restore_best = false``), read from the run's history; the test split only
reports. The study lives in ``OUT/study.db`` (SQLite) unless ``--storage`` names another database
URL; it is resumable: the same command again continues it up to ``trials`` in all (``timeout``
is per command). A trial interrupted by Ctrl-C, or left running by a process that was killed, is
marked failed and its parameters run first next time. One process works on a study at a time.
The sampler is Optuna's TPE seeded by ``[run] seed`` plus the number of trials already in the
study, so a resumed study does not draw its first random trials again.

``OUT`` (default ``runs/tune-<study name>``, the study name defaulting to the file's stem) holds::

    study.db           the Optuna study, unless --storage names another
    trial-0000/ ...    one run directory per trial
    best.toml          the best trial's whole config: mlpkit train --config OUT/best.toml repeats it
    trials.csv         every trial: number, state, value, parameters, run directory (Optuna's table)
    history.png        each completed trial's value and the best so far (Optuna's plot)
    importance.png     the parameters' importance (PED-ANOVA), from two completed trials on

``best.toml``, ``trials.csv`` are rewritten after every trial; the figures when the command stops.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import importlib.util
import json
import logging
import math
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from mlpkit._checks import (
    check_choice,
    check_nonnegative_int,
    check_positive_float,
    check_positive_int,
    config_section,
    set_frozen,
)
from mlpkit._io import atomic_path, atomic_write_json, atomic_write_text, ensure_writable_dir
from mlpkit._optional import require
from mlpkit.config import load_config, load_config_with_section, unused_keys
from mlpkit.errors import ConfigError, OutputError, TrainingDivergedError
from mlpkit.rundir import CONFIG_FILE, SUMMARY_FILE, remove_if_unused
from mlpkit.tasks import task_for

__all__ = [
    "BEST_FILE",
    "PRUNERS",
    "STUDY_FILE",
    "TRIALS_FILE",
    "SearchParam",
    "TuneResult",
    "TuneSettings",
    "check_space",
    "load_tune_config",
    "parse_space",
    "to_toml",
    "trial_dir",
    "tune",
]

logger = logging.getLogger(__name__)

PRUNERS = ("median", "none")
"""``[tune] pruner``: Optuna's ``MedianPruner``, or no pruning."""
STUDY_FILE = "study.db"
BEST_FILE = "best.toml"
TRIALS_FILE = "trials.csv"
HISTORY_FILE = "history.png"
IMPORTANCE_FILE = "importance.png"
_TUNED_BY_TUNE = ("run.out",)
"""Settings the search space may not hold: tune sets them for every trial."""
_STUDY_ATTR = "mlpkit_tune"
"""The study's user attribute holding what it searches (config, space, metric), checked on resume."""


# -- the [tune] table ----------------------------------------------------------------------------


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class SearchParam:
    """One setting of the search space: a range of numbers, or a list of choices.

    Parameters
    ----------
    name : str
        The setting, ``section.key`` as in ``config.json`` (``"optim.lr"``).
    low, high : int or float, optional
        The range, both ends included; two ints make an int setting (Optuna's ``suggest_int``),
        anything else a float (``suggest_float``).
    log : bool
        Draw on a log scale (``low`` must be > 0).
    step : int or float, optional
        Draw on the grid ``low, low + step, ..., high`` (not with ``log``).
    choices : tuple, optional
        The values to choose from, instead of a range; a list (e.g. hidden widths) is one choice.
    """

    name: str
    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    step: int | float | None = None
    choices: tuple[Any, ...] | None = None

    def __post_init__(self) -> None:
        name = self.name
        if self.choices is not None:
            if any(value is not None for value in (self.low, self.high, self.step)) or self.log:
                raise ValueError(f"{name}: give either choices or low/high (with log, step), not both")
            choices = self.choices
            if isinstance(choices, str | bytes) or not isinstance(choices, Sequence) or not choices:
                raise ValueError(f"{name}: choices must be a non-empty list, got {choices!r}")
            set_frozen(self, "choices", tuple(choices))
            labels = self.labels()
            if len(set(labels)) != len(labels):
                twice = next(label for label in labels if labels.count(label) > 1)
                raise ValueError(f"{name}: choices holds {twice} more than once")
            return
        if self.low is None or self.high is None:
            raise ValueError(f"{name}: give low and high (a range), or choices, got neither")
        for key in ("low", "high"):
            value = getattr(self, key)
            if not _is_number(value) or not math.isfinite(value):
                raise ValueError(f"{name}: {key} must be a finite number, got {value!r}")
        if self.low > self.high:
            raise ValueError(f"{name}: low must not exceed high, got low={self.low!r} > high={self.high!r}")
        if not isinstance(self.log, bool):
            raise ValueError(f"{name}: log must be true or false, got {self.log!r}")
        if self.log and self.low <= 0:
            raise ValueError(f"{name}: a log range needs low > 0, got low={self.low!r}")
        if self.step is not None:
            if self.log:
                raise ValueError(f"{name}: step and log cannot be combined (Optuna draws either)")
            step = check_positive_float(f"{name}: step", self.step)
            if self.is_int and not isinstance(self.step, int):
                raise ValueError(f"{name}: step of an int range must be an int, got {self.step!r}")
            # Optuna would move high onto the grid with a warning: say so here instead.
            steps = (self.high - self.low) / step
            if abs(steps - round(steps)) > 1e-9 * max(1.0, abs(steps)):
                raise ValueError(
                    f"{name}: high - low must be a multiple of step, got low={self.low!r}, "
                    f"high={self.high!r}, step={self.step!r}"
                )

    @property
    def is_int(self) -> bool:
        """A range of two ints: Optuna draws ints."""
        return isinstance(self.low, int) and isinstance(self.high, int) and not isinstance(self.low, bool)

    @property
    def section(self) -> str:
        return self.name.partition(".")[0]

    @property
    def key(self) -> str:
        return self.name.partition(".")[2]

    def labels(self) -> tuple[Any, ...]:
        """The choices as Optuna stores them: numbers, strings and booleans as they are, anything
        else (a list of widths) as its JSON text, since Optuna's storage keeps plain values only."""
        return tuple(
            c if c is None or isinstance(c, bool | int | float | str) else json.dumps(c)
            for c in self.choices or ()
        )

    def values(self) -> tuple[Any, ...]:
        """The values the config must accept: every choice, or both ends of the range."""
        return self.choices if self.choices is not None else (self.low, self.high)

    def suggest(self, trial: Any) -> Any:
        """Draw this setting's value for an Optuna ``trial``; the value as the config takes it."""
        if self.choices is not None:
            labels = self.labels()
            return self.choices[labels.index(trial.suggest_categorical(self.name, labels))]
        if self.is_int:
            return trial.suggest_int(self.name, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def value_of(self, stored: Any) -> Any:
        """The config's value for what Optuna stored (a choice's label, or the number)."""
        if self.choices is None:
            return stored
        return self.choices[self.labels().index(stored)]


_PARAM_KEYS = ("low", "high", "log", "step", "choices")


def parse_space(raw: Any, config: Any) -> tuple[SearchParam, ...]:
    """The ``[tune.space]`` table, each setting checked against ``config`` (see :func:`check_space`).

    Parameters
    ----------
    raw : mapping of str to mapping
        ``{"optim.lr": {"low": 1e-3, "high": 0.3, "log": True}, ...}`` as parsed from TOML.
    config : RunConfig, CTRConfig or TableConfig
        The run configuration the trials start from.

    Raises
    ------
    ConfigError
        ``[tune.space] ...``: no setting, an entry that is not a table, an unknown key in an entry,
        a bad range or list of choices, an unknown setting (with the closest one), or a value the
        config refuses.
    """
    with config_section("tune.space"):
        if raw is None or (isinstance(raw, Mapping) and not raw):
            raise ValueError(
                "is empty: name at least one setting to search, e.g. "
                '"optim.lr" = { low = 1e-3, high = 0.3, log = true }'
            )
        if not isinstance(raw, Mapping):
            raise ValueError(f"must be a table of settings, got {raw!r}")
        space = []
        for name, entry in raw.items():
            if not isinstance(entry, Mapping):
                raise ValueError(
                    f"{name} must be a table such as {{ low = 1, high = 2 }} or {{ choices = [...] }}, "
                    f"got {entry!r}"
                )
            if unknown := sorted(set(entry) - set(_PARAM_KEYS)):
                raise ValueError(f"{name}: unknown key(s) {unknown}; valid keys: {sorted(_PARAM_KEYS)}")
            values = dict(entry)
            if "choices" in values and isinstance(values["choices"], list):
                values["choices"] = tuple(values["choices"])
            space.append(SearchParam(name, **values))
    result = tuple(space)
    check_space(result, config)
    return result


def check_space(space: Sequence[SearchParam], config: Any) -> None:
    """Check that each setting exists in ``config`` and that ``config`` accepts each of its values.

    A value is applied alone to ``config`` with ``with_overrides``, so the config's own checks
    judge it (a negative lr, a dropout of 1, an unknown optimizer).

    Raises
    ------
    ConfigError
        An unknown section or key (with the closest setting), a setting tune sets itself
        (``run.out``), or a value the config refuses, naming the setting and the value.
    """
    settings = {f"{section}.{f.name}" for section, cls in config.sections.items() for f in fields(cls)}
    for param in space:
        if param.name not in settings:
            close = difflib.get_close_matches(param.name, sorted(settings), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            if param.section in config.sections:
                keys = sorted(f.name for f in fields(config.sections[param.section]))
                where = f"valid keys of [{param.section}]: {keys}"
            else:
                where = f"a setting is section.key, with a section of {sorted(config.sections)}"
            raise ConfigError(f"[tune.space] unknown setting {param.name!r}{hint}; {where}")
        if param.name in _TUNED_BY_TUNE:
            raise ConfigError(
                f"[tune.space] {param.name} cannot be searched: mlpkit tune sets it (each trial writes "
                "OUT/trial-NNNN)"
            )
        for value in param.values():
            config.with_overrides(
                {param.section: {param.key: value}}, source=f"[tune.space] {param.name} = {value!r}"
            )


@dataclass(frozen=True)
class TuneSettings:
    """The ``[tune]`` table of a tune file: the search space and how the study runs.

    Parameters
    ----------
    trials : int, optional
        The trials the study should hold in all (completed, pruned, or failed by divergence);
        a resumed study runs only the missing ones.
    timeout : float, optional
        Seconds after which this command starts no new trial (the running one finishes).
    metric : str, optional
        The validation score to optimize (its direction is the task's); None: the config's
        ``[early_stopping] monitor``.
    pruner : {"median", "none"}
    pruner_startup_trials : int
        Completed trials before the pruner prunes (Optuna's ``n_startup_trials``).
    pruner_warmup_epochs : int
        The first epochs of each trial, never pruned (Optuna's ``n_warmup_steps`` is this + 1: a
        step is an epoch, counted from 1).
    sampler_startup_trials : int
        Random trials before TPE models the results (TPE's ``n_startup_trials``).
    study_name : str, optional
        The study's name in its storage; :func:`load_tune_config` takes the file's stem.
    space : tuple of SearchParam
        The settings searched (``[tune.space]``).
    """

    trials: int | None = None
    timeout: float | None = None
    metric: str | None = None
    pruner: str = "median"
    pruner_startup_trials: int = 5
    pruner_warmup_epochs: int = 0
    sampler_startup_trials: int = 10
    study_name: str | None = None
    space: tuple[SearchParam, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        with config_section("tune"):
            if self.trials is not None:
                check_positive_int("trials", self.trials)
            if self.timeout is not None:
                set_frozen(self, "timeout", check_positive_float("timeout", self.timeout))
            for key in ("metric", "study_name"):
                value = getattr(self, key)
                if value is not None and (not isinstance(value, str) or not value):
                    raise ValueError(f"{key} must be a non-empty string or absent, got {value!r}")
            check_choice("pruner", self.pruner, PRUNERS)
            for key in ("pruner_startup_trials", "pruner_warmup_epochs", "sampler_startup_trials"):
                check_nonnegative_int(key, getattr(self, key))
            set_frozen(self, "space", tuple(self.space))

    def with_options(self, **given: Any) -> TuneSettings:
        """A copy with the options given (``None``: not given) replacing the file's, checked alike."""
        values = {key: value for key, value in given.items() if value is not None}
        return dataclasses.replace(self, **values) if values else self

    @classmethod
    def from_dict(cls, raw: Any, config: Any, *, source: str = "[tune]") -> TuneSettings:
        """The settings of a parsed ``[tune]`` table, its space checked against ``config``.

        Raises
        ------
        ConfigError
            Starting with ``source``: an unknown key (listing the valid ones), an invalid value,
            or a bad search space (:func:`parse_space`).
        """
        try:
            if not isinstance(raw, Mapping):
                raise ConfigError(f"[tune] must be a table of keys, got {raw!r}")
            valid = sorted(f.name for f in fields(cls))
            if unknown := sorted(set(raw) - set(valid)):
                raise ConfigError(f"[tune] unknown key(s) {unknown}; valid keys: {valid}")
            values = dict(raw)
            space = parse_space(values.pop("space", None), config)
            return cls(**values, space=space)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from exc


def load_tune_config(path: str | os.PathLike[str]) -> tuple[Any, TuneSettings]:
    """Read a tune file: the run configuration (as :func:`mlpkit.config.load_config` with the file's
    own task) and its ``[tune]`` table; the study name defaults to the file's stem.

    Raises
    ------
    ConfigError
        Naming the file: what :func:`~mlpkit.config.load_config` refuses, no ``[tune]`` table, or
        what :meth:`TuneSettings.from_dict` refuses.
    """
    path = Path(path)
    config, table = load_config_with_section(path, "tune")
    if table is None:
        raise ConfigError(
            f"{path}: no [tune] table; a tune file is a run config plus [tune] and [tune.space] "
            "(see configs/tune_fashion_mnist.toml)"
        )
    settings = TuneSettings.from_dict(table, config, source=str(path))
    if settings.study_name is None:
        settings = dataclasses.replace(settings, study_name=path.stem)
    return config, settings


# -- best.toml -----------------------------------------------------------------------------------


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"a config value must be finite, got {value!r}")
        return repr(value)  # 0.1, 1e-05: valid TOML floats
    if isinstance(value, str):
        return json.dumps(value)  # JSON's escapes are TOML basic-string escapes
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        items = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None)
        return "{ " + items + " }" if items else "{}"
    raise ValueError(f"cannot write {value!r} ({type(value).__name__}) to TOML")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key)


def to_toml(config: Any, header: str = "") -> str:
    """``config`` as a TOML file that :func:`mlpkit.config.load_config` reads back equal.

    The top-level ``task`` first, then one table per section; ``None`` values are left out (TOML
    has no null, and an absent key is read as its default), and so are the keys the section's
    choices leave unused (:func:`mlpkit.config.unused_keys`: the ViT's keys of an MLP, ``gamma`` of
    a cosine schedule), which must be at their defaults. ``header`` (lines of text) goes first as
    comments.

    Raises
    ------
    ConfigError
        If the file would not read back equal (a ``None`` whose default is not ``None``).

    Examples
    --------
    >>> from mlpkit.config import RunConfig
    >>> text = to_toml(RunConfig().with_overrides({"model": {"hidden_features": [512, 256]}}))
    >>> [line for line in text.splitlines() if line.startswith(("task", "[model]", "hidden", "lr "))]
    ['task = "fashion_mnist"', '[model]', 'hidden_features = [512, 256]', 'lr = 0.1']
    """
    import tomllib

    data = config.to_dict()
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    lines += ([""] if lines else []) + [f"task = {_toml_value(data.pop('task'))}"]
    for section, values in data.items():
        unused = set(unused_keys(getattr(config, section)))
        written = {k: v for k, v in values.items() if v is not None and k not in unused}
        lines += ["", f"[{section}]"] + [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in written.items()]
    text = "\n".join(lines) + "\n"
    again = type(config).from_dict(tomllib.loads(text), source="the written TOML")
    if again != config:
        differ = [
            f"[{section}] {key}"
            for section, values in data.items()
            for key, value in values.items()
            if again.to_dict()[section].get(key) != value
        ]
        raise ConfigError(
            f"this config cannot be written as TOML that repeats it ({', '.join(differ)} would read back "
            "differently); repeat it from its config.json instead"
        )
    return text


# -- the study -----------------------------------------------------------------------------------


def trial_dir(out: str | os.PathLike[str], number: int) -> Path:
    """``OUT/trial-NNNN``: the run directory of trial ``number``."""
    return Path(out) / f"trial-{number:04d}"


@dataclass(frozen=True)
class TuneResult:
    """What :func:`tune` returns; the same facts are in ``out`` (``trials.csv``, ``best.toml``).

    Parameters
    ----------
    out : Path
        The tune directory.
    study_name : str
    storage : str
        The study's database URL (a password in it hidden).
    metric : str
        The validation score optimized.
    direction : {"maximize", "minimize"}
    ran : int
        Trials this call ran.
    counts : dict of str to int
        The study's trials by state: ``complete``, ``pruned``, ``failed`` (diverged, counted),
        ``interrupted`` (failed otherwise, not counted), ``total`` (what counts towards ``trials``).
    best : dict or None
        The best completed trial: ``number``, ``value``, ``params`` (setting -> value), ``run_dir``,
        ``best_epoch``, ``epochs_run`` and the run's ``test_*`` scores; None without one.
    files : tuple of str
        The files written into ``out``.
    """

    out: Path
    study_name: str
    storage: str
    metric: str
    direction: str
    ran: int
    counts: dict[str, int]
    best: dict[str, Any] | None
    files: tuple[str, ...]


def _shown(url: str) -> str:
    """A database URL as it may be printed: any password replaced by ***."""
    return re.sub(r"(://[^/:@]*:)[^/@]*@", r"\1***@", url)


def _open_storage(url: str) -> Any:
    """Optuna's database storage at ``url``; a clear error naming it when it cannot be opened."""
    import optuna

    if "://" not in url:
        raise ConfigError(
            f"--storage must be a database URL such as sqlite:///study.db, got {url!r}"
            + (f" (did you mean 'sqlite:///{url}'?)" if url.endswith(".db") else "")
        )
    from sqlalchemy.exc import ArgumentError  # Optuna's database layer

    try:
        return optuna.storages.RDBStorage(url)
    except (ArgumentError, ImportError, ValueError) as exc:  # an unknown scheme or driver: the URL is wrong
        reason = str(exc).splitlines()[0]
        raise ConfigError(f"cannot open the study storage {_shown(url)!r}: {reason}") from exc
    except Exception as exc:  # SQLAlchemy's errors: no such directory, not writable, not a database
        reason = str(exc).splitlines()[0]
        if "unable to open database file" in reason:
            reason += " (does its directory exist, and may it be written?)"
        raise OutputError(f"cannot open the study storage {_shown(url)!r}: {reason}") from exc


@contextlib.contextmanager
def _optuna_quiet(optuna: Any) -> Iterator[None]:
    """Optuna's own INFO lines off while tune logs one line per trial; restored afterwards."""
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


def _counts(study: Any) -> dict[str, int]:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    counts = {
        "complete": sum(t.state == TrialState.COMPLETE for t in trials),
        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "failed": sum("diverged" in t.user_attrs for t in failed),
    }
    counts["interrupted"] = len(failed) - counts["failed"]
    counts["total"] = counts["complete"] + counts["pruned"] + counts["failed"]
    return counts


def _fingerprint(config: Any, space: Sequence[SearchParam], metric: str) -> dict[str, Any]:
    """What a study searches; a resumed study must search the same."""
    recorded = task_for(config).recorded().to_dict()
    params = [dataclasses.asdict(p) | {"choices": p.labels() if p.choices else None} for p in space]
    return json.loads(json.dumps({"config": recorded, "space": params, "metric": metric}))


def _check_same_study(study: Any, fingerprint: dict[str, Any], url: str) -> None:
    saved = study.user_attrs.get(_STUDY_ATTR)
    if saved is None:
        if study.get_trials(deepcopy=False):
            raise ConfigError(
                f"study {study.study_name!r} in {_shown(url)} was not made by mlpkit tune; "
                "choose another --study-name"
            )
        study.set_user_attr(_STUDY_ATTR, fingerprint)
        return
    if saved == fingerprint:
        return
    changes = []
    for part in ("metric", "space"):
        if saved.get(part) != fingerprint[part]:
            changes.append(part)
    before, now = saved.get("config", {}), fingerprint["config"]
    for section, values in now.items():
        if isinstance(values, dict):
            changes += [
                f"[{section}] {key}: {before.get(section, {}).get(key)!r} -> {value!r}"
                for key, value in values.items()
                if before.get(section, {}).get(key) != value
            ]
    raise ConfigError(
        f"study {study.study_name!r} in {_shown(url)} searches another configuration "
        f"({'; '.join(changes[:4]) or 'the task'}); run it with the tune file it was made with, or start "
        "a new study with another --study-name or --out"
    )


def _recover(study: Any) -> None:
    """Trials left running by a process that stopped without telling: failed, and run again first."""
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL)
        study.enqueue_trial(dict(trial.params), user_attrs={"retry_of": trial.number})
        logger.warning(
            "trial %d was left running by an earlier command that stopped: marked failed; its "
            "parameters run again first",
            trial.number,
        )


def _params_text(params: Mapping[str, Any]) -> str:
    def shown(value: Any) -> str:
        return f"{value:.4g}" if isinstance(value, float) else json.dumps(value)

    return "  ".join(f"{name} {shown(value)}" for name, value in params.items())


@dataclass
class _Trial:
    """One trial's run: what the epoch hook needs and what it learns."""

    trial: Any
    metric: str
    last_epoch: int
    pruning: bool
    hook: Callable[[Path, Mapping[str, Any]], None] | None
    epoch: int = 0
    value: float | None = None

    def __call__(self, run_dir: Path, record: Mapping[str, Any]) -> None:
        import optuna

        self.epoch = record["epoch"]
        value = record.get(self.metric)
        if value is None:
            raise ConfigError(
                f"the run has no {self.metric} (no validation split?): mlpkit tune selects on the "
                "validation split, never the test split"
            )
        self.value = float(value)
        self.trial.report(self.value, self.epoch)
        if self.hook is not None:
            self.hook(run_dir, record)
        # At the last epoch the work is done: the trial completes with its score.
        if self.pruning and self.epoch < self.last_epoch and self.trial.should_prune():
            raise optuna.TrialPruned(f"{self.metric} {self.value:.4f} after epoch {self.epoch}")


def _write_pruned_summary(run_dir: Path, state: _Trial, task: Any, study_name: str) -> None:
    """A pruned trial's ``summary.json``: why it stopped; no test score (it was never scored).

    It states no ``epochs_run``, so ``--resume`` of the directory trains it to the end (the
    runner takes a summary that names the checkpoint's epochs as a finished run).
    """
    summary: dict[str, Any] = {
        "status": "pruned",
        "stop_reason": (
            f"pruned by Optuna's median pruner after epoch {state.epoch}: {state.metric} "
            f"{state.value:.4f} was worse than the median of the completed trials at that epoch "
            f"(study {study_name!r}, trial {state.trial.number}); --resume trains it to the end"
        ),
        "pruned_after_epoch": state.epoch,
        state.metric: state.value,
        "study": study_name,
        "trial": state.trial.number,
    }
    summary |= {f"test_{name}": None for name in task.test_scores}
    atomic_write_json(run_dir / SUMMARY_FILE, summary)


def tune(
    config: Any,
    settings: TuneSettings,
    *,
    out: str | os.PathLike[str] | None = None,
    storage: str | None = None,
    progress: bool = False,
    command: Sequence[str] | None = None,
    on_epoch_end: Callable[[Path, Mapping[str, Any]], None] | None = None,
) -> TuneResult:
    """Search ``settings.space`` around ``config`` with Optuna, each trial a run in ``OUT/trial-NNNN``.

    Parameters
    ----------
    config : RunConfig, CTRConfig or TableConfig
        The run every trial starts from; the trial's values replace its settings.
    settings : TuneSettings
        The space, the number of trials and/or the timeout, the metric, pruner and sampler.
    out : str or os.PathLike, optional
        The tune directory; default ``runs/tune-<study name>``. An existing one continues its
        study.
    storage : str, optional
        A database URL for the study (``sqlite:///study.db``, ``postgresql://...``); default
        ``sqlite:///OUT/study.db``.
    progress : bool
        A progress bar per trial.
    command : sequence of str, optional
        The command line, recorded in each trial's ``summary.json``.
    on_epoch_end : callable, optional
        ``on_epoch_end(run_dir, record)`` after each epoch of each trial, once Optuna has its score
        (an exception it raises stops the trial and the study, as it would stop a run).

    Returns
    -------
    TuneResult

    Raises
    ------
    ConfigError
        Before any trial: no ``trials`` nor ``timeout``, a metric that is not a validation score of
        the task, a bad space, a storage URL that is not one, a study that searches another
        configuration. During the study: a trial's combination of values that the config refuses.
    OutputError
        ``out`` cannot be written, holds trials of another study, or the storage cannot be opened.
    """
    optuna = require("optuna", feature="mlpkit tune")
    require("pandas", feature="mlpkit tune's trials.csv")
    from optuna.trial import TrialState

    from mlpkit.run import train_run

    task = task_for(config)
    valid = sorted(name for name in task.monitor_modes if name.startswith("val_"))
    metric = settings.metric or config.early_stopping.monitor
    with config_section("tune"):
        check_choice("metric", metric, valid)  # the test split never selects
    if getattr(config.data, "val_size", None) == 0:
        raise ConfigError(
            "[data] val_size is 0: mlpkit tune selects on the validation split, so it needs one"
        )
    if settings.trials is None and settings.timeout is None:
        raise ConfigError(
            "the study needs an end: give --trials N or --timeout S (or [tune] trials / timeout)"
        )
    check_space(settings.space, config)
    if not settings.space:
        raise ConfigError("[tune.space] is empty: name at least one setting to search")
    direction = "maximize" if task.monitor_modes[metric] == "max" else "minimize"
    study_name = settings.study_name or config.name
    if config.run.name is None:  # named, so that best.toml (which cannot say None) repeats config.json
        config = config.with_overrides({"run": {"name": config.name}})
    fingerprint = _fingerprint(config, settings.space, metric)

    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", study_name).strip("-.") or "study"
    out = Path(out) if out is not None else Path("runs") / f"tune-{safe}"
    created = not out.exists()
    ensure_writable_dir(out)
    url = storage or f"sqlite:///{(out / STUDY_FILE).resolve()}"
    try:
        with _optuna_quiet(optuna):
            study = optuna.create_study(
                storage=_open_storage(url), study_name=study_name, direction=direction, load_if_exists=True
            )
            _check_same_study(study, fingerprint, url)
    except BaseException:
        remove_if_unused(out, created)
        raise
    if not study.get_trials(deepcopy=False) and (taken := sorted(p.name for p in out.glob("trial-*"))):
        raise OutputError(
            f"{out} holds trials of another study ({', '.join(taken[:3])}); nothing was changed. Choose "
            "another --out, or the --storage and --study-name they belong to"
        )

    by_name = {p.name: p for p in settings.space}
    state = {"ran": 0}

    def run_one(trial: Any, counted: int) -> None:
        params = {p.name: p.suggest(trial) for p in settings.space}
        run_dir = trial_dir(out, trial.number)
        trial.set_user_attr("run_dir", str(run_dir.resolve()))
        overrides: dict[str, dict[str, Any]] = {"run": {"out": str(run_dir)}}
        for p in settings.space:
            overrides.setdefault(p.section, {})[p.key] = params[p.name]
        try:
            trial_config = config.with_overrides(overrides, source=f"trial {trial.number}")
        except ConfigError as exc:
            study.tell(trial, state=TrialState.FAIL)
            raise ConfigError(
                f"{exc}; the search space lets settings combine in a way the config refuses: narrow it"
            ) from exc
        of = f" of {settings.trials}" if settings.trials is not None else ""
        line = f"trial {trial.number} ({counted + 1}{of}): {_params_text(params)}"
        hook = _Trial(trial, metric, trial_config.optim.epochs, settings.pruner != "none", on_epoch_end)
        state["ran"] += 1
        try:
            result = train_run(trial_config, progress=progress, command=command, on_epoch_end=hook)
        except optuna.TrialPruned:
            _write_pruned_summary(run_dir, hook, task, study_name)
            study.tell(trial, state=TrialState.PRUNED)
            logger.info("%s -> pruned after epoch %d (%s %.4f)", line, hook.epoch, metric, hook.value)
            return
        except TrainingDivergedError as exc:
            trial.set_user_attr("diverged", str(exc))
            study.tell(trial, state=TrialState.FAIL)
            logger.warning("%s -> failed: %s", line, exc)
            return
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)
            study.tell(trial, state=TrialState.FAIL)
            study.enqueue_trial(dict(trial.params), user_attrs={"retry_of": trial.number})
            logger.warning("%s -> interrupted; its parameters run first when the study continues", line)
            raise
        except BaseException:
            study.tell(trial, state=TrialState.FAIL)
            raise
        records = result.history.records
        epoch = result.history.best_epoch if trial_config.early_stopping.restore_best else len(records)
        value = float(records[epoch - 1][metric])
        summary = result.summary
        trial.set_user_attr("best_epoch", epoch)
        trial.set_user_attr("epochs_run", len(records))
        for name in task.test_scores:
            trial.set_user_attr(f"test_{name}", summary.get(f"test_{name}"))
        previous = _best_value(study)
        study.tell(trial, value)
        better = previous is None or (value > previous if direction == "maximize" else value < previous)
        logger.info(
            "%s -> %s %.4f (epoch %d of %d, %.1f s)%s",
            line,
            metric,
            value,
            epoch,
            len(records),
            summary.get("wall_seconds", 0.0),
            "  best so far" if better else "",
        )

    with _optuna_quiet(optuna):
        _recover(study)
        counts = _counts(study)
        study.sampler = optuna.samplers.TPESampler(
            seed=config.run.seed + len(study.get_trials(deepcopy=False)),
            n_startup_trials=settings.sampler_startup_trials,
        )
        study.pruner = (
            # Optuna may prune from step n_warmup_steps on; the steps here are epochs, from 1.
            optuna.pruners.MedianPruner(
                n_startup_trials=settings.pruner_startup_trials,
                n_warmup_steps=settings.pruner_warmup_epochs + 1,
            )
            if settings.pruner == "median"
            else optuna.pruners.NopPruner()
        )
        if counts["total"]:
            logger.info(
                "continuing study %r in %s: %d trials so far (%d complete, %d pruned, %d failed)",
                study_name,
                _shown(url),
                counts["total"],
                counts["complete"],
                counts["pruned"],
                counts["failed"],
            )
        else:
            logger.info("study %r in %s: %s %s", study_name, _shown(url), direction, metric)
        start = time.monotonic()
        files: tuple[str, ...] = ()
        try:
            while True:
                counted = _counts(study)["total"]
                if settings.trials is not None and counted >= settings.trials:
                    if state["ran"] == 0:
                        logger.info(
                            "the study holds %d of %d trials: nothing to run (a larger --trials runs more)",
                            counted,
                            settings.trials,
                        )
                    break
                if settings.timeout is not None and time.monotonic() - start >= settings.timeout:
                    logger.info("timeout: %.0f s passed, no new trial starts", settings.timeout)
                    break
                run_one(study.ask(), counted)
                _write_tables(study, out, by_name, metric)
        finally:
            files = _write_outputs(study, out, by_name, metric)
    best = _best(study, by_name)
    return TuneResult(
        out, study_name, _shown(url), metric, direction, state["ran"], _counts(study), best, files
    )


def _best_value(study: Any) -> float | None:
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    return float(study.best_value)


def _best(study: Any, by_name: Mapping[str, SearchParam]) -> dict[str, Any] | None:
    if _best_value(study) is None:
        return None
    trial = study.best_trial
    attrs = trial.user_attrs
    params = {
        name: by_name[name].value_of(value) if name in by_name else value
        for name, value in trial.params.items()
    }
    best = {
        "number": trial.number,
        "value": trial.value,
        "params": params,
        "run_dir": attrs.get("run_dir"),
        "best_epoch": attrs.get("best_epoch"),
        "epochs_run": attrs.get("epochs_run"),
    }
    return best | {k: v for k, v in attrs.items() if k.startswith("test_")}


def _write_tables(study: Any, out: Path, by_name: Mapping[str, SearchParam], metric: str) -> list[str]:
    """``trials.csv`` and ``best.toml`` (when a trial has completed); the names written."""
    written = [TRIALS_FILE]
    frame = study.trials_dataframe(
        attrs=(
            "number",
            "state",
            "value",
            "datetime_start",
            "datetime_complete",
            "duration",
            "params",
            "user_attrs",
        )
    )
    atomic_write_text(out / TRIALS_FILE, frame.to_csv(index=False))
    best = _best(study, by_name)
    if best is None:
        return written
    run_dir = trial_dir(out, best["number"])  # where it is now, should OUT have moved
    best_config = load_config(run_dir / CONFIG_FILE, task=None)
    tests = "  ".join(f"{k} {v:.4f}" for k, v in best.items() if k.startswith("test_") and v is not None)
    header = (
        f"The best trial of study {study.study_name!r} (mlpkit tune): trial {best['number']}, "
        f"in {run_dir.name}/\n"
        f"Selected on the validation split: {metric} {best['value']:.4f} at epoch {best['best_epoch']}\n"
        f"Reported, never used to select: {tests or 'no test score'}\n"
        f"Its searched values: {_params_text(best['params'])}\n"
        f"Repeat it: mlpkit {'ctr train' if best_config.task == 'ctr' else 'train'} --config {BEST_FILE}"
    )
    atomic_write_text(out / BEST_FILE, to_toml(best_config, header))
    return [*written, BEST_FILE]


def _write_outputs(study: Any, out: Path, by_name: Mapping[str, SearchParam], metric: str) -> tuple[str, ...]:
    """The tables, then Optuna's figures (when matplotlib is there and trials have completed)."""
    from optuna.trial import TrialState

    written = _write_tables(study, out, by_name, metric)
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if importlib.util.find_spec("matplotlib") is None:
        logger.warning(
            "matplotlib is not installed: no %s or %s (pip install 'mlpkit[tune]')",
            HISTORY_FILE,
            IMPORTANCE_FILE,
        )
        return tuple(written)
    if completed:
        _plot(lambda vis: vis.plot_optimization_history(study, target_name=metric), out / HISTORY_FILE)
        written.append(HISTORY_FILE)
    if len(completed) < 2:
        logger.info(
            "no %s: parameter importances need 2 completed trials, the study has %d",
            IMPORTANCE_FILE,
            len(completed),
        )
        return tuple(written)
    import optuna
    from optuna.importance import PedAnovaImportanceEvaluator

    # PED-ANOVA compares the best trials with all of them; with few trials both are the same set,
    # and it warns that every importance is equal: then there is nothing to plot yet.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        optuna.importance.get_param_importances(study, evaluator=PedAnovaImportanceEvaluator())
    if notes := [
        str(w.message)
        for w in caught
        if issubclass(w.category, UserWarning)
        and not issubclass(w.category, optuna.exceptions.ExperimentalWarning)
    ]:
        logger.info("no %s yet, with %d completed trials: %s", IMPORTANCE_FILE, len(completed), notes[0])
        return tuple(written)
    _plot(
        lambda vis: vis.plot_param_importances(
            study, evaluator=PedAnovaImportanceEvaluator(), target_name=metric
        ),
        out / IMPORTANCE_FILE,
    )
    return (*written, IMPORTANCE_FILE)


def _plot(draw: Callable[[Any], Any], path: Path) -> None:
    """One of Optuna's matplotlib figures, written atomically.

    Optuna's plots go through pyplot and switch on the ggplot style for the whole process: the
    style is undone (``rc_context``) and the figure closed, so the run's own figures stay as they are.
    Its long parameter names and its legend outside the axes need the figure's tight bounding box.
    """
    import matplotlib
    import matplotlib.pyplot as plt
    from optuna.exceptions import ExperimentalWarning
    from optuna.visualization import matplotlib as vis

    with matplotlib.rc_context(), warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)  # Optuna marks its matplotlib plots experimental
        axes = draw(vis)
        figure = axes.figure
        try:
            with atomic_path(path) as tmp:
                figure.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
        finally:
            plt.close(figure)
