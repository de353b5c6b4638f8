"""NFM: the neural factorization machine.

He, Chua. "Neural Factorization Machines for Sparse Predictive Analytics". SIGIR 2017.
https://arxiv.org/abs/1708.05027

Implements ``y = w_0 + sum_f w_f + f(x)`` (sec. 3), where ``f`` is an MLP tower over the
Bi-Interaction pooling ``sum_{i<j} v_i ⊙ v_j`` of the field embeddings (sec. 3.1, computed in
O(F·E), :class:`~mlpkit.blocks.interaction.BiInteraction`). As BARS/FuxiCTR, the global bias
``w_0`` is the tower's output bias (the first-order term has none). Deviations from the paper:
dropout follows each hidden layer but not the Bi-Interaction output, and batch norm (off by
default, as BARS's run) goes between each hidden Linear and its activation, not after the pooling.

Defaults: BARS Frappe_x1 (:data:`BARS_FRAPPE_X1`): E = 10, hidden (400, 400, 400), dropout 0.4,
no batch norm. Parameters: 384,880 on Frappe_x1, BARS's count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor

from mlpkit.blocks.embedding import FieldEmbedding, LinearEmbedding
from mlpkit.blocks.interaction import BiInteraction
from mlpkit.blocks.mlp import ActLayer
from mlpkit.data.fields import FieldSpec
from mlpkit.models.ctr._base import BarsRun, CTRModel, tower

__all__ = ["BARS_FRAPPE_X1", "NFM"]

BARS_FRAPPE_X1 = BarsRun(
    config="ranking/ctr/NFM/NFM_frappe_x1/NFM_frappe_x1_tuner_config_01/model_config.yaml",
    expid="NFM_frappe_x1_012_3ebff53c",
    embedding_regularizer=1e-4,
    net_regularizer=0.0,
    learning_rate=1e-3,
    batch_size=4096,
    patience=2,
    num_parameters=384880,
    test_auc=0.980409,
)


class NFM(CTRModel):
    """First-order term plus an MLP tower over the Bi-Interaction pooling.

    Parameters
    ----------
    spec : FieldSpec
    embedding_dim : int
        E, also the tower's input width.
    hidden_features : sequence of int
    dropout : float
    batch_norm : bool
    act_layer : str or nn.Module class
    embedding_layout : {"per_field", "shared"}

    Examples
    --------
    >>> import torch
    >>> from mlpkit.data.fields import Field, FieldSpec
    >>> model = NFM(FieldSpec((Field("user", "categorical", 5), Field("item", "categorical", 9))),
    ...             hidden_features=(8,))
    >>> model({"sparse": torch.tensor([[1, 2]])}).shape
    torch.Size([1])
    """

    def __init__(
        self,
        spec: FieldSpec,
        *,
        embedding_dim: int = 10,
        hidden_features: Sequence[int] = (400, 400, 400),
        dropout: float = 0.4,
        batch_norm: bool = False,
        act_layer: ActLayer = "relu",
        embedding_layout: str = "per_field",
    ) -> None:
        super().__init__()
        self.embedding = FieldEmbedding(spec, embedding_dim, layout=embedding_layout)
        self.linear = LinearEmbedding(spec, layout=embedding_layout, bias=False)
        self.bi_interaction = BiInteraction()
        self.mlp = tower(embedding_dim, hidden_features, 1, dropout=dropout, batch_norm=batch_norm,
                         act_layer=act_layer)
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
        pooled = self.bi_interaction(self.embedding(batch))  # (B, F, E) -> (B, E)
        return (self.linear(batch) + self.mlp(pooled)).squeeze(-1)  # (B, 1) -> (B,)
