"""Stage 4: minimise the profiled objective over θ within its bounds.

nlopt's BOBYQA is the derivative-free, bound-constrained optimizer that lme4
(``nloptwrap``) and MixedModels.jl use.  After it stops, the gradient and
Hessian are estimated by finite differences, as lme4's ``checkConv`` does, to
report doubtful convergence instead of staying silent.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import nlopt
import numpy as np

# lme4 warns when the scaled gradient R⁻ᵀg (H = RᵀR; the plain gradient when
# H is not positive definite) exceeds this.
GRADIENT_TOLERANCE = 2e-3
# θ coordinates this close to their bound count as on the boundary.
BOUNDARY_TOLERANCE = 1e-4

_NLOPT_MESSAGES = {
    nlopt.SUCCESS: "success",
    nlopt.STOPVAL_REACHED: "stopval reached",
    nlopt.FTOL_REACHED: "ftol reached",
    nlopt.XTOL_REACHED: "xtol reached",
    nlopt.MAXEVAL_REACHED: "maximum number of evaluations reached",
    nlopt.MAXTIME_REACHED: "maximum time reached",
}


@dataclass
class OptimizationSummary:
    """What the optimizer did, kept on the fitted model (like MixedModels.jl's OptSummary)."""

    initial: np.ndarray
    lower: np.ndarray
    final: np.ndarray
    objective: float
    n_evaluations: int
    return_code: str
    converged: bool
    messages: list[str] = field(default_factory=list)
    gradient: np.ndarray | None = None


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
    n = len(start)
    count = 0
    best = [math.inf, np.asarray(start, dtype=float).copy()]

    def f(x: np.ndarray, grad: np.ndarray) -> float:
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
    start = np.maximum(start, lower)
    try:
        theta = np.asarray(opt.optimize(start))
        status = _NLOPT_MESSAGES.get(opt.last_optimize_result(), "stopped")
    except nlopt.RoundoffLimited:
        # Rounding stopped the trust region from shrinking further: the best
        # point seen is as good an answer as BOBYQA has.
        theta = best[1]
        status = "roundoff limited"
    value = float(objective(theta))
    if best[0] < value:
        theta, value = best[1], float(objective(best[1]))
    return theta, value, count, status


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
    objective: Callable[[np.ndarray], float], x: np.ndarray, lower: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Central-difference gradient and Hessian, one-sided at a bound."""
    n = len(x)
    h = 1e-4 * np.maximum(np.abs(x), 1e-2)
    f0 = objective(x)
    grad = np.zeros(n)
    hess = np.zeros((n, n))
    fp, fm = np.zeros(n), np.zeros(n)
    for i in range(n):
        e = np.zeros(n)
        e[i] = h[i]
        fp[i] = objective(x + e)
        if x[i] - h[i] >= lower[i]:
            fm[i] = objective(x - e)
            grad[i] = (fp[i] - fm[i]) / (2 * h[i])
            hess[i, i] = (fp[i] - 2 * f0 + fm[i]) / h[i] ** 2
        else:
            f2 = objective(x + 2 * e)
            grad[i] = (-3 * f0 + 4 * fp[i] - f2) / (2 * h[i])
            hess[i, i] = (f2 - 2 * fp[i] + f0) / h[i] ** 2
    for i in range(n):
        for j in range(i):
            ei = np.zeros(n)
            ej = np.zeros(n)
            ei[i], ej[j] = h[i], h[j]
            fpp = objective(x + ei + ej)
            hess[i, j] = hess[j, i] = (fpp - fp[i] - fp[j] + f0) / (h[i] * h[j])
    return grad, hess


def check_convergence(
    objective: Callable[[np.ndarray], float],
    theta: np.ndarray,
    lower: np.ndarray,
    max_hessian_dimension: int = 12,
) -> tuple[bool, list[str], np.ndarray | None]:
    """lme4-style checks of the optimum: small Newton step, positive-definite Hessian.

    Coordinates on their bound are left out (their gradient need not vanish).
    Returns (passed, messages, gradient).
    """
    interior = theta - lower > BOUNDARY_TOLERANCE
    if not np.any(interior) or len(theta) > max_hessian_dimension:
        return True, [], None
    grad, hess = finite_difference_derivatives(objective, theta, lower)
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
