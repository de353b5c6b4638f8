"""A network is a :class:`Sequential` of layers; :func:`build_mlp` makes one from an MLPSpec.

Parameter names are ``"{layer index}.{weight|bias}"``, exactly the keys of the ``state_dict`` of a
``torch.nn.Sequential`` with the same layers, and :meth:`Sequential.state_dict` gives weights in
torch's ``(out, in)`` layout, so ``model.safetensors`` files move between the engines unchanged.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from mlpkit.engine.activations import ReLU, get_activation
from mlpkit.engine.init import initialize
from mlpkit.engine.layers import Dropout, Layer, Linear, Parameter
from mlpkit.errors import CheckpointError
from mlpkit.spec import MLPSpec


class Sequential(Layer):
    """Layers applied in order; ``backward`` runs them in reverse.

    Parameters
    ----------
    *layers : Layer
        The layers, first to last.
    """

    def __init__(self, *layers: Layer) -> None:
        self.layers = list(layers)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """x (B, D) -> logits (B, C)."""
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        """dL/dlogits (B, C) -> dL/dx (B, D), filling every parameter's grad."""
        for layer in reversed(self.layers):
            grad_out = layer.backward(grad_out)
        return grad_out

    def backward_params(self, grad_out: np.ndarray) -> None:
        """Like :meth:`backward` but skips dL/dx of the first layer: one GEMM in three saved.

        Training never needs the gradient with respect to the data, and for the classic
        784-256-10 network that product is the largest one of the backward pass.
        """
        first, *rest = self.layers
        for layer in reversed(rest):
            grad_out = layer.backward(grad_out)
        if isinstance(first, Linear):
            first.backward_params(grad_out)
        else:
            first.backward(grad_out)

    def named_parameters(self) -> dict[str, Parameter]:
        """Every parameter under its shared name, e.g. ``{"0.weight": ..., "0.bias": ...}``."""
        return {
            f"{index}.{name}": param
            for index, layer in enumerate(self.layers)
            for name, param in layer.parameters().items()
        }

    def parameters(self) -> dict[str, Parameter]:
        return self.named_parameters()

    def train(self, mode: bool = True) -> None:
        self.training = mode
        for layer in self.layers:
            layer.train(mode)

    def eval(self) -> None:
        """Evaluation mode: dropout off."""
        self.train(False)

    @property
    def dtype(self) -> np.dtype:
        """The parameters' dtype (float32 unless built otherwise)."""
        return next(iter(self.named_parameters().values())).data.dtype

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every parameter by shared name, weights as ``(out, in)`` like torch."""
        return {name: to_file_layout(p.data).copy() for name, p in self.named_parameters().items()}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Copy arrays into the parameters, checking names and shapes first (all or nothing).

        Raises
        ------
        CheckpointError
            Naming each missing or unexpected tensor, or the first mismatched tensor with both shapes.
        """
        own = self.named_parameters()
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if missing or unexpected:
            raise CheckpointError(
                f"weights do not fit this network: missing {missing}, unexpected {unexpected}"
            )
        for name, param in own.items():
            expected = to_file_layout(param.data).shape
            if tuple(state[name].shape) != expected:
                raise CheckpointError(
                    f"tensor {name!r} has shape {tuple(state[name].shape)} in the weights "
                    f"but {expected} in the network"
                )
        for name, param in own.items():
            to_file_layout(param.data)[...] = state[name]

    def __repr__(self) -> str:
        inner = "".join(f"\n  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential({inner}\n)"


def to_file_layout(array: np.ndarray) -> np.ndarray:
    """A view in torch's layout: Linear weights (D, H) -> (H, D); vectors unchanged."""
    return array.T if array.ndim == 2 else array


def build_mlp(spec: MLPSpec, *, rng: np.random.Generator, dtype: np.dtype | type = np.float32) -> Sequential:
    """Build the NumPy network described by ``spec``.

    Parameters
    ----------
    spec : MLPSpec
        Sizes, activations, dropout and initializer.
    rng : numpy.random.Generator
        Draws the initial weights, then the dropout masks.
    dtype : float32 or float64
        Parameter dtype; float64 is what the gradient checks use.

    Examples
    --------
    >>> import numpy as np
    >>> net = build_mlp(MLPSpec(784, (256,), 10), rng=np.random.default_rng(0))
    >>> net.forward(np.zeros((1, 784), dtype=np.float32)).shape
    (1, 10)
    >>> sorted(net.named_parameters())
    ['0.bias', '0.weight', '2.bias', '2.weight']
    """
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    widths = (spec.in_features, *spec.hidden_features, spec.out_features)
    # The last layer feeds a loss, not an activation: Glorot/He gains use the linear gain 1 there.
    follows = (*spec.activations, "identity")
    layers: list[Layer] = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
        # (H, D) as torch stores it, drawn in the network's dtype and in column-major order: its
        # transpose is the C-contiguous (D, H) Linear keeps, so no copy is made. torch_engine draws
        # the same way, so one seed gives the same network in both engines.
        weight = initialize(
            spec.init, (fan_out, fan_in), rng, std=spec.init_std, nonlinearity=follows[i], dtype=dtype,
            order="F",
        )
        layers.append(Linear(fan_in, fan_out, weight=weight.T, bias=spec.bias))
        if i < len(spec.hidden_features):
            act = get_activation(spec.activations[i])
            if isinstance(act, ReLU):
                act.inplace = True                           # its input is the fresh Linear output
            layers.append(act)
            if spec.dropouts[i] > 0:
                layers.append(Dropout(spec.dropouts[i], rng=rng))
    return Sequential(*layers)


def save_weights(network: Sequential, path: str | Path, *, metadata: Mapping[str, str] | None = None) -> None:
    """Write the parameters to a safetensors file, atomically (temp file, fsync, rename)."""
    from safetensors.numpy import save_file

    from mlpkit._io import atomic_path

    with atomic_path(Path(path)) as tmp:
        save_file(network.state_dict(), str(tmp), metadata=dict(metadata or {}))


def load_weights(network: Sequential, path: str | Path) -> dict[str, str]:
    """Load a safetensors file into ``network`` (no pickle involved); return its metadata.

    Raises
    ------
    CheckpointError
        If the file is missing, not a safetensors file, truncated, or does not fit the network.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no weights file at {path}")
    try:
        with safe_open(str(path), framework="numpy") as f:
            metadata = dict(f.metadata() or {})
            state = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except (OSError, ValueError, RuntimeError, Exception) as exc:  # safetensors raises SafetensorError
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    network.load_state_dict(state)
    return metadata
