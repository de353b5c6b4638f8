"""The NumPy engine: layers, activations, losses, initializers and optimizers from first principles.

Nothing here imports torch. Each layer's ``backward`` sits beside its ``forward``.
"""

from __future__ import annotations

from mlpkit.engine.activations import (
    ACTIVATIONS,
    GELU,
    LeakyReLU,
    ReLU,
    Sigmoid,
    SiLU,
    Softmax,
    Tanh,
    get_activation,
)
from mlpkit.engine.layers import Dropout, Layer, Linear, Parameter
from mlpkit.engine.losses import LOSSES, BCEWithLogitsLoss, MSELoss, SoftmaxCrossEntropyLoss, get_loss
from mlpkit.engine.network import Sequential, build_mlp, load_weights, save_weights
from mlpkit.engine.optimizers import OPTIMIZERS, SGD, Adam, AdamW, Optimizer, make_optimizer

__all__ = [
    "ACTIVATIONS",
    "GELU",
    "LOSSES",
    "OPTIMIZERS",
    "SGD",
    "Adam",
    "AdamW",
    "BCEWithLogitsLoss",
    "Dropout",
    "Layer",
    "LeakyReLU",
    "Linear",
    "MSELoss",
    "Optimizer",
    "Parameter",
    "ReLU",
    "Sequential",
    "SiLU",
    "Sigmoid",
    "Softmax",
    "SoftmaxCrossEntropyLoss",
    "Tanh",
    "build_mlp",
    "get_activation",
    "get_loss",
    "load_weights",
    "make_optimizer",
    "save_weights",
]
