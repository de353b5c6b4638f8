"""Every study end to end in quick mode: the registry, the three files, and the documented JSON keys."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

from mlpkit.errors import DataNotFoundError, OutputError
from mlpkit.experiments import EXPERIMENTS

# The top-level JSON keys each module docstring documents.
JSON_KEYS = {
    "model-selection": {"study", "loss", "config", "x_train", "y_train", "fits"},
    "weight-decay": {"study", "loss", "config", "initial_weight_norm", "mean_predictor_test_loss", "runs"},
    "dropout": {"study", "config", "runs"},
    "initialization": {"study", "config", "runs"},
    "activations": {"study", "config", "x", "activations"},
    "nim": {"study", "config", "by_heaps", "by_bits", "by_width"},
}
NEEDS_FASHION_MNIST = {"dropout", "initialization"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_registry_names_the_six_studies_with_one_signature():
    assert set(EXPERIMENTS) == set(JSON_KEYS)
    for name, run in EXPERIMENTS.items():
        params = inspect.signature(run).parameters
        assert list(params) == ["out_dir", "quick", "seed", "data_dir"], name
        assert params["out_dir"].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        assert all(params[k].kind is inspect.Parameter.KEYWORD_ONLY for k in ("quick", "seed", "data_dir"))
        defaults = (params["quick"].default, params["seed"].default, params["data_dir"].default)
        assert defaults == (False, 0, None), name


def _check_outputs(out_dir: Path, name: str, *, quick: bool, seed: int) -> dict[str, object]:
    assert sorted(p.name for p in out_dir.iterdir()) == sorted([f"{name}.png", f"{name}.json", "summary.md"])
    assert (out_dir / f"{name}.png").read_bytes()[:8] == PNG_MAGIC
    numbers = json.loads((out_dir / f"{name}.json").read_text())
    assert set(numbers) == JSON_KEYS[name]
    assert numbers["study"] == name
    assert numbers["config"]["quick"] is quick and numbers["config"]["seed"] == seed
    summary = (out_dir / "summary.md").read_text()
    assert summary.startswith("# ") and f"]({name}.png)" in summary
    return numbers


@pytest.mark.parametrize("name", sorted(set(JSON_KEYS) - NEEDS_FASHION_MNIST))
def test_quick_run_writes_figure_numbers_and_summary(name, tmp_path):
    out_dir = tmp_path / "out" / name                                  # created by the run
    assert EXPERIMENTS[name](out_dir, quick=True, seed=3) == out_dir
    _check_outputs(out_dir, name, quick=True, seed=3)


@pytest.mark.real_data
def test_quick_dropout_run_on_fashion_mnist(tmp_path, real_data_dir):
    assert EXPERIMENTS["dropout"](tmp_path, quick=True, data_dir=real_data_dir) == tmp_path
    numbers = _check_outputs(tmp_path, "dropout", quick=True, seed=0)
    runs = {run["label"]: run for run in numbers["runs"]}
    assert set(runs) == {"no dropout", "dropout 0.2/0.5"}
    for run in runs.values():
        assert len(run["curves"]["test_accuracy"]) == 2
        assert run["test_accuracy"] > 0.2                              # 80 steps lift both off chance (0.1)


@pytest.mark.real_data
def test_quick_initialization_run_on_fashion_mnist(tmp_path, real_data_dir):
    assert EXPERIMENTS["initialization"](tmp_path, quick=True, data_dir=real_data_dir) == tmp_path
    numbers = _check_outputs(tmp_path, "initialization", quick=True, seed=0)
    runs = {(run["activation"], run["init"]): run for run in numbers["runs"]}
    assert len(runs) == 3 * 5 and all(len(run["grad_norms"]) == 10 for run in runs.values())
    # The figure's lesson on a real batch: vanishing sigmoid gradients at N(0, 0.01²), less of it
    # with Xavier and less again with Xavier ×4; none for tanh with Xavier or ReLU with Kaiming.
    sigmoid = [runs["sigmoid", init]["grad_ratio"] for init in ("normal_0.01", "xavier", "xavier_x4")]
    assert sigmoid[0] < 1e-2 and sigmoid[0] < 1e-3 * sigmoid[1] and sigmoid[1] < 1e-2 * sigmoid[2]
    assert 0.1 < runs["tanh", "xavier"]["grad_ratio"] < 10
    assert 0.1 < runs["relu", "kaiming"]["grad_ratio"] < 10
    assert runs["relu", "normal_1"]["diverged"]


@pytest.mark.parametrize("name", sorted(NEEDS_FASHION_MNIST))
def test_missing_fashion_mnist_raises_the_loaders_error(name, tmp_path):
    with pytest.raises(DataNotFoundError, match="Fashion-MNIST not found in data_dir"):
        EXPERIMENTS[name](tmp_path / "out", quick=True, data_dir=tmp_path / "no-data")


def test_an_unwritable_output_fails_before_any_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OutputError, match="cannot write to output directory"):
        EXPERIMENTS["nim"](blocker / "out", quick=True)


def test_figures_are_not_left_open_in_pyplot(tmp_path):
    import matplotlib.pyplot as plt

    EXPERIMENTS["activations"](tmp_path, quick=True)
    assert plt.get_fignums() == []


def test_a_second_run_replaces_the_files_and_leaves_no_temporaries(tmp_path):
    EXPERIMENTS["activations"](tmp_path, quick=True)
    first = (tmp_path / "activations.json").read_text()
    EXPERIMENTS["activations"](tmp_path, quick=False)
    assert (tmp_path / "activations.json").read_text() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["activations.json", "activations.png", "summary.md"]
