"""Run configuration: defaults are the classic recipe, files are checked key by key, errors name the file."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from mlpkit.config import (
    OPTIMIZERS,
    EarlyStoppingConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    RunSettings,
    load_config,
)
from mlpkit.engine import OPTIMIZERS as ENGINE_OPTIMIZERS
from mlpkit.errors import ConfigError

CLASSIC = Path(__file__).resolve().parents[1] / "configs" / "classic.toml"


def write(tmp_path: Path, text: str, name: str = "exp.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_are_the_classic_recipe() -> None:
    config = RunConfig()
    assert config.model.to_spec(784, 10).linear_shapes() == {
        "0.weight": (256, 784),
        "0.bias": (256,),
        "2.weight": (10, 256),
        "2.bias": (10,),
    }
    assert (config.model.activation, config.model.init, config.model.init_std) == ("relu", "normal", 0.01)
    assert (config.optim.optimizer, config.optim.lr, config.optim.batch_size, config.optim.epochs) == (
        "sgd",
        0.1,
        256,
        10,
    )
    assert config.early_stopping.patience is None
    assert config.run.seed == 0 and config.run.engine == "numpy" and config.run.device == "cpu"


def test_classic_toml_spells_out_the_defaults() -> None:
    config = load_config(CLASSIC)
    assert config.run.name == "classic"
    assert dataclasses.replace(config, run=dataclasses.replace(config.run, name=None)) == RunConfig()


def test_config_names_the_optimizers_the_engine_has() -> None:
    assert set(OPTIMIZERS) == set(ENGINE_OPTIMIZERS)


def test_to_dict_round_trips_through_json() -> None:
    config = RunConfig(
        model=ModelConfig(hidden_features=(64, 32), activation=("relu", "tanh"), dropout=(0.1, 0.0)),
        optim=OptimConfig(optimizer="sgd", momentum=0.9, nesterov=True),
        early_stopping=EarlyStoppingConfig(patience=3, monitor="val_accuracy"),
        run=RunSettings(seed=7, dtype="float64"),
    )
    assert RunConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_json_config_loads_by_suffix(tmp_path: Path) -> None:
    config = RunConfig().with_overrides({"optim": {"lr": 0.05}, "run": {"name": "x"}})
    path = write(tmp_path, json.dumps(config.to_dict()), "config.json")
    assert load_config(path) == config


def test_toml_values_are_normalised(tmp_path: Path) -> None:
    path = write(tmp_path, "[model]\nhidden_features = [128, 64]\ndropout = [0, 0.5]\n[optim]\nlr = 1\n")
    config = load_config(path)
    assert config.model.hidden_features == (128, 64)
    assert config.model.dropout == (0.0, 0.5)
    assert config.optim.lr == 1.0 and isinstance(config.optim.lr, float)
    assert config.name == "exp"  # the file's stem


def test_name_is_derived_from_the_model_when_not_given() -> None:
    assert RunConfig().name == "mlp256-sgd"
    assert RunConfig().with_overrides({"model": {"hidden_features": []}}).name == "mlplinear-sgd"


def test_unknown_key_lists_the_valid_ones_and_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[optim]\nlearning_rate = 0.1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: [optim] unknown key(s) ['learning_rate']; valid keys: ")
    assert "'batch_size', 'epochs', 'lr', 'momentum', 'nesterov', 'optimizer', 'weight_decay'" in message


def test_unknown_section_and_a_key_outside_its_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown section\(s\) \['trainer'\]; valid sections: \['data', "):
        load_config(write(tmp_path, "[trainer]\nepochs = 3\n"))
    with pytest.raises(ConfigError, match=r"unknown section\(s\) \['seed'\] \('seed' belongs in \[run\]\)"):
        load_config(write(tmp_path, "seed = 3\n"))


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            '[model]\nactivation = "swish"',
            r"\[model\] activation must be one of \['gelu', .*'tanh'\], got 'swish'",
        ),
        (
            '[model]\nactivation = ["relu", "tanh"]',
            r"\[model\] activation must be one value or one per hidden layer \(1\), got 2",
        ),
        (
            "[model]\nhidden_features = 256",
            r"\[model\] hidden_features must be a list of positive ints, got 256",
        ),
        ("[model]\nhidden_features = [0]", r"\[model\] hidden_features must be a positive int, got 0"),
        ("[model]\ndropout = 1.0", r"\[model\] dropout must be a float in \[0, 1\), got 1.0"),
        ("[optim]\nlr = -0.1", r"\[optim\] lr must be a positive float, got -0.1"),
        ('[optim]\nlr = "0.1"', r"\[optim\] lr must be a positive float, got '0.1'"),
        ("[optim]\nepochs = 2.5", r"\[optim\] epochs must be a positive int, got 2.5"),
        (
            '[optim]\noptimizer = "rmsprop"',
            r"\[optim\] optimizer must be one of \['adam', 'adamw', 'sgd'\], got 'rmsprop'",
        ),
        (
            '[optim]\noptimizer = "adam"\nmomentum = 0.9',
            r"momentum and nesterov apply to optimizer 'sgd' only",
        ),
        ("[optim]\nnesterov = true", r"\[optim\] nesterov needs momentum > 0"),
        ('[optim]\nnesterov = "yes"', r"\[optim\] nesterov must be true or false, got 'yes'"),
        (
            "[early_stopping]\npatience = -1",
            r"\[early_stopping\] patience must be a non-negative int, got -1",
        ),
        (
            '[early_stopping]\nmonitor = "test_accuracy"',
            r"monitor must be one of \['val_accuracy', 'val_loss'\]",
        ),
        ("[data]\nval_size = -5", r"\[data\] val_size must be a non-negative int, got -5"),
        ('[run]\ndtype = "float16"', r"\[run\] dtype must be one of \['float32', 'float64'\], got 'float16'"),
        ('[run]\nengine = "jax"', r"\[run\] engine must be one of \['numpy'\], got 'jax'"),
        ('[run]\ndevice = "cuda"', r"\[run\] device must be 'cpu' for engine 'numpy', got 'cuda'"),
        ("optim = 3", r"\[optim\] must be a table of keys, got 3"),
    ],
)
def test_invalid_values_name_the_file_section_key_and_value(tmp_path: Path, toml: str, message: str) -> None:
    path = write(tmp_path, toml + "\n")
    with pytest.raises(ConfigError, match=re.escape(str(path)) + ": .*" + message):
        load_config(path)


def test_patience_zero_turns_early_stopping_off() -> None:
    assert EarlyStoppingConfig(patience=0).patience is None
    assert EarlyStoppingConfig(patience=2).patience == 2


def test_direct_construction_raises_config_error_naming_the_section() -> None:
    with pytest.raises(ConfigError, match=r"^\[optim\] batch_size must be a positive int, got 0$"):
        OptimConfig(batch_size=0)


def test_overrides_go_through_the_same_checks() -> None:
    config = RunConfig().with_overrides(
        {"model": {"hidden_features": [512, 256], "activation": ["relu", "tanh"]}}
    )
    assert config.model.hidden_features == (512, 256) and config.model.activation == ("relu", "tanh")
    with pytest.raises(
        ConfigError, match=r"^command-line options: \[model\] activation must be one of .* got 'swish'"
    ):
        RunConfig().with_overrides({"model": {"activation": "swish"}})
    with pytest.raises(
        ConfigError, match=r"^command-line options: \[optim\] unknown key\(s\) \['learning_rate'\]"
    ):
        RunConfig().with_overrides({"optim": {"learning_rate": 1}})


def test_optimizer_kwargs_fit_the_optimizer() -> None:
    assert OptimConfig(momentum=0.9).optimizer_kwargs() == {
        "lr": 0.1,
        "weight_decay": 0.0,
        "momentum": 0.9,
        "nesterov": False,
    }
    assert OptimConfig(optimizer="adamw", lr=1e-3, weight_decay=0.01).optimizer_kwargs() == {
        "lr": 1e-3,
        "weight_decay": 0.01,
    }


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("exp.yaml", "a: 1", r"exp.yaml: unsupported config file type '.yaml'; use .toml"),
        ("bad.toml", "[model\n", r"bad.toml: invalid TOML: "),
        ("bad.json", "{", r"bad.json: invalid JSON: "),
        ("list.json", "[1, 2]", r"list.json: expected a table of sections"),
    ],
)
def test_unreadable_files_are_config_errors(tmp_path: Path, name: str, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text, name))


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=rf"{re.escape(str(tmp_path / 'none.toml'))}: no such config file"):
        load_config(tmp_path / "none.toml")
