"""Stage 4's tools: BOBYQA, the optimizer's summary, and the checks of an optimum.

nlopt's BOBYQA is the derivative-free, bound-constrained optimizer that lme4
(``nloptwrap``) and MixedModels.jl use; it is kept for where the exact
gradient is not available (:mod:`~mixedmodels.engine.quasi_newton` is used
where it is).  After BOBYQA stops, the gradient and Hessian are estimated by
finite differences, as lme4's ``checkConv`` does; with the exact gradient the
first-order conditions are checked exactly (:func:`check_stationarity`), to
report doubtful convergence instead of staying silent.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.linalg

from .small_evaluation import compiled_scaled_gradient
from .smallmatrix import all_finite

# lme4 warns when the scaled gradient R⁻ᵀg (H = RᵀR; the plain gradient when
# H is not positive definite) exceeds this.
GRADIENT_TOLERANCE = 2e-3
# θ coordinates this close to their bound count as on the boundary.
BOUNDARY_TOLERANCE = 1e-4

# nlopt's result codes by name (nlopt is imported when BOBYQA first runs).
_NLOPT_MESSAGES = {
    "SUCCESS": "success",
    "STOPVAL_REACHED": "stopval reached",
    "FTOL_REACHED": "ftol reached",
    "XTOL_REACHED": "xtol reached",
    "MAXEVAL_REACHED": "maximum number of evaluations reached",
    "MAXTIME_REACHED": "maximum time reached",
}


@dataclass(frozen=True, eq=False)
class OptimizationSummary:
    """What the optimizer did, kept in the fitted state (like MixedModels.jl's OptSummary)."""

    initial: np.ndarray
    lower: np.ndarray
    final: np.ndarray
    objective: float
    n_evaluations: int
    return_code: str
    converged: bool
    messages: tuple[str, ...] = ()
    gradient: np.ndarray | None = None
    # Wall time of the optimization (evaluations included, the check excluded).
    seconds: float = 0.0
    # Evaluations of the exact gradient (0 for BOBYQA) and the method used.
    n_gradients: int = 0
    method: str = "bobyqa"
    # The quasi-Newton approximation of the criterion's Hessian at ``final`` (in θ).
    hessian: np.ndarray | None = None


def minimize_bobyqa(
    objective: Callable[[np.ndarray], float],
    start: np.ndarray,
    lower: np.ndarray,
    *,
    ftol_rel: float = 1e-12,
    ftol_abs: float = 1e-8,
    xtol_abs: float = 1e-10,
    initial_step: float | np.ndarray = 0.75,
    max_evaluations: int = 100_000,
) -> tuple[np.ndarray, float, int, str]:
    """Run BOBYQA from ``start``; returns (θ, f(θ), evaluations, nlopt's status)."""
    import nlopt

    n = len(start)
    count = 0
    start = np.maximum(start, lower)
    best = [math.inf, np.asarray(start, dtype=float).copy()]

    def f(x: np.ndarray, _grad: np.ndarray) -> float:
        nonlocal count
        count += 1
        value = objective(x)
        if value < best[0]:
            best[0], best[1] = value, x.copy()
        return value if np.isfinite(value) else 1e300

    opt = nlopt.opt(nlopt.LN_BOBYQA, n)
    opt.set_min_objective(f)
    opt.set_lower_bounds(lower)
    opt.set_ftol_rel(ftol_rel)
    opt.set_ftol_abs(ftol_abs)
    opt.set_xtol_abs(xtol_abs)
    opt.set_initial_step(np.broadcast_to(np.asarray(initial_step, dtype=float), (n,)).copy())
    opt.set_maxeval(max_evaluations)
    try:
        opt.optimize(start)
        result = opt.last_optimize_result()
        status = next(
            (text for name, text in _NLOPT_MESSAGES.items() if getattr(nlopt, name) == result),
            "stopped",
        )
    except nlopt.RoundoffLimited:
        # Rounding stopped the trust region from shrinking further: the best
        # point seen is as good an answer as BOBYQA has.
        status = "roundoff limited"
    # The best point evaluated (what BOBYQA returns, without evaluating it again).
    return best[1], float(best[0]), count, status


def restart_steps(theta: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Initial steps for restarting BOBYQA at θ without moving θ.

    Powell's BOBYQA moves a starting coordinate that lies within one initial
    step of its bound onto the bound or one step away from it; steps no larger
    than half the distance to the bound keep a restart where it starts.
    """
    distance = theta - lower
    steps = np.clip(0.25 * np.abs(theta), 1e-3, 0.75)
    interior = np.isfinite(distance) & (distance > 0)
    steps[interior] = np.minimum(steps[interior], 0.5 * distance[interior])
    return np.maximum(steps, 1e-8)


def finite_difference_derivatives(
    objective: Callable[[np.ndarray], float],
    x: np.ndarray,
    lower: np.ndarray,
    evaluate_many: Callable[[list[np.ndarray]], list[float]] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Central-difference gradient and Hessian, one-sided at a bound.

    The points are independent: ``evaluate_many`` (default: ``objective`` on
    each in turn) may evaluate them in parallel.
    """
    n = len(x)
    h = 1e-4 * np.maximum(np.abs(x), 1e-2)
    step = np.diag(h)
    central = x - h >= lower
    points = [x]
    points += [x + step[i] for i in range(n)]
    points += [x - step[i] if central[i] else x + 2 * step[i] for i in range(n)]
    pairs = [(i, j) for i in range(n) for j in range(i)]
    points += [x + step[i] + step[j] for i, j in pairs]
    values = np.asarray(
        [objective(p) for p in points] if evaluate_many is None else evaluate_many(points)
    )
    f0, fp, fo = values[0], values[1 : n + 1], values[n + 1 : 2 * n + 1]
    grad = np.where(central, (fp - fo) / (2 * h), (-3 * f0 + 4 * fp - fo) / (2 * h))
    hess = np.diag(np.where(central, fp - 2 * f0 + fo, fo - 2 * fp + f0) / h**2)
    for (i, j), fpp in zip(pairs, values[2 * n + 1 :], strict=True):
        hess[i, j] = hess[j, i] = (fpp - fp[i] - fp[j] + f0) / (h[i] * h[j])
    return grad, hess


def check_convergence(
    objective: Callable[[np.ndarray], float],
    theta: np.ndarray,
    lower: np.ndarray,
    max_hessian_dimension: int = 12,
    evaluate_many: Callable[[list[np.ndarray]], list[float]] | None = None,
) -> tuple[bool, list[str], np.ndarray | None]:
    """lme4-style checks of the optimum: small Newton step, positive-definite Hessian.

    Coordinates on their bound are left out (their gradient need not vanish).
    Returns (passed, messages, gradient).
    """
    interior = theta - lower > BOUNDARY_TOLERANCE
    if not np.any(interior) or len(theta) > max_hessian_dimension:
        return True, [], None
    grad, hess = finite_difference_derivatives(objective, theta, lower, evaluate_many)
    g = grad[interior]
    h = hess[np.ix_(interior, interior)]
    messages = []
    try:
        chol = np.linalg.cholesky(h)
        # lme4's scaled gradient: solve(chol(H), g) with R's upper factor.
        step = np.linalg.solve(chol.T, g)
        scaled = float(np.max(np.abs(step)))
        measure = "scaled gradient"
    except np.linalg.LinAlgError:
        scaled = float(np.max(np.abs(g)))
        measure = "gradient"
        messages.append("the Hessian at the optimum is not positive definite")
    if scaled > GRADIENT_TOLERANCE:
        messages.append(
            f"the optimizer may not have converged: max |{measure}| = {scaled:.3g} "
            f"(tolerance {GRADIENT_TOLERANCE})"
        )
    return not messages, messages, grad


def stationarity_messages(largest: float, measure: str = "scaled gradient") -> list[str]:
    """:func:`check_stationarity`'s message on the largest |R⁻¹g| (or |g|, ``measure``)
    of the coordinates that move (none where it is within the tolerance); its whole
    verdict at an interior point where R⁻¹g was usable (the compiled search's)."""
    if largest > GRADIENT_TOLERANCE:
        return [
            f"the optimizer may not have converged: max |{measure}| = {largest:.3g} "
            f"(tolerance {GRADIENT_TOLERANCE})"
        ]
    return []


def check_stationarity(
    gradient: np.ndarray,
    hessian: np.ndarray,
    x: np.ndarray,
    lower: np.ndarray,
    mirrors: dict[int, np.ndarray] | None = None,
) -> tuple[bool, list[str]]:
    """The first-order conditions of a bound-constrained minimum, with the exact gradient.

    Coordinates strictly inside their bounds must have a small gradient, and
    those on a bound a gradient pointing out of the feasible region (a
    negative derivative into the interior means the objective still
    decreases there: not a minimum).  Both are measured as lme4 measures the
    gradient: scaled by the Cholesky factor of the Hessian (``hessian``, an
    approximation such as the quasi-Newton one), ``R⁻¹g`` with ``H = RᵀR``
    (R's ``solve(chol(H), g)``).

    A diagonal element of λ on its bound 0 with a nonzero column below it
    (``mirrors``: the θ below each diagonal one) must have a small gradient
    too: flipping the column's signs gives the same model, with the
    derivative into the interior of the opposite sign.
    """
    # (x − (−∞) is +∞: a coordinate without a bound is never on it.)
    on_bound = x - lower <= 0.0
    pushing_in = None
    # (As Python booleans: numpy's any() costs more on a few values.)
    if not any(on_bound.tolist()):
        # An interior point (the usual optimum): every coordinate moves, none inward.
        g, h = gradient, hessian
    else:
        flippable = np.zeros(len(x), dtype=bool)
        for i, below in (mirrors or {}).items():
            flippable[i] = bool((x[below] != 0).any())
        pushing_in = on_bound & ((gradient < 0) | flippable)
        moving = ~on_bound | pushing_in
        if not moving.any():
            return True, []
        if moving.all():
            g, h = gradient, hessian
        else:
            g = gradient[moving]
            h = hessian[np.ix_(moving, moving)]
    # LAPACK directly: numpy.linalg's per-call cost is several times the work
    # on these few coordinates; with numba, the same routines in one compiled call.
    scaled_gradient = compiled_scaled_gradient()
    if scaled_gradient is not None:
        step, info = scaled_gradient(h, g)
    else:
        chol, info = scipy.linalg.lapack.dpotrf(h, lower=1)
        if info == 0:
            step, info = scipy.linalg.lapack.dtrtrs(chol, g, lower=1, trans=1)
    if info == 0 and all_finite(step):
        scaled = np.abs(step)
        measure = "scaled gradient"
    else:
        scaled = np.abs(g)
        measure = "gradient"
    messages = stationarity_messages(float(scaled.max()), measure)
    inward = scaled[pushing_in[moving]] if pushing_in is not None else scaled[:0]
    if inward.size and float(np.max(inward)) > GRADIENT_TOLERANCE:
        messages.append(
            "the objective decreases from the boundary into the interior: the fit "
            "stopped on a bound that is not its minimum"
        )
    return not messages, messages
