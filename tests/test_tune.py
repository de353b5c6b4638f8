"""``mlpkit tune``: Optuna studies whose trials are run directories, on generated data only.

Each trial of the small studies here trains a 784-16-10 MLP for two epochs on the 240 training
images of tests/fakedata.py (about a second), or a small DeepFM on a generated CTR table.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from fakedata import run_cli, write_ctr_tables, write_fake_fashion_mnist
from mlpkit.config import CTRConfig, RunConfig, load_config
from mlpkit.errors import ConfigError, OutputError
from mlpkit.run import resume_run
from mlpkit.tune import SearchParam, TuneSettings, load_tune_config, to_toml, tune

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# lr 0.3 learns the planted classes within an epoch (validation accuracy 0.45 to 1); lr 1e-6 stays
# near chance, so the median pruner, on from the first completed trial, prunes such a trial after
# epoch 1 once the completed trials' median is a learning one. Seed 1 draws lr 1e-6 first (it
# completes: nothing to compare with), then lr 0.3, then lr 1e-6 again.
TINY = """
[model]
hidden_features = [16]

[optim]
lr = 0.3
batch_size = 10
epochs = 2

[early_stopping]
monitor = "val_accuracy"

[data]
data_dir = "{data_dir}"
val_size = 60
download = false
verify = false

[run]
seed = {seed}

[tune]
trials = 4
pruner_startup_trials = 1
{tune}

[tune.space]
{space}
"""
SPACE = """\
"optim.lr" = { choices = [0.3, 1e-6] }
"model.hidden_features" = { choices = [[32], [64]] }
"""


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_fashion_mnist(tmp_path_factory.mktemp("fake-fashion-mnist"))


def write_tune_file(
    path: Path, data_dir: Path, *, space: str = SPACE, tune: str = "", seed: int = 1, **replace: str
) -> Path:
    text = TINY.format(data_dir=data_dir, seed=seed, tune=tune, space=space)
    for old, new in replace.items():
        text = text.replace(old, new)
    path.write_text(text)
    return path


def load_study(out: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'study.db'}")


def snapshot_trials(study: optuna.Study) -> list[tuple[Any, ...]]:
    return [(t.number, t.state, t.value, t.params, t.intermediate_values) for t in study.trials]


def expected_state(trial: FrozenTrial, trials: list[FrozenTrial], *, epochs: int) -> TrialState:
    """Optuna's median rule, written out: pruned at the first epoch before the last at which the
    trial's best score so far is below the median of the completed earlier trials' at that epoch."""
    completed = [t for t in trials if t.number < trial.number and t.state == TrialState.COMPLETE]
    if len(completed) < 1:  # pruner_startup_trials = 1
        return TrialState.COMPLETE
    for epoch in range(1, epochs):
        best_so_far = max(v for e, v in trial.intermediate_values.items() if e <= epoch)
        if best_so_far < statistics.median(t.intermediate_values[epoch] for t in completed):
            return TrialState.PRUNED
    return TrialState.COMPLETE


# -- a study, continued ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def study_run(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """4 trials, then the same command with --trials 6 against the same SQLite file."""
    root = tmp_path_factory.mktemp("tune")
    config = write_tune_file(root / "tiny.toml", data_dir)
    out = root / "out"
    code, stdout, stderr = run_cli("tune", "--config", config, "--out", out, "--no-progress")
    assert code == 0, stderr
    first = snapshot_trials(load_study(out, "tiny"))
    first_best = (out / "best.toml").read_text()
    code2, stdout2, stderr2 = run_cli(
        "tune", "--config", config, "--out", out, "--trials", 6, "--no-progress"
    )
    assert code2 == 0, stderr2
    return {
        "out": out,
        "config": config,
        "first": first,
        "first_best": first_best,
        "stdout": stdout,
        "stderr": stderr,
        "stdout2": stdout2,
        "stderr2": stderr2,
    }


def test_the_second_command_continues_the_study(study_run: dict[str, Any]) -> None:
    out = study_run["out"]
    study = load_study(out, "tiny")
    assert [t[0] for t in study_run["first"]] == [0, 1, 2, 3]
    assert [t.number for t in study.trials] == [0, 1, 2, 3, 4, 5]
    assert snapshot_trials(study)[:4] == study_run["first"]  # the earlier trials, as they were
    assert "continuing study 'tiny'" in study_run["stderr2"] and "4 trials so far" in study_run["stderr2"]
    assert "trial 4 (5 of 6)" in study_run["stderr2"] and "trial 0 " not in study_run["stderr2"]
    assert "2 run by this command" in study_run["stdout2"] and "6: " in study_run["stdout2"]
    assert sorted(p.name for p in out.glob("trial-*")) == [f"trial-{n:04d}" for n in range(6)]
    assert all(
        json.loads((out / f"trial-{n:04d}" / "config.json").read_text())["run"]["seed"] == 1 for n in range(6)
    )


def test_a_trial_below_the_median_is_marked_pruned(study_run: dict[str, Any]) -> None:
    study = load_study(study_run["out"], "tiny")
    trials = study.trials
    assert [t.state for t in trials] == [expected_state(t, trials, epochs=2) for t in trials]
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned and all(t.params["optim.lr"] == 1e-6 for t in pruned)
    assert all(list(t.intermediate_values) == [1] for t in pruned)  # stopped after epoch 1 of 2
    assert any(t.state == TrialState.COMPLETE for t in trials)


def test_no_trial_is_pruned_in_its_warmup_epochs(data_dir: Path, tmp_path: Path) -> None:
    # The study above, with epoch 1 of 2 protected: its pruned trials now complete.
    path = write_tune_file(tmp_path / "tiny.toml", data_dir, tune="pruner_warmup_epochs = 1")
    config, settings = load_tune_config(path)
    tune(config, settings, out=tmp_path / "out")
    trials = load_study(tmp_path / "out", "tiny").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert [t.params["optim.lr"] for t in trials].count(1e-6) == 3  # pruned without the warmup


def test_a_pruned_trial_leaves_a_clear_resumable_run_directory(study_run: dict[str, Any]) -> None:
    study = load_study(study_run["out"], "tiny")
    trial = next(t for t in study.trials if t.state == TrialState.PRUNED)
    run_dir = Path(trial.user_attrs["run_dir"])
    assert run_dir == (study_run["out"] / f"trial-{trial.number:04d}").resolve()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "pruned" and summary["pruned_after_epoch"] == 1
    assert summary["val_accuracy"] == trial.intermediate_values[1] and summary["test_accuracy"] is None
    assert "median" in summary["stop_reason"] and "--resume" in summary["stop_reason"]
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in metrics] == [1] and metrics[0]["val_accuracy"] == trial.intermediate_values[1]
    assert (run_dir / "model.safetensors").is_file() and (run_dir / "checkpoint.json").is_file()
    assert not (run_dir / "report.md").exists()  # never scored on the test set


def test_a_pruned_trial_resumes_to_the_end(study_run: dict[str, Any], tmp_path: Path) -> None:
    import shutil

    study = load_study(study_run["out"], "tiny")
    trial = next(t for t in study.trials if t.state == TrialState.PRUNED)
    copy = tmp_path / "pruned"
    shutil.copytree(trial.user_attrs["run_dir"], copy)
    result = resume_run(copy)
    assert result.summary["status"] == "completed" and result.summary["epochs_run"] == 2


def test_a_completed_trial_scores_its_best_validation_epoch(study_run: dict[str, Any]) -> None:
    for trial in load_study(study_run["out"], "tiny").trials:
        if trial.state != TrialState.COMPLETE:
            continue
        run_dir = Path(trial.user_attrs["run_dir"])
        summary = json.loads((run_dir / "summary.json").read_text())
        metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        best_epoch = metrics[summary["best_epoch"] - 1]
        assert trial.value == summary["best_val_accuracy"] == best_epoch["val_accuracy"]
        assert trial.intermediate_values == {r["epoch"]: r["val_accuracy"] for r in metrics}
        assert trial.user_attrs["test_accuracy"] == summary["test_accuracy"]  # reported only


def test_best_toml_repeats_the_best_trial(study_run: dict[str, Any], tmp_path: Path) -> None:
    out = study_run["out"]
    study = load_study(out, "tiny")
    best = study.best_trial
    best_dir = out / f"trial-{best.number:04d}"
    text = (out / "best.toml").read_text()
    assert text.startswith(f"# The best trial of study 'tiny' (mlpkit tune): trial {best.number}, in ")
    assert f"# Selected on the validation split: val_accuracy {best.value:.4f}" in text
    assert load_config(out / "best.toml", task=None) == load_config(best_dir / "config.json", task=None)
    code, _, err = run_cli(
        "train", "--config", out / "best.toml", "--out", tmp_path / "again", "--no-progress"
    )
    assert code == 0, err

    def records(run_dir: Path) -> list[dict[str, Any]]:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]

    assert records(tmp_path / "again") == records(best_dir)


def test_the_study_writes_its_table_and_plots(study_run: dict[str, Any]) -> None:
    out = study_run["out"]
    lines = (out / "trials.csv").read_text().splitlines()
    assert lines[0].startswith("number,state,value,") and "params_optim.lr" in lines[0]
    assert len(lines) == 1 + 6 and any(",PRUNED," in line for line in lines)
    for name in ("history.png", "importance.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    stdout = study_run["stdout2"]
    best = load_study(out, "tiny").best_trial
    assert "best trial" in stdout and f"{best.number}: val_accuracy {best.value:.4f}" in stdout
    assert "reported, never used to select" in stdout and "best.toml" in stdout


def test_the_same_command_again_runs_nothing_more(study_run: dict[str, Any]) -> None:
    before = snapshot_trials(load_study(study_run["out"], "tiny"))
    code, stdout, stderr = run_cli(
        "tune", "--config", study_run["config"], "--out", study_run["out"], "--trials", 6, "--no-progress"
    )
    assert code == 0, stderr
    assert "nothing to run" in stderr and "0 run by this command" in stdout
    assert snapshot_trials(load_study(study_run["out"], "tiny")) == before


# -- interruptions ---------------------------------------------------------------------------------


def test_an_interrupted_trial_runs_again_first(data_dir: Path, tmp_path: Path) -> None:
    path = write_tune_file(tmp_path / "tiny.toml", data_dir, tune='pruner = "none"')
    config, settings = load_tune_config(path)
    out = tmp_path / "out"
    seen: list[Path] = []

    def ctrl_c_in_trial_2(run_dir: Path, record: Any) -> None:
        seen.append(run_dir)
        if run_dir.name == "trial-0002":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tune(config, settings, out=out, on_epoch_end=ctrl_c_in_trial_2)
    study = load_study(out, "tiny")
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE] * 2 + [TrialState.FAIL, TrialState.WAITING]
    interrupted = study.trials[2]
    assert interrupted.user_attrs["interrupted"] is True
    assert (out / "best.toml").is_file() and (out / "trials.csv").is_file()  # written as the command stopped

    result = tune(config, settings, out=out)
    study = load_study(out, "tiny")
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE] * 2 + [TrialState.FAIL] + [TrialState.COMPLETE] * 2
    assert study.trials[3].params == interrupted.params and study.trials[3].user_attrs["retry_of"] == 2
    assert result.ran == 2 and result.counts == {
        "complete": 4,
        "pruned": 0,
        "failed": 0,
        "interrupted": 1,
        "total": 4,
    }


def test_a_trial_left_running_by_a_killed_process_runs_again(data_dir: Path, tmp_path: Path) -> None:
    path = write_tune_file(tmp_path / "tiny.toml", data_dir, tune='pruner = "none"')
    config, settings = load_tune_config(path)
    out = tmp_path / "out"
    tune(config, settings.with_options(trials=1), out=out)
    study = load_study(out, "tiny")
    stale = study.ask()  # what a process killed mid-trial leaves: a RUNNING trial
    stale.suggest_categorical("optim.lr", (0.3, 1e-06))
    stale.suggest_categorical("model.hidden_features", ("[32]", "[64]"))
    result = tune(config, settings.with_options(trials=2), out=out)
    study = load_study(out, "tiny")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert study.trials[2].params == study.trials[1].params and study.trials[2].user_attrs["retry_of"] == 1
    assert result.counts["total"] == 2


def test_a_diverged_trial_fails_and_counts(data_dir: Path, tmp_path: Path) -> None:
    space = '"optim.lr" = { choices = [1e20] }\n'  # NaN loss in the first epoch
    config, settings = load_tune_config(write_tune_file(tmp_path / "tiny.toml", data_dir, space=space))
    result = tune(config, settings.with_options(trials=1), out=tmp_path / "out")
    trial = load_study(tmp_path / "out", "tiny").trials[0]
    assert trial.state == TrialState.FAIL and "diverged" in trial.user_attrs["diverged"]
    assert result.counts == {"complete": 0, "pruned": 0, "failed": 1, "interrupted": 0, "total": 1}
    assert result.best is None and not (tmp_path / "out" / "best.toml").exists()


# -- CTR -----------------------------------------------------------------------------------------------


def test_a_ctr_study(tmp_path: Path) -> None:
    tables = write_ctr_tables(tmp_path / "data", rows=(1500, 400, 400))
    path = tmp_path / "ctr.toml"
    path.write_text(f"""task = "ctr"

[model]
name = "deepfm"
hidden_features = [16]

[optim]
batch_size = 512
epochs = 2

[data]
data_dir = "{tables}"

[run]
device = "cpu"

[tune]
trials = 2
pruner = "none"

[tune.space]
"optim.lr" = {{ low = 1e-3, high = 3e-2, log = true }}
"model.embedding_dim" = {{ low = 4, high = 8, step = 4 }}
""")
    out = tmp_path / "out"
    code, stdout, stderr = run_cli("tune", "--config", path, "--out", out, "--no-progress")
    assert code == 0, stderr
    study = load_study(out, "ctr")
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    for trial in study.trials:
        assert 1e-3 <= trial.params["optim.lr"] <= 3e-2 and trial.params["model.embedding_dim"] in (4, 8)
        summary = json.loads((Path(trial.user_attrs["run_dir"]) / "summary.json").read_text())
        assert trial.value == summary["best_val_auc"] and trial.user_attrs["test_auc"] == summary["test_auc"]
    best_dir = out / f"trial-{study.best_trial.number:04d}"
    best = load_config(out / "best.toml", task=None)
    assert isinstance(best, CTRConfig) and best == load_config(best_dir / "config.json", task=None)
    assert load_config(out / "best.toml", task="ctr") == best  # what `mlpkit ctr train --config` reads
    assert "mlpkit ctr train --config best.toml" in (out / "best.toml").read_text()
    assert "maximize val_auc" in stdout and "test_auc" in stdout


def test_a_table_study_minimizes_the_validation_loss(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x, noise = rng.normal(size=(200, 2)), rng.normal(size=200)
    rows = "\n".join(f"{a:.4f},{b:.4f},{2 * a - b + 0.1 * e:.4f}" for (a, b), e in zip(x, noise, strict=True))
    (tmp_path / "table.csv").write_text("x1,x2,y\n" + rows + "\n")
    path = tmp_path / "table.toml"
    path.write_text(f"""[model]
hidden_features = [8]

[optim]
epochs = 3

[data]
path = "{tmp_path / "table.csv"}"
target = "y"

[tune]
trials = 2
pruner = "none"

[tune.space]
"optim.lr" = {{ low = 1e-3, high = 1e-2, log = true }}
""")
    config, settings = load_tune_config(path)
    result = tune(config, settings, out=tmp_path / "out")
    assert (result.metric, result.direction, result.counts["complete"]) == ("val_loss", "minimize", 2)
    for trial in load_study(tmp_path / "out", "table").trials:
        summary = json.loads((Path(trial.user_attrs["run_dir"]) / "summary.json").read_text())
        assert trial.value == summary["best_val_loss"] == min(trial.intermediate_values.values())
    assert result.best is not None and result.best["value"] == min(
        t.value for t in load_study(tmp_path / "out", "table").trials
    )
    best_dir = tmp_path / "out" / f"trial-{result.best['number']:04d}"
    best = load_config(tmp_path / "out" / "best.toml", task=None)
    assert best == load_config(best_dir / "config.json", task=None)


# -- bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("space", "message"),
    [
        (
            '"optim.lr" = { low = 0.3, high = 0.001 }',
            r"\[tune.space\] optim.lr: low must not exceed high, got low=0.3 > high=0.001",
        ),
        (
            '"optim.lrr" = { low = 0.001, high = 0.3 }',
            r"\[tune.space\] unknown setting 'optim.lrr' \(did you mean 'optim.lr'\?\); "
            r"valid keys of \[optim\]: ",
        ),
        (
            '"optimizer.lr" = { low = 0.001, high = 0.3 }',
            r"unknown setting 'optimizer.lr' \(did you mean 'optim.lr'\?\); a setting is section.key",
        ),
        (
            '"optim.lr" = { low = 0.0, high = 0.3, log = true }',
            r"optim.lr: a log range needs low > 0, got low=0.0",
        ),
        (
            '"optim.batch_size" = { choices = [] }',
            r"optim.batch_size: choices must be a non-empty list, got \(\)",
        ),
        (
            '"optim.lr" = { low = 0.1, high = 0.3, scale = "log" }',
            r"optim.lr: unknown key\(s\) \['scale'\]; "
            r"valid keys: \['choices', 'high', 'log', 'low', 'step'\]",
        ),
        ('"optim.epochs" = { low = 1, high = 10, step = 4 }', r"high - low must be a multiple of step"),
        (
            '"model.dropout" = { low = 0.0, high = 1.0 }',
            r"\[tune.space\] model.dropout = 1.0: \[model\] dropout must be a float in \[0, 1\), got 1.0",
        ),
        (
            '"optim.optimizer" = { choices = ["sgd", "adan"] }',
            r"optim.optimizer = 'adan': \[optim\] optimizer must be one of .* \(did you mean 'adam'\?\)",
        ),
        ('"run.out" = { choices = ["a", "b"] }', r"run.out cannot be searched: mlpkit tune sets it"),
        ("", r"\[tune.space\] is empty"),
    ],
)
def test_a_bad_search_space_is_refused_before_any_trial(
    space: str, message: str, data_dir: Path, tmp_path: Path
) -> None:
    path = write_tune_file(tmp_path / "bad.toml", data_dir, space=space)
    with pytest.raises(ConfigError, match=message) as caught:
        load_tune_config(path)
    assert str(caught.value).startswith(f"{path}: ")
    code, _, err = run_cli("tune", "--config", path, "--out", tmp_path / "out")
    assert code == 2 and err.startswith("mlpkit: error: ") and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("tune_lines", "message"),
    [
        ("trails = 3", r"\[tune\] unknown key\(s\) \['trails'\]; valid keys: \["),
        ('pruner = "hyperband"', r"\[tune\] pruner must be one of \['median', 'none'\], got 'hyperband'"),
        ("timeout = -5", r"\[tune\] timeout must be a positive float, got -5"),
    ],
)
def test_bad_tune_settings_are_refused(tune_lines: str, message: str, data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=message):
        load_tune_config(write_tune_file(tmp_path / "bad.toml", data_dir, tune=tune_lines))


def test_the_metric_must_be_a_validation_score(data_dir: Path, tmp_path: Path) -> None:
    config, settings = load_tune_config(
        write_tune_file(tmp_path / "t.toml", data_dir, tune='metric = "test_accuracy"')
    )
    message = r"\[tune\] metric must be one of \['val_accuracy', 'val_loss'\], got 'test_accuracy'"
    with pytest.raises(ConfigError, match=message):
        tune(config, settings, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_file_without_tune_is_refused(data_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "plain.toml"
    path.write_text("[optim]\nlr = 0.1\n")
    with pytest.raises(ConfigError, match=rf"{path}: no \[tune\] table"):
        load_tune_config(path)


@pytest.mark.parametrize(
    ("storage", "error", "message"),
    [
        ("foo://study", "ConfigError", r"cannot open the study storage 'foo://study': Can't load plugin"),
        (
            "sqlite:////no/such/directory/study.db",
            "OutputError",
            r"cannot open the study storage 'sqlite:////no/such/directory/study.db': "
            r".*unable to open database file \(does its directory exist",
        ),
        (
            "study.db",
            "ConfigError",
            r"--storage must be a database URL such as sqlite:///study.db, got 'study.db' "
            r"\(did you mean 'sqlite:///study.db'\?\)",
        ),
    ],
)
def test_a_storage_that_cannot_be_opened_is_named(
    storage: str, error: str, message: str, data_dir: Path, tmp_path: Path
) -> None:
    config, settings = load_tune_config(write_tune_file(tmp_path / "t.toml", data_dir))
    with pytest.raises(ConfigError if error == "ConfigError" else OutputError, match=message):
        tune(config, settings, out=tmp_path / "out", storage=storage)
    assert not (tmp_path / "out").exists()  # the directory it made is gone again
    code, _, err = run_cli(
        "tune", "--config", tmp_path / "t.toml", "--storage", storage, "--out", tmp_path / "o"
    )
    assert code == 2 and err.startswith("mlpkit: error: ") and storage in err


def test_a_study_resumed_with_another_config_is_refused(data_dir: Path, tmp_path: Path) -> None:
    path = write_tune_file(tmp_path / "tiny.toml", data_dir)
    config, settings = load_tune_config(path)
    tune(config, settings.with_options(trials=1), out=tmp_path / "out")
    changed, _ = load_tune_config(write_tune_file(path, data_dir, **{"epochs = 2": "epochs = 3"}))
    with pytest.raises(
        ConfigError,
        match=r"study 'tiny' in sqlite:///.* searches another configuration "
        r"\(\[optim\] epochs: 2 -> 3\)",
    ):
        tune(changed, settings.with_options(trials=2), out=tmp_path / "out")


def test_an_out_directory_with_another_studys_trials_is_refused(data_dir: Path, tmp_path: Path) -> None:
    config, settings = load_tune_config(write_tune_file(tmp_path / "tiny.toml", data_dir))
    (tmp_path / "out" / "trial-0000").mkdir(parents=True)
    with pytest.raises(OutputError, match=r"holds trials of another study \(trial-0000\)"):
        tune(config, settings, out=tmp_path / "out", storage=f"sqlite:///{tmp_path / 'other.db'}")


def test_the_study_needs_an_end(data_dir: Path, tmp_path: Path) -> None:
    config = RunConfig()
    settings = TuneSettings(space=(SearchParam("optim.lr", low=0.01, high=0.1),))
    with pytest.raises(ConfigError, match=r"the study needs an end: give --trials N or --timeout S"):
        tune(config, settings, out=tmp_path / "out")


# -- the shipped search space ----------------------------------------------------------------------


def test_the_shipped_search_is_the_classic_recipe_plus_a_space() -> None:
    configs = Path(__file__).resolve().parents[1] / "configs"
    config, settings = load_tune_config(configs / "tune_fashion_mnist.toml")
    changes = {
        "optim": {"epochs": 15, "schedule": "cosine"},
        "early_stopping": {"monitor": "val_accuracy"},
        "run": {"name": "tune_fashion_mnist"},
    }
    assert config == load_config(configs / "classic.toml").with_overrides(changes)  # as its comments say
    assert settings.metric == "val_accuracy" and settings.timeout == 1800 and settings.pruner == "median"
    assert [p.name for p in settings.space] == [
        "optim.lr",
        "optim.momentum",
        "optim.weight_decay",
        "optim.batch_size",
        "model.hidden_features",
        "model.dropout",
    ]


# -- the TOML writer -------------------------------------------------------------------------------


def test_to_toml_reads_back_equal() -> None:
    config = CTRConfig.from_dict(
        {
            "model": {"name": "dcnv2", "hidden_features": [400, 400]},
            "data": {"data_dir": 'a "quoted" dir\\x'},
            "run": {"name": "x"},
        }
    )
    import tomllib

    assert CTRConfig.from_dict(tomllib.loads(to_toml(config, "two\nlines"))) == config
    assert to_toml(config, "two\nlines").startswith('# two\n# lines\n\ntask = "ctr"\n')


def test_to_toml_leaves_out_the_keys_the_choices_do_not_use() -> None:
    import tomllib

    mlp = RunConfig.from_dict({"optim": {"schedule": "cosine", "min_lr": 1e-4}, "data": {"augment": "none"}})
    vit = RunConfig.from_dict({"model": {"name": "vit", "patch_size": 4}, "run": {"engine": "torch"}})
    tables = {name: tomllib.loads(to_toml(config)) for name, config in (("mlp", mlp), ("vit", vit))}
    # The MLP's [model] names none of the ViT's keys, and the ViT's none of the MLP's.
    mlp_keys = {"name", "hidden_features", "activation", "dropout", "init", "init_std"}
    assert set(tables["mlp"]["model"]) == mlp_keys
    assert "hidden_features" not in tables["vit"]["model"] and tables["vit"]["model"]["patch_size"] == 4
    # A cosine schedule writes its min_lr, and none of the step or plateau keys.
    assert tables["mlp"]["optim"]["min_lr"] == 1e-4
    assert not {"gamma", "step_size", "factor", "schedule_patience"} & set(tables["mlp"]["optim"])
    assert not {"max_shift", "flip_p"} & set(tables["mlp"]["data"])
    assert RunConfig.from_dict(tables["mlp"]) == mlp and RunConfig.from_dict(tables["vit"]) == vit


def test_to_toml_refuses_a_config_it_cannot_repeat() -> None:
    config = CTRConfig.from_dict({"optim": {"grad_clip_norm": None}})  # TOML cannot say None; absent is 10
    with pytest.raises(ConfigError, match=r"\[optim\] grad_clip_norm would read back differently"):
        to_toml(config)
