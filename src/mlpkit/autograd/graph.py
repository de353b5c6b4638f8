"""A Value's computation graph as Graphviz DOT text, and rendered to SVG or PNG when Graphviz is there.

Each Value is a box ``label | data | grad``; each operation is an oval between its inputs and its
result, so the picture reads left to right the way the forward pass ran and right to left the
way ``backward()`` sends gradients. The DOT language: https://graphviz.org/doc/info/lang.html.

:func:`to_dot` needs nothing; :func:`render` needs the ``graphviz`` Python package (and the
Graphviz ``dot`` program it calls), which mlpkit does not depend on.
"""

from __future__ import annotations

import os
from pathlib import Path

from mlpkit._checks import check_choice
from mlpkit._io import atomic_write_bytes
from mlpkit._optional import require
from mlpkit.autograd.value import Value, topological_order
from mlpkit.errors import MissingDependencyError

__all__ = ["render", "to_dot"]

RENDER_FORMATS = ("png", "svg")


def _escape(text: str) -> str:
    """Escape the characters that structure a DOT record label (``{ } | < >``), quotes and backslashes."""
    return "".join("\\" + ch if ch in '{}|<>"\\' else ch for ch in text)


def to_dot(root: Value, *, digits: int = 4) -> str:
    """The graph that computed ``root``, as DOT text (``digraph``), inputs on the left.

    Parameters
    ----------
    root : Value
        Usually a loss; every Value it depends on is drawn once.
    digits : int
        Decimals shown for ``data`` and ``grad``.

    Returns
    -------
    str
        Ready for ``dot -Tsvg`` or :func:`render`.

    Examples
    --------
    >>> a = Value(2.0, label="a")
    >>> print(to_dot((a * a).tanh(), digits=2))
    digraph autograd {
      rankdir=LR;
      node [fontname="Helvetica", fontsize=10];
      v0 [shape=record, label="{a | data 2.00 | grad 0.00}"];
      v1 [shape=record, label="{ | data 4.00 | grad 0.00}"];
      v1_op [shape=ellipse, label="*"];
      v1_op -> v1;
      v0 -> v1_op;
      v0 -> v1_op;
      v2 [shape=record, label="{ | data 1.00 | grad 0.00}"];
      v2_op [shape=ellipse, label="tanh"];
      v2_op -> v2;
      v1 -> v2_op;
    }
    """
    if not isinstance(root, Value):
        raise TypeError(f"to_dot() needs a Value, got {type(root).__name__} {root!r}")
    order = topological_order(root)
    ids = {node: f"v{i}" for i, node in enumerate(order)}
    lines = ["digraph autograd {", "  rankdir=LR;", '  node [fontname="Helvetica", fontsize=10];']
    for node in order:
        name = ids[node]
        label = f"{{{_escape(node.label)} | data {node.data:.{digits}f} | grad {node.grad:.{digits}f}}}"
        lines.append(f'  {name} [shape=record, label="{label}"];')
        if node.parents:
            lines.append(f'  {name}_op [shape=ellipse, label="{_escape(node.op)}"];')
            lines.append(f"  {name}_op -> {name};")
            # One edge per operand, so x * x shows two arrows from x.
            lines += [f"  {ids[parent]} -> {name}_op;" for parent in node.parents]
    lines.append("}")
    return "\n".join(lines)


def render(root: Value, path: str | os.PathLike[str], *, fmt: str | None = None, digits: int = 4) -> Path:
    """Draw the graph of ``root`` into ``path`` (SVG or PNG) with Graphviz; needs the ``graphviz`` package.

    Parameters
    ----------
    root : Value
    path : path
        Written atomically.
    fmt : {"svg", "png"}, optional
        Taken from ``path``'s suffix when None.
    digits : int
        As in :func:`to_dot`.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    MissingDependencyError
        Naming the ``graphviz`` Python package when it is not installed, or Graphviz's ``dot``
        program when the package cannot find it.
    ValueError
        For a format other than svg or png.
    """
    path = Path(path)
    fmt = check_choice("fmt", fmt if fmt is not None else path.suffix.lstrip(".").lower(), RENDER_FORMATS)
    graphviz = require("graphviz", feature="rendering an autograd graph")
    try:
        image = graphviz.Source(to_dot(root, digits=digits)).pipe(format=fmt)
    except graphviz.ExecutableNotFound as exc:
        raise MissingDependencyError(
            "rendering an autograd graph needs Graphviz's dot program, which the graphviz package did not "
            f"find ({exc}): install Graphviz, e.g. apt-get install graphviz"
        ) from exc
    return atomic_write_bytes(path, image)
