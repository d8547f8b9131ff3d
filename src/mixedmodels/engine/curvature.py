"""Gradient and Hessian of an objective by finite differences.

lme4 estimates the Hessian of a GLMM's objective in (θ, β) at the optimum
(``deriv12``: central differences with an absolute step of 1e-4, no bounds)
and inverts it for the standard errors of β.  :func:`central_derivatives`
takes the same points from the objective alone; each cross term uses the two
points x ± (δᵢeᵢ + δⱼeⱼ) with the diagonal ones (second-order accurate, half of
``deriv12``'s four points).  Where the exact gradient is available,
forward differences of it need far fewer evaluations
(:func:`hessian_from_forward_gradients`, what the Laplace fit uses).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# lme4's deriv12 step.
STEP = 1e-4


def central_derivatives(
    objective: Callable[[np.ndarray], float],
    x: np.ndarray,
    value: float | None = None,
    step: float | np.ndarray = STEP,
    evaluate_many: Callable[[list[np.ndarray]], list[float]] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(gradient, Hessian) of ``objective`` at ``x``.

    Parameters
    ----------
    objective : callable
        The function; it is evaluated on both sides of every coordinate.
    x : ndarray
        Where to differentiate.
    value : float, optional
        ``objective(x)`` if already known.
    step : float or ndarray
        Absolute step per coordinate (default lme4's 1e-4).
    evaluate_many : callable, optional
        Evaluates a list of points (possibly in parallel); default one by one.
    """
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    h = np.broadcast_to(np.asarray(step, dtype=np.float64), (n,)).copy()
    eye = np.diag(h)
    pairs = [(i, j) for i in range(n) for j in range(i)]
    points = [x + eye[i] for i in range(n)] + [x - eye[i] for i in range(n)]
    points += [x + eye[i] + eye[j] for i, j in pairs]
    points += [x - eye[i] - eye[j] for i, j in pairs]
    if value is None:
        points.append(x)
    run = evaluate_many if evaluate_many is not None else (lambda ps: [objective(p) for p in ps])
    values = np.asarray(run(points), dtype=np.float64)
    f0 = float(values[-1]) if value is None else float(value)
    plus, minus = values[:n], values[n : 2 * n]
    m = len(pairs)
    both_plus = values[2 * n : 2 * n + m]
    both_minus = values[2 * n + m : 2 * n + 2 * m]
    gradient = (plus - minus) / (2.0 * h)
    hessian = np.diag((plus - 2.0 * f0 + minus) / h**2)
    for k, (i, j) in enumerate(pairs):
        second = (
            both_plus[k] + both_minus[k] - plus[i] - minus[i] - plus[j] - minus[j] + 2.0 * f0
        ) / (2.0 * h[i] * h[j])
        hessian[i, j] = hessian[j, i] = second
    return gradient, hessian


def hessian_from_forward_gradients(
    gradient: Callable[[int, np.ndarray], np.ndarray],
    x: np.ndarray,
    gradient_at_x: np.ndarray,
    step: float | np.ndarray = STEP,
) -> np.ndarray:
    """Hessian by forward differences of an exact gradient, symmetrized: n gradients,
    ``gradient(i, x + hᵢeᵢ)``, besides the one at ``x``.

    The error is O(h) against central differences' O(h²): with lme4's step of
    1e-4 a relative 1e-4 of the curvature, far below what standard errors need,
    for half the gradients.
    """
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    h = np.broadcast_to(np.asarray(step, dtype=np.float64), (n,))
    columns = []
    for i in range(n):
        e = np.zeros(n)
        e[i] = h[i]
        columns.append((gradient(i, x + e) - gradient_at_x) / h[i])
    hessian = np.column_stack(columns)
    return 0.5 * (hessian + hessian.T)
