"""Every study end to end in quick mode: the registry, the three files, and the documented JSON keys."""

from __future__ import annotations

import inspect
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from fakedata import fake_images, run_cli
from mlpkit.errors import DataNotFoundError, MissingDependencyError, OutputError
from mlpkit.experiments import EXPERIMENTS, _common, autograd, dropout, initialization, vit_mlp

# The top-level JSON keys each module docstring documents.
JSON_KEYS = {
    "model-selection": {"study", "loss", "config", "x_train", "y_train", "fits"},
    "weight-decay": {"study", "loss", "config", "initial_weight_norm", "mean_predictor_test_loss", "runs"},
    "dropout": {"study", "config", "runs"},
    "initialization": {"study", "config", "runs"},
    "activations": {"study", "config", "x", "activations"},
    "nim": {"study", "config", "by_heaps", "by_bits", "by_width"},
    "autograd": {"study", "config", "moons", "images", "boundary", "timing"},
    "vit-mlp": {"study", "config", "parameters", "flops", "accuracy", "ablation"},
}
NEEDS_FASHION_MNIST = {"dropout", "initialization", "autograd", "vit-mlp"}
READS_A_RUN = {"vit-mlp"}  # these take one more keyword, run_dir
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_registry_names_every_study_with_one_signature():
    assert set(EXPERIMENTS) == set(JSON_KEYS)
    for name, run in EXPERIMENTS.items():
        params = inspect.signature(run).parameters
        extra = ["run_dir"] if name in READS_A_RUN else []
        assert list(params) == ["out_dir", "quick", "seed", "data_dir", *extra], name
        for key in extra:
            assert params[key].kind is inspect.Parameter.KEYWORD_ONLY and params[key].default is None
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
    lines = summary.splitlines()
    if quick:                                                          # said first, before any number
        assert lines[1] == "" and lines[2].startswith(QUICK_SUMMARY_NOTE), lines[:3]
    else:
        assert "Quick run" not in summary and "quick run" not in summary
    return numbers


QUICK_SUMMARY_NOTE = "> **Quick run: smoke test, not a result.** `--quick` shrinks the study to seconds"
QUICK_TITLE = "QUICK RUN: SMOKE TEST, NOT A RESULT\n"


@pytest.fixture
def figures(monkeypatch):
    """The figures the studies save, in order (they are still written to disk)."""
    saved = []

    def save_png(figure, path):
        saved.append(figure)
        original_save_png(figure, path)

    original_save_png = _common.save_png
    monkeypatch.setattr(_common, "save_png", save_png)
    return saved


@pytest.fixture
def small_images(monkeypatch):
    """Stand-in for Fashion-MNIST in the studies that load it: 300 + 100 generated images in [0, 1]."""
    rng = np.random.default_rng(0)
    y_train, y_test = rng.integers(0, 10, 300), rng.integers(0, 10, 100)
    arrays = (
        fake_images(y_train, seed=1).reshape(300, 784).astype(np.float32) / 255, y_train,
        fake_images(y_test, seed=2).reshape(100, 784).astype(np.float32) / 255, y_test,
    )
    for module in (dropout, initialization, autograd, vit_mlp):
        monkeypatch.setattr(module, "load_scaled_fashion_mnist", lambda *args, **kwargs: arrays)


@pytest.mark.parametrize("name", sorted(JSON_KEYS))
def test_quick_run_writes_figure_numbers_and_summary_marked_as_a_smoke_test(
    name, tmp_path, figures, small_images
):
    out_dir = tmp_path / "out" / name                                  # created by the run
    assert EXPERIMENTS[name](out_dir, quick=True, seed=3) == out_dir
    _check_outputs(out_dir, name, quick=True, seed=3)
    (figure,) = figures
    assert figure.get_suptitle().startswith(QUICK_TITLE)
    assert len(figure.get_suptitle()) > len(QUICK_TITLE)               # the study's own title follows


def test_a_full_run_is_not_marked_quick(tmp_path, figures):
    EXPERIMENTS["activations"](tmp_path, quick=False)
    _check_outputs(tmp_path, "activations", quick=False, seed=0)
    title = "Activations and their derivatives, from the engine's forward and backward"
    assert figures[0].get_suptitle() == title


@pytest.fixture
def without_matplotlib(monkeypatch):
    """Make ``import matplotlib`` fail as if it were not installed (find_spec then returns None too)."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)


@pytest.mark.parametrize("name", sorted(JSON_KEYS))
def test_without_matplotlib_a_study_fails_before_creating_anything(name, tmp_path, without_matplotlib):
    message = f"the {name} study's figure needs matplotlib, which is not installed: "
    message += "pip install 'mlpkit[plot]'"
    with pytest.raises(MissingDependencyError, match=f"^{re.escape(message)}$"):
        EXPERIMENTS[name](tmp_path / "out", quick=True, data_dir=tmp_path / "no-data")
    assert list(tmp_path.iterdir()) == []


def test_without_matplotlib_the_command_line_says_which_extra_to_install(tmp_path, without_matplotlib):
    code, out, err = run_cli("experiment", "activations", "--out", tmp_path / "out", "--quick")
    assert code == 2 and out == ""
    assert err == (
        "mlpkit: error: the activations study's figure needs matplotlib, which is not installed: "
        "pip install 'mlpkit[plot]'\n"
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.real_data
def test_quick_dropout_run_on_fashion_mnist(tmp_path, real_data_dir):
    assert EXPERIMENTS["dropout"](tmp_path, quick=True, data_dir=real_data_dir) == tmp_path
    numbers = _check_outputs(tmp_path, "dropout", quick=True, seed=0)
    runs = {run["label"]: run for run in numbers["runs"]}
    assert set(runs) == {"no dropout", "dropout 0.2/0.5"}
    # 80 SGD steps from d2l's N(0, 0.01²) start end anywhere from chance (0.1) to 0.4 depending on
    # the BLAS's thread count: the quick run is a smoke test, so only the bookkeeping is checked.
    for run in runs.values():
        curves = run["curves"]
        assert len(curves["test_accuracy"]) == 2
        assert run["train_accuracy"] == curves["train_accuracy"][-1]
        assert run["test_accuracy"] == curves["test_accuracy"][-1]
        assert run["gap"] == pytest.approx(run["train_accuracy"] - run["test_accuracy"])
        assert 0.0 <= run["test_accuracy"] <= 1.0 and all(np.isfinite(curves["test_loss"]))


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
