"""Stage 4: θ optimised within its bounds, on a problem's own workspaces.

From the moment start (:mod:`~mixedmodels.engine.start`), a bound-constrained
quasi-Newton method with the exact gradient
(:mod:`~mixedmodels.engine.quasi_newton`, :mod:`~mixedmodels.engine.gradient`),
then probes of the coordinates it leaves on a bound (lme4's ``restart_edge``
idea) and the exact first-order check.  Where numba is missing, BOBYQA with
restarts from a boundary optimum, a polish and lme4's finite-difference
check.  The optimizer moves φ = θ/scale so that random-effect columns on
extreme scales fit as well as rescaled ones (:func:`theta_scale`).  Returns an
:class:`~mixedmodels.engine.optimize.OptimizationSummary`; the model turns it
into its fitted state.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import ThreadpoolController

from .gradient import ProfiledGradient, gradient_available
from .kernels import available_cpus
from .optimize import (
    BOUNDARY_TOLERANCE,
    OptimizationSummary,
    check_convergence,
    check_stationarity,
    minimize_bobyqa,
    restart_steps,
)
from .problem import LinearProblem
from .quasi_newton import QuasiNewtonResult, minimize_quasi_newton
from .start import moment_start, start_steps

# The convergence check evaluates on two threads above this time per evaluation.
_PARALLEL_MIN_SECONDS = 2e-3
# A coordinate left on its bound is probed this far inside (in φ) when its
# derivative there is below _PROBE_SLOPE: a zero variance is a stationary point
# of the objective (it is even in a scalar term's θ), minimum or not.
_PROBE_STEP = 1e-2
_PROBE_SLOPE = 1e-4
OPTIMIZERS = ("auto", "quasi-newton", "bobyqa")
# Diagonal elements of λ are moved on a log scale while they stay above
# _LOG_SWITCH (in φ): the criterion is much closer to quadratic in log θ for a
# variance away from zero (fewer steps), and a coordinate heading for its bound
# goes back to θ itself, where the bound can be reached and checked.
_LOG_SWITCH = 0.01
# ... from a start above this (a start lifted off its bound, see
# start.start_steps, stays on θ).
_LOG_START = 0.1
# Inspecting the loaded BLAS libraries takes milliseconds: do it once.
_BLAS_CONTROLLER: ThreadpoolController | None = None


def blas_threads(threads: int | None):
    """Context manager limiting the BLAS threads (the θ loop runs on one)."""
    global _BLAS_CONTROLLER
    if _BLAS_CONTROLLER is None:
        _BLAS_CONTROLLER = ThreadpoolController()
    return _BLAS_CONTROLLER.limit(limits=threads, user_api="blas")


def theta_scale(problem: LinearProblem) -> np.ndarray:
    """θ = scale · φ, where φ is what the optimizer moves.

    A random-effects column on an extreme scale (root mean square outside
    [1e-3, 1e3]) needs θ near the inverse of that scale, far from lme4's
    start of 1 and from BOBYQA's unit steps.  Writing Zλ = (Z S⁻¹)(Sλ) with
    S the columns' scales, φ = Sλ is of order one.  Columns on ordinary
    scales keep θ = φ, so the path is lme4's.
    """
    cp = problem.cross_products
    factors = []
    for term, diag in zip(problem.terms, cp.diag, strict=True):
        rms = np.sqrt(np.einsum("lii->i", diag) / max(cp.n_obs, 1))
        extreme = (rms > 0) & ((rms < 1e-3) | (rms > 1e3))
        row_factor = np.where(extreme, 1.0 / np.where(rms > 0, rms, 1.0), 1.0)
        factors.append(row_factor[term.theta_rows])
    return np.concatenate(factors) if factors else np.empty(0)


def starting_point(
    problem: LinearProblem, start: np.ndarray | str | None, scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray | float]:
    """(φ at the start, BOBYQA's initial steps) for ``start`` (None, "lme4" or θ)."""
    identity = np.concatenate([t.theta_start() for t in problem.terms])
    if start is None:
        moments = moment_start(problem.cross_products, problem.terms)
        if moments is None:
            return identity, 0.75
        return start_steps(moments / scale, problem.lower_bounds)
    if isinstance(start, str):
        if start != "lme4":
            raise ValueError(f"start must be an array of θ or 'lme4', got {start!r}")
        # lme4's start λ = I applies to the rescaled columns.
        return identity, 0.75
    given = np.asarray(start, dtype=np.float64)
    if given.shape != problem.lower_bounds.shape:
        raise ValueError(f"start must have {problem.n_theta} values (one per θ), got {given.shape}")
    return given / scale, 0.75


def optimize_theta(
    problem: LinearProblem,
    start: np.ndarray | str | None = None,
    *,
    check: bool = True,
    max_restarts: int = 3,
    optimizer: str = "auto",
) -> OptimizationSummary:
    """Minimise the problem's criterion over θ; see :meth:`LinearMixedModel.fit`.

    ``optimizer`` is "quasi-newton" (exact gradient; needs numba), "bobyqa"
    (derivative-free, as lme4) or "auto" (the first where numba imports).
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    if optimizer == "auto":
        optimizer = "quasi-newton" if gradient_available() else "bobyqa"
    elif optimizer == "quasi-newton" and not gradient_available():
        raise ImportError("the quasi-Newton optimizer needs numba (pip install numba)")
    scale = theta_scale(problem)
    start_phi, steps = starting_point(problem, start, scale)
    # The θ loop works on many small matrices, and even InstEval's 1128×1128
    # Cholesky ran no faster with two OpenBLAS threads than with one
    # (measured on this 2-core machine): BLAS stays single-threaded here.
    with blas_threads(1):
        if optimizer == "quasi-newton":
            summary = _optimize_quasi_newton(problem, start_phi, scale, check, max_restarts)
            if summary is not None:
                return summary
            # The criterion is not finite at the start: BOBYQA searches more widely.
        return _optimize(problem, start_phi, steps, scale, check, max_restarts)


class _Evaluator:
    """The criterion and its gradient in φ on one workspace, counting both."""

    def __init__(self, problem: LinearProblem, scale: np.ndarray) -> None:
        self.problem = problem
        self.scale = scale
        self.workspace = problem.workspace()
        self.gradient_of = ProfiledGradient(
            self.workspace,
            [t.theta_rows for t in problem.terms],
            [t.theta_cols for t in problem.terms],
        )
        self.theta: np.ndarray | None = None

    def value(self, phi: np.ndarray) -> float:
        self.theta = phi * self.scale
        return self.problem.objective(self.theta, workspace=self.workspace)

    def gradient(self) -> np.ndarray:
        """∇φ at the point of the last :meth:`value`."""
        lambdas = self.problem.lambdas(self.theta)
        g = self.gradient_of.gradient(self.workspace, lambdas, self.problem.reml)
        return g * self.scale


def _probe_boundary(
    evaluator: _Evaluator, result: QuasiNewtonResult, lower: np.ndarray
) -> tuple[np.ndarray | None, int]:
    """A point inside the bounds lower than ``result``'s optimum, or None; and the values used.

    Each coordinate on its bound whose derivative into the interior is not
    clearly positive is moved inside by a small step: where the objective or
    its derivative there says the objective decreases inward, the optimum on
    the bound was a stationary point but not a minimum.
    """
    x = result.x
    on_bound = np.isfinite(lower) & (x - lower <= 0.0) & (result.gradient < _PROBE_SLOPE)
    used = 0
    for i in np.flatnonzero(on_bound):
        point = x.copy()
        point[i] = lower[i] + _PROBE_STEP
        value = evaluator.value(point)
        used += 1
        if value < result.value:
            return point, used
        if evaluator.gradient()[i] < 0:
            return point, used
    return None, used


def _column_mirrors(problem: LinearProblem) -> dict[int, np.ndarray]:
    """For each diagonal θ, the θ below it in its column of λ (see quasi_newton)."""
    mirrors = {}
    for term, where in zip(problem.terms, problem.theta_slices, strict=True):
        rows, cols = term.theta_rows, term.theta_cols
        for k in np.flatnonzero(rows == cols):
            below = np.flatnonzero((cols == cols[k]) & (rows > rows[k]))
            if below.size:
                mirrors[where.start + int(k)] = where.start + below
    return mirrors


def _escape_point(x: np.ndarray, start: np.ndarray, lower: np.ndarray) -> np.ndarray | None:
    """x with its coordinates on a bound moved back to their start (or 0.1 inside)."""
    on_bound = np.isfinite(lower) & (x - lower <= 0.0)
    if not np.any(on_bound):
        return None
    point = x.copy()
    inside = start - lower > 1e-3
    point[on_bound] = np.where(inside, start, lower + 0.1)[on_bound]
    return point


def _minimize(
    evaluator: _Evaluator,
    start: np.ndarray,
    lower: np.ndarray,
    mirrors: dict[int, np.ndarray],
    scalar: np.ndarray,
) -> QuasiNewtonResult:
    """The quasi-Newton method in ψ (log φ for the θ of scalar terms above _LOG_SWITCH,
    φ for the others), the result in φ."""
    logged = scalar & (start - lower > _LOG_START) & (lower == 0)
    # A logged coordinate that falls below a quarter of its start is heading
    # for zero, where θ itself converges much faster: it goes back to θ.
    with np.errstate(divide="ignore"):
        floor = np.log(np.maximum(_LOG_SWITCH, 0.25 * start))
    x = start
    n_values = n_gradients = 0
    hessian: np.ndarray | str = "differences"
    initial = None
    while True:
        fixed = logged.copy()

        def to_phi(psi: np.ndarray, fixed: np.ndarray = fixed) -> np.ndarray:
            phi = psi.copy()
            phi[fixed] = np.exp(psi[fixed])
            return phi

        def value(psi: np.ndarray, to_phi=to_phi) -> float:
            return evaluator.value(to_phi(psi))

        def gradient(fixed: np.ndarray = fixed) -> np.ndarray:
            g = evaluator.gradient()
            g[fixed] *= evaluator.theta[fixed] / evaluator.scale[fixed]
            return g

        def leaving(psi: np.ndarray, fixed: np.ndarray = fixed) -> bool:
            return bool(np.any(psi[fixed] < floor[fixed]))

        psi = x.copy()
        psi[fixed] = np.log(x[fixed])
        result = minimize_quasi_newton(
            value,
            gradient,
            psi,
            np.where(fixed, -np.inf, lower),
            mirrors={i: b for i, b in mirrors.items() if not fixed[i]},
            stop=leaving if np.any(fixed) else None,
            hessian=hessian,
            initial=initial,
            # On the log scale a step may double or halve a value.
            max_step=np.where(fixed, math.log(2.0), np.nan),
        )
        n_values += result.n_values
        n_gradients += result.n_gradients
        x = to_phi(result.x)
        if result.status == "stopped by the caller":
            leaving_now = fixed & (x < _LOG_SWITCH)
            logged &= ~leaving_now
            # Carry the curvature over to the coordinates that change scale.
            d = np.where(leaving_now, x, 1.0)
            hessian = result.hessian / np.outer(d, d)
            initial = (result.value, result.gradient / d)
            continue
        # Back to φ: g_φ = g_ψ / φ and H_φ ≈ D⁻¹ H_ψ D⁻¹ (g ≈ 0) on the logged coordinates.
        scale = np.where(fixed, x, 1.0)
        return QuasiNewtonResult(
            x=x,
            value=result.value,
            gradient=result.gradient / scale,
            hessian=result.hessian / np.outer(scale, scale),
            n_values=n_values,
            n_gradients=n_gradients,
            n_iterations=result.n_iterations,
            converged=result.converged,
            status=result.status,
            predicted_decrease=result.predicted_decrease,
            held=result.held,
        )


def _optimize_quasi_newton(
    problem: LinearProblem,
    start: np.ndarray,
    scale: np.ndarray,
    check: bool,
    max_restarts: int,
) -> OptimizationSummary | None:
    """The quasi-Newton fit; None when the criterion is not finite at the start."""
    lower = problem.lower_bounds
    evaluator = _Evaluator(problem, scale)
    clock = time.perf_counter()
    mirrors = _column_mirrors(problem)
    scalar = np.concatenate([np.full(t.n_theta, t.q == 1) for t in problem.terms])
    result = _minimize(evaluator, start, lower, mirrors, scalar)
    if not math.isfinite(result.value):
        return None
    n_values, n_gradients = result.n_values, result.n_gradients
    escaped = False
    for _ in range(max_restarts):
        inside, used = _probe_boundary(evaluator, result, lower)
        n_values += used
        n_gradients += used
        if inside is None and not escaped:
            # A minimum on a face of the bounds can be a local one only (a
            # variance that reached zero early on the path): restart once with
            # those coordinates back at their starting values.
            inside = _escape_point(result.x, start, lower)
            escaped = True
        if inside is None:
            break
        again = minimize_quasi_newton(
            evaluator.value, evaluator.gradient, inside, lower, mirrors=mirrors
        )
        n_values += again.n_values
        n_gradients += again.n_gradients
        if not again.value < result.value:
            break
        result = again
    seconds = time.perf_counter() - clock
    # A variance shrinking to zero along the path approaches its bound
    # geometrically; within rounding of it, it is reported on it, as lme4 does.
    x = np.where(np.isfinite(lower) & (result.x - lower < 1e-10), lower, result.x)
    messages: list[str] = []
    ok = result.converged
    if not ok:
        messages.append(f"the optimizer stopped early: {result.status}")
    if check:
        passed, found = check_stationarity(result.gradient, result.hessian, x, lower, mirrors)
        ok = ok and passed
        messages.extend(found)
    return OptimizationSummary(
        initial=start * scale,
        lower=lower.copy(),
        final=x * scale,
        objective=result.value,
        n_evaluations=n_values,
        return_code=result.status,
        converged=ok,
        messages=tuple(messages),
        gradient=result.gradient / scale,
        seconds=seconds,
        n_gradients=n_gradients,
        method="quasi-newton",
    )


def _optimize(
    problem: LinearProblem,
    start: np.ndarray,
    steps: np.ndarray | float,
    scale: np.ndarray,
    check: bool,
    max_restarts: int,
) -> OptimizationSummary:
    workspace = problem.workspace()
    lower = problem.lower_bounds

    def objective(phi: np.ndarray) -> float:
        return problem.objective(phi * scale, workspace=workspace)

    clock = time.perf_counter()
    theta, value, n_eval, status = minimize_bobyqa(objective, start, lower, initial_step=steps)
    # On the boundary BOBYQA can stop at a point that is not the optimum.
    # Restarting with full-size steps (which BOBYQA uses to move the start
    # off or onto bounds) escapes such points; a last restart with steps
    # that keep the start in place then polishes the best point found.
    if np.any(theta - lower < BOUNDARY_TOLERANCE):
        for _ in range(max_restarts):
            again, again_value, n_more, again_status = minimize_bobyqa(objective, theta, lower)
            n_eval += n_more
            if again_value >= value - 1e-6:
                if again_value < value:
                    theta, value, status = again, again_value, again_status
                break
            theta, value, status = again, again_value, again_status
        polished, polished_value, n_more, polished_status = minimize_bobyqa(
            objective, theta, lower, initial_step=restart_steps(theta, lower)
        )
        n_eval += n_more
        if polished_value < value:
            theta, value, status = polished, polished_value, polished_status
    seconds = time.perf_counter() - clock
    # Snap values within rounding of a bound onto it, as lme4 reports them.
    at_bound = np.isfinite(lower) & (theta - lower < 1e-10)
    theta = np.where(at_bound, lower, theta)
    messages: list[str] = []
    ok = status not in ("maximum number of evaluations reached", "maximum time reached")
    if not ok:
        messages.append(f"the optimizer stopped early: {status}")
    gradient = None
    if check:
        passed, found, gradient = check_convergence(
            objective,
            theta,
            lower,
            evaluate_many=_parallel_evaluator(problem, scale, seconds / max(n_eval, 1)),
        )
        ok = ok and passed
        messages.extend(found)
    theta = theta * scale
    return OptimizationSummary(
        initial=start * scale,
        lower=lower.copy(),
        final=theta,
        objective=value,
        n_evaluations=n_eval,
        return_code=status,
        converged=ok,
        messages=tuple(messages),
        gradient=gradient,
        seconds=seconds,
    )


def _parallel_evaluator(problem: LinearProblem, scale: np.ndarray, seconds_per_evaluation: float):
    """Evaluate a batch of points (in φ) on two threads when evaluations are slow.

    The convergence check's points are independent; a second workspace on
    the same cross-products lets a worker thread evaluate half of them while
    the compiled loop and LAPACK release the GIL.  Below a few milliseconds
    per evaluation the threads' overhead would eat the gain: None.
    """
    if seconds_per_evaluation < _PARALLEL_MIN_SECONDS or available_cpus() < 2:
        return None

    def evaluate_many(points: list[np.ndarray]) -> list[float]:
        first_ws, second_ws = problem.workspace(), problem.workspace()

        def run(chunk: list[np.ndarray], ws) -> list[float]:
            return [problem.objective(p * scale, workspace=ws) for p in chunk]

        with ThreadPoolExecutor(max_workers=1) as pool:
            second = pool.submit(run, points[1::2], second_ws)
            first = run(points[::2], first_ws)
            values = [0.0] * len(points)
            values[::2] = first
            values[1::2] = second.result()
        return values

    return evaluate_many
