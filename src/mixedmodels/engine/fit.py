"""Stage 4: θ optimised within its bounds, on a problem's own workspaces.

From the moment start (:mod:`~mixedmodels.engine.start`), a bound-constrained
quasi-Newton method with the exact gradient
(:mod:`~mixedmodels.engine.quasi_newton`, :mod:`~mixedmodels.engine.gradient`),
then probes of the coordinates it leaves on a bound (lme4's ``restart_edge``
idea) and the exact first-order check.  Where numba is missing, BOBYQA with
restarts from a boundary optimum, a polish and lme4's finite-difference
check.  The optimizer moves φ = θ/scale so that random-effect columns on
extreme scales fit as well as rescaled ones (:func:`theta_scale`).  Returns an
:class:`~mixedmodels.engine.optimize.OptimizationSummary` and the
:class:`~mixedmodels.engine.problem.Solution` at its θ, read off the workspace
the optimizer left there; the model turns them into its fitted state.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .factor import BlockedCholesky
from .gradient import gradient_available
from .gradient_fit import Evaluator, fit_quasi_newton
from .kernels import available_cpus
from .optimize import (
    BOUNDARY_TOLERANCE,
    OptimizationSummary,
    check_convergence,
    minimize_bobyqa,
    restart_steps,
)
from .problem import LinearProblem, Solution
from .small_trailing import MAX_ROWS as SMALL_TRAILING_ROWS
from .start import moment_start, start_steps
from .threads import blas_threads

# The convergence check evaluates on two threads above this time per evaluation.
_PARALLEL_MIN_SECONDS = 2e-3
OPTIMIZERS = ("auto", "quasi-newton", "bobyqa")


def optimizer_threads(problem: LinearProblem) -> int | None:
    """The BLAS threads for the θ loop of ``problem``: 1, or None (BLAS left as it is)
    when the trailing block is small enough for the compiled path (at most 24
    rows), where every BLAS call is on a matrix too small for OpenBLAS to
    split across threads and setting the limit would cost more than the fit's
    algebra (a refit loop enters the loop per response)."""
    cp = problem.cross_products
    later = sum(m * q for m, q in zip(cp.n_levels[1:], cp.q[1:], strict=True))
    return None if later + cp.xx.shape[0] <= SMALL_TRAILING_ROWS else 1


def theta_scale(problem: LinearProblem) -> np.ndarray:
    """θ = scale · φ, where φ is what the optimizer moves.

    A random-effects column on an extreme scale (root mean square outside
    [1e-3, 1e3]) needs θ near the inverse of that scale, far from lme4's
    start of 1 and from BOBYQA's unit steps.  Writing Zλ = (Z S⁻¹)(Sλ) with
    S the columns' scales, φ = Sλ is of order one.  Columns on ordinary
    scales keep θ = φ, so the path is lme4's.
    """
    cp = problem.cross_products
    n = max(cp.n_obs, 1)
    # A first look by a plain reduction (einsum, which the exact scales below use,
    # costs more in a fit's cold caches): where every column's mean square is well
    # inside [1e-6, 1e6] (1 % margins, far beyond the two sums' rounding), θ = φ.
    low, high = 1.01e-6 * n, 0.99e6 * n
    if all(
        low < total < high
        for diag in cp.diag
        for total in diag.diagonal(0, 1, 2).sum(axis=0).tolist()
    ):
        return np.ones(problem.n_theta)
    factors = []
    ordinary = True
    for term, diag in zip(problem.terms, cp.diag, strict=True):
        # Python floats: a term has a few columns, and numpy's calls cost more.
        row_factor = []
        for total in np.einsum("lii->i", diag).tolist():
            rms = math.sqrt(total / n) if total >= 0 else math.nan
            extreme = rms > 0 and (rms < 1e-3 or rms > 1e3)
            row_factor.append(1.0 / rms if extreme else 1.0)
            ordinary = ordinary and not extreme
        factors.append((row_factor, term.theta_rows))
    if ordinary:
        # Every column on an ordinary scale (nearly every model): θ = φ.
        return np.ones(problem.n_theta)
    return np.concatenate([np.array(f)[rows] for f, rows in factors])


def starting_point(
    problem: LinearProblem, start: np.ndarray | str | None, scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray | float]:
    """(φ at the start, BOBYQA's initial steps) for ``start`` (None, "lme4" or θ)."""
    if start is None:
        moments = moment_start(problem.cross_products, problem.terms)
        if moments is not None:
            return start_steps(moments / scale, problem.lower_bounds)
    identity = np.concatenate([t.theta_start() for t in problem.terms])
    if start is None:
        return identity, 0.75
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
) -> tuple[OptimizationSummary, Solution | None]:
    """Minimise the problem's criterion over θ; see :meth:`LinearMixedModel.fit`.

    ``optimizer`` is "quasi-newton" (exact gradient; needs numba), "bobyqa"
    (derivative-free, as lme4) or "auto" (the first where numba imports).
    Returns the optimizer's summary and the solution at its θ (None when the
    criterion was not finite anywhere the optimizer went).
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
    # (measured on this 2-core machine): BLAS stays single-threaded here, and
    # for the solution at the optimum (under load, OpenBLAS's second thread
    # made a 1159² Cholesky fifty times slower).  Where BLAS is left as it is
    # (small models), no context manager is entered at all.
    threads = optimizer_threads(problem)
    if threads is None:
        return _fit(problem, optimizer, start_phi, steps, scale, check, max_restarts)
    with blas_threads(threads):
        return _fit(problem, optimizer, start_phi, steps, scale, check, max_restarts)


def _fit(
    problem: LinearProblem,
    optimizer: str,
    start_phi: np.ndarray,
    steps: np.ndarray | float,
    scale: np.ndarray,
    check: bool,
    max_restarts: int,
) -> tuple[OptimizationSummary, Solution | None]:
    """:func:`optimize_theta` from φ = ``start_phi`` with ``optimizer`` decided."""
    if optimizer == "quasi-newton":
        evaluator = Evaluator(problem, scale)
        summary = fit_quasi_newton(evaluator, start_phi, check=check, max_restarts=max_restarts)
        if summary is not None:
            return summary, solution_at(summary, evaluator)
        # The criterion is not finite at the start: BOBYQA searches more widely.
    summary, workspace = _optimize(problem, start_phi, steps, scale, check, max_restarts)
    if not math.isfinite(summary.objective):
        return summary, None
    return summary, problem.solve(summary.final, workspace, refresh=False)


def solution_at(summary: OptimizationSummary, evaluator: Evaluator) -> Solution:
    """The solution at the summary's θ on the evaluator's workspace: read as it is
    where the optimizer stopped there, and with the β̂ and û of its last gradient
    where that was at the same θ (no triangular solve then)."""
    return evaluator.problem.solve(
        summary.final,
        evaluator.workspace,
        refresh=False,
        solved=evaluator.solved_at(summary.final),
    )


def _optimize(
    problem: LinearProblem,
    start: np.ndarray,
    steps: np.ndarray | float,
    scale: np.ndarray,
    check: bool,
    max_restarts: int,
) -> tuple[OptimizationSummary, BlockedCholesky]:
    """BOBYQA's fit: its summary and the workspace it evaluated on."""
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
    summary = OptimizationSummary(
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
    return summary, workspace


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
