"""A scalar autograd: the first rung from a single derivative to the vectorized engine and torch.

:class:`Value` holds one float, its gradient and the Values it came from; ``+ - * / **``,
``exp``, ``log``, ``tanh``, ``sigmoid`` and ``relu`` build a graph, and ``backward()`` walks it
once in reverse topological order applying the chain rule (Rumelhart, Hinton & Williams, Nature
323, 1986). :class:`Neuron`, :class:`Layer` and :class:`MLP` are made of Values, with the engine's
layer order and parameter names, so the same weights give the same numbers here, in
:mod:`mlpkit.engine` and in torch (the tests check gradients to 1e-12). :func:`to_dot` draws the
graph; docs/backprop.md derives what ``backward()`` computes, equation by equation.

This package imports no NumPy; :mod:`mlpkit.autograd.convert` (not imported here) moves weights
to and from NumPy arrays.

Examples
--------
>>> import random
>>> net = MLP(2, (8,), 2, activation="tanh", rng=random.Random(0))
>>> loss = cross_entropy_loss([net([0.5, -0.2]), net([-1.0, 0.3])], [0, 1])
>>> net.zero_grad()
>>> loss.backward()
>>> for p in net.parameters():
...     p.data -= 0.1 * p.grad                             # one SGD step
>>> cross_entropy_loss([net([0.5, -0.2]), net([-1.0, 0.3])], [0, 1]).data < loss.data
True
"""

from __future__ import annotations

from mlpkit.autograd.graph import render, to_dot
from mlpkit.autograd.nn import ACTIVATIONS, MLP, Layer, Module, Neuron, Vector, cross_entropy_loss, mse_loss
from mlpkit.autograd.value import Value, backward, topological_order

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "Layer",
    "Module",
    "Neuron",
    "Value",
    "Vector",
    "backward",
    "cross_entropy_loss",
    "mse_loss",
    "render",
    "to_dot",
    "topological_order",
]
