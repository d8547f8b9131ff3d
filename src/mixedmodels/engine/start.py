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
from .smallmatrix import (
    all_finite,
    batched_determinant_inverse,
    batched_matmul,
)
from .terms import RandomEffectsTerm
from .vector_start import EIGEN_FLOOR, level_fits_kernel, pair_inverses_kernel, vector_factor


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
            elif q == 2 and (kernel := pair_inverses_kernel()) is not None:
                # The lines below in one compiled pass (the same numbers): on a
                # hundred levels numpy's dozen calls cost several times the arithmetic.
                inverses = np.empty(d.shape)
                full_rank = np.empty(len(d), dtype=bool)
                m = kernel(d, inverses, full_rank)
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
            if term.q > 1 and (kernel := level_fits_kernel()) is not None:
                b = np.empty(s.shape)
                explained = kernel(d_inv, np.ascontiguousarray(s), b)
            else:
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
            if term.q == 1:
                relative = (b.T @ b / m - sigma2 * d_inv_mean) / sigma2
                # The scalar case of the floor and the factor (numpy's eigh and
                # cholesky cost more than the rest of the start).
                value = float(relative[0, 0])
                lam = np.array([[np.sqrt(max(value, EIGEN_FLOOR * max(value, 1.0)))]])
            else:
                lam = vector_factor(b, sigma2, d_inv, d_inv_mean)
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
        return np.sqrt(np.maximum(relative, EIGEN_FLOOR * np.maximum(relative, 1.0)))


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
