"""Starting values for θ read off the cross-products (stage 4's first step).

lme4 starts every fit at λ = I, far from most optima, and BOBYQA spends most
of its evaluations getting near.  A moment estimate from the blocks that
stage 2 computed anyway costs no pass over the rows and, over the 49
reference models, roughly halves the evaluations (InstEval: 109 → 30),
reaching the same optimum.

For each term, the per-level least-squares fit of the residuals of the
ordinary least-squares fit on the term's columns gives b̂ₗ = Dₗ⁻¹sₗ
(Dₗ = ZₗᵀZₗ, sₗ = Zₗᵀr), whose spread is Σ_b + σ²Dₗ⁻¹ on average: hence

    Σ_b ≈ mean(b̂ₗb̂ₗᵀ) − σ² mean(Dₗ⁻¹),

with σ² the smallest of the terms' pooled within-level residual variances.
For a vector-valued term that estimate is then refined by weighting each
level by its precision (Vₗ⁻¹, Vₗ = Σ_b + σ²Dₗ⁻¹; a few linear solves of size
q²): unweighted, the levels whose slopes are estimated worst dominate.  Λ is
the Cholesky factor of Σ_b/σ² after its eigenvalues are floored.  The
estimate ignores the other terms, which is why it is only a start.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import scipy.linalg

from .blocks import CrossProducts
from .jit import compiled_on_first_use
from .kernels import q0_tag
from .smallmatrix import (
    all_finite,
    batched_determinant_inverse,
    batched_matmul,
    cholesky_in_place,
)
from .terms import RandomEffectsTerm

# Eigenvalues of Σ_b/σ² are floored at this fraction of the largest (or of 1):
# a start on the boundary would stall BOBYQA's first steps.
_EIGEN_FLOOR = 1e-4
# Precision-weighted steps after the unweighted estimate of a vector-valued
# term (see _factor; 4 and 8 steps gave the same evaluation
# counts on the 71 lme4 references, to within the noise of the boundary cases).
_WEIGHTED_STEPS = 4
# ... taken when the root-mean-square spread of the levels' Dₗ⁻¹ exceeds this
# fraction of Σ_b/σ² + mean Dₗ⁻¹ (see _factor).
_HETEROGENEITY = 0.25


def moment_start(cp: CrossProducts, terms: list[RandomEffectsTerm]) -> np.ndarray | None:
    """θ from moment estimates of the variance components, or None if they fail.

    The y blocks of ``cp`` must hold the residuals of the least-squares fit
    (``cp.beta_offset`` set), or the response itself when X has no columns.
    """
    return MomentStart(cp, terms).theta(cp)


class MomentStart:
    """The part of :func:`moment_start` that does not depend on the response.

    The per-level inverses of ZⱼᵀZⱼ are read once; :meth:`theta` then gives the
    start for the y blocks of any cross-products on the same design (a refit
    to many responses reads them once).
    """

    def __init__(self, cp: CrossProducts, terms: list[RandomEffectsTerm]) -> None:
        self.terms = terms
        # Per term: the levels of full rank (None: all), D⁻¹ on them, their count.
        self.parts: list[tuple[np.ndarray | None, np.ndarray, int]] | None = []
        # Per term, the mean of D⁻¹ over those levels: formed at its first use (the
        # joint scalar start does not read it).
        self._means: list[np.ndarray | None] = [None] * len(terms)
        for j, term in enumerate(terms):
            d = cp.diag[j]
            q = term.q
            if q == 1:
                # The scalar case of the lines below (the same numbers, fewer calls).
                flat = d.reshape(-1)
                full_rank = flat > 1e-10 * np.maximum(np.abs(flat), 1.0)
                m = int(np.count_nonzero(full_rank))
                if m == len(d):
                    # Every level of full rank (the usual case): 1/D as it is, the
                    # numbers of the masked division below without its zeroed copy.
                    inverses = 1.0 / d
                else:
                    inverses = np.divide(
                        1.0, d, out=np.zeros(d.shape), where=full_rank[:, None, None]
                    )
            else:
                scale = np.abs(d).reshape(len(d), -1).max(axis=1)
                det, inverses = batched_determinant_inverse(d)
                full_rank = det > 1e-10 * np.maximum(scale, 1.0) ** q
                m = int(np.count_nonzero(full_rank))
            if m == 0:
                self.parts = None
                return
            if m < len(d):
                self.parts.append((full_rank, inverses[full_rank], m))
            else:
                self.parts.append((None, inverses, m))
        self.scalar_moments = _scalar_moment_system(cp, [m for *_, m in self.parts])
        self.n_obs = cp.n_obs

    def theta(self, cp: CrossProducts) -> np.ndarray | None:
        """The moment start for the y blocks of ``cp`` (see :func:`moment_start`)."""
        if self.parts is None or (cp.n_fixed and cp.beta_offset is None):
            return None
        rss = float(cp.xx[-1, -1])
        n = cp.n_obs
        within, spread, explained_by = [], [], []
        for j, (term, (keep, d_inv, m)) in enumerate(zip(self.terms, self.parts, strict=True)):
            s = cp.xz[j][-1]  # (levels, q): Σ z·r per level
            if keep is not None:
                s = s[keep]
            b = batched_matmul(d_inv, s[:, :, None])[:, :, 0]
            explained = float(np.vdot(b, s))
            explained_by.append(explained)
            dof = max(n - m * term.q, 1)
            within.append(max((rss - explained) / dof, 1e-12 * rss / max(n, 1)))
            spread.append((b, d_inv, m))
        joint = self._joint_scalar(rss, explained_by)
        if joint is not None:
            return joint
        sigma2 = min(within)
        if not (math.isfinite(sigma2) and sigma2 > 0):
            return None
        thetas = []
        # (The levels' spread b̂ᵀb̂/m only here: the joint scalar start does not read it.)
        for j, (term, (b, d_inv, m)) in enumerate(zip(self.terms, spread, strict=True)):
            d_inv_mean = self._means[j]
            if d_inv_mean is None:
                # The sum over the levels over their count is numpy's mean, without its wrapper.
                d_inv_mean = self._means[j] = d_inv.sum(axis=0) / m
            relative = (b.T @ b / m - sigma2 * d_inv_mean) / sigma2
            if term.q == 1:
                # The scalar case of the floor and the factor (numpy's eigh and
                # cholesky cost more than the rest of the start).
                value = float(relative[0, 0])
                lam = np.array([[np.sqrt(max(value, _EIGEN_FLOOR * max(value, 1.0)))]])
            else:
                lam = _vector_factor(relative, b / math.sqrt(sigma2), d_inv, d_inv_mean)
                if lam is None:
                    return None
            thetas.append(lam[term.theta_rows, term.theta_cols])
        theta = thetas[0] if len(thetas) == 1 else np.concatenate(thetas)
        return theta if all_finite(theta) else None

    def _joint_scalar(self, rss: float, explained: list[float]) -> np.ndarray | None:
        """θ of several scalar terms from their joint moment equations (see
        :func:`_scalar_moment_system`), or None where there is no such system or
        its solution has no positive residual variance."""
        if self.scalar_moments is None:
            return None
        # LAPACK's LU solve directly (numpy.linalg.solve's checks and error state
        # cost four times its work on these few equations; the same solve).
        _, _, solved, info = scipy.linalg.lapack.dgesv(
            self.scalar_moments, np.array([rss, *explained])
        )
        if info != 0:
            return None
        sigma2 = float(solved[0])
        if not (all_finite(solved) and sigma2 > 1e-12 * rss / max(self.n_obs, 1)):
            return None
        relative = solved[1:] / sigma2
        return np.sqrt(np.maximum(relative, _EIGEN_FLOOR * np.maximum(relative, 1.0)))


def _scalar_moment_system(cp: CrossProducts, full_rank_levels: list[int]) -> np.ndarray | None:
    """The expectations of the residual sum of squares and of each term's explained
    sum of squares, linear in (σ², σ₁², …, σ_K²), for K ≥ 2 scalar terms; else None.

    With one term the within-level residual variance is σ²; with several, the
    other terms' effects vary within a level of each term wherever they are
    crossed with it (Penicillin's plates and samples, Scottish schools) and add
    to both its within- and its between-level spread, so that the smallest
    within-level variance overstates σ² (scotssec_crossed: 11 evaluations from
    that start).  For the least-squares residuals r = (I − H)y, a scalar term j
    with Dⱼₗ = Σ z² over level ℓ's rows and sⱼ = Zⱼᵀr, and Cⱼₖ = Zⱼᵀ(I − H)Zₖ,

        E[Σₗ sⱼₗ²/Dⱼₗ] = σ² (mⱼ − Σₗ uⱼₗᵀGuⱼₗ/Dⱼₗ) + Σₖ σₖ² Σₗₗ' Cⱼₖ[ℓ, ℓ']²/Dⱼₗ,
        E[rᵀr]         = σ² (n − p) + Σₖ σₖ² (Σₗ Dₖₗ − tr(G UₖUₖᵀ)),

    with Uₖ = XᵀZₖ (columns uₖₗ) and G = (XᵀX)⁻¹.  Cⱼₖ is the pair blocks Pⱼₖ
    less UⱼᵀGUₖ, so the sums need no mⱼ×mₖ matrix: Σ C²/D = Σ P²/D −
    2 Σ P·(uⱼₗᵀGuₖₗ')/D + tr(UₖUₖᵀ G Aⱼ G) with Aⱼ = Σₗ uⱼₗuⱼₗᵀ/Dⱼₗ, over the
    pairs that occur and the levels (:func:`_moment_sums`).
    """
    k = cp.n_terms
    if k < 2 or any(q != 1 for q in cp.q):
        return None
    p = cp.n_fixed
    keys = list(cp.off)
    pairs = [cp.off[key] for key in keys]
    # The terms' levels, and the level pairs of every two terms, end to end.
    system = np.empty((k + 1, k + 1))
    kernel = _compiled_sums()
    try:
        (kernel or _moment_sums)(
            np.concatenate([block.reshape(-1) for block in cp.diag]),
            np.array([0, *itertools.accumulate(cp.n_levels)], dtype=np.int64),
            np.concatenate([block[:p, :, 0] for block in cp.xz], axis=1),
            np.array(full_rank_levels, dtype=np.float64),
            np.array(keys, dtype=np.int64),
            np.array([0, *itertools.accumulate(b.n_pairs for b in pairs)], dtype=np.int64),
            np.concatenate([b.rows for b in pairs]),
            np.concatenate([b.cols for b in pairs]),
            np.concatenate([b.data.reshape(-1) for b in pairs]),
            np.ascontiguousarray(cp.xx[:p, :p]),
            cp.n_obs,
            system,
        )
    except np.linalg.LinAlgError:
        return None
    return system if all_finite(system) else None


def _moment_sums(
    d, level_at, u, full_rank, pair_terms, pair_at, rows, cols, data, gram, n_obs, system
):  # pragma: no cover - numba
    """The sums of :func:`_scalar_moment_system` into ``system``, compiled where
    numba is (as numpy, a few dozen calls on arrays of a few levels cost more than
    the rest of the start).

    ``d`` holds every term's Dₗ, term j's at ``level_at[j]:level_at[j + 1]``, and
    ``u`` (p, levels) their Xᵀzₗ; pair block b (terms ``pair_terms[b]``, the first
    the later) holds its pairs at ``pair_at[b]:pair_at[b + 1]``.  Raises
    LinAlgError where XᵀX (``gram``) is singular.
    """
    k = level_at.shape[0] - 1
    p = u.shape[0]
    g = np.linalg.inv(gram) if p > 0 else np.zeros((0, 0))
    inv_d = np.zeros(d.shape[0])
    for level in range(d.shape[0]):
        # 1/D where D > 0 (0 elsewhere: a level without rows).
        if d[level] > 0:
            inv_d[level] = 1.0 / d[level]
    # Guₗ for every level.
    gu = np.zeros((p, d.shape[0]))
    for level in range(d.shape[0]):
        for a in range(p):
            acc = 0.0
            for c in range(p):
                acc += g[a, c] * u[c, level]
            gu[a, level] = acc
    # Per term: Σ D, Wⱼ = UⱼUⱼᵀ, Aⱼ = Σ uuᵀ/D and Mⱼ = G Aⱼ G.
    d_sums = np.zeros(k)
    w = np.zeros((k, p, p))
    m = np.zeros((k, p, p))
    for j in range(k):
        aj = np.zeros((p, p))
        for level in range(level_at[j], level_at[j + 1]):
            d_sums[j] += d[level]
            for a in range(p):
                for c in range(p):
                    product = u[a, level] * u[c, level]
                    w[j, a, c] += product
                    aj[a, c] += inv_d[level] * product
        trace_gw = 0.0
        trace_ga = 0.0
        for a in range(p):
            for c in range(p):
                trace_gw += g[a, c] * w[j, a, c]
                trace_ga += g[a, c] * aj[a, c]
                acc = 0.0
                for e in range(p):
                    for f in range(p):
                        acc += g[a, e] * aj[e, f] * g[f, c]
                m[j, a, c] = acc
        system[0, j + 1] = d_sums[j] - trace_gw
        system[j + 1, 0] = full_rank[j] - trace_ga
        # Cⱼⱼ = Dⱼ (diagonal) − UⱼᵀGUⱼ.
        system[j + 1, j + 1] = d_sums[j] - 2.0 * trace_gw
    system[0, 0] = n_obs - p
    for j in range(k):
        for other in range(k):
            if other != j:
                system[j + 1, other + 1] = 0.0
            # tr(Wₒ Mⱼ) = Σₗ uⱼₗᵀG Wₒ Guⱼₗ/Dⱼₗ.
            acc = 0.0
            for a in range(p):
                for c in range(p):
                    acc += w[other, a, c] * m[j, a, c]
            system[j + 1, other + 1] += acc
    # Σ P²/D − 2 Σ P·(uⱼₗᵀGuₒₗ')/D over the pairs, both ways round.
    for b in range(pair_terms.shape[0]):
        j = pair_terms[b, 0]
        other = pair_terms[b, 1]
        squares_j = squares_other = cross_j = cross_other = 0.0
        for pair in range(pair_at[b], pair_at[b + 1]):
            mine = level_at[j] + rows[pair]
            theirs = level_at[other] + cols[pair]
            value = data[pair]
            shared = 0.0
            for a in range(p):
                shared += u[a, mine] * gu[a, theirs]
            squares_j += value * value * inv_d[mine]
            squares_other += value * value * inv_d[theirs]
            cross_j += value * shared * inv_d[mine]
            cross_other += value * shared * inv_d[theirs]
        system[j + 1, other + 1] += squares_j - 2.0 * cross_j
        system[other + 1, j + 1] += squares_other - 2.0 * cross_other


#: The compiled :func:`_moment_sums` (None without numba).
_compiled_sums = compiled_on_first_use(_moment_sums)


def _vector_factor(
    relative: np.ndarray, b: np.ndarray, d_inv: np.ndarray, d_inv_mean: np.ndarray
) -> np.ndarray | None:
    """λ of a vector-valued term from its unweighted Σ_b/σ² (``relative``), the
    levels' b̂ₗ/σ (``b``) and Dₗ⁻¹, or None where it fails (see :func:`_factor`)."""
    kernel = _compiled_factor()
    try:
        if kernel is None:
            lam = _factor_numpy(
                relative, b, d_inv, d_inv_mean, _WEIGHTED_STEPS, _EIGEN_FLOOR, _HETEROGENEITY
            )
        else:
            lam = kernel(
                relative,
                b,
                d_inv,
                d_inv_mean,
                _WEIGHTED_STEPS,
                _EIGEN_FLOOR,
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
        # The eigenvalues of the symmetric part floored (see _EIGEN_FLOOR), by
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


def start_steps(start: np.ndarray, lower: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start, BOBYQA's initial steps) for a start near the optimum.

    Steps of 30 % of each value (between 0.05 and 0.5) search near the start
    without ruling out moves of its own size; a value closer to its bound
    than its step is lifted to one step away, where BOBYQA would otherwise
    move it.
    """
    # np.clip's numbers, without its wrapper.
    steps = np.minimum(np.maximum(0.3 * np.abs(start), 0.05), 0.5)
    # An unbounded θ has lower + step = −∞ and keeps its value.
    return np.maximum(start, lower + steps), steps
