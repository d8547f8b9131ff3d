"""Where the GLMM's optimizer and its PIRLS solves start.

:func:`~mixedmodels.engine.glmm_fit.fit_glmm` starts the quasi-Newton method
from lme4's initial PIRLS solution with θ moved to a normal working model's
estimate and PIRLS's start to that model's modes (:func:`working_start`), a
Hessian approximation whose β block comes from R_X (:func:`beta_curvature`)
and whose θ columns are differences of the gradient (:func:`start_hessian`);
along its line searches PIRLS starts from the modes predicted to first order
(:class:`ModePredictor`).  Starts only: where the method ends is decided by
its stopping rule, and each solve's modes by PIRLS's convergence test.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import PirlsError
from .glmm_problem import GeneralizedProblem, PirlsWorkspace
from .quasi_newton import positive_definite

# Fisher-scoring steps the working model's covariance may take.
_SCORING_STEPS = 50


def working_start(
    problem: GeneralizedProblem, ws: PirlsWorkspace, theta: np.ndarray, solution
) -> tuple[np.ndarray, np.ndarray] | None:
    """θ moved from lme4's initial PIRLS solution, and the modes predicted there
    (no PIRLS).

    Each level's mode b̂ₗ and conditional covariance Cₗ = λ Mₗ⁻¹ λᵀ (Mₗ⁻¹ read
    off the joint factor at the solution: its selected inverse) are those of a
    normal working model of the level's effect: an observed effect zₗ of
    precision Pₗ = Cₗ⁻¹ − Σ₀⁻¹ (Σ₀ = λλᵀ, the covariance the solution assumed),
    b̂ₗ being zₗ shrunk towards 0, so that zₗ ~ N(0, Σ + Pₗ⁻¹) over the levels.

    * A single term moves to that model's maximum likelihood Σ
      (:func:`_matrix_maximum`; EM's iteration tends to the same point,
      slowly): on the reference models within a few per cent of the optimum
      (contraception's θ 1 → 0.474 against 0.475; cbpp's 0.636 against 0.648;
      epil's random slopes Σ = (0.33, −0.045, 0.023) against
      (0.38, −0.054, 0.022)).  For a family with a dispersion (the variances
      carry it) or where that maximum is not inside, one EM step:
      Σ ← the mean over the levels of b̂ₗb̂ₗᵀ + Cₗ.
    * Several scalar terms, whose effects the per-level model cannot
      separate, move by one EM step each.

    The modes returned are the working model's at the new θ (β unchanged),
    where PIRLS starts.  None for several terms of which one is vector-valued,
    and where a diagonal θ is not positive (θ stays where it is).
    """
    lower = problem.lower_bounds
    if not np.all(theta[lower == 0] > 0):
        return None
    single = len(problem.terms) == 1
    if not single and any(t.q != 1 for t in problem.terms):
        return None
    try:
        inverse = ws.gradient(True).selected_inverse()
    except PirlsError:
        return None
    if single:
        return _single_term_start(
            problem.terms[0], theta, solution.u, inverse.s00, not problem.family.has_dispersion
        )
    variances = np.concatenate([inverse.s00[:, 0, 0], np.diagonal(inverse.s_tt)])
    u = solution.u
    if len(variances) != len(u) or not np.all((variances > 0) & (variances <= 1)):
        return None
    moved = np.empty(len(theta))
    modes = np.empty(len(u))
    start = 0
    for k, term in enumerate(problem.terms):
        block = slice(start, start + term.n_levels)
        start += term.n_levels
        at, uk, vk = theta[k] ** 2, u[block], variances[block]
        variance = at * float(np.mean(uk**2 + vk))
        if not (math.isfinite(variance) and variance > 0):
            return None
        moved[k] = math.sqrt(variance)
        # The working model's mode at σ² = θ², in units of θ: σ²·z/(σ² + s²) with
        # z = θu/(1 − v) and s² = θ²v/(1 − v).
        modes[block] = moved[k] * theta[k] * uk / (variance * (1.0 - vk) + at * vk)
    return moved, modes


def _single_term_start(term, theta, u, conditional, maximum):
    """:func:`working_start` for one term: (θ, modes) or None."""
    q, levels = term.q, term.n_levels
    if conditional.shape != (levels, q, q) or len(u) != levels * q:
        return None
    lam = term.lambda_matrix(theta)
    if q == 1:
        # Scalars on arrays of levels (numpy's batched linear algebra costs more).
        t, v = lam[0, 0] ** 2, conditional[:, 0, 0]
        if not np.all(v > 0):
            return None
        precision, h = (1.0 / v - 1.0) / t, u / (lam[0, 0] * v)
        variance = t * float(np.mean(u**2 + v))
        if maximum:
            variance = _scalar_maximum(variance, precision, h) or variance
        if not (math.isfinite(variance) and variance > 0):
            return None
        sd = math.sqrt(variance)
        return np.array([sd]), sd * h / (1.0 + precision * variance)
    try:
        lam_inverse = np.linalg.inv(lam)
        m_inverse = np.linalg.inv(conditional)
    except np.linalg.LinAlgError:
        return None
    u = u.reshape(levels, q)
    # In b = λu's units: P = λ⁻ᵀ(Mₗ − I)λ⁻¹ and h = P z = C⁻¹ b̂ = λ⁻ᵀ Mₗ u, with
    # Mₗ the inverse of the conditional covariance of u.
    precision = lam_inverse.T @ (m_inverse - np.eye(q)) @ lam_inverse
    h = np.einsum("ij,ljk,lk->li", lam_inverse.T, m_inverse, u)
    covariance = lam @ (np.einsum("li,lj->ij", u, u) / levels + conditional.mean(axis=0)) @ lam.T
    if maximum:
        found = _matrix_maximum(covariance, precision, h)
        if found is not None:
            covariance = found
    try:
        moved = np.linalg.cholesky(covariance)
    except np.linalg.LinAlgError:
        return None
    # The working model's modes at Σ = λ'λ'ᵀ: Σ(I + PΣ)⁻¹h, in units of λ': λ'ᵀ(I + PΣ)⁻¹h.
    r = np.linalg.solve(np.eye(q) + precision @ covariance, h[:, :, None])[:, :, 0]
    modes = r @ moved
    found_theta = moved[term.theta_rows, term.theta_cols]
    if not (np.all(np.isfinite(found_theta)) and np.all(np.isfinite(modes))):
        return None
    return found_theta, modes.ravel()


def _scalar_maximum(variance: float, precision: np.ndarray, h: np.ndarray) -> float | None:
    """:func:`_matrix_maximum` for q = 1 (Σ = σ², Wₗ = Pₗ/(1 + Pₗσ²), rₗ = hₗ/(1 + Pₗσ²))."""
    for _ in range(_SCORING_STEPS):
        a = 1.0 / (1.0 + precision * variance)
        w = a * precision
        information = float(w @ w)
        if not information > 0:
            return None
        r = a * h
        step = float(r @ r - w.sum()) / information
        # σ² stays above a tenth of itself.
        new = max(variance + step, 0.1 * variance)
        if abs(new - variance) <= 1e-8 * variance:
            return new
        variance = new
    return None


def _matrix_maximum(covariance, precision, h):
    """The working model's maximum likelihood Σ by Fisher scoring from ``covariance``
    (None when it does not converge inside: Σ falling towards singular).

    With Wₗ = (Σ + Pₗ⁻¹)⁻¹ = (I + PₗΣ)⁻¹Pₗ and rₗ = Wₗzₗ = (I + PₗΣ)⁻¹hₗ (no
    Pₗ⁻¹: a level may say nothing about a direction), the score in Σ is
    ½Σₗ(rₗrₗᵀ − Wₗ) and the expected information δ ↦ ½ΣₗWₗδWₗ.
    """
    q = len(covariance)
    identity = np.eye(q)
    for _ in range(_SCORING_STEPS):
        a = np.linalg.inv(identity + precision @ covariance)
        w = a @ precision
        r = np.einsum("lij,lj->li", a, h)
        score = r.T @ r - w.sum(axis=0)
        information = np.einsum("lij,lkm->imjk", w, w).reshape(q * q, q * q)
        try:
            step = np.linalg.solve(information, score.ravel()).reshape(q, q)
        except np.linalg.LinAlgError:
            return None
        step = 0.5 * (step + step.T)
        # Σ stays above a tenth of itself (a longer step is halved).
        length = 1.0
        while not _positive_definite(0.9 * covariance + length * step):
            length *= 0.5
            if length < 1e-6:
                return None
        new = covariance + length * step
        scale = np.sqrt(np.outer(np.diagonal(covariance), np.diagonal(covariance)))
        if np.all(np.abs(new - covariance) <= 1e-8 * scale):
            return new
        covariance = new
    return None


def _positive_definite(a: np.ndarray) -> bool:
    try:
        np.linalg.cholesky(a)
    except np.linalg.LinAlgError:
        return False
    return True


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


def start_hessian(gradient_at, x, g, lower, n_theta, beta_block):
    """``beta_block`` for β, θ's columns by forward differences of the gradient
    (``gradient_at(point)``, the gradient at a point h away from ``x``)."""
    b = np.eye(len(x))
    b[n_theta:, n_theta:] = beta_block
    if not np.all(np.isfinite(g)):
        return b
    for i in range(n_theta):
        h = 1e-4 * max(abs(x[i]), 0.1)
        point = x.copy()
        point[i] += h
        column = (gradient_at(np.maximum(point, lower)) - g) / h
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
