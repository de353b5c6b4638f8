"""An exported model run by onnxruntime: what ``predict --runtime onnx`` scores with.

Separate from :mod:`mlpkit.export`, which rebuilds each task's model to trace it: the tasks' predict
functions use this module, and the exporter uses the tasks, so the two directions stay one way.
Nothing here imports torch or onnx, only onnxruntime when a file is opened.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from mlpkit._optional import require
from mlpkit.errors import CheckpointError, DataFormatError
from mlpkit.rundir import MODEL_FILE

__all__ = ["ONNX_FILE", "RUNTIMES", "OnnxModel", "onnx_input_name", "weights_digest"]

RUNTIMES = ("native", "onnx")
"""``native``: the run's own engine (NumPy or torch); ``onnx``: its exported file under onnxruntime."""
ONNX_FILE = "model.onnx"
"""Where ``mlpkit export`` writes by default, and where ``predict --runtime onnx`` looks."""


def onnx_input_name(name: str) -> str:
    """A model input's name in the graph: ``multi:<field>`` (a CTR batch key) becomes ``multi_<field>``.

    >>> onnx_input_name("multi:tags"), onnx_input_name("sparse")
    ('multi_tags', 'sparse')
    """
    return name.replace(":", "_")


def weights_digest(path: Path) -> str:
    """SHA-256 of a weights file: what an export records of the weights it was made from."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class OnnxModel:
    """An exported model under onnxruntime: named float32/int64 arrays in, named outputs out.

    The session takes every execution provider the installed onnxruntime offers, in its order of
    preference: the CPU with ``onnxruntime``, CUDA first with ``onnxruntime-gpu`` on a GPU machine.

    Parameters
    ----------
    path : str or os.PathLike
        An ONNX file written by :func:`mlpkit.export.export_run`.
    threads : int, optional
        onnxruntime's intra-op threads (default: its own choice).

    Raises
    ------
    CheckpointError
        The file is missing or not a model onnxruntime can load.
    """

    def __init__(self, path: str | os.PathLike[str], *, threads: int | None = None) -> None:
        ort = require("onnxruntime", feature="the onnx runtime")
        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"no ONNX file at {self.path}")
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        try:
            providers = ort.get_available_providers()
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:  # onnxruntime's own error types for a corrupt or foreign file
            raise CheckpointError(f"{self.path} is not a model onnxruntime can run ({exc})") from exc
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self._dtypes = {
            i.name: np.int64 if "int64" in i.type else np.float32 for i in self.session.get_inputs()
        }

    @classmethod
    def for_run(cls, run_dir: str | os.PathLike[str]) -> OnnxModel:
        """``RUN_DIR/model.onnx``, refused when missing or exported from other weights than the run's.

        Raises
        ------
        CheckpointError
            No export yet (with the command that makes it), or a stale one.
        """
        run_dir = Path(run_dir)
        path = run_dir / ONNX_FILE
        if not path.is_file():
            raise CheckpointError(f"{path} is missing: run 'mlpkit export {run_dir}' first")
        model = cls(path)
        recorded = model.metadata.get("mlpkit.weights_sha256")
        if recorded != weights_digest(run_dir / MODEL_FILE):
            raise CheckpointError(
                f"{path} was exported from other weights than {run_dir / MODEL_FILE} (the run has trained "
                f"since); export it again: mlpkit export {run_dir} --overwrite"
            )
        return model

    def run(
        self, inputs: Mapping[str, np.ndarray], output: str = "logits", *, batch_size: int = 8192
    ) -> np.ndarray:
        """One output for every row of ``inputs``, in batches of ``batch_size``.

        ``inputs`` maps the model's input names (``multi:<f>`` or ``multi_<f>`` alike) to arrays of
        equal length; inputs the graph does not take (an empty ``numeric`` block, say) are ignored.

        Raises
        ------
        DataFormatError
            An input the graph takes is absent, or its width differs from the graph's.
        """
        given = {onnx_input_name(k): v for k, v in inputs.items()}
        missing = [name for name in self.input_names if name not in given]
        if missing:
            raise DataFormatError(f"{self.path} takes inputs {self.input_names}; missing {missing}")
        feed = {name: np.asarray(given[name], dtype=self._dtypes[name]) for name in self.input_names}
        for value in self.session.get_inputs():
            width = value.shape[1] if len(value.shape) > 1 else None
            if isinstance(width, int) and feed[value.name].shape[1:] != (width,):
                raise DataFormatError(
                    f"{self.path}: input {value.name!r} has {width} columns, "
                    f"got an array of shape {feed[value.name].shape}"
                )
        n = len(next(iter(feed.values())))
        parts = [
            self.session.run([output], {k: v[start : start + batch_size] for k, v in feed.items()})[0]
            for start in range(0, n, batch_size)
        ]
        return np.concatenate(parts) if parts else np.zeros((0,), np.float32)
