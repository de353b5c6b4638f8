"""Activation layers by name, the same names the NumPy engine and :class:`~mlpkit.spec.MLPSpec` use.

``act_layer`` arguments accept a name (``"relu"``) or a module class (``nn.ReLU``); a name that is
not registered raises :class:`~mlpkit.errors.ConfigError` listing the valid names (timm's
``_ACT_LAYER_DEFAULT[name]`` gives a bare ``KeyError`` instead). Every default matches the engine:
LeakyReLU slope 0.01 and exact (erf) GELU, as ``torch.nn``.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from mlpkit.errors import ConfigError

__all__ = ["ACT_LAYERS", "GATE_ACT_LAYERS", "GELUTanh", "get_act_layer", "make_activation"]

ACT_LAYERS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "identity": nn.Identity,
}
"""Registered activations; the keys equal :data:`mlpkit.spec.ACTIVATION_NAMES`."""


class GELUTanh(nn.GELU):
    """GELU with the tanh approximation (Hendrycks & Gimpel 2016, sec. 2), the gate of GeGLU as
    Gemma's ``gelu_pytorch_tanh`` computes it; the NumPy engine has no counterpart, so it is
    registered for gated blocks only (:data:`GATE_ACT_LAYERS`)."""

    def __init__(self) -> None:
        super().__init__(approximate="tanh")


GATE_ACT_LAYERS: dict[str, type[nn.Module]] = {**ACT_LAYERS, "gelu_tanh": GELUTanh}
"""Activations a gated block may put on its gate: the registry plus ``"gelu_tanh"`` (Shazeer 2020's
GeGLU with the tanh GELU). SwiGLU is ``"silu"``, GeGLU ``"gelu"``, ReGLU ``"relu"``."""


def get_act_layer(
    act_layer: str | type[nn.Module], *, registry: Mapping[str, type[nn.Module]] = ACT_LAYERS
) -> type[nn.Module]:
    """Return the activation class for a name, or the class itself when given one.

    Parameters
    ----------
    act_layer : str or type of nn.Module
        A key of ``registry`` or an ``nn.Module`` subclass.
    registry : mapping of str to nn.Module class
        The names to accept: :data:`ACT_LAYERS`, or :data:`GATE_ACT_LAYERS` for a gate.

    Returns
    -------
    type of nn.Module

    Raises
    ------
    ConfigError
        ``activation must be one of [...], got 'swish'`` for an unknown name, and a similar
        message for anything that is neither a name nor a module class.

    Examples
    --------
    >>> get_act_layer("gelu")
    <class 'torch.nn.modules.activation.GELU'>
    """
    if isinstance(act_layer, str):
        if act_layer not in registry:
            raise ConfigError(f"activation must be one of {sorted(registry)}, got {act_layer!r}")
        return registry[act_layer]
    if isinstance(act_layer, type) and issubclass(act_layer, nn.Module):
        return act_layer
    raise ConfigError(
        f"activation must be one of {sorted(registry)} or an nn.Module class, got {act_layer!r}"
    )


def make_activation(act_layer: str | type[nn.Module]) -> nn.Module:
    """A new activation module by name or class, with its default arguments.

    Examples
    --------
    >>> import torch
    >>> make_activation("relu")(torch.tensor([[-1.0, 2.0]])).shape
    torch.Size([1, 2])
    """
    return get_act_layer(act_layer)()
