"""``mlpkit train --model vit``: the ViT through the one runner, on small generated IDX files.

What is checked: a ViT run writes the same run directory as every image run and is scored by its
torch model (``summary.json``, ``mlpkit evaluate`` and ``mlpkit predict`` equal a ViT rebuilt here
from the weights file); an interrupted run resumed equals the straight run bit for bit; two
torchrun processes equal one; settings come from the command line and TOML ``[model]``; and the
errors (NumPy engine, patch size, heads) name the values, with nothing written.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.numpy import load_file

from fakedata import interrupt_after, run_cli, write_fake_fashion_mnist
from mlpkit.config import RunConfig, load_config
from mlpkit.data.idx import read_idx
from mlpkit.errors import ConfigError
from mlpkit.models.vit import ViT
from mlpkit.run import evaluate_run, load_run, predict_run, resume_run, train_run

pytestmark = pytest.mark.torch  # needs torch (the `torch` extra)

REPO = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")

SMALL_VIT = {"name": "vit", "patch_size": 7, "dim": 16, "depth": 2, "heads": 2, "mlp_dim": 32}


def vit_config(data_dir: Path, out: Path, **sections: dict[str, Any]) -> RunConfig:
    """A 2-block ViT of width 16, 3 epochs of batch 32 on 240 images, float64, torch on the CPU."""
    raw: dict[str, dict[str, Any]] = {
        "model": dict(SMALL_VIT),
        "optim": {"optimizer": "adamw", "lr": 3e-3, "batch_size": 32, "epochs": 3},
        "data": {"data_dir": str(data_dir), "val_size": 60, "download": False, "verify": False},
        "run": {"seed": 5, "out": str(out), "engine": "torch", "device": "cpu", "dtype": "float64"},
    }
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    return RunConfig.from_dict(raw)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_fashion_mnist(tmp_path_factory.mktemp("fake-fashion-mnist"))


@pytest.fixture(scope="module")
def run(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return train_run(vit_config(data_dir, tmp_path_factory.mktemp("runs") / "vit"))


def read_test_set(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(data_dir / "t10k-images-idx3-ubyte").reshape(-1, 784)
    return images, read_idx(data_dir / "t10k-labels-idx1-ubyte").astype(np.int64)


def rebuilt(run_dir: Path) -> ViT:
    """The saved ViT, rebuilt here from the weights file's metadata."""
    with safe_open(str(run_dir / "model.safetensors"), framework="numpy") as f:
        metadata = f.metadata()
    assert metadata["format"] == "mlpkit.vit"
    vit = ViT(**json.loads(metadata["vit"])).double().eval()
    state = load_file(str(run_dir / "model.safetensors"))
    vit.load_state_dict({name: torch.from_numpy(array) for name, array in state.items()})
    return vit


def test_a_vit_run_writes_the_image_run_files(run: Any) -> None:
    names = {p.name for p in run.run_dir.iterdir()}
    expected = {"config.json", "metrics.jsonl", "summary.json", "model.safetensors", "report.md",
                "curves.png", "predictions.png", "checkpoint.json"}
    assert expected <= names and len([n for n in names if n.startswith("checkpoint-epoch")]) == 1
    config = json.loads((run.run_dir / "config.json").read_text())
    assert config["model"]["name"] == "vit" and config["model"]["dim"] == 16
    lines = (run.run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]
    report = (run.run_dir / "report.md").read_text()
    assert "A Vision Transformer (7x7 patches, dim 16, depth 2, 2 heads, MLP 32, cls pooling, " in report


def test_a_vit_run_is_scored_by_its_torch_model(run: Any, data_dir: Path) -> None:
    images, labels = read_test_set(data_dir)
    vit = rebuilt(run.run_dir)
    with torch.no_grad():
        logits = vit(torch.from_numpy(images / 255.0))                       # (N, C), float64
    accuracy = float((logits.argmax(dim=1).numpy() == labels).mean())
    loss = float(torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels)))
    assert run.summary["test_accuracy"] == pytest.approx(accuracy, abs=1e-12)
    assert run.summary["test_loss"] == pytest.approx(loss, rel=1e-9)
    scores = evaluate_run(run.run_dir)
    assert scores["test_accuracy"] == run.summary["test_accuracy"]
    assert scores["test_loss"] == run.summary["test_loss"]       # the same path, the same numbers
    loaded = load_run(run.run_dir)
    assert loaded.spec is None and isinstance(loaded.network, ViT) and not loaded.network.training


def test_predict_reuses_a_vit_run(run: Any, data_dir: Path, tmp_path: Path) -> None:
    images, _ = read_test_set(data_dir)
    np.save(tmp_path / "seven.npy", images[:7].reshape(7, 28, 28))
    predictions = predict_run(run.run_dir, tmp_path / "seven.npy")
    with torch.no_grad():
        expected = torch.softmax(rebuilt(run.run_dir)(torch.from_numpy(images[:7] / 255.0)), dim=1)
    np.testing.assert_allclose(predictions.probabilities, expected.numpy(), rtol=1e-10, atol=1e-12)

    code, out, err = run_cli("predict", run.run_dir, tmp_path / "seven.npy")
    assert code == 0, err
    rows = out.splitlines()[1:]
    assert [int(r.split(",")[2]) for r in rows] == expected.argmax(dim=1).tolist()


def test_an_interrupted_vit_run_resumed_equals_the_straight_run(data_dir: Path, tmp_path: Path) -> None:
    # Dropout, augmentation and a cosine schedule: every generator and the schedule are in the checkpoint.
    extra = {
        "model": {"dropout": 0.1, "emb_dropout": 0.1},
        "optim": {"schedule": "cosine", "weight_decay": 0.05},
        "data": {"augment": "shift_flip", "max_shift": 1},
        "run": {"checkpoint_interval": 0},  # a checkpoint after every epoch: the cut falls on one
    }
    whole = train_run(vit_config(data_dir, tmp_path / "whole", **extra))
    with pytest.raises(KeyboardInterrupt):
        train_run(vit_config(data_dir, tmp_path / "cut", **extra), on_epoch_end=interrupt_after(2))
    resumed = resume_run(tmp_path / "cut")
    assert resumed.summary["resumed_at_epoch"] == 2

    def metrics(run_dir: Path) -> list[dict[str, Any]]:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]

    assert metrics(tmp_path / "cut") == metrics(tmp_path / "whole")
    a, b = (load_file(str(tmp_path / name / "model.safetensors")) for name in ("cut", "whole"))
    assert a.keys() == b.keys()
    for name, tensor in a.items():
        np.testing.assert_array_equal(tensor, b[name], err_msg=name)
    for key in ("test_accuracy", "test_loss", "best_epoch"):
        assert resumed.summary[key] == whole.summary[key], key


def test_vit_settings_come_from_the_command_line(data_dir: Path, tmp_path: Path) -> None:
    code, _, err = run_cli(
        "train", "--model", "vit", "--patch-size", "4", "--dim", "12", "--depth", "1", "--heads", "3",
        "--mlp-dim", "20", "--dim-head", "5", "--pool", "mean", "--emb-dropout", "0.1",
        "--pos-embedding", "sincos", "--patch-norm",
        "--data-dir", data_dir, "--no-verify", "--no-download", "--val-size", "60", "--epochs", "1",
        "--optimizer", "adamw", "--lr", "0.003", "--out", tmp_path / "cli", "--no-progress",
    )
    assert code == 0, err
    config = json.loads((tmp_path / "cli" / "config.json").read_text())
    assert config["run"]["engine"] == "torch"  # --model vit alone picks the torch engine
    loaded = load_run(tmp_path / "cli")
    assert loaded.network.arguments == {
        "image_size": [28, 28], "patch_size": [4, 4], "num_classes": 10, "dim": 12, "depth": 1,
        "heads": 3, "mlp_dim": 20, "channels": 1, "dim_head": 5, "dropout": 0.0, "emb_dropout": 0.1,
        "pool": "mean", "pos_embedding": "sincos", "patch_norm": True,
    }


def test_the_shipped_vit_config_reads_as_a_vit_on_the_torch_engine() -> None:
    config = load_config(REPO / "configs" / "vit_fashion_mnist.toml")
    assert config.model.name == "vit" and config.run.engine == "torch"
    assert config.data.augment == "shift_flip" and config.early_stopping.monitor == "val_accuracy"
    assert config.model.dim % config.model.heads == 0 and 28 % config.model.patch_size == 0


def test_toml_model_section_takes_the_vit_keys(tmp_path: Path) -> None:
    path = tmp_path / "vit.toml"
    path.write_text(
        '[model]\nname = "vit"\npatch_size = 4\ndim = 32\npool = "mean"\npos_embedding = "sincos"\n'
        'patch_norm = true\n[run]\nengine = "torch"\n'
    )
    config = load_config(path)
    assert (config.model.patch_size, config.model.dim, config.model.pool) == (4, 32, "mean")
    assert (config.model.pos_embedding, config.model.patch_norm) == ("sincos", True)
    path.write_text('[model]\npatch_size = 4\n')
    with pytest.raises(ConfigError, match=r"\[model\] patch_size applies to model 'vit' only, got "
                                          r"patch_size=4 with model 'mlp'"):
        load_config(path)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--engine", "numpy"], "name 'vit' needs engine 'torch' .*got engine 'numpy'; pass --engine torch"),
        (["--patch-size", "5"], r"\[model\] image_size 28x28 must be divisible by patch_size 5x5, got a "
                                r"remainder of 3x3 pixels"),
        (["--dim", "18", "--heads", "4"],
         "dim must be divisible by heads when dim_head is not given, got dim=18 with heads=4"),
        (["--hidden", "64"], "hidden_features applies to model 'mlp' only"),
        (["--pool", "max"], "pool must be one of"),
        (["--pos-embedding", "rope"], r"pos_embedding must be one of \['learned', 'sincos'\], got 'rope'"),
        (["--pos-embedding", "sincos", "--dim", "18", "--heads", "2"],
         "pos_embedding 'sincos' needs dim divisible by 4, got dim=18"),
    ],
)
def test_bad_vit_settings_are_named_and_nothing_is_written(
    data_dir: Path, tmp_path: Path, argv: list[str], message: str
) -> None:
    code, _, err = run_cli(
        "train", "--model", "vit", *argv, "--data-dir", data_dir, "--no-verify", "--no-download",
        "--val-size", "60", "--out", tmp_path / "bad",
    )
    assert code == 2
    assert err.strip().splitlines()[-1].startswith("mlpkit: error: "), err
    assert re.search(message, err), err
    assert not (tmp_path / "bad").exists()


def test_torchrun_two_processes_train_the_vit_as_one(data_dir: Path, tmp_path: Path) -> None:
    if not TORCHRUN.is_file():
        pytest.skip(f"no torchrun beside {sys.executable}")
    args = [
        "train", "--model", "vit", "--dim", "16", "--depth", "1", "--heads", "2", "--mlp-dim", "32",
        "--dtype", "float64", "--data-dir", str(data_dir), "--no-verify", "--no-download",
        "--val-size", "60", "--epochs", "2", "--batch-size", "32", "--optimizer", "adamw", "--lr", "0.003",
        "--no-progress",
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env |= {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [str(TORCHRUN), "--standalone", "--nproc_per_node=2", "-m", "mlpkit", *args]
    for _attempt in range(3):
        result = subprocess.run(
            [*command, "--out", str(tmp_path / "ddp")], env=env, capture_output=True, text=True, timeout=180,
            cwd=tmp_path,
        )
        if result.returncode == 0 or "address already in use" not in result.stderr.lower():
            break
    assert result.returncode == 0, result.stderr
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code, _, err = run_cli(*args, "--out", tmp_path / "one", "-q")
    finally:
        torch.set_num_threads(threads)
    assert code == 0, err
    # DDP starts every rank from rank 0's weights, which one process draws alike; the gradient
    # average over two halves of each batch equals the whole batch's, to rounding.
    two, one = (
        load_file(str(tmp_path / name / "model.safetensors")) for name in ("ddp", "one")
    )
    for name, tensor in one.items():
        np.testing.assert_allclose(two[name], tensor, rtol=1e-9, atol=1e-12, err_msg=name)
    assert json.loads((tmp_path / "ddp" / "summary.json").read_text())["world_size"] == 2


def test_a_vit_is_scored_in_batches_that_equal_one_pass() -> None:
    # Scoring runs VIT_EVAL_BATCH images a pass (its activations grow with the tokens); 1,100 images
    # are two full passes and a partial one, concatenated in order, and the module's mode is kept.
    from mlpkit.tasks.fashion_mnist import VIT_EVAL_BATCH, _vit_logits

    torch.manual_seed(0)
    vit = ViT(**{k: v for k, v in SMALL_VIT.items() if k != "name"}, image_size=28, num_classes=10)
    vit = vit.double().train()
    x = np.random.default_rng(0).random((2 * VIT_EVAL_BATCH + 76, 784))       # (1100, 784)
    logits = _vit_logits(vit, x)                                               # (1100, 10)
    assert vit.training
    with torch.no_grad():
        whole = vit.eval()(torch.from_numpy(x))                                # (1100, 10)
    assert logits.shape == (1100, 10)
    np.testing.assert_allclose(logits, whole.numpy(), rtol=1e-12, atol=1e-12)
