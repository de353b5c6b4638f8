"""The vit-mlp study: parameter and FLOP counts against the module and torch's FLOP counter, the
ablation against a ViT whose block runs without its MLP, and the study on a trained run's ViT."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from fakedata import run_cli, write_fake_fashion_mnist
from mlpkit.config import RunConfig
from mlpkit.errors import ConfigError
from mlpkit.experiments import vit_mlp as study
from mlpkit.models.vit import ViT
from mlpkit.run import train_run

pytestmark = pytest.mark.torch  # needs torch (the `torch` extra)

VitRun = tuple[Path, Path, dict[str, object]]
"""A trained ViT run's directory, its data directory and its summary."""


def small_vit() -> ViT:
    torch.manual_seed(0)
    return ViT(image_size=28, patch_size=7, num_classes=10, dim=16, depth=3, heads=2, mlp_dim=24,
               dim_head=6).double().eval()


def test_parameter_counts_add_up_to_the_module() -> None:
    vit = small_vit()
    params, _, per_block = study.budget(vit)
    assert params.total == sum(p.numel() for p in vit.parameters())
    # Each block's MLP: 16*24 + 24 + 24*16 + 16, plus its LayerNorm's 2*16.
    assert [b[1] for b in per_block] == [16 * 24 + 24 + 24 * 16 + 16 + 32] * 3
    # Attention: Q, K, V without bias (16 x 3*12), output 12*16 + 16, LayerNorm 2*16.
    assert [b[0] for b in per_block] == [16 * 36 + 12 * 16 + 16 + 32] * 3
    assert params.mlp_share == pytest.approx(params.mlp / params.total)


@pytest.mark.parametrize("options", [{"patch_norm": True}, {"pos_embedding": "sincos"}])
def test_the_embedding_counts_patch_norm_and_not_a_fixed_position_table(options: dict[str, object]) -> None:
    torch.manual_seed(0)
    vit = ViT(image_size=28, patch_size=7, num_classes=10, dim=16, depth=1, heads=2, mlp_dim=24, **options)
    params, _, _ = study.budget(vit)
    assert params.total == sum(p.numel() for p in vit.parameters())
    projection, cls_token, positions = 49 * 16 + 16, 16, 17 * 16
    if options.get("patch_norm"):       # LayerNorm(49) on the flattened patch, LayerNorm(16) on its token
        assert params.embedding == projection + cls_token + positions + 2 * 49 + 2 * 16
    else:                               # the sine-cosine table is a buffer: nothing trained
        assert params.embedding == projection + cls_token


def test_flop_formulas_match_torchs_counter() -> None:
    vit = small_vit()
    _, flops, per_block = study.budget(vit)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        vit(torch.rand(1, 784, dtype=torch.float64))
    counts = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    t, inner = 17, 12                                                   # 16 patches + the class token
    for i, (_, _, attention, mlp) in enumerate(per_block):
        # The counter counts 2 FLOPs per multiply-add; it does not count the CPU's fused attention
        # kernel, whose Q Kᵀ and weights · V are 2·T²·h·d multiply-adds.
        assert counts[f"ViT.blocks.{i}.mlp"] == 2 * mlp
        assert counts[f"ViT.blocks.{i}.attention"] + 2 * (2 * t * t * inner) == 2 * attention
    assert counts["ViT.patch_embedding"] == 2 * flops.embedding
    assert counts["ViT.head"] == 2 * flops.head


def test_ablation_removes_one_mlp_branch_and_puts_it_back() -> None:
    vit = small_vit()
    rng = np.random.default_rng(0)
    x = rng.random((40, 784))
    with torch.no_grad():
        y = vit(torch.from_numpy(x)).argmax(dim=1).numpy()             # labels the ViT gets all right
    y[:10] = (y[:10] + 1) % 10                                          # and 10 it gets wrong
    mlps = list(vit.mlps)
    result = study.vit_mlp_study(vit, x, y, config={"n_test": 40})
    assert result.accuracy == 0.75
    assert all(a is b for a, b in zip(vit.mlps, mlps, strict=True))     # the trained ViT is left as it was
    for entry in result.ablation:
        block = vit.blocks[entry.block - 1]
        # The reference: the same block written out without its MLP branch.
        z = vit.embed(torch.from_numpy(x))
        with torch.no_grad():
            for other in vit.blocks:
                z = z + other.attention(z) if other is block else other(z)
            predicted = vit.head(vit.norm(z[:, 0])).argmax(dim=1).numpy()
        assert entry.accuracy_without_mlp == pytest.approx(float(np.mean(predicted == y)))
        assert entry.accuracy_drop == pytest.approx(0.75 - entry.accuracy_without_mlp)


@pytest.fixture(scope="module")
def vit_run(tmp_path_factory: pytest.TempPathFactory) -> VitRun:
    data_dir = write_fake_fashion_mnist(tmp_path_factory.mktemp("fake-fashion-mnist"))
    config = RunConfig.from_dict({
        "model": {"name": "vit", "patch_size": 7, "dim": 16, "depth": 2, "heads": 2, "mlp_dim": 32},
        "optim": {"optimizer": "adamw", "lr": 3e-3, "batch_size": 32, "epochs": 2},
        "data": {"data_dir": str(data_dir), "val_size": 60, "download": False, "verify": False},
        "run": {"out": str(tmp_path_factory.mktemp("runs") / "vit"), "engine": "torch", "seed": 1},
    })
    result = train_run(config)
    return result.run_dir, data_dir, result.summary


def test_the_study_reads_a_trained_vit_run(vit_run: VitRun, tmp_path: Path) -> None:
    run_dir, _, summary = vit_run
    code, _, err = run_cli("experiment", "vit-mlp", "--run", run_dir, "--out", tmp_path / "study")
    assert code == 0, err
    numbers = json.loads((tmp_path / "study" / "vit-mlp.json").read_text())
    assert numbers["accuracy"] == summary["test_accuracy"]            # the run's own test set and model
    assert numbers["config"]["run_dir"] == str(run_dir) and numbers["config"]["n_test"] == 100
    assert [a["block"] for a in numbers["ablation"]] == [1, 2]
    assert numbers["config"]["vit"]["dim"] == 16 and numbers["config"]["quick"] is False
    summary_md = (tmp_path / "study" / "summary.md").read_text()
    assert "Quick run" not in summary_md and "](vit-mlp.png)" in summary_md


def test_the_study_needs_a_vit(vit_run: VitRun, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="the vit-mlp study needs a trained ViT: pass --run RUN_DIR"):
        study.run_vit_mlp(tmp_path / "none")
    assert not (tmp_path / "none").exists()
    _, data_dir, _ = vit_run
    code, _, err = run_cli(
        "train", "--hidden", "8", "--epochs", "1", "--data-dir", data_dir, "--no-verify", "--no-download",
        "--val-size", "60", "--out", tmp_path / "mlp",
    )
    assert code == 0, err
    with pytest.raises(ConfigError, match=r"needs a ViT run \(mlpkit train --model vit\); .* trained an MLP"):
        study.run_vit_mlp(tmp_path / "out", run_dir=tmp_path / "mlp")


def test_run_applies_only_to_studies_that_read_one(tmp_path: Path) -> None:
    code, _, err = run_cli("experiment", "activations", "--run", tmp_path, "--out", tmp_path / "out")
    assert code == 2
    assert "--run applies to studies that read a trained run; 'activations' trains its own" in err


def test_identity_branch_differs_from_adding_the_normed_stream() -> None:
    # Removing the MLP means z' passes through, not z' + LN(z'): nn.Identity in place of block.mlp.
    vit = small_vit()
    block = vit.blocks[0]
    z = torch.randn(1, 17, 16, dtype=torch.float64)
    block.mlp = nn.Identity()
    torch.testing.assert_close(block(z), z + block.attention(z))
