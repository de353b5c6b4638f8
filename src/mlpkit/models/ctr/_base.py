"""What every CTR model shares: logits of shape (B,), the embedding/dense parameter split, the tower.

The trainer needs to tell embedding tables from the rest, because BARS/FuxiCTR regularize them
differently: an L2 penalty ``(λ / 2) · Σ w²`` on the embeddings only (BARS's
``embedding_regularizer: 0.05`` is ``0.025 · Σ w²``, FuxiCTR v1.1 ``BaseModel.add_regularization``),
and no weight decay on them. :meth:`CTRModel.embedding_parameters` yields every parameter of every
:class:`~mlpkit.blocks.embedding.FieldEmbedding` in the model (the first-order LR weights and the
numeric field vectors included, as FuxiCTR's ``"embedding_layer" in name`` rule does);
:meth:`CTRModel.dense_parameters` yields the others.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor, nn

from mlpkit._checks import check_probability
from mlpkit.blocks.activations import get_act_layer
from mlpkit.blocks.dropout import Dropout
from mlpkit.blocks.embedding import FieldEmbedding
from mlpkit.blocks.mlp import MLP, ActLayer, new_act, run_layers

__all__ = ["BarsRun", "CTRModel", "tower"]


@dataclass(frozen=True)
class BarsRun:
    """The published BARS Frappe_x1 run a model's defaults come from, and what it trained with.

    Attributes
    ----------
    config : str
        The ``model_config.yaml`` in github.com/reczoo/BARS holding the run's settings.
    expid : str
        The experiment id inside that file (the run BARS reports).
    embedding_regularizer, net_regularizer : float
        FuxiCTR's λ: the trainer adds ``(λ / 2) · Σ w²`` over the embedding (or the other)
        parameters. LR, FM and FFM use one ``regularizer`` for both.
    learning_rate : float
        Adam's learning rate.
    batch_size : int
    patience : int
        Epochs without a better validation AUC before stopping.
    num_parameters : int
        "Total number of parameters" in the run's log.
    test_auc : float
        The test AUC BARS reports (the mean over runs where it reports several).
    """

    config: str
    expid: str
    embedding_regularizer: float
    net_regularizer: float
    learning_rate: float
    batch_size: int
    patience: int
    num_parameters: int
    test_auc: float


class CTRModel(nn.Module):
    """Base class of the CTR models: ``forward(batch) -> (B,)`` logits, never probabilities.

    A registry variant that pins some of its parent's keyword arguments (``dcnv2-stacked`` is DCN-V2
    with ``structure="stacked"``) names them in :attr:`fixed_arguments`; it takes the parent's other
    keywords, and the registry refuses the pinned ones.
    """

    fixed_arguments: ClassVar[Mapping[str, Any]] = {}

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def named_embedding_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """``(name, parameter)`` of every embedding table and numeric field vector."""
        seen: set[int] = set()
        for prefix, module in self.named_modules():
            if isinstance(module, FieldEmbedding):
                for name, param in module.named_parameters(prefix=prefix):
                    if id(param) not in seen:
                        seen.add(id(param))
                        yield name, param

    def embedding_parameters(self) -> Iterator[nn.Parameter]:
        """Every embedding table and numeric field vector (the L2-regularized group)."""
        for _, param in self.named_embedding_parameters():
            yield param

    def dense_parameters(self) -> Iterator[nn.Parameter]:
        """Every parameter that is not an embedding: linear layers, norms, cross layers, biases."""
        embedding = {id(p) for p in self.embedding_parameters()}
        for param in self.parameters():
            if id(param) not in embedding:
                yield param

    def reset_dense_parameters(self) -> None:
        """Xavier-normal weights and zero biases for every ``nn.Linear`` (FuxiCTR's ``reset_parameters``)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_normal_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)


def tower(
    in_features: int,
    hidden_features: Sequence[int],
    out_features: int | None,
    *,
    dropout: float,
    batch_norm: bool,
    act_layer: ActLayer,
) -> nn.Module:
    """The DNN tower: ``Linear -> [BatchNorm1d] -> act -> [Dropout]`` per hidden width.

    With ``out_features=1`` it ends in a ``Linear`` to one logit (:class:`~mlpkit.blocks.mlp.MLP`);
    with ``None`` it ends after the last hidden block (DCN's deep network, whose output is
    concatenated with the cross network's before the final ``Linear``).

    Returns
    -------
    nn.Module mapping (B, D) to (B, out_features), or to (B, hidden_features[-1]) when None.
    """
    if not isinstance(batch_norm, bool):
        raise ValueError(f"batch_norm must be a bool, got {batch_norm!r}")
    norm = nn.BatchNorm1d if batch_norm else None
    if out_features is not None:
        return MLP(in_features, hidden_features, out_features, act_layer=act_layer, norm_layer=norm,
                   dropout=dropout)
    hidden = tuple(hidden_features)
    if not hidden:
        raise ValueError("hidden_features must not be empty when the tower has no output layer")
    layers = list(MLP(in_features, hidden[:-1], hidden[-1], act_layer=act_layer, norm_layer=norm,
                      dropout=dropout))
    if norm is not None:
        layers.append(norm(hidden[-1]))
    layers.append(new_act(get_act_layer(act_layer)))
    if check_probability("dropout", dropout) > 0:
        layers.append(Dropout(dropout))
    return HiddenTower(*layers)


class HiddenTower(nn.Sequential):
    """A tower that ends after its last hidden block: the layers of :class:`~mlpkit.blocks.mlp.MLP`
    without the output ``Linear``, run as MLP runs them (:func:`~mlpkit.blocks.mlp.run_layers`)."""

    def forward(self, x: Tensor) -> Tensor:
        """(B, D) -> (B, hidden_features[-1])."""
        return run_layers(self, x)
