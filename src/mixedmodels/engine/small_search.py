"""The quasi-Newton search of a small model in one compiled call.

On the compiled small path (:mod:`~mixedmodels.engine.small_trailing`) an
evaluation's kernels take a few microseconds, and the Python around them —
the evaluator's λ, the factor's bookkeeping, the criterion read off the
diagonal, the line search and the BFGS update of
:mod:`~mixedmodels.engine.quasi_newton` — costs several times more.  Here
:func:`minimize_quasi_newton <mixedmodels.engine.quasi_newton.minimize_quasi_newton>`'s
loop runs as one numba function that calls the same compiled kernels
(:mod:`~mixedmodels.engine.small_kernels`) and the same compiled steps
(:func:`~mixedmodels.engine.quasi_newton.compiled_steps`) directly, with the
same arithmetic in the same order: the same points are evaluated, in the same
order, to the same bits.

What it covers: the search in φ itself (no coordinate on the log scale), from
a given Hessian approximation, without a stop rule.  The evaluator
(:class:`~mixedmodels.engine.gradient_fit.Evaluator`) decides when it applies
and leaves its workspace as the Python loop would: at the last point
evaluated, with β̂, û and Zᵀe of the last gradient when that was at the same
point.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .jit import compiled
from .problem import ThetaLayout
from .quasi_newton import compiled_steps
from .small_kernels import compiled_kernels

_LOG_2PI = math.log(2 * math.pi)
# quasi_newton's constants, read from there (one definition of the method).
from .quasi_newton import (  # noqa: E402
    _ARMIJO,
    _CURVATURE,
    _FIRST_STEP,
    _MAX_BACKTRACKS,
    _MAX_EXTENSIONS,
    _MAX_GROWTH,
    _NOISE,
    _STEP_FLOOR,
)

# Status codes of search_kernel, and what minimize_quasi_newton calls them.
STATUS = (
    "maximum number of iterations reached",
    "converged",
    "no descent direction",
    "line search failed",
    "the objective or its gradient is not finite at the start",
    "the objective is not finite at the start",
    "the average information is not usable",
)
NOT_FINITE_AT_START = STATUS[5]
INFORMATION_UNUSABLE = STATUS[6]

# The compiled loops search_kernel calls: set by compiled_search() before it compiles
# it (numba reads a global's value when it compiles the function that calls it).
_update = _gradient = _direction = _bfgs_update = _trial_point = None
_criterion = _evaluate = _gradient_at = _line_search = _all_finite = None
_information = _information_at = _positive_definite = _dsyev = None


def criterion_loop(t, logdet0, r, n_fixed, n_obs, sum_log_weights, reml):  # pragma: no cover
    """The profiled criterion read off T's factor and Σ log diag L₀₀, as
    :meth:`BlockedCholesky.profiled_parts` and :meth:`LinearProblem.criterion` read
    it (the same sums in the same order)."""
    n = t.shape[0]
    p = n - r - 1
    s = 0.0
    for i in range(r):
        s += math.log(t[i, i])
    theta_part = 2.0 * (logdet0 + s)
    sx = 0.0
    for i in range(r, r + p):
        sx += math.log(t[i, i])
    logdet_x = 2.0 * sx
    r2 = t[n - 1, n - 1] * t[n - 1, n - 1]
    if not r2 > 0.0:
        return math.inf
    value = theta_part - sum_log_weights
    if reml:
        dof = float(n_obs - n_fixed)
        value += logdet_x + dof * (1.0 + _LOG_2PI + math.log(r2 / dof))
    else:
        value += float(n_obs) * (1.0 + _LOG_2PI + math.log(r2 / float(n_obs)))
    return value


def evaluate_loop(phi, scale, theta, k, c):  # pragma: no cover - numba
    """f at φ (inf where not finite or not positive definite) and Σ log diag L₀₀: θ = φ·scale,
    λ filled as LinearProblem.lambdas fills it, the update kernel, the criterion.
    ``k``: the kernels' arrays (SmallTrailing.search_arguments); ``c``: the criterion's
    (r, n_fixed, n_obs, Σ log weights, REML)."""
    lam_stack, theta_index = k[0], k[13]
    for i in range(phi.shape[0]):
        theta[i] = phi[i] * scale[i]
    lam_stack[:] = 0.0
    for i in range(theta.shape[0]):
        lam_stack[theta_index[i, 0], theta_index[i, 1], theta_index[i, 2]] = theta[i]
    logdet = _update(
        k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7], k[8], k[9], k[10], k[11], k[12]
    )  # fmt: skip
    if math.isnan(logdet):
        return math.inf, logdet
    f = _criterion(k[7], logdet, c[0], c[1], c[2], c[3], c[4])
    if not math.isfinite(f):
        return math.inf, logdet
    return f, logdet


def gradient_loop(scale, k, n_s, dof):  # pragma: no cover - numba
    """∇φ at the last evaluated point (the gradient kernel's ∇θ times the scale)."""
    out = np.empty(k[13].shape[0])
    w = k[15]
    w[:] = 0.0
    _gradient(
        k[0], k[1], k[5], k[2], k[3], k[4], k[6], k[7], k[8], k[9], k[11],
        n_s, dof, k[13], k[14], w, k[16], k[17], out, k[12],
    )  # fmt: skip
    for i in range(out.shape[0]):
        out[i] = out[i] * scale[i]
    return out


def information_loop(scale, k, c):  # pragma: no cover - numba
    """The average information in φ at the last point evaluated (after its gradient),
    as SmallTrailing.information and Evaluator.information compute it."""
    t = k[7]
    n = t.shape[0]
    n_dof = c[2] - c[1] if c[4] else c[2]
    n_theta = k[13].shape[0]
    out = np.empty((n_theta, n_theta))
    _information(
        k[0], k[5], k[2], k[6], t, k[8], k[9], k[11], k[17], k[13], c[1],
        (t[n - 1, n - 1] * t[n - 1, n - 1]) / float(n_dof), float(n_dof), out, k[12],
    )  # fmt: skip
    for i in range(n_theta):
        for j in range(n_theta):
            out[i, j] = out[i, j] * (scale[i] * scale[j])
    return out


def positive_definite_loop(h):  # pragma: no cover - numba
    """quasi_newton.positive_definite's numbers: (B, True), or (h, False) where h is not
    finite or LAPACK's dsyev fails (the caller then runs positive_definite itself)."""
    n = h.shape[0]
    for i in range(n):
        for j in range(n):
            if not math.isfinite(h[i, j]):
                return h, False
    b = h + h.T
    b *= 0.5
    # dsyev on b as it is: symmetric, its C order is its Fortran order.
    a = b.copy()
    w = np.empty(n)
    lwork = max(3 * n - 1, 1)
    work = np.empty(lwork)
    ints = np.array([n, n, lwork, 0], dtype=np.int32)
    chars = np.array([86, 85], dtype=np.int8)  # jobz "V", uplo "U"
    _dsyev(
        chars[0:].ctypes, chars[1:].ctypes, ints[0:].ctypes, a.ctypes, ints[1:].ctypes,
        w.ctypes, work.ctypes, ints[2:].ctypes, ints[3:].ctypes,
    )  # fmt: skip
    if ints[3] != 0:
        return h, False
    # The eigenvectors are a's columns in Fortran order: the rows of a in C order.
    v = a.T
    w = np.abs(w)
    # Python's max over the list, then against 1e-8 (the first unless the next is larger).
    top = 1e-8
    if n:
        top = w[0]
        for i in range(1, n):
            if w[i] > top:
                top = w[i]
        if 1e-8 > top:
            top = 1e-8
    least = 1e-6 * top
    for i in range(n):
        if least > w[i]:
            w[i] = least
    return np.dot(v * w, v.T), True


def all_finite_loop(a):  # pragma: no cover - numba
    """Whether every element of ``a`` is finite."""
    for v in a:
        if not math.isfinite(v):
            return False
    return True


def line_search_loop(x, f, g, d, lower, max_backtracks, scale, theta, k, c, n_s, dof, counts):
    """quasi_newton._Search.line_search: (found, x, f, g) of the accepted point;
    ``counts`` (see search_kernel) updated."""  # pragma: no cover
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
        counts[0] += 1
        counts[2] = 0
        f_new, logdet = _evaluate(x_new, scale, theta, k, c)
        counts[3] = logdet
        along = np.dot(g, step)
        if f_new <= f + _ARMIJO * along:
            counts[1] += 1
            g_new = _gradient_at(scale, k, n_s, dof)
            counts[2] = 1
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
    for _ in range(_MAX_EXTENSIONS):
        slope1 = np.dot(g_new, d)
        drop = slope0 - slope1
        if not (slope1 < _CURVATURE * slope0 and drop > 0) or outside:
            break
        ratio = slope0 / drop
        low = ratio if ratio > 1.5 else 1.5
        longer = alpha * (low if low < _MAX_GROWTH else _MAX_GROWTH)
        x_try, _, _, outside_try = _trial_point(x, d, longer, lower)
        counts[0] += 1
        counts[2] = 0
        f_try, logdet = _evaluate(x_try, scale, theta, k, c)
        counts[3] = logdet
        if not f_try < f_new:
            break
        counts[1] += 1
        g_try = _gradient_at(scale, k, n_s, dof)
        counts[2] = 1
        if not _all_finite(g_try):
            break
        alpha, x_new, f_new, g_new, outside = longer, x_try, f_try, g_try, outside_try
    return True, x_new, f_new, g_new


def search_kernel(
    k,
    c,
    n_s,
    dof,
    scale,
    theta,
    start,
    lower,
    caps,
    mirror_ptr,
    mirror_index,
    b_start,
    f_start,
    g_start,
    mode,
    tolerance,
    max_iterations,
):  # pragma: no cover - compiled by numba
    """minimize_quasi_newton's loop (see there) on the compiled evaluations.

    ``mode``: 0, f and ∇f evaluated at the start, B = ``b_start``; 1, f and ∇f given
    (``f_start``, ``g_start``), B = ``b_start``; 2, the information start (f, ∇f and
    B = positive_definite(the average information) at the start, as
    gradient_fit._information_start without logged coordinates).

    Returns (x, f, g, B, whether B is set, status, iterations, predicted decrease,
    held, counts): counts = [values, gradients, 1 where the last gradient is at the
    last point evaluated, the last update's Σ log diag L₀₀ (nan where it failed)].
    Status 5: f or ∇f not finite at an information start; 6: its information not
    finite or LAPACK's eigensolver failed (B is then the information in φ).
    """
    n = start.shape[0]
    counts = np.zeros(4)
    counts[3] = math.nan
    x = np.empty(n)
    for i in range(n):
        v = start[i]
        x[i] = v if (v >= lower[i] or v != v) else lower[i]
    held = np.zeros(n, dtype=np.bool_)
    b = b_start
    if mode == 1:
        f = f_start
        g = g_start.copy()
        g_ok = True
    else:
        counts[0] += 1
        # (The information start evaluates at the start as given.)
        f, logdet = _evaluate(start if mode == 2 else x, scale, theta, k, c)
        counts[3] = logdet
        g = np.full(n, math.nan)
        g_ok = False
        if math.isfinite(f):
            counts[1] += 1
            g = _gradient_at(scale, k, n_s, dof)
            counts[2] = 1
            g_ok = True
    if mode == 2:
        if not g_ok or not _all_finite(g):
            return x, math.inf, g, b, False, 5, 0, math.inf, held, counts
        h = _information_at(scale, k, c)
        b, ok = _positive_definite(h)
        if not ok:
            return x, f, g, h, False, 6, 0, math.inf, held, counts
    else:
        b = b.copy()
    if not g_ok or not _all_finite(g):
        return x, math.inf, np.full(n, math.nan), b, False, 4, 0, math.inf, held, counts
    has_b = True
    noise_limited = _NOISE * abs(f) > tolerance
    floor = _NOISE * abs(f)
    if floor > tolerance:
        tolerance = floor
    status = 0
    last_decrease = math.inf
    predicted = math.inf
    iteration = 0
    d = np.zeros(n)
    while iteration < max_iterations:
        iteration += 1
        # _flip_mirrored: columns whose diagonal is on its bound and pushed outward.
        for i in range(mirror_ptr.shape[0] - 1):
            lo, hi = mirror_ptr[i], mirror_ptr[i + 1]
            if lo == hi or not (x[i] - lower[i] <= 0.0 and g[i] > 0):
                continue
            nonzero = False
            for e in range(lo, hi):
                if x[mirror_index[e]] != 0:
                    nonzero = True
            if not nonzero:
                continue
            for e in range(lo, hi):
                x[mirror_index[e]] = -x[mirror_index[e]]
            for e in range(lo, hi + 1):
                j = mirror_index[e] if e < hi else i
                g[j] = -g[j]
                if has_b:
                    for col in range(n):
                        b[j, col] = -b[j, col]
            if has_b:
                for e in range(lo, hi + 1):
                    j = mirror_index[e] if e < hi else i
                    for row in range(n):
                        b[row, j] = -b[row, j]
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
            if largest > _FIRST_STEP:
                shrink = _FIRST_STEP / largest
                for i in range(n):
                    d[i] *= shrink
            predicted = math.inf
            reach = 0.0
        else:
            d, held, predicted, reach = _direction(x, g, b, lower, caps, _STEP_FLOOR)
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
        backtracks = 2 if predicted <= 10 * tolerance else _MAX_BACKTRACKS
        found, x_new, f_new, g_new = _line_search(
            x, f, g, d, lower, backtracks, scale, theta, k, c, n_s, dof, counts
        )
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
            scale_b = yy / sy if sy > 0 and yy > 0 else 1.0
            b = scale_b * np.eye(n)
            has_b = True
        _bfgs_update(b, s, y)
        x, f, g = x_new, f_new, g_new
    return x, f, g, b, has_b, status, iteration, predicted, held, counts


@functools.lru_cache(maxsize=64)
def mirror_arrays(layout: ThetaLayout) -> tuple[np.ndarray, np.ndarray]:
    """The layout's mirrors as the compiled search reads them: for each θ, its range in
    the second array, which lists the θ below it in its column of λ (none where it
    is not a diagonal element with a column below)."""
    n = len(layout.lower)
    pointers = np.zeros(n + 1, dtype=np.int64)
    index = []
    for i in range(n):
        below = layout.mirrors.get(i)
        if below is not None:
            index.extend(int(j) for j in below)
        pointers[i + 1] = len(index)
    return pointers, np.array(index, dtype=np.int64)


def _lapack_dsyev():
    """LAPACK's dsyev (scipy's, the routine positive_definite calls) as a function numba
    can call and cache: an external symbol bound to its address in this process."""
    import llvmlite.binding
    from numba import types
    from numba.extending import get_cython_function_address

    llvmlite.binding.add_symbol(
        "mixedmodels_dsyev", get_cython_function_address("scipy.linalg.cython_lapack", "dsyev")
    )
    chars, ints, doubles = (types.CPointer(t) for t in (types.int8, types.int32, types.float64))
    return types.ExternalFunction(
        "mixedmodels_dsyev",
        types.void(chars, chars, ints, doubles, ints, doubles, doubles, ints, ints),
    )


@functools.cache
def compiled_search():
    """search_kernel compiled (with the small kernels and quasi_newton's steps linked
    in), or None without numba."""
    kernels = compiled_kernels()
    steps = compiled_steps()
    if kernels is None or steps is None:
        return None
    names = globals()
    names["_update"], names["_gradient"], names["_information"] = kernels
    names["_dsyev"] = _lapack_dsyev()
    names["_direction"], names["_bfgs_update"], names["_trial_point"] = steps
    for name, loop in (
        ("_evaluate", evaluate_loop),
        ("_gradient_at", gradient_loop),
        ("_line_search", line_search_loop),
        ("_criterion", criterion_loop),
        ("_all_finite", all_finite_loop),
        ("_information_at", information_loop),
        ("_positive_definite", positive_definite_loop),
    ):
        names[name] = compiled(loop)
    return compiled(search_kernel)
