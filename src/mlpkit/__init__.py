"""mlpkit: multilayer perceptrons from first principles to production.

The NumPy engine (:mod:`mlpkit.engine`), the data loaders (:mod:`mlpkit.data`) and the trainer
(:mod:`mlpkit.train`) never import torch; the PyTorch blocks live in :mod:`mlpkit.blocks` and are
imported only when asked for.

Shape letters used in every docstring: **B** batch, **D** input width, **F** fields,
**E** embedding dim, **H** hidden width, **C** classes, **K** experts, **r** rank, **L** layers.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
