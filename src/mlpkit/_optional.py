"""Optional dependencies: import one, or fail with one line naming the extra that installs it.

mlpkit's core needs NumPy, SciPy, safetensors and tqdm only. Figures need matplotlib, the torch
engine torch, the estimators scikit-learn, image files Pillow, ``--log tensorboard`` tensorboard. A
feature that needs one of them calls :func:`require` before it does any work (so nothing is
half-written), and the user reads::

    mlpkit: error: the torch engine needs torch, which is not installed: pip install 'mlpkit[torch]'
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from mlpkit.errors import MissingDependencyError

__all__ = ["EXTRAS", "is_installed", "require"]

EXTRAS: dict[str, str] = {
    "matplotlib": "plot",
    "torch": "torch",
    "sklearn": "sklearn",
    "PIL": "images",
    "pyarrow": "tables",
    "pandas": "tables",
    "tensorboard": "log",
    "optuna": "tune",
    "onnx": "onnx",
    "onnxscript": "onnx",
    "onnxruntime": "onnx",
}
"""Top-level module -> the ``mlpkit[...]`` extra that installs it (see pyproject.toml)."""


def is_installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it.

    Examples
    --------
    >>> is_installed("numpy"), is_installed("no_such_module_mlpkit")
    (True, False)
    """
    return importlib.util.find_spec(module) is not None


def require(module: str, *, feature: str) -> ModuleType:
    """Import ``module``, or raise :class:`MissingDependencyError` naming ``feature`` and the extra.

    Parameters
    ----------
    module : str
        A top-level module name, a key of :data:`EXTRAS` (``"matplotlib"``, ``"torch"``, ...).
    feature : str
        What needs it, as the user would say it (``"the torch engine"``, ``"figures"``).

    Examples
    --------
    >>> try:
    ...     require("matplotlib_x", feature="figures")
    ... except MissingDependencyError as exc:
    ...     print(exc)
    figures needs matplotlib_x, which is not installed: pip install matplotlib_x
    """
    if not is_installed(module):
        extra = EXTRAS.get(module)
        how = f"pip install 'mlpkit[{extra}]'" if extra else f"pip install {module}"
        raise MissingDependencyError(f"{feature} needs {module}, which is not installed: {how}")
    return importlib.import_module(module)
