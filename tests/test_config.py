"""Run configuration: defaults are the classic recipe, files are checked key by key, errors name the file."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from mlpkit.config import (
    DEVICES,
    OPTIMIZERS,
    SCHEDULES,
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
    assert (
        "'batch_size', 'epochs', 'factor', 'gamma', 'grad_clip_norm', 'lr', 'min_lr', 'momentum'," in message
    )


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
        ('[run]\nengine = "jax"', r"\[run\] engine must be one of \['numpy', 'torch'\], got 'jax'"),
        ('[run]\ndevice = "cuda"', r"\[run\] device must be 'cpu' for engine 'numpy', got 'cuda'"),
        ('[run]\nengine = "torch"\nautocast = "bf17"',
         r"\[run\] autocast must be one of \['bf16', 'none'\], got 'bf17' \(did you mean 'bf16'\?\)"),
        ('[run]\nautocast = "bf16"', r"\[run\] autocast 'bf16' needs engine 'torch' \(--engine torch\)"),
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


def test_a_directory_is_named_as_such(tmp_path: Path) -> None:
    # A run directory passed where its config.json was meant: say so, not "unsupported type ''".
    with pytest.raises(ConfigError, match=rf"{re.escape(str(tmp_path))} is a directory, not a config file"):
        load_config(tmp_path)


# -- engines, devices, schedules, gradient clipping, augmentation (issue 4) --------------------------

CLASSIC_TORCH = CLASSIC.with_name("classic_torch.toml")


def test_config_names_the_schedules_the_trainers_have() -> None:
    from mlpkit.train.schedules import SCHEDULES as TRAIN_SCHEDULES

    assert set(SCHEDULES) == set(TRAIN_SCHEDULES)


def test_config_names_the_devices_the_torch_engine_resolves() -> None:
    pytest.importorskip("torch")
    from mlpkit.train.device import DEVICE_NAMES

    assert set(DEVICES) == set(DEVICE_NAMES)


def test_config_names_the_autocast_modes_the_torch_trainer_has() -> None:
    pytest.importorskip("torch")
    from mlpkit.config import AUTOCASTS
    from mlpkit.train.torch_trainer import AUTOCASTS as TRAINER_AUTOCASTS

    assert AUTOCASTS == TRAINER_AUTOCASTS


def test_classic_torch_toml_is_the_classic_recipe_on_the_torch_engine() -> None:
    classic, on_torch = load_config(CLASSIC), load_config(CLASSIC_TORCH)
    assert on_torch.run.engine == "torch" and on_torch.run.device == "auto"
    assert on_torch.run.name == "classic_torch"
    same_run = dataclasses.replace(on_torch.run, engine="numpy", device="cpu", name="classic")
    assert dataclasses.replace(on_torch, run=same_run) == classic


def test_new_keys_round_trip_and_old_config_json_files_still_load(tmp_path: Path) -> None:
    config = RunConfig().with_overrides(
        {
            "optim": {
                "schedule": "plateau",
                "min_lr": 1e-4,
                "factor": 0.5,
                "schedule_patience": 2,
                "grad_clip_norm": 1,
            },
            "run": {"engine": "torch", "device": "cuda:1"},
        }
    )
    assert config.optim.grad_clip_norm == 1.0 and isinstance(config.optim.grad_clip_norm, float)
    assert RunConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    # A config.json written before these keys existed: every missing key takes its default.
    old = RunConfig().to_dict()
    for section, keys in {"optim": _NEW_OPTIM_KEYS, "data": ("augment", "max_shift", "flip_p")}.items():
        for key in keys:
            del old[section][key]
    assert load_config(write(tmp_path, json.dumps(old), "config.json")) == RunConfig()


_NEW_OPTIM_KEYS = (
    "schedule",
    "min_lr",
    "gamma",
    "step_size",
    "factor",
    "schedule_patience",
    "grad_clip_norm",
)


@pytest.mark.parametrize(
    ("optim", "expected"),
    [
        ({}, None),
        ({"schedule": "step", "step_size": 3}, {"step_size": 3}),
        ({"schedule": "step", "gamma": 0.5}, {"step_size": 10, "gamma": 0.5}),
        ({"schedule": "exponential"}, {}),
        ({"schedule": "cosine", "epochs": 7, "min_lr": 0.01}, {"epochs": 7, "min_lr": 0.01}),
        (
            {"schedule": "plateau", "factor": 0.5, "schedule_patience": 1},
            {"mode": "max", "factor": 0.5, "patience": 1, "min_lr": 0.0},
        ),
    ],
)
def test_schedule_kwargs_build_the_schedule(
    optim: dict[str, object], expected: dict[str, object] | None
) -> None:
    from mlpkit.train.schedules import make_schedule

    config = OptimConfig(**optim)  # type: ignore[arg-type]
    kwargs = config.schedule_kwargs(mode="max")
    assert kwargs == (expected if expected is not None else {})
    schedule = make_schedule(config.schedule, config.lr, **kwargs)
    assert schedule.name == config.schedule and schedule.lr == config.lr


def test_cosine_anneals_over_the_configured_epochs() -> None:
    from mlpkit.train.schedules import make_schedule

    optim = OptimConfig(schedule="cosine", lr=0.1, min_lr=0.001, epochs=4)
    schedule = make_schedule(optim.schedule, optim.lr, **optim.schedule_kwargs())
    lrs = [schedule.lr] + [schedule.step() for _ in range(5)]
    # After t steps (t from 0, T = epochs = 4): lr_t = min_lr + (lr - min_lr)(1 + cos(π t / T)) / 2,
    # held at min_lr for t > T. With lr - min_lr = 0.099: (1 + cos(π t / 4)) / 2 is 1, (2 + √2) / 4,
    # 1/2, (2 - √2) / 4, 0, 0 for t = 0..5. A period other than 4 moves every middle value.
    root2 = 2**0.5
    expected = [0.1, 0.001 + 0.099 * (2 + root2) / 4, 0.0505, 0.001 + 0.099 * (2 - root2) / 4, 0.001, 0.001]
    assert lrs == pytest.approx(expected, rel=1e-12)
    assert lrs == pytest.approx([0.1, 0.08550178, 0.0505, 0.01549821, 0.001, 0.001], rel=1e-6)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            '[run]\nengine = "torch"\ndevice = "tpu"',
            r"\[run\] device must be one of \['auto', 'cpu', 'cuda'\] or 'cuda:N', got 'tpu'",
        ),
        ('[run]\nengine = "torch"\ndevice = "cuda:x"', r"device must be one of .* or 'cuda:N', got 'cuda:x'"),
        (
            '[run]\ndevice = "cuda:0"',
            r"device must be 'cpu' for engine 'numpy', got 'cuda:0'.*--engine torch",
        ),
        (
            '[optim]\nschedule = "linear"',
            r"\[optim\] schedule must be one of \['constant', 'cosine', 'exponential', 'plateau', 'step'\], "
            r"got 'linear'",
        ),
        (
            "[optim]\nmin_lr = 0.001",
            r"\[optim\] min_lr applies to schedule 'cosine' or 'plateau' only, got min_lr=0.001 "
            r"with schedule 'constant'",
        ),
        (
            '[optim]\nschedule = "cosine"\ngamma = 0.5',
            r"gamma applies to schedule 'step' or 'exponential' only, got gamma=0.5 with schedule 'cosine'",
        ),
        (
            '[optim]\nschedule = "step"\nschedule_patience = 3',
            r"schedule_patience applies to schedule 'plateau' only",
        ),
        (
            '[optim]\nschedule = "cosine"\nlr = 0.01\nmin_lr = 0.01',
            r"\[optim\] min_lr must be smaller than lr, got min_lr=0.01 with lr=0.01",
        ),
        (
            '[optim]\nschedule = "plateau"\nfactor = 1.0',
            r"\[optim\] factor must be a float in \(0, 1\), got 1.0",
        ),
        ('[optim]\nschedule = "plateau"\nfactor = 0', r"\[optim\] factor must be a positive float, got 0"),
        ('[optim]\nschedule = "step"\nstep_size = 0', r"\[optim\] step_size must be a positive int, got 0"),
        ('[optim]\nschedule = "step"\ngamma = -1', r"\[optim\] gamma must be a positive float, got -1"),
        (
            '[optim]\ngrad_clip_norm = 0\n[run]\nengine = "torch"',
            r"\[optim\] grad_clip_norm must be a positive float, got 0",
        ),
        (
            "[optim]\ngrad_clip_norm = 1.0",
            r"\[optim\] grad_clip_norm needs engine 'torch' .*got grad_clip_norm=1 with engine 'numpy'",
        ),
        (
            '[data]\naugment = "mixup"',
            r"\[data\] augment must be one of \['none', 'shift_flip'\], got 'mixup'",
        ),
        (
            "[data]\nmax_shift = 4",
            r"\[data\] max_shift applies to augment 'shift_flip' only, got max_shift=4 with augment 'none'",
        ),
        (
            '[data]\naugment = "shift_flip"\nflip_p = 1.5',
            r"\[data\] flip_p must be a float in \[0, 1\], got 1.5",
        ),
    ],
)
def test_invalid_engine_schedule_and_augment_settings_are_named(
    tmp_path: Path, toml: str, message: str
) -> None:
    path = write(tmp_path, toml + "\n")
    with pytest.raises(ConfigError, match=re.escape(str(path)) + ": .*" + message):
        load_config(path)


def test_settings_for_the_engine_and_device_that_are_valid() -> None:
    assert RunSettings(device="auto").device == "auto"  # the NumPy engine's CPU
    for device in ("auto", "cpu", "cuda", "cuda:3"):
        assert RunSettings(engine="torch", device=device).device == device
    config = RunConfig().with_overrides(
        {"data": {"augment": "shift_flip", "max_shift": 3, "flip_p": 1}, "optim": {"schedule": "step"}}
    )
    assert config.data.flip_p == 1.0 and config.optim.schedule_kwargs() == {"step_size": 10}


def test_augmentation_is_a_setting_of_either_engine(tmp_path: Path) -> None:
    path = write(tmp_path, '[data]\naugment = "shift_flip"\nmax_shift = 2\n[run]\nengine = "torch"\n')
    config = load_config(path)
    assert (config.run.engine, config.data.augment, config.data.max_shift) == ("torch", "shift_flip", 2)
