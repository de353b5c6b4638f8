"""Files on disk to named NumPy arrays: the IDX reader, the Fashion-MNIST loader, and images to classify.

No torch here.
"""

from __future__ import annotations

from mlpkit.data.fashion_mnist import (
    FASHION_MNIST_CLASSES,
    OFFICIAL_URL,
    FashionMNIST,
    load_fashion_mnist,
    locate_fashion_mnist,
)
from mlpkit.data.idx import read_idx, read_idx_bytes, write_idx
from mlpkit.data.images import ImageInput, read_images

__all__ = [
    "FASHION_MNIST_CLASSES",
    "OFFICIAL_URL",
    "FashionMNIST",
    "ImageInput",
    "load_fashion_mnist",
    "locate_fashion_mnist",
    "read_idx",
    "read_idx_bytes",
    "read_images",
    "write_idx",
]
