"""An MLP on a table's columns: an embedding per categorical column beside the numbers.

The torch engine's model for ``mlpkit train --data TABLE``, in the shape of fastai's
``TabularModel`` (Howard & Gugger, Information 2020) and of the entity embeddings of Guo & Berkhahn
("Entity Embeddings of Categorical Variables", 2016): each categorical column's id looks up a row
of its own table, the rows and the standardized numbers are concatenated, and an
:class:`mlpkit.blocks.MLP` maps them to logits. The NumPy engine reads the same columns one-hot
instead (:meth:`mlpkit.data.tabular.TablePreprocessor.one_hot`): a one-hot vector times a weight
matrix is an embedding lookup, so the two differ in width, not in kind.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from mlpkit._checks import check_nonnegative_int, check_positive_int
from mlpkit.blocks.mlp import MLP

__all__ = ["TabularMLP"]


class TabularMLP(nn.Module):
    """Embeddings for C categorical columns, concatenated with D_num numbers, through an MLP.

    Parameters
    ----------
    numeric_features : int
        D_num, the width of the ``"numeric"`` input (0 for none).
    cardinalities : sequence of int
        Ids of each categorical column (its categories plus the missing and unseen ids).
    embedding_dims : sequence of int
        E_c, the embedding width of each categorical column (same length as ``cardinalities``).
    hidden_features : sequence of int
        The MLP's hidden widths.
    out_features : int
        K logits per row (1 for regression, whose output is then squeezed to (B,)).
    activation : str or sequence of str
    dropout : float or sequence of float
        After each hidden activation (:class:`mlpkit.blocks.MLP`).
    squeeze : bool
        Return (B,) instead of (B, 1) (regression, whose target is (B,)).

    Examples
    --------
    >>> model = TabularMLP(2, [5, 3], [3, 2], (8,), 4)
    >>> batch = {"numeric": torch.zeros(1, 2), "categorical": torch.zeros(1, 2, dtype=torch.int64)}
    >>> model(batch).shape
    torch.Size([1, 4])
    """

    def __init__(
        self,
        numeric_features: int,
        cardinalities: Sequence[int],
        embedding_dims: Sequence[int],
        hidden_features: Sequence[int],
        out_features: int,
        *,
        activation: str | Sequence[str] = "relu",
        dropout: float | Sequence[float] = 0.0,
        squeeze: bool = False,
    ) -> None:
        super().__init__()
        check_nonnegative_int("numeric_features", numeric_features)
        if len(cardinalities) != len(embedding_dims):
            raise ValueError(
                f"embedding_dims needs one width per categorical column: {len(cardinalities)} columns, "
                f"got {len(embedding_dims)} widths"
            )
        self.embeddings = nn.ModuleList(
            nn.Embedding(check_positive_int("cardinality", n), check_positive_int("embedding_dim", e))
            for n, e in zip(cardinalities, embedding_dims, strict=True)
        )
        width = numeric_features + sum(embedding_dims)
        if width == 0:
            raise ValueError("a TabularMLP needs at least one numeric or categorical column")
        self.mlp = MLP(width, tuple(hidden_features), out_features, act_layer=activation, dropout=dropout)
        self.numeric_features = numeric_features
        self.squeeze = squeeze

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        """Logits of a batch.

        Parameters
        ----------
        batch : mapping
            ``"numeric"``: (B, D_num) float; ``"categorical"``: (B, C) int64 ids (either may be absent
            when the table has no such column).

        Returns
        -------
        Tensor of shape (B, K), or (B,) with ``squeeze``
        """
        parts = [
            table(batch["categorical"][:, j]) for j, table in enumerate(self.embeddings)
        ]  # (B, E_c) each
        if self.numeric_features:
            parts.append(batch["numeric"])  # (B, D_num)
        out: Tensor = self.mlp(torch.cat(parts, dim=1))  # (B, K)
        return out.squeeze(1) if self.squeeze else out
