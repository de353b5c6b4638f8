"""Weight initializers for torch layers, with the NumPy engine's names, conventions and gains.

A weight is ``(fan_out, fan_in)``, torch's ``nn.Linear`` layout; biases start at zero. The gain of
the Xavier and Kaiming variants comes from the activation that *follows* the layer, and the last
layer (which feeds the loss) uses the linear gain 1, exactly as :func:`mlpkit.engine.build_mlp`.
Note that this is not ``nn.Linear``'s own default (Kaiming uniform with ``a = sqrt(5)``).

These draw from torch's generator. To get the *same numbers* as a NumPy network built from one
seed, use :func:`mlpkit.torch_engine.build_torch_mlp` with ``rng=``, which draws with NumPy.
(Blocks never import the engine: the two meet only in :mod:`mlpkit.torch_engine`.)
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mlpkit._checks import check_positive_float
from mlpkit.errors import ConfigError

__all__ = ["INIT_NAMES", "calculate_gain", "init_linear_", "init_weight_"]

INIT_NAMES = ("normal", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal")
"""The initializer names, equal to :data:`mlpkit.spec.INIT_NAMES`."""


def calculate_gain(nonlinearity: str, negative_slope: float = 0.01) -> float:
    """The gain that keeps activation variance steady through ``nonlinearity``.

    ReLU: sqrt(2) (He et al., ICCV 2015, eq. 10); leaky ReLU: sqrt(2 / (1 + a²)); tanh: 5/3;
    every other name 1 (the values of ``torch.nn.init.calculate_gain``, extended to GELU/SiLU
    with 1 as the engine does).

    Examples
    --------
    >>> round(calculate_gain("relu"), 6)
    1.414214
    """
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        return math.sqrt(2.0 / (1 + negative_slope**2))
    if nonlinearity == "tanh":
        return 5.0 / 3.0
    return 1.0


@torch.no_grad()
def init_weight_(
    weight: torch.Tensor,
    init: str = "normal",
    *,
    std: float = 0.01,
    nonlinearity: str = "relu",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Fill a ``(fan_out, fan_in)`` weight in place with the named initializer; return it.

    Parameters
    ----------
    weight : Tensor of shape (H, D)
    init : {"normal", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal"}
        ``normal`` is N(0, std²); Xavier: Glorot & Bengio, AISTATS 2010, eq. 16, U(−a, a) with
        a = gain · sqrt(6 / (fan_in + fan_out)), or N(0, gain² · 2 / (fan_in + fan_out)); Kaiming:
        He et al., ICCV 2015, fan_in mode, U(−b, b) with b = gain · sqrt(3 / fan_in), or
        N(0, gain² / fan_in).
    std : float
        Standard deviation for ``"normal"``.
    nonlinearity : str
        The activation after the layer, which sets the gain (``"identity"`` for the output layer).
    generator : torch.Generator or None
        Source of randomness; torch's default generator when None.

    Returns
    -------
    Tensor of shape (H, D), the same object.

    Raises
    ------
    ConfigError
        For an unknown ``init`` name (the message lists the valid ones).

    Examples
    --------
    >>> init_weight_(torch.empty(3, 4), "xavier_uniform").shape
    torch.Size([3, 4])
    """
    if init not in INIT_NAMES:
        raise ConfigError(f"init must be one of {sorted(INIT_NAMES)}, got {init!r}")
    if weight.ndim != 2:
        raise ValueError(f"weight must be 2-D (fan_out, fan_in), got shape {tuple(weight.shape)}")
    fan_out, fan_in = weight.shape
    if init == "normal":
        return weight.normal_(0.0, check_positive_float("std", std), generator=generator)
    gain = calculate_gain(nonlinearity)
    if init == "xavier_uniform":
        bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
        return weight.uniform_(-bound, bound, generator=generator)
    if init == "xavier_normal":
        return weight.normal_(0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), generator=generator)
    if init == "kaiming_uniform":
        bound = gain * math.sqrt(3.0 / fan_in)
        return weight.uniform_(-bound, bound, generator=generator)
    return weight.normal_(0.0, gain / math.sqrt(fan_in), generator=generator)


def init_linear_(
    linear: nn.Linear,
    init: str = "normal",
    *,
    std: float = 0.01,
    nonlinearity: str = "relu",
    generator: torch.Generator | None = None,
) -> nn.Linear:
    """Initialize a Linear layer's weight with :func:`init_weight_` and zero its bias; return it.

    Examples
    --------
    >>> init_linear_(nn.Linear(4, 3), "kaiming_normal").weight.shape
    torch.Size([3, 4])
    """
    init_weight_(linear.weight, init, std=std, nonlinearity=nonlinearity, generator=generator)
    if linear.bias is not None:
        with torch.no_grad():
            linear.bias.zero_()
    return linear
