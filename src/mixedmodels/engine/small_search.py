"""gradient_fit's quasi-Newton method for a small model in one compiled call.

On the compiled small path (:mod:`~mixedmodels.engine.small_trailing`) an
evaluation's kernels take a few microseconds, and the Python around them — the
evaluator's λ, the factor's bookkeeping, the criterion read off the diagonal, the
line search and the BFGS update of :mod:`~mixedmodels.engine.quasi_newton`, the
log-scale loop of :mod:`~mixedmodels.engine.gradient_fit` — costs several times
more.  Here all of it runs as numba functions: the information start (f, ∇f, the
average information, its positive definite Hessian), the search in ψ (log φ on
the θ of scalar terms well inside their bounds) with its stop and switch back to
φ, and :func:`minimize_quasi_newton
<mixedmodels.engine.quasi_newton.minimize_quasi_newton>`'s loop (mirrors, the
ε-active set, the line search, BFGS, the convergence rules).  They call the
evaluations of :mod:`~mixedmodels.engine.small_evaluation` and the compiled steps
of :mod:`~mixedmodels.engine.quasi_newton` directly, with the same arithmetic in
the same order (exp and log are the C library's on both paths): the same points
are evaluated, in the same order, to the same bits.

:meth:`Evaluator.search <mixedmodels.engine.evaluator.Evaluator.search>` decides
when it applies and leaves the evaluator and its workspace as the Python loop
would: at the last point evaluated, with β̂, û and Zᵀe of the last gradient when
that was at the same point.  The restarts of
:func:`~mixedmodels.engine.gradient_fit.fit_quasi_newton` from a bound are such
searches too (with the stop on their return); its probes stay in Python.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .jit import compiled
from .problem import ThetaLayout

# quasi_newton's constants (one definition of the method).
from .quasi_newton import (
    ARMIJO,
    CURVATURE,
    FIRST_STEP,
    MAX_BACKTRACKS,
    MAX_EXTENSIONS,
    MAX_GROWTH,
    NOISE,
    STEP_FLOOR,
    compiled_steps,
)
from .small_evaluation import (
    compiled_evaluations,
    compiled_factor_parts,
    compiled_scaled_gradient,
)

# Diagonal elements of λ are moved on a log scale while they stay above
# LOG_SWITCH (in φ): the criterion is much closer to quadratic in log θ for a
# variance away from zero (fewer steps), and a coordinate heading for its bound
# goes back to θ itself, where the bound can be reached and checked ...
LOG_SWITCH = 0.01
# ... from a start above LOG_START (a start lifted off its bound, see
# start.start_steps, stays on θ).  (gradient_fit's Python loop reads the same.)
LOG_START = 0.1
# The restart from an escape point stops once back near the point the fit ended
# on: every coordinate within RETURN_STEP of it (relative, at least absolute),
# its value within RETURN_GAP (gradient_fit._returned).
RETURN_STEP = 1e-2
RETURN_GAP = 1e-3
_LOG_TWO = math.log(2.0)

# Status codes of search_kernel, and what minimize_quasi_newton calls them.
STATUS = (
    "maximum number of iterations reached",
    "converged",
    "no descent direction",
    "line search failed",
    "the objective or its gradient is not finite at the start",
    "the objective is not finite at the start",
    "the average information is not usable",
    "stopped by the caller",
    "stopped by the caller",
)
NOT_FINITE_AT_START = STATUS[5]
INFORMATION_UNUSABLE = STATUS[6]

# The compiled loops search_kernel calls: set by compiled_search() before it compiles
# it (numba reads a global's value when it compiles the function that calls it).
_direction = _bfgs_update = _trial_point = _evaluate = _gradient_at = _all_finite = None
_information_at = _positive_definite = _line_search = None
_value_in_psi = _gradient_in_psi = _quasi_newton = _scaled_gradient = _factor_parts = None


def value_in_psi_loop(psi, e):  # pragma: no cover - numba
    """The criterion at ψ (φ = exp ψ on the logged coordinates ``e[6]``): the trial
    points of the search, counted; ``e``: (scale, θ, kernels' arrays, criterion's
    numbers, n_s, dof, logged, counts)."""
    fixed, counts = e[6], e[7]
    phi = psi.copy()
    for i in range(psi.shape[0]):
        if fixed[i]:
            phi[i] = math.exp(psi[i])
    counts[0] += 1
    counts[2] = 0
    f, logdet = _evaluate(phi, e[0], e[1], e[2], e[3])
    counts[3] = logdet
    return f


def gradient_in_psi_loop(e):  # pragma: no cover - numba
    """∇ψ at the last point evaluated (∂f/∂ψ = θ/scale · ∂f/∂φ on the logged ones), counted."""
    scale, theta, fixed, counts = e[0], e[1], e[6], e[7]
    counts[1] += 1
    g = _gradient_at(scale, e[2], e[4], e[5])
    counts[2] = 1
    for i in range(g.shape[0]):
        if fixed[i]:
            g[i] *= theta[i] / scale[i]
    return g


def line_search_loop(x, f, g, d, lower, max_backtracks, e):  # pragma: no cover - numba
    """quasi_newton._Search.line_search: (found, x, f, g) of the accepted point."""
    alpha = 1.0
    found = False
    x_new = x
    f_new = math.inf
    g_new = g
    outside = False
    for _ in range(max_backtracks):
        x_new, step, moved, outside = _trial_point(x, d, alpha, lower)
        if not moved:
            return False, x, f, g
        f_new = _value_in_psi(x_new, e)
        along = np.dot(g, step)
        if f_new <= f + ARMIJO * along:
            g_new = _gradient_in_psi(e)
            if _all_finite(g_new):
                found = True
                break
            f_new = math.inf
        # Quadratic interpolation, kept within [0.1, 0.5] of the step (Python's min
        # and max: the first argument unless the second is strictly beyond it).
        shrink = 0.5
        if math.isfinite(f_new):
            slope = along / alpha
            curvature = f_new - f - slope * alpha
            if curvature > 0:
                ratio = -slope * alpha / (2 * curvature)
                low = ratio if ratio > 0.1 else 0.1
                shrink = low if low < 0.5 else 0.5
        alpha *= shrink
    if not found:
        return False, x, f, g
    slope0 = np.dot(g, d)
    for _ in range(MAX_EXTENSIONS):
        slope1 = np.dot(g_new, d)
        drop = slope0 - slope1
        if not (slope1 < CURVATURE * slope0 and drop > 0) or outside:
            break
        ratio = slope0 / drop
        low = ratio if ratio > 1.5 else 1.5
        longer = alpha * (low if low < MAX_GROWTH else MAX_GROWTH)
        x_try, _, _, outside_try = _trial_point(x, d, longer, lower)
        f_try = _value_in_psi(x_try, e)
        if not f_try < f_new:
            break
        g_try = _gradient_in_psi(e)
        if not _all_finite(g_try):
            break
        alpha, x_new, f_new, g_new, outside = longer, x_try, f_try, g_try, outside_try
    return True, x_new, f_new, g_new


def quasi_newton_loop(
    start, lower, caps, mirror_ptr, mirror_index, b, has_b, f, g, has_initial, floor, e
):  # pragma: no cover - compiled by numba
    """minimize_quasi_newton (see there) in ψ, stopped where a logged coordinate falls
    below its ``floor`` (gradient_fit._minimize's stop): (x, f, g, B, whether B is
    set, status, iterations, predicted decrease, held).  ``b`` and ``g`` are the
    caller's (changed in place); without ``has_initial`` f and g are evaluated."""
    n = start.shape[0]
    fixed = e[6]
    stop = False
    for i in range(n):
        if fixed[i]:
            stop = True
    x = np.empty(n)
    for i in range(n):
        v = start[i]
        x[i] = v if (v >= lower[i] or v != v) else lower[i]
    held = np.zeros(n, dtype=np.bool_)
    g_ok = True
    if not has_initial:
        f = _value_in_psi(x, e)
        g_ok = False
        if math.isfinite(f):
            g = _gradient_in_psi(e)
            g_ok = True
    if not g_ok or not _all_finite(g):
        return x, math.inf, np.full(n, math.nan), b, False, 4, 0, math.inf, held
    tolerance = e[8]
    noise_limited = NOISE * abs(f) > tolerance
    rounding = NOISE * abs(f)
    if rounding > tolerance:
        tolerance = rounding
    status = 0
    last_decrease = math.inf
    predicted = math.inf
    iteration = 0
    d = np.zeros(n)
    while iteration < e[9]:
        iteration += 1
        # _flip_mirrored: columns whose diagonal is on its bound and pushed outward.
        for i in range(mirror_ptr.shape[0] - 1):
            lo, hi = mirror_ptr[i], mirror_ptr[i + 1]
            if lo == hi or not (x[i] - lower[i] <= 0.0 and g[i] > 0):
                continue
            nonzero = False
            for j in range(lo, hi):
                if x[mirror_index[j]] != 0:
                    nonzero = True
            if not nonzero:
                continue
            for j in range(lo, hi):
                x[mirror_index[j]] = -x[mirror_index[j]]
            for j in range(lo, hi + 1):
                row = mirror_index[j] if j < hi else i
                g[row] = -g[row]
                if has_b:
                    for col in range(n):
                        b[row, col] = -b[row, col]
            if has_b:
                for j in range(lo, hi + 1):
                    col = mirror_index[j] if j < hi else i
                    for row in range(n):
                        b[row, col] = -b[row, col]
        if not has_b:
            # quasi_newton._held and the steepest-descent step.
            band = 0.0
            for i in range(n):
                v = x[i] - g[i]
                projected = abs((v if (v >= lower[i] or v != v) else lower[i]) - x[i])
                if projected > band:
                    band = projected
            band = band if band < 1e-8 else 1e-8
            largest = 0.0
            for i in range(n):
                held[i] = x[i] - lower[i] <= band and g[i] > 0
                d[i] = 0.0 if held[i] else -g[i]
                if abs(d[i]) > largest:
                    largest = abs(d[i])
            if largest > FIRST_STEP:
                shrink = FIRST_STEP / largest
                for i in range(n):
                    d[i] *= shrink
            predicted = math.inf
            reach = 0.0
        else:
            d, held, predicted, reach = _direction(x, g, b, lower, caps, STEP_FLOOR)
        small = predicted <= tolerance and (
            last_decrease <= tolerance
            or predicted <= 1e-2 * tolerance
            or (noise_limited and predicted <= 1e-3 * last_decrease)
        )
        moving = False
        for i in range(n):
            if d[i] != 0.0:
                moving = True
        if small or not moving:
            status = 1
            break
        if not np.dot(g, d) < 0:
            status = 2
            break
        if reach > 1.0:
            d = d / reach
        backtracks = 2 if predicted <= 10 * tolerance else MAX_BACKTRACKS
        found, x_new, f_new, g_new = _line_search(x, f, g, d, lower, backtracks, e)
        if not found:
            if predicted <= 100 * tolerance:
                status = 1
                break
            if has_b:
                has_b = False
                continue
            status = 3
            break
        s = x_new - x
        y = g_new - g
        last_decrease = f - f_new
        if not has_b:
            sy = np.dot(s, y)
            yy = np.dot(y, y)
            factor = yy / sy if sy > 0 and yy > 0 else 1.0
            b = factor * np.eye(n)
            has_b = True
        _bfgs_update(b, s, y)
        x, f, g = x_new, f_new, g_new
        if stop:
            leaving = False
            for i in range(n):
                if fixed[i] and x[i] < floor[i]:
                    leaving = True
            if leaving:
                status = 7
                break
        elif e[10] and abs(f - e[12]) <= RETURN_GAP:
            # gradient_fit._returned: back near the point a restart escaped from.
            back = True
            for i in range(n):
                if not abs(x[i] - e[11][i]) <= e[13][i]:
                    back = False
            if back:
                status = 8
                break
    return x, f, g, b, has_b, status, iteration, predicted, held


def search_kernel(
    k,
    c,
    n_s,
    dof,
    scale,
    theta,
    start,
    lower,
    scalar,
    mirror_ptr,
    mirror_index,
    b_start,
    f_start,
    g_start,
    mode,
    tolerance,
    max_iterations,
    stop_on_return,
    returned_x,
    returned_f,
):  # pragma: no cover - compiled by numba
    """gradient_fit._minimize (see there) on the compiled evaluations: the search in ψ
    (log φ on the θ of ``scalar`` terms more than LOG_START above their bound 0, until
    one falls below a quarter of its start, then φ), its result in φ.

    ``mode``: 0, f and ∇f evaluated at the start, B = ``b_start`` (in φ); 1, f and
    ∇ψ f given (``f_start``, ``g_start``), B = ``b_start`` (in ψ); 2, the information
    start (f, ∇f and the average information at the start, as
    gradient_fit._information_start).

    Returns (x, f, g, B, whether B is set, status, iterations, predicted decrease,
    held, counts, R_X⁻¹): counts = [values, gradients, 1 where the last gradient is at the
    last point evaluated, the last update's Σ log diag L₀₀ (nan where it failed),
    max |R⁻ᵀg| with B = RᵀR where x is at least 1e-10 inside its bounds, as
    optimize.check_stationarity computes it there (nan where not computed), the
    profiled criterion's three parts read off the last update's factor
    (small_evaluation.factor_parts_loop; nan where not computed)], and R_X⁻¹ there
    (Fortran order; empty where not computed).
    Status 5: f or ∇f not finite at an information start; 6: its information not
    finite or LAPACK's eigensolver failed (then B is the matrix positive_definite
    was given, in ψ, and g is ∇ψ f); 8: ``stop_on_return`` and back near
    ``returned_x`` with a value near ``returned_f`` (gradient_fit._returned).
    """
    n = start.shape[0]
    counts = np.full(8, math.nan)
    counts[0:3] = 0.0
    # R_X⁻¹ where it is not computed.
    none = np.empty((0, 0)).T
    logged = np.zeros(n, dtype=np.bool_)
    for i in range(n):
        logged[i] = scalar[i] and start[i] - lower[i] > LOG_START and lower[i] == 0
    fixed = logged.copy()
    near = np.empty(n)
    for i in range(n):
        size = abs(returned_x[i])
        near[i] = RETURN_STEP * (size if (size > 1.0 or size != size) else 1.0)
    e = (
        scale, theta, k, c, n_s, dof, fixed, counts, tolerance, max_iterations,
        stop_on_return, returned_x, returned_f, near,
    )  # fmt: skip
    any_logged = False
    for i in range(n):
        if logged[i]:
            any_logged = True
    held = np.zeros(n, dtype=np.bool_)
    # (ψ = log φ on the logged coordinates: D = diag(φ) there, 1 elsewhere.)
    d = np.ones(n)
    for i in range(n):
        if logged[i]:
            d[i] = start[i]
    has_initial = mode != 0
    f = f_start
    g = g_start.copy()
    if mode == 2:
        # The information start: f, ∇f and the information at the start as given.
        counts[0] += 1
        f, logdet = _evaluate(start, scale, theta, k, c)
        counts[3] = logdet
        if not math.isfinite(f):
            return start, math.inf, g, b_start, False, 5, 0, math.inf, held, counts, none
        counts[1] += 1
        g = _gradient_at(scale, k, n_s, dof)
        counts[2] = 1
        if not _all_finite(g):
            return start, math.inf, g, b_start, False, 5, 0, math.inf, held, counts, none
        h = _information_at(scale, k, c)
        if any_logged:
            # ∂²f/∂ψ² = φ² ∂²f/∂φ² + φ ∂f/∂φ on the logged coordinates.
            for i in range(n):
                for j in range(n):
                    h[i, j] = h[i, j] * (d[i] * d[j]) + (
                        g[i] * start[i] if (i == j and logged[i]) else 0.0
                    )
            for i in range(n):
                g[i] = g[i] * d[i]
        b, ok = _positive_definite(h)
        if not ok:
            return start, f, g, h, False, 6, 0, math.inf, held, counts, none
    elif mode == 1:
        b = b_start.copy()
    else:
        # A Hessian given in φ, carried to ψ: H_ψ ≈ D H_φ D.
        b = np.empty((n, n))
        for i in range(n):
            for j in range(n):
                b[i, j] = b_start[i, j] * (d[i] * d[j])
    # A logged coordinate below a quarter of its start goes back to θ.
    floor = np.empty(n)
    for i in range(n):
        v = 0.25 * start[i]
        floor[i] = math.log(v if (v > LOG_SWITCH or v != v) else LOG_SWITCH)
    x = start.copy()
    has_b = True
    while True:
        any_fixed = False
        for i in range(n):
            fixed[i] = logged[i]
            any_fixed = any_fixed or logged[i]
        psi = x.copy()
        lower_psi = lower.copy()
        caps = np.full(n, math.nan)
        for i in range(n):
            if fixed[i]:
                psi[i] = math.log(x[i])
                lower_psi[i] = -math.inf
                # On the log scale a step may double or halve a value.
                caps[i] = _LOG_TWO
        xr, fr, gr, br, has_b, status, iterations, predicted, held = _quasi_newton(
            psi, lower_psi, caps, mirror_ptr, mirror_index, b, has_b, f, g, has_initial,
            floor, e,
        )  # fmt: skip
        if not has_b:
            br = np.eye(n)
        # Where the method took no step x stays as it was evaluated (exp(log x) can
        # differ from x in its last bit).
        if not any_fixed:
            x = xr.copy()
        else:
            same = True
            for i in range(n):
                if xr[i] != psi[i]:
                    same = False
            if not same:
                x = xr.copy()
                for i in range(n):
                    if fixed[i]:
                        x[i] = math.exp(xr[i])
        if status == 7:
            # Off the log scale: the coordinates the stop saw below their floor; the
            # curvature and the gradient carried over to their φ.
            for i in range(n):
                d[i] = 1.0
                if fixed[i] and xr[i] < floor[i]:
                    logged[i] = False
                    d[i] = x[i]
            b = np.empty((n, n))
            for i in range(n):
                for j in range(n):
                    b[i, j] = br[i, j] / (d[i] * d[j])
            g = np.empty(n)
            for i in range(n):
                g[i] = gr[i] / d[i]
            f = fr
            has_b = True
            has_initial = True
            continue
        if any_fixed:
            # Back to φ: g_φ = g_ψ / φ and H_φ ≈ D⁻¹ H_ψ D⁻¹ on the logged coordinates.
            for i in range(n):
                d[i] = x[i] if fixed[i] else 1.0
            for i in range(n):
                gr[i] = gr[i] / d[i]
            h_phi = np.empty((n, n))
            for i in range(n):
                for j in range(n):
                    h_phi[i, j] = br[i, j] / (d[i] * d[j])
            br = h_phi
        # The first-order check of an interior optimum (fit_quasi_newton's, where this
        # is its result): R⁻ᵀg by the same LAPACK calls.
        interior = True
        for i in range(n):
            if not x[i] - lower[i] >= 1e-10:
                interior = False
        if interior and n > 0:
            step, info = _scaled_gradient(br, gr)
            if info == 0 and _all_finite(step):
                largest = abs(step[0])
                for i in range(1, n):
                    if abs(step[i]) > largest:
                        largest = abs(step[i])
                counts[4] = largest
        # What the solution reads off the factor at the last point evaluated.
        rx = none
        if not math.isnan(counts[3]):
            rx = _factor_parts(k[7], counts[3], c[0], counts)
        return x, fr, gr, br, True, status, iterations, predicted, held, counts, rx


@functools.lru_cache(maxsize=64)
def search_layout(layout: ThetaLayout) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The layout as the compiled search reads it: the mirrors (for each θ, its range in
    the second array, which lists the θ below it in its column of λ; none where it
    is not a diagonal element with a column below), the θ of scalar terms, and no θ
    (writeable arrays, only read: numba compiles a read-only array's type anew)."""
    n = len(layout.lower)
    pointers = np.zeros(n + 1, dtype=np.int64)
    index = []
    for i in range(n):
        below = layout.mirrors.get(i)
        if below is not None:
            index.extend(int(j) for j in below)
        pointers[i + 1] = len(index)
    return (
        pointers,
        np.array(index, dtype=np.int64),
        layout.scalar.copy(),
        np.zeros(n, dtype=bool),
    )


@functools.cache
def compiled_search():
    """search_kernel compiled (with the evaluations of
    :mod:`~mixedmodels.engine.small_evaluation` and quasi_newton's steps linked in), or
    None without numba."""
    evaluations = compiled_evaluations()
    steps = compiled_steps()
    if evaluations is None or steps is None:
        return None
    names = globals()
    names["_scaled_gradient"] = compiled_scaled_gradient()
    names["_factor_parts"] = compiled_factor_parts()
    names["_direction"], names["_bfgs_update"], names["_trial_point"] = steps
    (
        names["_evaluate"],
        names["_gradient_at"],
        names["_information_at"],
        names["_positive_definite"],
        names["_all_finite"],
    ) = evaluations
    for name, loop in (
        ("_line_search", line_search_loop),
        ("_value_in_psi", value_in_psi_loop),
        ("_gradient_in_psi", gradient_in_psi_loop),
        ("_quasi_newton", quasi_newton_loop),
    ):
        names[name] = compiled(loop)
    return compiled(search_kernel)
