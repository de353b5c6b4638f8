"""Training loops: they own the loss, the optimizer, the loop and early stopping.

:class:`NumpyTrainer` drives the NumPy engine; the torch trainer lives in
:mod:`mlpkit.train.torch_trainer` and is imported only when asked for, so ``import mlpkit.train``
never imports torch.
"""

from __future__ import annotations

from mlpkit.train.early_stopping import EarlyStopping
from mlpkit.train.history import History
from mlpkit.train.numpy_trainer import NumpyTrainer, predict_logits

__all__ = ["EarlyStopping", "History", "NumpyTrainer", "predict_logits"]
