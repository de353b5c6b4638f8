"""The Fashion-MNIST image classification task: pixels in, ten class logits out.

What a run of ``mlpkit train`` needs that is particular to images (:class:`FashionMNISTTask`):
loading the IDX files and carving the validation set out of the training set, scaling grey levels
0..255 to [0, 1] (the one place that scaling lives: training, evaluation and prediction all call
:func:`pixels_to_features`), the MLP sized by the data, softmax cross-entropy, the shift-and-flip
augmentation, the test scores, the prediction grid and the report; and reusing a finished run:
:func:`load_run`, :func:`evaluate_run`, :func:`predict_run`. The runner (:mod:`mlpkit.run`) and
the run directory (:mod:`mlpkit.rundir`) are the same for every task.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import io
import json
import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mlpkit import __version__
from mlpkit._checks import check_choice
from mlpkit._io import atomic_write_json, atomic_write_text
from mlpkit.config import RunConfig, load_config
from mlpkit.data.augment import ShiftFlip
from mlpkit.data.fashion_mnist import FASHION_MNIST, FashionMNIST, load_fashion_mnist
from mlpkit.data.images import read_images
from mlpkit.engine import build_mlp, load_weights
from mlpkit.engine.losses import log_softmax
from mlpkit.errors import CheckpointError, ConfigError, DataFormatError, DataNotFoundError
from mlpkit.evaluate.metrics import accuracy, classification_scores, confusion_matrix, log_loss
from mlpkit.evaluate.report import render_report
from mlpkit.rundir import (
    CONFIG_FILE,
    CURVES_FILE,
    MODEL_FILE,
    PREDICTIONS_FILE,
    REPORT_FILE,
    SUMMARY_FILE,
    read_metadata,
    warn_if_unfinished,
)
from mlpkit.spec import MLPSpec
from mlpkit.tasks.base import FinishedRun, Splits, Task, absolute, run_seeds
from mlpkit.train import predict_logits

__all__ = [
    "MAX_PIXEL",
    "PREVIEW_IMAGES",
    "FashionMNISTTask",
    "ImageModel",
    "ImageSplits",
    "LoadedRun",
    "Predictions",
    "evaluate_run",
    "load_dataset",
    "load_run",
    "load_splits",
    "make_augment",
    "pixels_to_features",
    "predict_run",
    "split_validation",
]

logger = logging.getLogger(__name__)

PREVIEW_IMAGES = 25
"""Test images shown in ``predictions.png`` (the first ones, so every run of a data set shows the same)."""

MAX_PIXEL = 255
"""Grey levels are 0..255 in the IDX files; features are pixel / 255, in [0, 1]."""



def pixels_to_features(images: np.ndarray, dtype: np.dtype | type = np.float32) -> np.ndarray:
    """Grey levels to network inputs: flatten each image and scale 0..255 to [0, 1].

    The one place this scaling lives: training, evaluation and prediction all call it.

    Parameters
    ----------
    images : ndarray of shape (N, 28, 28) or (N, 784)
        Grey levels 0..255 (uint8, or any real dtype).
    dtype : float32 or float64

    Returns
    -------
    ndarray of shape (N, 784)
        A new array of ``dtype`` with values in [0, 1].

    Examples
    --------
    >>> pixels_to_features(np.array([[[0, 255], [51, 102]]], dtype=np.uint8))
    array([[0. , 1. , 0.2, 0.4]], dtype=float32)
    """
    x = np.asarray(images).reshape(len(images), -1).astype(dtype)  # (N, H*W), a copy
    x /= MAX_PIXEL
    return x


def split_validation(n: int, val_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a random train/validation split of ``n`` samples.

    Returns
    -------
    train_idx : ndarray of shape (n - val_size,)
    val_idx : ndarray of shape (val_size,)

    Raises
    ------
    ConfigError
        If ``val_size`` leaves no training sample.
    """
    if val_size >= n:
        raise ConfigError(
            f"[data] val_size must be smaller than the training set ({n} images), got {val_size}"
        )
    order = rng.permutation(n)
    return order[val_size:], order[:val_size]


def load_dataset(config: RunConfig) -> FashionMNIST:
    """Fashion-MNIST, found (or downloaded) as ``config.data`` says."""
    data = config.data
    return load_fashion_mnist(data.data_dir, download=data.download, verify=data.verify)


@dataclass(frozen=True, eq=False)
class ImageExtras:
    """What the image task keeps beside the features: the raw test images, the class names, and
    the images' shape (H, W, C): (28, 28, 1) for Fashion-MNIST."""

    test_images: np.ndarray              # (N_test, H*W*C) uint8, for the prediction grid
    classes: tuple[str, ...]
    shape: tuple[int, int, int] = (28, 28, 1)


@dataclass(frozen=True, eq=False)
class ImageSplits(Splits):
    """The data of one run: features (N, 784) scaled to [0, 1] in the run's dtype, labels (N,) int64;
    ``x_val`` None when ``val_size`` is 0; ``extra`` the :class:`ImageExtras`."""

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.extra.classes)

    @property
    def test_images(self) -> np.ndarray:
        return np.asarray(self.extra.test_images)

    @property
    def data_dir(self) -> Path:
        return Path(self.source)


def load_folder_splits(config: RunConfig, rng: np.random.Generator) -> ImageSplits:
    """A folder of the user's images (``[data] images``): read, split and scaled as Fashion-MNIST is.

    One folder of class subfolders is split 70/15/15 by ``rng``, stratified by class; a folder of
    ``train``/``test`` (and ``val`` or ``valid``) subfolders is read as given, its validation set
    carved out of ``train`` (15% of each class) when it has none. The other splits are read with the
    training folder's classes and color.
    """
    from mlpkit.data.image_folder import find_image_splits, read_image_folder
    from mlpkit.data.tabular import split_rows

    data, dtype = config.data, np.dtype(config.run.dtype)
    root = Path(str(data.images)).expanduser()
    folders = find_image_splits(root)
    read = {"size": data.image_size, "strict": data.strict}
    train = read_image_folder(folders.get("train", folders.get("all")), color=data.color, **read)
    parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if "all" in folders:
        rows = split_rows(len(train.labels), rng, classes=train.labels)
        names = ("train", "val", "test")
        parts = {name: (train.images[r], train.labels[r]) for name, r in zip(names, rows, strict=True)}
    else:
        for name in ("val", "test"):
            if name in folders:
                other = read_image_folder(folders[name], color=train.color, classes=train.classes, **read)
                parts[name] = (other.images, other.labels)
        if "val" in parts:
            parts["train"] = (train.images, train.labels)
        else:
            kept, held, _ = split_rows(len(train.labels), rng, classes=train.labels, test_fraction=0.0)
            parts["train"] = (train.images[kept], train.labels[kept])
            parts["val"] = (train.images[held], train.labels[held])
    shape = train.images.shape[1:]                                          # (S, S, C)

    def flat(images: np.ndarray) -> np.ndarray:
        return images.reshape(len(images), -1)                              # (N, S*S*C) uint8

    x_test, y_test = parts["test"]
    x_val, y_val = parts["val"]
    splits = ImageSplits(
        x_train=pixels_to_features(flat(parts["train"][0]), dtype),
        y_train=parts["train"][1],
        x_val=pixels_to_features(flat(x_val), dtype) if len(y_val) else None,
        y_val=y_val if len(y_val) else None,
        x_test=pixels_to_features(flat(x_test), dtype),
        y_test=y_test,
        source=str(root.resolve()),
        extra=ImageExtras(flat(x_test), train.classes, (shape[0], shape[1], shape[2])),
    )
    logger.info(
        "data: %d train, %d validation, %d test images of %dx%d %s, %d classes, from %s",
        len(parts["train"][1]), len(y_val), len(y_test), shape[0], shape[1], train.color,
        len(train.classes), root,
    )
    return splits


def load_splits(config: RunConfig, rng: np.random.Generator) -> ImageSplits:
    """Load Fashion-MNIST (or the configured image folder), carve the validation set out of the
    training set, scale each split once."""
    if config.data.images is not None:
        return load_folder_splits(config, rng)
    dtype = np.dtype(config.run.dtype)
    dataset = load_dataset(config)
    train_idx, val_idx = split_validation(len(dataset.x_train), config.data.val_size, rng)
    # Select on the uint8 images, then scale: no float copy of all 60000 images.
    x_val, y_val = None, None
    if len(val_idx):
        x_val, y_val = pixels_to_features(dataset.x_train[val_idx], dtype), dataset.y_train[val_idx]
    splits = ImageSplits(
        x_train=pixels_to_features(dataset.x_train[train_idx], dtype),
        y_train=dataset.y_train[train_idx],
        x_val=x_val,
        y_val=y_val,
        x_test=pixels_to_features(dataset.x_test, dtype),
        y_test=dataset.y_test,
        source=str(dataset.data_dir),
        extra=ImageExtras(dataset.x_test, tuple(dataset.classes)),
    )
    logger.info(
        "data: %d train, %d validation, %d test images from %s",
        len(train_idx), len(val_idx), len(splits.y_test), splits.data_dir,
    )
    return splits


def make_augment(config: RunConfig) -> ShiftFlip | None:
    """The configured training-time augmentation of the images, or None."""
    data = config.data
    if data.augment == "none":
        return None
    # A folder's grayscale images are S x S (check_resources refuses shift_flip on color images).
    height, width = FASHION_MNIST.image_shape if data.images is None else (data.image_size, data.image_size)
    return ShiftFlip(height, width, max_shift=data.max_shift, flip_p=data.flip_p)


# -- memory ------------------------------------------------------------------------------------


def _available_memory() -> int | None:
    """Bytes of memory the system can give this process now (Linux ``MemAvailable``), or None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as file:
            for line in file:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


EVAL_BATCH = 8192
"""Rows per forward pass when scoring an MLP (``predict_logits``'s default)."""

VIT_EVAL_BATCH = 512
"""Images per forward pass when scoring a ViT. Its activations grow with the tokens, not the
pixels: at 50 tokens of width 64 one image's forward pass holds about 50 x (4 x 64 + 128) floats a
block and 4 x 50 x 50 attention weights a head set, so 8192 images at once took 1.8 GB for a model
of 205k parameters. 512 keeps the forward pass in the tens of megabytes and the products large:
``mlpkit evaluate`` of a trained run peaked at 440 MB in 3.8 s, against 1,076 MB in 6.8 s at 8192,
with the same scores."""


def training_memory(spec: MLPSpec, config: RunConfig, n_train: int) -> tuple[int, str]:
    """Estimate the bytes training ``spec`` takes beyond the data, and say where they go.

    Parameters: weights, gradients, the optimizer's buffers (momentum 1, Adam 2), and the copies
    the loop keeps (the best epoch's weights; the last good epoch's weights and optimizer state,
    for the roll-back on divergence). Activations: forward output, activation and gradient of each
    layer for one training batch, and two arrays per layer for one scoring batch.
    """
    itemsize = np.dtype(config.run.dtype).itemsize
    optim = config.optim
    buffers = 2 if optim.optimizer in ("adam", "adamw") else int(optim.momentum > 0)
    copies = 1 + 1 + buffers + 1 + (1 + buffers)  # weights, grads, buffers, best, last good (+buffers)
    one_copy = spec.num_parameters * itemsize
    params = one_copy * copies
    widths = sum(spec.hidden_features) + spec.out_features
    batch = min(optim.batch_size, n_train)
    activations = (3 * batch + 2 * EVAL_BATCH) * widths * itemsize
    kept = "weights, gradients, " + ("optimizer state, " if buffers else "") + "best and last-good copies"
    detail = (
        f"{kept}: {copies} x {_bytes(one_copy)} = {_bytes(params)}; activations of a training batch of "
        f"{batch} and a scoring batch of {EVAL_BATCH}: {_bytes(activations)}"
    )
    return params + activations, detail


def check_memory(spec: MLPSpec, config: RunConfig, n_train: int, *, device: str = "cpu") -> None:
    """Refuse a network that cannot fit in memory, before allocating it (CPU training only)."""
    if not device.startswith("cpu"):
        return  # a GPU's memory is the device's to report, when it allocates
    needed, detail = training_memory(spec, config, n_train)
    available = _available_memory()
    if available is not None and needed > available:
        raise ConfigError(
            f"training this network needs about {_bytes(needed)} of memory ({detail}), but "
            f"{_bytes(available)} are available; use fewer or narrower hidden layers (--hidden) "
            "or a smaller --batch-size"
        )


def log_model(spec: MLPSpec, config: RunConfig, n_train: int) -> None:
    itemsize = np.dtype(config.run.dtype).itemsize
    logger.info(
        "model: %s, %s parameters (%s as %s)",
        spec.describe(), f"{spec.num_parameters:,}", _bytes(spec.num_parameters * itemsize), config.run.dtype,
    )
    if config.optim.batch_size > n_train:
        logger.warning(
            "batch_size %d is larger than the %d training images: each epoch is one batch of %d",
            config.optim.batch_size, n_train, n_train,
        )


# -- the task given to the runner ------------------------------------------------------------------


def model_metadata(
    spec: MLPSpec | Mapping[str, Any], classes: tuple[str, ...], epoch: int, engine: str
) -> dict[str, str]:
    """safetensors metadata (str -> str): enough to rebuild the network without config.json.

    ``spec`` is an MLP's :class:`MLPSpec`, or a ViT's constructor arguments (``ViT.arguments``).
    """
    described = (
        {"format": "mlpkit.mlp", "spec": json.dumps(spec.to_dict())}
        if isinstance(spec, MLPSpec)
        else {"format": "mlpkit.vit", "vit": json.dumps(dict(spec))}
    )
    return {
        **described,
        "classes": json.dumps(list(classes)),
        "epoch": str(epoch),
        "engine": engine,
        "mlpkit_version": __version__,
    }


def score(model: ImageModel, x: np.ndarray, y: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
    """Accuracy and mean cross-entropy of ``model`` on (x (N, D), y (N,)); also the predictions (N,)."""
    logits = model.logits(x)                                               # (N, C)
    predicted = logits.argmax(axis=1)                                      # (N,)
    return {"accuracy": accuracy(y, predicted), "loss": log_loss(y, logits=logits)}, predicted


def _vit_logits(module: Any, x: np.ndarray, *, batch_size: int = VIT_EVAL_BATCH) -> np.ndarray:
    """Logits (N, C) of the torch ``module`` on features (N, D), in evaluation mode and in batches."""
    import torch

    dtype = next(module.parameters()).dtype
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            parts = [
                module(torch.as_tensor(x[i : i + batch_size], dtype=dtype)).numpy()
                for i in range(0, len(x), batch_size)
            ]
    finally:
        module.train(was_training)
    if not parts:
        raise ValueError("cannot predict on an empty array (0 samples)")
    return np.concatenate(parts)


@dataclass(frozen=True, eq=False)
class ImageModel:
    """An image run's network outside training, rebuilt from the weights file's metadata.

    The one path by which an image run is scored: :meth:`FashionMNISTTask.finish` rebuilds its
    model from the metadata it writes into ``model.safetensors``, and :func:`load_run` from the
    metadata it reads back, so ``summary.json`` and ``mlpkit evaluate`` compute the same numbers
    the same way. An MLP is scored by the NumPy network (its weights load in either engine); a
    ViT by its torch module.

    Parameters
    ----------
    kind : {"mlp", "vit"}
    network : Sequential or torch.nn.Module
        The NumPy engine's network (``kind`` mlp) or :class:`mlpkit.models.vit.ViT`.
    spec : MLPSpec or None
        The MLP's spec (None for a ViT).
    image_shape : (int, int) or None
        (H, W) for a ViT, None for an MLP (which takes any flattened row of ``in_features``).
    in_features : int
        D, pixels per image.
    num_classes : int
    num_parameters : int
    description : str
        One line for reports and figure titles.
    """

    kind: str
    network: Any
    spec: MLPSpec | None
    image_shape: tuple[int, int] | None
    in_features: int
    num_classes: int
    num_parameters: int
    description: str

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], dtype: np.dtype) -> ImageModel:
        """The network the metadata describes (``format`` ``mlpkit.mlp`` or ``mlpkit.vit``), weights
        not loaded yet.

        Raises
        ------
        KeyError, TypeError, ValueError
            When the metadata does not describe either.
        """
        if metadata.get("format") == "mlpkit.vit":
            import torch

            from mlpkit.models.vit import ViT

            arguments = json.loads(metadata["vit"])
            with torch.random.fork_rng():  # the initial draw is overwritten: leave torch's generator alone
                module = ViT(**arguments).to(getattr(torch, np.dtype(dtype).name))
            module.eval()
            h, w = module.image_size
            m = arguments
            description = (
                f"ViT {h}x{w}/{m['patch_size'][0]}, dim {m['dim']}, depth {m['depth']}, heads {m['heads']}, "
                f"mlp {m['mlp_dim']}, pool {m['pool']}"
            )
            count = sum(p.numel() for p in module.parameters())
            return cls("vit", module, None, (h, w), h * w * module.channels, arguments["num_classes"],
                       count, description)
        spec = MLPSpec.from_dict(json.loads(metadata["spec"]))
        network = build_mlp(spec, rng=np.random.default_rng(0), dtype=np.dtype(dtype))
        network.eval()
        return cls("mlp", network, spec, None, spec.in_features, spec.out_features, spec.num_parameters,
                   spec.describe())

    @property
    def dtype(self) -> np.dtype:
        """The dtype the network computes in (features are cast to it)."""
        if self.kind == "mlp":
            return np.dtype(self.network.dtype)
        return np.dtype(str(next(self.network.parameters()).dtype).removeprefix("torch."))

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Copy weights in the file layout (the names and shapes of ``model.safetensors``) in."""
        if self.kind == "mlp":
            self.network.load_state_dict(dict(state))
        else:
            from mlpkit.torch_engine import load_state_arrays

            load_state_arrays(self.network, state)

    def load_file(self, path: Path) -> None:
        """Load the weights of a ``model.safetensors`` file (checked against the network)."""
        if self.kind == "mlp":
            load_weights(self.network, path)
        else:
            from mlpkit.torch_engine import load_torch_weights

            load_torch_weights(self.network, path)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Logits (N, C) of features (N, D), in evaluation mode."""
        x = np.asarray(x, dtype=self.dtype)
        if self.kind == "mlp":
            return predict_logits(self.network, x)
        return _vit_logits(self.network, x)


class FashionMNISTTask(Task):
    """Image classification on Fashion-MNIST (or files of its format): an MLP on the pixels, softmax
    cross-entropy, accuracy; both engines (the NumPy engine builds from :meth:`spec`)."""

    name = "fashion_mnist"
    numpy_engine = True
    monitor_modes: ClassVar[Mapping[str, str]] = {
        "val_loss": "min", "val_accuracy": "max", "train_loss": "min",
    }
    test_scores: ClassVar[tuple[str, ...]] = ("accuracy", "loss")

    config: RunConfig

    def recorded(self) -> RunConfig:
        config = super().recorded()
        paths = {key: absolute(value) for key in ("data_dir", "images")
                 if (value := getattr(config.data, key)) is not None}
        if not paths:
            return config
        return dataclasses.replace(config, data=dataclasses.replace(config.data, **paths))

    def with_data_dir(self, data_dir: str | os.PathLike[str] | None) -> FashionMNISTTask:
        """Reading from ``data_dir``, or from where the run found its data.

        When the recorded directory is gone (the run was copied to another machine, the data
        moved) and no ``data_dir`` is given, the usual search takes over: ``$MLPKIT_DATA``, the
        cache, the system copy.
        """
        if self.config.data.images is not None:   # an image folder: read it from data_dir if given
            if data_dir is None:
                return self
            data = dataclasses.replace(self.config.data, images=absolute(data_dir))
            return FashionMNISTTask(dataclasses.replace(self.config, data=data))
        if data_dir is not None:
            return self._with_data(absolute(data_dir))
        recorded = self.config.data.data_dir
        if recorded is not None and not Path(recorded).is_dir():
            logger.warning(
                "the run's data directory %s does not exist; searching $MLPKIT_DATA, the cache and the "
                "system copy instead (pass --data-dir to choose)", recorded,
            )
            return self._with_data(None)
        return self

    def _with_data(self, data_dir: str | None) -> FashionMNISTTask:
        data = dataclasses.replace(self.config.data, data_dir=data_dir)
        return FashionMNISTTask(dataclasses.replace(self.config, data=data))

    @property
    def is_vit(self) -> bool:
        """Whether the model is a ViT (torch engine only) rather than an MLP."""
        return self.config.model.name == "vit"

    def load(self, split_rng: np.random.Generator, *, log: bool = True) -> ImageSplits:
        data = load_splits(self.config, split_rng)
        if log and not self.is_vit:
            log_model(self.spec(data), self.config, len(data.y_train))
        return data

    def spec(self, data: Splits) -> MLPSpec:
        """The network, sized by the data: D pixels in, C classes out (an MLP run)."""
        classes = len(data.extra.classes)
        return self.config.model.to_spec(in_features=data.x_train.shape[1], out_features=classes)

    def vit_arguments(self, data: Splits) -> dict[str, Any]:
        """The ViT's constructor arguments (as ``ViT.arguments`` records them), sized by the data.

        Raises
        ------
        ConfigError
            Naming the values when the images are not square or their side is not a multiple of
            the patch size.
        """
        from mlpkit.models.vit import check_vit_arguments

        model = self.config.model
        h, w, channels = data.extra.shape
        try:
            _, _, dim_head = check_vit_arguments(
                image_size=(h, w), patch_size=model.patch_size, dim=model.dim, heads=model.heads,
                dim_head=model.dim_head, channels=channels, pool=model.pool,
                pos_embedding=model.pos_embedding,
            )
        except ValueError as exc:
            raise ConfigError(f"[model] {exc}") from exc
        p = model.patch_size
        return {
            "image_size": [h, w], "patch_size": [p, p], "num_classes": len(data.extra.classes),
            "dim": model.dim, "depth": model.depth, "heads": model.heads, "mlp_dim": model.mlp_dim,
            "channels": channels, "dim_head": dim_head, "dropout": float(model.dropout),
            "emb_dropout": model.emb_dropout, "pool": model.pool,
            "pos_embedding": model.pos_embedding, "patch_norm": model.patch_norm,
        }

    def check_resources(self, data: Splits, *, device: str) -> None:
        if self.config.data.augment != "none" and data.extra.shape[2] != 1:
            raise ConfigError(
                f"[data] augment {self.config.data.augment!r} shifts and mirrors grayscale images, but "
                f"{data.source} was read in color: pass --color grayscale, or --augment none"
            )
        if self.is_vit:
            self.vit_arguments(data)  # the geometry, before anything is built
            return
        check_memory(self.spec(data), self.config, len(data.y_train), device=device)

    def build_model(self, data: Splits, init_rng: np.random.Generator) -> Any:
        import torch

        from mlpkit.torch_engine import build_torch_mlp

        dtype = getattr(torch, self.config.run.dtype)
        if self.is_vit:
            from mlpkit.models.vit import ViT

            # Drawn from torch's generator, which the runner seeded from the run's seed.
            vit = ViT(**self.vit_arguments(data)).to(dtype)
            count = sum(p.numel() for p in vit.parameters())
            logger.info("model: %s, %s parameters", self.image_model(data).description, f"{count:,}")
            return vit
        return build_torch_mlp(self.spec(data), rng=init_rng, dtype=dtype)

    def image_model(self, data: Splits) -> ImageModel:
        """The run's network as :func:`load_run` rebuilds it, for scoring (weights not loaded)."""
        return ImageModel.from_metadata(self.model_metadata(data, 0, ""), np.dtype(self.config.run.dtype))

    def numpy_augment(self) -> ShiftFlip | None:
        return make_augment(self.config)

    def trainer_options(self, model: Any) -> dict[str, Any]:
        from mlpkit.train.torch_trainer import build_loss

        options = {"loss": build_loss("cross_entropy"), "augment": make_augment(self.config)}
        if self.is_vit:
            options["eval_batch_size"] = VIT_EVAL_BATCH
        return options

    def model_metadata(self, data: Splits, epoch: int, engine: str) -> dict[str, str]:
        described = self.vit_arguments(data) if self.is_vit else self.spec(data)
        return model_metadata(described, data.extra.classes, epoch, engine)

    def describe_epoch(self, record: Mapping[str, Any]) -> str:
        return (
            f"train_loss {record['train_loss']:.4f}  train_accuracy {_fmt(record['train_accuracy'])}  "
            f"val_loss {_fmt(record['val_loss'])}  val_accuracy {_fmt(record['val_accuracy'])}  "
            f"lr {record['lr']:.3g}  ({record['seconds']:.2f} s)"
        )

    def finish(self, run: FinishedRun) -> dict[str, Any]:
        """Score the last and the best weights on the test set; write the figures, summary and report.

        The model is rebuilt from the weights file's metadata (:class:`ImageModel`), as
        :func:`evaluate_run` rebuilds it: an MLP is scored by the NumPy network whichever engine
        trained it (their weights share one layout), a ViT by its torch module. So
        ``summary.json`` holds the numbers :func:`evaluate_run` reproduces.
        """
        data, history, run_dir = run.data, run.history, run.run_dir
        extra: ImageExtras = data.extra
        model = self.image_model(data)
        model.load_state(run.last_state)
        final, final_pred = score(model, data.x_test, data.y_test)
        model.load_state(run.best_state)
        best, best_pred = score(model, data.x_test, data.y_test)
        # model.safetensors already holds these weights: the epoch writer saved them when they were current.
        saved, predicted = (best, best_pred) if run.restore_best else (final, final_pred)
        best_record = history.records[history.best_epoch - 1]

        figures: dict[str, str] = {}
        if importlib.util.find_spec("matplotlib") is not None:
            from mlpkit.evaluate.plots import plot_curves, plot_predictions

            title = f"{run_dir.name}: test accuracy {saved['accuracy']:.4f} ({model.description})"
            plot_curves(history.records, run_dir / CURVES_FILE, best_epoch=history.best_epoch, title=title)
            shown = slice(0, PREVIEW_IMAGES)
            h, w, channels = extra.shape
            images = extra.test_images[shown].reshape(-1, h, w, channels)      # (25, H, W, C)
            images = images[..., 0] if channels == 1 else images
            plot_predictions(images, data.y_test[shown], predicted[shown], extra.classes,
                             run_dir / PREDICTIONS_FILE, ink=self.config.data.images is None)
            figures = {"loss and accuracy curves": CURVES_FILE, "test predictions": PREDICTIONS_FILE}
        else:
            logger.warning("matplotlib is not installed: no PNG figures (pip install 'mlpkit[plot]')")

        facts = dict(run.facts)
        summary: dict[str, Any] = {
            "status": facts.pop("status"),
            "test_accuracy": saved["accuracy"],
            "test_loss": saved["loss"],
            "saved_weights": facts.pop("saved_weights"),
            "final_test_accuracy": final["accuracy"],
            "final_test_loss": final["loss"],
            "best_epoch_test_accuracy": best["accuracy"],
            "best_epoch_test_loss": best["loss"],
            "best_epoch": facts.pop("best_epoch"),
            "monitor": facts.pop("monitor"),
            "best_val_loss": best_record["val_loss"],
            "best_val_accuracy": best_record["val_accuracy"],
            "epochs_run": facts.pop("epochs_run"),
            "stop_reason": facts.pop("stop_reason"),
            **data.sizes,
            "wall_seconds": facts.pop("wall_seconds"),
            "data_dir": data.source,
            **facts,
        }
        atomic_write_json(run_dir / SUMMARY_FILE, summary)
        report = render_report(
            title=run_dir.name,
            config=self.recorded().to_dict(),
            records=history.records,
            summary=summary,
            confusion=confusion_matrix(data.y_test, predicted, num_classes=len(extra.classes)),
            class_names=extra.classes,
            figures=figures,
            provenance=run.provenance,
            in_features=model.in_features,
            parameters=model.num_parameters,
        )
        atomic_write_text(run_dir / REPORT_FILE, report)
        return summary


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


# -- reusing a saved run -------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedRun:
    """A saved run, rebuilt: its configuration and its network with the saved weights.

    Parameters
    ----------
    run_dir : Path
    config : RunConfig
    spec : MLPSpec or None
        From the weights file's metadata; None for a ViT.
    classes : tuple of str
        Class names in label order, from the weights file's metadata.
    network : Sequential or torch.nn.Module
        In evaluation mode: the NumPy network of an MLP, the torch module of a ViT.
    model : ImageModel
        The network with what scores it (:meth:`ImageModel.logits`).
    """

    run_dir: Path
    config: RunConfig
    spec: MLPSpec | None
    classes: tuple[str, ...]
    network: Any
    model: ImageModel


def load_run(run_dir: str | os.PathLike[str]) -> LoadedRun:
    """Rebuild a run's network from ``config.json`` and ``model.safetensors``.

    Raises
    ------
    CheckpointError
        Naming the path: no such directory, a missing or invalid ``config.json``, a missing or
        corrupt ``model.safetensors``, or metadata that does not describe an mlpkit MLP or ViT.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"no run directory at {run_dir}")
    config_path, model_path = run_dir / CONFIG_FILE, run_dir / MODEL_FILE
    if not config_path.is_file():
        raise CheckpointError(f"{run_dir} is not a run directory: {CONFIG_FILE} is missing")
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise CheckpointError(f"{config_path} is not a valid run configuration: {exc}") from exc
    if not model_path.is_file():
        raise CheckpointError(
            f"{model_path} is missing: the run may have stopped before its first epoch finished "
            f"(see {run_dir / SUMMARY_FILE})"
        )
    metadata = read_metadata(model_path)
    kind = "ViT" if metadata.get("format") == "mlpkit.vit" else "MLP"
    try:
        model = ImageModel.from_metadata(metadata, np.dtype(config.run.dtype))
        classes = tuple(str(name) for name in json.loads(metadata["classes"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{model_path}: metadata does not describe an mlpkit {kind} ({type(exc).__name__}: {exc})"
        ) from exc
    if len(classes) != model.num_classes:
        raise CheckpointError(f"{model_path}: {len(classes)} class names for {model.num_classes} outputs")
    model.load_file(model_path)
    return LoadedRun(run_dir, config, model.spec, classes, model.network, model)


def evaluate_run(
    run_dir: str | os.PathLike[str], *, data_dir: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Score a saved run's model on the Fashion-MNIST test set, found as the run found it.

    Returns
    -------
    dict
        JSON-ready: ``test_accuracy``, ``test_loss`` and ``n_test``, the same numbers as the run's
        ``summary.json`` for the same data; ``per_class`` (class name -> ``precision``, ``recall``,
        ``f1``, ``support``), their ``macro`` and ``weighted`` means, ``class_names`` and
        ``confusion_matrix`` (C lists of C counts, rows true class, columns predicted class).

    Raises
    ------
    CheckpointError
        If the run directory is missing or corrupt (see :func:`load_run`).
    DataNotFoundError, DataFormatError
        If the test data cannot be loaded.
    """
    loaded = load_run(run_dir)
    warn_if_unfinished(loaded.run_dir, "scoring")
    config = FashionMNISTTask(loaded.config).with_data_dir(data_dir).config
    if config.data.images is not None:   # an image folder: its test split, as the run's seed made it
        folder = load_folder_splits(config, run_seeds(config.run.seed)[0])
        classes, x_test, y_test = folder.classes, folder.x_test.astype(loaded.model.dtype), folder.y_test
    else:
        dataset = load_dataset(config)
        classes, y_test = tuple(dataset.classes), dataset.y_test
        x_test = pixels_to_features(dataset.x_test, loaded.model.dtype)
    if classes != loaded.classes:
        raise CheckpointError(
            f"{run_dir}: the model's classes {loaded.classes} differ from the data's {classes}"
        )
    scores, predicted = score(loaded.model, x_test, y_test)
    confusion = confusion_matrix(y_test, predicted, num_classes=len(loaded.classes))  # (C, C)
    per_class = classification_scores(confusion)
    return {
        "test_accuracy": scores["accuracy"],
        "test_loss": scores["loss"],
        "n_test": len(y_test),
        "per_class": {
            name: {key: per_class[key][k].item() for key in ("precision", "recall", "f1", "support")}
            for k, name in enumerate(loaded.classes)
        },
        "macro": per_class["macro"],
        "weighted": per_class["weighted"],
        "class_names": list(loaded.classes),
        "confusion_matrix": confusion.tolist(),
    }


@dataclass(frozen=True)
class Predictions:
    """Class predictions for N images.

    Parameters
    ----------
    probabilities : ndarray of shape (N, C)
        Softmax of the logits, rows summing to 1.
    class_names : tuple of str
        The C class names.
    names : tuple of str or None
        One name per row: the image's file name, or ``FILE:i`` for the i-th image of an array file.
    true_labels : ndarray of shape (N,) or None
        The labels a CSV carried in a label column.
    notes : tuple of str
        What was done to the input on the way in (resized, converted, a column dropped).
    """

    probabilities: np.ndarray
    class_names: tuple[str, ...]
    names: tuple[str, ...] | None = None
    true_labels: np.ndarray | None = None
    notes: tuple[str, ...] = ()

    @property
    def labels(self) -> np.ndarray:
        """Predicted class index per row, (N,)."""
        labels: np.ndarray = self.probabilities.argmax(axis=1)
        return labels

    def top_k(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most probable classes of each row, most probable first.

        Returns
        -------
        classes : ndarray of shape (N, k) int
        probabilities : ndarray of shape (N, k)
        """
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(self.class_names):
            classes = len(self.class_names)
            raise ConfigError(f"top_k must be an int from 1 to the {classes} classes, got {k!r}")
        # A stable sort of -p keeps the lower class index first among equal probabilities, as argmax.
        classes = np.argsort(-self.probabilities, axis=1, kind="stable")[:, :k]        # (N, k)
        return classes, np.take_along_axis(self.probabilities, classes, axis=1)

    def to_csv(self, *, top_k: int = 1, probabilities: bool = False) -> str:
        """One line per image, with a header.

        Columns: ``row,name``, then ``class,class_name,probability`` (``top_k`` 1) or
        ``class_1,class_name_1,probability_1,...`` up to ``top_k``, then with ``probabilities``
        one column per class, headed by its name, holding its probability.
        """
        classes, probs = self.top_k(top_k)
        suffixes = [""] if top_k == 1 else [f"_{i}" for i in range(1, top_k + 1)]
        header = ["row", "name"]
        for suffix in suffixes:
            header += [f"class{suffix}", f"class_name{suffix}", f"probability{suffix}"]
        if probabilities:
            header += list(self.class_names)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        names = self.names or tuple(str(i) for i in range(len(self.probabilities)))
        for row, name in enumerate(names):
            cells: list[object] = [row, name]
            for label, p in zip(classes[row], probs[row], strict=True):
                cells += [int(label), self.class_names[label], f"{p:.6f}"]
            if probabilities:
                cells += [f"{p:.6f}" for p in self.probabilities[row]]
            writer.writerow(cells)
        return buffer.getvalue()


def _scorer(loaded: LoadedRun, runtime: str) -> Callable[[np.ndarray], np.ndarray]:
    """features (N, D) -> logits (N, K): by the run's own model, or by its ONNX export under onnxruntime."""
    from mlpkit.runtime import RUNTIMES, OnnxModel

    if check_choice("runtime", runtime, RUNTIMES) == "native":
        return loaded.model.logits
    exported = OnnxModel.for_run(loaded.run_dir)
    return lambda features: exported.run({"features": features})


def _predict_folder_run(
    loaded: LoadedRun, path: Path, scorer: Callable[[np.ndarray], np.ndarray]
) -> Predictions:
    """Classify an image file, or every image under a folder, with a run trained on an image
    folder: each read as its training images were (resized to S x S, in the run's channels)."""
    from mlpkit.data.image_folder import IMAGE_SUFFIXES, load_image

    size = loaded.config.data.image_size
    channels = loaded.model.in_features // (size * size)
    color = "rgb" if channels == 3 else "grayscale"
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        if not files:
            raise DataFormatError(f"{path} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
        names = tuple(str(p.relative_to(path)) for p in files)
    elif path.is_file():
        files, names = [path], (path.name,)
    else:
        raise DataNotFoundError(f"no image file or folder at {path}")
    pixels = np.stack([load_image(p, size=size, color=color).reshape(-1) for p in files])   # (N, S*S*C)
    logits = scorer(pixels_to_features(pixels, loaded.model.dtype))                         # (N, K)
    probabilities = np.exp(log_softmax(logits.astype(np.float64)))                          # (N, K)
    return Predictions(probabilities, loaded.classes, names, None, ())


def predict_run(
    run_dir: str | os.PathLike[str], file: str | os.PathLike[str], *, input_scale: str = "auto",
    runtime: str = "native",
) -> Predictions:
    """Classify the images in ``file`` with a saved run's model.

    Parameters
    ----------
    run_dir : str or os.PathLike
        A run directory written by :func:`train_run`.
    file : str or os.PathLike
        One image or many: PNG/JPEG files or a folder of them, IDX, ``.npy`` or ``.csv`` (see
        :func:`mlpkit.data.read_images`).
    input_scale : {"auto", "255", "1"}
        How the file's values relate to grey levels; ``"auto"`` refuses values that all lie in
        [0, 1] instead of guessing.
    runtime : {"native", "onnx"}
        Score with the run's own model, or with its ONNX export (``mlpkit export``) under onnxruntime.

    Returns
    -------
    Predictions

    Raises
    ------
    CheckpointError
        If the run directory is missing or corrupt.
    DataNotFoundError, DataFormatError
        If ``file`` is missing or malformed, or holds images of another size than the model's.
    """
    loaded = load_run(run_dir)
    warn_if_unfinished(loaded.run_dir, "predicting with")
    scorer = _scorer(loaded, runtime)
    if loaded.config.data.images is not None:
        return _predict_folder_run(loaded, Path(file), scorer)
    in_features = loaded.model.in_features
    side = math.isqrt(in_features)
    shape = loaded.model.image_shape or (
        FASHION_MNIST.image_shape if side * side != in_features else (side, side)
    )
    images = read_images(file, image_shape=shape, input_scale=input_scale)
    for note in images.notes:
        logger.info("%s: %s", file, note)
    if images.pixels.shape[1] != in_features:
        raise DataFormatError(
            f"{file} has {images.pixels.shape[1]} features, but the model expects {in_features}"
        )
    logits = scorer(pixels_to_features(images.pixels, loaded.model.dtype))                          # (N, C)
    probabilities = np.exp(log_softmax(logits.astype(np.float64)))                                    # (N, C)
    predictions = Predictions(probabilities, loaded.classes, images.names, images.labels, images.notes)
    if images.labels is not None:
        logger.info(
            "%s: accuracy %.4f against its label column (%d images)",
            file, accuracy(images.labels, predictions.labels), len(images.labels),
        )
    return predictions
