"""The classic studies as runnable recipes, each one module: numbers, figure, summary.

Every study has a pure function returning its numbers (a frozen dataclass), a ``plot_*`` function
drawing them, and a ``run_*`` function with one signature::

    run_<name>(out_dir: Path, *, quick: bool = False, seed: int = 0, data_dir: Path | None = None) -> Path

which writes ``<name>.png``, ``<name>.json`` (the numbers behind the figure) and ``summary.md``
into ``out_dir``, each atomically, and returns ``out_dir``. ``quick`` shrinks the study to
seconds, and the figure's title and the summary's first lines then say that it is a smoke test,
not a result; ``data_dir`` is where Fashion-MNIST lives (the studies on generated data ignore it).
Every study checks that matplotlib is installed before it creates ``out_dir``.
:data:`EXPERIMENTS` maps the command-line names to these functions::

    mlpkit experiment NAME [--out DIR] [--quick] [--seed N]

======================  =====================================================================
``model-selection``     under- and overfitting a polynomial (d2l 3.6)
``weight-decay``        L2 penalty on 200-dimensional linear regression (d2l 3.7)
``dropout``             784-256-256-10 on Fashion-MNIST with and without dropout (d2l 5.6)
``initialization``      vanishing/exploding gradients of a 10-layer MLP (d2l 5.4)
``activations``         activation functions and their derivatives, from the engine
``nim``                 can an MLP learn which Nim positions are lost? (Bouton 1901)
``autograd``            the scalar-autograd MLP on two moons and 7x7 images; its cost against the engine
``vit-mlp``             the MLP blocks of a trained ViT: parameter and FLOP shares, accuracy without each
======================  =====================================================================

A study that reads a trained run takes one more keyword, ``run_dir`` (``--run RUN_DIR``), after
the four above: ``vit-mlp`` reads a run of ``mlpkit train --model vit``.

Studies import the data loaders, the engine and the trainer; nothing imports the studies but
the command line.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mlpkit.experiments.activations import run_activations
from mlpkit.experiments.autograd import run_autograd
from mlpkit.experiments.dropout import run_dropout
from mlpkit.experiments.initialization import run_initialization
from mlpkit.experiments.model_selection import run_model_selection
from mlpkit.experiments.nim import run_nim
from mlpkit.experiments.vit_mlp import run_vit_mlp
from mlpkit.experiments.weight_decay import run_weight_decay

__all__ = [
    "EXPERIMENTS",
    "run_activations",
    "run_autograd",
    "run_dropout",
    "run_initialization",
    "run_model_selection",
    "run_nim",
    "run_vit_mlp",
    "run_weight_decay",
]

EXPERIMENTS: dict[str, Callable[..., Path]] = {
    "model-selection": run_model_selection,
    "weight-decay": run_weight_decay,
    "dropout": run_dropout,
    "initialization": run_initialization,
    "activations": run_activations,
    "nim": run_nim,
    "autograd": run_autograd,
    "vit-mlp": run_vit_mlp,
}
"""Command-line name -> ``run_<name>(out_dir, *, quick=False, seed=0, data_dir=None) -> out_dir``."""
