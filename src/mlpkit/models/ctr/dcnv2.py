"""DCN-V2: the full-rank cross network beside (parallel) or under (stacked) the DNN tower.

Wang, Shivanna, Cheng, Jain, Lin, Hong, Chi. "DCN V2: Improved Deep & Cross Network and Practical
Lessons for Web-scale Learning to Rank Systems". WWW 2021. https://arxiv.org/abs/2008.13535

The stacked embeddings x_0 (B, D = F·E) go through L cross layers
``x_{l+1} = x_0 ⊙ (W_l x_l + b_l) + x_l`` (:class:`~mlpkit.blocks.interaction.CrossNetV2`), and

- ``structure="parallel"`` (paper fig. 2b): beside them through the tower of
  ``Linear -> [BatchNorm1d] -> ReLU -> [Dropout]`` blocks; both outputs are concatenated and one
  Linear maps them to the logit;
- ``structure="stacked"`` (fig. 2a): the cross network's output is the tower's input, and the
  tower ends in the logit.

Defaults: BARS Frappe_x1 (:data:`BARS_FRAPPE_X1`, expid ``DCNv2_frappe_x1_007_c207b717``): E = 10,
4 cross layers, parallel tower (400, 400, 400) (stacked: (500, 500, 500)), dropout 0.4, batch
norm, embedding regularizer 0.05. Parameters of the parallel model on Frappe_x1: 458,391, BARS's
count (53,890 embeddings + 4 x 10,100 cross + 363,600 tower + Linear(500, 1)).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from mlpkit.blocks.embedding import FieldEmbedding
from mlpkit.blocks.interaction import CrossNetV2
from mlpkit.blocks.mlp import ActLayer
from mlpkit.data.fields import FieldSpec
from mlpkit.models.ctr._base import BarsRun, CTRModel, tower

__all__ = ["BARS_FRAPPE_X1", "DCNV2", "STRUCTURES", "DCNV2Stacked"]

BARS_FRAPPE_X1 = BarsRun(
    config="ranking/ctr/DCNv2/DCNv2_frappe_x1/DCNv2_frappe_x1_tuner_config_03/model_config.yaml",
    expid="DCNv2_frappe_x1_007_c207b717",
    embedding_regularizer=0.05,
    net_regularizer=0.0,
    learning_rate=1e-3,
    batch_size=4096,
    patience=2,
    num_parameters=458391,
    test_auc=0.983824,  # the 5-seed mean; seed 2021 alone: 0.984478
)

STRUCTURES = ("parallel", "stacked")
"""How the cross network and the tower are combined."""

_TOWERS = {"parallel": (400, 400, 400), "stacked": (500, 500, 500)}


class DCNV2(CTRModel):
    """The cross network and the DNN tower, parallel or stacked.

    Parameters
    ----------
    spec : FieldSpec
    embedding_dim : int
        E.
    num_layers : int
        Cross layers L.
    structure : {"parallel", "stacked"}
    hidden_features : sequence of int or None
        The tower's widths; None: BARS's (400, 400, 400) parallel, (500, 500, 500) stacked.
    dropout : float
    batch_norm : bool
    act_layer : str or nn.Module class
    embedding_layout : {"per_field", "shared"}

    Examples
    --------
    >>> import torch
    >>> from mlpkit.data.fields import Field, FieldSpec
    >>> spec = FieldSpec((Field("user", "categorical", 5), Field("item", "categorical", 9)))
    >>> model = DCNV2(spec, hidden_features=(8,), structure="stacked")
    >>> model.eval()({"sparse": torch.tensor([[1, 2]])}).shape
    torch.Size([1])
    """

    def __init__(
        self,
        spec: FieldSpec,
        *,
        embedding_dim: int = 10,
        num_layers: int = 4,
        structure: str = "parallel",
        hidden_features: Sequence[int] | None = None,
        dropout: float = 0.4,
        batch_norm: bool = True,
        act_layer: ActLayer = "relu",
        embedding_layout: str = "per_field",
    ) -> None:
        super().__init__()
        if structure not in STRUCTURES:
            raise ValueError(f"structure must be one of {list(STRUCTURES)}, got {structure!r}")
        self.structure = structure
        self.embedding = FieldEmbedding(spec, embedding_dim, layout=embedding_layout)
        in_features = self.embedding.num_fields * embedding_dim
        self.cross = self.build_cross(in_features, num_layers)
        hidden = tuple(_TOWERS[structure] if hidden_features is None else hidden_features)
        options = {"dropout": dropout, "batch_norm": batch_norm, "act_layer": act_layer}
        if structure == "parallel":
            self.deep = tower(in_features, hidden, None, **options) if hidden else None
            self.fc: nn.Module = nn.Linear(in_features + (hidden[-1] if hidden else 0), 1)
        else:
            self.deep = tower(in_features, hidden, 1, **options)  # ends in the logit
            self.fc = nn.Identity()
        self.reset_dense_parameters()

    def build_cross(self, in_features: int, num_layers: int) -> nn.Module:
        """The cross network on x_0 (B, D): full rank here, a mixture of low-rank experts in DCN-Mix."""
        return CrossNetV2(in_features, num_layers)

    def reset_dense_parameters(self) -> None:
        super().reset_dense_parameters()
        self.cross.reset_parameters()  # its own init, not nn.Linear's

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
        crossed = self.cross(x0)                          # (B, D)
        if self.structure == "stacked":
            return self.deep(crossed).squeeze(-1)         # (B, 1) -> (B,)
        out = crossed if self.deep is None else torch.cat([crossed, self.deep(x0)], dim=1)  # (B, D + H)
        return self.fc(out).squeeze(-1)                   # (B, 1) -> (B,)


class DCNV2Stacked(DCNV2):
    """:class:`DCNV2` with ``structure="stacked"``: the registry's ``dcnv2-stacked``."""

    fixed_arguments: ClassVar[Mapping[str, Any]] = {"structure": "stacked"}

    def __init__(self, spec: FieldSpec, **kwargs: Any) -> None:
        super().__init__(spec, **kwargs, **self.fixed_arguments)
