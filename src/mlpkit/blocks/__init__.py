"""PyTorch building blocks: tensors in, tensors out. Importing this package imports torch.

Models built from these return logits; they never hold an optimizer, a device or a loop.
"""

from __future__ import annotations

from mlpkit.blocks.activations import ACT_LAYERS, get_act_layer, make_activation
from mlpkit.blocks.dropout import Dropout
from mlpkit.blocks.embedding import FieldEmbedding, LinearEmbedding
from mlpkit.blocks.init import calculate_gain, init_linear_, init_weight_
from mlpkit.blocks.interaction import (
    BiInteraction,
    CrossNetMix,
    CrossNetV1,
    CrossNetV2,
    FFMInteraction,
    FMInteraction,
    InnerProduct,
)
from mlpkit.blocks.mlp import MLP, GatedMLP, GatedUnit, StackedGatedMLP, load_llama_mlp, read_llama_mlp
from mlpkit.blocks.parallel import ParallelGatedMLP

__all__ = [
    "ACT_LAYERS",
    "MLP",
    "BiInteraction",
    "CrossNetMix",
    "CrossNetV1",
    "CrossNetV2",
    "Dropout",
    "FFMInteraction",
    "FMInteraction",
    "FieldEmbedding",
    "GatedMLP",
    "GatedUnit",
    "InnerProduct",
    "LinearEmbedding",
    "ParallelGatedMLP",
    "StackedGatedMLP",
    "calculate_gain",
    "get_act_layer",
    "init_linear_",
    "init_weight_",
    "load_llama_mlp",
    "make_activation",
    "read_llama_mlp",
]
