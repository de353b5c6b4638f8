"""Transformer&Deep: a Transformer encoder over selected fields, then an MLP tower over everything.

The architecture of BST: Chen, Zhao, Li, Huang, Ou. "Behavior Sequence Transformer for
E-commerce Recommendation in Alibaba". DLP-KDD 2019. https://arxiv.org/abs/1905.06874

The embeddings of the selected fields, a (B, F_t, E) sequence, go through Transformer encoder
layers as BST's Transformer layer (multi-head self-attention, then a two-layer feed-forward network with
LeakyReLU, each followed by dropout, a residual connection and LayerNorm: the post-norm layer of
Vaswani et al. 2017, https://arxiv.org/abs/1706.03762). The encoder's output, flattened to
(B, F_t·E), is concatenated with every field's embedding flattened to (B, F·E), and an MLP tower
of ``Linear -> [BatchNorm1d] -> ReLU -> [Dropout]`` blocks maps the result to one logit.

Deviations from BST: the sequence is a set of fields of one example, not a user's behaviour
sequence with its target item, so there is no positional embedding (each field has its own table
rows, which already tell the fields apart) and no padding mask (every field is present; a
multi-valued field enters as its pooled vector); the encoder output is flattened rather than
pooled; and the tower sees all fields, the selected ones included, rather than only the others.

Defaults: BARS has no Frappe_x1 run of this model. The embedding width and the tower are BARS
DeepFM's Frappe_x1 settings (:data:`mlpkit.models.ctr.deepfm.BARS_FRAPPE_X1`): E = 10, hidden
(400, 400, 400), dropout 0.2, batch norm. The encoder settings are FuxiCTR's BST defaults
(``model_zoo/BST/src/BST.py``): 2 heads, 1 layer, attention dropout 0; the feed-forward width is
4·E, the ratio of Vaswani et al. (d_ff = 2048 for d_model = 512).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mlpkit._checks import check_positive_int, check_probability
from mlpkit.blocks.embedding import FieldEmbedding
from mlpkit.blocks.mlp import ActLayer
from mlpkit.data.fields import FieldSpec
from mlpkit.models.ctr._base import CTRModel, tower

__all__ = ["TransformerDeep"]


def _selected_fields(fields: object, names: tuple[str, ...]) -> tuple[str, ...]:
    if isinstance(fields, str) or not isinstance(fields, Sequence) or not fields:
        raise ValueError(f"transformer_fields must be a non-empty sequence of field names, got {fields!r}")
    if unknown := [name for name in fields if name not in names]:
        raise ValueError(f"transformer_fields has unknown field(s) {unknown}; the fields are {list(names)}")
    if len(set(fields)) != len(fields):
        raise ValueError(f"transformer_fields names a field more than once: {list(fields)}")
    return tuple(fields)


class TransformerDeep(CTRModel):
    """A Transformer encoder over the selected fields' embeddings, then an MLP tower over all of them.

    Parameters
    ----------
    spec : FieldSpec
    embedding_dim : int
        E, also the Transformer's model width; a multiple of ``num_heads``.
    hidden_features : sequence of int
        The tower's widths.
    dropout : float
        Dropout after each hidden activation of the tower.
    batch_norm : bool
        ``BatchNorm1d`` in the tower.
    act_layer : str or nn.Module class
        The tower's activation.
    transformer_fields : sequence of str or None
        Names of the fields the encoder attends over (at least one), in the order given; None
        means every field.
    num_heads : int
        Attention heads.
    num_layers : int
        Encoder layers.
    ffn_features : int or None
        Width of the encoder's feed-forward layer; None means 4·E.
    attention_dropout : float
        Dropout inside each encoder layer (attention weights, feed-forward and residual branches).
    embedding_layout : {"per_field", "shared"}

    Examples
    --------
    >>> import torch
    >>> from mlpkit.data.fields import Field, FieldSpec
    >>> spec = FieldSpec((Field("user", "categorical", 5), Field("item", "categorical", 9),
    ...                   Field("hour", "categorical", 24)))
    >>> model = TransformerDeep(spec, transformer_fields=("user", "item"), hidden_features=(8,))
    >>> model.eval()({"sparse": torch.tensor([[1, 2, 3]])}).shape
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
        transformer_fields: Sequence[str] | None = None,
        num_heads: int = 2,
        num_layers: int = 1,
        ffn_features: int | None = None,
        attention_dropout: float = 0.0,
        embedding_layout: str = "per_field",
    ) -> None:
        super().__init__()
        self.embedding = FieldEmbedding(spec, embedding_dim, layout=embedding_layout)
        names = self.embedding.field_names
        selected = names if transformer_fields is None else _selected_fields(transformer_fields, names)
        self.transformer_fields = selected
        index = torch.tensor([names.index(n) for n in selected], dtype=torch.int64)
        self.register_buffer("field_index", index, persistent=False)
        num_heads = check_positive_int("num_heads", num_heads)
        if embedding_dim % num_heads:
            raise ValueError(
                f"embedding_dim must be a multiple of num_heads, got embedding_dim={embedding_dim}, "
                f"num_heads={num_heads}"
            )
        ffn = 4 * embedding_dim if ffn_features is None else check_positive_int("ffn_features", ffn_features)
        layer = nn.TransformerEncoderLayer(
            d_model=embedding_dim,
            nhead=num_heads,
            dim_feedforward=ffn,
            dropout=check_probability("attention_dropout", attention_dropout),
            activation=F.leaky_relu,  # BST: LeakyReLU in the feed-forward network
            batch_first=True,
            norm_first=False,
        )
        self.encoder = nn.TransformerEncoder(
            layer, num_layers=check_positive_int("num_layers", num_layers), enable_nested_tensor=False
        )
        in_features = (len(selected) + self.embedding.num_fields) * embedding_dim
        self.mlp = tower(in_features, hidden_features, 1, dropout=dropout, batch_norm=batch_norm,
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
        v = self.embedding(batch)  # (B, F, E)
        attended = self.encoder(v[:, self.field_index])  # (B, F_t, E)
        z = torch.cat([attended.flatten(start_dim=1), v.flatten(start_dim=1)], dim=1)  # (B, (F_t + F)·E)
        return self.mlp(z).squeeze(-1)  # (B, 1) -> (B,)
