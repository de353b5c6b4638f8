"""Tasks: what is particular to one kind of data and objective, given to the one runner.

:func:`task_for` picks the task of a config by its class: a :class:`~mlpkit.config.RunConfig`
is the Fashion-MNIST image task (:mod:`mlpkit.tasks.fashion_mnist`), a
:class:`~mlpkit.config.CTRConfig` the CTR task (:mod:`mlpkit.tasks.ctr`), a
:class:`~mlpkit.config.TableConfig` a user's own table (:mod:`mlpkit.tasks.tabular`). None imports
torch until a model is built.
"""

from __future__ import annotations

from typing import Any

from mlpkit.config import CTRConfig, RunConfig, TableConfig
from mlpkit.tasks.base import Task

__all__ = ["Task", "task_for"]


def task_for(config: Any) -> Task:
    """The task that trains ``config``."""
    if isinstance(config, RunConfig):
        from mlpkit.tasks.fashion_mnist import FashionMNISTTask

        return FashionMNISTTask(config)
    if isinstance(config, CTRConfig):
        from mlpkit.tasks.ctr import CTRTask

        return CTRTask(config)
    if isinstance(config, TableConfig):
        from mlpkit.tasks.tabular import TableTask

        return TableTask(config)
    raise TypeError(
        f"no task trains a {type(config).__name__}; expected a RunConfig, a CTRConfig or a TableConfig"
    )
