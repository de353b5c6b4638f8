"""Argument checks at the library boundary, with one message template.

Each check raises ``ValueError`` naming the parameter, the rule and the offending value, e.g.
``lr must be a positive float, got 0.0``; never ``assert``, which ``python -O`` strips.
"""

from __future__ import annotations

import contextlib
import difflib
import math
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def check_positive_int(name: str, value: object) -> int:
    """Return ``value`` if it is an int >= 1, else raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def check_nonnegative_int(name: str, value: object) -> int:
    """Return ``value`` if it is an int >= 0, else raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    return value


def _as_float(name: str, value: object, rule: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be {rule}, got {value!r}")
    result = float(value)
    if not math.isfinite(result):
        raise ValueError(f"{name} must be {rule}, got {value!r}")
    return result


def check_positive_float(name: str, value: object) -> float:
    """Return ``value`` as a float if it is finite and > 0, else raise ``ValueError``."""
    result = _as_float(name, value, "a positive float")
    if result <= 0:
        raise ValueError(f"{name} must be a positive float, got {value!r}")
    return result


def check_nonnegative_float(name: str, value: object) -> float:
    """Return ``value`` as a float if it is finite and >= 0, else raise ``ValueError``."""
    result = _as_float(name, value, "a non-negative float")
    if result < 0:
        raise ValueError(f"{name} must be a non-negative float, got {value!r}")
    return result


def check_probability(name: str, value: object, *, inclusive_high: bool = False) -> float:
    """Return ``value`` if it lies in [0, 1) (or [0, 1] with ``inclusive_high``)."""
    interval = "[0, 1]" if inclusive_high else "[0, 1)"
    result = _as_float(name, value, f"a float in {interval}")
    if result < 0 or result > 1 or (result == 1 and not inclusive_high):
        raise ValueError(f"{name} must be a float in {interval}, got {value!r}")
    return result


def check_choice(name: str, value: object, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``; the error lists the valid names."""
    valid = sorted(choices)
    if not isinstance(value, str) or value not in valid:
        close = difflib.get_close_matches(value, valid, n=1, cutoff=0.7) if isinstance(value, str) else []
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"{name} must be one of {valid}, got {value!r}{hint}")
    return value


def check_features(name: str, x: object, n_features: int | None = None) -> np.ndarray:
    """Return ``x`` as a 2-D floating array after checking shape and finiteness.

    Raises ``DataFormatError`` naming the problem: not 2-D, the wrong number of features
    (both counts), or NaN/inf (how many, and the first offending row and column).
    """
    import numpy as np

    from mlpkit.errors import DataFormatError

    array = np.asarray(x)
    if array.ndim != 2:
        raise DataFormatError(f"{name} must be 2-D (samples, features), got shape {array.shape}")
    if n_features is not None and array.shape[1] != n_features:
        raise DataFormatError(f"{name} has {array.shape[1]} features, but the model expects {n_features}")
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise DataFormatError(f"{name} must be numeric, got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = np.argwhere(~np.isfinite(array))
        row, col = bad[0]
        raise DataFormatError(
            f"{name} contains {len(bad)} NaN or infinite value(s); first at row {row}, "
            f"column {col}: {array[row, col].item()!r}"
        )
    return array


def check_labels(name: str, y: object, num_classes: int, n_samples: int | None = None) -> np.ndarray:
    """Return ``y`` as an int64 vector of class indices in ``[0, num_classes)``.

    Raises ``DataFormatError`` naming the problem: wrong shape or length, non-integer values,
    or labels outside the class range (the offending value and its index).
    """
    import numpy as np

    from mlpkit.errors import DataFormatError

    labels = np.asarray(y)
    if labels.ndim != 1:
        raise DataFormatError(f"{name} must be 1-D (samples,), got shape {labels.shape}")
    if n_samples is not None and labels.shape[0] != n_samples:
        raise DataFormatError(f"{name} has {labels.shape[0]} labels for {n_samples} samples")
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.issubdtype(labels.dtype, np.floating) or not np.all(np.isfinite(labels)):
            raise DataFormatError(f"{name} must hold integer class indices, got dtype {labels.dtype}")
        if np.any(labels != np.round(labels)):
            bad = int(np.argmax(labels != np.round(labels)))
            raise DataFormatError(
                f"{name} must hold integer class indices, got {labels[bad].item()!r} at index {bad}"
            )
    out_of_range = (labels < 0) | (labels >= num_classes)
    if out_of_range.any():
        bad = int(np.argmax(out_of_range))
        raise DataFormatError(
            f"{name} has label {labels[bad].item()!r} at index {bad}, "
            f"outside the class range [0, {num_classes})"
        )
    return labels.astype(np.int64, copy=False)


@contextlib.contextmanager
def config_section(name: str) -> Iterator[None]:
    """Turn the ``ValueError`` of an argument check into a ``ConfigError`` naming ``[name]``.

    Shared by every configuration file's sections: the run config's ``[optim]`` and a table
    spec's ``[column]`` report their errors the same way.
    """
    from mlpkit.errors import ConfigError

    try:
        yield
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(f"[{name}] {exc}") from exc


def set_frozen(obj: object, name: str, value: object) -> None:
    """Store a normalised value on a frozen dataclass (a TOML list as a tuple, 1 as 1.0, a default)."""
    object.__setattr__(obj, name, value)
