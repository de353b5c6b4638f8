"""The Markdown report of a run: what was trained, how each epoch went, and how it ended.

:func:`render_report` is a pure function from the run's numbers to Markdown text; the caller
writes the file (atomically) and the figures it links to.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["render_report"]

# Per-epoch columns of the report, in order: (record key, header).
_EPOCH_COLUMNS = (
    ("epoch", "epoch"),
    ("train_loss", "train loss"),
    ("train_accuracy", "train acc"),
    ("val_loss", "val loss"),
    ("val_accuracy", "val acc"),
    ("lr", "lr"),
    ("seconds", "seconds"),
)


def _cell(value: Any) -> str:
    """One table cell: floats to 4 significant digits, None as an em dash, pipes escaped."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else "—"
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v) for v in value) if value else "(none)"
    return str(value).replace("|", "\\|")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table; floats to 4 significant digits, None and NaN as a dash.

    Examples
    --------
    >>> print(markdown_table(["a", "b"], [[1, 0.123456]]))
    | a | b |
    |---|---|
    | 1 | 0.1235 |
    """
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def render_report(
    *,
    title: str,
    config: Mapping[str, Mapping[str, Any]],
    records: Sequence[Mapping[str, Any]],
    summary: Mapping[str, Any],
    confusion: np.ndarray | None,
    class_names: Sequence[str],
    figures: Mapping[str, str],
) -> str:
    """Render a run as Markdown.

    Parameters
    ----------
    title : str
        Heading, e.g. the run directory's name.
    config : mapping of section -> mapping
        The run configuration as written to ``config.json``.
    records : sequence of mapping
        Per-epoch records (``epoch``, ``train_loss``, ``train_accuracy``, ``val_loss``,
        ``val_accuracy``, ``lr``, ``seconds``).
    summary : mapping
        The contents of ``summary.json``; the keys present are listed under "Result".
    confusion : ndarray of shape (C, C) or None
        Test confusion matrix, rows true class and columns predicted class.
    class_names : sequence of str
        The C class names.
    figures : mapping of str -> str
        Caption -> relative path of each PNG to embed.

    Returns
    -------
    str
        The Markdown document, ending in a newline.

    Examples
    --------
    >>> text = render_report(title="demo", config={"optim": {"lr": 0.1}}, records=[],
    ...                      summary={"test_accuracy": 0.5}, confusion=None, class_names=[], figures={})
    >>> text.splitlines()[0]
    '# mlpkit run: demo'
    """
    lines = [f"# mlpkit run: {title}", ""]

    lines += ["## Result", ""]
    lines.append(markdown_table(["", "value"], [(key, value) for key, value in summary.items()]))
    lines.append("")

    for caption, target in figures.items():
        lines += [f"![{caption}]({target})", ""]

    lines += ["## Configuration", ""]
    lines.append(
        markdown_table(
            ["section", "key", "value"],
            [(section, key, value) for section, values in config.items() for key, value in values.items()],
        )
    )
    lines.append("")

    lines += ["## Epochs", ""]
    if records:
        best = summary.get("best_epoch")
        rows = []
        for record in records:
            row = [record.get(key) for key, _ in _EPOCH_COLUMNS]
            if record.get("epoch") == best:
                row[0] = f"**{row[0]}** (best)"
            rows.append(row)
        lines.append(markdown_table([header for _, header in _EPOCH_COLUMNS], rows))
    else:
        lines.append("No epoch finished.")
    lines.append("")

    if confusion is not None:
        confusion = np.asarray(confusion)
        lines += ["## Test confusion matrix", "", "Rows are true classes, columns predicted classes.", ""]
        header = ["true \\ predicted", *(_cell(name) for name in class_names)]
        rows = [(name, *map(int, row)) for name, row in zip(class_names, confusion, strict=True)]
        lines.append(markdown_table(header, rows))
        lines.append("")

    return "\n".join(lines)
