"""A trained model as a deployment calls it: positional tensors in, a tuple of named outputs out.

Every wrapper's ``forward(*inputs)`` takes its inputs as varargs, so the exporter describes the
dynamic batch axis of any number of inputs the same way.

The models take what training feeds them (a named batch for CTR and table models, features for an
image MLP) and return logits. An exported graph (:mod:`mlpkit.export`) wants plain positional
inputs and, beside the logits, the number a caller uses: a probability, or a regression's value in
its own units. These wrappers add exactly that and nothing else, so the graph's ``logits`` equal
the run's own scoring bit for bit before the exporter and to float32 rounding after it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["CTRScorer", "Classifier", "OneHotMLP", "TableScorer"]


class Classifier(nn.Module):
    """``features`` (B, D) -> (logits (B, K), probabilities (B, K)).

    Parameters
    ----------
    network : nn.Module
        (B, D) -> (B, K) logits: an image MLP or a ViT.
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, *inputs: Tensor) -> tuple[Tensor, Tensor]:
        (features,) = inputs  # (B, D)
        logits = self.network(features)  # (B, K)
        return logits, torch.softmax(logits, dim=-1)


class OneHotMLP(nn.Module):
    """The NumPy engine's table model: an MLP on [numbers, each categorical column one-hot].

    The same input as :meth:`mlpkit.data.tabular.TablePreprocessor.one_hot` builds, made inside the
    graph: an id no training row had is a block of zeros, not a one (``allowed``).

    Parameters
    ----------
    mlp : nn.Module
        (B, D_num + sum of widths) -> (B, out).
    allowed : sequence of sequences of bool
        ``allowed[j][i]``: whether id ``i`` of categorical column ``j`` gets its one; ``len(allowed[j])``
        is the column's width.
    """

    def __init__(self, mlp: nn.Module, allowed: Sequence[Sequence[bool]]) -> None:
        super().__init__()
        self.mlp = mlp
        self.widths = [len(a) for a in allowed]
        for j, a in enumerate(allowed):
            self.register_buffer(f"allowed{j}", torch.tensor(list(a), dtype=torch.bool), persistent=False)

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        """``batch``: ``"numeric"`` (B, D_num) float, ``"categorical"`` (B, C) int64 -> (B, out)."""
        numeric, ids = batch["numeric"], batch["categorical"]
        blocks = [numeric]
        for j, width in enumerate(self.widths):
            column = ids[:, j : j + 1]  # (B, 1)
            hot = (column == torch.arange(width, device=ids.device)) & getattr(self, f"allowed{j}")
            blocks.append(hot.to(numeric.dtype))  # (B, width)
        return self.mlp(torch.cat(blocks, dim=1))


class TableScorer(nn.Module):
    """A table model on positional ``numeric`` and ``categorical`` inputs (each only if the table has it).

    Classification returns (logits (B, K), probabilities (B, K)); regression returns (logits (B,),
    value (B,)) with ``value = logits * std + mean``, the target in its own units.

    Parameters
    ----------
    model : nn.Module
        Takes ``{"numeric": (B, D_num), "categorical": (B, C)}``: a TabularMLP or a :class:`OneHotMLP`.
    numeric, categorical : bool
        Which inputs the graph has; an absent one is given to the model empty.
    regression : tuple of (mean, std), optional
        The standardization of a regression target; None for classification.
    """

    def __init__(
        self, model: nn.Module, *, numeric: bool, categorical: bool, regression: tuple[float, float] | None
    ) -> None:
        super().__init__()
        self.model, self.numeric, self.categorical = model, numeric, categorical
        self.regression = None if regression is None else (float(regression[0]), float(regression[1]))

    def forward(self, *inputs: Tensor) -> tuple[Tensor, Tensor]:
        rows = inputs[0].shape[0]
        numeric = inputs[0] if self.numeric else inputs[0].new_zeros((rows, 0), dtype=torch.float32)
        ids = inputs[-1] if self.categorical else inputs[0].new_zeros((rows, 0), dtype=torch.int64)
        out = self.model({"numeric": numeric, "categorical": ids})
        if self.regression is None:
            return out, torch.softmax(out, dim=-1)  # (B, K) twice
        standardized = out[:, 0] if out.dim() == 2 else out  # (B,)
        mean, std = self.regression
        return standardized, standardized * std + mean


class CTRScorer(nn.Module):
    """Positional id and number tensors -> a CTR model's named batch -> (logits (B,), probabilities (B,)).

    Parameters
    ----------
    model : nn.Module
        A model of the CTR zoo: ``forward(batch) -> (B,)`` logits.
    keys : sequence of str
        The batch key of each positional input (``"sparse"``, ``"dense"``, ``"multi:<field>"``).
    """

    def __init__(self, model: nn.Module, keys: Sequence[str]) -> None:
        super().__init__()
        self.model, self.keys = model, list(keys)

    def forward(self, *inputs: Tensor) -> tuple[Tensor, Tensor]:
        logits = self.model(dict(zip(self.keys, inputs, strict=True)))  # (B,)
        return logits, torch.sigmoid(logits)
