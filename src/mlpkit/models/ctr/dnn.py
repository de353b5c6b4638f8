"""DNN: field embeddings, concatenated, through an MLP tower (the "embedding + MLP" baseline).

Covington, Adams, Sargin. "Deep Neural Networks for YouTube Recommendations". RecSys 2016.
https://research.google/pubs/pub45530/

The ranking network of sec. 4: each field's embedding (categorical, pooled multi-valued, or
``x_j u_j`` numeric), concatenated into (B, F·E), through ``Linear -> [BatchNorm1d] -> ReLU ->
[Dropout]`` blocks to one logit. Deviations from the paper: the paper's ranking model predicts
watch time with weighted logistic regression and normalizes continuous features by their
quantiles; this model is the plain CTR version BARS/FuxiCTR benchmark as "DNN".

Defaults: BARS Frappe_x1 (:data:`BARS_FRAPPE_X1`): E = 10, hidden (400, 400, 400), dropout 0.2,
batch norm. Parameters: 417,891 on Frappe_x1 (53,890 embeddings + 364,001 tower). BARS's log says
781,892 = 53,890 + 2 × 364,001: it counts the tower twice (its DNN logs for MovieLensLatest_x1 and
Criteo_x1 of the same period show the same doubling, while its DeepFM and DCN counts, which
include the same tower, match single counting).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor

from mlpkit.blocks.embedding import FieldEmbedding
from mlpkit.blocks.mlp import ActLayer
from mlpkit.data.fields import FieldSpec
from mlpkit.models.ctr._base import BarsRun, CTRModel, tower

__all__ = ["BARS_FRAPPE_X1", "DNN"]

BARS_FRAPPE_X1 = BarsRun(
    config="ranking/ctr/DNN/DNN_frappe_x1/DNN_frappe_x1_tuner_config_02/model_config.yaml",
    expid="DNN_frappe_x1_001_ad0f0fce",
    embedding_regularizer=0.05,
    net_regularizer=0.0,
    learning_rate=1e-3,
    batch_size=4096,
    patience=2,
    num_parameters=781892,
    test_auc=0.984045,
)


class DNN(CTRModel):
    """Concatenated field embeddings through an MLP tower to one logit.

    Parameters
    ----------
    spec : FieldSpec
    embedding_dim : int
        E.
    hidden_features : sequence of int
        Width of each hidden layer of the tower.
    dropout : float
        Dropout after each hidden activation.
    batch_norm : bool
        ``BatchNorm1d`` between each hidden Linear and its activation.
    act_layer : str or nn.Module class
        The hidden activation.
    embedding_layout : {"per_field", "shared"}

    Examples
    --------
    >>> import torch
    >>> from mlpkit.data.fields import Field, FieldSpec
    >>> model = DNN(FieldSpec((Field("user", "categorical", 5), Field("item", "categorical", 9))),
    ...             hidden_features=(8,))
    >>> model.eval()({"sparse": torch.tensor([[1, 2]])}).shape
    torch.Size([1])
    """

    def __init__(
        self,
        spec: FieldSpec,
        *,
        embedding_dim: int = 10,
        hidden_features: Sequence[int] = (400, 400, 400),
        dropout: float = 0.2,
        batch_norm: bool = True,
        act_layer: ActLayer = "relu",
        embedding_layout: str = "per_field",
    ) -> None:
        super().__init__()
        self.embedding = FieldEmbedding(spec, embedding_dim, layout=embedding_layout)
        self.mlp = tower(self.embedding.num_fields * embedding_dim, hidden_features, 1, dropout=dropout,
                         batch_norm=batch_norm, act_layer=act_layer)
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
        return self.mlp(v.flatten(start_dim=1)).squeeze(-1)  # (B, F·E) -> (B, 1) -> (B,)
