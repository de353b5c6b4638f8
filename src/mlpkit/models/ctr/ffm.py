"""FFM: the field-aware factorization machine.

Juan, Zhuang, Chin, Lin. "Field-aware Factorization Machines for CTR Prediction". RecSys 2016.
https://www.csie.ntu.edu.tw/~cjlin/papers/ffm.pdf

Implements the φ_FFM model of sec. 3, ``sum_{i<j} <w_{i, f_j}, w_{j, f_i}>``, plus the linear
term and a bias as FuxiCTR's FFM: every feature has F - 1 latent vectors, one per other field,
and a pair of fields (i, j) multiplies i's vector for field j with j's vector for field i
(:class:`~mlpkit.blocks.interaction.FFMInteraction`, all pairs at once). The F - 1 vectors are one
table row of width (F - 1)·E. Deviations from the paper: the linear term and bias (the paper's
φ_FFM has neither; BARS/FuxiCTR add them, and the parameter count below includes them), and
multi-valued fields are pooled as in :mod:`~mlpkit.models.ctr.fm`.

Parameters: ``V·(F-1)·E + V + 1``; 490,400 on Frappe_x1 (V = 5,389, F = 10, E = 10), BARS's count
(:data:`BARS_FRAPPE_X1`, whose run also sets the defaults).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from mlpkit._checks import check_positive_int
from mlpkit.blocks.embedding import FieldEmbedding, LinearEmbedding
from mlpkit.blocks.interaction import FFMInteraction
from mlpkit.data.fields import FieldSpec
from mlpkit.models.ctr._base import BarsRun, CTRModel

__all__ = ["BARS_FRAPPE_X1", "FFM"]

BARS_FRAPPE_X1 = BarsRun(
    config="ranking/ctr/FFM/FFM_frappe_x1/FFM_frappe_x1_tuner_config_01/model_config.yaml",
    expid="FFM_frappe_x1_007_b8a83e47",
    embedding_regularizer=1e-6,
    net_regularizer=1e-6,
    learning_rate=1e-3,
    batch_size=4096,
    patience=2,
    num_parameters=490400,
    test_auc=0.978620,
)


class FFM(CTRModel):
    """Field-aware factorization machine: ``w_0 + sum_f w_f + sum_{i<j} <v_{i, f_j}, v_{j, f_i}>``.

    Parameters
    ----------
    spec : FieldSpec
        At least two fields (every kind counts).
    embedding_dim : int
        E, the size of each of a feature's F - 1 vectors (BARS Frappe_x1: 10).
    embedding_layout : {"per_field", "shared"}

    Examples
    --------
    >>> import torch
    >>> from mlpkit.data.fields import Field, FieldSpec
    >>> spec = FieldSpec((Field("user", "categorical", 5), Field("item", "categorical", 9),
    ...                   Field("hour", "categorical", 24)))
    >>> model = FFM(spec, embedding_dim=4)
    >>> model.embedding.embedding_dim   # F - 1 = 2 vectors of 4 per row
    8
    >>> model({"sparse": torch.tensor([[1, 2, 3]])}).shape
    torch.Size([1])
    """

    def __init__(
        self, spec: FieldSpec, *, embedding_dim: int = 10, embedding_layout: str = "per_field"
    ) -> None:
        super().__init__()
        self.embedding_dim = check_positive_int("embedding_dim", embedding_dim)
        num_fields = len(spec.fields)
        if num_fields < 2:
            raise ValueError(f"FFM needs at least 2 fields to pair, got {num_fields}")
        self.num_fields = num_fields
        self.embedding = FieldEmbedding(spec, (num_fields - 1) * embedding_dim, layout=embedding_layout)
        self.linear = LinearEmbedding(spec, layout=embedding_layout, bias=True)
        self.ffm = FFMInteraction(num_fields)

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        """Logits of a batch.

        Parameters
        ----------
        batch : mapping of str to Tensor

        Returns
        -------
        Tensor of shape (B,)
        """
        rows = self.embedding(batch)  # (B, F, (F-1)·E)
        v = rows.unflatten(-1, (self.num_fields - 1, self.embedding_dim))  # (B, F, F-1, E)
        return (self.linear(batch) + self.ffm(v)).squeeze(-1)  # (B, 1) -> (B,)
