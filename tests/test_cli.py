"""The mlpkit command end to end: train, evaluate and predict on small generated IDX files.

One trained run (module fixture) is shared by the read-only checks. Bad-input tests assert the
exit status, that the message names the problem and the offending value or path, and that
nothing existing was changed.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
import shutil
import subprocess
import sys
import types
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load_file

from fakedata import (
    N_TEST,
    assert_warns_unfinished_once,
    run_cli,
    snapshot,
    unfinished_copy,
    write_fake_fashion_mnist,
)
from mlpkit.config import load_config
from mlpkit.data.fashion_mnist import FASHION_MNIST_CLASSES
from mlpkit.data.idx import read_idx, write_idx
from mlpkit.run import load_run

REAL_DATA = Path("/usr/share/datasets/fashion-mnist")
N_VAL = 60
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


SMALL = [
    "--hidden",
    "32",
    "--lr",
    "0.3",
    "--epochs",
    "4",
    "--batch-size",
    "32",
    "--val-size",
    str(N_VAL),
    "--seed",
    "3",
]


def train_args(data_dir: Path, out: Path, *extra: str) -> list[str | Path]:
    return ["train", "--data-dir", data_dir, "--no-verify", "--no-download", *SMALL, "--out", out, *extra]


def without_seconds(run_dir: Path) -> list[dict[str, Any]]:
    """metrics.jsonl minus the wall-clock field, the one value a repeat cannot reproduce."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in record.items() if k != "seconds"} for record in records]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_fashion_mnist(tmp_path_factory.mktemp("fake-fashion-mnist"))


@pytest.fixture(scope="module")
def run(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str, str]:
    run_dir = tmp_path_factory.mktemp("runs") / "run"
    return (run_dir, *run_cli(*train_args(data_dir, run_dir)))


# -- train -------------------------------------------------------------------------------------------


def test_train_succeeds_and_prints_a_short_table(run: tuple[Path, int, str, str]) -> None:
    run_dir, code, out, err = run
    assert code == 0, err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert re.search(rf"^test accuracy +{summary['test_accuracy']:.4f} ", out, flags=re.MULTILINE)
    assert re.search(rf"^best epoch +{summary['best_epoch']} of 4 ", out, flags=re.MULTILINE)
    assert re.search(rf"^run directory +{re.escape(str(run_dir))}$", out, flags=re.MULTILINE)
    assert "epoch 4/4" in err  # the per-epoch log line


def test_every_run_file_exists_and_parses(run: tuple[Path, int, str, str]) -> None:
    run_dir = run[0]
    config = load_config(run_dir / "config.json")
    assert config.model.hidden_features == (32,) and config.optim.lr == 0.3 and config.run.seed == 3

    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    required = {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds"}
    assert all(required <= set(r) for r in records)

    summary = json.loads((run_dir / "summary.json").read_text())
    assert {
        "test_accuracy",
        "test_loss",
        "final_test_accuracy",
        "best_epoch_test_accuracy",
        "best_epoch",
        "epochs_run",
        "stop_reason",
        "wall_seconds",
        "mlpkit_version",
        "numpy_version",
    } <= set(summary)
    # Far above the 10% of chance, on validation and on test.
    assert summary["best_val_accuracy"] > 0.8 and summary["test_accuracy"] > 0.8

    tensors = load_file(str(run_dir / "model.safetensors"))
    assert {name: t.shape for name, t in tensors.items()} == config.model.to_spec(784, 10).linear_shapes()

    for png in ("curves.png", "predictions.png"):
        data = (run_dir / png).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 1000
    assert (run_dir / "report.md").read_text().startswith("# mlpkit run: run\n")


def test_the_run_records_when_and_how_it_was_made(run: tuple[Path, int, str, str], data_dir: Path) -> None:
    run_dir = run[0]
    summary = json.loads((run_dir / "summary.json").read_text())
    typed = " ".join(str(arg) for arg in train_args(data_dir, run_dir))
    assert summary["command"] == f"mlpkit {typed}"          # the arguments given to main(), as typed
    started = datetime.fromisoformat(summary["started_at"])
    assert started.tzinfo is not None and abs(datetime.now(started.tzinfo) - started) < timedelta(hours=1)
    assert {"host", "platform", "python_version", "mlpkit_version", "numpy_version"} <= set(summary)
    report = (run_dir / "report.md").read_text()
    assert f"| command | `mlpkit {typed}` |" in report
    assert "![loss and accuracy curves](curves.png)" in report and "## Per-class scores" in report
    assert "784-32-10 MLP (ReLU, 25,450 parameters)" in report


def test_repeating_from_config_json_gives_identical_metrics_and_model(
    run: tuple[Path, int, str, str], tmp_path: Path
) -> None:
    run_dir = run[0]
    code, _, err = run_cli("train", "--config", run_dir / "config.json", "--out", tmp_path / "again", "-q")
    assert code == 0, err
    assert without_seconds(tmp_path / "again") == without_seconds(run_dir)
    # Not the file bytes: safetensors writes the metadata map in hash order.
    first_model, second_model = (
        load_file(str(d / "model.safetensors")) for d in (run_dir, tmp_path / "again")
    )
    assert first_model.keys() == second_model.keys()
    for name, tensor in first_model.items():
        np.testing.assert_array_equal(second_model[name], tensor)
    first, second = (json.loads((d / "summary.json").read_text()) for d in (run_dir, tmp_path / "again"))
    assert first["test_accuracy"] == second["test_accuracy"] and first["test_loss"] == second["test_loss"]


def test_resume_continues_a_numpy_run_to_the_epochs_of_its_config(
    data_dir: Path, run: tuple[Path, int, str, str], tmp_path: Path
) -> None:
    # A 2-epoch run, its config.json then raised to 4 epochs: `train --resume` runs epochs 3 and
    # 4 and ends where the straight 4-epoch run ended (same shuffles, same steps).
    run_dir, *_ = run
    short = tmp_path / "short"
    assert run_cli(*train_args(data_dir, short, "--epochs", "2", "-q"))[0] == 0
    config = json.loads((short / "config.json").read_text())
    config["optim"]["epochs"] = 4
    (short / "config.json").write_text(json.dumps(config))
    code, _, err = run_cli("train", "--resume", short)
    assert code == 0, err
    assert "epochs: 2 -> 4" in err                                    # the changed setting is named
    assert without_seconds(short) == without_seconds(run_dir)
    first, second = load_file(str(short / "model.safetensors")), load_file(str(run_dir / "model.safetensors"))
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)


def test_a_different_seed_gives_a_different_run(
    run: tuple[Path, int, str, str], data_dir: Path, tmp_path: Path
) -> None:
    code, _, err = run_cli(*train_args(data_dir, tmp_path / "seed4", "--seed", "4", "--epochs", "1", "-q"))
    assert code == 0, err
    assert without_seconds(tmp_path / "seed4")[0] != without_seconds(run[0])[0]


def test_config_file_then_flags(data_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "small.toml"
    config.write_text('[model]\nhidden_features = [16]\nactivation = "tanh"\n[optim]\nepochs = 1\n')
    code, _, err = run_cli(
        "-q",
        "train",
        "--config",
        config,
        "--data-dir",
        data_dir,
        "--no-verify",
        "--val-size",
        "60",
        "--activation",
        "relu,tanh",
        "--hidden",
        "16,8",
        "--dropout",
        "0.1",
        "--optimizer",
        "adamw",
        "--lr",
        "0.01",
        "--weight-decay",
        "0.001",
        "--out",
        tmp_path / "run",
    )
    assert code == 0, err
    recorded = load_config(tmp_path / "run" / "config.json")
    assert recorded.model.hidden_features == (16, 8) and recorded.model.activation == ("relu", "tanh")
    assert (
        recorded.model.dropout == 0.1 and recorded.optim.optimizer == "adamw" and recorded.optim.epochs == 1
    )
    assert recorded.optim.weight_decay == 0.001 and recorded.run.name == "small"


# -- evaluate and predict ----------------------------------------------------------------------------


def test_evaluate_reproduces_the_summary(run: tuple[Path, int, str, str]) -> None:
    run_dir = run[0]
    summary = json.loads((run_dir / "summary.json").read_text())
    code, out, err = run_cli("evaluate", run_dir)
    assert code == 0, err
    assert re.search(rf"^test accuracy +{summary['test_accuracy']:.4f}$", out, flags=re.MULTILINE)
    assert re.search(rf"^test images +{N_TEST}$", out, flags=re.MULTILINE)


def test_evaluate_scores_each_class_and_prints_json(run: tuple[Path, int, str, str], data_dir: Path) -> None:
    code, out, err = run_cli("evaluate", run[0], "--json")
    assert code == 0, err
    scores = json.loads(out)
    # Reference: the saved network's predictions on the test set, counted by hand per class.
    loaded = load_run(run[0])
    images = read_idx(data_dir / "t10k-images-idx3-ubyte").reshape(-1, 784)
    labels = read_idx(data_dir / "t10k-labels-idx1-ubyte").astype(np.int64)
    predicted = loaded.network.forward((images / 255.0).astype(loaded.network.dtype)).argmax(axis=1)
    assert scores["test_accuracy"] == json.loads((run[0] / "summary.json").read_text())["test_accuracy"]
    for k, name in enumerate(FASHION_MNIST_CLASSES):
        tp = int(np.sum((predicted == k) & (labels == k)))
        n_pred, n_true = int(np.sum(predicted == k)), int(np.sum(labels == k))
        got = scores["per_class"][name]
        assert got["support"] == n_true
        assert got["precision"] == pytest.approx(tp / n_pred if n_pred else 0.0)
        assert got["recall"] == pytest.approx(tp / n_true if n_true else 0.0)
        row = [int(np.sum((labels == k) & (predicted == j))) for j in range(10)]
        assert scores["confusion_matrix"][k] == row
    recalls = [v["recall"] for v in scores["per_class"].values()]
    assert scores["macro"]["recall"] == pytest.approx(np.mean(recalls))
    code, text, _ = run_cli("evaluate", run[0])
    lines = text.splitlines()
    assert lines[5].split() == ["class", "precision", "recall", "f1", "support"]
    first = scores["per_class"]["T-shirt/top"]
    assert lines[6].split() == [
        "T-shirt/top", f"{first['precision']:.4f}", f"{first['recall']:.4f}", f"{first['f1']:.4f}",
        str(first["support"]),
    ]
    assert "confusion matrix (rows: true class, columns: predicted class)" in text


def test_evaluate_says_when_the_run_did_not_finish(run: tuple[Path, int, str, str], tmp_path: Path) -> None:
    unfinished = unfinished_copy(run[0], tmp_path)
    out = assert_warns_unfinished_once(unfinished, "scoring", "evaluate", unfinished)
    accuracy = json.loads((run[0] / "summary.json").read_text())["test_accuracy"]
    assert re.search(rf"^test accuracy +{accuracy:.4f}$", out, flags=re.MULTILINE)  # same weights
    code, _, err = run_cli("evaluate", run[0])
    assert code == 0 and "did not finish" not in err
    images = tmp_path / "images.npy"
    np.save(images, np.zeros((1, 28, 28), dtype=np.uint8))
    assert_warns_unfinished_once(unfinished, "predicting with", "predict", unfinished, images,
                                 "--out", tmp_path / "predicted.csv")


def test_predict_reads_idx_npy_and_csv_alike(
    run: tuple[Path, int, str, str], data_dir: Path, tmp_path: Path
) -> None:
    images = read_idx(data_dir / "t10k-images-idx3-ubyte")[:7]  # (7, 28, 28) uint8
    write_idx(tmp_path / "images-idx3-ubyte.gz", images)
    np.save(tmp_path / "images.npy", images.reshape(7, 784))
    np.savetxt(tmp_path / "images.csv", images.reshape(7, 784), fmt="%d", delimiter=",")
    outputs = []
    for name in ("images-idx3-ubyte.gz", "images.npy", "images.csv"):
        code, out, err = run_cli("predict", run[0], tmp_path / name)
        assert code == 0, err
        lines = [line.split(",", 2) for line in out.splitlines()]
        assert [name_ for _, name_, _ in lines[1:]] == [f"{name}:{i}" for i in range(7)]  # FILE:row
        outputs.append([(row, rest) for row, _, rest in lines])
    assert outputs[0] == outputs[1] == outputs[2]
    lines = outputs[0]
    assert lines[0] == ("row", "class,class_name,probability") and len(lines) == 8
    # Reference: the saved network's logits on pixels / 255, softmax by hand in float64.
    loaded = load_run(run[0])
    features = (images.reshape(7, 784) / 255.0).astype(loaded.network.dtype)     # (7, 784)
    logits = loaded.network.forward(features).astype(np.float64)                  # (7, 10)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    softmax = shifted / shifted.sum(axis=1, keepdims=True)                         # (7, 10)
    for i, (row, rest) in enumerate(lines[1:]):
        label, name, probability = rest.split(",")
        assert int(row) == i
        assert int(label) == softmax[i].argmax()
        assert name == FASHION_MNIST_CLASSES[int(label)]
        assert float(probability) == pytest.approx(softmax[i].max(), abs=1e-6)  # printed with 6 decimals


def test_predict_writes_out_atomically_and_never_overwrites(
    run: tuple[Path, int, str, str], tmp_path: Path
) -> None:
    np.save(tmp_path / "x.npy", np.zeros((2, 784), dtype=np.uint8))
    code, out, err = run_cli("predict", run[0], tmp_path / "x.npy", "--out", tmp_path / "p.csv")
    assert code == 0, err
    assert "wrote 2 predictions" in out and len((tmp_path / "p.csv").read_text().splitlines()) == 3
    (tmp_path / "p.csv").write_text("mine")
    code, _, err = run_cli("predict", run[0], tmp_path / "x.npy", "--out", tmp_path / "p.csv")
    assert code == 2 and "p.csv already exists" in err and (tmp_path / "p.csv").read_text() == "mine"
    assert run_cli("predict", run[0], tmp_path / "x.npy", "--out", tmp_path / "p.csv", "--overwrite")[0] == 0
    assert (tmp_path / "p.csv").read_text().startswith("row,name,class")


# -- bad input -------------------------------------------------------------------------------------


def test_predict_wrong_feature_count_names_the_file_and_the_shapes_it_reads(
    run: tuple[Path, int, str, str], tmp_path: Path
) -> None:
    np.save(tmp_path / "short.npy", np.zeros((3, 783)))
    code, out, err = run_cli("predict", run[0], tmp_path / "short.npy")
    assert code == 2 and out == ""
    assert err == (
        f"mlpkit: error: {tmp_path / 'short.npy'}: cannot read images from an array of shape (3, 783): "
        "expected one image (28, 28) or (784,), or N images (N, 784), (N, 28, 28), (N, 28, 28, 1) or "
        "(N, 1, 28, 28)\n"
    )


def test_predict_nan_input_is_rejected(run: tuple[Path, int, str, str], tmp_path: Path) -> None:
    x = np.zeros((4, 784))
    x[2, 100] = np.nan
    np.save(tmp_path / "nan.npy", x)
    code, _, err = run_cli("predict", run[0], tmp_path / "nan.npy")
    assert code == 2
    assert f"{tmp_path / 'nan.npy'}: 1 NaN or infinite value(s); the first, nan, at index (2, 100)" in err


def test_training_labels_outside_the_class_range_are_named(tmp_path: Path) -> None:
    labels = np.random.default_rng(0).integers(0, 10, 300).astype(np.uint8)
    labels[17] = 12
    data_dir = write_fake_fashion_mnist(tmp_path / "data", train_labels=labels)
    code, _, err = run_cli(*train_args(data_dir, tmp_path / "run"))
    assert code == 2
    assert "train-labels-idx1-ubyte: labels must lie in 0..9, found 12 at index 17" in err
    assert not (tmp_path / "run").exists()


def test_truncated_idx_is_named(tmp_path: Path) -> None:
    data_dir = write_fake_fashion_mnist(tmp_path / "data")
    images = data_dir / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(images.read_bytes())
    images.write_bytes(gzip.compress(raw[:-100]))
    code, _, err = run_cli(*train_args(data_dir, tmp_path / "run"))
    assert code == 2 and f"{images}: truncated IDX file" in err


def test_corrupted_gz_is_named(tmp_path: Path) -> None:
    data_dir = write_fake_fashion_mnist(tmp_path / "data")
    images = data_dir / "train-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:200])
    code, _, err = run_cli(*train_args(data_dir, tmp_path / "run"))
    assert code == 2 and f"{images}: the .gz file is corrupted or truncated" in err


def test_checksum_mismatch_of_unofficial_files_is_reported(data_dir: Path, tmp_path: Path) -> None:
    code, _, err = run_cli(
        "train", "--data-dir", data_dir, "--out", tmp_path / "run"
    )  # --verify is on by default
    assert code == 2 and "checksum mismatch" in err


def test_unwritable_output_directory_fails_before_training(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file, so nothing can be created under it (even as root)")
    # No data either: the output check must come first, within the first second.
    code, _, err = run_cli(*train_args(tmp_path / "no-data", blocker / "run"))
    assert code == 2
    assert err.startswith(f"mlpkit: error: cannot write to output directory {blocker / 'run'}")
    assert blocker.read_text().startswith("a regular file")


def test_existing_run_directory_is_not_overwritten(data_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text('{"precious": true}')
    before = snapshot(run_dir)
    code, _, err = run_cli(*train_args(data_dir, run_dir))
    assert code == 2
    assert f"run directory {run_dir} already exists and is not empty" in err and "--overwrite" in err
    assert snapshot(run_dir) == before


def test_unknown_config_key_lists_the_valid_ones_and_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "typo.toml"
    config.write_text("[optim]\nepoch = 3\n")
    code, _, err = run_cli("train", "--config", config, "--out", tmp_path / "run")
    assert code == 2
    assert (
        f"mlpkit: error: {config}: [optim] unknown key(s) ['epoch']; valid keys: ['batch_size', 'epochs',"
        in err
    )
    assert not (tmp_path / "run").exists()


def test_unknown_activation_lists_the_valid_ones(tmp_path: Path) -> None:
    code, _, err = run_cli("train", "--activation", "swish", "--out", tmp_path / "run")
    assert code == 2
    assert re.search(
        r"command-line options: \[model\] activation must be one of \['gelu', .*\], got 'swish'", err
    )


def test_divergence_exits_1_keeps_the_metrics_and_saves_no_model(data_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    # lr 1e20: the first step sends float32 weights to ~1e20 and the next logits overflow, whatever
    # the initial draw (lr 1e6 diverged for one stream of initial weights and not for another).
    code, _, err = run_cli(*train_args(data_dir, run_dir, "--hidden", "256", "--lr", "1e20"))
    assert code == 1
    assert re.match(
        r"mlpkit: error: training diverged: loss is nan at epoch 1, batch \d+ \(lr=1e\+20\)",
        err.splitlines()[-1],
    )
    assert "no model was saved" in err
    assert (run_dir / "metrics.jsonl").read_text() == ""  # the epoch never finished
    assert not (run_dir / "model.safetensors").exists()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["test_accuracy"] is None


def test_missing_run_directory_is_named(tmp_path: Path) -> None:
    code, _, err = run_cli("evaluate", tmp_path / "nope")
    assert (code, err) == (2, f"mlpkit: error: no run directory at {tmp_path / 'nope'}\n")


def test_usage_errors_exit_2() -> None:
    code, _, err = run_cli("train", "--hidden", "a,b")
    assert code == 2 and "argument --hidden: expected comma-separated integers, got 'a,b'" in err
    assert run_cli("frobnicate")[0] == 2


def test_a_mistyped_option_is_named_first_with_the_closest_one() -> None:
    code, out, err = run_cli("train", "--engien", "torch")
    assert (code, out) == (2, "")
    assert err == (
        "mlpkit train: error: unrecognized arguments: --engien torch (did you mean --engine?)\n"
        "Run 'mlpkit train --help' for the options.\n"
    )


def test_abbreviated_options_are_refused_not_guessed() -> None:
    code, _, err = run_cli("train", "--engin", "torch")
    assert code == 2
    assert err.startswith(
        "mlpkit train: error: unrecognized arguments: --engin torch (did you mean --engine?)"
    )


def test_a_mistyped_command_gets_the_closest_command() -> None:
    code, _, err = run_cli("trian")
    assert code == 2
    assert err.startswith("mlpkit: error: argument COMMAND: invalid choice: 'trian'")
    assert "did you mean 'train'?" in err.splitlines()[0]


def test_a_mistyped_choice_gets_the_closest_choice() -> None:
    code, _, err = run_cli("train", "--engine", "trch")
    assert code == 2
    assert err == (
        "mlpkit: error: command-line options: [run] engine must be one of ['numpy', 'torch'], "
        "got 'trch' (did you mean 'torch'?)\n"
    )


def test_an_unknown_option_without_a_close_match_gets_no_guess() -> None:
    code, _, err = run_cli("train", "--bogus", "1")
    assert code == 2 and "did you mean" not in err


def test_bare_mlpkit_prints_the_help() -> None:
    code, out, err = run_cli()
    assert (code, err) == (0, "")
    assert out.startswith("usage: mlpkit") and all(name in out for name in ("train", "evaluate", "predict"))


def test_python_dash_m_mlpkit_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mlpkit", "--version"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    assert result.returncode == 0 and result.stdout.startswith("mlpkit ")


def test_experiment_subcommand_calls_the_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Path, bool, int]] = []

    def demo(out_dir: Path, *, quick: bool, seed: int) -> Path:
        """A stand-in study."""
        calls.append((out_dir, quick, seed))
        return out_dir / "report.md"

    registry = types.ModuleType("mlpkit.experiments")
    registry.EXPERIMENTS = {"demo": demo}  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mlpkit.experiments", registry)
    code, out, _ = run_cli("experiment", "demo", "--out", tmp_path, "--quick", "--seed", "5")
    assert code == 0 and calls == [(tmp_path, True, 5)]
    assert re.search(rf"^written to +{re.escape(str(tmp_path / 'report.md'))}$", out, flags=re.MULTILINE)
    code, out, _ = run_cli("experiment")
    assert code == 0 and re.search(r"^demo +A stand-in study\.$", out, flags=re.MULTILINE)
    code, _, err = run_cli("experiment", "nope")
    assert code == 2 and "unknown experiment 'nope'; available: ['demo']" in err

    # A non-empty --out (an earlier run, say) is refused unless --overwrite.
    (tmp_path / "config.json").write_text("{}")
    code, _, err = run_cli("experiment", "demo", "--out", tmp_path)
    assert code == 2 and len(calls) == 1
    assert f"{tmp_path} already exists and is not empty; nothing was changed. Pass --overwrite" in err
    assert (tmp_path / "config.json").read_text() == "{}"
    code, _, err = run_cli("experiment", "demo", "--out", tmp_path, "--overwrite")
    assert code == 0 and len(calls) == 2, err


def test_the_cli_path_imports_neither_torch_nor_matplotlib() -> None:
    code = "import sys, mlpkit.cli, mlpkit.run; print(sorted({'torch', 'matplotlib'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# -- the real data ---------------------------------------------------------------------------------


@pytest.mark.real_data
@pytest.mark.skipif(not REAL_DATA.is_dir(), reason=f"the real Fashion-MNIST files are not in {REAL_DATA}")
def test_one_epoch_on_the_real_data_beats_70_percent(tmp_path: Path) -> None:
    code, _, err = run_cli("train", "--data-dir", REAL_DATA, "--epochs", "1", "--out", tmp_path / "run", "-q")
    assert code == 0, err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["n_train"] == 55000 and summary["n_val"] == 5000 and summary["n_test"] == 10000
    assert summary["best_val_accuracy"] > 0.70 and summary["test_accuracy"] > 0.70


# -- running and resuming, as a user types it ---------------------------------------------------------


def test_the_numpy_engine_under_torchrun_is_refused_before_anything_is_written(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")  # what torchrun --nproc_per_node=2 sets in each process
    monkeypatch.setenv("RANK", "0")
    code, out, err = run_cli(*train_args(data_dir, tmp_path / "run"))
    assert (code, out) == (2, "")
    assert err == (
        "mlpkit: error: the NumPy engine trains in one process, but torchrun started 2 (WORLD_SIZE=2); "
        "pass --engine torch to train with several processes, or run mlpkit without torchrun\n"
    )
    assert not (tmp_path / "run").exists()


def test_a_relative_data_dir_is_recorded_absolute_so_evaluate_and_resume_work_from_elsewhere(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(data_dir, tmp_path / "fm")
    monkeypatch.chdir(tmp_path)
    argv = train_args(Path("fm"), Path("run"), "--epochs", "1", "-q")
    assert run_cli(*argv)[0] == 0
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())["data"]["data_dir"]
    assert recorded == str(tmp_path / "fm")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    code, _, err = run_cli("evaluate", tmp_path / "run")
    assert code == 0, err
    code, _, err = run_cli("train", "--resume", tmp_path / "run", "--epochs", "2", "-q")
    assert code == 0, err
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 2


def test_evaluate_and_resume_take_data_dir_and_honour_mlpkit_data_when_the_data_moved(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(data_dir, tmp_path / "fm")
    assert run_cli(*train_args(tmp_path / "fm", tmp_path / "run", "--epochs", "1", "-q"))[0] == 0
    (tmp_path / "fm").rename(tmp_path / "moved")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    code, out, err = run_cli("evaluate", tmp_path / "run", "--data-dir", tmp_path / "moved")
    assert code == 0, err
    assert f"test accuracy  {summary['test_accuracy']:.4f}" in out
    monkeypatch.setenv("MLPKIT_DATA", str(tmp_path / "moved"))
    code, out, err = run_cli("evaluate", tmp_path / "run")
    assert code == 0, err
    assert f"the run's data directory {tmp_path / 'fm'} does not exist; searching $MLPKIT_DATA" in err
    code, _, err = run_cli(
        "train", "--resume", tmp_path / "run", "--epochs", "2", "--data-dir", tmp_path / "moved"
    )
    assert code == 0, err
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data"]["data_dir"] == str(
        tmp_path / "moved"
    )


def test_resume_with_epochs_extends_a_finished_run_and_refuses_other_settings(
    data_dir: Path, run: tuple[Path, int, str, str], tmp_path: Path
) -> None:
    short = tmp_path / "short"
    assert run_cli(*train_args(data_dir, short, "--epochs", "2", "-q"))[0] == 0
    before = snapshot(short)
    code, _, err = run_cli("train", "--resume", short, "--lr", "0.5")
    assert code == 2 and snapshot(short) == before
    assert err == (
        f"mlpkit: error: --resume continues {short} with the settings in its config.json; it cannot be "
        "combined with --lr (it takes --epochs, --data-dir, --device, --checkpoint-interval)\n"
    )
    code, _, err = run_cli("train", "--resume", short, "--epochs", "4", "--checkpoint-interval", "0")
    assert code == 0, err
    # Epochs 3 and 4 continue exactly where the 2-epoch run stopped: the straight 4-epoch run.
    assert without_seconds(short) == without_seconds(run[0])
    recorded = json.loads((short / "config.json").read_text())
    assert (recorded["optim"]["epochs"], recorded["run"]["checkpoint_interval"]) == (4, 0)


def test_resume_of_a_finished_run_changes_nothing(data_dir: Path, tmp_path: Path) -> None:
    done = tmp_path / "done"
    assert run_cli(*train_args(data_dir, done, "--epochs", "1", "-q"))[0] == 0
    before = snapshot(done)
    code, _, err = run_cli("train", "--resume", done)
    assert code == 0, err
    assert snapshot(done) == before                   # summary.json keeps its wall time, byte for byte
    assert "nothing to train: 1 of 1 epochs are done" in err


def test_ctrl_c_before_the_first_epoch_leaves_nothing_and_the_same_command_runs_again(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlpkit.train.numpy_trainer as numpy_trainer

    original = numpy_trainer.NumpyTrainer.train_epoch

    def interrupted(self: Any, x: Any, y: Any) -> Any:
        raise KeyboardInterrupt

    argv = train_args(data_dir, tmp_path / "run", "--epochs", "1")
    monkeypatch.setattr(numpy_trainer.NumpyTrainer, "train_epoch", interrupted)
    code, _, err = run_cli(*argv)
    assert code == 130
    assert not (tmp_path / "run").exists()
    assert "interrupted before the first epoch finished; nothing to resume" in err
    monkeypatch.setattr(numpy_trainer.NumpyTrainer, "train_epoch", original)
    code, _, err = run_cli(*argv)
    assert code == 0, err


def test_a_missing_optional_package_is_one_line_naming_the_extra(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlpkit._optional as optional

    monkeypatch.setattr(optional, "is_installed", lambda module: module != "torch")
    code, out, err = run_cli(*train_args(data_dir, tmp_path / "run", "--engine", "torch"))
    assert (code, out) == (2, "")
    assert err == (
        "mlpkit: error: the torch engine (--engine torch) needs torch, which is not installed: "
        "pip install 'mlpkit[torch]'\n"
    )
    assert not (tmp_path / "run").exists()


def test_a_network_too_large_for_memory_is_refused_with_the_sizes(data_dir: Path, tmp_path: Path) -> None:
    code, out, err = run_cli(*train_args(data_dir, tmp_path / "run", "--hidden", "100000000"))
    assert (code, out) == (2, "")
    # 784*1e8 + 1e8 + 1e8*10 + 10 = 79,500,000,010 parameters as float32 (296.2 GiB), 4 copies with plain
    # SGD; activations: (3 x 32 training + 2 x 8192 scoring rows) x (1e8 + 10) floats = 6.0 TiB.
    assert re.fullmatch(
        r"mlpkit: error: training this network needs about 7\.2 TiB of memory \(weights, gradients, best and "
        r"last-good copies: 4 x 296\.2 GiB = 1\.2 TiB; activations of a training batch of 32 and a scoring "
        r"batch of 8192: 6\.0 TiB\), but [\d.]+ [KMGT]i?B are available; use fewer or narrower hidden layers "
        r"\(--hidden\) or a smaller --batch-size\n",
        err.splitlines(keepends=True)[-1],
    )
    assert "Traceback" not in err and not (tmp_path / "run").exists()


def test_a_batch_larger_than_the_training_set_is_said_to_be_capped(data_dir: Path, tmp_path: Path) -> None:
    argv = train_args(data_dir, tmp_path / "run", "--batch-size", "1000000000", "--epochs", "1")
    code, _, err = run_cli(*argv)
    assert code == 0, err
    n_train = 300 - N_VAL
    assert (
        f"batch_size 1000000000 is larger than the {n_train} training images: each epoch is one batch "
        f"of {n_train}"
    ) in err


# -- predict on what a user has at hand --------------------------------------------------------------


def _predicted(out: str) -> list[tuple[str, str]]:
    """(name, class_name) per data line of a predict CSV."""
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0][:5] == ["row", "name", "class", "class_name", "probability"]
    return [(row[1], row[3]) for row in rows[1:]]


def test_predict_takes_one_image_in_every_shape_a_user_has(
    run: tuple[Path, int, str, str], data_dir: Path, tmp_path: Path
) -> None:
    images = read_idx(data_dir / "t10k-images-idx3-ubyte")[:3]                  # (3, 28, 28) uint8
    np.save(tmp_path / "many.npy", images)
    code, out, err = run_cli("predict", run[0], tmp_path / "many.npy")
    assert code == 0, err
    expected = [label for _, label in _predicted(out)]
    for name, array in [
        ("one.npy", images[0]),                           # (28, 28): one image, not 28 rows of 28
        ("flat.npy", images[0].reshape(784)),             # (784,)
        ("channel.npy", images[:, :, :, None]),           # (N, 28, 28, 1)
    ]:
        np.save(tmp_path / name, array)
        code, out, err = run_cli("predict", run[0], tmp_path / name)
        assert code == 0, err
        got = [label for _, label in _predicted(out)]
        assert got == (expected[:1] if array.ndim < 3 else expected), name


def test_predict_reads_png_files_and_folders_with_a_note(
    run: tuple[Path, int, str, str], data_dir: Path, tmp_path: Path
) -> None:
    from PIL import Image

    images = read_idx(data_dir / "t10k-images-idx3-ubyte")[:2]
    np.save(tmp_path / "ref.npy", images)
    expected = [label for _, label in _predicted(run_cli("predict", run[0], tmp_path / "ref.npy")[1])]
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"item{i}.png")           # 28x28 grey: read exactly
    Image.fromarray(images[0]).convert("RGB").resize((56, 56)).save(tmp_path / "big.png")
    code, out, err = run_cli("predict", run[0], folder)
    assert code == 0, err
    assert _predicted(out) == [("item0.png", expected[0]), ("item1.png", expected[1])]
    code, out, err = run_cli("predict", run[0], tmp_path / "big.png")
    assert code == 0, err
    assert [name for name, _ in _predicted(out)] == ["big.png"]
    assert "converted" in err and "resized 56x56 -> 28x28" in err           # the notes are shown


def test_predict_drops_a_leading_label_column_and_scores_against_it(
    run: tuple[Path, int, str, str], data_dir: Path, tmp_path: Path
) -> None:
    images = read_idx(data_dir / "t10k-images-idx3-ubyte")[:20].reshape(20, 784)
    labels = read_idx(data_dir / "t10k-labels-idx1-ubyte")[:20]
    table = np.column_stack([labels, images])                                    # (20, 785)
    np.savetxt(tmp_path / "labelled.csv", table, fmt="%d", delimiter=",", header="label," + ",".join(
        f"pixel{i}" for i in range(784)), comments="")
    np.savetxt(tmp_path / "plain.csv", images, fmt="%d", delimiter=",")
    code, out, err = run_cli("predict", run[0], tmp_path / "labelled.csv")
    assert code == 0, err
    _, plain, _ = run_cli("predict", run[0], tmp_path / "plain.csv")
    assert [label for _, label in _predicted(out)] == [label for _, label in _predicted(plain)]
    predicted = np.array([FASHION_MNIST_CLASSES.index(label) for _, label in _predicted(out)])
    assert f"accuracy {np.mean(predicted == labels):.4f} against its label column (20 images)" in err


def test_predict_refuses_pixels_already_scaled_unless_told(
    run: tuple[Path, int, str, str], data_dir: Path, tmp_path: Path
) -> None:
    images = read_idx(data_dir / "t10k-images-idx3-ubyte")[:5]
    np.save(tmp_path / "grey.npy", images)
    np.save(tmp_path / "scaled.npy", images / 255.0)
    code, out, err = run_cli("predict", run[0], tmp_path / "scaled.npy")
    assert (code, out) == (2, "")
    assert "every value lies in [0, 1], so the pixels look already scaled" in err
    assert "pass --input-scale 1" in err
    code, out, err = run_cli("predict", run[0], tmp_path / "scaled.npy", "--input-scale", "1")
    assert code == 0, err
    reference = run_cli("predict", run[0], tmp_path / "grey.npy")[1]
    assert [label for _, label in _predicted(out)] == [label for _, label in _predicted(reference)]


def test_predict_top_k_and_probabilities(
    run: tuple[Path, int, str, str], data_dir: Path, tmp_path: Path
) -> None:
    np.save(tmp_path / "x.npy", read_idx(data_dir / "t10k-images-idx3-ubyte")[:4])
    code, out, err = run_cli("predict", run[0], tmp_path / "x.npy", "--top-k", "3", "--probabilities")
    assert code == 0, err
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == [
        "row", "name", *(f"{col}_{k}" for k in (1, 2, 3) for col in ("class", "class_name", "probability")),
        *FASHION_MNIST_CLASSES,
    ]
    for row in rows[1:]:
        top = [float(row[4]), float(row[7]), float(row[10])]
        every = [float(p) for p in row[11:]]
        assert top == sorted(every, reverse=True)[:3]                         # the three largest, in order
        assert [int(row[2]), int(row[5]), int(row[8])] == [every.index(p) for p in top]
        assert sum(every) == pytest.approx(1.0, abs=1e-5)
    code, _, err = run_cli("predict", run[0], tmp_path / "x.npy", "--top-k", "11")
    assert code == 2 and "top_k must be an int from 1 to the 10 classes, got 11" in err


def test_the_log_names_the_data_directory_once(data_dir: Path, tmp_path: Path) -> None:
    code, _, err = run_cli(*train_args(data_dir, tmp_path / "run", "--epochs", "1"))
    assert code == 0, err
    assert err.count(str(data_dir)) == 1
    assert "model: 784-32-10 MLP (relu), 25,450 parameters (99.4 KiB as float32)" in err   # Keras' summary()
    epoch_line = next(line for line in err.splitlines() if line.startswith("epoch 1/1"))
    assert re.fullmatch(
        r"epoch 1/1  train_loss \d\.\d{4}  train_accuracy \d\.\d{4}  val_loss \d\.\d{4}  "
        r"val_accuracy \d\.\d{4}  lr 0\.3  \(\d+\.\d\d s\)",
        epoch_line,
    )
