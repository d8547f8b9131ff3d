"""Stage 4 with the exact gradient: the quasi-Newton fit, its boundary probes, its check.

:class:`~mixedmodels.engine.evaluator.Evaluator` gives the criterion and its
gradient in φ = θ/scale on a workspace of its own (on the compiled small path it
runs the whole method below in one call, :mod:`~mixedmodels.engine.small_search`);
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

from .evaluator import Evaluator
from .evaluator import outer as _outer
from .optimize import OptimizationSummary, check_stationarity, stationarity_messages
from .quasi_newton import QuasiNewtonResult, minimize_quasi_newton, positive_definite
from .small_search import (
    INFORMATION_UNUSABLE,
    LOG_START,
    LOG_SWITCH,
    NOT_FINITE_AT_START,
    RETURN_GAP,
    RETURN_STEP,
)
from .smallmatrix import all_finite

# A coordinate left on its bound is probed this far inside (in φ) when its
# derivative there is below _PROBE_SLOPE: a zero variance is a stationary point
# of the objective (it is even in a scalar term's θ), minimum or not.
_PROBE_STEP = 1e-2
_PROBE_SLOPE = 1e-4


def _exp(a: np.ndarray) -> np.ndarray:
    """exp element by element as the C library computes it (math.exp): the compiled
    search (:mod:`~mixedmodels.engine.small_search`) computes the same numbers, which
    numpy's vectorised exp does not always give (it differs in the last bit)."""
    return np.array([math.exp(v) for v in a.tolist()])


def _log(a: np.ndarray) -> np.ndarray:
    """log element by element as the C library computes it (see :func:`_exp`); NaN
    for a negative value, as numpy gives it."""
    return np.array(
        [math.log(v) if v > 0 else (-math.inf if v == 0 else math.nan) for v in a.tolist()]
    )


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
    ``result.x`` (every coordinate within RETURN_STEP, relative to its size
    but at least absolute) with a value within RETURN_GAP of ``result``'s.

    From there the restart would converge to the same point again, at full
    cost (on issue 18's reproducer 30 more evaluations); a restart that finds
    a lower region elsewhere is not stopped.
    """
    near = RETURN_STEP * np.maximum(np.abs(result.x), 1.0)

    def returned(x: np.ndarray, f: float) -> bool:
        return bool(abs(f - result.value) <= RETURN_GAP and (np.abs(x - result.x) <= near).all())

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
    """The quasi-Newton method in ψ (log φ for the θ of scalar terms above LOG_SWITCH,
    φ for the others), the result in φ; ``hessian`` an array in φ, "information"
    (the average information at the start) or "differences"."""
    initial = None
    n_values = 0
    information = isinstance(hessian, str) and hessian == "information"
    found = None
    if information or not isinstance(hessian, str):
        # On the compiled small path: the whole method in one call.
        found = evaluator.search(start, lower, None if information else hessian, None, scalar)
        if found is not None and found.status not in (INFORMATION_UNUSABLE, NOT_FINITE_AT_START):
            return found
    logged = scalar & (start - lower > LOG_START) & (lower == 0)
    if found is not None:
        if found.status == INFORMATION_UNUSABLE:
            # What _information_start does with an information that is not finite
            # (or LAPACK's eigensolver failed), then the Python loop.
            b = positive_definite(found.hessian)
            hessian = "differences" if b is None else b
            initial = (found.value, found.gradient)
            return _minimize_from(evaluator, start, lower, mirrors, logged, hessian, initial, 1)
        return _not_finite_at_start(start)
    if information:
        hessian, initial = _information_start(evaluator, start, logged)
        n_values = 1
        if initial is None:
            return _not_finite_at_start(start)
    elif not isinstance(hessian, str):
        # A Hessian given in φ, carried to ψ: H_ψ ≈ D H_φ D on the logged coordinates.
        d = np.where(logged, start, 1.0)
        hessian = hessian * _outer(d)
    return _minimize_from(evaluator, start, lower, mirrors, logged, hessian, initial, n_values)


def _not_finite_at_start(start: np.ndarray) -> QuasiNewtonResult:
    """_minimize's result where f or ∇f is not finite at the start of the information."""
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


def _minimize_from(
    evaluator: Evaluator,
    start: np.ndarray,
    lower: np.ndarray,
    mirrors: dict[int, np.ndarray],
    logged: np.ndarray,
    hessian: np.ndarray | str,
    initial: tuple[float, np.ndarray] | None,
    n_values: int,
) -> QuasiNewtonResult:
    """:func:`_minimize`'s loop in Python from ``start``: B (in ψ or "differences") and
    f, ∇ψ f there (or None) given, after ``n_values`` values and gradients."""
    n_gradients = n_values
    # A logged coordinate that falls below a quarter of its start is heading
    # for zero, where θ itself converges much faster: it goes back to θ.
    # (As Python booleans: numpy's any() and all() cost more on a few values.)
    if any(logged.tolist()):
        # (At least LOG_SWITCH > 0, or NaN: no division by zero to silence.)
        floor = _log(np.maximum(LOG_SWITCH, 0.25 * start))
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
                return _exp(psi)

            def value(psi: np.ndarray) -> float:
                return evaluator.value(_exp(psi))

            def gradient() -> np.ndarray:
                g = evaluator.gradient()
                g *= evaluator.theta / evaluator.scale
                return g

            def leaving(psi: np.ndarray, _f: float) -> bool:
                return bool((psi < floor).any())

        elif any_fixed:

            def to_phi(psi: np.ndarray, fixed: np.ndarray = fixed) -> np.ndarray:
                phi = psi.copy()
                phi[fixed] = _exp(psi[fixed])
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
            psi = _log(x)
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
            psi[fixed] = _log(x[fixed])
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


def _restart(
    evaluator: Evaluator,
    inside: np.ndarray,
    lower: np.ndarray,
    mirrors: dict[int, np.ndarray],
    result: QuasiNewtonResult,
    stopped_on_return: bool,
) -> QuasiNewtonResult | None:
    """The search from ``inside`` with the information there (in φ), stopped on its
    return to ``result`` if asked; its counts include the start's; None where f or
    ∇f is not finite at ``inside`` (that evaluation not counted)."""
    found = evaluator.search(
        inside, lower, None, None, None, (result.x, result.value) if stopped_on_return else None
    )
    if found is not None and found.status not in (INFORMATION_UNUSABLE, NOT_FINITE_AT_START):
        return found
    if found is None:
        hessian, initial = _information_start(evaluator, inside, np.zeros(len(inside), dtype=bool))
    elif found.status == INFORMATION_UNUSABLE:
        b = positive_definite(found.hessian)
        hessian, initial = ("differences" if b is None else b), (found.value, found.gradient)
    else:
        initial = None
    if initial is None:
        return None
    again = minimize_quasi_newton(
        evaluator.value,
        evaluator.gradient,
        inside,
        lower,
        mirrors=mirrors,
        hessian=hessian,
        initial=initial,
        stop=_returned(result) if stopped_on_return else None,
    )
    again.n_values += 1
    again.n_gradients += 1
    return again


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
    # Each coordinate's distance to its bound (as Python floats: numpy's any() costs
    # more on a few values); x − (−∞) is +∞: a coordinate without one is never near it.
    gaps = (result.x - lower).tolist()
    for _ in range(max_restarts):
        if not any(gap <= 0.0 for gap in gaps):
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
        again = _restart(evaluator, inside, lower, mirrors, result, used_escape)
        if again is None:
            break
        n_values += again.n_values
        n_gradients += again.n_gradients
        if not again.value < result.value:
            break
        result = again
        gaps = (result.x - lower).tolist()
    seconds = time.perf_counter() - clock
    # A variance shrinking to zero along the path approaches its bound
    # geometrically; within rounding of it, it is reported on it, as lme4 does.
    x = result.x
    if not all(gap >= 1e-10 for gap in gaps):
        x = np.where(x - lower < 1e-10, lower, x)
    messages: list[str] = []
    ok = result.converged
    if not ok:
        messages.append(f"the optimizer stopped early: {result.status}")
    if check:
        largest = result.scaled_gradient
        if x is result.x and largest == largest:
            # The compiled search's check at its interior optimum (the same numbers).
            found = stationarity_messages(largest)
        else:
            found = check_stationarity(result.gradient, result.hessian, x, lower, mirrors)[1]
        ok = ok and not found
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
