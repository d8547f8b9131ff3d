"""Stage 4 with the exact gradient: the quasi-Newton fit, its boundary probes, its check.

:class:`Evaluator` gives the criterion and its gradient in φ = θ/scale on a
workspace of its own (:mod:`~mixedmodels.engine.gradient`);
:func:`fit_quasi_newton` runs :mod:`~mixedmodels.engine.quasi_newton` from a
start, with the θ of scalar terms on a log scale while they stay well inside,
then probes the coordinates left on a bound (lme4's ``restart_edge`` idea:
a zero variance is a stationary point whether or not it is a minimum),
restarts once from the start values of those coordinates (a minimum on a face
of the bounds can be a local one), and checks the first-order conditions with
the exact gradient.
"""

from __future__ import annotations

import math
import time

import numpy as np

from .factor import BlockedCholesky
from .gradient import ProfiledGradient, Residuals
from .information import average_information
from .optimize import OptimizationSummary, check_stationarity
from .problem import LinearProblem
from .quasi_newton import QuasiNewtonResult, minimize_quasi_newton, positive_definite
from .small_search import (
    INFORMATION_UNUSABLE,
    NOT_FINITE_AT_START,
    STATUS,
    compiled_search,
    mirror_arrays,
)
from .small_trailing import SmallTrailing
from .smallmatrix import all_finite

# A coordinate left on its bound is probed this far inside (in φ) when its
# derivative there is below _PROBE_SLOPE: a zero variance is a stationary point
# of the objective (it is even in a scalar term's θ), minimum or not.
_PROBE_STEP = 1e-2
_PROBE_SLOPE = 1e-4
# The restart from the escape point stops once back near the point the fit
# ended on: every coordinate within _RETURN_STEP of it (relative, at least
# absolute), its value within _RETURN_GAP.
_RETURN_STEP = 1e-2
_RETURN_GAP = 1e-3
# Diagonal elements of λ are moved on a log scale while they stay above
# _LOG_SWITCH (in φ): the criterion is much closer to quadratic in log θ for a
# variance away from zero (fewer steps), and a coordinate heading for its bound
# goes back to θ itself, where the bound can be reached and checked.
_LOG_SWITCH = 0.01
# ... from a start above this (a start lifted off its bound, see
# start.start_steps, stays on θ).
_LOG_START = 0.1
# The Hessian argument of the compiled search's information start (not read).
_NO_MATRIX = np.zeros((0, 0))


class Evaluator:
    """The criterion and its gradient in φ on one workspace (by default the problem's
    own for this thread, where the solution at the optimum is then read)."""

    def __init__(
        self,
        problem: LinearProblem,
        scale: np.ndarray,
        workspace: BlockedCholesky | None = None,
        *,
        compiled_search: bool = True,
    ) -> None:
        self.problem = problem
        # Whether :meth:`search` runs the quasi-Newton search in one compiled call where
        # the workspace is on the compiled small path (False: always the Python loop;
        # the tests compare the two).
        self.compiled_search = compiled_search
        self.scale = scale
        self.workspace = problem.default_workspace() if workspace is None else workspace
        self.theta_rows = [t.theta_rows for t in problem.terms]
        self.theta_cols = [t.theta_cols for t in problem.terms]
        # Each θ's term, row and column in λ: the problem's shape has it (a copy:
        # numba's kernels take writable arrays).
        self.theta_index = problem.layout.theta_index.copy()
        # The general gradient, made at its first use (the compiled small path,
        # decided at the first gradient, needs none): None until then.
        self._gradient_of: ProfiledGradient | None = None
        self.reml = problem.reml
        # The workspace's compiled small path (None until the first gradient decides,
        # False where there is none).
        self._small: SmallTrailing | bool | None = None
        self.theta: np.ndarray | None = None
        self._lambdas: list[np.ndarray] = []
        # What the last gradient read off the factor, for the information at its θ.
        self._residuals: Residuals | None = None
        # The problem's θ structure, read by every fit on this evaluator (a refit
        # makes many): the mirrored columns of λ and the θ of scalar terms.
        self.mirrors = problem.layout.mirrors
        self.scalar = problem.layout.scalar
        # φ = θ (nearly every model: no column on an extreme scale): nothing to rescale.
        self.unit_scale = all(s == 1.0 for s in scale.tolist())

    def value(self, phi: np.ndarray) -> float:
        """The criterion at φ; the workspace is left there for :meth:`gradient`."""
        self.theta = theta = phi * self.scale
        self._residuals = None
        self._lambdas = lambdas = self.problem.lambdas(theta)
        # LinearProblem.objective_of's two steps, without its layer (every evaluation).
        workspace = self.workspace
        if not workspace.update(lambdas):
            return math.inf
        return self.problem.criterion(workspace, self.reml)

    def gradient(self) -> np.ndarray:
        """∇φ at the point of the last :meth:`value`."""
        small = self._small
        if small is None:
            small = self._small = self.workspace.small_path() or False
        if small:
            # The compiled path's gradient directly (ProfiledGradient would only forward).
            g, beta, modes, ze = small.gradient(self._lambdas, self.theta_index, self.reml)
            self._residuals = Residuals(beta, modes, ze)
        else:
            if self._gradient_of is None:
                self._gradient_of = ProfiledGradient(
                    self.workspace, self.theta_rows, self.theta_cols, self.theta_index
                )
            g, self._residuals = self._gradient_of.gradient_and_residuals(
                self.workspace, self._lambdas, self.reml
            )
        # (g is a new array at every call: returned as it is where φ = θ.)
        return g if self.unit_scale else g * self.scale

    def search(
        self,
        start: np.ndarray,
        lower: np.ndarray,
        hessian: np.ndarray | None,
        initial: tuple[float, np.ndarray] | None,
    ) -> QuasiNewtonResult | None:
        """``minimize_quasi_newton(self.value, self.gradient, start, lower, mirrors=...,
        hessian=hessian, initial=initial)`` in one compiled call
        (:mod:`~mixedmodels.engine.small_search`: the same points, values and counts),
        leaving the evaluator and its workspace at the last point evaluated as the
        Python loop does; None where the workspace is not on the compiled small path
        (the caller runs the Python loop).

        ``hessian`` None: the information start first (f, ∇f and the average
        information at ``start``, as :func:`_information_start` without logged
        coordinates; ``initial`` is then not read).  Its counts are included; where f
        or ∇f is not finite there the status is :data:`NOT_FINITE_AT_START`, where the
        information is not usable :data:`INFORMATION_UNUSABLE` (the result's value,
        gradient and Hessian are then f, ∇f and the information at the start).
        """
        small = self._small
        if small is None:
            small = self._small = self.workspace.small_path() or False
        if not small or not self.compiled_search:
            return None
        kernel = compiled_search()
        if kernel is None:
            return None
        problem = self.problem
        cp = problem.cross_products
        p = cp.n_fixed
        reml = self.reml
        n = len(start)
        arrays = small.search_arguments(self.theta_index)
        theta = np.empty(n)
        mirror_ptr, mirror_index = mirror_arrays(problem.layout)
        if hessian is None:
            mode, b0, f0, g0 = 2, _NO_MATRIX, 0.0, theta
        elif initial is None:
            mode, b0, f0, g0 = 0, np.ascontiguousarray(hessian, dtype=np.float64), 0.0, theta
        else:
            b0 = np.ascontiguousarray(hessian, dtype=np.float64)
            mode, f0, g0 = 1, float(initial[0]), np.ascontiguousarray(initial[1], dtype=np.float64)
        x, f, g, b, has_b, status, iterations, predicted, held, counts = kernel(
            arrays,
            (small.n_re_trailing, p, int(cp.n_obs), float(cp.sum_log_weights), reml),
            small.n_re_trailing + (p if reml else 0),
            float(cp.n_obs - p if reml else cp.n_obs),
            self.scale,
            theta,
            start,
            lower,
            np.full(n, math.nan),
            mirror_ptr,
            mirror_index,
            b0,
            f0,
            g0,
            mode,
            1e-10,
            500,
        )
        n_values, n_gradients, current, logdet = counts.tolist()
        if n_values:
            # The evaluator and its workspace as value() and gradient() leave them.
            self.theta = theta
            self._lambdas = lambdas = problem.lambdas(theta)
            ok = not math.isnan(logdet)
            l00 = arrays[5]
            small.record_search(l00 if ok else None, lambdas)
            self.workspace.record_update(l00, logdet, lambdas if ok else None)
            self._residuals = (
                Residuals(*small.residuals(arrays[15], arrays[16], arrays[17])) if current else None
            )
        return QuasiNewtonResult(
            x=x,
            value=float(f),
            gradient=g,
            hessian=b if has_b or status == INFORMATION_UNUSABLE else np.eye(n),
            n_values=int(n_values),
            n_gradients=int(n_gradients),
            n_iterations=int(iterations),
            converged=status == 1,
            status=STATUS[status],
            predicted_decrease=float(predicted),
            held=held,
        )

    def solved_at(self, theta: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]] | None:
        """(β̂, û per term) as the last :meth:`gradient` read them off the workspace, when
        it was at exactly this θ (else None): the solution there needs no new solve."""
        residuals = self._residuals
        # (As Python floats: numpy's comparison and all() cost more on a few values.)
        if residuals is None or self.theta.tolist() != theta.tolist():
            return None
        return residuals.beta, residuals.modes

    def information(self) -> np.ndarray:
        """The average-information Hessian in φ at the point of the last :meth:`value`
        (:mod:`~mixedmodels.engine.information`)."""
        problem = self.problem
        h = average_information(
            self.workspace,
            self._lambdas,
            self.theta_rows,
            self.theta_cols,
            problem.reml,
            self._residuals,
            self.theta_index,
        )
        return h if self.unit_scale else h * _outer(self.scale)


def _outer(d: np.ndarray) -> np.ndarray:
    """dᵢdⱼ: numpy.outer's numbers (the same product), without its wrapper."""
    return d[:, None] * d


def _probe_boundary(
    evaluator: Evaluator, result: QuasiNewtonResult, lower: np.ndarray
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


def _escape_point(x: np.ndarray, start: np.ndarray, lower: np.ndarray) -> np.ndarray | None:
    """x with its coordinates on a bound moved back to their start (or 0.1 inside)."""
    on_bound = np.isfinite(lower) & (x - lower <= 0.0)
    if not on_bound.any():
        return None
    point = x.copy()
    inside = start - lower > 1e-3
    point[on_bound] = np.where(inside, start, lower + 0.1)[on_bound]
    return point


def _returned(result: QuasiNewtonResult):
    """stop(x, f) for the restart from the escape point: True once it is back near
    ``result.x`` (every coordinate within _RETURN_STEP, relative to its size
    but at least absolute) with a value within _RETURN_GAP of ``result``'s.

    From there the restart would converge to the same point again, at full
    cost (on issue 18's reproducer 30 more evaluations); a restart that finds
    a lower region elsewhere is not stopped.
    """
    near = _RETURN_STEP * np.maximum(np.abs(result.x), 1.0)

    def returned(x: np.ndarray, f: float) -> bool:
        return bool(abs(f - result.value) <= _RETURN_GAP and (np.abs(x - result.x) <= near).all())

    return returned


def _information_start(
    evaluator: Evaluator, start: np.ndarray, logged: np.ndarray
) -> tuple[np.ndarray | str, tuple[float, np.ndarray] | None]:
    """(first Hessian in ψ, (f, ∇ψ f) at the start) from the average information.

    ψ = log φ on the logged coordinates: ∂²f/∂ψ² = φ² ∂²f/∂φ² + φ ∂f/∂φ.
    Where the information is not finite the Hessian is "differences"; where
    the criterion or its gradient is not, the start is None.
    """
    f = evaluator.value(start)
    if not math.isfinite(f):
        return "differences", None
    g = evaluator.gradient()
    if not all_finite(g):
        return "differences", None
    # (As Python booleans: numpy's any() and all() cost more on a few values.)
    flags = logged.tolist()
    if not any(flags):
        # ψ is φ: the information as it is (the scaling below would multiply by 1).
        b = positive_definite(evaluator.information())
        return ("differences" if b is None else b), (f, g)
    if all(flags):
        # Every coordinate logged: D = diag(φ) and the same numbers without the selections.
        b = positive_definite(evaluator.information() * _outer(start) + np.diag(g * start))
        return ("differences" if b is None else b), (f, g * start)
    d = np.where(logged, start, 1.0)
    b = positive_definite(
        evaluator.information() * _outer(d) + np.diag(np.where(logged, g * start, 0.0))
    )
    return ("differences" if b is None else b), (f, g * d)


def _minimize(
    evaluator: Evaluator,
    start: np.ndarray,
    lower: np.ndarray,
    mirrors: dict[int, np.ndarray],
    scalar: np.ndarray,
    hessian: np.ndarray | str,
) -> QuasiNewtonResult:
    """The quasi-Newton method in ψ (log φ for the θ of scalar terms above _LOG_SWITCH,
    φ for the others), the result in φ; ``hessian`` an array in φ, "information"
    (the average information at the start) or "differences"."""
    logged = scalar & (start - lower > _LOG_START) & (lower == 0)
    initial = None
    n_values = n_gradients = 0
    found = None
    if isinstance(hessian, str) and hessian == "information" and not any(logged.tolist()):
        # On the compiled small path: the information start and the search in one call.
        found = evaluator.search(start, lower, None, None)
        if found is not None and found.status == INFORMATION_UNUSABLE:
            # What _information_start does with an information that is not finite
            # (or LAPACK's eigensolver failed): here, in Python.
            b = positive_definite(found.hessian)
            hessian = "differences" if b is None else b
            initial = (found.value, found.gradient)
            n_values = n_gradients = 1
            found = None
        elif found is not None and found.status != NOT_FINITE_AT_START:
            return found
    if isinstance(hessian, str) and hessian == "information":
        if found is None:
            hessian, initial = _information_start(evaluator, start, logged)
        n_values = n_gradients = 1
        if found is not None or initial is None:
            return QuasiNewtonResult(
                x=start,
                value=math.inf,
                gradient=np.full(len(start), math.nan),
                hessian=np.eye(len(start)),
                n_values=1,
                n_gradients=0,
                n_iterations=0,
                converged=False,
                status="the objective is not finite at the start",
                predicted_decrease=math.inf,
                held=np.zeros(len(start), dtype=bool),
            )
    elif not isinstance(hessian, str):
        # A Hessian given in φ, carried to ψ: H_ψ ≈ D H_φ D on the logged coordinates.
        d = np.where(logged, start, 1.0)
        hessian = hessian * _outer(d)
    # A logged coordinate that falls below a quarter of its start is heading
    # for zero, where θ itself converges much faster: it goes back to θ.
    # (As Python booleans: numpy's any() and all() cost more on a few values.)
    if any(logged.tolist()):
        # (At least _LOG_SWITCH > 0, or NaN: no division by zero to silence.)
        floor = np.log(np.maximum(_LOG_SWITCH, 0.25 * start))
    x = start
    while True:
        fixed = logged.copy()
        flags = fixed.tolist()
        any_fixed = any(flags)
        every_fixed = any_fixed and all(flags)
        if every_fixed:
            # Every coordinate logged (models of scalar terms away from their bounds):
            # the same element-wise numbers on whole arrays, without selecting them.

            def to_phi(psi: np.ndarray) -> np.ndarray:
                return np.exp(psi)

            def value(psi: np.ndarray) -> float:
                return evaluator.value(np.exp(psi))

            def gradient() -> np.ndarray:
                g = evaluator.gradient()
                g *= evaluator.theta / evaluator.scale
                return g

            def leaving(psi: np.ndarray, _f: float) -> bool:
                return bool((psi < floor).any())

        elif any_fixed:

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

            def leaving(psi: np.ndarray, _f: float, fixed: np.ndarray = fixed) -> bool:
                return bool((psi[fixed] < floor[fixed]).any())

        if every_fixed:
            # The branch below on whole arrays: ψ = log φ, no bound, no mirror
            # (a scalar term has none), every step capped at a factor of two.
            psi = np.log(x)
            result = minimize_quasi_newton(
                value,
                gradient,
                psi,
                np.full(len(x), -np.inf),
                mirrors={},
                stop=leaving,
                hessian=hessian,
                initial=initial,
                max_step=np.full(len(x), math.log(2.0)),
            )
        elif any_fixed:
            psi = x.copy()
            psi[fixed] = np.log(x[fixed])
            result = minimize_quasi_newton(
                value,
                gradient,
                psi,
                np.where(fixed, -np.inf, lower),
                mirrors={i: b for i, b in mirrors.items() if not fixed[i]},
                stop=leaving,
                hessian=hessian,
                initial=initial,
                # On the log scale a step may double or halve a value.
                max_step=np.where(fixed, math.log(2.0), np.nan),
            )
        else:
            # Without logged coordinates ψ is φ: the evaluator's own methods, the
            # bounds, mirrors and step caps as they are (no closures to build).
            psi = x.copy()
            # One compiled call on the small path where B is given; else the Python loop.
            result = (
                None if isinstance(hessian, str) else evaluator.search(psi, lower, hessian, initial)
            )
            if result is None:
                result = minimize_quasi_newton(
                    evaluator.value,
                    evaluator.gradient,
                    psi,
                    lower,
                    mirrors=mirrors,
                    hessian=hessian,
                    initial=initial,
                )
        n_values += result.n_values
        n_gradients += result.n_gradients
        # Where the method took no step, x is where it started, as evaluated: exp(log x)
        # can differ from x in its last bit, and the solution at the optimum would then
        # refactor at a θ the criterion was never evaluated at.
        if not any_fixed:
            x = result.x.copy()
        elif not (result.x == psi).all():
            x = to_phi(result.x)
        if result.status == "stopped by the caller":
            # The coordinates the stop saw below their floor (in ψ, as it tests them):
            # each such stop takes at least one off the log scale, so it ends.
            leaving_now = fixed & (result.x < floor)
            logged &= ~leaving_now
            # Carry the curvature over to the coordinates that change scale.
            d = np.where(leaving_now, x, 1.0)
            hessian = result.hessian / _outer(d)
            initial = (result.value, result.gradient / d)
            continue
        # Back to φ: g_φ = g_ψ / φ and H_φ ≈ D⁻¹ H_ψ D⁻¹ (g ≈ 0) on the logged coordinates.
        if every_fixed:
            gradient_phi = result.gradient / x
            hessian_phi = result.hessian / _outer(x)
        elif any_fixed:
            scale = np.where(fixed, x, 1.0)
            gradient_phi = result.gradient / scale
            hessian_phi = result.hessian / _outer(scale)
        else:
            gradient_phi, hessian_phi = result.gradient, result.hessian
        return QuasiNewtonResult(
            x=x,
            value=result.value,
            gradient=gradient_phi,
            hessian=hessian_phi,
            n_values=n_values,
            n_gradients=n_gradients,
            n_iterations=result.n_iterations,
            converged=result.converged,
            status=result.status,
            predicted_decrease=result.predicted_decrease,
            held=result.held,
        )


def fit_quasi_newton(
    evaluator: Evaluator,
    start: np.ndarray,
    *,
    check: bool = True,
    max_restarts: int = 3,
    hessian: np.ndarray | None = None,
) -> OptimizationSummary | None:
    """The quasi-Newton fit from φ = ``start``; None when the criterion is not finite there.

    ``hessian`` (in φ) replaces the differences of the gradient at the start
    (a refit starts where a fit ended, with that fit's curvature).
    """
    problem = evaluator.problem
    scale = evaluator.scale
    lower = problem.lower_bounds
    clock = time.perf_counter()
    mirrors = evaluator.mirrors
    scalar = evaluator.scalar
    result = _minimize(
        evaluator, start, lower, mirrors, scalar, "information" if hessian is None else hessian
    )
    if not math.isfinite(result.value):
        return None
    n_values, n_gradients = result.n_values, result.n_gradients
    escaped = False
    for _ in range(max_restarts):
        # (As Python floats: numpy's any() costs more on a few values.)
        if not any(gap <= 0.0 for gap in (result.x - lower).tolist()):
            # Nothing on a bound: nothing to probe, nowhere to escape from.
            break
        inside, used = _probe_boundary(evaluator, result, lower)
        n_values += used
        n_gradients += used
        if inside is None and not escaped:
            # A minimum on a face of the bounds can be a local one only (a
            # variance that reached zero early on the path): restart once with
            # those coordinates back at their starting values.
            inside = _escape_point(result.x, start, lower)
            escaped = used_escape = True
        else:
            used_escape = False
        if inside is None:
            break
        # Only the restart from the escape point is stopped on its return.
        stop = _returned(result) if used_escape else None
        restart_hessian, initial = _information_start(
            evaluator, inside, np.zeros(len(inside), dtype=bool)
        )
        if initial is None:
            break
        again = minimize_quasi_newton(
            evaluator.value,
            evaluator.gradient,
            inside,
            lower,
            mirrors=mirrors,
            hessian=restart_hessian,
            initial=initial,
            stop=stop,
        )
        n_values += again.n_values + 1
        n_gradients += again.n_gradients + 1
        if not again.value < result.value:
            break
        result = again
    seconds = time.perf_counter() - clock
    # A variance shrinking to zero along the path approaches its bound
    # geometrically; within rounding of it, it is reported on it, as lme4 does.
    # (x − (−∞) is +∞: a coordinate without a bound is never near it.)
    near = result.x - lower < 1e-10
    x = np.where(near, lower, result.x) if any(near.tolist()) else result.x
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
        hessian=result.hessian.copy() if evaluator.unit_scale else result.hessian / _outer(scale),
    )
