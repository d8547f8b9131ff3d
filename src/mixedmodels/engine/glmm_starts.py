"""Where the GLMM's optimizer and its PIRLS solves start.

:func:`~mixedmodels.engine.glmm_fit.fit_glmm` starts the quasi-Newton method
from lme4's initial PIRLS solution with θ moved by one EM step
(:func:`em_step`), a Hessian approximation whose β block comes from R_X
(:func:`beta_curvature`) and whose θ columns are differences of the gradient
(:func:`start_hessian`); along its line searches PIRLS starts from the modes
predicted to first order (:class:`ModePredictor`).  Starts only: where the
method ends is decided by its stopping rule, and each solve's modes by
PIRLS's convergence test.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import PirlsError
from .glmm_problem import GeneralizedProblem, PirlsWorkspace
from .quasi_newton import positive_definite


def em_step(
    problem: GeneralizedProblem, ws: PirlsWorkspace, theta: np.ndarray, solution
) -> np.ndarray | None:
    """θ after one EM step from lme4's initial PIRLS solution (scalar terms only).

    For a scalar term k, θₖ² ← the mean over its levels of E[bₗ² | y] =
    b̂ₗ² + Var(bₗ | y), with b = θu and the conditional variances θ²·diag M⁻¹
    read off the joint factor at the solution (its selected inverse).  From
    θ = 1 that moves θ most of the way to the optimum on the reference models
    (VerbAgg (1, 1) → (1.14, 0.49) against (1.34, 0.50)), and costs no PIRLS.
    None for models with vector-valued terms (θ stays at lme4's start).
    """
    if any(t.q != 1 for t in problem.terms) or not np.all(theta > 0):
        return None
    try:
        inverse = ws.gradient(True).selected_inverse()
    except PirlsError:
        return None
    variances = np.concatenate([inverse.s00[:, 0, 0], np.diagonal(inverse.s_tt)])
    u = solution.u
    if len(variances) != len(u):
        return None
    moved = np.empty(len(theta))
    start = 0
    for k, term in enumerate(problem.terms):
        block = slice(start, start + term.n_levels)
        moved[k] = theta[k] * math.sqrt(float(np.mean(u[block] ** 2 + variances[block])))
        start += term.n_levels
    if not np.all(np.isfinite(moved) & (moved > 0)):
        return None
    return moved


class ModePredictor:
    """Starts for PIRLS along the quasi-Newton method's line searches.

    At the point whose gradient was taken last (its factor still in the
    workspace), the modes' first-order change along the step to the next trial
    point is one solve (:meth:`LaplaceGradient.mode_slopes`); trial points on
    the same line reuse it.  PIRLS then starts within O(step²) of its answer
    instead of O(step).
    """

    def __init__(self, problem, ws, n_theta, scale) -> None:
        self.problem, self.ws, self.n_theta, self.scale = problem, ws, n_theta, scale
        self.origin = None  # (x, θ, solution) where the gradient was taken
        self.fresh = False  # the workspace's factor is still the origin's
        self.line = None  # (direction, slope of the modes along it)

    def accepted(self, x: np.ndarray, theta: np.ndarray, solution) -> None:
        self.origin = (x.copy(), theta, solution)
        self.fresh, self.line = True, None

    def predict(self, x: np.ndarray) -> np.ndarray | None:
        if self.origin is None:
            return None
        x_origin, theta, solution = self.origin
        step = x - x_origin
        if self.fresh:
            self.fresh = False
            direction = step.copy()
            direction[self.n_theta :] *= self.scale
            slopes = self.ws.gradient(False).mode_slopes(
                self.problem.lambdas(theta), solution, direction[None, :]
            )
            self.line = None if slopes is None else (step, slopes[:, 0])
            return None if slopes is None else solution.u + slopes[:, 0]
        if self.line is None:
            return None
        direction, slope = self.line
        length = float(direction @ direction)
        if not length:
            return None
        alpha = float(step @ direction) / length
        if np.max(np.abs(step - alpha * direction)) > 1e-12 * np.max(np.abs(direction)):
            return None
        return solution.u + alpha * slope


def beta_curvature(covariance: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """2 × the inverse of β's correlation matrix (2I where that is not usable)."""
    p = len(scale)
    if not p:
        return np.zeros((0, 0))
    correlation = covariance / np.outer(scale, scale)
    try:
        block = 2.0 * np.linalg.inv(correlation)
    except np.linalg.LinAlgError:
        return 2.0 * np.eye(p)
    if not np.all(np.isfinite(block)):
        return 2.0 * np.eye(p)
    return 0.5 * (block + block.T)


def start_hessian(value, gradient, x, g, lower, n_theta, beta_block):
    """``beta_block`` for β, θ's columns by forward differences of the gradient."""
    b = np.eye(len(x))
    b[n_theta:, n_theta:] = beta_block
    if not np.all(np.isfinite(g)):
        return b
    for i in range(n_theta):
        h = 1e-4 * max(abs(x[i]), 0.1)
        point = x.copy()
        point[i] += h
        value(np.maximum(point, lower))
        column = (gradient() - g) / h
        if not np.all(np.isfinite(column)):
            return b
        b[:, i] = column
        b[i, :] = column
    return positive_definite(b)


def column_mirrors(problem: GeneralizedProblem) -> dict[int, np.ndarray]:
    """For each diagonal θ, the θ below it in its column of λ (the objective depends
    on λλᵀ: that column with its signs flipped is the same model)."""
    mirrors = {}
    for term, where in zip(problem.terms, problem.theta_slices, strict=True):
        rows, cols = term.theta_rows, term.theta_cols
        for k in np.flatnonzero(rows == cols):
            below = np.flatnonzero((cols == cols[k]) & (rows > rows[k]))
            if below.size:
                mirrors[where.start + int(k)] = where.start + below
    return mirrors
