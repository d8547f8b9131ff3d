"""Stage 4 for a GLMM: θ and β optimised on a :class:`GeneralizedProblem`'s workspace.

lme4's ``glmer`` optimizes in two stages: θ alone with β estimated inside
PIRLS (nAGQ = 0) by BOBYQA, then (θ, β) together on the Laplace or
quadrature objective by Nelder–Mead.  Here:

* the Laplace objective has an analytic gradient
  (:mod:`~mixedmodels.engine.laplace_gradient`), so (θ, β) are optimised by
  the engine's bounded quasi-Newton method (values at line-search trial
  points, gradients at accepted ones) from lme4's initial PIRLS solution,
  with β measured in units of its R_X standard errors and θ moved from that
  solution to a normal working model's estimate (no extra PIRLS; the starts
  are :mod:`~mixedmodels.engine.glmm_starts`'); the first stage, whose purpose is
  a start for β, is not needed (on the reference models it reaches the same
  optima in no more evaluations);
* nAGQ = 0 is the first stage alone, by the same method on its own gradient in θ
  (from the working model's start; B from forward differences);
* adaptive quadrature (nAGQ > 1) starts from the Laplace optimum and is
  polished by BOBYQA (its objective has no analytic gradient here);
* without numba (no gradient) the stages are lme4's, both by BOBYQA.

Standard errors are lme4's: from the Hessian of the objective in (θ, β)
(``vcov`` = 2 H⁻¹ restricted to β), by central differences of the analytic
gradient, or of the objective itself for quadrature; R_X's for nAGQ = 0.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg

from ..errors import PirlsError
from .curvature import STEP, central_derivatives, hessian_from_forward_gradients
from .glmm_problem import GeneralizedProblem, PirlsWorkspace
from .glmm_starts import ModePredictor, beta_curvature, column_mirrors, start_hessian, working_start
from .optimize import (
    BOUNDARY_TOLERANCE,
    GRADIENT_TOLERANCE,
    OptimizationSummary,
    minimize_bobyqa,
)
from .pirls import PirlsSolution
from .quasi_newton import minimize_quasi_newton

# The quasi-Newton main stage stops when a Newton step would gain less than this
# (deviance units; the references ask for lme4's objective + 1e-4).
_QN_TOLERANCE = 1e-7
# PIRLS tolerance (largest change of η) of lme4's initial solution when it is only the
# main stage's start: its modes, β and R_X move θ, scale β and shape the first Hessian
# approximation, none of which needs them closer (on the references the main stage takes
# fewer evaluations and passes in all than from 1e-3; gcsemv one more).
_START_TOLERANCE = 0.5


@dataclass(frozen=True, eq=False)
class GlmmOptimum:
    """Where the optimization ended and the curvature there.

    Attributes
    ----------
    theta, beta : ndarray
        The estimates.
    summary : OptimizationSummary
        Start, bounds, final θ, objective, evaluations, messages.
    hessian : ndarray or None
        Hessian of the objective in (θ, β) (None for nAGQ = 0 or when not asked).
    vcov : ndarray or None
        2 H⁻¹ restricted to β, when H is positive definite.
    stage_evaluations : tuple of int
        Objective evaluations of the stages (first stage, main, quadrature polish).
    solution : PirlsSolution or None
        PIRLS's solution at the estimates, whose objective is ``summary.objective``
        (None for nAGQ = 0): what :meth:`GeneralizedProblem.solve` reports on.
    """

    theta: np.ndarray
    beta: np.ndarray
    summary: OptimizationSummary
    hessian: np.ndarray | None = None
    vcov: np.ndarray | None = None
    stage_evaluations: tuple[int, ...] = field(default_factory=tuple)
    solution: PirlsSolution | None = None

    def known(self) -> tuple[float, PirlsSolution] | None:
        """(objective, solution) at the estimates, for :meth:`GeneralizedProblem.solve`."""
        return None if self.solution is None else (self.summary.objective, self.solution)


def _first_stage(
    problem: GeneralizedProblem, ws: PirlsWorkspace
) -> tuple[np.ndarray, np.ndarray, int, str]:
    """θ with β inside PIRLS (lme4's nAGQ = 0); returns (θ, β, evaluations, status)."""
    theta0, initial = problem.initial(ws)
    count = [0]
    if problem.has_gradient:
        moved = working_start(problem, ws, theta0, initial)
        if moved is not None:
            theta0 = moved[0]
        last: list = [None]

        def value(theta: np.ndarray) -> float:
            count[0] += 1
            try:
                found, solution = problem.joint(theta, ws)
            except PirlsError:
                last[0] = None
                return math.inf
            last[0] = (theta, solution)
            return found

        def gradient() -> np.ndarray:
            if last[0] is None:
                return np.full(len(theta0), math.nan)
            theta, solution = last[0]
            return ws.gradient(True)(problem.lambdas(theta), solution)

        result = minimize_quasi_newton(
            value,
            gradient,
            theta0,
            problem.lower_bounds,
            tolerance=_QN_TOLERANCE,
            hessian="differences",
            mirrors=column_mirrors(problem),
        )
        theta, status = result.x, result.status
    else:

        def objective(theta: np.ndarray) -> float:
            count[0] += 1
            try:
                return problem.joint(theta, ws)[0]
            except PirlsError:
                return math.inf

        theta, _, _, status = minimize_bobyqa(
            objective, theta0, problem.lower_bounds, initial_step=0.2, ftol_rel=1e-10
        )
    _, solution = problem.joint(theta, ws)
    return theta, solution.beta.copy(), count[0], status


def _snap(x: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Values within rounding of a bound onto it, as lme4 reports them."""
    return np.where(np.isfinite(lower) & (x - lower < 1e-10), lower, x)


def fit_glmm(
    problem: GeneralizedProblem,
    nagq: int,
    start: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    hessian: bool = True,
    check: bool = True,
    workspace: PirlsWorkspace | None = None,
) -> GlmmOptimum:
    """Optimise the problem's objective (see the module docstring).

    Parameters
    ----------
    problem : GeneralizedProblem
        The objective.
    nagq : int
        0, 1 (Laplace) or the number of quadrature points.
    start : (θ, β), optional
        Where to start the main stage (no first stage then).
    hessian : bool
        Compute the Hessian in (θ, β) (standard errors, convergence check).
    check : bool
        Report a doubtful optimum (lme4's scaled-gradient check).
    workspace : PirlsWorkspace, optional
        Solvers to evaluate on (their last modes start PIRLS); a new one by default.
    """
    ws = problem.workspace() if workspace is None else workspace
    clock = time.perf_counter()
    lower_theta = problem.lower_bounds
    if nagq == 0:
        theta, beta, n_first, status = _first_stage(problem, ws)
        theta = _snap(theta, lower_theta)
        summary = OptimizationSummary(
            initial=np.concatenate([t.theta_start() for t in problem.terms]),
            lower=lower_theta.copy(),
            final=theta,
            objective=problem.joint(theta, ws)[0],
            n_evaluations=n_first,
            return_code=status,
            converged=True,
            seconds=time.perf_counter() - clock,
        )
        return GlmmOptimum(theta, beta, summary, stage_evaluations=(n_first,))

    n_first = 0
    if start is not None:
        theta0, beta0 = start
        _, joint_solution = problem.joint(theta0, ws)
    elif problem.has_gradient:
        # A start only: the main stage's PIRLS solves set the modes' accuracy.
        theta0, joint_solution = problem.initial(ws, tolerance=_START_TOLERANCE)
        beta0 = joint_solution.beta.copy()
        ws.last_u = joint_solution.u
        moved = working_start(problem, ws, theta0, joint_solution)
        if moved is not None:
            theta0, ws.last_u = moved
    else:
        theta0, beta0, n_first, _ = _first_stage(problem, ws)
        _, joint_solution = problem.joint(theta0, ws)
        ws.last_u = joint_solution.u
    covariance = problem.fixed_effect_covariance(theta0, joint_solution, ws)
    se = np.sqrt(np.diagonal(covariance))
    scale = np.where(np.isfinite(se) & (se > 0), se, 1.0)
    # In these units the Hessian of −2 log L in β is about twice the inverse of
    # β's correlation matrix (2 R_X R_Xᵀ: the log-determinant's curvature aside).
    beta_block = beta_curvature(covariance, scale)
    n_theta = problem.n_theta
    lower = np.concatenate([lower_theta, np.full(problem.n_fixed, -np.inf)])

    def split(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return x[:n_theta], beta0 + scale * x[n_theta:]

    x0 = np.concatenate([theta0, np.zeros(problem.n_fixed)])
    x, n_main, status, gradient_x, final = _main_stage(
        problem, ws, x0, lower, split, scale, nagq, beta_block
    )
    n_polish = 0
    if nagq > 1 and problem.has_gradient:
        x, n_polish, status = _quadrature_polish(problem, ws, x, lower, split, nagq)
        gradient_x = final = None
    snapped = _snap(x, lower)
    # The gradient in (θ, β) at the estimates, when the main stage's is there.
    known_gradient = None
    if gradient_x is not None and np.array_equal(snapped, x):
        known_gradient = gradient_x.copy()
        known_gradient[n_theta:] /= scale
    else:
        final = None
    x = snapped
    theta, beta = split(x)
    if final is None:
        value, at_estimates = problem.evaluate(theta, beta, nagq, ws)
    else:
        value, at_estimates = problem.laplace(final, ws.solver(False).rows), final
    seconds = time.perf_counter() - clock
    messages: list[str] = []
    curvature = vcov = gradient = None
    if hessian:
        gradient, curvature = derivatives(
            problem, theta, beta, nagq, value, ws, known_gradient, at_estimates
        )
        upper = _upper_cholesky(curvature)
        vcov = _vcov_from_hessian(curvature, n_theta, upper)
        if vcov is None:
            messages.append(
                "the Hessian of the objective is not positive definite: standard errors "
                "from R_X instead"
            )
        if check:
            point = np.concatenate([theta, beta])
            messages.extend(convergence_messages(point, lower, gradient, curvature, upper))
    summary = OptimizationSummary(
        initial=theta0.copy(),
        lower=lower_theta.copy(),
        final=theta,
        objective=value,
        n_evaluations=n_first + n_main + n_polish,
        return_code=status,
        converged=not messages,
        messages=tuple(messages),
        gradient=gradient,
        seconds=seconds,
    )
    return GlmmOptimum(
        theta, beta, summary, curvature, vcov, (n_first, n_main, n_polish), at_estimates
    )


def _main_stage(problem, ws, x0, lower, split, scale, nagq, beta_block):
    """(θ, β/scale) from x0: quasi-Newton on the Laplace gradient, or BOBYQA.

    Returns (x, evaluations, status, the gradient at x in these units or None, the
    PIRLS solution at x with the workspace's factor still at it, or None).
    """
    if problem.has_gradient:
        return _quasi_newton_stage(problem, ws, x0, lower, split, scale, beta_block)
    n_theta = problem.n_theta
    count = [0]

    def objective(x: np.ndarray) -> float:
        count[0] += 1
        theta, beta = split(x)
        try:
            return problem.objective(theta, beta, nagq, ws)
        except PirlsError:
            return math.inf

    steps = np.concatenate(
        [np.maximum(0.1 * np.abs(x0[:n_theta]), 0.02), np.full(len(x0) - n_theta, 0.2)]
    )
    x, _, _, status = minimize_bobyqa(
        objective, x0, lower, initial_step=steps, ftol_rel=1e-12, ftol_abs=1e-9
    )
    return x, count[0], status, None, None


def _quasi_newton_stage(problem, ws, x0, lower, split, scale, beta_block):
    """The Laplace objective minimised by the engine's bounded quasi-Newton method.

    Trial points of its line search cost a PIRLS solve only; the gradient is
    taken at accepted points.  The start's Hessian approximation: the β
    block ``beta_block`` (from R_X), the θ columns forward differences of the
    gradient (one gradient per θ).
    """
    n_theta = problem.n_theta
    count = [0]
    last: list = [None]
    modes = ModePredictor(problem, ws, n_theta, scale)

    def value(x: np.ndarray) -> float:
        count[0] += 1
        theta, beta = split(x)
        predicted = modes.predict(x)
        try:
            if predicted is None:
                solution = problem.modes(theta, beta, ws)
            else:
                fallback, ws.last_u = ws.last_u, predicted
                try:
                    solution = problem.modes(theta, beta, ws)
                except PirlsError:
                    ws.last_u = fallback
                    solution = problem.modes(theta, beta, ws)
        except PirlsError:
            last[0] = None
            return math.inf
        last[0] = (x.copy(), theta, solution)
        return problem.laplace(solution, ws.solver(False).rows)

    def gradient() -> np.ndarray:
        if last[0] is None:
            return np.full(len(x0), math.nan)
        x, theta, solution = last[0]
        g = ws.gradient(False)(problem.lambdas(theta), solution)
        g[n_theta:] *= scale
        modes.accepted(x, theta, solution)
        return g

    def side_gradient(x: np.ndarray) -> np.ndarray:
        # A start Hessian's column, h away from the last gradient's point: with a
        # canonical link at the modes predicted there (within O(h²) of PIRLS's, as the
        # final Hessian's columns; one pass and one factorisation, no PIRLS).
        predicted = modes.predict(x) if problem.family.is_canonical else None
        if predicted is not None:
            theta, beta = split(x)
            try:
                side = ws.solver(False).at_modes(problem.lambdas(theta), beta, predicted)
            except PirlsError:
                pass
            else:
                last[0] = (x.copy(), theta, side)
                return gradient()
        value(x)
        return gradient()

    f0 = value(x0)
    g0 = gradient()
    hessian = start_hessian(side_gradient, x0, g0, lower, n_theta, beta_block)
    result = minimize_quasi_newton(
        value,
        gradient,
        x0,
        lower,
        tolerance=_QN_TOLERANCE,
        hessian=hessian,
        initial=(f0, g0),
        mirrors=column_mirrors(problem),
        # β (in units of its standard errors) may move freely; θ by the default caps.
        max_step=np.concatenate([np.full(n_theta, np.nan), np.full(len(x0) - n_theta, np.inf)]),
    )
    # The last value taken at x (no trial point after it) and, the link canonical, its
    # gradient leaving the factor as it was: the solution there with its factor.
    final = None
    if last[0] is not None and problem.family.is_canonical and np.array_equal(last[0][0], result.x):
        final = last[0][2]
    return result.x, count[0], result.status, result.gradient, final


def _quadrature_polish(problem, ws, x, lower, split, nagq):
    """BOBYQA on the quadrature objective from the Laplace optimum (small first steps)."""
    count = [0]

    def objective(z: np.ndarray) -> float:
        count[0] += 1
        theta, beta = split(z)
        try:
            return problem.objective(theta, beta, nagq, ws)
        except PirlsError:
            return math.inf

    n_theta = problem.n_theta
    steps = np.concatenate(
        [np.maximum(0.05 * np.abs(x[:n_theta]), 0.01), np.full(len(x) - n_theta, 0.05)]
    )
    start = x.copy()
    finite = np.isfinite(lower)
    # BOBYQA moves a start within a step of its bound onto the bound: keep it off.
    start[finite] = np.maximum(start[finite], lower[finite] + steps[finite])
    polished, _, _, status = minimize_bobyqa(
        objective, start, lower, initial_step=steps, ftol_rel=1e-13, ftol_abs=1e-10
    )
    return polished, count[0], status


def derivatives(
    problem: GeneralizedProblem,
    theta: np.ndarray,
    beta: np.ndarray,
    nagq: int,
    value: float,
    workspace: PirlsWorkspace,
    gradient_here: np.ndarray | None = None,
    solution: PirlsSolution | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Gradient and Hessian of the objective in (θ, β) (lme4's calc.derivs).

    The workspace must hold the modes at (θ, β) (its ``last_u``); it is left
    there.  ``gradient_here``, the gradient at (θ, β) if known, saves an
    evaluation; ``solution``, the PIRLS solution there with the workspace's
    factor still at it, lets each side's PIRLS start from the modes predicted
    to first order (:meth:`LaplaceGradient.mode_slopes`).
    """
    n_theta = len(theta)
    point = np.concatenate([theta, beta])
    start_u = workspace.last_u
    if nagq == 1 and problem.has_gradient:
        slopes = None
        if solution is not None and start_u is not None:
            slopes = workspace.gradient(False).mode_slopes(
                problem.lambdas(theta), solution, np.eye(len(point)) * STEP
            )

        def gradient(x: np.ndarray, modes: np.ndarray | None) -> np.ndarray:
            workspace.last_u = modes
            return problem.value_and_gradient(x[:n_theta], x[n_theta:], workspace)[1]

        if gradient_here is None:
            gradient_here = gradient(point, start_u)
        # With a canonical link the slopes are exact (M is then the Hessian of the
        # penalized deviance in u), so the predicted modes are within O(h²) of a
        # side's modes and the gradient taken at them within O(h²) of its value
        # there: an O(h) change of a column, the order of forward differences' own
        # error.  PIRLS would only refine below that; the gradient is taken at the
        # predicted modes (one pass and one factorisation a column instead of two).
        predicted = slopes is not None and problem.family.is_canonical
        solver, gradient_at = workspace.solver(False), workspace.gradient(False)

        def gradient_along(i: int, x: np.ndarray) -> np.ndarray:
            if not predicted:
                return gradient(x, start_u if slopes is None else start_u + slopes[:, i])
            lambdas = problem.lambdas(x[:n_theta])
            side = solver.at_modes(lambdas, x[n_theta:], start_u + slopes[:, i])
            return gradient_at(lambdas, side)

        curvature = hessian_from_forward_gradients(gradient_along, point, gradient_here)
        workspace.last_u = start_u
        return gradient_here, curvature

    def objective(x: np.ndarray) -> float:
        workspace.last_u = start_u
        try:
            return problem.objective(x[:n_theta], x[n_theta:], nagq, workspace)
        except PirlsError:
            return math.inf

    found = central_derivatives(objective, point, value)
    objective(point)  # the workspace back at the estimates
    return found


def _upper_cholesky(a: np.ndarray) -> np.ndarray | None:
    """U with a = UᵀU (LAPACK, without numpy.linalg's per-call overhead), or None when a is
    not positive definite."""
    if not len(a):
        return np.zeros((0, 0))
    upper, info = scipy.linalg.lapack.dpotrf(a, lower=0, clean=1)
    return upper if info == 0 else None


def _vcov_from_hessian(
    hessian: np.ndarray, n_theta: int, upper: np.ndarray | None = None
) -> np.ndarray | None:
    """2 H⁻¹ restricted to β (lme4's calc.vcov.hess), or None if H is not usable.

    ``upper``, H's Cholesky factor when H is positive definite, gives H⁻¹.
    """
    if upper is not None and len(upper):
        found, info = scipy.linalg.lapack.dpotri(upper, lower=0)
        if info:
            return None
        inverse = np.triu(found) + np.triu(found, 1).T
    else:
        try:
            inverse = np.linalg.inv(hessian)
        except np.linalg.LinAlgError:
            return None
    block = inverse[n_theta:, n_theta:]
    vcov = block + block.T
    if not np.all(np.isfinite(vcov)) or (len(vcov) and _upper_cholesky(vcov) is None):
        return None
    return vcov


def convergence_messages(
    point: np.ndarray,
    lower: np.ndarray,
    gradient: np.ndarray,
    hessian: np.ndarray,
    upper: np.ndarray | None = None,
) -> list[str]:
    """lme4's checkConv: the scaled gradient R⁻¹g (H = RᵀR) at coordinates off their bound
    (``upper``: R of the whole H, if known)."""
    interior = ~(np.isfinite(lower) & (point - lower < BOUNDARY_TOLERANCE))
    g = gradient[interior]
    if not len(g):
        return []
    if upper is None or not interior.all():
        upper = _upper_cholesky(hessian[np.ix_(interior, interior)])
    if upper is None:
        return ["the Hessian at the optimum is not positive definite"]
    solved, _ = scipy.linalg.lapack.dtrtrs(upper, g, lower=0)
    scaled = float(np.max(np.abs(solved)))
    if scaled > GRADIENT_TOLERANCE:
        return [
            f"the optimizer may not have converged: max |scaled gradient| = {scaled:.3g} "
            f"(tolerance {GRADIENT_TOLERANCE})"
        ]
    return []
