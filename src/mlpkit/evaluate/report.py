"""The Markdown report of a run, written for a person: what was trained, how it went, how it scores.

:func:`render_report` is a pure function from the run's numbers to Markdown text; the caller
writes the file (atomically) and the figures it links to. The sections, in order:

1. the title and one paragraph saying what was trained on what data;
2. **Run**: when, from which command line, with which mlpkit and git commit, where, how long;
3. **Result**: the saved weights' test score in words, why training stopped, best against last epoch;
4. **Figures**: the embedded PNGs, in the order given (the learning curves first);
5. **Epochs**: one row per epoch, the best one marked;
6. **Per-class scores**: precision, recall, F1 and support of each class, with macro and weighted means;
7. **Test confusion matrix**;
8. **Configuration**: every setting.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from mlpkit.evaluate.metrics import classification_scores

__all__ = ["markdown_table", "render_ctr_report", "render_report", "render_table_report"]

# Per-epoch columns of the report, in order: (record key, header, format of a finite number).
_EPOCH_COLUMNS = (
    ("epoch", "epoch", "{}".format),
    ("train_loss", "train loss", "{:.4f}".format),
    ("train_accuracy", "train acc %", lambda v: f"{100 * v:.2f}"),
    ("val_loss", "val loss", "{:.4f}".format),
    ("val_accuracy", "val acc %", lambda v: f"{100 * v:.2f}"),
    ("lr", "lr", "{:.4g}".format),
    ("seconds", "seconds", "{:.2f}".format),
)

_ACTIVATIONS = {
    "relu": "ReLU",
    "leaky_relu": "leaky ReLU",
    "sigmoid": "sigmoid",
    "tanh": "tanh",
    "gelu": "GELU",
    "silu": "SiLU",
    "identity": "no activation",
}
_OPTIMIZERS = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}
_ENGINES = {"numpy": "NumPy", "torch": "PyTorch"}
# What each monitored score is called in a sentence, and which way it improves.
_MONITORS = {
    "val_loss": ("validation loss", "lowest"),
    "val_accuracy": ("validation accuracy", "highest"),
    "train_loss": ("training loss", "lowest"),
}
# Default decay factors of the schedules whose ``gamma`` is left unset (see mlpkit.config.OptimConfig).
_DEFAULT_GAMMA = {"step": 0.1, "exponential": 0.95}
# How many of the largest off-diagonal counts the confusion-matrix section names.
_TOP_CONFUSIONS = 3


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


# -- words for numbers -------------------------------------------------------------------------------


def _count(n: int) -> str:
    """An integer with thousands separators: 55000 -> ``55,000``."""
    return f"{n:,}"


def _percent(fraction: float | None) -> str:
    return "—" if fraction is None or not math.isfinite(fraction) else f"{100 * fraction:.2f}%"


def _number(value: float | None, spec: str = "{:.4f}") -> str:
    return "—" if value is None or not math.isfinite(value) else spec.format(value)


def _duration(seconds: float) -> str:
    """``12.9 s``, ``3 min 05 s`` or ``2 h 04 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _article(word: str) -> str:
    """``a`` or ``an`` before ``word``, as it is read aloud: an 8-..., an 11-..., a 784-..., an MLP."""
    head = word.split("-")[0].split(" ")[0]
    if head.isdigit():
        vowel = head.startswith("8") or (head[:2] in ("11", "18") and len(head) % 3 == 2)
    elif head.isalpha() and head.isupper():  # an acronym, spelled out: "em-el-pee"
        vowel = head[0] in "AEFHILMNORSX"
    else:
        vowel = head[:1].lower() in "aeiou"
    return "an" if vowel else "a"


def _join(words: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _per_layer(value: Any) -> list[Any]:
    """A per-layer setting as a list: one value for all layers, or one per layer."""
    return list(value) if isinstance(value, list | tuple) else [value]


# -- the paragraph -----------------------------------------------------------------------------------


def _model_words(
    model: Mapping[str, Any], *, in_features: int | None, num_classes: int, parameters: int | None
) -> str:
    """``A 784-256-10 MLP (ReLU, 203,530 parameters)``; a ViT's patch, width, depth, heads and MLP."""
    if model.get("name") == "vit":
        details = [
            f"{model.get('patch_size')}x{model.get('patch_size')} patches",
            f"dim {model.get('dim')}", f"depth {model.get('depth')}", f"{model.get('heads')} heads",
            f"MLP {model.get('mlp_dim')}", f"{model.get('pool')} pooling",
        ]
        if model.get("dropout"):
            details.append(f"dropout {model['dropout']:g}")
        if parameters is not None:
            details.append(f"{_count(parameters)} parameters")
        return f"A Vision Transformer ({', '.join(details)})"
    hidden = [int(width) for width in model.get("hidden_features", ())]
    # The layer widths from input to classes; without the input width they would read as shifted.
    shape = "-".join(map(str, [in_features, *hidden, num_classes])) if in_features and num_classes else ""
    details = []
    if hidden:
        kind = "MLP" if shape else f"MLP with hidden widths {', '.join(map(str, hidden))}"
        activations = list(dict.fromkeys(_per_layer(model.get("activation", "relu"))))
        details.append(" then ".join(_ACTIVATIONS.get(name, str(name)) for name in activations))
        dropouts = _per_layer(model.get("dropout", 0.0))
        if any(p > 0 for p in dropouts):
            details.append("dropout " + "/".join(f"{p:g}" for p in dropouts))
    else:
        kind = "softmax regression"
    if parameters is not None:
        details.append(f"{_count(parameters)} parameters")
    words = f"{shape} {kind}" if shape else kind
    text = f"{_article(words)} {words}"
    return text[:1].upper() + text[1:] + (f" ({', '.join(details)})" if details else "")


def _optim_words(optim: Mapping[str, Any]) -> str:
    """``SGD (lr 0.1, batch 256)``, with momentum, weight decay, schedule and clipping when set."""
    name = str(optim.get("optimizer", ""))
    details = []
    if optim.get("lr") is not None:
        rate = f"lr {optim['lr']:g}"
        schedule = optim.get("schedule", "constant")
        gamma = optim.get("gamma") or _DEFAULT_GAMMA.get(schedule)
        if schedule == "step":
            rate += f" multiplied by {gamma:g} every {optim.get('step_size')} epochs"
        elif schedule == "exponential":
            rate += f" multiplied by {gamma:g} every epoch"
        elif schedule == "cosine":
            rate += f" annealed to {optim.get('min_lr', 0.0):g} by a cosine schedule"
        elif schedule == "plateau":
            patience = optim.get("schedule_patience")
            after = "each epoch" if patience == 0 else f"{patience} epochs"
            rate += f" multiplied by {optim.get('factor'):g} after {after} without improvement"
        details.append(rate)
    if optim.get("momentum"):
        kind = "Nesterov momentum" if optim.get("nesterov") else "momentum"
        details.append(f"{kind} {optim['momentum']:g}")
    if optim.get("weight_decay"):
        details.append(f"weight decay {optim['weight_decay']:g}")
    if optim.get("batch_size") is not None:
        details.append(f"batch {optim['batch_size']}")
    if optim.get("grad_clip_norm") is not None:
        details.append(f"gradient norm clipped to {optim['grad_clip_norm']:g}")
    text = _OPTIMIZERS.get(name, name)
    return f"{text} ({', '.join(details)})" if details else text


def _summary_paragraph(
    config: Mapping[str, Mapping[str, Any]],
    summary: Mapping[str, Any],
    *,
    in_features: int | None,
    num_classes: int,
    parameters: int | None,
    dataset: str,
) -> str:
    model, optim, data = config.get("model", {}), config.get("optim", {}), config.get("data", {})
    sentence = _model_words(model, in_features=in_features, num_classes=num_classes, parameters=parameters)
    sentence += f" trained with {_optim_words(optim)}"
    run, planned = summary.get("epochs_run"), optim.get("epochs")
    if run is not None:
        unit = "epoch" if run == 1 else "epochs"
        sentence += f" for {run} {unit}" + ("" if planned in (None, run) else f" (of at most {planned})")
    sentence += f" on {dataset}"
    n_train, n_val, n_test = summary.get("n_train"), summary.get("n_val"), summary.get("n_test")
    if n_train is not None and n_test is not None:
        train, test = _count(n_train), _count(n_test)
        if n_val:
            sentence += f": {train} training, {_count(n_val)} validation and {test} test images."
        else:
            sentence += f": {train} training and {test} test images (no validation set)."
    else:
        sentence += "."
    if data.get("augment") == "shift_flip":
        sentence += (
            f" Each training image was shifted by up to {data.get('max_shift')} pixels and mirrored with "
            f"probability {data.get('flip_p'):g}."
        )
    return sentence


# -- the sections ------------------------------------------------------------------------------------


def _run_section(
    config: Mapping[str, Mapping[str, Any]], summary: Mapping[str, Any], provenance: Mapping[str, Any]
) -> list[str]:
    facts: list[tuple[str, str]] = []
    started = provenance.get("started_at")
    if started:
        try:
            when = datetime.fromisoformat(str(started))
            offset = when.strftime("%z")
            zone = f" (UTC{offset[:3]}:{offset[3:]})" if offset else ""
            facts.append(("started", when.strftime("%Y-%m-%d %H:%M:%S") + zone))
        except ValueError:
            facts.append(("started", str(started)))
    if provenance.get("command"):
        facts.append(("command", f"`{provenance['command']}`"))

    def version(name: str) -> Any:
        return provenance.get(f"{name}_version", summary.get(f"{name}_version"))

    if version("mlpkit"):
        others = [
            f"{label} {version(key)}"
            for key, label in (("python", "Python"), ("numpy", "NumPy"), ("torch", "PyTorch"))
            if version(key)
        ]
        facts.append(("mlpkit", str(version("mlpkit")) + (f" ({', '.join(others)})" if others else "")))
    if provenance.get("git_commit"):
        dirty = provenance.get("git_dirty")
        state = "" if dirty is None else " (with uncommitted changes)" if dirty else " (clean)"
        facts.append(("git commit", f"`{provenance['git_commit']}`{state}"))
    if provenance.get("host"):
        where = str(provenance["host"])
        facts.append(("host", where + (f" ({provenance['platform']})" if provenance.get("platform") else "")))
    engine = summary.get("engine", config.get("run", {}).get("engine"))
    if engine:
        text = _ENGINES.get(str(engine), str(engine))
        world = summary.get("world_size")
        if world and world > 1:
            text += f", {world} processes"
        if summary.get("resumed_at_epoch") is not None:
            text += f", resumed from the checkpoint of epoch {summary['resumed_at_epoch']}"
        facts.append(("engine", text))
    device = summary.get("device") or ("cpu" if engine == "numpy" else config.get("run", {}).get("device"))
    if device:
        dtype = config.get("run", {}).get("dtype")
        facts.append(("device", str(device) + (f", {dtype}" if dtype else "")))
    if "seed" in config.get("run", {}):
        facts.append(("seed", str(config["run"]["seed"])))
    if summary.get("data_dir"):
        facts.append(("data", f"`{summary['data_dir']}`"))
    if summary.get("wall_seconds") is not None:
        facts.append(("wall time", _duration(float(summary["wall_seconds"]))))
    # Cells are already text: escape pipes only (a command line may hold one).
    rows = [(label, value.replace("|", "\\|")) for label, value in facts]
    return ["## Run", "", "| | |", "|---|---|", *(f"| {label} | {value} |" for label, value in rows), ""]


def _result_section(
    config: Mapping[str, Mapping[str, Any]],
    records: Sequence[Mapping[str, Any]],
    summary: Mapping[str, Any],
) -> list[str]:
    lines = ["## Result", ""]
    stop_reason = str(summary.get("stop_reason") or "")
    if summary.get("test_accuracy") is None:
        lines += [f"No test score: {stop_reason or 'the run did not complete'}.", ""]
        return lines

    best = summary.get("best_epoch")
    run = summary.get("epochs_run", len(records))
    monitor = str(summary.get("monitor", config.get("early_stopping", {}).get("monitor", "val_loss")))
    score_name, direction = _MONITORS.get(monitor, (monitor, "best"))
    by_epoch = {record.get("epoch"): record for record in records}
    best_record = by_epoch.get(best, {})
    best_score = best_record.get(monitor)
    saved_best = summary.get("saved_weights", "best_epoch") == "best_epoch"

    why = f"the epoch with the {direction} {score_name}"
    if best_score is not None:
        spec = "{:.2%}" if monitor.endswith("accuracy") else "{:.4f}"
        why += f" ({_number(best_score, spec)})"
    words = (
        f"**Test accuracy {_percent(summary['test_accuracy'])}** "
        f"(test loss {_number(summary.get('test_loss'))}) with the saved weights, "
    )
    if saved_best:
        words += f"those of epoch {best}, {why}."
    else:
        words += f"those of the last epoch, {run} (`restore_best` is off). Epoch {best} was {why}."

    planned = config.get("optim", {}).get("epochs")
    if stop_reason.startswith("early stopping"):
        stopping = config.get("early_stopping", {})
        min_delta = stopping.get("min_delta") or 0.0
        by_more = f" by more than {min_delta:g}" if min_delta else ""
        of = f" of {planned}" if planned else ""
        patience = stopping.get("patience", "?")
        words += (
            f" Early stopping ended training after epoch {run}{of}: the {score_name} had not improved"
            f"{by_more} for {patience} epoch{'' if patience == 1 else 's'}."
        )
    elif planned is not None and run == planned:
        words += " Training ran its one epoch." if planned == 1 else f" Training ran all {planned} epochs."
    elif stop_reason:
        words += f" Training stopped after epoch {run}: {stop_reason}."
    if best == run:
        words += " The best epoch was the last one."
    lines += [words, ""]

    final_acc, best_acc = summary.get("final_test_accuracy"), summary.get("best_epoch_test_accuracy")
    if best != run and final_acc is not None and best_acc is not None:
        gap = 100 * (final_acc - best_acc)
        if gap == 0:
            compared = "the same as"
        else:
            compared = f"{abs(gap):.2f} points {'more' if gap > 0 else 'less'} than"
        lines += [
            f"The last epoch ({run}) scores {_percent(final_acc)} on the test set, {compared} the best "
            f"epoch ({best}):",
            "",
        ]
        last_record = by_epoch.get(run, {})
        rows = [
            (
                f"{best}, best" + (" (saved)" if saved_best else ""),
                _number(best_record.get("val_loss")),
                _percent(best_record.get("val_accuracy")),
                _number(summary.get("best_epoch_test_loss")),
                _percent(best_acc),
            ),
            (
                f"{run}, last" + ("" if saved_best else " (saved)"),
                _number(last_record.get("val_loss")),
                _percent(last_record.get("val_accuracy")),
                _number(summary.get("final_test_loss")),
                _percent(final_acc),
            ),
        ]
        header = ["epoch", "val loss", "val accuracy", "test loss", "test accuracy"]
        # Without a validation set its columns would be all dashes: leave them out.
        keep = [k for k in range(len(header)) if any(row[k] != "—" for row in rows)]
        lines += [markdown_table([header[k] for k in keep], [[row[k] for k in keep] for row in rows]), ""]
    return lines


# A CTR run's per-epoch columns: validation AUC and log loss instead of accuracies.
_CTR_EPOCH_COLUMNS = (
    ("epoch", "epoch", "{}".format),
    ("train_loss", "train loss", "{:.4f}".format),
    ("val_auc", "val AUC", "{:.4f}".format),
    ("val_logloss", "val log loss", "{:.4f}".format),
    ("lr", "lr", "{:.4g}".format),
    ("seconds", "seconds", "{:.2f}".format),
)


def _epochs_section(
    records: Sequence[Mapping[str, Any]], best: Any, columns: Sequence[tuple[str, str, Any]] = _EPOCH_COLUMNS
) -> list[str]:
    lines = ["## Epochs", ""]
    if not records:
        return [*lines, "No epoch finished.", ""]
    rows = []
    for record in records:
        row = []
        for key, _, fmt in columns:
            value = record.get(key)
            row.append(fmt(value) if isinstance(value, int | float) and math.isfinite(value) else value)
        if record.get("epoch") == best:
            row[0] = f"**{row[0]}** (best)"
        rows.append(row)
    return [*lines, markdown_table([header for _, header, _ in columns], rows), ""]


def _per_class_section(confusion: np.ndarray, names: Sequence[str]) -> list[str]:
    scores = classification_scores(confusion)
    rows: list[tuple[str, ...]] = [
        (name, f"{p:.3f}", f"{r:.3f}", f"{f:.3f}", _count(int(n)))
        for name, p, r, f, n in zip(
            names, scores["precision"], scores["recall"], scores["f1"], scores["support"], strict=True
        )
    ]
    total = _count(int(scores["support"].sum()))
    for key, label in (("macro", "macro average"), ("weighted", "weighted average")):
        mean = scores[key]
        rows.append((f"*{label}*", *(f"{mean[name]:.3f}" for name in ("precision", "recall", "f1")), total))
    order = np.argsort(scores["f1"], kind="stable")
    worst, best = int(order[0]), int(order[-1])
    intro = (
        f"On the {total} test images (accuracy {_percent(scores['accuracy'])}). "
        f"Hardest class: {names[worst]} (F1 {scores['f1'][worst]:.3f}); "
        f"easiest: {names[best]} (F1 {scores['f1'][best]:.3f})."
    )
    never_predicted = [names[k] for k in np.flatnonzero(np.asarray(confusion).sum(axis=0) == 0)]
    never_present = [names[k] for k in np.flatnonzero(scores["support"] == 0)]
    if never_predicted:
        intro += f" Never predicted, so precision 0: {_join(never_predicted)}."
    if never_present:
        intro += f" Not in the test set, so recall 0: {_join(never_present)}."
    return [
        "## Per-class scores",
        "",
        intro,
        "",
        markdown_table(["class", "precision", "recall", "F1", "support"], rows),
        "",
    ]


def _confusion_section(confusion: np.ndarray, names: Sequence[str]) -> list[str]:
    lines = ["## Test confusion matrix", "", "Rows are true classes, columns predicted classes."]
    off = confusion.copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(off, axis=None, kind="stable")[::-1][:_TOP_CONFUSIONS]
    mistakes = [
        f"{names[i]} taken for {names[j]} ({_count(int(off[i, j]))} of {_count(int(confusion[i].sum()))})"
        for i, j in (np.unravel_index(k, off.shape) for k in flat)
        if off[i, j] > 0
    ]
    if mistakes:
        lines[-1] += f" The most frequent mistakes: {_join(mistakes)}."
    header = ["true \\ predicted", *(_cell(name) for name in names)]
    rows = [
        (name, *(f"**{n}**" if i == j else str(n) for j, n in enumerate(map(int, row))))
        for i, (name, row) in enumerate(zip(names, confusion, strict=True))
    ]
    return [*lines, "", markdown_table(header, rows), ""]


def render_report(
    *,
    title: str,
    config: Mapping[str, Mapping[str, Any]],
    records: Sequence[Mapping[str, Any]],
    summary: Mapping[str, Any],
    confusion: np.ndarray | None,
    class_names: Sequence[str],
    figures: Mapping[str, str],
    provenance: Mapping[str, Any] | None = None,
    in_features: int | None = None,
    parameters: int | None = None,
    dataset: str = "Fashion-MNIST",
) -> str:
    """Render a run as Markdown for a person to read.

    Parameters
    ----------
    title : str
        Heading, e.g. the run directory's name.
    config : mapping of section -> mapping
        The run configuration as written to ``config.json`` (sections ``model``, ``optim``,
        ``early_stopping``, ``data``, ``run``); missing keys leave their words out.
    records : sequence of mapping
        Per-epoch records (``epoch``, ``train_loss``, ``train_accuracy``, ``val_loss``,
        ``val_accuracy``, ``lr``, ``seconds``).
    summary : mapping
        The contents of ``summary.json`` (``test_accuracy``, ``best_epoch``, ``epochs_run``,
        ``stop_reason``, ``n_train``, ``engine``, ``wall_seconds``, ...).
    confusion : ndarray of shape (C, C) or None
        Test confusion matrix, rows true class and columns predicted class; the per-class scores
        are computed from it (:func:`~mlpkit.evaluate.metrics.classification_scores`).
    class_names : sequence of str
        The C class names.
    figures : mapping of str -> str
        Caption -> relative path of each PNG to embed, in the order to show them.
    provenance : mapping, optional
        From :func:`mlpkit._provenance.provenance`: ``started_at``, ``command``, versions, ``host``,
        ``platform``, ``git_commit`` and ``git_dirty``; the Run table shows those present.
    in_features : int, optional
        D, the input width (784 for 28x28 images), the first number of the architecture.
    parameters : int, optional
        The network's number of trainable parameters.
    dataset : str
        The data set's name in the opening paragraph.

    Returns
    -------
    str
        The Markdown document, ending in a newline.

    Examples
    --------
    >>> import textwrap
    >>> config = {"model": {"hidden_features": [256], "activation": "relu"},
    ...           "optim": {"optimizer": "sgd", "lr": 0.1, "batch_size": 256, "epochs": 10}}
    >>> summary = {"epochs_run": 10, "n_train": 55000, "n_val": 5000, "n_test": 10000}
    >>> text = render_report(title="demo", config=config, records=[], summary=summary, confusion=None,
    ...                      class_names=[str(k) for k in range(10)], figures={}, in_features=784,
    ...                      parameters=203530)
    >>> print(text.splitlines()[0])
    # mlpkit run: demo
    >>> print(textwrap.fill(text.splitlines()[2], 80))
    A 784-256-10 MLP (ReLU, 203,530 parameters) trained with SGD (lr 0.1, batch 256)
    for 10 epochs on Fashion-MNIST: 55,000 training, 5,000 validation and 10,000
    test images.
    """
    provenance = provenance or {}
    lines = [f"# mlpkit run: {title}", ""]
    paragraph = _summary_paragraph(
        config,
        summary,
        in_features=in_features,
        num_classes=len(class_names),
        parameters=parameters,
        dataset=dataset,
    )
    lines += [paragraph, ""]
    lines += _run_section(config, summary, provenance)
    lines += _result_section(config, records, summary)

    lines += _figures_section(figures)

    lines += _epochs_section(records, summary.get("best_epoch"))

    if confusion is not None:
        matrix = np.asarray(confusion)
        names = list(class_names) or [str(k) for k in range(len(matrix))]
        lines += _per_class_section(matrix, names)
        lines += _confusion_section(matrix, names)

    lines += _config_section(config)
    return "\n".join(lines)


def _figures_section(figures: Mapping[str, str]) -> list[str]:
    """Each PNG with its caption, in order; nothing without figures."""
    lines = ["## Figures", ""] if figures else []
    for caption, target in figures.items():
        lines += [f"![{caption}]({target})", "", f"*{caption[:1].upper() + caption[1:]}.*", ""]
    return lines


def _config_section(config: Mapping[str, Any]) -> list[str]:
    rows = [
        (section, key, value)
        for section, values in config.items()
        if isinstance(values, Mapping)  # not the top-level "task" name
        for key, value in values.items()
    ]
    return ["## Configuration", "", markdown_table(["section", "key", "value"], rows), ""]


def render_ctr_report(
    *,
    title: str,
    config: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    summary: Mapping[str, Any],
    figures: Mapping[str, str],
    provenance: Mapping[str, Any] | None = None,
) -> str:
    """Render a CTR run as Markdown: what was trained on what, the test AUC and log loss, the epochs.

    Parameters
    ----------
    title : str
    config : mapping
        ``config.json`` of a CTR run (sections ``model``, ``optim``, ``early_stopping``, ``data``, ``run``).
    records : sequence of mapping
        Per-epoch records (``epoch``, ``train_loss``, ``val_auc``, ``val_logloss``, ``lr``, ``seconds``).
    summary : mapping
        ``summary.json`` (``test_auc``, ``test_logloss``, ``params``, ``best_epoch``, ``n_train``, ...).
    figures : mapping of str -> str
        Caption -> relative path of each PNG.
    provenance : mapping, optional
        As for :func:`render_report`.

    Examples
    --------
    >>> import textwrap
    >>> config = {"model": {"name": "deepfm", "embedding_dim": 10},
    ...           "optim": {"optimizer": "adam", "lr": 1e-3, "batch_size": 4096}}
    >>> summary = {"params": 417891, "n_train": 202027, "n_val": 57722, "n_test": 28860,
    ...            "epochs_run": 12, "best_epoch": 10, "test_auc": 0.98421, "test_logloss": 0.1466}
    >>> text = render_ctr_report(title="demo", config=config, records=[], summary=summary, figures={})
    >>> print(textwrap.fill(text.splitlines()[2], 80))
    deepfm (417,891 parameters, embeddings of 10) trained with Adam (lr 0.001, batch
    4096) for 12 epochs on 202,027 training, 57,722 validation and 28,860 test rows.
    >>> print([line for line in text.splitlines() if line.startswith("**Test AUC")][0])
    **Test AUC 0.9842** (log loss 0.1466) with the weights of epoch 10, the best by val_auc.
    """
    provenance = provenance or {}
    model, optim = config.get("model", {}), config.get("optim", {})
    words = f"{model.get('name', 'a CTR model')}"
    details = []
    if summary.get("params") is not None:
        details.append(f"{_count(int(summary['params']))} parameters")
    if model.get("embedding_dim"):
        details.append(f"embeddings of {model['embedding_dim']}")
    if details:
        words += f" ({', '.join(details)})"
    words += f" trained with {_optim_words(optim)}"
    if summary.get("epochs_run") is not None:
        run = int(summary["epochs_run"])
        words += f" for {run} epoch{'' if run == 1 else 's'}"
    if summary.get("n_train") is not None:
        words += (
            f" on {_count(summary['n_train'])} training, {_count(summary.get('n_val', 0))} validation and "
            f"{_count(summary.get('n_test', 0))} test rows."
        )
    lines = [f"# mlpkit CTR run: {title}", "", words, ""]
    lines += _run_section(config, summary, provenance)
    lines += ["## Result", ""]
    if summary.get("test_auc") is None:
        lines += [f"No test score: {summary.get('stop_reason') or 'the run did not complete'}.", ""]
    else:
        if summary.get("saved_weights", "best_epoch") == "best_epoch":
            which = f"epoch {summary.get('best_epoch')}, the best by {summary.get('monitor', 'val_auc')}"
        else:
            which = f"the last epoch ({summary.get('epochs_run')})"
        lines += [
            f"**Test AUC {summary['test_auc']:.4f}** (log loss {_number(summary.get('test_logloss'))}) "
            f"with the weights of {which}.",
            "",
        ]
        if summary.get("stop_reason"):
            lines += [f"Training stopped: {summary['stop_reason']}.", ""]
    lines += _figures_section(figures)
    lines += _epochs_section(records, summary.get("best_epoch"), _CTR_EPOCH_COLUMNS)
    lines += _config_section(config)
    return "\n".join(lines)


_TABLE_EPOCH_COLUMNS = (
    ("epoch", "epoch", "{}".format),
    ("train_loss", "train loss", "{:.4f}".format),
    ("val_loss", "val loss", "{:.4f}".format),
    ("val_accuracy", "val accuracy", "{:.4f}".format),
    ("lr", "lr", "{:.4g}".format),
    ("seconds", "seconds", "{:.2f}".format),
)


def render_table_report(
    *,
    title: str,
    config: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    summary: Mapping[str, Any],
    figures: Mapping[str, str],
    provenance: Mapping[str, Any] | None = None,
) -> str:
    """Render a run on a user's table as Markdown: the data and its columns, the test scores, the epochs.

    Parameters
    ----------
    title : str
    config : mapping
        ``config.json`` of a table run.
    records : sequence of mapping
        Per-epoch records.
    summary : mapping
        ``summary.json``: ``task``, the ``test_*`` scores, ``columns``, ``classes``, sizes, ...
    figures : mapping of str -> str
        Caption -> relative path of each PNG.
    provenance : mapping, optional
        As for :func:`render_report`.

    Examples
    --------
    >>> summary = {"task": "regression", "test_rmse": 3.5, "test_mae": 2.25, "test_r2": 0.8125,
    ...            "columns": {"rooms": "numeric"}, "n_train": 70, "n_val": 15, "n_test": 15}
    >>> text = render_table_report(title="t", config={"data": {"target": "price"}}, records=[],
    ...                            summary=summary, figures={})
    >>> [line for line in text.splitlines() if line.startswith("**Test")]
    ['**Test RMSE 3.5** (MAE 2.25, R² 0.8125) with the weights of epoch None, the best by val_loss.']
    """
    provenance = provenance or {}
    data, optim = config.get("data", {}), config.get("optim", {})
    kinds: dict[str, list[str]] = {}
    for name, kind in summary.get("columns", {}).items():
        kinds.setdefault(kind, []).append(name)
    task = summary.get("task", "?")
    words = (
        f"An MLP predicting {data.get('target', 'the target')!r} ({task}) from "
        + _join([f"{len(names)} {kind} column{'' if len(names) == 1 else 's'}"
                 for kind, names in kinds.items() if kind != "ignore"])
        + f", trained with {_optim_words(optim)}"
    )
    if summary.get("n_train") is not None:
        words += (f" on {_count(summary['n_train'])} training, {_count(summary.get('n_val', 0))} validation "
                  f"and {_count(summary.get('n_test', 0))} test rows.")
    lines = [f"# mlpkit table run: {title}", "", words, ""]
    if kinds.get("ignore"):
        lines += [f"Columns not read: {', '.join(kinds['ignore'])}.", ""]
    lines += _run_section(config, summary, provenance)
    lines += ["## Result", ""]
    which = (f"epoch {summary.get('best_epoch')}, the best by {summary.get('monitor', 'val_loss')}"
             if summary.get("saved_weights", "best_epoch") == "best_epoch"
             else f"the last epoch ({summary.get('epochs_run')})")
    if task == "regression" and summary.get("test_rmse") is not None:
        lines += [f"**Test RMSE {summary['test_rmse']:.4g}** (MAE {summary['test_mae']:.4g}, "
                  f"R² {_number(summary.get('test_r2'))}) with the weights of {which}.", ""]
    elif summary.get("test_accuracy") is not None:
        lines += [f"**Test accuracy {summary['test_accuracy']:.4f}** (balanced accuracy "
                  f"{_number(summary.get('test_balanced_accuracy'))}, AUC "
                  f"{_number(summary.get('test_auc'))}, log loss {_number(summary.get('test_logloss'))}) "
                  f"with the weights of {which}.", ""]
    else:
        lines += [f"No test score: {summary.get('stop_reason') or 'the run did not complete'}.", ""]
    lines += _figures_section(figures)
    if summary.get("test_confusion_matrix") is not None:
        matrix = np.asarray(summary["test_confusion_matrix"])
        names = list(summary.get("classes") or [str(k) for k in range(len(matrix))])
        lines += _per_class_section(matrix, names)
        lines += _confusion_section(matrix, names)
    lines += _epochs_section(records, summary.get("best_epoch"), _TABLE_EPOCH_COLUMNS)
    lines += _config_section(config)
    return "\n".join(lines)
