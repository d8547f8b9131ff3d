"""A bound-constrained quasi-Newton method for the profiled objective, with its exact gradient.

θ has few coordinates (rarely more than a dozen), some bounded below (the
diagonal of each λ), the rest free.  The objective costs one factorisation;
its gradient, read off the same factor, costs one to two more
(:mod:`mixedmodels.engine.gradient`), so trial points of a line search are
evaluated without it and only accepted points get a gradient.  A dense BFGS
approximation B of the Hessian with an active set fits that shape:

* a coordinate on its bound whose derivative points out of the feasible
  region (g > 0) is held there; the others take the quasi-Newton step
  B_FF d_F = −g_F, projected onto the bounds, with a backtracking (Armijo)
  line search along the projected path, extended while the slope at the
  accepted point is still steep (Wolfe's curvature condition);
* B starts as the caller's approximation (the fit gives the average
  information, :mod:`~mixedmodels.engine.information`), forward differences
  of the gradient (n more gradients) or a multiple of the identity fitted to
  the first step, and is updated by BFGS when the curvature condition holds;
* a coordinate λ_jj on its bound 0 whose column below is not zero is a
  mirror of itself: the objective depends on λλᵀ only, so the column with
  its signs flipped is the same model, where the derivative into the
  interior has the opposite sign.  When it points outward, the column is
  flipped (``mirrors``) and the coordinate moves in — a point on the
  boundary with a nonzero derivative there is never a minimum;
* it stops when the predicted decrease g_Fᵀ B_FF⁻¹ g_F / 2 and the last
  step's actual decrease are below an absolute tolerance on the objective's
  scale (deviance units): the first-order conditions hold, including those of
  the coordinates on a bound (a negative derivative into the interior frees
  the coordinate), and f is within the tolerance of a local minimum.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.linalg

from .jit import compiled
from .smallmatrix import all_finite

# Armijo's sufficient-decrease constant.
ARMIJO = 1e-4
# Extend an accepted step while the slope along it is still below this
# fraction of the initial slope, at most this many times, by at most this factor.
CURVATURE = 0.5
MAX_EXTENSIONS = 3
MAX_GROWTH = 4.0
# Without a Hessian, the first step moves no coordinate by more than this.
FIRST_STEP = 0.5
# Relative rounding level of the objective (a sum over the data): it sets a
# floor under the tolerance.
NOISE = 1e-14
# No step moves a coordinate by more than half its value or this much: a
# long quasi-Newton step from a poor Hessian would otherwise land far away,
# on bounds it then stays on (another, worse local minimum on a face).
STEP_FLOOR = 0.1
# Backtracking steps before a line search gives up.
MAX_BACKTRACKS = 40
# The fit's absolute tolerance on the objective (deviance units) and its
# iterations (minimize_quasi_newton's defaults; the compiled search's too).
TOLERANCE = 1e-10
MAX_ITERATIONS = 500


@dataclass
class QuasiNewtonResult:
    """Where the method stopped and why."""

    x: np.ndarray
    value: float
    gradient: np.ndarray
    hessian: np.ndarray
    n_values: int
    n_gradients: int
    n_iterations: int
    converged: bool
    status: str
    # g_Fᵀ B_FF⁻¹ g_F / 2 at x: the decrease a Newton step is expected to give.
    predicted_decrease: float
    # Coordinates held on their bound at x.
    held: np.ndarray
    # max |R⁻ᵀg| (H = RᵀR, the Hessian and gradient above) where every coordinate of x
    # is at least 1e-10 inside its bound, as optimize.check_stationarity computes it
    # there: the compiled search's (NaN where not computed, or where the Cholesky
    # factor or the step is not usable).
    scaled_gradient: float = math.nan


def _difference_hessian(
    value: Callable[[np.ndarray], float],
    gradient: Callable[[], np.ndarray],
    x: np.ndarray,
    g: np.ndarray,
    lower: np.ndarray,
) -> np.ndarray | None:
    """Forward differences of the gradient, symmetrised, eigenvalues made positive
    (None where the gradient is not finite)."""
    n = len(x)
    h = 1e-4 * np.maximum(np.abs(x), 0.1)
    rows = []
    for i in range(n):
        point = x.copy()
        point[i] += h[i]
        value(np.maximum(point, lower))
        rows.append((gradient() - g) / h[i])
    return positive_definite(np.array(rows))


def positive_definite(b: np.ndarray) -> np.ndarray | None:
    """A Hessian approximation symmetrised, its eigenvalues made positive (|λ|, at
    least 1e-6 of the largest); None where it is not finite."""
    if not all_finite(b):
        return None
    b = b + b.T
    b *= 0.5
    # LAPACK's symmetric eigensolver directly (numpy.linalg.eigh costs several
    # times more on a few coordinates).
    w, v, info = scipy.linalg.lapack.dsyev(b)
    if info != 0:
        w, v = np.linalg.eigh(b)
    w = np.abs(w)
    # The largest |λ| as a Python float (numpy's reduction costs more on a few values).
    top = max(max(w.tolist(), default=1e-8), 1e-8)
    np.maximum(w, 1e-6 * top, out=w)
    return (v * w) @ v.T


def _flip_mirrored(
    x: np.ndarray,
    g: np.ndarray,
    b: np.ndarray | None,
    lower: np.ndarray,
    mirrors: dict[int, np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """x and g with the columns whose diagonal is on its bound and pushed outward
    flipped (copies where any is; B in place)."""
    copied = False
    for i, below in mirrors.items():
        if x[i] - lower[i] <= 0.0 and g[i] > 0 and (x[below] != 0).any():
            if not copied:
                x, g = x.copy(), g.copy()
                copied = True
            column = np.append(below, i)
            x[below] = -x[below]
            g[column] = -g[column]
            if b is not None:
                b[column, :] = -b[column, :]
                b[:, column] = -b[:, column]
    return x, g


def _newton_direction(b: np.ndarray, g: np.ndarray, free: np.ndarray) -> np.ndarray:
    """−B_FF⁻¹ g_F on the free coordinates (B is kept positive definite), 0 elsewhere."""
    if free.all():
        try:
            return -np.linalg.solve(b, g)
        except np.linalg.LinAlgError:
            return -g / np.maximum(np.diag(b), 1e-12)
    d = np.zeros_like(g)
    if free.any():
        bff = b[np.ix_(free, free)]
        try:
            d[free] = -np.linalg.solve(bff, g[free])
        except np.linalg.LinAlgError:
            d[free] = -g[free] / np.maximum(np.diag(bff), 1e-12)
    return d


def _direction(x, g, b, lower, max_step, step_floor):  # pragma: no cover - numba
    """One step's direction, compiled (tiny matrices: numpy's per-call costs dominate).

    Returns (d, held, predicted, reach): d = −B_FF⁻¹g_F on the free
    coordinates (those not held on a bound by Bertsekas' ε-active set), the
    held mask, the predicted decrease −gᵀd/2, and the largest ratio of |dᵢ|
    to its cap (``max_step``, or half |xᵢ| but at least ``step_floor``).
    """
    n = len(x)
    band = 0.0
    for i in range(n):
        projected = abs(max(x[i] - g[i], lower[i]) - x[i])
        if projected > band:
            band = projected
    band = min(1e-8, band)
    held = np.zeros(n, dtype=np.bool_)
    free = np.empty(n, dtype=np.int64)
    m = 0
    for i in range(n):
        held[i] = x[i] - lower[i] <= band and g[i] > 0
        if not held[i]:
            free[m] = i
            m += 1
    d = np.zeros(n)
    chol = np.zeros((m, m))
    ok = True
    for j in range(m):
        s = b[free[j], free[j]]
        for k in range(j):
            s -= chol[j, k] * chol[j, k]
        if not s > 0.0:
            ok = False
            break
        chol[j, j] = np.sqrt(s)
        for i in range(j + 1, m):
            s = b[free[i], free[j]]
            for k in range(j):
                s -= chol[i, k] * chol[j, k]
            chol[i, j] = s / chol[j, j]
    if ok:
        z = np.empty(m)
        for i in range(m):
            s = -g[free[i]]
            for k in range(i):
                s -= chol[i, k] * z[k]
            z[i] = s / chol[i, i]
        for i in range(m - 1, -1, -1):
            s = z[i]
            for k in range(i + 1, m):
                s -= chol[k, i] * d[free[k]]
            d[free[i]] = s / chol[i, i]
    else:
        for i in range(m):
            d[free[i]] = -g[free[i]] / max(b[free[i], free[i]], 1e-12)
    predicted = 0.0
    reach = 0.0
    for i in range(n):
        predicted -= 0.5 * g[i] * d[i]
        cap = max_step[i]
        if np.isnan(cap):
            cap = max(0.5 * abs(x[i]), step_floor)
        r = abs(d[i]) / cap
        if r > reach:
            reach = r
    return d, held, predicted, reach


def _bfgs_update(b, s, y):  # pragma: no cover - numba
    """B ← B − BssᵀB/sᵀBs + yyᵀ/sᵀy in place when the curvature condition holds."""
    n = len(s)
    sy = 0.0
    ss = 0.0
    yy = 0.0
    for i in range(n):
        sy += s[i] * y[i]
        ss += s[i] * s[i]
        yy += y[i] * y[i]
    if not sy > 1e-12 * np.sqrt(ss * yy):
        return False
    bs = b @ s
    sbs = 0.0
    for i in range(n):
        sbs += s[i] * bs[i]
    if not sbs > 0.0:
        # B has lost its curvature along s (rounding on a degenerate criterion):
        # kept as it is rather than divided by zero.
        return False
    for i in range(n):
        for j in range(n):
            b[i, j] += y[i] * y[j] / sy - bs[i] * bs[j] / sbs
    return True


def _trial_point(x, d, alpha, lower):  # pragma: no cover - numba
    """(x + αd projected onto the bounds, its step from x, whether it moves, whether
    x + αd is below a bound anywhere).

    One compiled call for what numpy does in four on a few coordinates, with
    numpy's numbers: the product then the sum, and np.maximum's choice (the
    bound where the point is not above it, NaN kept).
    """
    n = len(x)
    x_new = np.empty(n)
    step = np.empty(n)
    moved = False
    outside = False
    for i in range(n):
        v = x[i] + alpha * d[i]
        if v < lower[i]:
            outside = True
        if not (v > lower[i] or v != v):
            v = lower[i]
        x_new[i] = v
        s = v - x[i]
        step[i] = s
        if s != 0.0:
            moved = True
    return x_new, step, moved, outside


@functools.cache
def _compiled():
    """(direction, BFGS update, trial point) compiled on first use; the first two
    None without numba, the trial point's loop then run as Python (the same numbers)."""
    return (
        compiled(_direction),
        compiled(_bfgs_update),
        compiled(_trial_point) or _trial_point,
    )


def compiled_steps():
    """(direction, BFGS update, trial point) compiled, or None without numba (for a
    compiled caller: :mod:`~mixedmodels.engine.small_search`)."""
    steps = _compiled()
    return None if steps[0] is None else steps


@functools.cache
def _default_caps(n: int) -> np.ndarray:
    """NaN caps (the default step cap of every coordinate) for n coordinates: only
    read, made once per size."""
    return np.full(n, np.nan)


def _held(x: np.ndarray, g: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Bertsekas' ε-active set: on (or within a band that shrinks with the
    projected gradient of) their bound, with g pushing outward."""
    projected = np.maximum(x - g, lower) - x
    band = min(1e-8, float(np.max(np.abs(projected)))) if len(x) else 0.0
    return (x - lower <= band) & (g > 0)


class _Search:
    """State of one minimisation: the point, its value and gradient, B, counts."""

    def __init__(self, value, gradient, lower):
        self.value_at = value
        self.gradient_here = gradient
        self.lower = lower
        self.n_values = 0
        self.n_gradients = 0

    def value(self, x: np.ndarray) -> float:
        self.n_values += 1
        f = self.value_at(x)
        return f if math.isfinite(f) else math.inf

    def gradient(self) -> np.ndarray:
        self.n_gradients += 1
        return np.asarray(self.gradient_here(), dtype=np.float64)

    def line_search(self, x, f, g, d, max_backtracks=MAX_BACKTRACKS):
        """Armijo backtracking along the projected path, then Wolfe extension.

        Returns (x, f, g) of the accepted point, or None.
        """
        lower = self.lower
        trial_point = _compiled()[2]
        alpha = 1.0
        for _ in range(max_backtracks):
            x_new, step, moved, outside = trial_point(x, d, alpha, lower)
            if not moved:
                return None
            f_new = self.value(x_new)
            along = float(g.dot(step))
            if f_new <= f + ARMIJO * along:
                g_new = self.gradient()
                if all_finite(g_new):
                    break
                f_new = math.inf
            # Quadratic interpolation, kept within [0.1, 0.5] of the step.
            shrink = 0.5
            if math.isfinite(f_new):
                slope = along / alpha
                curvature = f_new - f - slope * alpha
                if curvature > 0:
                    shrink = min(0.5, max(0.1, -slope * alpha / (2 * curvature)))
            alpha *= shrink
        else:
            return None
        # While the slope at the new point is still steep the step was too
        # short (far from the optimum the objective is far from quadratic in
        # θ): extend it towards the zero of the secant of the slope.
        # (ndarray.dot: numpy's matmul of two vectors, the same BLAS dot, called for less.)
        # (``outside``: x + αd below a bound somewhere, at the α accepted; the
        # trial point's loop tells, without numpy's three calls.)
        slope0 = float(g.dot(d))
        for _ in range(MAX_EXTENSIONS):
            slope1 = float(g_new.dot(d))
            drop = slope0 - slope1
            if not (slope1 < CURVATURE * slope0 and drop > 0) or outside:
                break
            # slope1 < slope0 / 2 < 0 here, so the secant's zero lies beyond α.
            longer = alpha * min(MAX_GROWTH, max(1.5, slope0 / drop))
            # (np.maximum(x + longer·d, lower), by the trial point's loop.)
            x_try, _, _, outside_try = trial_point(x, d, longer, lower)
            f_try = self.value(x_try)
            if not f_try < f_new:
                break
            g_try = self.gradient()
            if not all_finite(g_try):
                break
            alpha, x_new, f_new, g_new, outside = longer, x_try, f_try, g_try, outside_try
        return x_new, f_new, g_new


def minimize_quasi_newton(
    value: Callable[[np.ndarray], float],
    gradient: Callable[[], np.ndarray],
    start: np.ndarray,
    lower: np.ndarray,
    *,
    tolerance: float = TOLERANCE,
    max_iterations: int = MAX_ITERATIONS,
    hessian: np.ndarray | str | None = "differences",
    mirrors: dict[int, np.ndarray] | None = None,
    stop: Callable[[np.ndarray, float], bool] | None = None,
    initial: tuple[float, np.ndarray] | None = None,
    max_step: np.ndarray | None = None,
) -> QuasiNewtonResult:
    """Minimise f subject to x ≥ lower.

    Parameters
    ----------
    value : callable
        x ↦ f(x) (inf where undefined).
    gradient : callable
        () ↦ ∇f at the point of the last call of ``value``.
    start : ndarray
        Initial point (moved onto the bounds if outside).
    lower : ndarray
        Lower bounds (−inf for free coordinates).
    tolerance : float
        Absolute tolerance on f: stop when the predicted and the last
        actual decrease are both below it (or below the rounding level of f).
    max_iterations : int
        Iterations (line searches) before giving up.
    hessian : ndarray, "differences" or None
        Initial Hessian approximation: an array; "differences" (forward
        differences of the gradient, n more values and gradients); None, a
        scaled identity fitted after a first steepest-descent step.
    mirrors : dict, optional
        For a coordinate with a finite bound, the coordinates that change
        sign with it without changing f when it is on its bound (a column of
        λ below its diagonal element).
    stop : callable, optional
        (x, f) ↦ bool, asked after every step; True stops the method there
        (status "stopped by the caller", not converged).
    initial : (float, ndarray), optional
        f and ∇f at ``start`` when the caller has them (not evaluated again).
    max_step : ndarray, optional
        The largest move of each coordinate in one step (default: half its
        value or STEP_FLOOR, whichever is larger), NaN for that default.
    """
    search = _Search(value, gradient, lower)
    n = len(start)
    x = np.maximum(np.asarray(start, dtype=np.float64), lower)
    if initial is not None:
        f, g = initial[0], np.array(initial[1], dtype=np.float64)
    else:
        f = search.value(x)
        g = search.gradient() if math.isfinite(f) else None
    if g is None or not all_finite(g):
        return QuasiNewtonResult(
            x=x,
            value=math.inf,
            gradient=np.full(n, math.nan),
            hessian=np.eye(n),
            n_values=search.n_values,
            n_gradients=search.n_gradients,
            n_iterations=0,
            converged=False,
            status="the objective or its gradient is not finite at the start",
            predicted_decrease=math.inf,
            held=np.zeros(n, dtype=bool),
        )
    b = None
    if isinstance(hessian, str):
        if hessian != "differences":
            raise ValueError(f"hessian must be an array, 'differences' or None, got {hessian!r}")
        if n:
            b = _difference_hessian(search.value, search.gradient, x, g, lower)
    elif hessian is not None:
        b = np.array(hessian, dtype=np.float64)
    # Where f's rounding level sets the tolerance (|f| above 10⁴ for 1e-10), a
    # decrease well below it cannot be measured: superlinear convergence (the
    # predicted decrease a thousandth of the last step's) then ends the search
    # one step early.  Below, the absolute tolerance pins θ (a flat criterion
    # such as Dyestuff's moves θ by 5e-7 for a decrease of 1e-12).
    noise_limited = NOISE * abs(f) > tolerance
    tolerance = max(tolerance, NOISE * abs(f))
    status = "maximum number of iterations reached"
    converged = False
    last_decrease = math.inf
    predicted = math.inf
    iteration = 0
    held = np.zeros(n, dtype=bool)
    direction, bfgs_update, _ = _compiled()
    caps = _default_caps(n) if max_step is None else np.asarray(max_step, dtype=np.float64)
    reach = 0.0
    while iteration < max_iterations:
        iteration += 1
        if mirrors:
            x, g = _flip_mirrored(x, g, b, lower, mirrors)
        if b is None:
            held = _held(x, g, lower)
            d = np.where(held, 0.0, -g)
            largest = float(np.max(np.abs(d))) if n else 0.0
            if largest > FIRST_STEP:
                d *= FIRST_STEP / largest
            predicted = math.inf
            reach = 0.0
        elif direction is not None:
            d, held, predicted, reach = direction(x, g, b, lower, caps, STEP_FLOOR)
        else:
            held = _held(x, g, lower)
            d = _newton_direction(b, g, ~held)
            predicted = -0.5 * float(g @ d)
            reach = -1.0
        # Converged when a Newton step would gain less than the tolerance and
        # the last step gained little too (or the prediction is far below it:
        # superlinear convergence, B is accurate).
        small = predicted <= tolerance and (
            last_decrease <= tolerance
            or predicted <= 1e-2 * tolerance
            or (noise_limited and predicted <= 1e-3 * last_decrease)
        )
        # (any() of a few Python floats: numpy's any() costs a microsecond of wrappers.)
        if small or not any(d.tolist()):
            converged = True
            status = "converged"
            break
        if not float(g.dot(d)) < 0:
            status = "no descent direction"
            break
        if reach < 0:
            cap = np.where(np.isnan(caps), np.maximum(0.5 * np.abs(x), STEP_FLOOR), caps)
            reach = float(np.max(np.abs(d) / cap))
        if reach > 1.0:
            d = d / reach
        # Within rounding of the optimum a few trial points tell whether any
        # decrease is left; backtracking further only measures the noise.
        found = search.line_search(x, f, g, d, 2 if predicted <= 10 * tolerance else MAX_BACKTRACKS)
        if found is None:
            # No decrease along the direction: the rounding level of f is
            # reached (a converged point) or B is poor; start B afresh once.
            if predicted <= 100 * tolerance:
                converged = True
                status = "converged"
                break
            if b is not None:
                b = None
                continue
            status = "line search failed"
            break
        x_new, f_new, g_new = found
        s = x_new - x
        y = g_new - g
        last_decrease = f - f_new
        if b is None:
            sy = float(s @ y)
            yy = float(y @ y)
            b = (yy / sy if sy > 0 and yy > 0 else 1.0) * np.eye(n)
        if bfgs_update is not None:
            bfgs_update(b, s, y)
        elif (sy := float(s @ y)) > 1e-12 * float(np.linalg.norm(s) * np.linalg.norm(y)):
            bs = b @ s
            if (sbs := float(s @ bs)) > 0.0:
                b = b - np.outer(bs, bs) / sbs + np.outer(y, y) / sy
        x, f, g = x_new, f_new, g_new
        if stop is not None and stop(x, f):
            status = "stopped by the caller"
            break
    return QuasiNewtonResult(
        x=x,
        value=float(f),
        gradient=g,
        hessian=b if b is not None else np.eye(n),
        n_values=search.n_values,
        n_gradients=search.n_gradients,
        n_iterations=iteration,
        converged=converged,
        status=status,
        predicted_decrease=predicted,
        held=held,
    )
