"""IPNN: the inner-product neural network.

Qu, Cai, Ren, Zhang, Yu, Wen, Wang. "Product-based Neural Networks for User Response
Prediction". ICDM 2016. https://arxiv.org/abs/1611.00144

The product layer (sec. III) concatenates the linear signal z (the F field embeddings) with the
quadratic signal p (all F(F-1)/2 inner products ``<v_i, v_j>``, i < j,
:class:`~mlpkit.blocks.interaction.InnerProduct`), and an MLP tower maps them to one logit.
Deviations from the paper, as BARS/FuxiCTR's PNN: the product layer's ``l_z + l_p + b_1`` is the
tower's first Linear applied to the concatenation [z, p] (the same function, both maps being
linear), and its weights on p form a full matrix instead of the paper's rank-1 factorization
``W_p^n = θ^n θ^nᵀ`` (sec. III-B).

Defaults: BARS Frappe_x1 (:data:`BARS_FRAPPE_X1`): E = 10, hidden (400, 400, 400), dropout 0.3,
no batch norm. Parameters: 433,491 on Frappe_x1, BARS's count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from mlpkit.blocks.embedding import FieldEmbedding
from mlpkit.blocks.interaction import InnerProduct
from mlpkit.blocks.mlp import ActLayer
from mlpkit.data.fields import FieldSpec
from mlpkit.models.ctr._base import BarsRun, CTRModel, tower

__all__ = ["BARS_FRAPPE_X1", "IPNN"]

BARS_FRAPPE_X1 = BarsRun(
    config="ranking/ctr/PNN/IPNN_frappe_x1/PNN_frappe_x1_tuner_config_06/model_config.yaml",
    expid="PNN_frappe_x1_020_f371a3ab",
    embedding_regularizer=0.05,
    net_regularizer=0.0,
    learning_rate=1e-3,
    batch_size=4096,
    patience=3,
    num_parameters=433491,
    test_auc=0.984122,
)


class IPNN(CTRModel):
    """Field embeddings and their pairwise inner products, concatenated, through an MLP tower.

    Parameters
    ----------
    spec : FieldSpec
    embedding_dim : int
        E.
    hidden_features : sequence of int
    dropout : float
    batch_norm : bool
    act_layer : str or nn.Module class
    embedding_layout : {"per_field", "shared"}

    Examples
    --------
    >>> import torch
    >>> from mlpkit.data.fields import Field, FieldSpec
    >>> model = IPNN(FieldSpec((Field("user", "categorical", 5), Field("item", "categorical", 9))),
    ...              hidden_features=(8,))
    >>> model({"sparse": torch.tensor([[1, 2]])}).shape
    torch.Size([1])
    """

    def __init__(
        self,
        spec: FieldSpec,
        *,
        embedding_dim: int = 10,
        hidden_features: Sequence[int] = (400, 400, 400),
        dropout: float = 0.3,
        batch_norm: bool = False,
        act_layer: ActLayer = "relu",
        embedding_layout: str = "per_field",
    ) -> None:
        super().__init__()
        self.embedding = FieldEmbedding(spec, embedding_dim, layout=embedding_layout)
        num_fields = self.embedding.num_fields
        self.product = InnerProduct(num_fields)
        self.mlp = tower(num_fields * embedding_dim + self.product.out_features, hidden_features, 1,
                         dropout=dropout, batch_norm=batch_norm, act_layer=act_layer)
        self.reset_dense_parameters()

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
        z = torch.cat([v.flatten(start_dim=1), self.product(v)], dim=1)  # (B, F·E + F(F-1)/2)
        return self.mlp(z).squeeze(-1)  # (B, 1) -> (B,)
