"""Multilayer perceptron blocks: :class:`MLP` and the gated (SwiGLU) :class:`GatedMLP`.

Both share one signature (STYLE rule 3), so a consumer can take the class as ``mlp_layer``.

- :class:`MLP` is ``Linear -> [norm] -> act -> [Dropout]`` per hidden width, then ``Linear``.
  It is an ``nn.Sequential``, so without a norm layer its parameter names (``"0.weight"``,
  ``"0.bias"``, ``"2.weight"``, ...) are exactly those of :class:`mlpkit.spec.MLPSpec` and of the
  NumPy engine, and a ``model.safetensors`` file loads in either engine.
- :class:`GatedMLP` is the feed-forward network of LLaMA (Touvron et al. 2023,
  https://arxiv.org/abs/2302.13971, sec. 2, "SwiGLU activation function"), from Shazeer 2020,
  "GLU Variants Improve Transformer" (https://arxiv.org/abs/2002.05202, eq. 6 without biases):
  ``FFN(x) = W2 (SiLU(W1 x) ⊙ W3 x)``. Deviations: several gated units may be stacked (one per
  hidden width), a norm and dropout may follow each product, and ``hidden_features`` is the
  width itself, rounded up to ``multiple_of`` (LLaMA's code also scales a given width by 2/3
  first; pass the scaled width yourself to reproduce that). Only the split layout (separate
  ``gate`` and ``up`` matrices, LLaMA's ``w1`` and ``w3``) is provided.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mlpkit._checks import check_positive_int, check_probability
from mlpkit.blocks.activations import ACT_LAYERS, get_act_layer
from mlpkit.blocks.init import init_linear_

__all__ = ["MLP", "GatedMLP", "GatedUnit"]

ActLayer = str | type[nn.Module]


def _widths(hidden_features: object) -> tuple[int, ...]:
    if isinstance(hidden_features, str | bytes) or not isinstance(hidden_features, Sequence):
        raise ValueError(f"hidden_features must be a sequence of positive ints, got {hidden_features!r}")
    return tuple(check_positive_int("hidden_features", h) for h in hidden_features)


def _per_layer(name: str, value: object, count: int) -> tuple[object, ...]:
    """One value for every hidden layer, or a sequence with one value per hidden layer."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        items = tuple(value)
        if len(items) != count:
            raise ValueError(
                f"{name} must be one value or one per hidden layer ({count}), got {len(items)}: {items!r}"
            )
        return items
    return (value,) * count


def _act_name(act: type[nn.Module]) -> str:
    """The registered name of an activation class (for its init gain), ``"identity"`` if unknown."""
    for name, cls in ACT_LAYERS.items():
        if cls is act:
            return name
    return "identity"


class MLP(nn.Sequential):
    """``Linear -> [norm] -> act -> [Dropout]`` per hidden width, then an output ``Linear``.

    Parameters
    ----------
    in_features : int
        Input width D.
    hidden_features : sequence of int
        Width H of each hidden layer; ``()`` gives a single Linear layer.
    out_features : int or None
        Output width (C logits); ``None`` means ``in_features``, as timm's ``Mlp``.
    act_layer : str, nn.Module class, or a sequence of them
        Activation after each hidden layer, one for all or one per layer (see
        :data:`~mlpkit.blocks.activations.ACT_LAYERS`).
    norm_layer : nn.Module class or None
        Called with the width (e.g. ``nn.LayerNorm``, ``nn.BatchNorm1d``); placed between each
        hidden Linear and its activation.
    dropout : float or sequence of float
        Dropout probability after each hidden activation, one for all or one per layer; 0 adds
        no layer, so the parameter names stay those of :class:`~mlpkit.spec.MLPSpec`.
    bias : bool
        Whether the Linear layers have biases.

    Examples
    --------
    >>> import torch
    >>> net = MLP(784, (256,), 10)
    >>> [name for name, _ in net.named_parameters()]
    ['0.weight', '0.bias', '2.weight', '2.bias']
    >>> net(torch.randn(1, 784)).shape
    torch.Size([1, 10])
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: Sequence[int] = (256,),
        out_features: int | None = None,
        *,
        act_layer: ActLayer | Sequence[ActLayer] = "relu",
        norm_layer: type[nn.Module] | None = None,
        dropout: float | Sequence[float] = 0.0,
        bias: bool = True,
    ) -> None:
        in_features = check_positive_int("in_features", in_features)
        hidden = _widths(hidden_features)
        out_features = (
            in_features if out_features is None else check_positive_int("out_features", out_features)
        )
        acts = [get_act_layer(a) for a in _per_layer("act_layer", act_layer, len(hidden))]  # type: ignore[arg-type]
        drops = [check_probability("dropout", p) for p in _per_layer("dropout", dropout, len(hidden))]
        layers: list[nn.Module] = []
        width = in_features
        for h, act, p in zip(hidden, acts, drops, strict=True):
            layers.append(nn.Linear(width, h, bias=bias))
            if norm_layer is not None:
                layers.append(norm_layer(h))
            layers.append(act())
            if p > 0:
                layers.append(nn.Dropout(p))
            width = h
        layers.append(nn.Linear(width, out_features, bias=bias))
        super().__init__(*layers)
        self.in_features, self.hidden_features, self.out_features = in_features, hidden, out_features
        self._act_names = tuple(_act_name(a) for a in acts)

    def forward(self, x: Tensor) -> Tensor:
        """Map inputs to logits.

        Parameters
        ----------
        x : Tensor of shape (B, D)

        Returns
        -------
        Tensor of shape (B, out_features)
        """
        for layer in self:
            x = layer(x)  # (B, H) per hidden layer, (B, C) at the end
        return x

    def init_weights(
        self, init: str = "normal", *, std: float = 0.01, generator: torch.Generator | None = None
    ) -> MLP:
        """Re-draw every Linear weight with the engine's initializer, zero the biases; return self.

        Each layer's gain comes from the activation that follows it (linear gain 1 for the output
        layer), as :func:`mlpkit.engine.build_mlp`.

        Examples
        --------
        >>> MLP(4, (8,), 2).init_weights("kaiming_uniform")[0].weight.shape
        torch.Size([8, 4])
        """
        follows = (*self._act_names, "identity")
        linears = [m for m in self if isinstance(m, nn.Linear)]
        for linear, act in zip(linears, follows, strict=True):
            init_linear_(linear, init, std=std, nonlinearity=act, generator=generator)
        return self


def _round_up(width: int, multiple_of: int) -> int:
    # LLaMA's model.py: hidden_dim = multiple_of * ((hidden_dim + multiple_of - 1) // multiple_of)
    return multiple_of * ((width + multiple_of - 1) // multiple_of)


class GatedUnit(nn.Module):
    """One SwiGLU unit: ``h = act(gate(x)) * up(x)``, then ``[norm]`` and ``[Dropout]``.

    Parameters
    ----------
    in_features, hidden_features : int
        D and H.
    act_layer : str or nn.Module class
    norm_layer : nn.Module class or None
    dropout : float
    bias : bool
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        act_layer: ActLayer = "silu",
        norm_layer: type[nn.Module] | None = None,
        dropout: float = 0.0,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.gate = nn.Linear(in_features, hidden_features, bias=bias)  # LLaMA's w1
        self.up = nn.Linear(in_features, hidden_features, bias=bias)  # LLaMA's w3
        self.act = get_act_layer(act_layer)()
        self.norm = norm_layer(hidden_features) if norm_layer is not None else nn.Identity()
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """x (B, D) -> (B, H)."""
        h = self.act(self.gate(x)) * self.up(x)  # (B, H)
        return self.drop(self.norm(h))


class GatedMLP(nn.Module):
    """Stack of SwiGLU units, ``h = act(gate(h)) * up(h)`` per hidden width, then ``fc_out``.

    ``hidden_features=(H,)`` with ``out_features=D`` is exactly the LLaMA feed-forward
    ``w2(silu(w1(x)) * w3(x))``.

    Parameters
    ----------
    in_features : int
        Input width D.
    hidden_features : sequence of int
        Width of each gated unit, each rounded up to a multiple of ``multiple_of``.
    out_features : int or None
        Output width; ``None`` means ``in_features``.
    act_layer : str, nn.Module class, or a sequence of them
        The gate's activation (SiLU for SwiGLU, GELU for GEGLU), one for all or one per unit.
    norm_layer : nn.Module class or None
        Applied to each unit's product, called with its width.
    dropout : float or sequence of float
        Dropout after each unit.
    bias : bool
        Whether the Linear layers have biases (LLaMA: no).
    multiple_of : int
        Round every hidden width up to a multiple of this (LLaMA uses 256).

    Examples
    --------
    >>> import torch
    >>> ffn = GatedMLP(8, (20,), multiple_of=16)
    >>> ffn.hidden_features
    (32,)
    >>> ffn(torch.randn(1, 8)).shape
    torch.Size([1, 8])
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: Sequence[int] = (256,),
        out_features: int | None = None,
        *,
        act_layer: ActLayer | Sequence[ActLayer] = "silu",
        norm_layer: type[nn.Module] | None = None,
        dropout: float | Sequence[float] = 0.0,
        bias: bool = False,
        multiple_of: int = 1,
    ) -> None:
        super().__init__()
        in_features = check_positive_int("in_features", in_features)
        multiple_of = check_positive_int("multiple_of", multiple_of)
        hidden = tuple(_round_up(h, multiple_of) for h in _widths(hidden_features))
        out_features = (
            in_features if out_features is None else check_positive_int("out_features", out_features)
        )
        acts = _per_layer("act_layer", act_layer, len(hidden))
        drops = [check_probability("dropout", p) for p in _per_layer("dropout", dropout, len(hidden))]
        units: list[nn.Module] = []
        width = in_features
        for h, act, p in zip(hidden, acts, drops, strict=True):
            units.append(GatedUnit(width, h, act_layer=act, norm_layer=norm_layer, dropout=p, bias=bias))  # type: ignore[arg-type]
            width = h
        self.units = nn.ModuleList(units)
        self.fc_out = nn.Linear(width, out_features, bias=bias)  # LLaMA's w2
        self.in_features, self.hidden_features, self.out_features = in_features, hidden, out_features

    def forward(self, x: Tensor) -> Tensor:
        """Map inputs to outputs.

        Parameters
        ----------
        x : Tensor of shape (B, D)

        Returns
        -------
        Tensor of shape (B, out_features)
        """
        for unit in self.units:
            x = unit(x)  # (B, H)
        return self.fc_out(x)  # (B, out_features)
