"""``mlpkit train --engine torch``, ``--resume`` and ``torchrun`` end to end, on small generated IDX files.

The torchrun tests start the real launcher (``torchrun --standalone --nproc_per_node=2``) with one
thread per process: this machine's two cores are shared, and more threads slow each rank down
several times. What failing ranks print is checked with the ranks started directly
(:func:`launch.launch_ranks`), since torchrun kills the other ranks when the first one fails.
Bad-input tests assert the exit status, that the message names the problem, and that nothing
existing was changed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

import mlpkit.run as run_module
from fakedata import N_TEST, run_cli, snapshot, write_fake_fashion_mnist
from launch import launch_ranks

pytestmark = pytest.mark.torch  # needs torch (the `torch` extra)

TORCHRUN = Path(sys.executable).with_name("torchrun")
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
    "60",
    "--seed",
    "3",
]


def data_args(data_dir: Path) -> list[str | Path]:
    return ["--data-dir", data_dir, "--no-verify", "--no-download"]


def train_args(data_dir: Path, out: Path, *extra: str) -> list[str | Path]:
    return ["train", *data_args(data_dir), *SMALL, "--engine", "torch", "--out", out, *extra]


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def without_seconds(run_dir: Path) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in read_metrics(run_dir)]


def weights(run_dir: Path) -> dict[str, np.ndarray]:
    return load_file(str(run_dir / "model.safetensors"))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_fashion_mnist(tmp_path_factory.mktemp("fake-fashion-mnist"))


@pytest.fixture(scope="module")
def run(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str, str]:
    run_dir = tmp_path_factory.mktemp("runs") / "run"
    return (run_dir, *run_cli(*train_args(data_dir, run_dir)))


# -- train, evaluate, predict ---------------------------------------------------------------------


def test_interrupted_before_the_first_checkpoint_does_not_suggest_resume(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def ctrl_c_before_the_checkpoint(self: Any, record: dict[str, Any]) -> None:
        raise KeyboardInterrupt  # after epoch 1 has run, before its checkpoint is written

    cut = tmp_path / "cut"
    with monkeypatch.context() as patch:
        patch.setattr(run_module.TorchEpochWriter, "__call__", ctrl_c_before_the_checkpoint)
        code, _, err = run_cli(*train_args(data_dir, cut))
    assert code == 130 and "mlpkit: interrupted" in err
    assert "--resume" not in err
    assert (
        f"interrupted before the first epoch finished; nothing to resume, so {cut} was removed: "
        "run the same command again to start over"
    ) in err
    assert not cut.exists()
    assert run_cli(*train_args(data_dir, cut, "--epochs", "1"))[0] == 0  # the same command again


def test_train_with_the_torch_engine_writes_a_run_the_numpy_engine_evaluates(
    run: tuple[Path, int, str, str], data_dir: Path, tmp_path: Path
) -> None:
    run_dir, code, out, err = run
    assert code == 0, err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["engine"] == "torch" and summary["test_accuracy"] > 0.8
    assert re.search(rf"^test accuracy +{summary['test_accuracy']:.4f} ", out, flags=re.MULTILINE)
    assert "epoch 4/4" in err and "torch engine on cpu" in err
    code, out, err = run_cli("evaluate", run_dir)  # the NumPy engine reads the torch weights
    assert code == 0, err
    assert re.search(rf"^test accuracy +{summary['test_accuracy']:.4f}$", out, flags=re.MULTILINE)
    np.save(tmp_path / "x.npy", np.zeros((3, 784), dtype=np.uint8))
    code, out, err = run_cli("predict", run_dir, tmp_path / "x.npy")
    assert code == 0 and len(out.splitlines()) == 4, err
    assert summary["n_test"] == N_TEST


def test_interrupted_after_epoch_2_then_resumed_equals_4_uninterrupted_epochs(
    run: tuple[Path, int, str, str], data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = run_module.TorchEpochWriter.__call__

    def ctrl_c_after_epoch_2(self: Any, record: dict[str, Any]) -> None:
        original(self, record)  # metrics line, model and checkpoint of this epoch are on disk
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    cut = tmp_path / "cut"
    with monkeypatch.context() as patch:
        patch.setattr(run_module.TorchEpochWriter, "__call__", ctrl_c_after_epoch_2)
        code, _, err = run_cli(*train_args(data_dir, cut), "--checkpoint-interval", "0")
    assert code == 130 and "mlpkit: interrupted" in err
    assert f"interrupted; the checkpoint holds epoch 2; continue with: mlpkit train --resume {cut}" in err
    assert [r["epoch"] for r in read_metrics(cut)] == [1, 2]

    code, out, err = run_cli("train", "--resume", cut)
    assert code == 0, err
    assert "resumed from the checkpoint of epoch 2" in err and "epoch 3/4" in err and "epoch 1/4" not in err
    uninterrupted = run[0]
    assert without_seconds(cut) == without_seconds(uninterrupted)
    ours, theirs = weights(cut), weights(uninterrupted)
    assert ours.keys() == theirs.keys()
    for name, tensor in theirs.items():
        np.testing.assert_array_equal(ours[name], tensor, err_msg=name)  # bit for bit on the CPU
    first, second = (json.loads((d / "summary.json").read_text()) for d in (cut, uninterrupted))
    assert first["test_loss"] == second["test_loss"] and first["resumed_at_epoch"] == 2
    assert re.search(rf"^run directory +{re.escape(str(cut))}$", out, flags=re.MULTILINE)


# -- bad input -------------------------------------------------------------------------------------


def test_resume_takes_no_setting_of_the_model_or_optimizer(run: tuple[Path, int, str, str]) -> None:
    before = snapshot(run[0])
    code, _, err = run_cli("train", "--resume", run[0], "--epochs", "8", "--lr", "0.1", "--overwrite")
    assert code == 2
    assert err == (
        f"mlpkit: error: --resume continues {run[0]} with the settings in its config.json; it cannot be "
        "combined with --lr, --overwrite (it takes --epochs, --data-dir, --device, --checkpoint-interval)\n"
    )
    assert snapshot(run[0]) == before


def test_resume_without_a_checkpoint_is_named_and_changes_nothing(
    run: tuple[Path, int, str, str], tmp_path: Path
) -> None:
    copy = shutil.copytree(run[0], tmp_path / "copy")
    (copy / "checkpoint.json").unlink()
    before = snapshot(copy)
    code, _, err = run_cli("train", "--resume", copy)
    assert code == 2
    assert err.startswith(f"mlpkit: error: cannot resume: no checkpoint in {copy} (no checkpoint.json)")
    assert snapshot(copy) == before
    code, _, err = run_cli("train", "--resume", tmp_path / "nope")
    assert (code, err) == (
        2,
        f"mlpkit: error: cannot resume: run directory {tmp_path / 'nope'} does not exist\n",
    )


def test_resume_with_another_hidden_size_names_the_tensor_and_both_shapes(
    run: tuple[Path, int, str, str], tmp_path: Path
) -> None:
    copy = shutil.copytree(run[0], tmp_path / "copy")
    config = json.loads((copy / "config.json").read_text())
    config["model"]["hidden_features"] = [64]
    (copy / "config.json").write_text(json.dumps(config))
    before = snapshot(copy)
    code, _, err = run_cli("train", "--resume", copy)
    assert code == 2
    assert f"checkpoint in {copy} was written for a different architecture" in err
    assert "tensor '0.weight' has shape (32, 784) in the checkpoint but (64, 784) in the model" in err
    assert snapshot(copy) == before


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--engine", "jax"],
            r"\[run\] engine must be one of \['numpy', 'torch'\], got 'jax'",
        ),
        (
            ["--engine", "torch", "--device", "gpu"],
            r"\[run\] device must be one of \['auto', 'cpu', 'cuda'\] or 'cuda:N', got 'gpu'",
        ),
        (
            ["--device", "cuda"],
            r"\[run\] device must be 'cpu' for engine 'numpy', got 'cuda'",
        ),
        (
            ["--schedule", "warmup"],
            r"\[optim\] schedule must be one of \['constant', 'cosine', 'exponential', 'plateau', 'step'\], "
            r"got 'warmup'",
        ),
        (
            ["--min-lr", "0.01"],
            r"\[optim\] min_lr applies to schedule 'cosine' or 'plateau' only",
        ),
        (
            ["--grad-clip", "1"],
            r"\[optim\] grad_clip_norm needs engine 'torch'",
        ),
        (
            ["--augment", "cutout"],
            r"\[data\] augment must be one of \['none', 'shift_flip'\], got 'cutout'",
        ),
    ],
)
def test_bad_settings_name_the_key_and_list_the_valid_values(
    tmp_path: Path, flags: list[str], message: str
) -> None:
    code, _, err = run_cli("train", *flags, "--out", tmp_path / "run")
    assert code == 2
    assert re.match(r"mlpkit: error: command-line options: " + message, err), err
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error of a machine without CUDA")
def test_cuda_on_this_cpu_machine_is_a_clear_error(data_dir: Path, tmp_path: Path) -> None:
    code, _, err = run_cli(*train_args(data_dir, tmp_path / "run", "--device", "cuda"))
    assert code == 2
    assert err.startswith("mlpkit: error: device 'cuda' was requested but CUDA is not available")
    assert "use device 'cpu', or 'auto'" in err
    assert not (tmp_path / "run").exists()


def test_schedule_and_clipping_flags_reach_the_run(data_dir: Path, tmp_path: Path) -> None:
    args = train_args(
        data_dir, tmp_path / "run", "--schedule", "cosine", "--min-lr", "0.03", "--grad-clip", "5"
    )
    code, _, err = run_cli(*args, "-q")
    assert code == 0, err
    config = json.loads((tmp_path / "run" / "config.json").read_text())["optim"]
    assert (config["schedule"], config["min_lr"], config["grad_clip_norm"]) == ("cosine", 0.03, 5.0)
    lrs = [r["lr"] for r in read_metrics(tmp_path / "run")]
    # Epoch e (from 1) trains with the schedule's lr after e - 1 steps, T = --epochs = 4:
    # lr_e = min_lr + (lr - min_lr)(1 + cos(π (e - 1) / T)) / 2 = 0.03 + 0.27 (1 + cos(π (e - 1) / 4)) / 2,
    # i.e. 0.3, 0.03 + 0.27 (2 + √2) / 4, 0.165, 0.03 + 0.27 (2 - √2) / 4 (min_lr is reached after epoch 4).
    root2 = 2**0.5
    expected = [0.3, 0.03 + 0.27 * (2 + root2) / 4, 0.165, 0.03 + 0.27 * (2 - root2) / 4]
    assert lrs == pytest.approx(expected, rel=1e-12)
    assert lrs == pytest.approx([0.3, 0.26045941, 0.165, 0.06954059], rel=1e-6)


# -- several processes -----------------------------------------------------------------------------


def torchrun(*argv: str | Path, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``torchrun --standalone --nproc_per_node=2 -m mlpkit ARGV``, one thread each."""
    if not TORCHRUN.is_file():
        pytest.skip(f"no torchrun beside {sys.executable}")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env |= {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [str(TORCHRUN), "--standalone", "--nproc_per_node=2", "-m", "mlpkit", *map(str, argv)]
    for _attempt in range(3):
        try:
            result = subprocess.run(
                command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired as exc:
            pytest.fail(
                f"torchrun did not finish within {timeout} s (a rank waiting for another?):\n{exc.stderr}"
            )
        # --standalone picks a free port and frees it again before the ranks bind it; another
        # process (a second torchrun) may take it in between. Only then is the launch repeated.
        if result.returncode == 0 or "address already in use" not in result.stderr.lower():
            break
    return result


def test_torchrun_two_processes_equal_one_process_with_the_same_global_batch(
    data_dir: Path, tmp_path: Path
) -> None:
    args = ["train", *data_args(data_dir), *SMALL, "--engine", "torch", "--dtype", "float64", "--name", "ddp"]
    (tmp_path / "ddp").mkdir()
    result = torchrun(*args, "--no-progress", cwd=tmp_path / "ddp")
    assert result.returncode == 0, result.stderr

    # Exactly one run directory, named by rank 0 (its timestamp) and written by rank 0 only.
    written = list((tmp_path / "ddp").iterdir())
    assert [p.name for p in written] == ["runs"]
    (run_dir,) = (tmp_path / "ddp" / "runs").iterdir()
    assert re.fullmatch(r"\d{8}-\d{6}-ddp", run_dir.name)
    assert result.stdout.count("run directory") == 1  # rank 0 reports, rank 1 stays quiet
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["epochs_run"] == 4

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code, _, err = run_cli(*args, "--out", tmp_path / "single", "-q")
    finally:
        torch.set_num_threads(threads)
    assert code == 0, err
    two, one = read_metrics(run_dir), read_metrics(tmp_path / "single")
    assert len(two) == len(one) == 4
    for ours, theirs in zip(two, one, strict=True):
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"):
            assert ours[key] == pytest.approx(theirs[key], rel=1e-9, abs=1e-12), key
    ours, theirs = weights(run_dir), weights(tmp_path / "single")
    for name, tensor in theirs.items():
        np.testing.assert_allclose(ours[name], tensor, rtol=1e-9, atol=1e-12, err_msg=name)
    assert (
        summary["test_accuracy"]
        == json.loads((tmp_path / "single" / "summary.json").read_text())["test_accuracy"]
    )


def test_torchrun_resume_gives_every_rank_back_its_own_dropout_masks(data_dir: Path, tmp_path: Path) -> None:
    # With dropout each rank draws its own masks. A 2-epoch run whose config.json is raised to 3
    # epochs and resumed must end where the straight 3-epoch run ended, bit for bit: the checkpoint
    # holds both ranks' generators (with rank 0's on both ranks, rank 1's masks would change).
    base = ["train", *data_args(data_dir), *SMALL, "--engine", "torch", "--dtype", "float64",
            "--dropout", "0.3", "--no-progress"]
    whole = torchrun(*base, "--epochs", "3", "--out", tmp_path / "whole", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    part = torchrun(*base, "--epochs", "2", "--out", tmp_path / "part", cwd=tmp_path)
    assert part.returncode == 0, part.stderr
    config = json.loads((tmp_path / "part" / "config.json").read_text())
    config["optim"]["epochs"] = 3
    (tmp_path / "part" / "config.json").write_text(json.dumps(config))
    resumed = torchrun("train", "--resume", tmp_path / "part", "--no-progress", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert without_seconds(tmp_path / "part") == without_seconds(tmp_path / "whole")
    ours, theirs = weights(tmp_path / "part"), weights(tmp_path / "whole")
    for name, tensor in theirs.items():
        np.testing.assert_array_equal(ours[name], tensor, err_msg=name)


# What a failing multi-process run prints and leaves behind is checked with the ranks started
# directly too (launch_ranks), each rank's output apart. Under torchrun the agent SIGTERMs the other
# ranks 0.1 s after the first one exits with an error; mlpkit's CLI therefore waits, after printing,
# until every rank is done (wait_for_every_rank), so each rank's line reaches the user.


def test_torchrun_stops_when_rank_0_refuses_the_run_directory(data_dir: Path, tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    result = torchrun(*train_args(data_dir, taken), cwd=tmp_path, timeout=60)
    assert result.returncode != 0
    assert f"mlpkit: error: run directory {taken} already exists and is not empty" in result.stderr
    assert "mlpkit: error: rank 1 stops: rank 0 could not prepare the run directory" in result.stderr
    assert snapshot(taken) == {"notes.txt": b"mine"}


def test_torchrun_refuses_the_numpy_engine_on_every_rank(data_dir: Path, tmp_path: Path) -> None:
    args = [a for a in train_args(data_dir, tmp_path / "run") if a not in ("--engine", "torch")]
    result = torchrun(*args, cwd=tmp_path, timeout=60)
    assert result.returncode != 0
    refusal = "mlpkit: error: the NumPy engine trains in one process, but torchrun started 2 (WORLD_SIZE=2)"
    assert result.stderr.count(refusal) == 2, result.stderr              # both ranks said why
    assert not (tmp_path / "run").exists()


def test_every_rank_stops_when_rank_0_refuses_the_run_directory(data_dir: Path, tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    rank0, rank1 = launch_ranks(["-m", "mlpkit", *map(str, train_args(data_dir, taken))], cwd=tmp_path,
                                timeout=60)
    refusal = f"run directory {taken} already exists and is not empty (notes.txt); nothing was changed"
    assert (rank0.returncode, rank1.returncode) == (2, 2)
    assert rank0.stderr.endswith(f"mlpkit: error: {refusal}. Choose another --out, or pass --overwrite to "
                                 "replace its run files\n"), rank0.stderr
    assert rank1.stderr.startswith(
        f"mlpkit: error: rank 1 stops: rank 0 could not prepare the run directory (OutputError: {refusal}"
    ), rank1.stderr
    assert snapshot(taken) == {"notes.txt": b"mine"}


def test_every_rank_stops_when_one_rank_cannot_load_the_data(data_dir: Path, tmp_path: Path) -> None:
    # Rank 1 alone fails (a stand-in for a file it cannot read); rank 0 must not wait for it forever.
    script = tmp_path / "rank1_fails.py"
    script.write_text(
        "import os, sys\n"
        "import mlpkit.tasks.fashion_mnist as task\n"
        "from mlpkit.cli import main\n"
        "from mlpkit.errors import DataNotFoundError\n"
        "load = task.load_splits\n"
        "def prepare(config, rng):\n"
        "    if os.environ['RANK'] == '1':\n"
        "        raise DataNotFoundError('rank 1 cannot read the data')\n"
        "    return load(config, rng)\n"
        "task.load_splits = prepare\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    argv = [str(script), *map(str, train_args(data_dir, tmp_path / "run"))]
    rank0, rank1 = launch_ranks(argv, cwd=tmp_path, timeout=60)
    assert (rank0.returncode, rank1.returncode) == (2, 2)
    assert rank1.stderr == "mlpkit: error: rank 1 cannot read the data\n"
    assert rank0.stderr.endswith(
        "mlpkit: error: rank 0 stops: 1 other rank(s) failed to load the data (see their errors)\n"
    ), rank0.stderr
    assert not (tmp_path / "run").exists()  # rank 0 created it, and removed it again empty
