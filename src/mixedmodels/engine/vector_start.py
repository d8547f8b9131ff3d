"""The moment start of a vector-valued term: λ from the levels' own fits.

:class:`~mixedmodels.engine.start.MomentStart` reads, for each level ℓ of a
term, Dₗ = ZₗᵀZₗ and sₗ = Zₗᵀr off the cross-products.  For a term of q ≥ 2
columns this module gives the per-level inverses Dₗ⁻¹ (2×2 blocks in one
compiled pass), the levels' least-squares fits b̂ₗ = Dₗ⁻¹sₗ, and λ, the
Cholesky factor of Σ_b/σ² estimated from them (:func:`vector_factor`).  Each
step is a loop compiled by numba where numba is (numpy's per-call costs on a
few dozen tiny blocks exceed the arithmetic), with numpy's equivalent where
it is not.
"""

from __future__ import annotations

import math

import numpy as np

from .jit import compiled_on_first_use
from .kernels import q0_tag
from .smallmatrix import all_finite, cholesky_in_place

# Eigenvalues of Σ_b/σ² are floored at this fraction of the largest (or of 1):
# a start on the boundary would stall BOBYQA's first steps.
EIGEN_FLOOR = 1e-4
# Precision-weighted steps after the unweighted estimate of a vector-valued
# term (see _factor; 4 and 8 steps gave the same evaluation
# counts on the 71 lme4 references, to within the noise of the boundary cases).
_WEIGHTED_STEPS = 4
# ... taken when the root-mean-square spread of the levels' Dₗ⁻¹ exceeds this
# fraction of Σ_b/σ² + mean Dₗ⁻¹ (see _factor).
_HETEROGENEITY = 0.25


def _pair_inverses(d, inverses, full_rank):  # pragma: no cover - numba
    """For 2×2 blocks Dₗ: ``inverses`` ← Dₗ⁻¹ (NaN where det Dₗ = 0) and ``full_rank``
    ← det Dₗ > 1e-10 · max(1, maxᵢⱼ |Dₗᵢⱼ|)²; returns how many are of full rank.

    :class:`MomentStart`'s numpy lines for q = 2 (batched_determinant_inverse's
    formulas), as one loop.
    """
    count = 0
    for level in range(d.shape[0]):
        a = d[level, 0, 0]
        b = d[level, 0, 1]
        c = d[level, 1, 0]
        e = d[level, 1, 1]
        det = a * e - b * c
        scale = max(max(abs(a), abs(b)), max(abs(c), abs(e)), 1.0)
        regular = det > 1e-10 * (scale * scale)
        full_rank[level] = regular
        if regular:
            count += 1
        if det != 0.0:
            inverses[level, 0, 0] = e / det
            inverses[level, 0, 1] = -b / det
            inverses[level, 1, 0] = -c / det
            inverses[level, 1, 1] = a / det
        else:
            inverses[level] = np.nan
    return count


def _level_fits(d_inv, s, b):  # pragma: no cover - numba
    """``b`` ← b̂ₗ = Dₗ⁻¹sₗ for every level; returns Σₗ b̂ₗᵀsₗ, the sum of squares
    the levels explain (:meth:`MomentStart.theta`'s numpy lines, as one loop)."""
    explained = 0.0
    q = s.shape[1]
    for level in range(s.shape[0]):
        for i in range(q):
            acc = 0.0
            for j in range(q):
                acc += d_inv[level, i, j] * s[level, j]
            b[level, i] = acc
            explained += acc * s[level, i]
    return explained


#: The compiled :func:`_level_fits` (None without numba).
level_fits_kernel = compiled_on_first_use(_level_fits)
#: The compiled :func:`_pair_inverses` (None without numba).
pair_inverses_kernel = compiled_on_first_use(_pair_inverses)


def vector_factor(
    b: np.ndarray, sigma2: float, d_inv: np.ndarray, d_inv_mean: np.ndarray
) -> np.ndarray | None:
    """λ of a vector-valued term from the levels' b̂ₗ (``b``), σ², the Dₗ⁻¹ and their
    mean, or None where it fails (see :func:`_factor`)."""
    kernel = _compiled_start_factor()
    try:
        if kernel is None:
            relative = (b.T @ b / len(b) - sigma2 * d_inv_mean) / sigma2
            lam = _factor_numpy(
                relative,
                b / math.sqrt(sigma2),
                d_inv,
                d_inv_mean,
                _WEIGHTED_STEPS,
                EIGEN_FLOOR,
                _HETEROGENEITY,
            )
        else:
            lam = kernel(
                b,
                sigma2,
                d_inv,
                d_inv_mean,
                _WEIGHTED_STEPS,
                EIGEN_FLOOR,
                _HETEROGENEITY,
                q0_tag(d_inv.shape[1]),
            )
    except np.linalg.LinAlgError:
        return None
    return lam if all_finite(lam) else None


def _factor(
    relative, b, d_inv, d_inv_mean, steps, eigen_floor, heterogeneity, q_tag
):  # pragma: no cover - numba
    """Σ_b/σ² re-estimated with each level weighted by its precision where the
    levels' precisions differ, its eigenvalues floored, and its Cholesky factor
    (NaN where a solve or the factor fails).  Compiled where numba is (numpy's
    per-call costs on q×q matrices made these steps cost more than the
    evaluations they save: 0.85 ms on 500 levels, against 0.03 ms); its
    eigen-decomposition (cyclic Jacobi), solve and Cholesky factor are written
    out here: numba's LAPACK wrappers for them made the cached code 2.6 times
    larger and its load in a new process, which a fresh process's first fit
    waits for, 15 ms instead of 6.5 (sleepstudy).  :func:`_factor_numpy` is the
    same with numpy's calls, where numba is not.

    b̂ₗ/σ has covariance Vₗ = Σ_b/σ² + Dₗ⁻¹; the unweighted mean of
    b̂ₗb̂ₗᵀ − Dₗ⁻¹ lets the levels with the largest Dₗ⁻¹ (a slope over a few
    rows with little spread) dominate.  Solving the score equation of the
    per-level estimates, Σₗ Wₗ (S − b̂ₗb̂ₗᵀ + Dₗ⁻¹) Wₗ = 0 with Wₗ = Vₗ⁻¹ at
    the previous S (a q²×q² linear system), weights them by their precision;
    ``steps`` such steps from the unweighted estimate.  Exam's
    (standLRT | school): θ (0.31, −0.12, 0.05) → near the optimum
    (0.40, 0.09, 0.14), 15 evaluations → 5.

    The weights are Vₗ⁻¹ = (Σ_b/σ² + Dₗ⁻¹)⁻¹: where the Dₗ⁻¹ spread little
    (root-mean-square deviation at most ``heterogeneity`` times the size of
    Σ_b/σ² + mean Dₗ⁻¹: many rows per level, or similar levels) they are nearly
    equal, the weighted estimate is the unweighted one, and the steps, linear
    in the levels, would only cost time (the bench sweep's 500 levels of 20
    rows: 0.17 ms for a start that moved 0.4 %).

    ``q_tag`` is q as a type (:func:`~mixedmodels.engine.kernels.q0_tag`): numba
    compiles the function once per q, with its loops over q unrolled (the
    same operations in the same order; Exam's 65 levels and 4 steps: 18 → 8 us).
    """
    levels = d_inv.shape[0]
    q = len(q_tag)
    failed = np.full((q, q), np.nan)
    spread = 0.0
    total = 0.0
    for i in range(q):
        for j in range(q):
            for level in range(levels):
                deviation = d_inv[level, i, j] - d_inv_mean[i, j]
                spread += deviation * deviation
            value = relative[i, j] + d_inv_mean[i, j]
            total += value * value
    if not math.sqrt(spread / levels) > heterogeneity * math.sqrt(total):
        steps = 0
    outer = np.empty((levels, q, q))
    for level in range(levels):
        for i in range(q):
            for j in range(q):
                outer[level, i, j] = b[level, i] * b[level, j] - d_inv[level, i, j]
    n = q * q
    system = np.zeros((n, n))
    rhs = np.zeros(n)
    estimate = relative.copy()
    a = np.empty((q, q))
    vectors = np.empty((q, q))
    current = np.empty((q, q))
    v = np.empty((q, q))
    w = np.empty((q, q))
    t = np.empty((q, q))
    for step in range(steps + 1):
        # The eigenvalues of the symmetric part floored (see EIGEN_FLOOR), by
        # cyclic Jacobi rotations until the off-diagonal part is below rounding.
        scale = 0.0
        for i in range(q):
            for j in range(q):
                a[i, j] = 0.5 * (estimate[i, j] + estimate[j, i])
                vectors[i, j] = 1.0 if i == j else 0.0
                scale += a[i, j] * a[i, j]
        if not math.isfinite(scale):
            return failed
        for _sweep in range(100):
            off = 0.0
            for i in range(q):
                for j in range(i):
                    off += a[i, j] * a[i, j]
            if off <= 1e-34 * scale:
                break
            for p in range(q - 1):
                for r in range(p + 1, q):
                    if a[p, r] == 0.0:
                        continue
                    # The rotation by (cosine, sine) in the (p, r) plane zeroing a[p, r]:
                    # tangent = sine/cosine, the smaller root t of t² + 2θt − 1 = 0.
                    theta = (a[r, r] - a[p, p]) / (2.0 * a[p, r])
                    if abs(theta) > 1e150:
                        tangent = 0.5 / theta
                    else:
                        tangent = 1.0 / (abs(theta) + math.sqrt(theta * theta + 1.0))
                        if theta < 0.0:
                            tangent = -tangent
                    cosine = 1.0 / math.sqrt(tangent * tangent + 1.0)
                    sine = tangent * cosine
                    for k in range(q):
                        akp = a[k, p]
                        a[k, p] = cosine * akp - sine * a[k, r]
                        a[k, r] = sine * akp + cosine * a[k, r]
                    for k in range(q):
                        apk = a[p, k]
                        a[p, k] = cosine * apk - sine * a[r, k]
                        a[r, k] = sine * apk + cosine * a[r, k]
                        vkp = vectors[k, p]
                        vectors[k, p] = cosine * vkp - sine * vectors[k, r]
                        vectors[k, r] = sine * vkp + cosine * vectors[k, r]
                    a[p, r] = 0.0
                    a[r, p] = 0.0
        largest = 1.0
        for i in range(q):
            largest = max(largest, a[i, i])
        for i in range(q):
            for j in range(q):
                acc = 0.0
                for k in range(q):
                    acc += vectors[i, k] * max(a[k, k], eigen_floor * largest) * vectors[j, k]
                current[i, j] = acc
        if step == steps:
            # Its Cholesky factor (lower triangle; NaN if not positive definite).
            lam = np.zeros((q, q))
            for i in range(q):
                for j in range(i + 1):
                    lam[i, j] = current[i, j]
            return lam if _cholesky(lam, q) else failed
        # Σₗ Wₗ S Wₗ as a linear map of S ([(i, k), (j, m)] = Σₗ Wₗᵢⱼ Wₗₘₖ) and
        # Σₗ Wₗ outerₗ Wₗ, with Wₗ = (current + d_invₗ)⁻¹.
        system[:] = 0.0
        rhs[:] = 0.0
        for level in range(levels):
            # W = V⁻¹ by Gauss–Jordan on the symmetric positive definite V.
            for i in range(q):
                for j in range(q):
                    v[i, j] = current[i, j] + d_inv[level, i, j]
                    w[i, j] = 1.0 if i == j else 0.0
            for c in range(q):
                pivot = v[c, c]
                for j in range(q):
                    v[c, j] /= pivot
                    w[c, j] /= pivot
                for r in range(q):
                    if r != c:
                        factor = v[r, c]
                        for j in range(q):
                            v[r, j] -= factor * v[c, j]
                            w[r, j] -= factor * w[c, j]
            for i in range(q):
                for k in range(q):
                    for j in range(q):
                        for m in range(q):
                            system[i * q + k, j * q + m] += w[i, j] * w[m, k]
            for i in range(q):
                for m in range(q):
                    acc = 0.0
                    for j in range(q):
                        acc += w[i, j] * outer[level, j, m]
                    t[i, m] = acc
            for i in range(q):
                for k in range(q):
                    acc = 0.0
                    for m in range(q):
                        acc += t[i, m] * w[m, k]
                    rhs[i * q + k] += acc
        # The next S by Gaussian elimination with partial pivoting (NaN where
        # the system is singular or not finite).
        for c in range(n):
            best = c
            for r in range(c + 1, n):
                if abs(system[r, c]) > abs(system[best, c]):
                    best = r
            if not (abs(system[best, c]) > 0.0 and math.isfinite(system[best, c])):
                return failed
            if best != c:
                for j in range(c, n):
                    system[c, j], system[best, j] = system[best, j], system[c, j]
                rhs[c], rhs[best] = rhs[best], rhs[c]
            for r in range(c + 1, n):
                factor = system[r, c] / system[c, c]
                for j in range(c, n):
                    system[r, j] -= factor * system[c, j]
                rhs[r] -= factor * rhs[c]
        for c in range(n - 1, -1, -1):
            acc = rhs[c]
            for j in range(c + 1, n):
                acc -= system[c, j] * rhs[j]
            rhs[c] = acc / system[c, c]
        for i in range(q):
            for j in range(q):
                estimate[i, j] = 0.5 * (rhs[i * q + j] + rhs[j * q + i])
    return failed  # not reached: the last step returns


# The Cholesky loop _factor calls, compiled: set by _compiled_factor() before it
# compiles _factor.
_cholesky = None
_compiled_factor = compiled_on_first_use(_factor, _cholesky=cholesky_in_place)


def _start_factor(
    b_hat, sigma2, d_inv, d_inv_mean, steps, eigen_floor, heterogeneity, q_tag
):  # pragma: no cover - numba
    """:func:`_factor` from the levels' b̂ₗ (``b_hat``, m rows) and σ²: its unweighted
    Σ_b/σ² = (Σₗ b̂ₗb̂ₗᵀ/m − σ² mean Dₗ⁻¹)/σ² and b̂ₗ/σ formed in the same call."""
    levels = b_hat.shape[0]
    q = len(q_tag)
    relative = np.empty((q, q))
    for i in range(q):
        for j in range(q):
            acc = 0.0
            for level in range(levels):
                acc += b_hat[level, i] * b_hat[level, j]
            relative[i, j] = (acc / levels - sigma2 * d_inv_mean[i, j]) / sigma2
    sigma = math.sqrt(sigma2)
    b = np.empty((levels, q))
    for level in range(levels):
        for i in range(q):
            b[level, i] = b_hat[level, i] / sigma
    return _factor_loop(relative, b, d_inv, d_inv_mean, steps, eigen_floor, heterogeneity, q_tag)


# _factor compiled, as _start_factor calls it: set by _compiled_start_factor().
_factor_loop = None
_compiled_start_factor = compiled_on_first_use(
    _start_factor, _cholesky=cholesky_in_place, _factor_loop=_factor
)


def _factor_numpy(
    relative: np.ndarray,
    b: np.ndarray,
    d_inv: np.ndarray,
    d_inv_mean: np.ndarray,
    steps: int,
    eigen_floor: float,
    heterogeneity: float,
) -> np.ndarray:
    """:func:`_factor` with numpy's batched calls, where numba is not (raises
    LinAlgError where a solve or the factor fails)."""
    levels, q, _ = d_inv.shape
    spread = math.sqrt(float(np.square(d_inv - d_inv_mean).sum()) / levels)
    if not spread > heterogeneity * math.sqrt(float(np.square(relative + d_inv_mean).sum())):
        steps = 0
    outer = b[:, :, None] * b[:, None, :] - d_inv
    for step in range(steps + 1):
        if not np.isfinite(relative).all():
            raise np.linalg.LinAlgError("the weighted moment estimate is not finite")
        values, vectors = np.linalg.eigh(0.5 * (relative + relative.T))
        values = np.maximum(values, eigen_floor * max(values.max(), 1.0))
        current = (vectors * values) @ vectors.T
        if step == steps:
            return np.linalg.cholesky(current)
        w = np.linalg.inv(current + d_inv)
        system = np.einsum("lij,lmk->ikjm", w, w).reshape(q * q, q * q)
        rhs = (w @ outer @ w).sum(axis=0).reshape(-1)
        relative = np.linalg.solve(system, rhs).reshape(q, q)
        relative = 0.5 * (relative + relative.T)
    raise AssertionError("not reached: the last step returns")
