"""LR: logistic regression on one-hot field features, the first-order CTR baseline.

Richardson, Dominowska, Ragno. "Predicting Clicks: Estimating the Click-Through Rate for New
Ads". WWW 2007. https://doi.org/10.1145/1242572.1242643

The logit is ``b + sum_f w_f``: one learned weight per category of each field (a one-hot input
times a weight vector is a lookup), the mean (or sum) of the ids' weights for a multi-valued
field, and ``w_j * x_j`` for a numeric field. Deviations from the paper: none in the model; the
paper's feature engineering is the data pipeline's business.

Defaults: BARS Frappe_x1 (:data:`BARS_FRAPPE_X1`); LR has no hyper-parameter of its own.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from mlpkit.blocks.embedding import LinearEmbedding
from mlpkit.data.fields import FieldSpec
from mlpkit.models.ctr._base import BarsRun, CTRModel

__all__ = ["BARS_FRAPPE_X1", "LR"]

BARS_FRAPPE_X1 = BarsRun(
    config="ranking/ctr/LR/LR_frappe_x1/LR_frappe_x1_tuner_config_01/model_config.yaml",
    expid="LR_frappe_x1_001_ff730f43",
    embedding_regularizer=1e-5,
    net_regularizer=1e-5,
    learning_rate=1e-3,
    batch_size=4096,
    patience=2,
    num_parameters=5390,
    test_auc=0.935584,
)


class LR(CTRModel):
    """Logistic regression: ``b + sum_f w_f``.

    Parameters
    ----------
    spec : FieldSpec
    embedding_layout : {"per_field", "shared"}
        Layout of the weight table (:class:`~mlpkit.blocks.embedding.FieldEmbedding`).

    Examples
    --------
    >>> import torch
    >>> from mlpkit.data.fields import Field, FieldSpec
    >>> model = LR(FieldSpec((Field("user", "categorical", 5), Field("item", "categorical", 9))))
    >>> model({"sparse": torch.tensor([[1, 2], [0, 8]])}).shape
    torch.Size([2])
    """

    def __init__(self, spec: FieldSpec, *, embedding_layout: str = "per_field") -> None:
        super().__init__()
        self.linear = LinearEmbedding(spec, layout=embedding_layout, bias=True)

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        """Logits of a batch.

        Parameters
        ----------
        batch : mapping of str to Tensor
            The named batch of :mod:`mlpkit.data.fields`.

        Returns
        -------
        Tensor of shape (B,)
        """
        return self.linear(batch).squeeze(-1)  # (B, 1) -> (B,)
