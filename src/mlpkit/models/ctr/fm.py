"""FM: the factorization machine, a linear model plus factorized pairwise interactions.

Rendle. "Factorization Machines". ICDM 2010. https://doi.org/10.1109/ICDM.2010.127

Implements the model equation (eq. 1), ``y = w_0 + sum_i w_i x_i + sum_{i<j} <v_i, v_j> x_i x_j``,
with the pairwise sum computed in O(F·E) as in Lemma 3.1:
``1/2 sum_e ((sum_i v_ie)² - sum_i v_ie²)`` (:class:`~mlpkit.blocks.interaction.FMInteraction`).
A field contributes one vector: the embedding of its id, the pooled embeddings of a multi-valued
field's ids, or ``x_j u_j`` for a numeric field. Deviations from the paper: none, apart from the
pooling of multi-valued fields (the paper's several non-zero features of a field interact
pairwise; pooling interacts their mean or sum instead).

Parameters: ``V·E`` factors + ``V`` weights + 1 bias; 59,280 on Frappe_x1 (V = 5,389, E = 10),
BARS's count (:data:`BARS_FRAPPE_X1`, whose run also sets the defaults).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from mlpkit.blocks.embedding import FieldEmbedding, LinearEmbedding
from mlpkit.blocks.interaction import FMInteraction
from mlpkit.data.fields import FieldSpec
from mlpkit.models.ctr._base import BarsRun, CTRModel

__all__ = ["BARS_FRAPPE_X1", "FM"]

BARS_FRAPPE_X1 = BarsRun(
    config="ranking/ctr/FM/FM_frappe_x1/FM_frappe_x1_tuner_config_03/model_config.yaml",
    expid="FM_frappe_x1_001_6234f1e3",
    embedding_regularizer=5e-6,
    net_regularizer=5e-6,
    learning_rate=1e-3,
    batch_size=4096,
    patience=2,
    num_parameters=59280,
    test_auc=0.967108,
)


class FM(CTRModel):
    """Factorization machine: ``w_0 + sum_f w_f + sum_{i<j} <v_i, v_j>``.

    Parameters
    ----------
    spec : FieldSpec
    embedding_dim : int
        E, the factor size (BARS Frappe_x1: 10).
    embedding_layout : {"per_field", "shared"}

    Examples
    --------
    >>> import torch
    >>> from mlpkit.data.fields import Field, FieldSpec
    >>> model = FM(FieldSpec((Field("user", "categorical", 5), Field("item", "categorical", 9))))
    >>> model({"sparse": torch.tensor([[1, 2]])}).shape
    torch.Size([1])
    """

    def __init__(
        self, spec: FieldSpec, *, embedding_dim: int = 10, embedding_layout: str = "per_field"
    ) -> None:
        super().__init__()
        self.embedding = FieldEmbedding(spec, embedding_dim, layout=embedding_layout)
        self.linear = LinearEmbedding(spec, layout=embedding_layout, bias=True)
        self.fm = FMInteraction()

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        """Logits of a batch.

        Parameters
        ----------
        batch : mapping of str to Tensor

        Returns
        -------
        Tensor of shape (B,)
        """
        v = self.embedding(batch)  # (B, F, E)
        return (self.linear(batch) + self.fm(v)).squeeze(-1)  # (B, 1) -> (B,)
