"""Numerical derivatives with Richardson extrapolation.

Satterthwaite's degrees of freedom need the Hessian of the deviance in the
variance parameters and the Jacobian of Var(β̂); both are taken numerically
here.  Central differences are refined by Richardson extrapolation (halving
the step, cancelling the h², h⁴, … error terms), the scheme numDeriv uses for
lmerTest, so that the derivatives are accurate to many digits without an
analytic gradient.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# Number of step halvings extrapolated over, and the first step: relative to the
# value, with a floor.  Large first steps keep rounding noise in the objective
# (about 1e-13 of it) out of the second differences; Richardson extrapolation
# removes the truncation error they would otherwise bring.  Four halvings from
# 5 % were not enough where the criterion curves sharply (a singular fit of the
# article's students model: age's df 1082.1 against the converged 1083.0);
# six from 10 % reach the same value as smaller first steps.
_RICHARDSON_STEPS = 6
_RELATIVE_STEP = 1e-1
_MIN_STEP = 1e-2


def _extrapolate(estimates: list[np.ndarray]) -> np.ndarray:
    """Richardson table for central differences (error in even powers of h, h halved)."""
    table = list(estimates)
    for m in range(1, len(table)):
        factor = 4.0**m
        table = [(factor * table[k + 1] - table[k]) / (factor - 1.0) for k in range(len(table) - 1)]
    return table[0]


def steps(x: np.ndarray) -> np.ndarray:
    """First step per coordinate: relative to the value, absolute near zero."""
    return np.maximum(_RELATIVE_STEP * np.abs(x), _MIN_STEP)


def evaluation_count(k: int) -> int:
    """How many times :func:`gradient_and_hessian` calls its function in k dimensions."""
    return 1 + _RICHARDSON_STEPS * (2 * k + k * (k - 1))


def gradient_and_hessian(
    func: Callable[[np.ndarray], np.ndarray], x: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Value, gradient and Hessian of a vector-valued function.

    Parameters
    ----------
    func : callable
        Maps a point (k,) to an array of shape (m,).
    x : ndarray, shape (k,)
        Where to differentiate.  The function must be defined on both sides
        of every coordinate (no one-sided differences here).

    Returns
    -------
    value : ndarray, shape (m,)
    gradient : ndarray, shape (m, k)
    hessian : ndarray, shape (m, k, k)
    """
    x = np.asarray(x, dtype=np.float64)
    k = len(x)
    f0 = np.asarray(func(x), dtype=np.float64)
    h0 = steps(x)
    grads, hessians = [], []
    for r in range(_RICHARDSON_STEPS):
        h = h0 / 2.0**r
        plus = [np.asarray(func(x + h[i] * np.eye(k)[i])) for i in range(k)]
        minus = [np.asarray(func(x - h[i] * np.eye(k)[i])) for i in range(k)]
        grad = np.stack([(plus[i] - minus[i]) / (2 * h[i]) for i in range(k)], axis=-1)
        hess = np.zeros((*f0.shape, k, k))
        for i in range(k):
            hess[..., i, i] = (plus[i] - 2 * f0 + minus[i]) / h[i] ** 2
        for i in range(k):
            for j in range(i):
                step = np.zeros(k)
                step[i], step[j] = h[i], h[j]
                both = np.asarray(func(x + step)) - 2 * f0 + np.asarray(func(x - step))
                value = (both - hess[..., i, i] * h[i] ** 2 - hess[..., j, j] * h[j] ** 2) / (
                    2 * h[i] * h[j]
                )
                hess[..., i, j] = hess[..., j, i] = value
        grads.append(grad)
        hessians.append(hess)
    return f0, _extrapolate(grads), _extrapolate(hessians)


def jacobian(func: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray:
    """Jacobian of an array-valued function: shape ``func(x).shape + (k,)``."""
    x = np.asarray(x, dtype=np.float64)
    k = len(x)
    h0 = steps(x)
    estimates = []
    for r in range(_RICHARDSON_STEPS):
        h = h0 / 2.0**r
        columns = []
        for i in range(k):
            e = np.zeros(k)
            e[i] = h[i]
            columns.append((np.asarray(func(x + e)) - np.asarray(func(x - e))) / (2 * h[i]))
        estimates.append(np.stack(columns, axis=-1))
    return _extrapolate(estimates)
