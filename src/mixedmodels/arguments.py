"""Checks of the arguments of public functions, made where the argument enters.

Each returns the argument in the form the library uses, or raises
:class:`TypeError` (wrong kind) or :class:`~mixedmodels.errors.MixedModelsError`
(right kind, wrong value) with a message naming the argument.  A string
``"False"`` is not a boolean and ``"0.9"`` is not a level: Python would take
the first as true and numpy would give a message about ufuncs for the second.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

import numpy as np

from .errors import ArgumentError, MixedModelsError


def boolean(value: Any, name: str) -> bool:
    """``value`` if it is a boolean (Python's or numpy's)."""
    if value is True or value is False:
        return value
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ArgumentError(f"{name} must be True or False, not {value!r}")


def level(value: Any, name: str = "level") -> float:
    """A confidence level strictly between 0 and 1."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ArgumentError(f"{name} must be a number between 0 and 1, not {value!r}")
    value = float(value)
    if not 0.0 < value < 1.0:
        raise MixedModelsError(f"{name} must be between 0 and 1 (exclusive), got {value}")
    return value


def positive_int(value: Any, name: str) -> int:
    """A positive integer (an integral float such as ``10.0`` is refused: say what you mean)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ArgumentError(f"{name} must be a positive integer, not {value!r}")
    if value < 1:
        raise MixedModelsError(f"{name} must be a positive integer, got {value}")
    return int(value)


def seed(value: Any, name: str = "seed") -> np.random.Generator:
    """A random generator from None, an integer, a SeedSequence or a Generator."""
    if value is None or isinstance(value, (np.random.SeedSequence, np.random.BitGenerator)):
        return np.random.default_rng(value)
    if isinstance(value, np.random.Generator):
        return value
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        if value < 0:
            raise MixedModelsError(f"{name} must be a non-negative integer, got {value}")
        return np.random.default_rng(int(value))
    raise ArgumentError(
        f"{name} must be None, a non-negative integer or a numpy Generator, not {value!r}"
    )


def choice(value: Any, name: str, options: Iterable[str], aliases: dict | None = None) -> str:
    """One of ``options`` (case-insensitive; ``aliases`` map other spellings to options)."""
    options = list(options)
    if not isinstance(value, str):
        raise ArgumentError(f"{name} must be one of {_listing(options)}, not {value!r}")
    key = value.lower()
    table = {o.lower(): o for o in options}
    table.update({k.lower(): v for k, v in (aliases or {}).items()})
    if key not in table:
        raise MixedModelsError(f"unknown {name} {value!r}: use {_listing(options)}")
    return table[key]


def finite_number(value: Any, name: str) -> float:
    """A finite real number."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ArgumentError(f"{name} must be a number, not {value!r}")
    if not math.isfinite(float(value)):
        raise MixedModelsError(f"{name} must be finite, got {value}")
    return float(value)


def theta(
    value: Any, lower: np.ndarray, name: str = "theta", *, bounded: bool = True
) -> np.ndarray:
    """θ: finite numbers, one per relative covariance parameter (``len(lower)``), on or
    above ``lower`` when ``bounded`` (a start below them is moved onto them by the
    optimizer)."""
    n = len(lower)
    if value is None or isinstance(value, (str, bytes, dict)):
        raise ArgumentError(f"{name} must be {n} numbers (one per θ), not {value!r}")
    try:
        array = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ArgumentError(f"{name} must be {n} numbers (one per θ), not {value!r}") from None
    if array.shape != np.shape(lower):
        raise MixedModelsError(
            f"{name} must have {n} value{'s' if n != 1 else ''} (one per θ), "
            f"got shape {array.shape}"
        )
    if not np.isfinite(array).all():
        raise MixedModelsError(f"{name} must be finite, got {array}")
    if bounded and np.any(array < lower):
        below = int(np.flatnonzero(array < lower)[0])
        raise MixedModelsError(
            f"{name} is below its lower bounds at position {below} ({array[below]:g} < 0): "
            "the diagonal elements of each λ are non-negative"
        )
    return array


def _listing(options: list[str]) -> str:
    quoted = [repr(o) for o in options]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]
