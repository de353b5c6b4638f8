"""Argument checks at the library boundary, with one message template.

Each check raises ``ValueError`` naming the parameter, the rule and the offending value, e.g.
``lr must be a positive float, got 0.0``; never ``assert``, which ``python -O`` strips.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


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
        raise ValueError(f"{name} must be one of {valid}, got {value!r}")
    return value
