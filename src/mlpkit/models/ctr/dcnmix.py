"""DCN-Mix: DCN-V2 with a mixture of low-rank cross experts in place of the full-rank layers.

Wang et al. "DCN V2". WWW 2021, sec. 5 (https://arxiv.org/abs/2008.13535): the trained cross
weights W_l of DCN-V2 are close to low rank, so each layer is replaced by K experts
``x_0 ⊙ (U_i g(C_i g(V_iᵀ x_l)) + b)`` of rank r mixed by a softmax gate on x_l
(:class:`~mlpkit.blocks.interaction.CrossNetMix`). The structures are DCN-V2's (parallel, stacked).

BARS publishes no DCN-Mix run on Frappe_x1: the protocol and the tower are DCN-V2's
(:data:`~mlpkit.models.ctr.dcnv2.BARS_FRAPPE_X1`). The expert sizes are chosen so that the mixture
has fewer cross parameters than DCN-V2 at the same depth on Frappe_x1 (D = 100): K = 4 experts of
rank r = 8, 7,156 parameters a layer (K·(2·D·r + r²) + D·K + D) against 10,100; BARS's DCN-V2
config names r = 32, with which a layer would have 30,196.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from torch import nn

from mlpkit.blocks.interaction import CrossNetMix
from mlpkit.blocks.mlp import ActLayer
from mlpkit.data.fields import FieldSpec
from mlpkit.models.ctr.dcnv2 import DCNV2

__all__ = ["DCNMix", "DCNMixStacked"]


class DCNMix(DCNV2):
    """DCN-V2 whose cross network is a mixture of K low-rank experts per layer.

    Parameters
    ----------
    spec : FieldSpec
    embedding_dim, num_layers, structure, hidden_features, dropout, batch_norm, act_layer,
    embedding_layout
        As for :class:`~mlpkit.models.ctr.dcnv2.DCNV2`.
    num_experts : int
        K.
    low_rank : int
        r.
    cross_activation : str or None
        ``g`` of the experts; None is the identity (the paper's default).

    Examples
    --------
    >>> import torch
    >>> from mlpkit.data.fields import Field, FieldSpec
    >>> spec = FieldSpec((Field("user", "categorical", 5), Field("item", "categorical", 9)))
    >>> model = DCNMix(spec, hidden_features=(8,), low_rank=4)
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
        num_experts: int = 4,
        low_rank: int = 8,
        cross_activation: str | None = None,
        hidden_features: Sequence[int] | None = None,
        dropout: float = 0.4,
        batch_norm: bool = True,
        act_layer: ActLayer = "relu",
        embedding_layout: str = "per_field",
    ) -> None:
        self._mix = {"num_experts": num_experts, "low_rank": low_rank, "activation": cross_activation}
        super().__init__(
            spec, embedding_dim=embedding_dim, num_layers=num_layers, structure=structure,
            hidden_features=hidden_features, dropout=dropout, batch_norm=batch_norm, act_layer=act_layer,
            embedding_layout=embedding_layout,
        )

    def build_cross(self, in_features: int, num_layers: int) -> nn.Module:
        return CrossNetMix(in_features, num_layers, **self._mix)


class DCNMixStacked(DCNMix):
    """:class:`DCNMix` with ``structure="stacked"``: the registry's ``dcnmix-stacked``."""

    fixed_arguments: ClassVar[Mapping[str, Any]] = {"structure": "stacked"}

    def __init__(self, spec: FieldSpec, **kwargs: Any) -> None:
        super().__init__(spec, **kwargs, **self.fixed_arguments)
