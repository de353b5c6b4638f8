"""Activation functions and their derivatives, as the engine computes them.

Zhang et al., *Dive into Deep Learning* (d2l), sec. 5.1 "Multilayer Perceptrons" plots ReLU,
sigmoid and tanh with their derivatives; here every hidden activation of the engine is drawn:
ReLU; leaky ReLU (Maas, Hannun, Ng, 2013); sigmoid; tanh; GELU (Hendrycks & Gimpel, 2016,
arXiv:1606.08415); SiLU (Elfwing, Uchibe, Doya, 2018; Ramachandran, Zoph, Le, 2017).

Nothing is written twice: each curve is the engine layer's own ``forward(x)``, and each derivative
is that layer's ``backward(ones)``, the vector-Jacobian product with a vector of ones, which for
an elementwise function is its derivative at every point. What is drawn is therefore what
training uses, and central differences of the drawn curve reproduce the drawn derivative (the
tests check it).

Leaky ReLU is drawn with slope 0.1 on the negative side, where the engine's default of 0.01
(torch's) would be indistinguishable from ReLU at this scale.

JSON keys: ``study``, ``config`` (``x_min``, ``x_max``, ``num_points``, ``negative_slope``,
``seed``, ``quick``), ``x`` (the grid) and ``activations``, a list of {``name``, ``label``,
``y``, ``dy``}.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mlpkit._checks import check_positive_int
from mlpkit.engine.activations import GELU, LeakyReLU, ReLU, Sigmoid, SiLU, Tanh
from mlpkit.engine.layers import Layer
from mlpkit.experiments._common import new_figure, prepare_out_dir, style_axes, write_study

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["ActivationCurve", "ActivationsResult", "activation_curves", "plot_activations", "run_activations"]

NAME = "activations"
LEAKY_SLOPE = 0.1


def _layers(negative_slope: float) -> dict[str, tuple[str, Callable[[], Layer]]]:
    """Name -> (label, factory) for every hidden activation of the engine."""
    return {
        "relu": ("ReLU", ReLU),
        "leaky_relu": (
            f"LeakyReLU (slope {negative_slope:g})",
            lambda: LeakyReLU(negative_slope=negative_slope),
        ),
        "sigmoid": ("Sigmoid", Sigmoid),
        "tanh": ("Tanh", Tanh),
        "gelu": ("GELU", GELU),
        "silu": ("SiLU", SiLU),
    }


ACTIVATION_NAMES = tuple(_layers(LEAKY_SLOPE))


@dataclass(frozen=True)
class ActivationCurve:
    """One activation on the grid.

    Parameters
    ----------
    name, label : str
    y : list of float
        ``layer.forward(x)``.
    dy : list of float
        ``layer.backward(ones)``: dy/dx at each grid point.
    """

    name: str
    label: str
    y: list[float]
    dy: list[float]


@dataclass(frozen=True)
class ActivationsResult:
    """The numbers behind the activations figure.

    Parameters
    ----------
    x : list of float
        The grid.
    curves : list of ActivationCurve
    negative_slope : float
        Leaky ReLU's slope.
    """

    x: list[float]
    curves: list[ActivationCurve]
    negative_slope: float

    def curve(self, name: str) -> ActivationCurve:
        """The curve of one activation."""
        for curve in self.curves:
            if curve.name == name:
                return curve
        raise KeyError(f"no activation {name!r}; have {[c.name for c in self.curves]}")


def activation_curves(
    *,
    names: Sequence[str] = ACTIVATION_NAMES,
    x_min: float = -4.0,
    x_max: float = 4.0,
    num_points: int = 801,
    negative_slope: float = LEAKY_SLOPE,
) -> ActivationsResult:
    """Each activation and its derivative on a uniform float64 grid, from the engine layers.

    Parameters
    ----------
    names : sequence of str
        A subset of ``ACTIVATION_NAMES``.
    x_min, x_max : float
        The grid's ends.
    num_points : int
        Grid size; the default puts a point exactly on every multiple of 0.01, 0 included.
    negative_slope : float
        Leaky ReLU's slope.

    Returns
    -------
    ActivationsResult

    Examples
    --------
    >>> r = activation_curves(names=("relu",), x_min=-1.0, x_max=1.0, num_points=5)
    >>> r.curve("relu").y, r.curve("relu").dy
    ([0.0, 0.0, 0.0, 0.5, 1.0], [0.0, 0.0, 0.0, 1.0, 1.0])
    """
    check_positive_int("num_points", num_points)
    if not x_min < x_max:
        raise ValueError(f"x_min must be below x_max, got x_min={x_min!r}, x_max={x_max!r}")
    layers = _layers(negative_slope)
    unknown = sorted(set(names) - set(layers))
    if unknown:
        raise ValueError(f"names must be among {sorted(layers)}, got {unknown}")
    x = np.linspace(x_min, x_max, num_points)                          # (N,)
    curves = []
    for name in names:
        label, factory = layers[name]
        layer = factory()
        y = layer.forward(x.copy())                                    # a copy: ReLU may work in place
        dy = layer.backward(np.ones_like(x))                           # ones · J = diag(J) = f'(x)
        curves.append(ActivationCurve(name=name, label=label, y=y.tolist(), dy=dy.tolist()))
    return ActivationsResult(x=x.tolist(), curves=curves, negative_slope=negative_slope)


def plot_activations(result: ActivationsResult) -> Figure:
    """One panel per activation: the function (solid) and its derivative (dashed)."""
    cols = 3
    rows = -(-len(result.curves) // cols)
    fig, axes = new_figure(rows, cols, width=4.2 * cols, height=3.3 * rows)
    x = np.asarray(result.x)
    for ax, curve in zip(axes.flat, result.curves, strict=False):
        ax.plot(x, curve.y, color="C0", label="f(x) = forward")
        ax.plot(x, curve.dy, color="C1", ls="--", label="f'(x) = backward(1)")
        ax.axhline(0, color="0.6", lw=0.8)
        ax.axvline(0, color="0.6", lw=0.8)
        style_axes(ax, title=curve.label, xlabel="x", ylabel="")
        ax.legend(fontsize=7, loc="upper left")
    for ax in list(axes.flat)[len(result.curves):]:
        ax.set_visible(False)
    fig.suptitle("Activations and their derivatives, from the engine's forward and backward", fontsize=11)
    return fig


def _summary(result: ActivationsResult) -> str:
    x = np.asarray(result.x)
    zero = int(np.argmin(np.abs(x)))
    lines = [
        "# Activation functions and their derivatives",
        "",
        f"![activations]({NAME}.png)",
        "",
        "Each curve is the engine layer's `forward(x)`; each derivative its `backward(ones)`.",
        "",
        "| activation | f(0) | f'(0) | min f' | max f' |",
        "| --- | --- | --- | --- | --- |",
    ]
    for c in result.curves:
        values = (c.y[zero], c.dy[zero], min(c.dy), max(c.dy))
        lines.append(f"| {c.label} | " + " | ".join(f"{v:.4g}" for v in values) + " |")
    lines += [
        "",
        "The sigmoid's slope never exceeds 1/4, which is why deep sigmoid networks lose gradient",
        "layer after layer (see the `initialization` study). ReLU's derivative is 0 or 1 (0 at x = 0,",
        "as torch); GELU and SiLU are smooth, dip slightly below 0 for negative x, and their slopes",
        "overshoot 1 just right of 0.",
    ]
    return "\n".join(lines)


def run_activations(
    out_dir: Path, *, quick: bool = False, seed: int = 0, data_dir: Path | None = None
) -> Path:
    """Activation functions and their derivatives, from the engine's forward and backward.

    Writes ``activations.png``, ``activations.json`` and ``summary.md``.

    Parameters
    ----------
    out_dir : Path
        Created if needed.
    quick : bool
        201 grid points instead of 801.
    seed : int
        Unused: nothing is random.
    data_dir : Path or None
        Unused: no data.

    Returns
    -------
    Path
        ``out_dir``.
    """
    out_dir = prepare_out_dir(out_dir, study=NAME)
    result = activation_curves(num_points=201 if quick else 801)
    numbers = {
        "study": NAME,
        "config": {
            "x_min": result.x[0],
            "x_max": result.x[-1],
            "num_points": len(result.x),
            "negative_slope": result.negative_slope,
            "seed": seed,
            "quick": quick,
        },
        "x": result.x,
        "activations": [asdict(curve) for curve in result.curves],
    }
    return write_study(
        out_dir, NAME, numbers=numbers, summary=_summary(result), figure=plot_activations(result), quick=quick
    )
