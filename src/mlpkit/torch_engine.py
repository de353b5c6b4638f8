"""One spec, two engines: build the torch module an :class:`~mlpkit.spec.MLPSpec` describes, and move
weights between it and the NumPy engine without loss.

Both engines name parameters ``"{layer index}.{weight|bias}"`` (the keys of an ``nn.Sequential``)
and store weights as ``(out, in)`` in files, so a ``model.safetensors`` written by either loads in
the other. Conversions keep the dtype, so float32 -> float32 and float64 -> float64 round trips
are bit-exact. This module is the only place where the engine and the torch blocks meet
(``engine`` and ``blocks`` never import each other).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mlpkit.blocks.mlp import MLP
from mlpkit.errors import CheckpointError
from mlpkit.spec import MLPSpec

__all__ = [
    "build_torch_mlp",
    "engine_to_torch",
    "load_state_arrays",
    "load_torch_weights",
    "save_torch_weights",
    "state_arrays",
    "torch_to_engine",
]

_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}


def build_torch_mlp(
    spec: MLPSpec,
    *,
    rng: np.random.Generator | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> MLP:
    """Build the torch :class:`~mlpkit.blocks.mlp.MLP` that ``spec`` describes, on the CPU.

    Parameters
    ----------
    spec : MLPSpec
        Sizes, activations, dropout, initializer.
    rng : numpy.random.Generator or None
        When given, the weights are drawn with NumPy in the engine's order, so the module equals
        ``mlpkit.engine.build_mlp(spec, rng=<same seed>, dtype=<same dtype>)`` parameter for
        parameter (each dtype draws its own numbers: NumPy's float32 samplers for float32).
    generator : torch.Generator or None
        When ``rng`` is None, the torch generator the weights are drawn from (same laws; torch's
        default generator when None).
    dtype : torch.float32 or torch.float64

    Returns
    -------
    MLP
        Parameter names and shapes equal ``spec.linear_shapes()``. The trainer moves it to a device.

    Examples
    --------
    >>> import numpy as np, torch
    >>> net = build_torch_mlp(MLPSpec(784, (256,), 10), rng=np.random.default_rng(0))
    >>> net(torch.zeros(1, 784)).shape
    torch.Size([1, 10])
    """
    if dtype not in _NUMPY_DTYPES:
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    module = MLP(
        spec.in_features,
        spec.hidden_features,
        spec.out_features,
        act_layer=spec.activations,
        dropout=spec.dropouts,
        bias=spec.bias,
    ).to(dtype)
    if rng is None:
        return module.init_weights(spec.init, std=spec.init_std, generator=generator)
    from mlpkit.engine.init import initialize

    follows = (*spec.activations, "identity")
    linears = [m for m in module if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for linear, act in zip(linears, follows, strict=True):
            weight = initialize(
                spec.init,
                tuple(linear.weight.shape),
                rng,
                std=spec.init_std,
                nonlinearity=act,
                dtype=_NUMPY_DTYPES[dtype],
                order="F",
            )  # (H, D), drawn as build_mlp draws it: in the module's dtype, column-major
            linear.weight.copy_(torch.from_numpy(weight))    # copy_ takes any strides
            if linear.bias is not None:
                linear.bias.zero_()
    return module


def state_arrays(module: nn.Module) -> dict[str, np.ndarray]:
    """Copies of a module's ``state_dict`` as NumPy arrays, same names, shapes and dtypes.

    Examples
    --------
    >>> {k: v.shape for k, v in state_arrays(nn.Linear(3, 2)).items()}
    {'weight': (2, 3), 'bias': (2,)}
    """
    return {name: t.detach().cpu().numpy().copy() for name, t in module.state_dict().items()}


def load_state_arrays(module: nn.Module, state: Mapping[str, np.ndarray | torch.Tensor]) -> None:
    """Copy arrays (or tensors) into ``module``, checking every name and shape first (all or nothing).

    Values are cast to the module's dtype and device.

    Raises
    ------
    CheckpointError
        Listing missing and unexpected tensors, or naming the first tensor whose shape differs,
        with both shapes.
    """
    own = module.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"weights do not fit this model: missing {missing}, unexpected {unexpected}")
    for name, target in own.items():
        shape = tuple(state[name].shape)
        if shape != tuple(target.shape):
            raise CheckpointError(
                f"tensor {name!r} has shape {shape} in the weights but {tuple(target.shape)} in the model"
            )
    with torch.no_grad():
        for name, target in own.items():
            value = state[name]
            source = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.asarray(value))
            target.copy_(source)


def engine_to_torch(network: object, module: nn.Module) -> None:
    """Copy a NumPy engine network's parameters into a torch module (same names, exact).

    Parameters
    ----------
    network : mlpkit.engine.Sequential
    module : nn.Module
        E.g. from :func:`build_torch_mlp` with the same spec.
    """
    load_state_arrays(module, network.state_dict())  # type: ignore[attr-defined]


def torch_to_engine(module: nn.Module, network: object) -> None:
    """Copy a torch module's parameters into a NumPy engine network (same names, exact)."""
    network.load_state_dict(state_arrays(module))  # type: ignore[attr-defined]


def save_torch_weights(
    module: nn.Module, path: str | Path, *, metadata: Mapping[str, str] | None = None
) -> Path:
    """Write the module's ``state_dict`` to a safetensors file atomically; the engine reads it too.

    Returns
    -------
    Path
        ``path``.
    """
    from safetensors.numpy import save_file

    from mlpkit._io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(state_arrays(module), str(tmp), metadata=dict(metadata or {}))
    return path


def load_torch_weights(module: nn.Module, path: str | Path) -> dict[str, str]:
    """Load a safetensors weights file (either engine's) into ``module``; return its metadata.

    Nothing is unpickled: safetensors is a JSON header and raw little-endian bytes.

    Raises
    ------
    CheckpointError
        If the file is missing, unreadable, truncated, or does not fit the module (the message
        names the tensor and both shapes); the module is unchanged then.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no weights file at {path}")
    try:
        with safe_open(str(path), framework="numpy") as f:
            metadata = dict(f.metadata() or {})
            state = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (no __iter__)
    except Exception as exc:  # safetensors raises SafetensorError, a bare Exception subclass
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    load_state_arrays(module, state)
    return metadata
