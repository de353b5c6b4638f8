"""A run's model as an ONNX file (``mlpkit export``); :mod:`mlpkit.runtime` runs the file.

::

    mlpkit export RUN_DIR [--format onnx] [--out FILE] [--opset N]
    mlpkit predict RUN_DIR FILE --runtime onnx

Every kind of run exports the same way: the task's saved model is rebuilt (:func:`load_run`,
:func:`~mlpkit.tasks.ctr.load_ctr_run`, :func:`~mlpkit.tasks.tabular.load_table_run`), wrapped in
a module (:mod:`mlpkit.models.serving`) that takes the model's inputs as positional tensors and
returns its outputs as a tuple, and traced by torch's exporter (``torch.onnx.export(...,
dynamo=True)``, the ``torch.export`` path) with a dynamic batch axis. Every graph has an output
``logits`` equal to what the run's own scoring computes, so ``predict --runtime onnx`` swaps that
one step and keeps the rest (reading the file, preprocessing, writing the CSV) as it is; a second
output gives what a deployment wants (``probabilities``, or ``value`` in a regression target's
units).

What the graph takes is the model's input, not the raw file: a Fashion-MNIST or image-folder
run's ``features`` are the pixels scaled to [0, 1]; a table run's ``numeric`` and ``categorical``
come from ``preprocessing.json``; a CTR run's ids from ``table.json``. The ONNX metadata says so,
names those files, and records the SHA-256 of the ``model.safetensors`` the export was made from,
so a stale export (the run trained on, or was resumed, after it) is refused, not silently used.

The inputs and outputs of each kind of run:

=============  ==============================================  ========================================
run            inputs                                          outputs
=============  ==============================================  ========================================
image (MLP,    ``features`` float32 (B, D)                     ``logits`` (B, K), ``probabilities``
ViT)                                                           (B, K)
table          ``numeric`` float32 (B, D_num), ``categorical``  classification: ``logits`` (B, K),
               int64 (B, C) (each present when not empty)      ``probabilities`` (B, K); regression:
                                                               ``logits`` (B,), ``value`` (B,)
CTR            ``sparse`` int64 (B, F), ``dense`` float32      ``logits`` (B,), ``probabilities`` (B,)
               (B, N), ``multi_<field>`` int64 (B, L)
=============  ==============================================  ========================================
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlpkit._checks import check_choice
from mlpkit._io import atomic_write_bytes
from mlpkit._optional import require
from mlpkit.errors import CheckpointError, ConfigError, OutputError
from mlpkit.rundir import MODEL_FILE, PREPROCESSING_FILE, TABLE_FILE, run_task, warn_if_unfinished
from mlpkit.runtime import ONNX_FILE, onnx_input_name, weights_digest

__all__ = ["DEFAULT_OPSET", "FORMATS", "MIN_OPSET", "Exported", "export_run"]

logger = logging.getLogger(__name__)

FORMATS = ("onnx",)
MIN_OPSET = 18
"""The lowest opset torch's ``torch.export``-based exporter writes."""
DEFAULT_OPSET = 18
"""The default: the lowest, so the file runs on the oldest onnxruntime that reads this exporter's output."""
EXAMPLE_BATCH = 3
"""Rows of the tracing example: torch.export specializes an axis whose example size is 0 or 1."""


# -- the graph of each kind of run ---------------------------------------------------------------


@dataclass(frozen=True)
class Graph:
    """What the exporter traces, for one run.

    Parameters
    ----------
    module : torch.nn.Module
        ``forward(*inputs)`` in the order of :attr:`inputs`, returning a tuple in the order of
        :attr:`outputs`; in evaluation mode, float32.
    example : tuple of torch.Tensor
        One tensor per input, :data:`EXAMPLE_BATCH` rows each.
    inputs, outputs : dict of str to str
        Name -> what it holds (shape, dtype, meaning): the graph's names and their doc strings.
    metadata : dict of str to str
        The run's own entries of the ONNX ``metadata_props`` (class names, where the encoding is).
    """

    module: Any
    example: tuple[Any, ...]
    inputs: dict[str, str]
    outputs: dict[str, str]
    metadata: dict[str, str]


def _torch_copy(spec: Any, network: Any) -> Any:
    """The torch module of an MLPSpec with a NumPy-engine network's weights, in float32."""
    import torch

    from mlpkit.torch_engine import build_torch_mlp, load_state_arrays

    module = build_torch_mlp(spec, generator=torch.Generator().manual_seed(0))  # drawn, then replaced
    load_state_arrays(module, {k: v.astype(np.float32) for k, v in network.state_dict().items()})
    return module


def _image_graph(run_dir: Path) -> Graph:
    """An image run: an MLP (either engine; its weights load in torch unchanged) or a ViT."""
    import torch

    from mlpkit.models.serving import Classifier
    from mlpkit.tasks.fashion_mnist import load_run

    loaded = load_run(run_dir)
    model = loaded.model
    network = _torch_copy(model.spec, loaded.network) if model.kind == "mlp" else model.network.float()
    size = loaded.config.data.image_size if loaded.config.data.images is not None else None
    layout = "H x W x C, channels last" if size and model.in_features == 3 * size * size else "H x W"
    d, k = model.in_features, model.num_classes
    return Graph(
        module=Classifier(network).eval(),
        example=(torch.rand(EXAMPLE_BATCH, d),),
        inputs={
            "features": f"float32 (batch, {d}): each image's pixels flattened row-major ({layout}), "
            "the values 0..255 divided by 255"
        },
        outputs={
            "logits": f"float32 (batch, {k}): class scores",
            "probabilities": f"float32 (batch, {k}): softmax of the logits",
        },
        metadata={
            "classes": json.dumps(list(loaded.classes)),
            "model": model.description,
            "input_scale": "features = pixel values (0..255) / 255",
        },
    )


def _table_graph(run_dir: Path) -> Graph:
    """A table run: the NumPy engine's MLP behind the one-hot encoding (made in the graph, as
    :meth:`~mlpkit.data.tabular.TablePreprocessor.one_hot` makes it), or the torch engine's TabularMLP."""
    import torch

    from mlpkit.models.serving import OneHotMLP, TableScorer
    from mlpkit.tasks.tabular import load_table_run

    loaded = load_table_run(run_dir)
    pre = loaded.preprocessor
    if loaded.engine == "numpy":
        spec = loaded.config.model.to_spec(pre.one_hot_width, pre.num_outputs)
        mlp = _torch_copy(spec, loaded.model)
        allowed = [
            [i >= 2 or (i == 0 and bool(c.get("has_missing", True))) for i in range(width)]
            for c, width in zip(pre.categorical, pre.cardinalities, strict=True)
        ]
        model: Any = OneHotMLP(mlp, allowed)
    else:
        model = loaded.model.float()
    d_num, n_cat = pre.numeric_width, len(pre.categorical)
    inputs: dict[str, str] = {}
    example = []
    if d_num:
        inputs["numeric"] = (
            f"float32 (batch, {d_num}): the numeric columns standardized (a missing value "
            "replaced by the median), then their 0/1 missing indicators, as preprocessing.json "
            "says"
        )
        example.append(torch.zeros(EXAMPLE_BATCH, d_num))
    if n_cat:
        inputs["categorical"] = (
            f"int64 (batch, {n_cat}): one id per categorical column (0 missing, "
            "1 unseen, 2 + the category's index in preprocessing.json)"
        )
        example.append(torch.full((EXAMPLE_BATCH, n_cat), 2, dtype=torch.int64))
    metadata = {
        "task_kind": pre.task,
        "target": pre.target,
        "encoding": PREPROCESSING_FILE,
        "preprocessing": json.dumps(pre.to_dict()),
    }
    if pre.task == "classification":
        k = len(pre.classes)
        outputs = {
            "logits": f"float32 (batch, {k}): class scores",
            "probabilities": f"float32 (batch, {k}): softmax of the logits",
        }
        metadata["classes"] = json.dumps([str(c) for c in pre.classes])
        regression = None
    else:
        outputs = {
            "logits": "float32 (batch,): the prediction of the standardized target",
            "value": f"float32 (batch,): the prediction in the units of {pre.target!r}",
        }
        regression = (pre.target_mean, pre.target_std)
    scorer = TableScorer(model, numeric=bool(d_num), categorical=bool(n_cat), regression=regression)
    return Graph(scorer.eval(), tuple(example), inputs, outputs, metadata)


def _ctr_graph(run_dir: Path) -> Graph:
    """A CTR run: the model takes the named batch of :func:`mlpkit.tasks.ctr.named_inputs`."""
    import torch

    from mlpkit.models.serving import CTRScorer
    from mlpkit.tasks.ctr import load_ctr_run

    loaded = load_ctr_run(run_dir)
    fields = loaded.fitted.fields
    keys: list[str] = []
    inputs: dict[str, str] = {}
    example = []
    if fields.categorical:
        keys.append("sparse")
        names = ", ".join(f.name for f in fields.categorical)
        inputs["sparse"] = (
            f"int64 (batch, {len(fields.categorical)}): each categorical field's id in its "
            f"vocabulary of table.json ({names})"
        )
        example.append(torch.zeros(EXAMPLE_BATCH, len(fields.categorical), dtype=torch.int64))
    if fields.numeric:
        keys.append("dense")
        names = ", ".join(f.name for f in fields.numeric)
        inputs["dense"] = (
            f"float32 (batch, {len(fields.numeric)}): the numeric fields as table.json encodes them ({names})"
        )
        example.append(torch.zeros(EXAMPLE_BATCH, len(fields.numeric)))
    for f in fields.multi:
        keys.append(f"multi:{f.name}")
        inputs[onnx_input_name(f"multi:{f.name}")] = (
            f"int64 (batch, {f.max_len}): the ids of multi-valued field {f.name!r}, padded with 0"
        )
        example.append(torch.zeros(EXAMPLE_BATCH, f.max_len, dtype=torch.int64))
    return Graph(
        module=CTRScorer(loaded.model.float(), keys).eval(),
        example=tuple(example),
        inputs=inputs,
        outputs={
            "logits": "float32 (batch,): the click logit",
            "probabilities": "float32 (batch,): sigmoid of the logit",
        },
        metadata={"model": loaded.config.model.name, "encoding": TABLE_FILE},
    )


_GRAPHS: dict[str, Callable[[Path], Graph]] = {
    "fashion_mnist": _image_graph,
    "table": _table_graph,
    "ctr": _ctr_graph,
}


# -- export --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exported:
    """What :func:`export_run` wrote.

    Parameters
    ----------
    path : Path
        The ONNX file.
    task : str
        The run's task (``fashion_mnist``, ``table``, ``ctr``).
    opset : int
    inputs, outputs : dict of str to str
        The graph's names and what each holds.
    """

    path: Path
    task: str
    opset: int
    inputs: dict[str, str]
    outputs: dict[str, str]


def export_run(
    run_dir: str | os.PathLike[str],
    *,
    format: str = "onnx",
    out: str | os.PathLike[str] | None = None,
    opset: int | None = None,
    overwrite: bool = False,
) -> Exported:
    """Write a run's model as an ONNX file with a dynamic batch axis, checked by ``onnx.checker``.

    Parameters
    ----------
    run_dir : str or os.PathLike
        A directory written by ``mlpkit train`` or ``mlpkit ctr train``.
    format : {"onnx"}
    out : str or os.PathLike, optional
        The file to write; default ``RUN_DIR/model.onnx`` (where ``predict --runtime onnx`` looks).
    opset : int, optional
        The ONNX opset (default :data:`DEFAULT_OPSET`; at least :data:`MIN_OPSET`).
    overwrite : bool
        Replace an existing ``out``.

    Returns
    -------
    Exported

    Raises
    ------
    ConfigError
        An unknown format, an opset below :data:`MIN_OPSET` or above what the installed onnx knows.
    CheckpointError
        The run directory cannot be loaded (named by path).
    OutputError
        ``out`` exists (without ``overwrite``) or cannot be written; nothing is half-written.
    """
    check_choice("format", format, FORMATS)
    onnx = require("onnx", feature="ONNX export")
    require("onnxscript", feature="ONNX export")
    newest = onnx.defs.onnx_opset_version()
    opset = DEFAULT_OPSET if opset is None else opset
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise ConfigError(
            f"opset must be an int from {MIN_OPSET} to {newest} (the installed onnx's newest), got {opset!r}"
        )
    run_dir = Path(run_dir)
    task = run_task(run_dir)
    if task not in _GRAPHS:
        raise CheckpointError(
            f"{run_dir}: runs of task {task!r} cannot be exported (known: {sorted(_GRAPHS)})"
        )
    path = Path(out) if out is not None else run_dir / ONNX_FILE
    if path.exists() and not overwrite:
        raise OutputError(f"{path} already exists; nothing was changed. Pass --overwrite to replace it")
    warn_if_unfinished(run_dir, "exporting")
    graph = _GRAPHS[task](run_dir)
    proto = _trace(graph, opset)
    _document(proto, graph, task=task, run_dir=run_dir)
    onnx.checker.check_model(proto, full_check=True)
    atomic_write_bytes(path, proto.SerializeToString())
    logger.info(
        "wrote %s (opset %d): inputs %s, outputs %s",
        path,
        opset,
        ", ".join(graph.inputs),
        ", ".join(graph.outputs),
    )
    return Exported(path, task, opset, graph.inputs, graph.outputs)


def _trace(graph: Graph, opset: int) -> Any:
    """The ONNX ModelProto of ``graph.module``, every input's first axis named ``batch``."""
    import torch

    batch = torch.export.Dim("batch")
    names = list(graph.inputs)
    with warnings.catch_warnings(), torch.no_grad():
        # torch.export's internals warn about their own deprecated pytree calls (a FutureWarning).
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"copyreg|torch\..*")
        # Inputs that share the batch axis share its name; the exporter says it keeps one of them.
        warnings.filterwarnings("ignore", r".*axis name: batch will not be used", UserWarning)
        program = torch.onnx.export(
            graph.module,
            graph.example,
            input_names=names,
            output_names=list(graph.outputs),
            dynamic_shapes=(tuple({0: batch} for _ in names),),  # forward(*inputs): one varargs tuple
            opset_version=opset,
            dynamo=True,
            verbose=False,
            report=False,
            optimize=True,
        )
    return program.model_proto


def _document(proto: Any, graph: Graph, *, task: str, run_dir: Path) -> None:
    """Doc strings on the graph's inputs and outputs; what the run was, as ``metadata_props``."""
    from mlpkit import __version__

    for value in proto.graph.input:
        value.doc_string = graph.inputs[value.name]
    for value in proto.graph.output:
        value.doc_string = graph.outputs[value.name]
    proto.producer_name, proto.producer_version = "mlpkit", __version__
    proto.doc_string = f"mlpkit {task} run {run_dir.name}: inputs {', '.join(graph.inputs)}"
    metadata = {
        "mlpkit.task": task,
        "mlpkit.run": run_dir.name,
        "mlpkit.run_dir": str(run_dir.resolve()),  # where the encoding files named below were, at export
        "mlpkit.weights_sha256": weights_digest(run_dir / MODEL_FILE),
        "mlpkit.inputs": json.dumps(graph.inputs),
        "mlpkit.outputs": json.dumps(graph.outputs),
        **{f"mlpkit.{key}": value for key, value in graph.metadata.items()},
    }
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
