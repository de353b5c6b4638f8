"""The singular values of a trained cross network's weights: DCN-V2's evidence that they are low rank.

Wang et al. ("DCN V2", WWW 2021, sec. 5.1) observe that the learned cross matrices W_l of DCN-V2
have fast-decaying singular values, which motivates replacing each by a mixture of low-rank
experts. :func:`cross_spectrum` reproduces the observation on a finished run: for every cross
layer (DCN-V2: W_l, (D, D); DCN-Mix: each expert's U_i V_iᵀ), the singular values divided by the
largest, at initialization, after training, and of the update W_trained - W_initial, with the
effective rank at 90% and 99% of the energy (the fewest singular values whose squares sum to that
share of Σ σ²). The initial weights are rebuilt from the run's seed exactly as the runner drew
them. The update matters on small data: a Xavier-normal start has a flat spectrum, and when
training moves the weights little, the trained matrix keeps it even if what was learnt is low rank.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np

from mlpkit._io import atomic_write_json
from mlpkit.errors import ConfigError

__all__ = ["ENERGIES", "cross_spectrum", "effective_rank", "normalized_singular_values"]

ENERGIES = (0.9, 0.99)
"""Shares of the energy Σ σ² at which the effective rank is reported."""


def normalized_singular_values(matrix: np.ndarray) -> np.ndarray:
    """σ_1 ≥ σ_2 ≥ ... of ``matrix`` (M, N), divided by σ_1 (all zeros for a zero matrix)."""
    s = np.linalg.svd(np.asarray(matrix, dtype=np.float64), compute_uv=False)
    return s / s[0] if s[0] > 0 else s


def effective_rank(singular_values: np.ndarray, energy: float) -> int:
    """The fewest leading singular values whose squares hold ``energy`` of Σ σ².

    Examples
    --------
    >>> effective_rank(np.array([1.0, 1.0, 0.0]), 0.9), effective_rank(np.array([3.0, 1.0]), 0.9)
    (2, 1)
    """
    squares = np.asarray(singular_values, dtype=np.float64) ** 2
    total = squares.sum()
    if total == 0:
        return 0
    return int(np.searchsorted(np.cumsum(squares) / total, energy - 1e-12) + 1)


def _matrices(cross: Any) -> dict[str, np.ndarray]:
    """The cross network's weight matrices by name: ``layer{l}`` (DCN-V2) or ``layer{l}.expert{i}``."""
    from mlpkit.blocks.interaction import CrossNetMix, CrossNetV2

    if isinstance(cross, CrossNetV2):
        return {f"layer{k}": w.detach().cpu().numpy() for k, w in enumerate(cross.weight)}
    if isinstance(cross, CrossNetMix):
        return {
            f"layer{k}.expert{i}": w.detach().cpu().numpy()
            for k in range(cross.num_layers)
            for i, w in enumerate(cross.expert_weights(k))
        }
    raise ConfigError(
        f"the run's model has no DCN-V2 cross network (found {type(cross).__name__}); "
        "spectrum reads dcnv2, dcnv2-stacked, dcnmix and dcnmix-stacked runs"
    )


def _describe(matrix: np.ndarray) -> dict[str, Any]:
    s = normalized_singular_values(matrix)
    return {
        "singular_values": s.tolist(),
        **{f"rank_{round(100 * e)}": effective_rank(s, e) for e in ENERGIES},
    }


def cross_spectrum(
    run_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Write ``spectrum.json`` and ``spectrum.png`` of a DCN-V2 / DCN-Mix run into ``out`` (default the run).

    Returns
    -------
    dict
        ``{"model", "shape", "layers": {name: {"initial", "trained", "update"}}}`` where each holds
        ``singular_values`` (normalized) and ``rank_90``, ``rank_99``.

    Raises
    ------
    CheckpointError
        The run cannot be loaded.
    ConfigError
        The run's model has no DCN-V2 cross network.
    """
    import torch

    from mlpkit.models.ctr import build_ctr_model
    from mlpkit.run import run_seeds
    from mlpkit.tasks.ctr import load_ctr_run, model_kwargs

    loaded = load_ctr_run(run_dir)
    trained = _matrices(getattr(loaded.model, "cross", None))
    # The initial weights, as the runner drew them (rank 0's generator, seeded before the build).
    torch.manual_seed(run_seeds(loaded.config.run.seed)[3])
    config = loaded.config
    start = build_ctr_model(config.model.name, loaded.fitted.fields, **model_kwargs(config))
    initial = _matrices(start.cross)
    layers = {
        name: {
            "initial": _describe(initial[name]),
            "trained": _describe(matrix),
            # What training added: a random start has a flat spectrum that can hide a low-rank update.
            "update": _describe(matrix - initial[name]),
        }
        for name, matrix in trained.items()
    }
    result = {
        "model": loaded.config.model.name,
        "shape": list(next(iter(trained.values())).shape),
        "energies": list(ENERGIES),
        "layers": layers,
    }
    out_dir = Path(run_dir) if out is None else Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "spectrum.json", result)
    if importlib.util.find_spec("matplotlib") is not None:
        _plot(result, out_dir / "spectrum.png")
    return result


def _plot(result: dict[str, Any], path: Path) -> None:
    from mlpkit.evaluate.plots import new_figure, save_png

    figure = new_figure(14.0, 4.0, feature="plotting singular values")
    axes = figure.subplots(1, 3, sharey=True)
    titles = {"initial": "at initialization", "trained": "after training", "update": "trained - initial"}
    for ax, side in zip(axes, titles, strict=True):
        for name, layer in result["layers"].items():
            s = np.asarray(layer[side]["singular_values"])
            label = f"{name} (r90 {layer[side]['rank_90']})"
            ax.semilogy(np.arange(1, len(s) + 1), np.maximum(s, 1e-8), label=label)
        ax.set_title(f"{result['model']}: {titles[side]}")
        ax.set_xlabel("index i")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("σ_i / σ_1")
    axes[2].legend(fontsize=6, ncol=2)
    save_png(figure, path)
