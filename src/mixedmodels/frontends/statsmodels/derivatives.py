"""Finite-difference score and Hessian of statsmodels' profiled log-likelihood.

statsmodels differentiates its log-likelihood analytically, group by group.
Here the log-likelihood is evaluated on the engine's factor (any grouping
structure, crossed terms included), and its derivatives are taken by central
differences with steps set by each parameter's own scale: a fraction of the
standard error for a fixed effect, of the variance for a variance parameter.
The gradient is Richardson-extrapolated (error of order h⁴).

Where a step would leave the parameter space (a variance on zero) the point
has no two-sided derivative: the gradient falls back to a one-sided formula
and the Hessian's entries there are NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

__all__ = ["gradient", "hessian"]


def _central(f: Callable[[np.ndarray], float], x: np.ndarray, i: int, h: float) -> float:
    e = np.zeros_like(x)
    e[i] = h
    return (f(x + e) - f(x - e)) / (2 * h)


def gradient(f: Callable[[np.ndarray], float], x: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """∇f(x): Richardson-extrapolated central differences, one-sided where f is not finite."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty(len(x))
    f0 = None
    for i, h in enumerate(steps):
        coarse, fine = _central(f, x, i, h), _central(f, x, i, h / 2)
        if math.isfinite(coarse) and math.isfinite(fine):
            out[i] = (4 * fine - coarse) / 3
            continue
        # One-sided second-order formula on the side where f is defined.
        if f0 is None:
            f0 = f(x)
        for sign in (1.0, -1.0):
            e = np.zeros_like(x)
            e[i] = sign * h
            f1, f2 = f(x + e), f(x + 2 * e)
            if math.isfinite(f1) and math.isfinite(f2):
                out[i] = sign * (-3 * f0 + 4 * f1 - f2) / (2 * h)
                break
        else:
            out[i] = math.nan
    return out


def hessian(f: Callable[[np.ndarray], float], x: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """∇²f(x) by central differences; NaN entries where a step leaves f's domain."""
    x = np.asarray(x, dtype=np.float64)
    m = len(x)
    f0 = f(x)
    plus = np.empty(m)
    minus = np.empty(m)
    eye = np.diag(steps)
    for i in range(m):
        plus[i], minus[i] = f(x + eye[i]), f(x - eye[i])
    out = np.empty((m, m))
    for i in range(m):
        out[i, i] = (plus[i] - 2 * f0 + minus[i]) / steps[i] ** 2
        for j in range(i):
            value = (
                f(x + eye[i] + eye[j])
                - f(x + eye[i] - eye[j])
                - f(x - eye[i] + eye[j])
                + f(x - eye[i] - eye[j])
            ) / (4 * steps[i] * steps[j])
            out[i, j] = out[j, i] = value
    out[~np.isfinite(out)] = math.nan
    return out
