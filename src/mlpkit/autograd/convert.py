"""Weights between the scalar MLP and the engine's arrays: the one part of the autograd that uses NumPy.

The state dict is the engine's and torch's (:meth:`mlpkit.engine.Sequential.state_dict`,
:func:`mlpkit.torch_engine.state_arrays`): ``"{layer index}.weight"`` of shape ``(out, in)`` and
``"{layer index}.bias"`` of shape ``(out,)``, named as :meth:`mlpkit.spec.MLPSpec.linear_shapes`.
Values are Python floats, i.e. float64, so a float64 round trip is exact.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

import numpy as np

from mlpkit.autograd.nn import MLP
from mlpkit.autograd.value import Value
from mlpkit.errors import CheckpointError
from mlpkit.spec import MLPSpec

__all__ = ["grad_dict", "mlp_from_state_dict", "state_dict"]


def _arrays(mlp: MLP, field: str) -> dict[str, np.ndarray]:
    out = {}
    for name, values in mlp.named_parameters().items():
        if name.endswith(".weight"):
            out[name] = np.array([[getattr(v, field) for v in row] for row in values], dtype=np.float64)
        else:
            out[name] = np.array([getattr(v, field) for v in values], dtype=np.float64)  # type: ignore[union-attr]
    return out


def state_dict(mlp: MLP) -> dict[str, np.ndarray]:
    """The scalar MLP's weights as float64 arrays: ``{"0.weight": (H, D), "0.bias": (H,), ...}``.

    Load them into the engine with ``build_mlp(mlp.spec, ...).load_state_dict(...)``.

    Examples
    --------
    >>> net = MLP(3, (4,), 2, rng=random.Random(0))
    >>> {name: a.shape for name, a in state_dict(net).items()}
    {'0.weight': (4, 3), '0.bias': (4,), '2.weight': (2, 4), '2.bias': (2,)}
    """
    return _arrays(mlp, "data")


def grad_dict(mlp: MLP) -> dict[str, np.ndarray]:
    """The parameters' ``grad`` after ``backward()``, in the layout of :func:`state_dict`."""
    return _arrays(mlp, "grad")


def mlp_from_state_dict(spec: MLPSpec, state: Mapping[str, np.ndarray]) -> MLP:
    """The scalar MLP that ``spec`` describes, with the weights in ``state`` (torch's layout).

    Parameters
    ----------
    spec : MLPSpec
        Without dropout, and with activations the scalar MLP has (relu, sigmoid, tanh, identity).
    state : mapping of str to ndarray
        E.g. ``network.state_dict()`` of a NumPy engine network built from ``spec``, or
        :func:`mlpkit.torch_engine.state_arrays` of the torch module.

    Returns
    -------
    MLP

    Raises
    ------
    ValueError
        If ``spec`` has dropout or an activation the scalar MLP does not implement.
    CheckpointError
        Listing missing and unexpected tensors, or naming a tensor whose shape differs, with both shapes.

    Examples
    --------
    >>> spec = MLPSpec(2, (3,), 1, activation="tanh")
    >>> state = {"0.weight": np.ones((3, 2)), "0.bias": np.zeros(3), "2.weight": np.ones((1, 3)),
    ...          "2.bias": np.array([0.5])}
    >>> net = mlp_from_state_dict(spec, state)
    >>> round(net([0.0, 0.0])[0].data, 6)                 # 3 tanh(0) + 0.5
    0.5
    """
    if any(spec.dropouts):
        raise ValueError(f"the scalar MLP has no dropout; spec.dropout must be 0, got {spec.dropout!r}")
    if not spec.bias:
        raise ValueError("the scalar MLP's neurons always have a bias; spec.bias must be True, got False")
    # rng only fills weights that are overwritten below.
    activation = spec.activations or "relu"                  # a linear model has no hidden activation
    mlp = MLP(spec.in_features, spec.hidden_features, spec.out_features, activation=activation,
              rng=random.Random(0))
    shapes = spec.linear_shapes()
    missing, unexpected = sorted(set(shapes) - set(state)), sorted(set(state) - set(shapes))
    if missing or unexpected:
        raise CheckpointError(f"weights do not fit this network: missing {missing}, unexpected {unexpected}")
    for name, shape in shapes.items():
        found = tuple(np.shape(state[name]))
        if found != shape:
            raise CheckpointError(
                f"tensor {name!r} has shape {found} in the weights but {shape} in the network"
            )
    for name, values in mlp.named_parameters().items():
        array = np.asarray(state[name], dtype=np.float64)
        flat: list[Value] = [v for row in values for v in row] if array.ndim == 2 else values  # type: ignore[misc]
        for value, number in zip(flat, array.reshape(-1).tolist(), strict=True):
            value.data = number
    return mlp
