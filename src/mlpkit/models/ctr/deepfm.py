"""DeepFM: a factorization-machine based neural network for CTR prediction.

Guo, Tang, Ye, Li, He. IJCAI 2017. https://arxiv.org/abs/1703.04247

One embedding table feeds both the FM component and the deep component, and their logits are
summed (eq. 1, before the sigmoid): ``y_FM = <w, x> + sum_{i<j} <V_i, V_j> x_i x_j`` (eq. 2, no
bias) and ``y_DNN`` an MLP tower over the concatenated embeddings (its output bias is the model's
only bias). Deviations from the paper: none (numeric and multi-valued fields enter as in
:mod:`~mlpkit.blocks.embedding`).

Defaults: BARS Frappe_x1 (:data:`BARS_FRAPPE_X1`): E = 10, hidden (400, 400, 400), dropout 0.2,
batch norm. Parameters: 423,280 on Frappe_x1, BARS's count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor

from mlpkit.blocks.embedding import FieldEmbedding, LinearEmbedding
from mlpkit.blocks.interaction import FMInteraction
from mlpkit.blocks.mlp import ActLayer
from mlpkit.data.fields import FieldSpec
from mlpkit.models.ctr._base import BarsRun, CTRModel, tower

__all__ = ["BARS_FRAPPE_X1", "DeepFM"]

BARS_FRAPPE_X1 = BarsRun(
    config="ranking/ctr/DeepFM/DeepFM_frappe_x1/DeepFM_frappe_x1_tuner_config_02/model_config.yaml",
    expid="DeepFM_frappe_x1_001_4ae3a56e",
    embedding_regularizer=0.05,
    net_regularizer=0.0,
    learning_rate=1e-3,
    batch_size=4096,
    patience=2,
    num_parameters=423280,
    test_auc=0.983947,
)


class DeepFM(CTRModel):
    """FM logit plus MLP logit over one shared embedding.

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
    >>> model = DeepFM(FieldSpec((Field("user", "categorical", 5), Field("item", "categorical", 9))),
    ...                hidden_features=(8,))
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
        self.linear = LinearEmbedding(spec, layout=embedding_layout, bias=False)
        self.fm = FMInteraction()
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
        y_fm = self.linear(batch) + self.fm(v)  # (B, 1)
        y_dnn = self.mlp(v.flatten(start_dim=1))  # (B, F·E) -> (B, 1)
        return (y_fm + y_dnn).squeeze(-1)  # (B,)
