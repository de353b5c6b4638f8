"""DCN: the deep & cross network.

Wang, Fu, Fu, Wang. "Deep & Cross Network for Ad Click Predictions". ADKDD 2017.
https://arxiv.org/abs/1708.05123

The stacked embeddings x_0 (B, F·E) go through the cross network,
``x_{l+1} = x_0 x_l^T w_l + b_l + x_l`` (eq. 3, :class:`~mlpkit.blocks.interaction.CrossNetV1`),
and in parallel through a deep network of ``Linear -> [BatchNorm1d] -> ReLU -> [Dropout]`` blocks;
the combination layer concatenates both outputs and a Linear maps them to one logit.
With ``hidden_features=()`` the deep network is left out (BARS's "CrossNet"). Deviations from the
paper: numeric fields enter x_0 as embeddings ``x_j u_j`` instead of their raw (log-scaled)
values, as in BARS/FuxiCTR.

Defaults: BARS Frappe_x1 (:data:`BARS_FRAPPE_X1`): E = 10, 3 cross layers, hidden (400, 400, 400),
dropout 0.2, batch norm. Parameters: 418,591 on Frappe_x1, BARS's count (and 55,191 for its
CrossNet run, 6 cross layers and no deep network).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from mlpkit.blocks.embedding import FieldEmbedding
from mlpkit.blocks.interaction import CrossNetV1
from mlpkit.blocks.mlp import ActLayer
from mlpkit.data.fields import FieldSpec
from mlpkit.models.ctr._base import BarsRun, CTRModel, tower

__all__ = ["BARS_FRAPPE_X1", "DCN"]

BARS_FRAPPE_X1 = BarsRun(
    config="ranking/ctr/DCN/DCN_frappe_x1/DCN_frappe_x1_tuner_config_02/model_config.yaml",
    expid="DCN_frappe_x1_013_efa58c31",
    embedding_regularizer=0.05,
    net_regularizer=0.0,
    learning_rate=1e-3,
    batch_size=4096,
    patience=2,
    num_parameters=418591,
    test_auc=0.983418,
)


class DCN(CTRModel):
    """Cross network and deep network side by side, combined by one Linear.

    Parameters
    ----------
    spec : FieldSpec
    embedding_dim : int
        E.
    num_layers : int
        Cross layers L.
    hidden_features : sequence of int
        The deep network's widths; ``()`` leaves it out.
    dropout : float
    batch_norm : bool
    act_layer : str or nn.Module class
    embedding_layout : {"per_field", "shared"}

    Examples
    --------
    >>> import torch
    >>> from mlpkit.data.fields import Field, FieldSpec
    >>> model = DCN(FieldSpec((Field("user", "categorical", 5), Field("item", "categorical", 9))),
    ...             hidden_features=(8,))
    >>> model.eval()({"sparse": torch.tensor([[1, 2]])}).shape
    torch.Size([1])
    """

    def __init__(
        self,
        spec: FieldSpec,
        *,
        embedding_dim: int = 10,
        num_layers: int = 3,
        hidden_features: Sequence[int] = (400, 400, 400),
        dropout: float = 0.2,
        batch_norm: bool = True,
        act_layer: ActLayer = "relu",
        embedding_layout: str = "per_field",
    ) -> None:
        super().__init__()
        self.embedding = FieldEmbedding(spec, embedding_dim, layout=embedding_layout)
        in_features = self.embedding.num_fields * embedding_dim
        self.cross = CrossNetV1(in_features, num_layers)
        hidden = tuple(hidden_features)
        self.deep = (
            tower(in_features, hidden, None, dropout=dropout, batch_norm=batch_norm, act_layer=act_layer)
            if hidden
            else None
        )
        self.fc = nn.Linear(in_features + (hidden[-1] if hidden else 0), 1)
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
        x0 = self.embedding(batch).flatten(start_dim=1)  # (B, F, E) -> (B, D = F·E)
        out = self.cross(x0)  # (B, D)
        if self.deep is not None:
            out = torch.cat([out, self.deep(x0)], dim=1)  # (B, D + H)
        return self.fc(out).squeeze(-1)  # (B, 1) -> (B,)
