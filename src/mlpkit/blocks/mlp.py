"""Multilayer perceptron blocks: :class:`MLP`, LLaMA's gated :class:`GatedMLP`, and :class:`StackedGatedMLP`.

All share one signature family (STYLE rule 3), so a consumer can take the class as ``mlp_layer``.

- :class:`MLP` is ``Linear -> [norm] -> act -> [Dropout]`` per hidden width, then ``Linear``.
  It is an ``nn.Sequential``, so without a norm layer its parameter names (``"0.weight"``,
  ``"0.bias"``, ``"2.weight"``, ...) are exactly those of :class:`mlpkit.spec.MLPSpec` and of the
  NumPy engine, and a ``model.safetensors`` file loads in either engine.
- :class:`GatedMLP` is the feed-forward network of LLaMA (Touvron et al. 2023,
  https://arxiv.org/abs/2302.13971, sec. 2, "SwiGLU activation function"), from Shazeer 2020,
  "GLU Variants Improve Transformer" (https://arxiv.org/abs/2002.05202, eq. 6 without biases):
  ``FFN(x) = W2 (act(W1 x) ⊙ W3 x)``, written as Hugging Face's ``LlamaMLP`` writes it,
  ``down_proj(act(gate_proj(x)) * up_proj(x))``, with its state-dict keys, so its weights and the
  ``model.layers.N.mlp.*`` tensors of a LLaMA safetensors checkpoint (:func:`load_llama_mlp`)
  load unchanged. Deviations from the paper: optional biases (``mlp_bias`` in Hugging Face's
  config) and optional dropout on the gated product; ``hidden_features`` is the width itself
  (LLaMA's code derives it as 2/3 of 4·D rounded up to a multiple of 256; pass the result).
- :class:`StackedGatedMLP` stacks several gated units (one per hidden width, each optionally
  followed by a norm and dropout), the gated counterpart of :class:`MLP`'s hidden widths. Its
  names (``units.0.gate.weight``, ``fc_out.weight``) are not a checkpoint format anyone ships.

Tensor parallelism for :class:`GatedMLP` lives in :mod:`mlpkit.blocks.parallel`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlpkit._checks import check_choice, check_nonnegative_int, check_positive_int, check_probability
from mlpkit.blocks.activations import ACT_LAYERS, GATE_ACT_LAYERS, get_act_layer
from mlpkit.blocks.dropout import Dropout, relu_dropout_
from mlpkit.blocks.init import init_linear_
from mlpkit.errors import CheckpointError

__all__ = [
    "LAYOUTS",
    "MLP",
    "GatedMLP",
    "GatedUnit",
    "StackedGatedMLP",
    "load_llama_mlp",
    "pack_gate_up",
    "read_llama_mlp",
    "split_gate_up",
]
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


_IN_PLACE_ACTS = (nn.ReLU, nn.LeakyReLU)
"""Activations whose in-place form keeps what their backward reads (their output)."""


def new_act(act: type[nn.Module]) -> nn.Module:
    """An activation layer after a Linear or norm layer: in place where :data:`_IN_PLACE_ACTS` allows."""
    return act(inplace=True) if act in _IN_PLACE_ACTS else act()


def run_layers(layers: nn.Sequential, x: Tensor) -> Tensor:
    """``layers`` in turn on ``x``; in training on the CPU, a ReLU and the Dropout after it as one
    autograd node (:func:`~mlpkit.blocks.dropout.relu_dropout_`). The forward of :class:`MLP` and of
    the towers built from its layers."""
    modules = list(layers)
    fuse = layers.training and x.device.type == "cpu"
    i = 0
    while i < len(modules):
        if fuse and _relu_then_dropout(modules, i):
            x = relu_dropout_(x, modules[i + 1].p)  # both layers as one node
            i += 2
        else:
            x = modules[i](x)
            i += 1
    return x


def _relu_then_dropout(layers: list[nn.Module], i: int) -> bool:
    """Whether ``layers[i]`` is a ReLU followed by a training Dropout that :func:`relu_dropout_` can
    run as one (neither has hooks, which a fused call would skip)."""
    if i + 1 >= len(layers) or type(layers[i]) is not nn.ReLU or type(layers[i + 1]) is not Dropout:
        return False
    drop = layers[i + 1]
    hooked = any(m._forward_hooks or m._forward_pre_hooks for m in (layers[i], drop))
    return drop.training and 0.0 < drop.p < 1.0 and not hooked


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
            # In place where the activation allows it: the output of a Linear or a norm layer is
            # not needed by its own backward, and a (4096, 400) activation written afresh costs
            # new pages (autograd refuses loudly if a layer's backward ever did need it).
            layers.append(new_act(act))
            if p > 0:
                layers.append(Dropout(p))
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
        return run_layers(self, x)  # (B, H) per hidden layer, (B, C) at the end

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
    """One gated unit: ``h = act(gate(x)) * up(x)``, then ``[norm]`` and ``[Dropout]``.

    Parameters
    ----------
    in_features, hidden_features : int
        D and H.
    act_layer : str or nn.Module class
        A name of :data:`~mlpkit.blocks.activations.GATE_ACT_LAYERS` or a class.
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
        self.act = get_act_layer(act_layer, registry=GATE_ACT_LAYERS)()
        self.norm = norm_layer(hidden_features) if norm_layer is not None else nn.Identity()
        self.drop = Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """x (B, D) -> (B, H)."""
        h = self.act(self.gate(x)) * self.up(x)  # (B, H)
        return self.drop(self.norm(h))


class StackedGatedMLP(nn.Module):
    """A stack of gated units, ``h = act(gate(h)) * up(h)`` per hidden width, then ``fc_out``.

    The gated counterpart of :class:`MLP` with several hidden widths, each unit optionally
    followed by a norm and dropout. With one width it computes what :class:`GatedMLP` computes,
    under other parameter names (``units.0.gate.weight``, ``units.0.up.weight``,
    ``fc_out.weight``); to load LLaMA weights use :class:`GatedMLP`.

    Parameters
    ----------
    in_features : int
        Input width D.
    hidden_features : sequence of int
        Width of each gated unit, each rounded up to a multiple of ``multiple_of``.
    out_features : int or None
        Output width; ``None`` means ``in_features``.
    act_layer : str, nn.Module class, or a sequence of them
        The gate's activation (SiLU for SwiGLU, GELU for GeGLU), one for all or one per unit.
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
    >>> ffn = StackedGatedMLP(8, (20, 12), multiple_of=16)
    >>> ffn.hidden_features
    (32, 16)
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


# -- LLaMA's gated MLP ------------------------------------------------------------------------

LAYOUTS = ("split", "packed")
"""How :class:`GatedMLP` holds the gate and up projections: two matrices, or one packed matrix."""

_PROJECTIONS = ("gate_proj", "up_proj", "down_proj")


def _one_width(hidden_features: object) -> int:
    """The gated width: an int, or a one-element sequence so that a caller can swap in :class:`MLP`."""
    if isinstance(hidden_features, Sequence) and not isinstance(hidden_features, str | bytes):
        if len(hidden_features) != 1:
            raise ValueError(
                f"hidden_features must be one positive int (or a sequence of one), got {hidden_features!r}"
            )
        hidden_features = hidden_features[0]
    return check_positive_int("hidden_features", hidden_features)


def _size_mismatch(key: str, got: Sequence[int], expected: Sequence[int]) -> str:
    # torch's own wording for nn.Linear, so both layouts report a bad tensor alike.
    return (
        f"size mismatch for {key}: copying a param with shape {torch.Size(got)} from checkpoint, "
        f"the shape in current model is {torch.Size(expected)}."
    )


def pack_gate_up(state: Mapping[str, Tensor], prefix: str = "") -> dict[str, Tensor]:
    """A split-layout state dict in the packed layout: ``gate_up_proj = cat([gate_proj, up_proj])``.

    Parameters
    ----------
    state : mapping of str to Tensor
        ``gate_proj.weight`` (I, D), ``up_proj.weight`` (I, D) (and their (I,) biases) under ``prefix``;
        every other key is kept as it is.
    prefix : str
        What precedes the names, e.g. ``"model.layers.0.mlp."``.

    Returns
    -------
    dict of str to Tensor
        ``gate_up_proj.weight`` of shape (2I, D), rows ``[0, I)`` the gate and ``[I, 2I)`` the up projection.

    Examples
    --------
    >>> packed = pack_gate_up({"gate_proj.weight": torch.zeros(3, 2), "up_proj.weight": torch.ones(3, 2)})
    >>> packed["gate_up_proj.weight"].shape
    torch.Size([6, 2])
    """
    out = dict(state)
    for kind in ("weight", "bias"):
        gate, up = f"{prefix}gate_proj.{kind}", f"{prefix}up_proj.{kind}"
        if gate in out and up in out:
            out[f"{prefix}gate_up_proj.{kind}"] = torch.cat([out.pop(gate), out.pop(up)])
    return out


def split_gate_up(state: Mapping[str, Tensor], prefix: str = "") -> dict[str, Tensor]:
    """A packed-layout state dict in the split layout: the inverse of :func:`pack_gate_up`.

    ``gate_up_proj.weight`` (2I, D) becomes ``gate_proj.weight`` (its first I rows) and
    ``up_proj.weight`` (its last I rows); biases alike. The halves are views, not copies.

    Raises
    ------
    CheckpointError
        If ``gate_up_proj`` has an odd number of rows.

    Examples
    --------
    >>> state = split_gate_up({"gate_up_proj.weight": torch.arange(8.0).reshape(4, 2)})
    >>> state["up_proj.weight"]
    tensor([[4., 5.],
            [6., 7.]])
    """
    out = dict(state)
    for kind in ("weight", "bias"):
        key = f"{prefix}gate_up_proj.{kind}"
        if key not in out:
            continue
        packed = out.pop(key)
        if packed.shape[0] % 2:
            raise CheckpointError(
                f"{key} must have an even number of rows (gate, then up), got {tuple(packed.shape)}"
            )
        out[f"{prefix}gate_proj.{kind}"], out[f"{prefix}up_proj.{kind}"] = packed.chunk(2)
    return out


class GatedMLP(nn.Module):
    """LLaMA's feed-forward ``down_proj(act(gate_proj(x)) * up_proj(x))``; state-dict keys equal
    Hugging Face's ``LlamaMLP`` (``gate_proj.weight``, ``up_proj.weight``, ``down_proj.weight``).

    With the defaults (SiLU, no bias) it is SwiGLU (Shazeer 2020, eq. 6 without biases; Touvron et
    al. 2023, sec. 2); ``act_layer="gelu"`` or ``"gelu_tanh"`` gives GeGLU, ``"relu"`` ReGLU.

    Two layouts compute the same function from the same weights:

    - ``"split"`` holds three ``nn.Linear`` modules named as in ``LlamaMLP``: ``gate_proj`` (I, D),
      ``up_proj`` (I, D), ``down_proj`` (O, I). Code that finds these modules by name (adapters
      such as LoRA) works unchanged; the computation is ``LlamaMLP``'s.
    - ``"packed"`` holds the gate and up projections as one matrix and multiplies the input by it
      once. In the state dict it is ``gate_up_proj.weight`` of shape (2I, D), **rows [0, I) the
      gate and rows [I, 2I) the up projection** (the order of Phi-3's ``gate_up_proj`` and vLLM's
      merged projection; GPT-OSS interleaves the two instead, so convert such weights first).
      In memory both weights are stored transposed, ``gate_up_weight`` (D, 2I) and
      ``down_weight`` (I, O), and multiplied as ``x @ W``: with one token, torch's CPU kernels
      stream a (D, 2I) matrix about 1.3x as fast as the (2I, D) one that ``F.linear`` reads
      (below: the packed (2I, D) weight under ``F.linear`` was no faster than ``LlamaMLP``). The
      state dict still holds Hugging Face's names and shapes (transposed copies), and
      ``load_state_dict`` transposes back.

    ``load_state_dict`` takes either layout's keys in either layout (a packed ``gate_up_proj``
    is split into halves, split ``gate_proj``/``up_proj`` are packed), so a ``LlamaMLP``'s weights
    load into both; :meth:`to_layout` converts a module losslessly.

    Which layout to run (``benchmarks/gated_mlp.py``: float32, D = 1024, I = 2816, input
    (1, T, D), on a shared 2-core AMD EPYC; ``LlamaMLP``'s time over ours, the median of ratios
    within interleaved rounds; ``split`` runs ``LlamaMLP``'s own operations, so its column shows
    how level the comparison is)::

        tokens  pass                1 thread         2 threads
                                    split  packed    split  packed
        1       forward              1.03    1.33     0.99    1.31
        1       forward+backward     1.00    0.98     0.99    0.98
        16      forward              1.00    0.90     1.01    0.85
        16      forward+backward     1.00    1.03     1.00    0.99
        512     forward              1.00    0.97     1.01    0.97
        512     forward+backward     1.00    0.99     1.01    0.99

    Decoding a token at a time, use ``"packed"``: the pass is a stream over the 35 MB of weights,
    which it reads at 15-17 GB/s against ``LlamaMLP``'s 12-13 GB/s (a plain copy moves 22-32 GB/s
    here). From 16 tokens on, use ``"split"``: packed is 10-15% slower at 16 tokens forward and
    level or 3% behind at 512, where split runs at 98-99% of the same rounds' 2048³ GEMM rate
    (94.6% forward+backward with two threads). A run with two threads on a loaded machine had put
    packed ahead at 16 and 512 tokens; the quiet run above did not confirm it.

    ``forward(x, tp_slices=k)`` is the ``pretraining_tp`` computation of Hugging Face's LLaMA
    code: the gate and up weights are cut into k row blocks and the down weight into k column
    blocks, each block is applied with its own ``F.linear``, the gate and up parts are
    concatenated, and the k down products are summed in order. It equals the unsliced result up
    to float rounding. Unlike that branch, the biases are applied (gate and up biases sliced with
    their rows, the down bias added once to the sum), and an I that k does not divide is an error
    (the branch would silently drop the last I mod k hidden units).

    Parameters
    ----------
    in_features : int
        Input width D (``hidden_size``).
    hidden_features : int or sequence of one int
        The gated width I (``intermediate_size``); a one-element sequence is accepted so that a
        caller can swap this class for :class:`MLP`.
    out_features : int or None
        Output width O; ``None`` means ``in_features``, as in LLaMA.
    act_layer : str or nn.Module class
        The gate's activation: a name of :data:`~mlpkit.blocks.activations.GATE_ACT_LAYERS`
        (``"silu"``, ``"gelu"``, ``"gelu_tanh"``, ``"relu"``, ...) or a class.
    dropout : float
        Dropout on the gated product ``act(gate) * up`` (I wide) in training; LLaMA has none.
    bias : bool
        Biases on the three projections (``mlp_bias`` in Hugging Face's config; LLaMA: no).
    layout : {"split", "packed"}
        See above.

    Attributes
    ----------
    gate_proj, up_proj, down_proj : nn.Linear
        The split layout's projections: weights (I, D), (I, D), (O, I), biases (I,), (I,), (O,).
    gate_up_weight : Parameter of shape (D, 2I)
        The packed layout's gate (columns [0, I)) and up (columns [I, 2I)) projections, transposed;
        ``gate_up_bias`` of shape (2I,) or None.
    down_weight : Parameter of shape (I, O)
        The packed layout's down projection, transposed; ``down_bias`` of shape (O,) or None.
    act_fn : nn.Module
        The gate's activation, named as in ``LlamaMLP``.

    Examples
    --------
    >>> import torch
    >>> ffn = GatedMLP(8, 12)
    >>> list(ffn.state_dict())
    ['gate_proj.weight', 'up_proj.weight', 'down_proj.weight']
    >>> packed = ffn.to_layout("packed")
    >>> list(packed.state_dict()), tuple(packed.state_dict()["gate_up_proj.weight"].shape)
    (['gate_up_proj.weight', 'down_proj.weight'], (24, 8))
    >>> torch.allclose(packed(torch.ones(1, 8)), ffn(torch.ones(1, 8)))
    True
    >>> ffn(torch.randn(1, 5, 8)).shape
    torch.Size([1, 5, 8])
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int | Sequence[int] = 256,
        out_features: int | None = None,
        *,
        act_layer: ActLayer = "silu",
        dropout: float = 0.0,
        bias: bool = False,
        layout: str = "split",
    ) -> None:
        super().__init__()
        d = check_positive_int("in_features", in_features)
        i = _one_width(hidden_features)
        o = d if out_features is None else check_positive_int("out_features", out_features)
        self.layout = check_choice("layout", layout, LAYOUTS)
        act = get_act_layer(act_layer, registry=GATE_ACT_LAYERS)
        p = check_probability("dropout", dropout)
        self.in_features, self.hidden_features, self.out_features, self.bias = d, i, o, bool(bias)
        if self.layout == "split":
            self.gate_proj = nn.Linear(d, i, bias=bias)  # LLaMA's w1
            self.up_proj = nn.Linear(d, i, bias=bias)  # LLaMA's w3
            self.down_proj = nn.Linear(i, o, bias=bias)  # LLaMA's w2
        else:
            self.gate_up_weight = nn.Parameter(torch.empty(d, 2 * i))
            self.register_parameter("gate_up_bias", nn.Parameter(torch.empty(2 * i)) if bias else None)
            self.down_weight = nn.Parameter(torch.empty(i, o))
            self.register_parameter("down_bias", nn.Parameter(torch.empty(o)) if bias else None)
            self.reset_parameters()
        self.act_fn = act()
        self.drop = Dropout(p) if p > 0 else nn.Identity()

    def reset_parameters(self) -> None:
        """Draw the weights as ``nn.Linear`` does: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), biases alike."""
        if self.layout == "split":
            for linear in (self.gate_proj, self.up_proj, self.down_proj):
                linear.reset_parameters()
            return
        # nn.Linear's kaiming_uniform_(a=sqrt(5)) bound is gain·sqrt(3/fan_in) = sqrt(1/3)·sqrt(3/fan_in).
        for weight, bias, fan_in in (
            (self.gate_up_weight, self.gate_up_bias, self.in_features),
            (self.down_weight, self.down_bias, self.hidden_features),
        ):
            bound = fan_in**-0.5
            nn.init.uniform_(weight, -bound, bound)
            if bias is not None:
                nn.init.uniform_(bias, -bound, bound)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, hidden_features={self.hidden_features}, "
            f"out_features={self.out_features}, bias={self.bias}, layout={self.layout!r}"
        )

    # -- computing --------------------------------------------------------------------------

    def forward(self, x: Tensor, *, tp_slices: int = 1) -> Tensor:
        """Apply the gated MLP to the last axis.

        Parameters
        ----------
        x : Tensor of shape (..., D)
            Any leading shape, e.g. (batch, sequence, D) as ``LlamaMLP`` takes it.
        tp_slices : int
            1 for the plain computation; k > 1 for Hugging Face's ``pretraining_tp = k``
            computation (see the class docstring). k must divide I.

        Returns
        -------
        Tensor of shape (..., out_features)
        """
        return self._forward(x, tp_slices, down_bias=True)

    def _forward(self, x: Tensor, tp_slices: int, *, down_bias: bool) -> Tensor:
        """The forward pass; without ``down_bias`` the down projection's bias is left out, so that
        a tensor-parallel shard can add it once, after summing the ranks' partial outputs."""
        if x.shape[-1:] != (self.in_features,):
            raise ValueError(
                f"x must have in_features={self.in_features} values in its last axis, "
                f"got shape {tuple(x.shape)}"
            )
        if tp_slices != 1:
            return self._sliced(x, self._check_tp_slices(tp_slices), down_bias=down_bias)
        if self.layout == "split":
            h = self.act_fn(self.gate_proj(x)) * self.up_proj(x)  # (..., I)
            return F.linear(self.drop(h), self.down_proj.weight, self.down_proj.bias if down_bias else None)
        gate_up = x @ self.gate_up_weight  # (..., 2I): one pass over the packed weight
        if self.gate_up_bias is not None:
            gate_up = gate_up + self.gate_up_bias
        gate, up = gate_up.chunk(2, dim=-1)  # (..., I) each: the gate half first
        out = self.drop(self.act_fn(gate) * up) @ self.down_weight  # (..., O)
        if down_bias and self.down_bias is not None:
            out = out + self.down_bias
        return out

    def _check_tp_slices(self, tp_slices: int) -> int:
        k = check_positive_int("tp_slices", tp_slices)
        if self.hidden_features % k:
            raise ValueError(
                f"tp_slices {k} must divide hidden_features {self.hidden_features}: Hugging Face's "
                f"pretraining_tp code cuts I into {k} slices of I // {k} = {self.hidden_features // k} and "
                f"would silently drop the last {self.hidden_features % k} hidden unit(s)"
            )
        return k

    def _sliced(self, x: Tensor, k: int, *, down_bias: bool) -> Tensor:
        """The ``pretraining_tp = k`` computation: k row blocks of gate and up, k column blocks of down."""
        w = self.hf_tensors()
        step = self.hidden_features // k
        blocks = [slice(j * step, (j + 1) * step) for j in range(k)]

        def column_parallel(name: str) -> Tensor:
            weight, bias = w[f"{name}.weight"], w.get(f"{name}.bias")  # (I, D), (I,)
            parts = [F.linear(x, weight[b], None if bias is None else bias[b]) for b in blocks]  # (..., I/k)
            return torch.cat(parts, dim=-1)  # (..., I)

        h = self.drop(self.act_fn(column_parallel("gate_proj")) * column_parallel("up_proj"))  # (..., I)
        pieces = h.split(step, dim=-1)  # k of (..., I/k); the reference splits dim 2 (3-D inputs only)
        down = w["down_proj.weight"]  # (O, I)
        out = F.linear(pieces[0], down[:, blocks[0]])  # (..., O)
        for piece, b in zip(pieces[1:], blocks[1:], strict=True):
            out = out + F.linear(piece, down[:, b])  # left to right, the order of the reference's sum()
        if down_bias and (bias := w.get("down_proj.bias")) is not None:
            out = out + bias  # once: the reference drops it, and adding it per slice would count it k times
        return out

    # -- weights in Hugging Face's names and shapes ----------------------------------------

    def hf_tensors(self) -> dict[str, Tensor]:
        """The weights under ``LlamaMLP``'s split names and shapes, as views of the parameters.

        Returns
        -------
        dict of str to Tensor
            ``gate_proj.weight`` (I, D), ``up_proj.weight`` (I, D), ``down_proj.weight`` (O, I), and
            with ``bias`` the (I,), (I,), (O,) biases. Views: no copy, and gradients flow through them.
        """
        if self.layout == "split":
            return {
                f"{name}.{kind}": getattr(getattr(self, name), kind)
                for name in _PROJECTIONS
                for kind in ("weight", "bias")
                if getattr(getattr(self, name), kind) is not None
            }
        i = self.hidden_features
        out = {
            "gate_proj.weight": self.gate_up_weight[:, :i].t(),
            "up_proj.weight": self.gate_up_weight[:, i:].t(),
            "down_proj.weight": self.down_weight.t(),
        }
        if self.gate_up_bias is not None and self.down_bias is not None:
            out |= {
                "gate_proj.bias": self.gate_up_bias[:i],
                "up_proj.bias": self.gate_up_bias[i:],
                "down_proj.bias": self.down_bias,
            }
        return out

    def to_layout(self, layout: str) -> GatedMLP:
        """A new module with the same weights (copied exactly) in ``layout``; dtype and device kept.

        Examples
        --------
        >>> split = GatedMLP(4, 6).to_layout("packed").to_layout("split")
        >>> split.gate_proj.weight.shape
        torch.Size([6, 4])
        """
        weight = self.hf_tensors()["down_proj.weight"]
        twin = GatedMLP(
            self.in_features,
            self.hidden_features,
            self.out_features,
            act_layer=type(self.act_fn),
            dropout=self.drop.p if isinstance(self.drop, nn.Dropout) else 0.0,
            bias=self.bias,
            layout=layout,
        ).to(device=weight.device, dtype=weight.dtype)
        twin.load_state_dict(self.state_dict())
        return twin.train(self.training)

    def _expected_shapes(self) -> dict[str, tuple[int, ...]]:
        d, i, o = self.in_features, self.hidden_features, self.out_features
        shapes: dict[str, tuple[int, ...]] = {
            "gate_proj.weight": (i, d), "up_proj.weight": (i, d), "gate_up_proj.weight": (2 * i, d),
            "down_proj.weight": (o, i),
        }
        if self.bias:
            shapes |= {"gate_proj.bias": (i,), "up_proj.bias": (i,), "gate_up_proj.bias": (2 * i,),
                       "down_proj.bias": (o,)}
        return shapes

    def _save_to_state_dict(self, destination: dict[str, Any], prefix: str, keep_vars: bool) -> None:
        if self.layout == "split":  # the Linear children save themselves under LlamaMLP's names
            super()._save_to_state_dict(destination, prefix, keep_vars)
            return

        def saved(t: Tensor) -> Tensor:
            return t if keep_vars else t.detach()

        # Hugging Face's (out, in) shapes; contiguous, so that safetensors can write them.
        destination[prefix + "gate_up_proj.weight"] = saved(self.gate_up_weight).t().contiguous()
        if self.gate_up_bias is not None:
            destination[prefix + "gate_up_proj.bias"] = saved(self.gate_up_bias)
        destination[prefix + "down_proj.weight"] = saved(self.down_weight).t().contiguous()
        if self.down_bias is not None:
            destination[prefix + "down_proj.bias"] = saved(self.down_bias)

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        shapes = self._expected_shapes()
        i = self.hidden_features
        if self.layout == "split":
            # A packed gate_up_proj becomes the two halves the Linear children then load.
            for kind in ("weight", "bias"):
                key = f"{prefix}gate_up_proj.{kind}"
                if key not in state_dict:
                    continue
                packed = state_dict.pop(key)
                if f"gate_up_proj.{kind}" not in shapes:
                    unexpected_keys.append(key)
                elif tuple(packed.shape) != shapes[f"gate_up_proj.{kind}"]:
                    error_msgs.append(_size_mismatch(key, packed.shape, shapes[f"gate_up_proj.{kind}"]))
                else:
                    state_dict[f"{prefix}gate_proj.{kind}"] = packed[:i]
                    state_dict[f"{prefix}up_proj.{kind}"] = packed[i:]
            super()._load_from_state_dict(
                state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
            )
            return
        ours = ("gate_proj", "up_proj", "gate_up_proj", "down_proj")
        found = {}
        for key in list(state_dict):
            if key.startswith(prefix):
                name = key[len(prefix):]
                if name.split(".", 1)[0] in ours:
                    found[name] = state_dict.pop(key)
                elif name.split(".", 1)[0] not in self._modules:
                    unexpected_keys.append(key)

        def take(name: str) -> Tensor | None:
            if name not in found:
                missing_keys.append(prefix + name)
                return None
            tensor = found.pop(name)
            if tuple(tensor.shape) != shapes[name]:
                error_msgs.append(_size_mismatch(prefix + name, tensor.shape, shapes[name]))
                return None
            return tensor

        targets = [("weight", self.gate_up_weight, self.down_weight)]
        if self.gate_up_bias is not None and self.down_bias is not None:
            targets.append(("bias", self.gate_up_bias, self.down_bias))
        with torch.no_grad():
            for kind, gate_up_param, down_param in targets:
                if f"gate_up_proj.{kind}" in found or f"gate_proj.{kind}" not in found:
                    gate_up = take(f"gate_up_proj.{kind}")
                else:
                    gate, up = take(f"gate_proj.{kind}"), take(f"up_proj.{kind}")
                    gate_up = None if gate is None or up is None else torch.cat([gate, up])
                down = take(f"down_proj.{kind}")
                if gate_up is not None:
                    gate_up_param.copy_(gate_up.t() if kind == "weight" else gate_up)  # (D, 2I) or (2I,)
                if down is not None:
                    down_param.copy_(down.t() if kind == "weight" else down)  # (I, O) or (O,)
        unexpected_keys.extend(prefix + name for name in found)  # e.g. biases for a module without


# -- LLaMA checkpoints ------------------------------------------------------------------------

LLAMA_MLP_PREFIX = "model.layers.{layer}.mlp."
"""Where a Hugging Face LLaMA checkpoint keeps layer N's MLP tensors."""


@contextlib.contextmanager
def _llama_mlp_slices(path: str | Path, layer: int) -> Iterator[dict[str, Any]]:
    """Open a checkpoint and yield layer ``layer``'s MLP tensors as lazy safetensors slices.

    ``path`` is a ``.safetensors`` file or a directory holding ``model.safetensors`` or a sharded
    checkpoint's ``model.safetensors.index.json``. Keys are the names after the prefix
    (``gate_proj.weight``, ...); nothing is read until a slice is indexed, so a tensor-parallel rank
    reads only its own rows.
    """
    from safetensors import safe_open

    path = Path(path)
    layer = check_nonnegative_int("layer", layer)
    prefix = LLAMA_MLP_PREFIX.format(layer=layer)
    if path.is_dir():
        index = path / "model.safetensors.index.json"
        if index.is_file():
            weight_map: dict[str, str] = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            files = {key: path / name for key, name in weight_map.items()}
        elif (path / "model.safetensors").is_file():
            files = {key: path / "model.safetensors" for key in _keys(path / "model.safetensors")}
        else:
            raise CheckpointError(f"{path}: no model.safetensors or model.safetensors.index.json in it")
    elif path.is_file():
        files = {key: path for key in _keys(path)}
    else:
        raise CheckpointError(f"{path}: no such checkpoint file or directory")
    mine = {key[len(prefix):]: file for key, file in files.items() if key.startswith(prefix)}
    if not mine:
        layers = sorted({int(k.split(".")[2]) for k in files if k.startswith("model.layers.") and
                         k.split(".")[2].isdigit() and ".mlp." in k})
        where = f"MLP layers {layers[0]}..{layers[-1]}" if layers else "no model.layers.N.mlp.* tensors"
        raise CheckpointError(f"{path}: no tensors under {prefix}* (the checkpoint has {where})")
    with contextlib.ExitStack() as stack:
        handles = {f: stack.enter_context(safe_open(str(f), framework="pt")) for f in set(mine.values())}
        yield {name: handles[file].get_slice(prefix + name) for name, file in mine.items()}


def _keys(file: Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(file), framework="pt") as handle:
        return list(handle.keys())


def _llama_mlp_sizes(shapes: Mapping[str, Sequence[int]], where: str) -> tuple[int, int, int, bool]:
    """``(D, I, O, bias)`` of a checkpoint's MLP from its tensor shapes; every tensor checked.

    Raises
    ------
    CheckpointError
        If a projection is missing or a tensor's shape disagrees with the others (naming the
        tensor, its shape and the shape the others imply).
    """
    packed = "gate_up_proj.weight" in shapes
    needed = ["gate_up_proj.weight"] if packed else ["gate_proj.weight", "up_proj.weight"]
    for name in [*needed, "down_proj.weight"]:
        if name not in shapes:
            raise CheckpointError(
                f"{where}: no {name} (found {sorted(shapes)}); a LLaMA MLP needs gate_proj.weight and "
                "up_proj.weight (or one packed gate_up_proj.weight) and down_proj.weight"
            )
    first = tuple(shapes[needed[0]])
    if len(first) != 2 or (packed and first[0] % 2):
        raise CheckpointError(f"{where}: {needed[0]} has shape {first}, expected a matrix"
                              + (" with an even number of rows (gate, then up)" if packed else ""))
    i, d = (first[0] // 2, first[1]) if packed else first
    o = int(shapes["down_proj.weight"][0])
    bias = any(name.endswith(".bias") for name in shapes)
    expected: dict[str, tuple[int, ...]] = {"down_proj.weight": (o, i)}
    expected |= {"gate_up_proj.weight": (2 * i, d)} if packed else {"up_proj.weight": (i, d)}
    if bias:
        expected |= {"down_proj.bias": (o,)}
        expected |= (
            {"gate_up_proj.bias": (2 * i,)} if packed else {"gate_proj.bias": (i,), "up_proj.bias": (i,)}
        )
    for name, shape in expected.items():
        if name not in shapes:
            raise CheckpointError(
                f"{where}: no {name} (found {sorted(shapes)}), but other projections have biases"
            )
        if tuple(shapes[name]) != shape:
            raise CheckpointError(
                f"{where}: {name} has shape {tuple(shapes[name])}, expected {shape} "
                f"(from {needed[0]} {first} and down_proj.weight {tuple(shapes['down_proj.weight'])})"
            )
    if unknown := sorted(set(shapes) - set(expected) - {needed[0]}):
        raise CheckpointError(f"{where}: unexpected tensors {unknown} beside the MLP's projections")
    return d, i, o, bias


def read_llama_mlp(path: str | Path, layer: int) -> dict[str, Tensor]:
    """Layer ``layer``'s MLP tensors of a Hugging Face LLaMA safetensors checkpoint.

    Parameters
    ----------
    path : str or Path
        A ``.safetensors`` file, or a directory with ``model.safetensors`` or a sharded
        checkpoint's ``model.safetensors.index.json``.
    layer : int
        N in ``model.layers.N.mlp.*``.

    Returns
    -------
    dict of str to Tensor
        The names after the prefix (``gate_proj.weight`` (I, D), ``up_proj.weight`` (I, D),
        ``down_proj.weight`` (O, I), or a packed ``gate_up_proj.weight`` (2I, D); biases if
        present), in the checkpoint's dtype; ready for :meth:`GatedMLP.load_state_dict`.

    Raises
    ------
    CheckpointError
        A missing file or layer, a missing projection (``up_proj``, say), or a tensor whose shape
        disagrees with the others.
    """
    with _llama_mlp_slices(path, layer) as slices:
        _llama_mlp_sizes({name: s.get_shape() for name, s in slices.items()}, f"{path} layer {layer}")
        return {name: s[:] for name, s in slices.items()}


def load_llama_mlp(
    path: str | Path,
    layer: int,
    *,
    layout: str = "split",
    act_layer: ActLayer = "silu",
    dropout: float = 0.0,
    dtype: torch.dtype | None = None,
) -> GatedMLP:
    """A :class:`GatedMLP` holding layer ``layer``'s MLP of a LLaMA safetensors checkpoint.

    The sizes and the bias come from the tensors; ``act_layer`` is the config's ``hidden_act``
    (``"silu"`` for LLaMA). ``dtype`` None keeps the checkpoint's dtype.
    See :func:`read_llama_mlp` for ``path`` and the errors.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from safetensors.torch import save_file
    >>> mlp = GatedMLP(8, 12)
    >>> file = pathlib.Path(tempfile.mkdtemp()) / "model.safetensors"
    >>> save_file({f"model.layers.3.mlp.{k}": v for k, v in mlp.state_dict().items()}, file)
    >>> load_llama_mlp(file, 3, layout="packed").hidden_features
    12
    """
    tensors = read_llama_mlp(path, layer)
    d, i, o, bias = _llama_mlp_sizes({name: t.shape for name, t in tensors.items()}, f"{path} layer {layer}")
    dtype = dtype or tensors["down_proj.weight"].dtype
    mlp = GatedMLP(d, i, o, act_layer=act_layer, dropout=dropout, bias=bias, layout=layout).to(dtype)
    mlp.load_state_dict(tensors)
    return mlp
