"""Files on disk to named NumPy arrays: the IDX reader, the Fashion-MNIST loader, images to classify,
and tabular CTR data (CSV/Parquet, encoded in chunks to memory-mapped arrays; pyarrow, the ``tables`` extra).

No torch here, and pyarrow only when a table is read.
"""

from __future__ import annotations

from mlpkit.data.fashion_mnist import (
    FASHION_MNIST_CLASSES,
    OFFICIAL_URL,
    FashionMNIST,
    load_fashion_mnist,
    locate_fashion_mnist,
)
from mlpkit.data.fields import Field, FieldSpec
from mlpkit.data.idx import read_idx, read_idx_bytes, write_idx
from mlpkit.data.images import ImageInput, read_images
from mlpkit.data.table_spec import ColumnConfig, TableSpec, load_table_spec
from mlpkit.data.tables import (
    FittedColumn,
    FittedTable,
    TableDataset,
    TableSplit,
    encode_file,
    load_table_dataset,
)

__all__ = [
    "FASHION_MNIST_CLASSES",
    "OFFICIAL_URL",
    "ColumnConfig",
    "FashionMNIST",
    "Field",
    "FieldSpec",
    "FittedColumn",
    "FittedTable",
    "ImageInput",
    "TableDataset",
    "TableSpec",
    "TableSplit",
    "encode_file",
    "load_fashion_mnist",
    "load_table_dataset",
    "load_table_spec",
    "locate_fashion_mnist",
    "read_idx",
    "read_idx_bytes",
    "read_images",
    "write_idx",
]
