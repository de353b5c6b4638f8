"""What the MLP does inside a Vision Transformer: its share of the parameters and of the compute,
and the accuracy lost when one block's MLP is removed.

In a ViT (Dosovitskiy et al., ICLR 2021, sec. 3.1 "Inductive bias") only the MLP layers are local
and translation-equivariant: each token goes through the same two-layer MLP alone, while the
self-attention layers mix the tokens globally. This study takes a trained ViT
(:class:`mlpkit.models.vit.ViT`) and measures:

- **parameters** in the embedding (patch projection and its LayerNorms, class token, learned
  positions), in each block's attention (its LayerNorm, the Q/K/V and output projections), in each
  block's MLP (its LayerNorm and :class:`mlpkit.blocks.MLP`), and in the head (LayerNorm + Linear),
  counted from the module;
- **compute** per image, forward: multiply-adds of the matrix products, written out for T = N + 1
  tokens of width D, h heads of width d and MLP width H: embedding ``N·P²C·D``; attention
  ``3·T·D·h·d`` (Q, K, V) ``+ 2·T²·h·d`` (scores and their weighted sum) ``+ T·h·d·D`` (output);
  MLP ``2·T·D·H``; head ``D·C``. LayerNorm, softmax, GELU and bias additions are left out (a few
  operations per value, against D or H per value in the products);
- **ablation**: the test accuracy with block i's MLP branch removed (``block.mlp`` replaced by
  ``nn.Identity()``, so the block is ``z + MSA(LN(z))`` alone), one block at a time, every other
  weight as trained.

The ViT is a run of ``mlpkit train --model vit`` (``run_dir``: its test set is the one the run
scored), or with ``quick`` a small ViT trained here for two epochs on a subsample (a smoke test).

JSON keys: ``study``, ``config`` (``seed``, ``quick``, ``run_dir``, ``n_test``, ``vit``: the
constructor arguments), ``parameters`` and ``flops`` (each {``embedding``, ``attention``, ``mlp``,
``head``, ``total``, ``mlp_share``, ``attention_share``}; FLOPs are multiply-adds per image),
``accuracy`` (the trained ViT's test accuracy) and ``ablation`` (one entry per block: ``block``,
``mlp_parameters``, ``attention_parameters``, ``mlp_flops``, ``attention_flops``,
``accuracy_without_mlp``, ``accuracy_drop``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlpkit.errors import ConfigError
from mlpkit.evaluate.report import markdown_table
from mlpkit.experiments._common import (
    count,
    load_scaled_fashion_mnist,
    new_figure,
    prepare_out_dir,
    style_axes,
    write_study,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["Ablation", "Budget", "ViTMLPResult", "budget", "plot_vit_mlp", "run_vit_mlp", "vit_mlp_study"]

logger = logging.getLogger(__name__)

NAME = "vit-mlp"
QUICK_VIT = {"patch_size": 7, "dim": 32, "depth": 3, "heads": 4, "mlp_dim": 64, "dim_head": 8}
"""The small ViT a quick run trains: 16 patches of 7x7, three blocks."""
PARTS = ("embedding", "attention", "mlp", "head")


@dataclass(frozen=True)
class Budget:
    """Parameters or multiply-adds by part of the ViT, summed over the blocks."""

    embedding: int
    attention: int
    mlp: int
    head: int
    total: int = field(init=False)
    mlp_share: float = field(init=False)
    attention_share: float = field(init=False)

    def __post_init__(self) -> None:
        total = self.embedding + self.attention + self.mlp + self.head
        object.__setattr__(self, "total", total)
        object.__setattr__(self, "mlp_share", self.mlp / total)
        object.__setattr__(self, "attention_share", self.attention / total)


@dataclass(frozen=True)
class Ablation:
    """One encoder block: its sizes, and the test accuracy without its MLP branch."""

    block: int
    mlp_parameters: int
    attention_parameters: int
    mlp_flops: int
    attention_flops: int
    accuracy_without_mlp: float
    accuracy_drop: float


@dataclass(frozen=True)
class ViTMLPResult:
    study: str
    config: dict[str, Any]
    parameters: Budget
    flops: Budget
    accuracy: float
    ablation: list[Ablation]


def _parameters(module: Any) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def block_flops(vit: Any) -> tuple[int, int]:
    """Multiply-adds per image of one encoder block: (attention, MLP), by the formulas above."""
    a = vit.arguments
    t, d = vit.num_patches + 1, a["dim"]
    inner = a["heads"] * a["dim_head"]
    attention = 3 * t * d * inner + 2 * t * t * inner + t * inner * d
    mlp = 2 * t * d * a["mlp_dim"]
    return attention, mlp


def budget(vit: Any) -> tuple[Budget, Budget, list[tuple[int, int, int, int]]]:
    """The ViT's parameters and multiply-adds per image by part, and per block
    (attention parameters, MLP parameters, attention FLOPs, MLP FLOPs)."""
    a = vit.arguments
    ph, pw = a["patch_size"]
    per_block = []
    attention_flops, mlp_flops = block_flops(vit)
    for block in vit.blocks:
        # Each branch's pre-norm LayerNorm counts with its branch.
        mlp_params = _parameters(block.mlp) + _parameters(block.norm)
        per_block.append((_parameters(block.attention), mlp_params, attention_flops, mlp_flops))
    attention, mlp = sum(b[0] for b in per_block), sum(b[1] for b in per_block)
    head = _parameters(vit.norm) + _parameters(vit.head)
    # The embedding is every parameter outside the blocks and the head: the patch projection,
    # patch_norm's two LayerNorms, the class token and a learned position table (a sine-cosine
    # table is a buffer, not a parameter).
    embedding = _parameters(vit) - attention - mlp - head
    params = Budget(embedding=embedding, attention=attention, mlp=mlp, head=head)
    flops = Budget(
        embedding=vit.num_patches * ph * pw * a["channels"] * a["dim"],
        attention=sum(b[2] for b in per_block),
        mlp=sum(b[3] for b in per_block),
        head=a["dim"] * a["num_classes"],
    )
    return params, flops, per_block


def _accuracy(vit: Any, x: np.ndarray, y: np.ndarray, batch_size: int = 1024) -> float:
    import torch

    dtype = next(vit.parameters()).dtype
    vit.eval()
    with torch.no_grad():
        predicted = np.concatenate([
            vit(torch.as_tensor(x[i : i + batch_size], dtype=dtype)).argmax(dim=1).numpy()
            for i in range(0, len(x), batch_size)
        ])
    return float(np.mean(predicted == y))


def vit_mlp_study(
    vit: Any, x_test: np.ndarray, y_test: np.ndarray, *, config: dict[str, Any]
) -> ViTMLPResult:
    """Parameter and FLOP shares of a trained ViT, and its accuracy with each block's MLP removed.

    Parameters
    ----------
    vit : mlpkit.models.vit.ViT
        Trained; left as it was (every removed MLP is put back).
    x_test : ndarray of shape (N, D)
        Features in [0, 1], as the image task feeds them.
    y_test : ndarray of shape (N,)
    config : dict
        Recorded as the JSON's ``config``.
    """
    from torch import nn

    params, flops, per_block = budget(vit)
    accuracy = _accuracy(vit, x_test, y_test)
    ablation = []
    for i, block in enumerate(vit.blocks):
        mlp = block.mlp
        block.mlp = nn.Identity()
        try:
            without = _accuracy(vit, x_test, y_test)
        finally:
            block.mlp = mlp
        attention_params, mlp_params, attention_flops, mlp_flops = per_block[i]
        ablation.append(Ablation(
            i + 1, mlp_params, attention_params, mlp_flops, attention_flops, without, accuracy - without
        ))
    return ViTMLPResult(NAME, {**config, "vit": dict(vit.arguments)}, params, flops, accuracy, ablation)


def plot_vit_mlp(result: ViTMLPResult) -> Figure:
    """Left: the parameter and FLOP shares by part; right: the accuracy without each block's MLP."""
    fig, axes = new_figure(1, 2, width=12.0, height=4.2)
    ax_share, ax_ablation = axes[0]
    colors = {"embedding": "C7", "attention": "C0", "mlp": "C3", "head": "C2"}
    for row, b in enumerate((result.parameters, result.flops)):
        left = 0.0
        for part in PARTS:
            share = getattr(b, part) / b.total
            ax_share.barh(row, share, left=left, color=colors[part], label=part if row == 0 else None)
            if share > 0.06:
                ax_share.text(left + share / 2, row, f"{share:.0%}", ha="center", va="center", fontsize=8,
                              color="white")
            left += share
    ax_share.set_yticks([0, 1], ["parameters", "FLOPs / image"])
    ax_share.set_xlim(0, 1)
    ax_share.legend(fontsize=7, loc="upper center", ncols=4, bbox_to_anchor=(0.5, -0.15))
    style_axes(ax_share, title="where the ViT's parameters and compute are", xlabel="share", ylabel="")

    blocks = [a.block for a in result.ablation]
    ax_ablation.bar(blocks, [a.accuracy_without_mlp for a in result.ablation], color="C3",
                    label="block's MLP removed")
    ax_ablation.axhline(result.accuracy, color="k", ls="--", lw=1,
                        label=f"trained ViT ({result.accuracy:.3f})")
    ax_ablation.set_xticks(blocks)
    ax_ablation.set_ylim(0, 1)
    ax_ablation.legend(fontsize=7, loc="lower left")
    style_axes(ax_ablation, title="test accuracy with one block's MLP removed", xlabel="encoder block",
               ylabel="accuracy")
    a = result.config["vit"]
    fig.suptitle(
        f"The MLP inside a ViT (patch {a['patch_size'][0]}, dim {a['dim']}, depth {a['depth']}, "
        f"{a['heads']} heads, MLP {a['mlp_dim']})", fontsize=11,
    )
    return fig


def _summary(result: ViTMLPResult) -> str:
    p, f = result.parameters, result.flops
    share_rows = [
        [part, getattr(p, part), f"{getattr(p, part) / p.total:.1%}", getattr(f, part),
         f"{getattr(f, part) / f.total:.1%}"]
        for part in PARTS
    ]
    share_rows.append(["total", p.total, "100%", f.total, "100%"])
    ablation_rows = [
        [a.block, a.mlp_parameters, a.attention_parameters, a.accuracy_without_mlp,
         f"{-a.accuracy_drop:+.4f}"]
        for a in result.ablation
    ]
    source = result.config.get("run_dir") or "a small ViT trained here (quick run)"
    worst = max(result.ablation, key=lambda a: a.accuracy_drop) if result.ablation else None
    return "\n".join(
        [
            "# The MLP inside a Vision Transformer",
            "",
            f"![parameter and FLOP shares; accuracy without each block's MLP]({NAME}.png)",
            "",
            f"The ViT: {source}; scored on {count(result.config['n_test'], 'test image')}, test accuracy "
            f"{result.accuracy:.4f}.",
            "",
            "Parameters and multiply-adds per image (forward; matrix products only), each branch's",
            "LayerNorm counted with its branch:",
            "",
            markdown_table(["part", "parameters", "share", "multiply-adds", "share"], share_rows),
            "",
            f"The MLP blocks hold **{p.mlp_share:.1%}** of the parameters and do **{f.mlp_share:.1%}**",
            f"of the compute; attention {p.attention_share:.1%} and {f.attention_share:.1%}. Each MLP works",
            "on one token at a time (local, the same for every patch), while attention mixes all tokens",
            "(global).",
            "",
            "## Accuracy with one block's MLP removed",
            "",
            "Block i becomes `z + MSA(LN(z))` alone; every other weight stays as trained.",
            "",
            markdown_table(["block", "MLP parameters", "attention parameters", "test accuracy", "change"],
                           ablation_rows),
            "",
            (
                f"Removing block {worst.block}'s MLP costs the most: test accuracy {result.accuracy:.4f} -> "
                f"{worst.accuracy_without_mlp:.4f}."
                if worst is not None and worst.accuracy_drop > 0
                else "Removing no single block's MLP lowers the test accuracy."
            ),
            "",
            "Reference: Dosovitskiy et al., \"An Image is Worth 16x16 Words: Transformers for Image",
            "Recognition at Scale\", ICLR 2021, sec. 3.1 (inductive bias).",
        ]
    )


def _train_quick_vit(seed: int, data_dir: Path | None) -> tuple[Any, np.ndarray, np.ndarray]:
    """A small ViT trained for two epochs on a subsample: the quick run's model, and its test set."""
    import torch

    from mlpkit.models.vit import ViT

    rng = np.random.default_rng(seed)
    x_train, y_train, x_test, y_test = load_scaled_fashion_mnist(data_dir, n_train=1000, n_test=500, rng=rng)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():  # the seed stays the study's: torch's global generator is left alone
        torch.manual_seed(seed)
        vit = ViT(image_size=28, num_classes=10, **QUICK_VIT)
    optimizer = torch.optim.AdamW(vit.parameters(), lr=3e-3, weight_decay=0.05)
    x, y = torch.from_numpy(x_train), torch.from_numpy(np.asarray(y_train, dtype=np.int64))
    vit.train()
    for _epoch in range(2):
        order = torch.randperm(len(x), generator=generator)
        for i in range(0, len(x), 64):
            batch = order[i : i + 64]
            loss = torch.nn.functional.cross_entropy(vit(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return vit.eval(), x_test, np.asarray(y_test)


def _load_vit_run(run_dir: Path, data_dir: Path | None) -> tuple[Any, np.ndarray, np.ndarray]:
    """A ``mlpkit train --model vit`` run's ViT, and the test set it was scored on."""
    from mlpkit.rundir import warn_if_unfinished
    from mlpkit.tasks.fashion_mnist import FashionMNISTTask, load_dataset, load_run, pixels_to_features

    loaded = load_run(run_dir)
    warn_if_unfinished(loaded.run_dir, "studying")
    if loaded.model.kind != "vit":
        raise ConfigError(
            f"the {NAME} study needs a ViT run (mlpkit train --model vit); {run_dir} trained an MLP "
            f"({loaded.model.description})"
        )
    dataset = load_dataset(FashionMNISTTask(loaded.config).with_data_dir(data_dir).config)
    return loaded.network, pixels_to_features(dataset.x_test, loaded.model.dtype), np.asarray(dataset.y_test)


def run_vit_mlp(
    out_dir: Path, *, quick: bool = False, seed: int = 0, data_dir: Path | None = None,
    run_dir: Path | None = None,
) -> Path:
    """The MLP inside a trained ViT: parameter and FLOP shares, and accuracy without each block's MLP.

    Writes ``vit-mlp.png``, ``vit-mlp.json`` and ``summary.md``.

    Parameters
    ----------
    out_dir : Path
        Created if needed.
    quick : bool
        Without ``run_dir``: train a ViT of width 32 and depth 3 on 1000 images for two epochs and
        score it on 500 (a smoke test).
    seed : int
        The quick run's subsample, initial weights and batch order.
    data_dir : Path or None
        Where Fashion-MNIST is (default: where the run found it, or the usual search).
    run_dir : Path or None
        A run directory of ``mlpkit train --model vit``; required unless ``quick``.

    Raises
    ------
    ConfigError
        Neither ``run_dir`` nor ``quick``, or a run that is not a ViT.
    """
    if run_dir is None and not quick:
        raise ConfigError(
            f"the {NAME} study needs a trained ViT: pass --run RUN_DIR (a run of 'mlpkit train --model "
            "vit'), or --quick to train a small one here"
        )
    out_dir = prepare_out_dir(out_dir, study=NAME)
    if run_dir is not None:
        vit, x_test, y_test = _load_vit_run(Path(run_dir), data_dir)
    else:
        vit, x_test, y_test = _train_quick_vit(seed, data_dir)
    config = {"seed": seed, "quick": quick, "run_dir": None if run_dir is None else str(run_dir),
              "n_test": len(y_test)}
    result = vit_mlp_study(vit, x_test, y_test, config=config)
    return write_study(out_dir, NAME, numbers=result, summary=_summary(result), figure=plot_vit_mlp(result),
                       quick=quick)
