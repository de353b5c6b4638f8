"""The Fashion-MNIST image classification task: pixels in, ten class logits out.

What a run of ``mlpkit train`` needs that is particular to images: loading the IDX files and
carving the validation set out of the training set, scaling grey levels 0..255 to [0, 1] (the one
place that scaling lives: training, evaluation and prediction all call :func:`pixels_to_features`),
the shift-and-flip augmentation, and the first test images for the prediction grid. The runner
(:mod:`mlpkit.run`) and the run directory (:mod:`mlpkit.rundir`) are the same for every task.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlpkit.config import RunConfig
from mlpkit.data.augment import ShiftFlip
from mlpkit.data.fashion_mnist import FASHION_MNIST, FashionMNIST, load_fashion_mnist
from mlpkit.errors import ConfigError

__all__ = [
    "MAX_PIXEL",
    "PREVIEW_IMAGES",
    "ImageSplits",
    "load_dataset",
    "load_splits",
    "make_augment",
    "pixels_to_features",
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
class ImageSplits:
    """The data of one run: features scaled to [0, 1] in the run's dtype, labels as int64."""

    x_train: np.ndarray                  # (N_train, 784)
    y_train: np.ndarray                  # (N_train,)
    x_val: np.ndarray | None             # (N_val, 784), None when val_size = 0
    y_val: np.ndarray | None             # (N_val,)
    x_test: np.ndarray                   # (N_test, 784)
    y_test: np.ndarray                   # (N_test,)
    test_images: np.ndarray              # (N_test, 784) uint8, for the prediction grid
    classes: tuple[str, ...]
    data_dir: Path


def load_splits(config: RunConfig, rng: np.random.Generator) -> ImageSplits:
    """Load Fashion-MNIST, carve the validation set out of the training set, scale each split once."""
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
        test_images=dataset.x_test,
        classes=tuple(dataset.classes),
        data_dir=Path(dataset.data_dir),
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
    height, width = FASHION_MNIST.image_shape
    return ShiftFlip(height, width, max_shift=data.max_shift, flip_p=data.flip_p)
