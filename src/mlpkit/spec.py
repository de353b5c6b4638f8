"""The one description of an MLP that both engines build from.

:class:`MLPSpec` says what the network is (sizes, activation per hidden layer, dropout per
hidden layer, initializer); :func:`mlpkit.engine.build_mlp` turns it into a NumPy network and the
torch side turns it into an ``nn.Sequential`` with the same layer order, so parameter names
(``"0.weight"``, ``"0.bias"``, ``"2.weight"``, ...) and shapes (``weight`` is ``(out, in)``) are the
same in both and a ``model.safetensors`` file loads in either. This module imports nothing but
the standard library, so neither engine depends on the other.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from mlpkit._checks import check_choice, check_positive_float, check_positive_int, check_probability

ACTIVATION_NAMES = ("relu", "leaky_relu", "sigmoid", "tanh", "gelu", "silu", "identity")
INIT_NAMES = ("normal", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal")


def _per_layer(name: str, value: object, count: int) -> tuple[Any, ...]:
    """Broadcast one value to ``count`` hidden layers, or check a sequence has ``count`` items."""
    if isinstance(value, str | int | float):
        return (value,) * count
    if isinstance(value, Sequence):
        items = tuple(value)
        if len(items) != count:
            raise ValueError(
                f"{name} must be one value or one per hidden layer ({count}), got {len(items)}: {items!r}"
            )
        return items
    raise ValueError(f"{name} must be a value or a sequence of {count} values, got {value!r}")


@dataclass(frozen=True)
class MLPSpec:
    """A fully connected network: ``Linear -> act -> [Dropout]`` per hidden layer, then ``Linear``.

    Parameters
    ----------
    in_features : int
        Input width D.
    hidden_features : tuple of int
        Width H of each hidden layer, first to last; ``()`` gives a linear model.
    out_features : int
        Output width (C classes, or targets); the network returns logits.
    activation : str or tuple of str
        Activation after each hidden layer, one name for all or one per layer; see
        ``ACTIVATION_NAMES``.
    dropout : float or tuple of float
        Inverted-dropout probability after each hidden activation; 0 adds no layer.
    init : str
        Weight initializer, one of ``INIT_NAMES``; biases start at zero.
    init_std : float
        Standard deviation for ``init="normal"`` (the classic recipe uses 0.01).
    bias : bool
        Whether each Linear layer has a bias.

    Examples
    --------
    >>> spec = MLPSpec(784, (256,), 10)
    >>> spec.layer_names()
    ('linear', 'relu', 'linear')
    """

    in_features: int
    hidden_features: tuple[int, ...] = (256,)
    out_features: int = 10
    activation: str | tuple[str, ...] = "relu"
    dropout: float | tuple[float, ...] = 0.0
    init: str = "normal"
    init_std: float = 0.01
    bias: bool = True

    def __post_init__(self) -> None:
        check_positive_int("in_features", self.in_features)
        check_positive_int("out_features", self.out_features)
        if isinstance(self.hidden_features, str) or not isinstance(self.hidden_features, Sequence):
            raise ValueError(
                "hidden_features must be a sequence of positive ints, e.g. (256,), "
                f"got {self.hidden_features!r}"
            )
        hidden = tuple(self.hidden_features)
        for width in hidden:
            check_positive_int("hidden_features", width)
        object.__setattr__(self, "hidden_features", hidden)
        acts = _per_layer("activation", self.activation, len(hidden))
        for act in acts:
            check_choice("activation", act, ACTIVATION_NAMES)
        drops = _per_layer("dropout", self.dropout, len(hidden))
        for p in drops:
            check_probability("dropout", p)
        check_choice("init", self.init, INIT_NAMES)
        check_positive_float("init_std", self.init_std)
        if isinstance(self.activation, Sequence) and not isinstance(self.activation, str):
            object.__setattr__(self, "activation", acts)
        if isinstance(self.dropout, Sequence):
            object.__setattr__(self, "dropout", tuple(float(p) for p in drops))

    @property
    def activations(self) -> tuple[str, ...]:
        """The activation name of each hidden layer."""
        return _per_layer("activation", self.activation, len(self.hidden_features))

    @property
    def dropouts(self) -> tuple[float, ...]:
        """The dropout probability of each hidden layer."""
        return tuple(float(p) for p in _per_layer("dropout", self.dropout, len(self.hidden_features)))

    def layer_names(self) -> tuple[str, ...]:
        """The layer sequence both engines build, e.g. ``('linear', 'relu', 'dropout', 'linear')``."""
        names: list[str] = []
        for act, p in zip(self.activations, self.dropouts, strict=True):
            names += ["linear", act]
            if p > 0:
                names.append("dropout")
        names.append("linear")
        return tuple(names)

    def linear_shapes(self) -> dict[str, tuple[int, ...]]:
        """Parameter name -> shape, in the shared naming (``"{index}.weight"`` is ``(out, in)``)."""
        widths = (self.in_features, *self.hidden_features, self.out_features)
        shapes: dict[str, tuple[int, ...]] = {}
        linear = 0
        for index, name in enumerate(self.layer_names()):
            if name == "linear":
                fan_in, fan_out = widths[linear], widths[linear + 1]
                shapes[f"{index}.weight"] = (fan_out, fan_in)
                if self.bias:
                    shapes[f"{index}.bias"] = (fan_out,)
                linear += 1
        return shapes

    @property
    def num_parameters(self) -> int:
        """Trainable scalars: the sum over Linear layers of ``fan_in * fan_out`` (+ ``fan_out`` biases).

        Examples
        --------
        >>> MLPSpec(784, hidden_features=(256,), out_features=10).num_parameters  # 784*256+256 + 256*10+10
        203530
        """
        return sum(math.prod(shape) for shape in self.linear_shapes().values())

    def describe(self) -> str:
        """One line for people: widths, activations and dropout.

        Examples
        --------
        >>> MLPSpec(784, hidden_features=(512, 256), out_features=10, dropout=0.2).describe()
        '784-512-256-10 MLP (relu, dropout 0.2)'
        """
        widths = "-".join(str(w) for w in (self.in_features, *self.hidden_features, self.out_features))
        if not self.hidden_features:
            return f"{widths} linear model"
        acts = sorted(set(self.activations), key=self.activations.index)
        parts = [",".join(acts) if len(acts) > 1 else acts[0]]
        if any(self.dropouts):
            shown = self.dropouts[:1] if len(set(self.dropouts)) == 1 else self.dropouts
            parts.append("dropout " + ",".join(f"{p:g}" for p in shown))
        return f"{widths} MLP ({', '.join(parts)})"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists) that :meth:`from_dict` reads back."""
        raw = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in raw.items()}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> MLPSpec:
        """Build a spec from a mapping, rejecting unknown keys with the list of valid ones."""
        valid = {f.name for f in fields(cls)}
        if unknown := sorted(set(raw) - valid):
            raise ValueError(f"unknown MLPSpec key(s) {unknown}; valid keys: {sorted(valid)}")
        values = dict(raw)
        for key in ("hidden_features", "activation", "dropout"):
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        return cls(**values)
