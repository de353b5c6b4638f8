"""Neuron, Layer and MLP built from scalar Values, and the two losses the engine trains with.

A neuron computes ``f(b + Σ_j w_j x_j)``; a layer is a list of neurons reading the same input; an
MLP is hidden layers with an activation followed by a linear output layer, so that it returns
logits exactly like :func:`mlpkit.engine.build_mlp` (Rumelhart, Hinton & Williams, Nature 323,
1986, for the network and its training by backpropagation).

Parameters are named as in :class:`mlpkit.spec.MLPSpec` (``"0.weight"`` of shape ``(out, in)``,
``"0.bias"``, ``"2.weight"``, ...), so weights move between this MLP and the NumPy engine or torch
(:mod:`mlpkit.autograd.convert`). The losses are the engine's, as means over the batch:
``mse_loss`` is :class:`~mlpkit.engine.MSELoss`, ``cross_entropy_loss`` is
:class:`~mlpkit.engine.SoftmaxCrossEntropyLoss`. Pure Python; no NumPy.
"""

from __future__ import annotations

import itertools
import math
import numbers
import random
from collections.abc import Callable, Sequence

from mlpkit._checks import check_choice, check_positive_int
from mlpkit.autograd.value import Value, backward
from mlpkit.spec import MLPSpec

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "Layer",
    "Module",
    "Neuron",
    "Vector",
    "cross_entropy_loss",
    "mse_loss",
]

ACTIVATIONS: dict[str, Callable[[Value], Value]] = {
    "relu": Value.relu,
    "sigmoid": Value.sigmoid,
    "tanh": Value.tanh,
    "identity": lambda v: v,
}
"""The activations a scalar layer can apply: the subset of :data:`mlpkit.spec.ACTIVATION_NAMES` built here."""


class Vector(list[Value]):
    """A layer's outputs, one Value per unit: a plain list, whose ``backward()`` explains itself.

    ``net(x).backward()`` is the mistake a learner makes first; on a bare list it would be an
    ``AttributeError``. Here it says what to do instead (see :func:`~mlpkit.autograd.backward`).
    """

    def backward(self) -> None:
        """Always raises ``ValueError``: a vector has no single gradient; reduce it to one loss first."""
        backward(list(self))


def _check_input(x: Sequence[Value | float], in_features: int) -> None:
    if isinstance(x, str | bytes) or not isinstance(x, Sequence):
        raise TypeError(
            f"x must be a sequence of {in_features} numbers or Values, got {type(x).__name__} {x!r}"
        )
    if len(x) != in_features:
        raise ValueError(f"x must have in_features={in_features} entries, got {len(x)}")


class Module:
    """What Neuron, Layer and MLP share: a list of parameters, and clearing their gradients."""

    def parameters(self) -> list[Value]:
        """Every trainable Value, in a fixed order."""
        raise NotImplementedError

    def zero_grad(self) -> None:
        """Set every parameter's ``grad`` to 0: leaves accumulate over ``backward()`` calls, as in torch."""
        for p in self.parameters():
            p.grad = 0.0


class Neuron(Module):
    """``f(b + Σ_j w_j x_j)`` with ``in_features`` weights.

    Parameters
    ----------
    in_features : int
        D, the length of the input.
    activation : str
        One of :data:`ACTIVATIONS`; ``"identity"`` for an output unit (a logit).
    rng : random.Random
        Draws the weights from U(−1/√D, 1/√D), the bound of ``torch.nn.Linear``'s default
        initialization; the bias starts at 0, as in the engine. The standard library's generator,
        because the scalar core does not import NumPy.

    Attributes
    ----------
    weight : list of Value, length D
    bias : Value

    Examples
    --------
    >>> n = Neuron(3, activation="tanh", rng=random.Random(0))
    >>> y = n([1.0, 0.0, -1.0])
    >>> y.backward()
    >>> n.weight[1].grad                                   # dy/dw_1 = x_1 f'(z) = 0
    0.0
    """

    def __init__(self, in_features: int, *, activation: str = "identity", rng: random.Random) -> None:
        self.in_features = check_positive_int("in_features", in_features)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        bound = 1.0 / math.sqrt(in_features)
        self.weight = [Value(rng.uniform(-bound, bound)) for _ in range(in_features)]
        self.bias = Value(0.0)
        self._act = ACTIVATIONS[activation]

    def __call__(self, x: Sequence[Value | float]) -> Value:
        """x: D numbers or Values -> one Value."""
        _check_input(x, self.in_features)
        z = Value.sum([self.bias, *(w * xj for w, xj in zip(self.weight, x, strict=True))])  # b + Σ w_j x_j
        return self._act(z)

    def parameters(self) -> list[Value]:
        """The weights, then the bias."""
        return [*self.weight, self.bias]

    def __repr__(self) -> str:
        return f"Neuron(in_features={self.in_features}, activation={self.activation!r})"


class Layer(Module):
    """``out_features`` neurons reading the same input: ``f(x W + b)`` one unit at a time.

    Parameters
    ----------
    in_features, out_features : int
        D and H.
    activation : str
        One of :data:`ACTIVATIONS`.
    rng : random.Random
        Draws each neuron's weights in turn.
    """

    def __init__(
        self, in_features: int, out_features: int, *, activation: str = "identity", rng: random.Random
    ) -> None:
        self.in_features = check_positive_int("in_features", in_features)
        self.out_features = check_positive_int("out_features", out_features)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self.neurons = [Neuron(in_features, activation=activation, rng=rng) for _ in range(out_features)]

    def __call__(self, x: Sequence[Value | float]) -> Vector:
        """x: D numbers or Values -> H Values."""
        _check_input(x, self.in_features)
        return Vector(neuron(x) for neuron in self.neurons)

    def parameters(self) -> list[Value]:
        """Each neuron's weights and bias, neuron after neuron."""
        return [p for neuron in self.neurons for p in neuron.parameters()]

    @property
    def weight(self) -> list[list[Value]]:
        """The weights as H rows of D Values: torch's and the files' ``(out, in)`` layout."""
        return [neuron.weight for neuron in self.neurons]

    @property
    def bias(self) -> list[Value]:
        """The H biases."""
        return [neuron.bias for neuron in self.neurons]

    def __repr__(self) -> str:
        return (
            f"Layer(in_features={self.in_features}, out_features={self.out_features}, "
            f"activation={self.activation!r})"
        )


class MLP(Module):
    """Hidden layers with an activation, then a linear output layer: ``x -> logits``.

    The same network as ``mlpkit.engine.build_mlp(MLPSpec(in_features, hidden_features,
    out_features, activation=activation))``, one scalar at a time.

    Parameters
    ----------
    in_features : int
        D.
    hidden_features : sequence of int
        Width of each hidden layer; ``()`` gives a linear model.
    out_features : int
        C, the number of logits (or regression targets).
    activation : str or sequence of str
        One name for every hidden layer or one per layer, from :data:`ACTIVATIONS`.
    rng : random.Random
        Draws the initial weights (see :class:`Neuron`).

    Examples
    --------
    >>> net = MLP(2, (4, 4), 3, activation=("tanh", "relu"), rng=random.Random(0))
    >>> logits = net([0.5, -1.0])
    >>> len(logits), len(net.parameters())                 # 3 logits; 2*4+4 + 4*4+4 + 4*3+3 parameters
    (3, 47)
    >>> loss = cross_entropy_loss([logits], [2])
    >>> loss.backward()
    >>> list(net.named_parameters())
    ['0.weight', '0.bias', '2.weight', '2.bias', '4.weight', '4.bias']
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: Sequence[int] = (16,),
        out_features: int = 1,
        *,
        activation: str | Sequence[str] = "relu",
        rng: random.Random,
    ) -> None:
        # MLPSpec checks sizes and broadcasts the activation; the scalar layers then check that
        # each activation is one they implement.
        act = activation if isinstance(activation, str) else tuple(activation)
        spec = MLPSpec(in_features, tuple(hidden_features), out_features, activation=act)
        for name in spec.activations:
            check_choice("activation", name, ACTIVATIONS)
        self.in_features = spec.in_features
        self.hidden_features = spec.hidden_features
        self.out_features = spec.out_features
        self.activations = spec.activations
        widths = (in_features, *self.hidden_features, out_features)
        follows = (*self.activations, "identity")             # the output layer gives logits
        self.layers = [
            Layer(fan_in, fan_out, activation=follows[i], rng=rng)
            for i, (fan_in, fan_out) in enumerate(itertools.pairwise(widths))
        ]

    def __call__(self, x: Sequence[Value | float]) -> Vector:
        """x: D numbers or Values -> C logits."""
        out: Sequence[Value | float] = x
        for layer in self.layers:
            out = layer(out)
        return Vector(out)

    def parameters(self) -> list[Value]:
        """Every weight and bias, layer by layer."""
        return [p for layer in self.layers for p in layer.parameters()]

    def named_parameters(self) -> dict[str, list[list[Value]] | list[Value]]:
        """``{"0.weight": H rows of D Values, "0.bias": H Values, "2.weight": ...}``.

        The names and ``(out, in)`` layout of :meth:`mlpkit.spec.MLPSpec.linear_shapes`: layer
        ``i`` of the engine's Sequential is the ``i // 2``-th Linear, since each hidden Linear is
        followed by its activation (the scalar MLP has no dropout layers).
        """
        named: dict[str, list[list[Value]] | list[Value]] = {}
        for i, layer in enumerate(self.layers):
            named[f"{2 * i}.weight"] = layer.weight
            named[f"{2 * i}.bias"] = layer.bias
        return named

    @property
    def spec(self) -> MLPSpec:
        """The :class:`~mlpkit.spec.MLPSpec` that builds the same network in the NumPy engine or torch."""
        act = self.activations[0] if len(set(self.activations)) == 1 else self.activations
        return MLPSpec(self.in_features, self.hidden_features, self.out_features, activation=act or "relu")

    def __repr__(self) -> str:
        return f"MLP({self.spec.describe()}, scalar)"


def _check_batch(name: str, rows: Sequence[Sequence[object]]) -> int:
    if isinstance(rows, str | bytes) or not isinstance(rows, Sequence) or not rows:
        raise ValueError(f"{name} must be a non-empty batch (a list with one row per sample), got {rows!r}")
    return len(rows)


def mse_loss(outputs: Sequence[Sequence[Value]], targets: Sequence[Sequence[float]]) -> Value:
    """Mean squared error over every element, ``mean((ŷ − y)²)``: the engine's ``MSELoss``.

    Parameters
    ----------
    outputs : B rows of C Values
    targets : B rows of C numbers

    Returns
    -------
    Value
        The scalar loss; its gradient with respect to each output is ``2 (ŷ − y) / (B C)``.

    Examples
    --------
    >>> y_hat = [[Value(1.0), Value(3.0)]]
    >>> loss = mse_loss(y_hat, [[0.0, 1.0]])
    >>> loss.backward()
    >>> loss.data, y_hat[0][0].grad, y_hat[0][1].grad     # (1 + 4) / 2; 2·1/2; 2·2/2
    (2.5, 1.0, 2.0)
    """
    batch = _check_batch("outputs", outputs)
    if len(targets) != batch:
        raise ValueError(f"targets must have one row per output row ({batch}), got {len(targets)}")
    squares = []
    for b, (row, target) in enumerate(zip(outputs, targets, strict=True)):
        if len(row) != len(target):
            raise ValueError(f"row {b}: {len(row)} outputs but {len(target)} targets")
        squares += [(y_hat - t) ** 2 for y_hat, t in zip(row, target, strict=True)]
    return Value.sum(squares) / len(squares)


def cross_entropy_loss(logits: Sequence[Sequence[Value]], labels: Sequence[int]) -> Value:
    """Softmax cross-entropy against class labels, the batch mean: the engine's ``SoftmaxCrossEntropyLoss``.

    ``L = mean_b (log Σ_c e^{z_bc} − z_{b,y_b})``; its gradient with respect to the logits is
    ``(softmax(z) − onehot(y)) / B``, which the graph finds by itself from exp, sum and log.

    Parameters
    ----------
    logits : B rows of C Values
    labels : B ints in [0, C)

    Returns
    -------
    Value

    Examples
    --------
    >>> z = [[Value(0.0), Value(0.0)]]
    >>> loss = cross_entropy_loss(z, [1])
    >>> loss.backward()
    >>> round(loss.data, 6), z[0][0].grad, z[0][1].grad  # log 2; softmax − onehot = (0.5, −0.5)
    (0.693147, 0.5, -0.5)
    """
    batch = _check_batch("logits", logits)
    if len(labels) != batch:
        raise ValueError(f"labels must have one entry per row of logits ({batch}), got {len(labels)}")
    terms = []
    for b, (row, label) in enumerate(zip(logits, labels, strict=True)):
        classes = len(row)
        if isinstance(label, bool) or not isinstance(label, numbers.Integral) or not 0 <= label < classes:
            raise ValueError(f"labels[{b}] must be an int in [0, {classes}), got {label!r}")
        # Subtracting the largest logit (a constant: no gradient flows through the shift) keeps
        # every exp at most 1, so large logits cannot overflow; softmax is unchanged by it.
        shift = max(z.data for z in row)
        log_sum_exp = Value.sum((z - shift).exp() for z in row).log() + shift
        terms.append(log_sum_exp - row[int(label)])
    return Value.sum(terms) / batch
